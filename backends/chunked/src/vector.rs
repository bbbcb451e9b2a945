//! [`ChunkedVectorStorage`]: an appendable vector storage made of
//! preallocated, memory-mapped chunk files.
//!
//! ## Directory layout
//!
//! ```text
//! <dir>/config.json   dim, distance, element type, chunk geometry, populate flag
//! <dir>/status.dat    32 bytes, mapped: the committed vector count
//! <dir>/chunk_N.dat   64-byte header + `chunk_vectors` vector slots, preallocated whole
//! <dir>/deleted.dat   32-byte header + deleted flags as little-endian u64 words
//! ```
//!
//! Vector `o` lives in chunk `o / chunk_vectors`, slot `o % chunk_vectors`,
//! at byte `64 + slot * dim * size_of::<T>()`. `chunk_vectors` is the largest
//! power of two whose slots fit in the configured chunk size, so no vector
//! straddles two files and the chunk / slot split is a shift and a mask.
//! Reads are zero-copy `&[T]` views into the chunk mapping.
//!
//! ## Durability
//!
//! Appends go to the slot after the last committed one, which no reader of
//! the files on disk looks at. [`VectorStorage::flush_data`] makes the
//! chunks durable (msync), then writes the flags that may safely precede
//! the id mappings (those of appended offsets, and cleared ones), then
//! advances the count in `status.dat` (CRC-checked, one `pwrite`) and
//! msyncs it. On open the count in `status.dat` is trusted, so a crash never
//! exposes a vector that was not fully written: at worst the appends since
//! the last flush are lost. Chunk files are created whole and durably
//! (temporary file, set length, fsync, rename, directory fsync) before they
//! are written to. An in-place overwrite of an already committed slot is
//! not atomic with respect to a crash before the next flush; the segment
//! never does one (it moves a durable point to a new offset).
//!
//! The deleted flags are kept in RAM as a `BitVec<u64>` (that is what
//! [`VectorStorageRead::deleted_bits`] returns). A newly set flag of an
//! offset that was already durable would hide a point whose mapping on
//! disk still points at it, so it is copied into the mapped `deleted.dat`
//! only by [`VectorStorage::flush_deleted`], which the segment calls after
//! the id mappings are durable; the file grows by doubling.
//!
//! ## Advice
//!
//! Chunk mappings get [`Advice::Normal`] (read-ahead helps cold scans)
//! unless a process-wide default is set with
//! [`vecseg_mmap::set_global_advice`]; an advice given to
//! [`ChunkedVectorStorage::set_advice`] wins over both.
//! [`Advice::Random`] suits storages read mostly by random point reads
//! while cold.
//!
//! ## In-RAM mode
//!
//! [`ChunkedVectorOptions::in_ram`] uses the same files but populates every chunk
//! mapping at open (and every new chunk when it is created), so reads never
//! fault on a cold page.

use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bitvec::vec::BitVec;
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};
use vecseg_mmap::advice::AdviceSetting;
use vecseg_mmap::header::{read_header, CheckedHeader, FilePrefix};
use vecseg_mmap::{Advice, MmapFileMut};
use vecseg_traits::bitvec::slice::BitSlice;
use vecseg_traits::fsutil::dir_size;
use vecseg_traits::vector::{scan_flat, scan_flat_blocks};
use vecseg_traits::{
    AccessPattern, AppendableVectorStorage, Distance, IoResultExt, PointOffset, RawScorer, Result,
    StorageError, VectorElement, VectorStorage, VectorStorageRead,
};

use crate::common::{check_version, prepare_new_dir, read_json, write_json};

/// File name of the JSON configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the mapped status (committed count).
pub const STATUS_FILE: &str = "status.dat";
/// File name of the deleted flags.
pub const DELETED_FILE: &str = "deleted.dat";
/// Format version of every file of this storage.
pub const FORMAT_VERSION: u32 = 1;
/// Default chunk size: 32 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 32 << 20;

