//! [`Quantized`]: a raw vector storage plus a code per slot.
//!
//! Reads of vectors (`get`, `get_batch`, `scan_live`) go to the raw
//! storage, so migration, rescoring and `Segment::get` see the original
//! vectors; search scores through the codes ([`QuantizedScorer`]). The
//! codes are themselves a vector storage of bytes (`code_len` "components"
//! per slot): [`MemoryVectorStorage<u8>`] in RAM, [`MmapVectorStorage<u8>`]
//! for an immutable file, [`ChunkedVectorStorage<u8>`] for appendable
//! files, so each reuses that backend's files, checks and advice. Deletes
//! and flushes go to both storages, raw first.
//!
//! Codes built all at once (in RAM, immutable mmap) by a codec whose scan
//! kernel prefers it ([`Codec::COLUMNS`]: binary and product) store every
//! whole group of 32 slots as a column group ([`crate::codec::columns`]):
//! the byte storage's slots `32 g .. 32 g + 32` hold the group's bytes
//! column by column, so slot `o`'s bytes are not its code. The scorer
//! knows the end of that prefix ([`Quantized::columns_end`]), reads a
//! single code out of its group, and scores whole groups with
//! [`Codec::score_columns`]. Deleted flags stay per slot. Appendable
//! chunked codes are always rows.

use std::path::Path;

use rand::seq::index::sample;
use rand::SeedableRng;
use vecseg_chunked::{ChunkedVectorOptions, ChunkedVectorStorage};
use vecseg_memory::MemoryVectorStorage;
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage};
use vecseg_traits::bitvec::slice::BitSlice;
use vecseg_traits::vector::SCAN_BLOCK;
use vecseg_traits::{
    AccessPattern, AppendableVectorStorage, Distance, PointOffset, QueryScorer, Random, Result,
    Sequential, StorageError, VectorStorage, VectorStorageRead,
};

use crate::codec::columns::{self, GROUP};
use crate::codec::Codec;
use crate::meta;

/// Slots a scan of contiguous codes scores per kernel call (a multiple
/// of the 64-slot blocks and of the 32-code column groups): the call's
/// fixed cost was ~0.2 ns per code when paid per block of 64.
const SCAN_RUN: usize = 1024;

/// Subdirectory of the codes inside a quantized storage's directory.
pub const CODES_DIR: &str = "codes";

/// Raw vectors `V` scored through codes of codec `Q` kept in `C` (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct Quantized<V, Q, C = MemoryVectorStorage<u8>> {
    raw: V,
    codes: C,
    codec: Q,
    /// Slots `0..columns_end` hold column groups (see the module docs).
    columns_end: PointOffset,
}

/// Codes in RAM.
pub type InRamCodes = MemoryVectorStorage<u8>;
/// Codes in an immutable mmap file.
pub type MmapCodes = MmapVectorStorage<u8>;
/// Codes in appendable chunked mmap files.
pub type ChunkedCodes = ChunkedVectorStorage<u8>;

/// Train `Q` on up to [`Codec::sample_limit`] live vectors of `raw`, drawn
/// uniformly at random (seeded, so a build is reproducible).
pub fn train<V, Q>(raw: &V, config: &Q::Config) -> Result<Q>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
{
    let live: Vec<PointOffset> = (0..raw.total_count() as PointOffset)
        .filter(|&o| !raw.is_deleted(o))
        .collect();
    if live.is_empty() {
        return Err(StorageError::InvalidArgument(
            "cannot train a quantization codec on a storage without live vectors".into(),
        ));
    }
    let n = Q::sample_limit(config).min(live.len()).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c0de);
    let mut chosen: Vec<PointOffset> = sample(&mut rng, live.len(), n)
        .into_iter()
        .map(|i| live[i])
        .collect();
    chosen.sort_unstable();
    let dim = raw.dim();
    let mut flat = vec![0.0f32; n * dim];
    raw.get_batch::<Random>(&chosen, &mut |i, v| {
        flat[i * dim..(i + 1) * dim].copy_from_slice(v);
    })?;
    Q::train(config, dim, raw.distance(), &flat)
}

