//! [`MmapIdMapper`]: immutable id map over memory-mapped arrays with a
//! minimal perfect hash function (fingerprint-based `ph::fmph::Function`).
//!
//! ## Layout and lookups
//!
//! Numeric ids and UUIDs get separate perfect hash functions (PHFs), so a
//! numeric id and a UUID with the same bits never collide and each kind is
//! hashed as its natural integer (`u64` / `u128`). The PHFs are loaded into
//! RAM at open (about 2.8 bits per key); everything else is mapped:
//!
//! | file                | entry (per)            | role                                    |
//! |---------------------|------------------------|-----------------------------------------|
//! | `ids_phf.bin`       | ~2.8 bits (id)         | the two PHFs (`num`, `uuid`)            |
//! | `ids_slots.dat`     | `u32` (numeric id)     | PHF slot → offset, bit 31 = dropped     |
//! | `ids_uuids.dat`     | 24 B (UUID id)         | PHF slot → {uuid, offset, dropped}      |
//! | `ids_external.dat`  | `u64` (offset)         | offset → numeric id, or UUID slot index |
//! | `ids_flags.dat`     | 2 bits (offset)        | deleted bitmap + is-UUID bitmap         |
//! | `ids_versions.dat`  | `u64` (offset)         | version slot ([`vecseg_traits::version_slot`], 0 = none) |
//! | `ids_order.dat`     | `u32` (mapped id)      | offsets sorted by external id           |
//!
//! * **numeric id → offset**: `s = phf_num(id)`, `e = slots[s]`; the id is
//!   present iff `e`'s dropped bit is clear and `external[e] == id`. The
//!   internal → external array doubles as the membership check (a PHF maps
//!   unknown keys to some slot too), so ids are stored once. Cold, this
//!   touches two pages beyond the in-RAM hash function: one of `slots`, one
//!   of `external`.
//! * **UUID → offset**: `s = phf_uuid(uuid)`, the record `uuids[s]` holds the
//!   UUID itself (the check), its offset and the dropped bit: one page.
//! * **offset → id**: deleted bit, is-UUID bit, then `external[o]` (a numeric
//!   id, or the UUID's slot in `ids_uuids.dat`).
//!
//! Memory per numeric point: PHF ≈ 0.35 B + slot 4 B + external 8 B + flags
//! 0.25 B ≈ **12.6 B** for the two-way mapping. The ordering index
//! (`ids_order.dat`, 4 B) is not part of the mapping: it is read only by
//! [`IdMapperRead::iter_from`] (binary search + scan), so its pages are
//! faulted in only while iterating in id order and never by lookups; with it
//! the files total ≈ 16.6 B per numeric point. Versions (8 B) are excluded
//! from the budget by definition. A UUID point costs 24 B (record) + 8 B
//! (external) + flags + PHF.
//!
//! ## Writes and crash safety
//!
//! Immutable means no new points. [`IdMapper::drop_id`] sets the dropped bit
//! of the slot (or UUID record) *and* the offset's deleted bit, in place (a
//! drop vouches for nothing, and the segment flags the vector deleted only
//! after it); [`IdMapper::set_version`] buffers the version in RAM, and
//! [`IdMapper::flush_versions`] writes it (a version vouches for the
//! point's data, which the segment flushes first). Before the
//! first drop after a flush, a `dirty` word in the flags header is set and
//! synced; [`IdMapper::flush_mappings`] syncs slots, records and flags, then
//! clears it. Opening a dirty mapper reconciles both copies of the dropped
//! state (a drop recorded in either wins), so a crash between the writes
//! can never leave `internal` and `external` disagreeing.
//!
//! Offsets must be below 2^31 (bit 31 of a slot is the dropped flag).
//! Every file is validated at open (magic, version, lengths against the
//! headers, bits past the end, the PHFs' own encoding, and a sample of ids
//! hashed back to their offsets, which catches a PHF written with a
//! different hasher); every index read from a file is bounds-checked on use.
//! Byte layouts are in `docs/file-formats.md`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use ph::fmph;
use vecseg_traits::version_slot;
use vecseg_traits::{
    IdMapper, IdMapperRead, IoResultExt, PointId, PointOffset, Result, StorageError, Version,
};

use crate::advice::Advice;
use crate::file::{MmapFile, MmapFileMut};
use crate::header::{cast_slice, cast_slice_mut, read_header, FilePrefix};
use crate::payload::{bit, bitmap_words, has_bits_past, set_bit, write_new_file};

/// File holding the two perfect hash functions.
pub const IDS_PHF_FILE: &str = "ids_phf.bin";
/// File mapping numeric-id PHF slots to offsets.
pub const IDS_SLOTS_FILE: &str = "ids_slots.dat";
/// File of UUID records in UUID-PHF slot order.
pub const IDS_UUIDS_FILE: &str = "ids_uuids.dat";
/// File mapping offsets to external ids.
pub const IDS_EXTERNAL_FILE: &str = "ids_external.dat";
/// File of the deleted and is-UUID bitmaps.
pub const IDS_FLAGS_FILE: &str = "ids_flags.dat";
/// File of per-offset versions.
pub const IDS_VERSIONS_FILE: &str = "ids_versions.dat";
/// File of offsets in external-id order.
pub const IDS_ORDER_FILE: &str = "ids_order.dat";