/// Advice of the chunk mappings unless [`ChunkedVectorStorage::set_advice`]
/// or a process-wide default says otherwise.
const DEFAULT_ADVICE: Advice = Advice::Normal;
const CHUNK_MAGIC: [u8; 8] = *b"VSCHUNK1";
const STATUS_MAGIC: [u8; 8] = *b"VSCSTATS";
const DELETED_MAGIC: [u8; 8] = *b"VSCDELET";
const CHUNK_HEADER_LEN: usize = 64;
const STATUS_LEN: usize = 32;
const DELETED_HEADER_LEN: usize = 32;
/// Initial number of deleted-flag words (`deleted.dat` grows by doubling).
const MIN_DELETED_WORDS: usize = 64;

/// Path of chunk file `index` inside `dir`.
pub fn chunk_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("chunk_{index}.dat"))
}

/// Options of a [`ChunkedVectorStorage`] chosen at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedVectorOptions {
    /// Upper bound of a chunk's data bytes; the vector count per chunk is
    /// the largest power of two that fits (at least one vector).
    pub chunk_size_bytes: usize,
    /// In-RAM mode: populate every chunk mapping at open.
    pub populate: bool,
}

impl Default for ChunkedVectorOptions {
    fn default() -> Self {
        ChunkedVectorOptions {
            chunk_size_bytes: DEFAULT_CHUNK_SIZE,
            populate: false,
        }
    }
}

impl ChunkedVectorOptions {
    /// Default chunk size, pages faulted in at open (`InRam` mode).
    pub fn in_ram() -> Self {
        ChunkedVectorOptions {
            populate: true,
            ..Self::default()
        }
    }

    /// This configuration with chunks of at most `bytes` data bytes.
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size_bytes = bytes;
        self
    }

    /// This configuration with the populate (`InRam`) flag set to `populate`.
    pub fn with_populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }
}

/// Contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConfigFile {
    format_version: u32,
    dim: usize,
    distance: Distance,
    element: String,
    chunk_size_bytes: usize,
    chunk_vectors: usize,
    populate: bool,
}

/// Header of `chunk_N.dat` (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct ChunkHeader {
    prefix: FilePrefix,
    chunk_index: u32,
    dim: u32,
    element_tag: u32,
    reserved0: u32,
    chunk_vectors: u64,
    reserved: [u64; 3],
}

/// `status.dat`: a [`CheckedHeader`] whose value is the committed vector
/// count (CRC 0 in files of older builds: unchecked).
fn status_header(count: u64) -> CheckedHeader {
    CheckedHeader::new(STATUS_MAGIC, FORMAT_VERSION, count)
}

/// Header of `deleted.dat` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct DeletedHeader {
    prefix: FilePrefix,
    reserved: [u64; 2],
}

/// Appendable vectors in preallocated, memory-mapped chunk files; see the
/// module documentation for the layout and durability rules.
#[derive(Debug)]
pub struct ChunkedVectorStorage<T = f32> {
    dir: PathBuf,
    dim: usize,
    distance: Distance,
    vector_bytes: usize,
    /// log2 of the vectors per chunk.
    chunk_shift: u32,
    populate: bool,
    /// Advice of every chunk mapping (the process-wide default wins).
    advice: AdviceSetting,
    chunks: Vec<MmapFileMut>,
    /// Chunks written since the last flush.
    dirty_chunks: Vec<usize>,
    count: usize,
    /// The count `status.dat` holds (offsets at or past it are invisible on disk).
    persisted_count: usize,
    status: MmapFileMut,
    deleted: BitVec<u64>,
    deleted_count: usize,
    deleted_file: MmapFileMut,
    /// Range of deleted-flag words changed since the last flush.
    deleted_dirty: Option<(usize, usize)>,
    _element: PhantomData<fn() -> T>,
}