/// The codes of every slot of `raw` (deleted ones too, so offsets line
/// up), in RAM, with the deleted flags copied, and the end of their column
/// groups: every whole group of 32 slots is a column group when the codec
/// prefers them ([`Codec::COLUMNS`]), the rest are rows.
pub fn encode_all<V, Q>(
    raw: &V,
    codec: &Q,
    progress: &mut dyn FnMut(usize),
) -> Result<(InRamCodes, PointOffset)>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
{
    let len = codec.code_len();
    let total = raw.total_count();
    let columns_end = if Q::COLUMNS { total / GROUP * GROUP } else { 0 };
    let mut codes = MemoryVectorStorage::<u8>::new(len, Distance::Dot)?;
    codes.reserve(total);
    let (mut rows, mut group) = (vec![0u8; GROUP * len], vec![0u8; GROUP * len]);
    for first in (0..total).step_by(GROUP) {
        let n = GROUP.min(total - first);
        for (i, code) in rows.chunks_exact_mut(len).take(n).enumerate() {
            codec.encode(&raw.get::<Sequential>((first + i) as PointOffset)?, code);
        }
        let bytes = if first < columns_end {
            columns::rows_to_columns(&rows, len, &mut group);
            &group
        } else {
            &rows
        };
        for (i, slot) in bytes.chunks_exact(len).take(n).enumerate() {
            codes.insert((first + i) as PointOffset, slot)?;
        }
        for offset in (first..first + n).map(|o| o as PointOffset) {
            if raw.is_deleted(offset) {
                codes.delete(offset)?;
            }
        }
        if first % 4096 == 0 {
            progress(first);
        }
    }
    progress(total);
    Ok((codes, columns_end as PointOffset))
}

impl<V, Q> Quantized<V, Q, InRamCodes>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
{
    /// Train `Q` on `raw` and encode every slot, codes in RAM.
    pub fn build_in_ram(raw: V, config: &Q::Config) -> Result<Self> {
        let codec = train::<V, Q>(&raw, config)?;
        Self::with_codec_in_ram(raw, codec)
    }

    /// Encode every slot of `raw` with an already trained `codec`, codes
    /// in RAM.
    pub fn with_codec_in_ram(raw: V, codec: Q) -> Result<Self> {
        let (codes, columns_end) = encode_all(&raw, &codec, &mut |_| {})?;
        Self::with_columns(raw, codes, codec, columns_end)
    }
}

impl<V, Q> Quantized<V, Q, MmapCodes>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
{
    /// Train `Q` on `raw`, encode every slot and write the codes as an
    /// immutable mmap storage under `dir` (meta file + `codes/`).
    pub fn build_mmap(
        raw: V,
        dir: &Path,
        config: &Q::Config,
        options: MmapVectorOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let codec = train::<V, Q>(&raw, config)?;
        Self::with_codec_mmap(raw, dir, codec, options, progress)
    }

    /// [`build_mmap`](Self::build_mmap) with an already trained `codec`.
    pub fn with_codec_mmap(
        raw: V,
        dir: &Path,
        codec: Q,
        options: MmapVectorOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let (in_ram, columns_end) = encode_all(&raw, &codec, progress)?;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let codes = MmapVectorStorage::build(&dir.join(CODES_DIR), &in_ram, options)?;
        meta::write(dir, &codec, u64::from(columns_end))?;
        Self::with_columns(raw, codes, codec, columns_end)
    }

    /// Read every code page into RAM now (see `MmapVectorStorage::populate`).
    pub fn populate_codes(&self) {
        self.codes.populate();
    }

    /// Drop the codes' pages from the mappings and the page cache.
    pub fn clear_codes_cache(&self) -> Result<()> {
        self.codes.clear_cache()
    }

    /// Open the codes under `dir` for `raw`.
    pub fn open_mmap(raw: V, dir: &Path, options: MmapVectorOptions) -> Result<Self> {
        let (codec, columns_end) = meta::read::<Q>(dir, raw.dim(), raw.distance())?;
        let mut codes = MmapVectorStorage::open(&dir.join(CODES_DIR), options)?;
        if columns_end > codes.total_count() as u64 {
            return Err(StorageError::corrupted(
                dir.join(meta::META_FILE),
                format!(
                    "column groups up to slot {columns_end}, the codes hold {} slots",
                    codes.total_count()
                ),
            ));
        }
        mirror_deleted(&raw, &mut codes)?;
        Self::with_columns(raw, codes, codec, columns_end as PointOffset)
    }
}

impl<V, Q> Quantized<V, Q, ChunkedCodes>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
{
    /// Train `Q` on `raw`, encode every slot and write the codes as an
    /// appendable chunked storage under `dir`.
    pub fn build_chunked(raw: V, dir: &Path, config: &Q::Config) -> Result<Self> {
        let codec = train::<V, Q>(&raw, config)?;
        Self::with_codec_chunked(raw, dir, codec)
    }