/// Format version of every id-map file.
pub const IDS_FORMAT_VERSION: u32 = 1;

const PHF_MAGIC: [u8; 8] = *b"VSIDPHF_";
const SLOTS_MAGIC: [u8; 8] = *b"VSIDSLOT";
const UUIDS_MAGIC: [u8; 8] = *b"VSIDUUID";
const EXTERNAL_MAGIC: [u8; 8] = *b"VSIDEXTL";
const FLAGS_MAGIC: [u8; 8] = *b"VSIDFLAG";
const VERSIONS_MAGIC: [u8; 8] = *b"VSIDVERS";
const ORDER_MAGIC: [u8; 8] = *b"VSIDORDR";

/// Bit of a slot entry / UUID record marking a dropped id.
const DROPPED: u32 = 1 << 31;
/// Largest number of offsets a mapper can cover.
pub const MAX_TOTAL: usize = 1 << 31;
/// Stored in a format-1 `ids_versions.dat` for offsets without a version
/// (format 2 stores 0); never a valid version.
pub const NO_VERSION: Version = u64::MAX;
/// Format version of `ids_versions.dat` (its slots carry a check byte,
/// [`vecseg_traits::version_slot`]); format 1 is converted at open.
pub const IDS_VERSIONS_FORMAT_VERSION: u32 = 2;

/// Header of `ids_phf.bin` (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PhfHeader {
    prefix: FilePrefix,
    num_keys: u64,
    uuid_keys: u64,
    num_phf_bytes: u64,
    uuid_phf_bytes: u64,
}

/// Header of the files holding one count (24 bytes): slots, uuids,
/// external, versions, order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct CountHeader {
    prefix: FilePrefix,
    count: u64,
}

/// Header of `ids_flags.dat` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct FlagsHeader {
    prefix: FilePrefix,
    total: u64,
    /// 1 while drops may be only partly written (see the module docs).
    dirty: u64,
}

/// One UUID record of `ids_uuids.dat` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct UuidRecord {
    /// The UUID's 16 bytes (RFC 4122 order).
    uuid: [u8; 16],
    /// Offset, bit 31 = dropped.
    entry: u32,
    _pad: u32,
}

const COUNT_START: usize = std::mem::size_of::<CountHeader>();
const FLAGS_START: usize = std::mem::size_of::<FlagsHeader>();

type Phf = fmph::Function;

/// Figures recorded by [`MmapIdMapper::build_with_stats`].
#[derive(Debug, Clone, Default)]
pub struct IdMapBuildStats {
    /// Mapped ids.
    pub ids: usize,
    /// Wall time of the whole build (collect, hash, write, fsync, open).
    pub total_time: Duration,
    /// Wall time spent constructing the perfect hash functions.
    pub phf_time: Duration,
}

/// Sizes of an opened mapper, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdMapSizes {
    /// Mapped ids at build (numeric + UUID).
    pub ids: usize,
    /// Bytes of the two PHFs in RAM (serialized size).
    pub phf_bytes: usize,
    /// Bits per key of the PHFs.
    pub phf_bits_per_key: f64,
    /// Bytes of the two-way mapping: PHFs, slots, UUID records, external
    /// array and flags (headers excluded; versions and order excluded).
    pub mapping_bytes: usize,
    /// `mapping_bytes` per mapped id.
    pub mapping_bytes_per_id: f64,
    /// Bytes of the ordering index (`ids_order.dat` payload).
    pub order_bytes: usize,
    /// Bytes of the versions array.
    pub versions_bytes: usize,
}

/// Immutable, memory-mapped id mapper: perfect-hash lookups, in-place drops
/// and versions. See the [module docs](self) for the layout.
///
/// ```no_run
/// # fn demo(source: &vecseg_memory::MemoryIdMapper) -> vecseg_traits::Result<()> {
/// use vecseg_mmap::id_map::MmapIdMapper;
/// use vecseg_traits::{IdMapperRead, PointId};
/// let ids = MmapIdMapper::build(std::path::Path::new("/tmp/ids"), source)?;
/// let offset = ids.internal(PointId::Num(42));
/// # Ok(()) }
/// ```
pub struct MmapIdMapper {
    dir: PathBuf,
    num_phf: Option<Phf>,
    uuid_phf: Option<Phf>,
    phf_bytes: usize,
    slots: MmapFileMut,
    uuids: MmapFileMut,
    external: MmapFile,
    flags: MmapFileMut,
    versions: MmapFileMut,
    order: MmapFile,
    total: usize,
    num_keys: usize,
    uuid_keys: usize,
    available: usize,
    mappings_dirty: bool,
    /// Versions set since the last flush, not yet written to the file.
    pending_versions: std::collections::BTreeMap<PointOffset, Version>,
}

impl std::fmt::Debug for MmapIdMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapIdMapper")
            .field("dir", &self.dir)
            .field("total", &self.total)
            .field("num_keys", &self.num_keys)
            .field("uuid_keys", &self.uuid_keys)
            .field("available", &self.available)
            .finish_non_exhaustive()
    }
}

fn corrupted(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::corrupted(path, reason)
}