impl<T: VectorElement> ChunkedVectorStorage<T> {
    /// Create an empty storage in `dir` (created if missing; an existing
    /// storage there is an error).
    pub fn create(
        dir: &Path,
        dim: usize,
        distance: Distance,
        config: ChunkedVectorOptions,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(StorageError::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        let vector_bytes = dim
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| StorageError::InvalidArgument("dimension too large".into()))?;
        let fit = (config.chunk_size_bytes / vector_bytes).max(1);
        // Largest power of two <= fit.
        let chunk_vectors = 1usize << (usize::BITS - 1 - fit.leading_zeros());
        prepare_new_dir(dir, CONFIG_FILE)?;
        let status = status_header(0);
        MmapFileMut::create(
            &dir.join(STATUS_FILE),
            STATUS_LEN as u64,
            bytemuck::bytes_of(&status),
        )?;
        let deleted = DeletedHeader {
            prefix: FilePrefix::new::<DeletedHeader>(DELETED_MAGIC, FORMAT_VERSION),
            reserved: [0; 2],
        };
        MmapFileMut::create(
            &dir.join(DELETED_FILE),
            (DELETED_HEADER_LEN + MIN_DELETED_WORDS * 8) as u64,
            bytemuck::bytes_of(&deleted),
        )?;
        // config.json last: its presence marks a complete storage.
        write_json(
            &dir.join(CONFIG_FILE),
            &ConfigFile {
                format_version: FORMAT_VERSION,
                dim,
                distance,
                element: T::NAME.to_string(),
                chunk_size_bytes: chunk_vectors * vector_bytes,
                chunk_vectors,
                populate: config.populate,
            },
        )?;
        Self::open(dir)
    }