    /// [`build_chunked`](Self::build_chunked) with an already trained
    /// `codec` (e.g. an empty appendable storage whose codec was trained
    /// on other data).
    pub fn with_codec_chunked(raw: V, dir: &Path, codec: Q) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut codes = ChunkedVectorStorage::create(
            &dir.join(CODES_DIR),
            codec.code_len(),
            Distance::Dot,
            ChunkedVectorOptions::default(),
        )?;
        let mut code = vec![0u8; codec.code_len()];
        for offset in 0..raw.total_count() as PointOffset {
            codec.encode(&raw.get::<Sequential>(offset)?, &mut code);
            codes.insert(offset, &code)?;
            if raw.is_deleted(offset) {
                codes.delete(offset)?;
            }
        }
        codes.flush()?;
        meta::write(dir, &codec, 0)?;
        Self::checked(raw, codes, codec)
    }

    /// Open the codes under `dir` for `raw`. Slots the raw storage made
    /// durable after the codes' last flush (a crash between the two
    /// flushes) are encoded again from the raw vectors.
    pub fn open_chunked(raw: V, dir: &Path) -> Result<Self> {
        let (codec, columns_end) = meta::read::<Q>(dir, raw.dim(), raw.distance())?;
        if columns_end != 0 {
            return Err(StorageError::corrupted(
                dir.join(meta::META_FILE),
                format!("appendable codes are rows, the meta file says columns up to slot {columns_end}"),
            ));
        }
        let mut codes = ChunkedVectorStorage::open(&dir.join(CODES_DIR))?;
        if codes.total_count() < raw.total_count() {
            let mut code = vec![0u8; codec.code_len()];
            for offset in codes.total_count() as PointOffset..raw.total_count() as PointOffset {
                codec.encode(&raw.get::<Sequential>(offset)?, &mut code);
                codes.insert(offset, &code)?;
                if raw.is_deleted(offset) {
                    codes.delete(offset)?;
                }
            }
            codes.flush()?;
        }
        mirror_deleted(&raw, &mut codes)?;
        Self::checked(raw, codes, codec)
    }
}

/// Flag deleted in `codes` every slot `raw` has flagged (a crash between
/// the raw storage's flush and the codes' can leave the codes behind);
/// the scorer then needs only the codes' own flags.
fn mirror_deleted<V, C>(raw: &V, codes: &mut C) -> Result<()>
where
    V: VectorStorageRead<Element = f32>,
    C: VectorStorage<Element = u8>,
{
    let total = codes.total_count().min(raw.total_count());
    let bits = raw.deleted_bits();
    for offset in bits.iter_ones().take_while(|&o| o < total) {
        let offset = offset as PointOffset;
        if !codes.is_deleted(offset) {
            codes.delete(offset)?;
        }
    }
    Ok(())
}