fn build_phf<K: std::hash::Hash + Sync + Send>(keys: Vec<K>, what: &str) -> Result<Option<Phf>> {
    if keys.is_empty() {
        return Ok(None);
    }
    Phf::try_with_conf_stats(keys, fmph::BuildConf::default(), &mut ())
        .map(Some)
        .ok_or_else(|| {
            StorageError::InvalidArgument(format!(
                "perfect hash construction over {what} ids failed (duplicate ids?)"
            ))
        })
}

fn phf_to_bytes(phf: &Option<Phf>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(f) = phf {
        out.reserve(f.write_bytes());
        // Writing to a Vec cannot fail.
        let _ = f.write(&mut out);
    }
    out
}

/// Decode one VByte (as written by `binout`, which `ph` uses) from `bytes`
/// at `*pos`.
fn read_vbyte(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0u32;
    while shift < 56 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= ((b & 0x7F) as u64) << shift;
        if b < 128 {
            return Some(result);
        }
        shift += 7;
    }
    let b = *bytes.get(*pos)?;
    *pos += 1;
    Some(result | ((b as u64) << shift))
}

/// Parse a serialized PHF over `keys` keys, checking its structure first so
/// a damaged file cannot make `ph` allocate absurd amounts or misbehave.
fn parse_phf(path: &Path, bytes: &[u8], keys: usize, what: &str) -> Result<Option<Phf>> {
    if keys == 0 {
        if !bytes.is_empty() {
            return Err(corrupted(path, format!("{what} PHF present for zero keys")));
        }
        return Ok(None);
    }
    let bad = |reason: String| corrupted(path, format!("{what} PHF: {reason}"));
    let mut pos = 0usize;
    let levels = read_vbyte(bytes, &mut pos).ok_or_else(|| bad("truncated".into()))?;
    if levels == 0 || levels > 256 {
        return Err(bad(format!("{levels} levels")));
    }
    let mut words = 0u64;
    for _ in 0..levels {
        let size = read_vbyte(bytes, &mut pos).ok_or_else(|| bad("truncated".into()))?;
        if size == 0 {
            return Err(bad("empty level".into()));
        }
        words = words
            .checked_add(size)
            .filter(|w| *w <= (bytes.len() / 8) as u64)
            .ok_or_else(|| bad("level sizes exceed the file".into()))?;
    }
    if (bytes.len() - pos) as u64 != words * 8 {
        return Err(bad(format!(
            "{} bytes of bit array, levels need {}",
            bytes.len() - pos,
            words * 8
        )));
    }
    let mut input = bytes;
    let f = Phf::read(&mut input).map_err(|e| bad(e.to_string()))?;
    if f.len() != keys {
        return Err(bad(format!("encodes {} keys, header says {keys}", f.len())));
    }
    Ok(Some(f))
}

/// The format version in a file's prefix, if the file is long enough.
fn file_format_version(bytes: &[u8]) -> Option<u32> {
    let n = std::mem::size_of::<FilePrefix>();
    (bytes.len() >= n)
        .then(|| bytemuck::pod_read_unaligned::<FilePrefix>(&bytes[..n]).format_version)
}

/// Convert a format-1 `ids_versions.dat` (`NO_VERSION` = none) in place
/// into format 2 (0 = none, check bytes), the header last. A slot already
/// converted by an interrupted run (top byte set, not `NO_VERSION`) is kept.
fn convert_versions_v1(file: &mut MmapFileMut) -> Result<()> {
    let path = file.path().to_path_buf();
    let slots: &mut [u64] = cast_slice_mut(&path, &mut file.bytes_mut()[COUNT_START..])?;
    for (o, slot) in slots.iter_mut().enumerate() {
        if *slot == NO_VERSION {
            *slot = 0;
        } else if *slot >> 56 == 0 && *slot != 0 {
            *slot = version_slot::encode(o as PointOffset, *slot)?;
        }
    }
    file.flush()?;
    let bytes = file.bytes_mut();
    let mut header: CountHeader = bytemuck::pod_read_unaligned(&bytes[..COUNT_START]);
    header.prefix.format_version = IDS_VERSIONS_FORMAT_VERSION;
    bytes[..COUNT_START].copy_from_slice(bytemuck::bytes_of(&header));
    file.flush()
}

fn check_count_file(
    file_bytes: &[u8],
    path: &Path,
    magic: [u8; 8],
    entry: usize,
    what: &str,
    format_version: u32,
) -> Result<usize> {
    let h: CountHeader = read_header(path, file_bytes, magic, format_version)?;
    let count = usize::try_from(h.count)
        .ok()
        .filter(|c| *c <= MAX_TOTAL)
        .ok_or_else(|| corrupted(path, format!("{what} count {} out of range", h.count)))?;
    let body = file_bytes.len() - COUNT_START;
    if body as u64 != count as u64 * entry as u64 {
        return Err(corrupted(
            path,
            format!(
                "holds {body} bytes of {what}, header announces {count} entries of {entry} bytes"
            ),
        ));
    }
    Ok(count)
}

impl MmapIdMapper {
    /// Build a mapper in `dir` (created if missing; existing id-map files are
    /// replaced) holding every mapping and version of `source`, then open it.
    /// Offsets `0..source.total_count()` are covered; unmapped ones are
    /// deleted.
    ///
    /// Fails with [`StorageError::InvalidArgument`] when the source repeats
    /// an id or an offset, maps an offset past its total, covers more than
    /// [`MAX_TOTAL`] offsets, or holds the reserved version [`NO_VERSION`].
    pub fn build(dir: &Path, source: &impl IdMapperRead) -> Result<Self> {
        Self::build_with_stats(dir, source).map(|(m, _)| m)
    }