    /// Open the storage in `dir`, validating every file.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_inner(dir, None)
    }

    /// Open the storage in `dir`, overriding the populate (`InRam`) flag
    /// stored in its `config.json`.
    pub fn open_with_populate(dir: &Path, populate: bool) -> Result<Self> {
        Self::open_inner(dir, Some(populate))
    }

    fn open_inner(dir: &Path, populate: Option<bool>) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let config: ConfigFile = read_json(&config_path)?;
        check_version(&config_path, config.format_version, FORMAT_VERSION)?;
        let bad = |reason: String| StorageError::corrupted(&config_path, reason);
        if config.element != T::NAME {
            return Err(bad(format!(
                "element type {:?}, this storage was opened as {:?}",
                config.element,
                T::NAME
            )));
        }
        if config.dim == 0 || config.dim > u32::MAX as usize {
            return Err(bad(format!("invalid dimension {}", config.dim)));
        }
        let vector_bytes = config.dim * std::mem::size_of::<T>();
        if config.chunk_vectors == 0 || !config.chunk_vectors.is_power_of_two() {
            return Err(bad(format!(
                "chunk_vectors {} is not a power of two",
                config.chunk_vectors
            )));
        }
        if config.chunk_vectors.checked_mul(vector_bytes) != Some(config.chunk_size_bytes) {
            return Err(bad(format!(
                "chunk_size_bytes {} != chunk_vectors {} * vector bytes {vector_bytes}",
                config.chunk_size_bytes, config.chunk_vectors
            )));
        }
        let populate = populate.unwrap_or(config.populate);

        let status_path = dir.join(STATUS_FILE);
        let status = MmapFileMut::open(&status_path)?;
        let stored = CheckedHeader::read(
            &status_path,
            status.bytes(),
            STATUS_MAGIC,
            FORMAT_VERSION,
            true,
        )?;
        if status.len() != STATUS_LEN {
            return Err(StorageError::corrupted(
                &status_path,
                format!("file is {} bytes, expected {STATUS_LEN}", status.len()),
            ));
        }
        let count = usize::try_from(stored)
            .ok()
            .filter(|&c| c <= u32::MAX as usize + 1)
            .ok_or_else(|| {
                StorageError::corrupted(&status_path, format!("invalid count {stored}"))
            })?;

        let chunk_shift = config.chunk_vectors.trailing_zeros();
        let needed = count.div_ceil(config.chunk_vectors);
        let mut chunks = Vec::new();
        loop {
            let path = chunk_path(dir, chunks.len());
            if !path.exists() {
                break;
            }
            let chunk = MmapFileMut::open(&path)?;
            validate_chunk::<T>(&path, &chunk, chunks.len(), &config, vector_bytes)?;
            chunk.advise(AdviceSetting::Global.resolve(DEFAULT_ADVICE));
            if populate {
                chunk.populate();
            }
            chunks.push(chunk);
        }
        if chunks.len() < needed {
            return Err(StorageError::corrupted(
                chunk_path(dir, chunks.len()),
                format!("missing: status.dat counts {count} vectors, which need {needed} chunks"),
            ));
        }

        let deleted_path = dir.join(DELETED_FILE);
        let deleted_file = MmapFileMut::open(&deleted_path)?;
        read_header::<DeletedHeader>(
            &deleted_path,
            deleted_file.bytes(),
            DELETED_MAGIC,
            FORMAT_VERSION,
        )?;
        let body = &deleted_file.bytes()[DELETED_HEADER_LEN..];
        if !body.len().is_multiple_of(8) || body.len() / 8 * 64 < count {
            return Err(StorageError::corrupted(
                &deleted_path,
                format!(
                    "{} bytes of flags cannot hold {count} vectors in whole u64 words",
                    body.len()
                ),
            ));
        }
        let words: Vec<u64> = body
            .chunks_exact(8)
            .take(count.div_ceil(64))
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
            .collect();
        let mut deleted = BitVec::<u64>::from_vec(words);
        deleted.truncate(count);
        let deleted_count = deleted.count_ones();

        Ok(ChunkedVectorStorage {
            dir: dir.to_path_buf(),
            dim: config.dim,
            distance: config.distance,
            vector_bytes,
            chunk_shift,
            populate,
            advice: AdviceSetting::Global,
            chunks,
            dirty_chunks: Vec::new(),
            count,
            persisted_count: count,
            status,
            deleted,
            deleted_count,
            deleted_file,
            deleted_dirty: None,
            _element: PhantomData,
        })
    }

    /// The storage's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vectors per chunk file.
    pub fn chunk_vectors(&self) -> usize {
        1 << self.chunk_shift
    }

    /// Number of chunk files (including preallocated, still empty ones).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the storage runs in `InRam` mode (chunks populated).
    pub fn is_populated(&self) -> bool {
        self.populate
    }

    /// The advice of the chunk mappings: the one given to
    /// [`ChunkedVectorStorage::set_advice`] if any, else the process-wide
    /// default ([`vecseg_mmap::set_global_advice`]) if one is set, else
    /// [`Advice::Normal`] (scans get read-ahead).
    pub fn advice(&self) -> Advice {
        self.advice.resolve(DEFAULT_ADVICE)
    }

    /// Advise every chunk mapping, and the ones created later, with
    /// `advice` (whatever the process-wide default). [`Advice::Random`]
    /// makes a cold point read fetch one page instead of the kernel's
    /// read-around window; [`Advice::Normal`] keeps read-ahead for cold scans.
    pub fn set_advice(&mut self, advice: Advice) {
        self.advice = AdviceSetting::Advice(advice);
        for c in &self.chunks {
            c.advise(self.advice());
        }
    }

    /// Fault every chunk page in now.
    pub fn populate(&self) {
        for c in &self.chunks {
            c.populate();
        }
    }

    /// Call `f(flat, first, sub_range)` for each chunk that `range` (clipped
    /// to the stored count) touches: `flat` is the chunk's slice, whose
    /// first vector is at offset `first`, and `sub_range` the part of
    /// `range` inside it.
    fn for_each_chunk(
        &self,
        range: std::ops::Range<PointOffset>,
        mut f: impl FnMut(&[T], PointOffset, std::ops::Range<PointOffset>),
    ) -> Result<()> {
        let end = (range.end as usize).min(self.count);
        let mut start = (range.start as usize).min(end);
        while start < end {
            let index = start >> self.chunk_shift;
            let first = index << self.chunk_shift;
            let stop = end.min(first + self.chunk_vectors());
            f(
                self.chunk_slice(index)?,
                first as PointOffset,
                start as PointOffset..stop as PointOffset,
            );
            start = stop;
        }
        Ok(())
    }

    /// The vectors of chunk `index` that are in use, as one flat slice of
    /// `len * dim` components (for scans that want whole chunks at a time).
    pub fn chunk_slice(&self, index: usize) -> Result<&[T]> {
        let first = index << self.chunk_shift;
        let used = self.count.saturating_sub(first).min(self.chunk_vectors());
        let chunk = self
            .chunks
            .get(index)
            .ok_or(StorageError::OffsetOutOfRange {
                offset: first.min(u32::MAX as usize) as PointOffset,
                len: self.count,
            })?;
        let bytes = chunk
            .bytes()
            .get(CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + used * self.vector_bytes)
            .ok_or_else(|| StorageError::corrupted(chunk.path(), "chunk shorter than expected"))?;
        cast(chunk.path(), bytes)
    }

    fn mark_deleted_dirty(&mut self, index: usize) {
        let w = index / 64;
        self.deleted_dirty = Some(match self.deleted_dirty {
            None => (w, w + 1),
            Some((a, b)) => (a.min(w), b.max(w + 1)),
        });
    }

    fn add_chunk(&mut self) -> Result<()> {
        let index = self.chunks.len();
        let header = ChunkHeader {
            prefix: FilePrefix::new::<ChunkHeader>(CHUNK_MAGIC, FORMAT_VERSION),
            chunk_index: index as u32,
            dim: self.dim as u32,
            element_tag: T::TAG,
            reserved0: 0,
            chunk_vectors: self.chunk_vectors() as u64,
            reserved: [0; 3],
        };
        let len = CHUNK_HEADER_LEN + self.chunk_vectors() * self.vector_bytes;
        let chunk = MmapFileMut::create(
            &chunk_path(&self.dir, index),
            len as u64,
            bytemuck::bytes_of(&header),
        )?;
        chunk.advise(self.advice());
        if self.populate {
            chunk.populate();
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// Grow `deleted.dat` (by doubling) to hold every flag word in RAM.
    fn grow_deleted_file(&mut self) -> Result<()> {
        let needed = DELETED_HEADER_LEN + self.deleted.as_raw_slice().len() * 8;
        if self.deleted_file.len() < needed {
            let mut cap = (self.deleted_file.len() - DELETED_HEADER_LEN) / 8;
            while DELETED_HEADER_LEN + cap * 8 < needed {
                cap = (cap * 2).max(MIN_DELETED_WORDS);
            }
            self.deleted_file
                .resize((DELETED_HEADER_LEN + cap * 8) as u64)?;
        }
        Ok(())
    }

    /// The part of the flag changes that may reach disk before the id
    /// mappings: the flags of offsets appended since the last flush (copied
    /// as they are; no reader of the files looks past the old count) and
    /// cleared flags of older offsets (a live flag on an unmapped offset is
    /// repaired at open). Newly set flags of older offsets wait for
    /// `flush_deleted`: on disk they would hide points whose mappings on
    /// disk still point at them. Runs before the count is advanced.
    fn write_safe_flags(&mut self) -> Result<()> {
        let Some((from, to)) = self.deleted_dirty else {
            return Ok(());
        };
        self.grow_deleted_file()?;
        let (old_end, new_end) = (self.persisted_count, self.count);
        let words = self.deleted.as_raw_slice();
        let to = to.min(words.len());
        let bytes = self.deleted_file.bytes_mut();
        for (w, &ram) in words.iter().enumerate().take(to).skip(from) {
            let at = DELETED_HEADER_LEN + w * 8;
            let file = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
            let appended = bit_range_mask(w, old_end, new_end);
            let word = (file & ram & !appended) | (ram & appended);
            bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
        }
        self.deleted_file
            .flush_range(DELETED_HEADER_LEN + from * 8, to.saturating_sub(from) * 8)
    }

    fn write_deleted_words(&mut self) -> Result<()> {
        let Some((from, to)) = self.deleted_dirty else {
            return Ok(());
        };
        self.grow_deleted_file()?;
        let words = self.deleted.as_raw_slice();
        let to = to.min(words.len());
        let bytes = self.deleted_file.bytes_mut();
        for (w, word) in words.iter().enumerate().take(to).skip(from) {
            let at = DELETED_HEADER_LEN + w * 8;
            bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
        }
        self.deleted_file
            .flush_range(DELETED_HEADER_LEN + from * 8, (to.saturating_sub(from)) * 8)?;
        self.deleted_dirty = None;
        Ok(())
    }
}

/// Bits of flag word `w` that belong to offsets in `start..end`.
fn bit_range_mask(w: usize, start: usize, end: usize) -> u64 {
    let (lo, hi) = (w * 64, w * 64 + 64);
    let (a, b) = (start.clamp(lo, hi) - lo, end.clamp(lo, hi) - lo);
    if a >= b {
        return 0;
    }
    let upto = |n: usize| if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    upto(b) & !upto(a)
}

fn cast<'a, T: VectorElement>(path: &Path, bytes: &'a [u8]) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(bytes)
        .map_err(|e| StorageError::corrupted(path, format!("cannot view vector bytes: {e}")))
}