impl<V, Q, C> Quantized<V, Q, C>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
    C: VectorStorageRead<Element = u8>,
{
    /// Put together a raw storage, its codes (every code a row) and their
    /// codec, checking that they fit (same slots, code length).
    pub fn checked(raw: V, codes: C, codec: Q) -> Result<Self> {
        Self::with_columns(raw, codes, codec, 0)
    }

    /// [`checked`](Self::checked) for codes whose slots `0..columns_end`
    /// hold column groups (a multiple of 32, at most the codes' slots).
    pub fn with_columns(raw: V, codes: C, codec: Q, columns_end: PointOffset) -> Result<Self> {
        if !(columns_end as usize).is_multiple_of(GROUP)
            || columns_end as usize > codes.total_count()
        {
            return Err(StorageError::InvalidArgument(format!(
                "column groups up to slot {columns_end} over {} codes",
                codes.total_count()
            )));
        }
        if codes.dim() != codec.code_len() {
            return Err(StorageError::InvalidArgument(format!(
                "codes of {} bytes, the codec makes {}",
                codes.dim(),
                codec.code_len()
            )));
        }
        if codec.dim() != raw.dim() || codec.distance() != raw.distance() {
            return Err(StorageError::InvalidArgument(format!(
                "codec for {} dimensions ({}), vectors have {} ({})",
                codec.dim(),
                codec.distance().name(),
                raw.dim(),
                raw.distance().name()
            )));
        }
        // A crash between the two flushes can leave the codes behind the
        // raw vectors by the slots written since; those are re-encoded by
        // whoever replays the writes, so only more codes than vectors is
        // damage.
        if codes.total_count() > raw.total_count() {
            return Err(StorageError::InvalidArgument(format!(
                "{} codes for {} vectors",
                codes.total_count(),
                raw.total_count()
            )));
        }
        Ok(Quantized {
            raw,
            codes,
            codec,
            columns_end,
        })
    }

    /// The raw storage.
    pub fn raw(&self) -> &V {
        &self.raw
    }

    /// The codes (slots below [`columns_end`](Self::columns_end) hold
    /// column groups, not their own codes).
    pub fn codes(&self) -> &C {
        &self.codes
    }

    /// End of the slots stored as column groups (0: every code is a row).
    pub fn columns_end(&self) -> PointOffset {
        self.columns_end
    }

    /// The code of slot `offset`, wherever it is stored.
    pub fn code(&self, offset: PointOffset) -> Result<Vec<u8>> {
        code_of(&self.codes, self.codec.code_len(), self.columns_end, offset)
    }

    /// The trained codec.
    pub fn codec(&self) -> &Q {
        &self.codec
    }

    /// Bytes of codes (what scoring reads): slots × code length.
    pub fn code_bytes(&self) -> usize {
        self.codes.total_count() * self.codec.code_len()
    }

    /// Split into the raw storage, the codes and the codec (the codes'
    /// column groups end at [`columns_end`](Self::columns_end)).
    pub fn into_parts(self) -> (V, C, Q) {
        (self.raw, self.codes, self.codec)
    }
}

/// Scores of one query through the codes of a [`Quantized`] storage.
pub struct QuantizedScorer<'a, Q: Codec, C> {
    codec: &'a Q,
    codes: &'a C,
    query: Q::Query,
    columns_end: PointOffset,
    /// The codes' bytes for single reads, when contiguous: a code in a
    /// column group is then gathered with strided loads, not a read per
    /// slot it spans.
    random: Option<&'a [u8]>,
}

/// Longest code gathered on the stack by [`QuantizedScorer::score`].
const STACK_CODE: usize = 512;

/// The code of slot `offset` of `codes` (`len` bytes each; column groups
/// below `columns_end`): a row as it is, or gathered from its group's
/// slots (one read per slot the code's bytes fall in).
fn code_of<C: VectorStorageRead<Element = u8>>(
    codes: &C,
    len: usize,
    columns_end: PointOffset,
    offset: PointOffset,
) -> Result<Vec<u8>> {
    if offset >= columns_end {
        return Ok(codes.get::<Random>(offset)?.to_vec());
    }
    let (first, i) = (
        offset / GROUP as PointOffset * GROUP as PointOffset,
        offset as usize % GROUP,
    );
    let mut code = vec![0u8; len];
    for (row, bytes) in columns::spans(len, i) {
        let slot = codes.get::<Random>(first + row as PointOffset)?;
        for j in bytes {
            code[j] = slot[(j * GROUP + i) % len];
        }
    }
    Ok(code)
}

impl<Q, C> QueryScorer for QuantizedScorer<'_, Q, C>
where
    Q: Codec,
    C: VectorStorageRead<Element = u8>,
{
    fn is_exact(&self) -> bool {
        false
    }

    fn rescore_by_default(&self) -> bool {
        self.codec.rescore_by_default()
    }

    fn score(&self, offset: PointOffset) -> Result<f32> {
        if offset >= self.columns_end {
            let code = self.codes.get::<Random>(offset)?;
            return Ok(self.codec.score(&self.query, &code));
        }
        let len = self.codec.code_len();
        match self.random {
            Some(flat) if len <= STACK_CODE => {
                let group = &flat[offset as usize / GROUP * GROUP * len..];
                let mut code = [0u8; STACK_CODE];
                columns::code_from_columns(group, offset as usize % GROUP, &mut code[..len]);
                Ok(self.codec.score(&self.query, &code[..len]))
            }
            _ => {
                let code = code_of(self.codes, len, self.columns_end, offset)?;
                Ok(self.codec.score(&self.query, &code))
            }
        }
    }

    fn score_live<K, F>(&self, range: std::ops::Range<PointOffset>, keep: K, f: F) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        F: FnMut(PointOffset, f32),
    {
        self.scan(range, keep, |scores| slots(scores.len()), f)
    }

    fn score_live_above<K, B, F>(
        &self,
        range: std::ops::Range<PointOffset>,
        keep: K,
        bar: B,
        f: F,
    ) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        B: FnMut() -> f32,
        F: FnMut(PointOffset, f32),
    {
        let mut bar = bar;
        self.scan(range, keep, |scores| above(scores, bar()), f)
    }
}