    /// [`build`](Self::build), also returning build timings.
    pub fn build_with_stats(
        dir: &Path,
        source: &impl IdMapperRead,
    ) -> Result<(Self, IdMapBuildStats)> {
        let started = Instant::now();
        let total = source.total_count();
        if total > MAX_TOTAL {
            return Err(StorageError::InvalidArgument(format!(
                "{total} offsets exceed the id map's limit of {MAX_TOTAL}"
            )));
        }
        fs::create_dir_all(dir).at(dir)?;

        // Mapped points in external-id order (the source's iteration order;
        // sorted here if a source does not keep its promise).
        let mut pairs: Vec<(PointId, PointOffset)> =
            source.iter_from(None).collect::<Result<_>>()?;
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            pairs.sort_unstable_by_key(|p| p.0);
            if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(StorageError::InvalidArgument(format!(
                    "source maps id {} twice",
                    w[0].0
                )));
            }
        }
        let mut deleted = vec![u64::MAX; bitmap_words(total)];
        if total & 63 != 0 {
            if let Some(last) = deleted.last_mut() {
                *last = (1u64 << (total % 64)) - 1;
            }
        }
        let mut kinds = vec![0u64; bitmap_words(total)];
        let mut num_ids: Vec<u64> = Vec::new();
        let mut uuid_ids: Vec<u128> = Vec::new();
        for &(id, o) in &pairs {
            if o as usize >= total {
                return Err(StorageError::InvalidArgument(format!(
                    "source maps {id} to offset {o}, past its total {total}"
                )));
            }
            if !bit(&deleted, o as usize) {
                return Err(StorageError::InvalidArgument(format!(
                    "source maps offset {o} twice"
                )));
            }
            deleted[o as usize / 64] &= !(1u64 << (o % 64));
            match id {
                PointId::Num(n) => num_ids.push(n),
                PointId::Uuid(u) => {
                    set_bit(&mut kinds, o as usize);
                    uuid_ids.push(u.as_u128());
                }
            }
        }
        let num_keys = num_ids.len();
        let uuid_keys = uuid_ids.len();

        let phf_started = Instant::now();
        let num_phf = build_phf(num_ids, "numeric")?;
        let uuid_phf = build_phf(uuid_ids, "UUID")?;
        let phf_time = phf_started.elapsed();

        let mut slots = vec![0u32; num_keys];
        let mut records = vec![UuidRecord::zeroed(); uuid_keys];
        let mut external = vec![0u64; total];
        let slot_err = |id: PointId| {
            StorageError::InvalidArgument(format!("perfect hash has no slot for {id}"))
        };
        for &(id, o) in &pairs {
            match id {
                PointId::Num(n) => {
                    let s = num_phf
                        .as_ref()
                        .and_then(|f| f.get(&n))
                        .filter(|s| (*s as usize) < num_keys)
                        .ok_or_else(|| slot_err(id))? as usize;
                    slots[s] = o;
                    external[o as usize] = n;
                }
                PointId::Uuid(u) => {
                    let s = uuid_phf
                        .as_ref()
                        .and_then(|f| f.get(&u.as_u128()))
                        .filter(|s| (*s as usize) < uuid_keys)
                        .ok_or_else(|| slot_err(id))? as usize;
                    records[s] = UuidRecord {
                        uuid: *u.as_bytes(),
                        entry: o,
                        _pad: 0,
                    };
                    external[o as usize] = s as u64;
                }
            }
        }
        let mut versions = Vec::with_capacity(total);
        for o in 0..total {
            versions.push(match source.version(o as PointOffset)? {
                Some(v) => version_slot::encode(o as PointOffset, v)?,
                None => 0,
            });
        }

        let num_bytes = phf_to_bytes(&num_phf);
        let uuid_bytes = phf_to_bytes(&uuid_phf);
        let phf_header = PhfHeader {
            prefix: FilePrefix::new::<PhfHeader>(PHF_MAGIC, IDS_FORMAT_VERSION),
            num_keys: num_keys as u64,
            uuid_keys: uuid_keys as u64,
            num_phf_bytes: num_bytes.len() as u64,
            uuid_phf_bytes: uuid_bytes.len() as u64,
        };
        write_new_file(&dir.join(IDS_PHF_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&phf_header))?;
            w.write_all(&num_bytes)?;
            w.write_all(&uuid_bytes)
        })?;
        let count_header = |magic, count: usize| CountHeader {
            prefix: FilePrefix::new::<CountHeader>(magic, IDS_FORMAT_VERSION),
            count: count as u64,
        };
        write_new_file(&dir.join(IDS_SLOTS_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&count_header(SLOTS_MAGIC, num_keys)))?;
            w.write_all(bytemuck::cast_slice(&slots))
        })?;
        write_new_file(&dir.join(IDS_UUIDS_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&count_header(UUIDS_MAGIC, uuid_keys)))?;
            w.write_all(bytemuck::cast_slice(&records))
        })?;
        write_new_file(&dir.join(IDS_EXTERNAL_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&count_header(EXTERNAL_MAGIC, total)))?;
            w.write_all(bytemuck::cast_slice(&external))
        })?;
        let flags_header = FlagsHeader {
            prefix: FilePrefix::new::<FlagsHeader>(FLAGS_MAGIC, IDS_FORMAT_VERSION),
            total: total as u64,
            dirty: 0,
        };
        write_new_file(&dir.join(IDS_FLAGS_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&flags_header))?;
            w.write_all(bytemuck::cast_slice(&deleted))?;
            w.write_all(bytemuck::cast_slice(&kinds))
        })?;
        write_new_file(&dir.join(IDS_VERSIONS_FILE), |w| {
            let header = CountHeader {
                prefix: FilePrefix::new::<CountHeader>(VERSIONS_MAGIC, IDS_VERSIONS_FORMAT_VERSION),
                count: total as u64,
            };
            w.write_all(bytemuck::bytes_of(&header))?;
            w.write_all(bytemuck::cast_slice(&versions))
        })?;
        let order: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        drop(pairs);
        write_new_file(&dir.join(IDS_ORDER_FILE), |w| {
            w.write_all(bytemuck::bytes_of(&count_header(ORDER_MAGIC, order.len())))?;
            w.write_all(bytemuck::cast_slice(&order))
        })?;
        drop((slots, records, external, versions, order, deleted, kinds));

        let mapper = Self::open(dir)?;
        let stats = IdMapBuildStats {
            ids: num_keys + uuid_keys,
            total_time: started.elapsed(),
            phf_time,
        };
        Ok((mapper, stats))
    }

    /// Open a mapper built by [`build`](Self::build), advising the mapped
    /// arrays for random reads.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_advice(dir, Advice::Random)
    }

    /// Open with an explicit [`Advice`] for the lookup arrays (the
    /// process-wide default set by [`set_global_advice`](crate::set_global_advice)
    /// wins).
    pub fn open_with_advice(dir: &Path, advice: Advice) -> Result<Self> {
        // Perfect hash functions: read into RAM.
        let phf_path = dir.join(IDS_PHF_FILE);
        let phf_file = fs::read(&phf_path).at(&phf_path)?;
        let ph: PhfHeader = read_header(&phf_path, &phf_file, PHF_MAGIC, IDS_FORMAT_VERSION)?;
        let body = &phf_file[std::mem::size_of::<PhfHeader>()..];
        let (num_len, uuid_len) = (ph.num_phf_bytes, ph.uuid_phf_bytes);
        if num_len.checked_add(uuid_len) != Some(body.len() as u64) {
            return Err(corrupted(
                &phf_path,
                format!(
                    "holds {} bytes of hash functions, header announces {num_len} + {uuid_len}",
                    body.len()
                ),
            ));
        }
        let key_count = |n: u64| {
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_TOTAL)
                .ok_or_else(|| corrupted(&phf_path, format!("key count {n} out of range")))
        };
        let num_keys = key_count(ph.num_keys)?;
        let uuid_keys = key_count(ph.uuid_keys)?;
        let (num_body, uuid_body) = body.split_at(num_len as usize);
        let num_phf = parse_phf(&phf_path, num_body, num_keys, "numeric")?;
        let uuid_phf = parse_phf(&phf_path, uuid_body, uuid_keys, "UUID")?;

        let slots = MmapFileMut::open(&dir.join(IDS_SLOTS_FILE))?;
        slots.advise(advice);
        let n = check_count_file(
            slots.bytes(),
            slots.path(),
            SLOTS_MAGIC,
            4,
            "slots",
            IDS_FORMAT_VERSION,
        )?;
        if n != num_keys {
            return Err(corrupted(
                slots.path(),
                format!("{n} slots for {num_keys} numeric ids"),
            ));
        }
        let uuids = MmapFileMut::open(&dir.join(IDS_UUIDS_FILE))?;
        uuids.advise(advice);
        let n = check_count_file(
            uuids.bytes(),
            uuids.path(),
            UUIDS_MAGIC,
            std::mem::size_of::<UuidRecord>(),
            "UUID records",
            IDS_FORMAT_VERSION,
        )?;
        if n != uuid_keys {
            return Err(corrupted(
                uuids.path(),
                format!("{n} records for {uuid_keys} UUIDs"),
            ));
        }
        let external = MmapFile::open(&dir.join(IDS_EXTERNAL_FILE), advice)?;
        let total = check_count_file(
            external.bytes(),
            external.path(),
            EXTERNAL_MAGIC,
            8,
            "external ids",
            IDS_FORMAT_VERSION,
        )?;
        if num_keys + uuid_keys > total {
            return Err(corrupted(
                external.path(),
                format!("{total} offsets cannot hold {} ids", num_keys + uuid_keys),
            ));
        }
        let mut versions = MmapFileMut::open(&dir.join(IDS_VERSIONS_FILE))?;
        versions.advise(advice);
        if file_format_version(versions.bytes()) == Some(1) {
            check_count_file(
                versions.bytes(),
                versions.path(),
                VERSIONS_MAGIC,
                8,
                "versions",
                1,
            )?;
            convert_versions_v1(&mut versions)?;
        }
        let n = check_count_file(
            versions.bytes(),
            versions.path(),
            VERSIONS_MAGIC,
            8,
            "versions",
            IDS_VERSIONS_FORMAT_VERSION,
        )?;
        if n != total {
            return Err(corrupted(
                versions.path(),
                format!("{n} versions for {total} offsets"),
            ));
        }
        let order = MmapFile::open(&dir.join(IDS_ORDER_FILE), Advice::Normal)?;
        let n = check_count_file(
            order.bytes(),
            order.path(),
            ORDER_MAGIC,
            4,
            "order",
            IDS_FORMAT_VERSION,
        )?;
        if n != num_keys + uuid_keys {
            return Err(corrupted(
                order.path(),
                format!("{n} ordered offsets for {} ids", num_keys + uuid_keys),
            ));
        }

        let flags = MmapFileMut::open(&dir.join(IDS_FLAGS_FILE))?;
        let fh: FlagsHeader =
            read_header(flags.path(), flags.bytes(), FLAGS_MAGIC, IDS_FORMAT_VERSION)?;
        if fh.total != total as u64 {
            return Err(corrupted(
                flags.path(),
                format!(
                    "covers {} offsets, {IDS_EXTERNAL_FILE} has {total}",
                    fh.total
                ),
            ));
        }
        let words = bitmap_words(total);
        if flags.len() - FLAGS_START != 2 * words * 8 {
            return Err(corrupted(
                flags.path(),
                format!(
                    "bitmaps are {} bytes, expected {}",
                    flags.len() - FLAGS_START,
                    2 * words * 8
                ),
            ));
        }
        if fh.dirty > 1 {
            return Err(corrupted(
                flags.path(),
                format!("dirty word is {}", fh.dirty),
            ));
        }

        let mut mapper = MmapIdMapper {
            dir: dir.to_path_buf(),
            num_phf,
            uuid_phf,
            phf_bytes: body.len(),
            slots,
            uuids,
            external,
            flags,
            versions,
            order,
            total,
            num_keys,
            uuid_keys,
            available: 0,
            mappings_dirty: false,
            pending_versions: Default::default(),
        };
        {
            let (deleted, kinds) = mapper.bitmaps();
            if has_bits_past(deleted, total) || has_bits_past(kinds, total) {
                return Err(corrupted(
                    mapper.flags.path(),
                    "bits set past the last offset",
                ));
            }
            let uuid_count: usize = kinds.iter().map(|w| w.count_ones() as usize).sum();
            if uuid_count != uuid_keys {
                return Err(corrupted(
                    mapper.flags.path(),
                    format!("{uuid_count} offsets flagged UUID for {uuid_keys} UUIDs"),
                ));
            }
        }
        if fh.dirty == 1 {
            mapper.reconcile()?;
        }
        let deleted_count: usize = mapper
            .bitmaps()
            .0
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum();
        mapper.available = total - deleted_count;
        if mapper.available > num_keys + uuid_keys {
            return Err(corrupted(
                mapper.flags.path(),
                format!(
                    "{} live offsets for {} ids",
                    mapper.available,
                    num_keys + uuid_keys
                ),
            ));
        }
        mapper.check_sample()?;
        Ok(mapper)
    }

    /// After an unclean shutdown: make the dropped bits of slots / UUID
    /// records and the deleted bitmap agree (a drop recorded in either
    /// place wins), sync, and clear the dirty word.
    fn reconcile(&mut self) -> Result<()> {
        let total = self.total;
        let flags_path = self.flags.path().to_path_buf();
        let slots_path = self.slots.path().to_path_buf();
        let uuids_path = self.uuids.path().to_path_buf();
        let words = bitmap_words(total);
        let flag_words: &mut [u64] =
            cast_slice_mut(&flags_path, &mut self.flags.bytes_mut()[FLAGS_START..])?;
        let deleted = &mut flag_words[..words];
        let slots: &mut [u32] =
            cast_slice_mut(&slots_path, &mut self.slots.bytes_mut()[COUNT_START..])?;
        for e in slots.iter_mut() {
            let o = (*e & !DROPPED) as usize;
            if o >= total {
                return Err(corrupted(
                    &slots_path,
                    format!("slot points at offset {o} of {total}"),
                ));
            }
            if *e & DROPPED != 0 {
                set_bit(deleted, o);
            } else if bit(deleted, o) {
                *e |= DROPPED;
            }
        }
        let records: &mut [UuidRecord] =
            cast_slice_mut(&uuids_path, &mut self.uuids.bytes_mut()[COUNT_START..])?;
        for r in records.iter_mut() {
            let o = (r.entry & !DROPPED) as usize;
            if o >= total {
                return Err(corrupted(
                    &uuids_path,
                    format!("record points at offset {o} of {total}"),
                ));
            }
            if r.entry & DROPPED != 0 {
                set_bit(deleted, o);
            } else if bit(deleted, o) {
                r.entry |= DROPPED;
            }
        }
        self.mappings_dirty = true;
        self.flush_mappings()
    }

    /// Hash a spread of stored ids back to their offsets: catches a PHF
    /// file that does not belong to these arrays or was written with a
    /// different hash function.
    fn check_sample(&self) -> Result<()> {
        let order = self.order_slice();
        if order.is_empty() {
            return Ok(());
        }
        let step = (order.len() / 16).max(1);
        for &o in order.iter().step_by(step).chain(order.last()) {
            if bit(self.bitmaps().0, o as usize) {
                continue;
            }
            let id = self.external_raw(o).ok_or_else(|| {
                corrupted(self.order.path(), format!("offset {o} has no external id"))
            })?;
            if self.lookup(id) != Some(o) {
                return Err(corrupted(
                    &self.dir.join(IDS_PHF_FILE),
                    format!("id {id} of offset {o} does not hash back to it (file mismatch or different hash function)"),
                ));
            }
        }
        Ok(())
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[inline]
    fn slots_slice(&self) -> &[u32] {
        cast_slice(self.slots.path(), &self.slots.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    #[inline]
    fn records(&self) -> &[UuidRecord] {
        cast_slice(self.uuids.path(), &self.uuids.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    #[inline]
    fn external_slice(&self) -> &[u64] {
        cast_slice(self.external.path(), &self.external.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    fn order_slice(&self) -> &[u32] {
        cast_slice(self.order.path(), &self.order.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    fn versions_slice(&self) -> &[u64] {
        cast_slice(self.versions.path(), &self.versions.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    /// (deleted, is-UUID) bitmaps.
    fn bitmaps(&self) -> (&[u64], &[u64]) {
        let words: &[u64] =
            cast_slice(self.flags.path(), &self.flags.bytes()[FLAGS_START..]).unwrap_or(&[]);
        let n = bitmap_words(self.total).min(words.len());
        words.split_at(n)
    }

    /// The external id stored for `offset`, ignoring the deleted bit.
    fn external_raw(&self, offset: PointOffset) -> Option<PointId> {
        let o = offset as usize;
        let value = *self.external_slice().get(o)?;
        if bit(self.bitmaps().1, o) {
            let r = self.records().get(usize::try_from(value).ok()?)?;
            Some(PointId::Uuid(uuid::Uuid::from_bytes(r.uuid)))
        } else {
            Some(PointId::Num(value))
        }
    }

    /// Slot index and entry of a mapped numeric id (dropped or not).
    #[inline]
    fn find_num(&self, n: u64) -> Option<(usize, u32)> {
        let s = self.num_phf.as_ref()?.get(&n)? as usize;
        let e = *self.slots_slice().get(s)?;
        let o = (e & !DROPPED) as usize;
        (*self.external_slice().get(o)? == n).then_some((s, e))
    }

    /// Record index and entry of a mapped UUID (dropped or not).
    #[inline]
    fn find_uuid(&self, u: &uuid::Uuid) -> Option<(usize, u32)> {
        let s = self.uuid_phf.as_ref()?.get(&u.as_u128())? as usize;
        let r = self.records().get(s)?;
        (r.uuid == *u.as_bytes()).then_some((s, r.entry))
    }

    /// Sizes of this mapper's structures (for reports and budgets).
    pub fn sizes(&self) -> IdMapSizes {
        let ids = self.num_keys + self.uuid_keys;
        let per = |b: usize| if ids == 0 { 0.0 } else { b as f64 / ids as f64 };
        let mapping_bytes = self.phf_bytes
            + self.num_keys * 4
            + self.uuid_keys * std::mem::size_of::<UuidRecord>()
            + self.total * 8
            + 2 * bitmap_words(self.total) * 8;
        IdMapSizes {
            ids,
            phf_bytes: self.phf_bytes,
            phf_bits_per_key: per(self.phf_bytes) * 8.0,
            mapping_bytes,
            mapping_bytes_per_id: per(mapping_bytes),
            order_bytes: ids * 4,
            versions_bytes: self.total * 8,
        }
    }

    /// Fault every page of the mapped arrays into memory.
    pub fn populate(&self) {
        self.slots.populate();
        self.uuids.populate();
        self.external.populate();
        self.flags.populate();
        self.versions.populate();
    }

    /// Evict the read-only arrays from the page cache (cold-lookup
    /// benchmarks). Writable mappings (slots, records, flags, versions) keep
    /// their pages; use a fresh [`open`](Self::open) after dropping the
    /// caches externally to measure those cold.
    pub fn clear_cache(&self) -> Result<()> {
        self.external.clear_cache()?;
        self.order.clear_cache()
    }

    /// external → internal without the `Result` wrapper (lookups in the
    /// mapped arrays cannot fail; every index is bounds-checked).
    #[inline]
    fn lookup(&self, id: PointId) -> Option<PointOffset> {
        match id {
            PointId::Num(n) => {
                // Hot path: hash, one slot read, one external-id read.
                let s = self.num_phf.as_ref()?.get(&n)? as usize;
                let e = *self.slots_slice().get(s)?;
                // A dropped entry has bit 31 set, which no offset has.
                (*self.external_slice().get(e as usize)? == n).then_some(e)
            }
            PointId::Uuid(u) => {
                let (_, e) = self.find_uuid(&u)?;
                (e & DROPPED == 0).then_some(e)
            }
        }
    }

    fn mark_dirty(&mut self) -> Result<()> {
        if self.mappings_dirty {
            return Ok(());
        }
        let bytes = self.flags.bytes_mut();
        let mut header: FlagsHeader = bytemuck::pod_read_unaligned(&bytes[..FLAGS_START]);
        header.dirty = 1;
        bytes[..FLAGS_START].copy_from_slice(bytemuck::bytes_of(&header));
        self.flags.flush_range(0, FLAGS_START)?;
        self.mappings_dirty = true;
        Ok(())
    }
}

impl IdMapperRead for MmapIdMapper {
    #[inline]
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        Ok(self.lookup(id))
    }

    fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        if bit(self.bitmaps().0, offset as usize) {
            return Ok(None);
        }
        Ok(self.external_raw(offset))
    }

    fn version(&self, offset: PointOffset) -> Result<Option<Version>> {
        if let Some(&v) = self.pending_versions.get(&offset) {
            return Ok(Some(v));
        }
        let Some(&slot) = self.versions_slice().get(offset as usize) else {
            return Ok(None);
        };
        version_slot::decode(offset, slot).map_err(|()| {
            corrupted(
                self.versions.path(),
                format!("version slot of offset {offset} fails its checksum"),
            )
        })
    }

    fn total_count(&self) -> usize {
        self.total
    }

    fn available_count(&self) -> usize {
        self.available
    }

    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_> {
        let order = self.order_slice();
        let start = match from {
            None => 0,
            Some(from) => order.partition_point(|&o| match self.external_raw(o) {
                Some(id) => id < from,
                // A damaged entry sorts first; it is reported below.
                None => true,
            }),
        };
        let deleted = self.bitmaps().0;
        Box::new(order[start..].iter().filter_map(move |&o| {
            if bit(deleted, o as usize) {
                return None;
            }
            Some(self.external_raw(o).map(|id| (id, o)).ok_or_else(|| {
                corrupted(
                    self.order.path(),
                    format!("live offset {o} has no external id"),
                )
            }))
        }))
    }

    fn disk_bytes(&self) -> u64 {
        let mut bytes = (self.slots.len()
            + self.uuids.len()
            + self.external.len()
            + self.flags.len()
            + self.versions.len()
            + self.order.len()) as u64;
        bytes += (std::mem::size_of::<PhfHeader>() + self.phf_bytes) as u64;
        bytes
    }
}

impl IdMapper for MmapIdMapper {
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
        let found = match id {
            PointId::Num(n) => self.find_num(n).map(|f| (f, false)),
            PointId::Uuid(u) => self.find_uuid(&u).map(|f| (f, true)),
        };
        let Some(((index, entry), is_uuid)) = found else {
            return Ok(None);
        };
        if entry & DROPPED != 0 {
            return Ok(None);
        }
        let offset = entry & !DROPPED;
        if offset as usize >= self.total {
            let path = if is_uuid {
                self.uuids.path()
            } else {
                self.slots.path()
            };
            return Err(corrupted(
                path,
                format!("entry points at offset {offset} of {}", self.total),
            ));
        }
        self.mark_dirty()?;
        if is_uuid {
            let path = self.uuids.path().to_path_buf();
            let records: &mut [UuidRecord] =
                cast_slice_mut(&path, &mut self.uuids.bytes_mut()[COUNT_START..])?;
            if let Some(r) = records.get_mut(index) {
                r.entry |= DROPPED;
            }
        } else {
            let path = self.slots.path().to_path_buf();
            let slots: &mut [u32] =
                cast_slice_mut(&path, &mut self.slots.bytes_mut()[COUNT_START..])?;
            if let Some(e) = slots.get_mut(index) {
                *e |= DROPPED;
            }
        }
        let path = self.flags.path().to_path_buf();
        let words: &mut [u64] = cast_slice_mut(&path, &mut self.flags.bytes_mut()[FLAGS_START..])?;
        let n = bitmap_words(self.total).min(words.len());
        if !set_bit(&mut words[..n], offset as usize) {
            self.available = self.available.saturating_sub(1);
        }
        Ok(Some(offset))
    }

    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()> {
        version_slot::encode(offset, version)?;
        if offset as usize >= self.versions_slice().len() {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.total,
            });
        }
        // Buffered: a version on disk vouches for the point's data, which
        // the segment flushes first.
        self.pending_versions.insert(offset, version);
        Ok(())
    }

    fn flush_mappings(&mut self) -> Result<()> {
        if !self.mappings_dirty {
            return Ok(());
        }
        self.slots.flush()?;
        self.uuids.flush()?;
        self.flags.flush()?;
        let bytes = self.flags.bytes_mut();
        let mut header: FlagsHeader = bytemuck::pod_read_unaligned(&bytes[..FLAGS_START]);
        header.dirty = 0;
        bytes[..FLAGS_START].copy_from_slice(bytemuck::bytes_of(&header));
        self.flags.flush_range(0, FLAGS_START)?;
        self.mappings_dirty = false;
        Ok(())
    }

    /// Write the buffered versions into `ids_versions.dat` and msync it.
    fn flush_versions(&mut self) -> Result<()> {
        if self.pending_versions.is_empty() {
            return Ok(());
        }
        let path = self.versions.path().to_path_buf();
        let versions: &mut [u64] =
            cast_slice_mut(&path, &mut self.versions.bytes_mut()[COUNT_START..])?;
        for (&o, &v) in &self.pending_versions {
            if let Some(slot) = versions.get_mut(o as usize) {
                *slot = version_slot::encode(o, v)?;
            }
        }
        self.versions.flush()?;
        self.pending_versions.clear();
        Ok(())
    }
}