fn validate_chunk<T: VectorElement>(
    path: &Path,
    chunk: &MmapFileMut,
    index: usize,
    config: &ConfigFile,
    vector_bytes: usize,
) -> Result<()> {
    let h: ChunkHeader = read_header(path, chunk.bytes(), CHUNK_MAGIC, FORMAT_VERSION)?;
    let bad = |reason: String| Err(StorageError::corrupted(path, reason));
    if h.chunk_index as usize != index {
        return bad(format!(
            "chunk index {} in file named {index}",
            h.chunk_index
        ));
    }
    if h.dim as usize != config.dim {
        return bad(format!(
            "dimension {} (config.json says {})",
            h.dim, config.dim
        ));
    }
    if h.element_tag != T::TAG {
        return bad(format!(
            "element tag {} (expected {})",
            h.element_tag,
            T::TAG
        ));
    }
    if h.chunk_vectors != config.chunk_vectors as u64 {
        return bad(format!(
            "{} vectors per chunk (config.json says {})",
            h.chunk_vectors, config.chunk_vectors
        ));
    }
    let want = CHUNK_HEADER_LEN + config.chunk_vectors * vector_bytes;
    if chunk.len() != want {
        return bad(format!("file is {} bytes, expected {want}", chunk.len()));
    }
    Ok(())
}