impl<Q: Codec, C: VectorStorageRead<Element = u8>> QuantizedScorer<'_, Q, C> {
    /// The scan under [`QueryScorer::score_live`] and
    /// [`QueryScorer::score_live_above`]. Codes held contiguously
    /// ([`VectorStorageRead::contiguous`]: RAM, immutable mmap) are scored
    /// [`SCAN_RUN`] slots per kernel call; others a
    /// [`VectorStorageRead::scan_blocks`] block (64 slots) per call. Deleted
    /// slots are scored too, then dropped. Then `f` is called for the live
    /// slots of each block of 64 that `wanted` sets in its mask (for a
    /// bar, those above it: most blocks of a top-k scan have none once the
    /// top fills up). The codes' deleted flags follow the raw storage's
    /// (every delete goes to both; opening mirrors what a crash left
    /// behind).
    #[inline]
    fn scan<K, W, F>(
        &self,
        range: std::ops::Range<PointOffset>,
        mut keep: K,
        mut wanted: W,
        mut f: F,
    ) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        W: FnMut(&[f32]) -> u64,
        F: FnMut(PointOffset, f32),
    {
        let len = self.codec.code_len().max(1);
        // The live slots of one block of at most 64 whose scores are known.
        let mut emit = |first: PointOffset, scores: &[f32], deleted: u64| {
            let mut live = !deleted & slots(scores.len()) & wanted(scores);
            while live != 0 {
                let i = live.trailing_zeros() as usize;
                live &= live - 1;
                let offset = first + i as PointOffset;
                if keep(offset) {
                    f(offset, scores[i]);
                }
            }
        };
        if let Some(flat) = self.codes.contiguous::<Sequential>()? {
            let total = (flat.len() / len).min(self.codes.total_count()) as PointOffset;
            let end = range.end.min(total);
            let mut start = range.start.min(end);
            let mut scores = vec![0.0f32; SCAN_RUN.min((end - start) as usize)];
            while start < end {
                // Runs end on multiples of SCAN_RUN, so blocks and column
                // groups stay aligned.
                let stop = end.min((start / SCAN_RUN as PointOffset + 1) * SCAN_RUN as PointOffset);
                let codes = &flat[start as usize * len..stop as usize * len];
                let run = &mut scores[..(stop - start) as usize];
                self.score_slots(start, codes, run)?;
                let run: &[f32] = run;
                let deleted = self.codes.deleted_bits();
                vecseg_traits::vector::scan_flat_blocks(
                    codes,
                    len,
                    start,
                    deleted,
                    start..stop,
                    |first, _, d| {
                        let from = (first - start) as usize;
                        let n = SCAN_BLOCK.min(run.len() - from);
                        emit(first, &run[from..from + n], d);
                    },
                );
                start = stop;
            }
            return Ok(());
        }
        let mut scores = [0.0f32; SCAN_BLOCK];
        let mut failed = None;
        self.codes
            .scan_blocks::<Sequential, _>(range, |first, codes, deleted| {
                // Blocks hold at most SCAN_BLOCK codes; a longer one (a
                // storage breaking the contract) is scored in pieces, its
                // slots past the deleted word taken as live.
                for (piece, codes) in codes.chunks(SCAN_BLOCK * len).enumerate() {
                    let scores = &mut scores[..codes.len() / len];
                    let start = first + (piece * SCAN_BLOCK) as PointOffset;
                    if let Err(e) = self.score_slots(start, codes, scores) {
                        failed.get_or_insert(e);
                        return;
                    }
                    emit(start, scores, if piece == 0 { deleted } else { 0 });
                }
            })?;
        failed.map_or(Ok(()), Err)
    }

    /// Scores of the slots `start ..` whose stored bytes are `slots`, into
    /// `scores`: rows in one batch, whole column groups a group at a time,
    /// and the slots of a group the range cuts (at its ends) one by one.
    #[inline]
    fn score_slots(&self, start: PointOffset, slots: &[u8], scores: &mut [f32]) -> Result<()> {
        let len = self.codec.code_len();
        let n = scores.len();
        let mut at = 0;
        while at < n {
            let offset = start + at as PointOffset;
            if offset >= self.columns_end {
                let rows = &slots[at * len..n * len];
                self.codec.score_batch(&self.query, rows, &mut scores[at..]);
                break;
            }
            // Whole groups from here on, scored in one call.
            let whole = if (offset as usize).is_multiple_of(GROUP) {
                let in_columns = (self.columns_end - offset) as usize;
                (n - at).min(in_columns) / GROUP * GROUP
            } else {
                0
            };
            if whole > 0 {
                let groups = &slots[at * len..(at + whole) * len];
                self.codec
                    .score_columns(&self.query, groups, &mut scores[at..at + whole]);
                at += whole;
            } else {
                scores[at] = self.score(offset)?;
                at += 1;
            }
        }
        Ok(())
    }
}