impl<T: VectorElement> VectorStorageRead for ChunkedVectorStorage<T> {
    type Element = T;
    type Vector<'a> = &'a [T];
    type Scorer<'a> = RawScorer<'a, Self>;

    fn scorer(&self, query: &[T]) -> Result<Self::Scorer<'_>> {
        Ok(RawScorer::new(self, query))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn total_count(&self) -> usize {
        self.count
    }

    fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    #[inline]
    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<&[T]> {
        let o = offset as usize;
        if o >= self.count {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.count,
            });
        }
        let chunk = o >> self.chunk_shift;
        let slot = o & (self.chunk_vectors() - 1);
        let start = CHUNK_HEADER_LEN + slot * self.vector_bytes;
        match self.chunks.get(chunk) {
            Some(c) => match c.bytes().get(start..start + self.vector_bytes) {
                Some(bytes) => cast(c.path(), bytes),
                None => Err(StorageError::corrupted(
                    c.path(),
                    "chunk shorter than expected",
                )),
            },
            None => Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.count,
            }),
        }
    }

    fn prefetch(&self, offset: PointOffset) {
        if let Ok(v) = self.get::<vecseg_traits::Random>(offset) {
            vecseg_mmap::prefetch(v);
        }
    }

    fn deleted_bits(&self) -> &BitSlice<u64> {
        &self.deleted
    }

    fn scan_live<P: AccessPattern, F: FnMut(PointOffset, &[T])>(
        &self,
        range: std::ops::Range<PointOffset>,
        mut f: F,
    ) -> Result<()> {
        self.for_each_chunk(range, |flat, first, range| {
            scan_flat(flat, self.dim, first, &self.deleted, range, &mut f);
        })
    }

    fn scan_blocks<P: AccessPattern, F: FnMut(PointOffset, &[T], u64)>(
        &self,
        range: std::ops::Range<PointOffset>,
        mut f: F,
    ) -> Result<()> {
        self.for_each_chunk(range, |flat, first, range| {
            scan_flat_blocks(flat, self.dim, first, &self.deleted, range, &mut f);
        })
    }

    fn drop_page_cache(&self) -> Result<bool> {
        for chunk in &self.chunks {
            chunk.clear_cache()?;
        }
        Ok(true)
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

impl<T: VectorElement> VectorStorage for ChunkedVectorStorage<T> {
    fn delete(&mut self, offset: PointOffset) -> Result<bool> {
        self.check_offset(offset)?;
        let was_live = !self.deleted.replace(offset as usize, true);
        if was_live {
            self.deleted_count += 1;
            self.mark_deleted_dirty(offset as usize);
        }
        Ok(was_live)
    }

    /// Chunks (msync), then the flags of appended offsets, then the count
    /// in `status.dat`.
    fn flush_data(&mut self) -> Result<()> {
        self.dirty_chunks.sort_unstable();
        self.dirty_chunks.dedup();
        for &c in &self.dirty_chunks {
            if let Some(chunk) = self.chunks.get(c) {
                chunk.flush()?;
            }
        }
        self.dirty_chunks.clear();
        self.write_safe_flags()?;
        let status = status_header(self.count as u64);
        if self.status.bytes().get(..STATUS_LEN) != Some(bytemuck::bytes_of(&status)) {
            // One `pwrite`, so a kill never leaves half a header behind.
            let path = self.status.path().to_path_buf();
            self.status
                .file()
                .write_all_at(bytemuck::bytes_of(&status), 0)
                .at(&path)?;
            self.status.flush()?;
        }
        self.persisted_count = self.count;
        Ok(())
    }

    /// The changed flag words into `deleted.dat`, msynced.
    fn flush_deleted(&mut self) -> Result<()> {
        self.write_deleted_words()
    }
}

impl<T: VectorElement> AppendableVectorStorage for ChunkedVectorStorage<T> {
    fn insert(&mut self, offset: PointOffset, vector: &[T]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(StorageError::DimensionMismatch {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let o = offset as usize;
        if o > self.count {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.count,
            });
        }
        let chunk = o >> self.chunk_shift;
        while self.chunks.len() <= chunk {
            self.add_chunk()?;
        }
        let start = CHUNK_HEADER_LEN + (o & (self.chunk_vectors() - 1)) * self.vector_bytes;
        let vb = self.vector_bytes;
        let file = &mut self.chunks[chunk];
        let path = file.path().to_path_buf();
        let dst = file
            .bytes_mut()
            .get_mut(start..start + vb)
            .ok_or_else(|| StorageError::corrupted(&path, "chunk shorter than expected"))?;
        dst.copy_from_slice(bytemuck::cast_slice(vector));
        if self.dirty_chunks.last() != Some(&chunk) {
            self.dirty_chunks.push(chunk);
        }
        if o == self.count {
            self.count += 1;
            self.deleted.push(false);
            // The word on disk may hold a stale bit from appends lost in a
            // crash; rewrite it at the next flush.
            self.mark_deleted_dirty(o);
        } else if self.deleted.replace(o, false) {
            self.deleted_count -= 1;
            self.mark_deleted_dirty(o);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::bit_range_mask;

    #[test]
    fn bit_range_mask_covers_exactly_the_range() {
        for w in 0..3usize {
            for start in 0..200usize {
                for end in [start, start + 1, start + 63, start + 64, 200] {
                    let m = bit_range_mask(w, start, end);
                    for b in 0..64 {
                        let o = w * 64 + b;
                        assert_eq!(
                            m >> b & 1 == 1,
                            o >= start && o < end,
                            "w{w} {start}..{end} bit {b}"
                        );
                    }
                }
            }
        }
    }
}