/// The mask of the first `n` slots of a block (at most 64).
#[inline]
fn slots(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Bit `i` set when `scores[i] > bar` (at most 64 scores; NaN never is).
#[inline]
fn above(scores: &[f32], bar: f32) -> u64 {
    use wide::{f32x4, CmpGt};
    let scores = &scores[..scores.len().min(64)];
    let (fours, rest) = scores.as_chunks::<4>();
    // Four compares a step into four bits (`cmpps` + `movmskps`; a
    // variable shift per score was a third of a fast scan's own cost).
    let bar4 = f32x4::splat(bar);
    let mut mask = 0u64;
    for (j, four) in fours.iter().enumerate() {
        let bits = f32x4::from(*four).cmp_gt(bar4).move_mask() as u64;
        mask |= bits << (4 * j);
    }
    for (k, &s) in rest.iter().enumerate() {
        mask |= u64::from(s > bar) << (4 * fours.len() + k);
    }
    mask
}

impl<V, Q, C> VectorStorageRead for Quantized<V, Q, C>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
    C: VectorStorageRead<Element = u8>,
{
    type Element = f32;
    type Vector<'a>
        = V::Vector<'a>
    where
        Self: 'a;
    type Scorer<'a>
        = QuantizedScorer<'a, Q, C>
    where
        Self: 'a;

    fn scorer(&self, query: &[f32]) -> Result<Self::Scorer<'_>> {
        if self.codes.total_count() < self.raw.total_count() {
            return Err(StorageError::InvalidArgument(format!(
                "{} codes for {} vectors: re-encode the missing ones before searching",
                self.codes.total_count(),
                self.raw.total_count()
            )));
        }
        Ok(QuantizedScorer {
            codec: &self.codec,
            codes: &self.codes,
            query: self.codec.prepare(query),
            columns_end: self.columns_end,
            random: if self.columns_end > 0 {
                self.codes.contiguous::<Random>()?
            } else {
                None
            },
        })
    }

    fn layout_type_name() -> &'static str {
        V::layout_type_name()
    }

    fn dim(&self) -> usize {
        self.raw.dim()
    }

    fn distance(&self) -> Distance {
        self.raw.distance()
    }

    fn total_count(&self) -> usize {
        self.raw.total_count()
    }

    fn deleted_count(&self) -> usize {
        self.raw.deleted_count()
    }

    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<Self::Vector<'_>> {
        self.raw.get::<P>(offset)
    }

    fn get_batch<P: AccessPattern>(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.raw.get_batch::<P>(offsets, f)
    }

    fn prefetch(&self, offset: PointOffset) {
        self.raw.prefetch(offset);
    }

    fn scan_live<P: AccessPattern, F: FnMut(PointOffset, &[f32])>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        self.raw.scan_live::<P, F>(range, f)
    }

    fn scan_blocks<P: AccessPattern, F: FnMut(PointOffset, &[f32], u64)>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        self.raw.scan_blocks::<P, F>(range, f)
    }

    fn is_deleted(&self, offset: PointOffset) -> bool {
        self.raw.is_deleted(offset)
    }

    fn deleted_bits(&self) -> &BitSlice<u64> {
        self.raw.deleted_bits()
    }

    fn durable_sequence(&self) -> Option<u64> {
        self.raw.durable_sequence()
    }

    fn disk_bytes(&self) -> u64 {
        self.raw.disk_bytes() + self.codes.disk_bytes()
    }

    fn drop_page_cache(&self) -> Result<bool> {
        let raw = self.raw.drop_page_cache()?;
        let codes = self.codes.drop_page_cache()?;
        Ok(raw || codes)
    }
}

impl<V, Q, C> VectorStorage for Quantized<V, Q, C>
where
    V: VectorStorage<Element = f32>,
    Q: Codec,
    C: VectorStorage<Element = u8>,
{
    fn delete(&mut self, offset: PointOffset) -> Result<bool> {
        let was_live = self.raw.delete(offset)?;
        if (offset as usize) < self.codes.total_count() {
            self.codes.delete(offset)?;
        }
        Ok(was_live)
    }

    fn flush_data(&mut self) -> Result<()> {
        self.raw.flush_data()?;
        self.codes.flush_data()
    }

    fn flush_deleted(&mut self) -> Result<()> {
        self.raw.flush_deleted()?;
        self.codes.flush_deleted()
    }
}

impl<V, Q, C> Quantized<V, Q, C>
where
    V: VectorStorageRead<Element = f32>,
    Q: Codec,
    C: AppendableVectorStorage<Element = u8>,
{
    /// Overwrite the code of `offset`, in a column group: its bytes are
    /// spread over the group's slots, each rewritten whole (which clears
    /// its deleted flag, so the other points' flags are set back); the
    /// overwritten slot ends up live, as `insert` promises.
    fn overwrite_in_group(&mut self, offset: PointOffset, code: &[u8]) -> Result<()> {
        let len = self.codec.code_len();
        let (first, i) = (
            offset / GROUP as PointOffset * GROUP as PointOffset,
            offset as usize % GROUP,
        );
        for (row, js) in columns::spans(len, i) {
            let slot = first + row as PointOffset;
            let mut bytes = self.codes.get::<Random>(slot)?.to_vec();
            for j in js {
                bytes[(j * GROUP + i) % len] = code[j];
            }
            let was_deleted = self.codes.is_deleted(slot);
            self.codes.insert(slot, &bytes)?;
            if was_deleted && slot != offset {
                self.codes.delete(slot)?;
            }
        }
        if self.codes.is_deleted(offset) {
            let bytes = self.codes.get::<Random>(offset)?.to_vec();
            self.codes.insert(offset, &bytes)?;
        }
        Ok(())
    }
}

/// Codecs that encode a new vector with their trained parameters (no
/// retraining), so a [`Quantized`] storage over an appendable raw storage
/// and appendable codes is appendable.
pub trait EncodesWithoutRetraining: Codec {}
impl EncodesWithoutRetraining for crate::codec::ScalarU8 {}
impl EncodesWithoutRetraining for crate::codec::ScalarU4 {}
impl<B: crate::codec::BitsPerDim> EncodesWithoutRetraining for crate::codec::Binary<B> {}
impl EncodesWithoutRetraining for crate::codec::Product {}

impl<V, Q, C> AppendableVectorStorage for Quantized<V, Q, C>
where
    V: AppendableVectorStorage<Element = f32>,
    Q: EncodesWithoutRetraining,
    C: AppendableVectorStorage<Element = u8>,
{
    fn insert(&mut self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        self.raw.insert(offset, vector)?;
        let mut code = vec![0u8; self.codec.code_len()];
        self.codec.encode(vector, &mut code);
        if offset < self.columns_end {
            return self.overwrite_in_group(offset, &code);
        }
        // Slots between the codes' end and `offset` (none in normal use:
        // offsets are appended in order) get the codes of their vectors.
        for gap in self.codes.total_count() as PointOffset..offset {
            let mut c = vec![0u8; self.codec.code_len()];
            self.codec.encode(&self.raw.get::<Random>(gap)?, &mut c);
            self.codes.insert(gap, &c)?;
        }
        self.codes.insert(offset, &code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask is the per-score comparison, for every length a block
    /// can have, with NaN never above the bar.
    #[test]
    fn above_is_the_per_score_comparison() {
        let scores: Vec<f32> = (0..70)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => 0.5,
                _ => (i as f32 * 0.37).sin(),
            })
            .collect();
        for n in 0..=70 {
            for bar in [-2.0, 0.0, 0.5, 0.3, f32::NEG_INFINITY] {
                let want = scores[..n]
                    .iter()
                    .take(64)
                    .enumerate()
                    .fold(0u64, |m, (i, &s)| m | u64::from(s > bar) << i);
                assert_eq!(above(&scores[..n], bar), want, "n {n} bar {bar}");
            }
        }
    }
}
