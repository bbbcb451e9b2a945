//! [`MmapIdMapper`]: immutable id map over memory-mapped arrays with
//! minimal perfect hash functions (`ph`'s PHast for numeric ids, FMPH for
//! UUIDs; `phf.rs`).
//!
//! ## Layout and lookups
//!
//! Numeric ids and UUIDs get separate perfect hash functions (PHFs), so a
//! numeric id and a UUID with the same bits never collide and each kind is
//! hashed as its natural integer (`u64` / `u128`). The PHFs are loaded into
//! RAM at open (under 3 bits per key), the deleted bitmap is held in RAM,
//! everything else is mapped read-only:
//!
//! | file                | entry (per)            | role                                    |
//! |---------------------|------------------------|-----------------------------------------|
//! | `ids_phf.bin`       | < 3 bits (id)          | the two PHFs (`num`, `uuid`)            |
//! | `ids_num.dat`       | 12 B (numeric id)      | PHF slot → {id, offset} (empty when slot-ordered) |
//! | `ids_uuids.dat`     | 20 B (UUID id)         | PHF slot → {uuid, offset}               |
//! | `ids_external.dat`  | `u64` (offset)         | offset → numeric id, or UUID slot index |
//! | `ids_kinds.dat`     | 1 bit (offset)         | is-UUID bitmap                          |
//! | `ids_deleted.dat`   | 1 bit (offset) ×2      | deleted (dropped or never mapped) bitmap, a [`CheckedBitmap`] |
//! | `ids_versions.dat`  | `u64` (offset)         | version slot ([`vecseg_traits::version_slot`], 0 = none) |
//! | `ids_order.dat`     | `u32` (mapped id)      | offsets sorted by external id           |
//!
//! * **numeric id → offset**: `s = phf_num(id)` (one hash and one byte of
//!   PHast seeds for almost every id); the record `nums[s]` holds
//!   the id itself (the membership check: a PHF maps unknown keys to some
//!   slot too) and its offset; the id is present iff the stored id equals
//!   it and the offset is not deleted. The record tables are laid out in
//!   4 KiB blocks no record crosses (`records.rs`), so a cold lookup reads
//!   **one page** beyond the in-RAM hash function and bitmap.
//! * **Slot-ordered numeric ids** ([`NumLayout::SlotOrdered`]): when the
//!   segment was laid out by a [`NumSlotPlan`] (every numeric id at the
//!   offset equal to its slot, as the optimizer builds segments without a
//!   tenant key), the record table is empty and the lookup checks
//!   `external[s] == id` instead: still one page, the dense array's.
//! * **UUID → offset**: the same with `s = phf_uuid(uuid)` and the 20-byte
//!   records of `ids_uuids.dat`.
//! * **offset → id**: deleted bit, is-UUID bit, then `external[o]` (a numeric
//!   id, or the UUID's slot in `ids_uuids.dat`).
//!
//! Memory per numeric point: PHF ≈ 0.35 B + record 12 B + external 8 B +
//! kinds and deleted bits 0.25 B ≈ **20.6 B** for the two-way mapping: the
//! id is stored twice, beside its offset for one-page lookups and in the
//! dense internal → external array (format 2 stored it once and paid a
//! second page per lookup; `docs/design-decisions.md`, "Id map"). The
//! ordering index (`ids_order.dat`, 4 B) is not part of the mapping: it is
//! read only by [`IdMapperRead::iter_from`] (binary search + scan), so its
//! pages are faulted in only while iterating in id order and never by
//! lookups. Versions (8 B) are excluded from the budget by definition. A
//! UUID point costs 20 B (record) + 8 B (external) + bits + PHF. In the
//! slot-ordered layout a numeric point costs external 8 B + PHF + bits
//! ≈ **8.6 B**.
//!
//! ## Files of this module
//!
//! `phf.rs` the hash functions and their hashing of ids; `slots.rs` hashes
//! mappings into slot-ordered record tables (build and upgrade) and holds
//! [`NumSlotPlan`];
//! `records.rs` the record tables' block layout; `format_v1.rs`,
//! `format_v2.rs`, `format_v3.rs` the upgrades of older formats.
//!
//! ## Integrity
//!
//! Everything but the deleted bitmap and the versions is written once, at
//! build, and each of those files carries a CRC-32C of its body in its
//! header, checked at open: a damaged byte anywhere in the id tables is
//! [`StorageError::Corrupted`] at open, never a lookup that silently misses
//! (opening reads the tables once, sequentially: about 16 B per point).
//! The deleted bitmap is a [`CheckedBitmap`] (two checksummed copies);
//! versions carry a check byte per slot.
//!
//! ## Writes and crash safety
//!
//! Immutable means no new points. [`IdMapper::drop_id`] sets the offset's
//! deleted bit in RAM; [`IdMapper::flush_mappings`] persists the bitmap
//! (its generation is the mapper's durable sequence). [`IdMapper::set_version`]
//! buffers the version in RAM and [`IdMapper::flush_versions`] writes it
//! (a version vouches for the point's data, which the segment flushes
//! first). A kill therefore leaves the state of the last flush.
//!
//! Older formats are upgraded at open: format 1 (dropped bits inside the
//! slot tables, a plain `ids_flags.dat`, no table checksums) to format 2 by
//! `format_v1.rs`, format 2 (a `u32` slot → offset table `ids_slots.dat`,
//! 24-byte UUID records) to format 3 by `format_v2.rs`, format 3 (`ph`
//! 0.8 FMPHs) to format 4 by `format_v3.rs`, which rebuilds the functions
//! and the slot-ordered tables from the records. Format 4 (`ids_phf.bin`
//! at header version 3, without the layout word) opens as it is. Each
//! file carries its own format version: `ids_phf.bin` is at 4, the record
//! tables at 3, the other tables kept their format-2 layout and header.
//!
//! Offsets must be below 2^31. Every file is validated at open (magic,
//! version, lengths against the headers, checksums, bits past the end, the
//! PHFs' own encoding, and a sample of ids hashed back to their offsets,
//! which catches a PHF written with a different hasher); every index read
//! from a file is bounds-checked on use. Byte layouts are in
//! `docs/file-formats.md`.

mod format_v1;
mod format_v2;
mod format_v3;
mod phf;
mod records;
mod slots;

pub use records::{NumRecord, UuidRecord, BLOCK_BYTES, RECORDS_FORMAT_VERSION};
pub use slots::NumSlotPlan;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use vecseg_traits::version_slot;
use vecseg_traits::{
    IdMapper, IdMapperRead, IoResultExt, PointId, PointOffset, Result, StorageError, Version,
};

use crate::advice::{Advice, AdviceSetting};
use crate::checked_bitmap::{bit, bitmap_words, count_ones, has_bits_past, set_bit, CheckedBitmap};
use crate::file::{write_new_file, MmapFile, MmapFileMut};
use crate::header::{cast_slice, cast_slice_mut, read_header, FilePrefix};
use phf::{NumPhf, UuidPhf};
use records::{write_record_table, RecordTable};

/// File holding the two perfect hash functions.
pub const IDS_PHF_FILE: &str = "ids_phf.bin";
/// Format 2 only: numeric-id PHF slots → offsets (replaced by
/// [`IDS_NUM_FILE`]); its presence marks a directory to upgrade.
pub const IDS_SLOTS_FILE: &str = "ids_slots.dat";
/// File of numeric-id records (`{id, offset}`) in PHF slot order.
pub const IDS_NUM_FILE: &str = "ids_num.dat";
/// File of UUID records in UUID-PHF slot order.
pub const IDS_UUIDS_FILE: &str = "ids_uuids.dat";
/// File mapping offsets to external ids.
pub const IDS_EXTERNAL_FILE: &str = "ids_external.dat";
/// Format 1 only: the deleted and is-UUID bitmaps (replaced by
/// [`IDS_KINDS_FILE`] and [`IDS_DELETED_FILE`]).
pub const IDS_FLAGS_FILE: &str = "ids_flags.dat";
/// File of the is-UUID bitmap.
pub const IDS_KINDS_FILE: &str = "ids_kinds.dat";
/// File of the deleted bitmap (a [`CheckedBitmap`]).
pub const IDS_DELETED_FILE: &str = "ids_deleted.dat";
/// File of per-offset versions.
pub const IDS_VERSIONS_FILE: &str = "ids_versions.dat";
/// File of offsets in external-id order.
pub const IDS_ORDER_FILE: &str = "ids_order.dat";

/// Format version of the id map as a whole (format 5: the numeric-id
/// [`NumLayout`] in `ids_phf.bin`; format 4 brought PHast for numeric ids,
/// format 3 one-page record lookups). Formats 1 to 3 are upgraded at open;
/// format 4 opens as it is (its layout is [`NumLayout::Records`]).
pub const IDS_FORMAT_VERSION: u32 = 5;

/// Header version of `ids_phf.bin`: 4 = the functions of `phf.rs` and the
/// [`NumLayout`] word; 3 = the same functions, always
/// [`NumLayout::Records`] (opened as it is); 2 = `ph` 0.8's FMPH (formats
/// 2 and 3, upgraded at open by `format_v3.rs`).
pub const PHF_FORMAT_VERSION: u32 = 4;

/// How a numeric id's slot leads to its offset (the `layout` word of
/// `ids_phf.bin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumLayout {
    /// `ids_num.dat` holds `{id, offset}` at each slot (12 B per id): any
    /// offset order, e.g. one kept from a migrated source or a tenant
    /// order.
    Records,
    /// Every numeric id sits at the offset equal to its slot (the segment
    /// was laid out by a [`NumSlotPlan`]): `ids_num.dat` is empty and a
    /// lookup checks `external[slot]`, so the two-way map costs the dense
    /// array alone (8 B per id).
    SlotOrdered,
}

impl NumLayout {
    /// The word stored in the header.
    fn code(self) -> u32 {
        match self {
            NumLayout::Records => 0,
            NumLayout::SlotOrdered => 1,
        }
    }
}

/// Header version of the tables whose layout formats 3 to 5 kept from
/// format 2 (external, kinds, order); the record tables are at
/// [`RECORDS_FORMAT_VERSION`], `ids_phf.bin` at [`PHF_FORMAT_VERSION`].
pub const TABLE_FORMAT_VERSION: u32 = 2;

const PHF_MAGIC: [u8; 8] = *b"VSIDPHF_";
const SLOTS_MAGIC: [u8; 8] = *b"VSIDSLOT";
const NUMS_MAGIC: [u8; 8] = *b"VSIDNUMR";
const UUIDS_MAGIC: [u8; 8] = *b"VSIDUUID";
const EXTERNAL_MAGIC: [u8; 8] = *b"VSIDEXTL";
const FLAGS_MAGIC: [u8; 8] = *b"VSIDFLAG";
const KINDS_MAGIC: [u8; 8] = *b"VSIDKIND";
const VERSIONS_MAGIC: [u8; 8] = *b"VSIDVERS";
const ORDER_MAGIC: [u8; 8] = *b"VSIDORDR";

/// Largest number of offsets a mapper can cover.
pub const MAX_TOTAL: usize = 1 << 31;
/// Stored in a format-1 `ids_versions.dat` for offsets without a version
/// (format 2 stores 0); never a valid version.
pub const NO_VERSION: Version = u64::MAX;
/// Format version of `ids_versions.dat` (its slots carry a check byte,
/// [`vecseg_traits::version_slot`]); format 1 is converted at open.
pub const IDS_VERSIONS_FORMAT_VERSION: u32 = 2;

/// Header of `ids_phf.bin` (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PhfHeader {
    prefix: FilePrefix,
    num_keys: u64,
    uuid_keys: u64,
    num_phf_bytes: u64,
    uuid_phf_bytes: u64,
    /// CRC-32C of the four counts above (32 bytes, little-endian), from
    /// version 4 the layout word (4 bytes), then both serialized functions
    /// (version 2: of the functions only).
    body_crc: u32,
    /// [`NumLayout`] code (version 4; zero before).
    layout: u32,
}

impl PhfHeader {
    /// The checksum `body_crc` should hold for `body` (header versions 3
    /// and 4).
    fn checksum(&self, body: &[u8]) -> u32 {
        let counts = [
            self.num_keys,
            self.uuid_keys,
            self.num_phf_bytes,
            self.uuid_phf_bytes,
        ];
        let mut bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        if self.prefix.format_version >= 4 {
            bytes.extend_from_slice(&self.layout.to_le_bytes());
        }
        crc32c::crc32c_append(crc32c::crc32c(&bytes), body)
    }

    /// The layout the header names (an error for an unknown code, or a
    /// code in a version-3 header).
    fn num_layout(&self, path: &Path) -> Result<NumLayout> {
        match (self.prefix.format_version, self.layout) {
            (_, 0) => Ok(NumLayout::Records),
            (4.., 1) => Ok(NumLayout::SlotOrdered),
            (_, code) => Err(corrupted(path, format!("unknown numeric-id layout {code}"))),
        }
    }
}

/// Header of `ids_versions.dat` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct CountHeader {
    prefix: FilePrefix,
    count: u64,
}

/// Header of the write-once tables (32 bytes): slots, UUID records,
/// external, kinds, order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct TableHeader {
    prefix: FilePrefix,
    /// Entries in the body.
    count: u64,
    /// CRC-32C of the body.
    body_crc: u32,
    reserved: u32,
}

const COUNT_START: usize = std::mem::size_of::<CountHeader>();
const TABLE_START: usize = std::mem::size_of::<TableHeader>();

/// Figures recorded by [`MmapIdMapper::build_with_stats`].
#[derive(Debug, Clone, Default)]
pub struct IdMapBuildStats {
    /// Mapped ids.
    pub ids: usize,
    /// Wall time of the whole build (collect, hash, write, fsync, open).
    pub total_time: Duration,
    /// Wall time reading the source (mappings in id order, checks).
    pub collect_time: Duration,
    /// Wall time spent constructing the perfect hash functions (on the
    /// rayon pool, while a thread of its own reads the versions).
    pub phf_time: Duration,
    /// Wall time filling the record and external tables once the
    /// functions are built.
    pub fill_time: Duration,
    /// Wall time waiting for the files to be written and fsynced once the
    /// tables are filled (the bitmaps, versions and order are written
    /// while the functions build).
    pub write_time: Duration,
    /// Wall time of the final open (checksums, sample check).
    pub open_time: Duration,
}

/// Sizes of an opened mapper, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdMapSizes {
    /// Mapped ids at build (numeric + UUID).
    pub ids: usize,
    /// How numeric ids are looked up.
    pub num_layout: NumLayout,
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
    num_phf: Option<NumPhf>,
    uuid_phf: Option<UuidPhf>,
    phf_bytes: usize,
    num_layout: NumLayout,
    nums: RecordTable<NumRecord>,
    uuids: RecordTable<UuidRecord>,
    external: MmapFile,
    kinds: MmapFile,
    deleted: CheckedBitmap,
    versions: MmapFileMut,
    order: MmapFile,
    total: usize,
    num_keys: usize,
    uuid_keys: usize,
    available: usize,
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

/// Read one serialized function of `ids_phf.bin` (`None` for zero keys),
/// mapping a decoding failure to [`StorageError::Corrupted`] naming `path`.
fn parse_phf<F>(
    path: &Path,
    bytes: &[u8],
    keys: usize,
    what: &str,
    read: impl FnOnce(&[u8]) -> std::io::Result<F>,
) -> Result<Option<F>> {
    match (keys, bytes.is_empty()) {
        (0, true) => Ok(None),
        (0, false) => Err(corrupted(path, format!("{what} PHF present for zero keys"))),
        (_, true) => Err(corrupted(
            path,
            format!("{what} PHF missing for {keys} keys"),
        )),
        _ => read(bytes)
            .map(Some)
            .map_err(|e| corrupted(path, format!("{what} PHF: {e}"))),
    }
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

/// Write a write-once table: [`TableHeader`] (with the body's CRC-32C),
/// then `body`.
fn write_table(path: &Path, magic: [u8; 8], count: usize, body: &[u8]) -> Result<()> {
    let header = TableHeader {
        prefix: FilePrefix::new::<TableHeader>(magic, TABLE_FORMAT_VERSION),
        count: count as u64,
        body_crc: crc32c::crc32c(body),
        reserved: 0,
    };
    write_new_file(path, |w| {
        w.write_all(bytemuck::bytes_of(&header))?;
        w.write_all(body)
    })
}

/// Open a write-once table of `entry`-byte entries: header, length and the
/// body's checksum (one sequential read of the file). Returns the mapping
/// and the entry count.
fn open_table(
    path: &Path,
    magic: [u8; 8],
    entry: usize,
    what: &str,
    advice: Advice,
) -> Result<(MmapFile, usize)> {
    let file = MmapFile::open(path, advice)?;
    let h: TableHeader = read_header(path, file.bytes(), magic, TABLE_FORMAT_VERSION)?;
    let count = usize::try_from(h.count)
        .ok()
        .filter(|c| *c <= MAX_TOTAL)
        .ok_or_else(|| corrupted(path, format!("{what} count {} out of range", h.count)))?;
    let body = &file.bytes()[TABLE_START..];
    if body.len() as u64 != count as u64 * entry as u64 {
        return Err(corrupted(
            path,
            format!(
                "holds {} bytes of {what}, header announces {count} entries of {entry} bytes",
                body.len()
            ),
        ));
    }
    if h.reserved != 0 || crc32c::crc32c(body) != h.body_crc {
        return Err(corrupted(path, format!("{what} fail their checksum")));
    }
    Ok((file, count))
}

/// Write `ids_deleted.dat` (a [`CheckedBitmap`] of `deleted`) and
/// `ids_kinds.dat` (the is-UUID words), each replaced by rename.
fn write_bitmaps(dir: &Path, total: usize, deleted: &[u64], kinds: &[u64]) -> Result<()> {
    CheckedBitmap::create(&dir.join(IDS_DELETED_FILE), total, deleted)?;
    write_table(
        &dir.join(IDS_KINDS_FILE),
        KINDS_MAGIC,
        kinds.len(),
        bytemuck::cast_slice(kinds),
    )
}

/// Write `ids_phf.bin` at header version `version` (with `layout` from
/// version 4): header (with the CRC-32C of `body`) and `body`, the numeric
/// function's `num_phf_bytes` bytes followed by the UUID one's.
fn write_phf_file(
    dir: &Path,
    version: u32,
    layout: NumLayout,
    num_keys: usize,
    uuid_keys: usize,
    num_phf_bytes: usize,
    body: &[u8],
) -> Result<()> {
    let mut header = PhfHeader {
        prefix: FilePrefix::new::<PhfHeader>(PHF_MAGIC, version),
        num_keys: num_keys as u64,
        uuid_keys: uuid_keys as u64,
        num_phf_bytes: num_phf_bytes as u64,
        uuid_phf_bytes: (body.len() - num_phf_bytes) as u64,
        body_crc: 0,
        layout: layout.code(),
    };
    header.body_crc = header.checksum(body);
    write_new_file(&dir.join(IDS_PHF_FILE), |w| {
        w.write_all(bytemuck::bytes_of(&header))?;
        w.write_all(body)
    })
}

/// Join a scoped thread, resuming its panic if it panicked.
fn join_scoped<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Write `ids_versions.dat` holding the encoded version slots `versions`.
fn write_versions(dir: &Path, versions: &[u64]) -> Result<()> {
    write_new_file(&dir.join(IDS_VERSIONS_FILE), |w| {
        let header = CountHeader {
            prefix: FilePrefix::new::<CountHeader>(VERSIONS_MAGIC, IDS_VERSIONS_FORMAT_VERSION),
            count: versions.len() as u64,
        };
        w.write_all(bytemuck::bytes_of(&header))?;
        w.write_all(bytemuck::cast_slice(versions))
    })
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
        Self::build_planned_with_stats(dir, source, None)
    }

    /// [`build`](Self::build) with the numeric ids' function taken from
    /// `plan` (built over exactly the source's numeric ids; an error
    /// otherwise). When every numeric id sits at its slot, the mapper gets
    /// the [`NumLayout::SlotOrdered`] layout; otherwise the plan only saves
    /// building the function.
    pub fn build_planned(
        dir: &Path,
        source: &impl IdMapperRead,
        plan: Option<NumSlotPlan>,
    ) -> Result<Self> {
        Self::build_planned_with_stats(dir, source, plan).map(|(m, _)| m)
    }

    /// [`build_planned`](Self::build_planned), also returning build timings.
    pub fn build_planned_with_stats(
        dir: &Path,
        source: &impl IdMapperRead,
        plan: Option<NumSlotPlan>,
    ) -> Result<(Self, IdMapBuildStats)> {
        let started = Instant::now();
        let total = source.total_count();
        if total > MAX_TOTAL {
            return Err(StorageError::InvalidArgument(format!(
                "{total} offsets exceed the id map's limit of {MAX_TOTAL}"
            )));
        }
        fs::create_dir_all(dir).at(dir)?;

        // Mapped points, split by kind, streamed from the source in its
        // iteration order (external-id order; sorted here if a source does
        // not keep its promise).
        let mut deleted = vec![u64::MAX; bitmap_words(total)];
        if total & 63 != 0 {
            if let Some(last) = deleted.last_mut() {
                *last = (1u64 << (total % 64)) - 1;
            }
        }
        let mut kinds = vec![0u64; bitmap_words(total)];
        let mut nums: Vec<(u64, PointOffset)> = Vec::with_capacity(source.available_count());
        let mut uuids: Vec<(u128, PointOffset)> = Vec::new();
        let mut in_order = true;
        let mut previous: Option<PointId> = None;
        for item in source.iter_from(None) {
            let (id, o) = item?;
            in_order &= previous.is_none_or(|p| p < id);
            previous = Some(id);
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
                PointId::Num(n) => nums.push((n, o)),
                PointId::Uuid(u) => {
                    set_bit(&mut kinds, o as usize);
                    uuids.push((u.as_u128(), o));
                }
            }
        }
        if !in_order {
            nums.par_sort_unstable();
            uuids.par_sort_unstable();
            let twice =
                |id: PointId| StorageError::InvalidArgument(format!("source maps id {id} twice"));
            if let Some(w) = nums.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(twice(PointId::Num(w[0].0)));
            }
            if let Some(w) = uuids.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(twice(PointId::Uuid(uuid::Uuid::from_u128(w[0].0))));
            }
        }
        let num_keys = nums.len();
        let uuid_keys = uuids.len();
        let collect_time = started.elapsed();

        // External-id order: numeric ids before UUIDs, as `PointId` sorts.
        let order: Vec<u32> = nums
            .iter()
            .map(|p| p.1)
            .chain(uuids.iter().map(|p| p.1))
            .collect();

        // The functions build (on the rayon pool) while a thread of its
        // own reads the versions. Every file is then written (and fsynced)
        // on its own thread as soon as its contents are ready, so
        // writebacks overlap the hashing; nothing is written before the
        // source has been read whole. The reader and the writers never use
        // the pool, so a build running on a rayon worker cannot deadlock
        // waiting for them.
        let (phf_time, fill_time, write_time) = std::thread::scope(|scope| -> Result<_> {
            let early = scope.spawn(|| -> Result<_> {
                let versions = (0..total)
                    .map(|o| match source.version(o as PointOffset)? {
                        Some(v) => version_slot::encode(o as PointOffset, v),
                        None => Ok(0),
                    })
                    .collect::<Result<Vec<u64>>>()?;
                Ok(vec![
                    scope.spawn(|| write_bitmaps(dir, total, &deleted, &kinds)),
                    scope.spawn(move || write_versions(dir, &versions)),
                    scope.spawn(move || {
                        write_table(
                            &dir.join(IDS_ORDER_FILE),
                            ORDER_MAGIC,
                            order.len(),
                            bytemuck::cast_slice(&order),
                        )
                    }),
                ])
            });
            let phf_started = Instant::now();
            let planned = plan.is_some();
            let joined = slots::build_phfs(&nums, &uuids, plan).map(|f| (f, phf_started.elapsed()));
            let mut writers = join_scoped(early)?;
            // Numeric ids go to the external table as they are; UUID
            // offsets get their slots from the functions.
            let mut external = vec![0u64; total];
            let offset = |_, p: &(u64, PointOffset)| p.1 as usize;
            slots::par_scatter(&mut external, &nums, "offsets", offset, |p| p.0)?;
            let (phfs, phf_time) = joined?;
            let tables_started = Instant::now();
            // A planned build whose numeric ids all sit at their slots
            // (distinct offsets below the key count, so the function is a
            // bijection of them onto `0..num_keys`): the records would say
            // nothing the external array does not.
            let slot_ordered = planned
                && phfs.num.as_ref().is_some_and(|f| {
                    nums.par_iter()
                        .all(|(id, o)| (*o as usize) < num_keys && f.get(id) == *o as usize)
                });
            let (layout, record_nums) = if slot_ordered {
                (NumLayout::SlotOrdered, &[][..])
            } else {
                (NumLayout::Records, &nums[..])
            };
            let records = slots::fill_records(&phfs, record_nums, &uuids)?;
            for (&(_, o), &s) in uuids.iter().zip(&records.uuid_slots) {
                external[o as usize] = s;
            }
            let mut phf_bytes = phf::num_to_bytes(&phfs.num);
            let num_phf_bytes = phf_bytes.len();
            phf_bytes.extend_from_slice(&phf::uuid_to_bytes(&phfs.uuid));
            let slot_tables = (records.nums, records.uuids);
            writers.push(scope.spawn(move || {
                write_record_table(&dir.join(IDS_NUM_FILE), NUMS_MAGIC, &slot_tables.0)?;
                write_record_table(&dir.join(IDS_UUIDS_FILE), UUIDS_MAGIC, &slot_tables.1)
            }));
            writers.push(scope.spawn(move || {
                write_table(
                    &dir.join(IDS_EXTERNAL_FILE),
                    EXTERNAL_MAGIC,
                    total,
                    bytemuck::cast_slice(&external),
                )?;
                write_phf_file(
                    dir,
                    PHF_FORMAT_VERSION,
                    layout,
                    num_keys,
                    uuid_keys,
                    num_phf_bytes,
                    &phf_bytes,
                )
            }));
            let fill_time = tables_started.elapsed();
            let write_started = Instant::now();
            // Every writer is joined; the first error is returned.
            writers
                .into_iter()
                .map(join_scoped)
                .fold(Ok(()), Result::and)?;
            Ok((phf_time, fill_time, write_started.elapsed()))
        })?;
        drop((nums, uuids, deleted, kinds));
        // A directory that held an older mapper: its flags or slots file
        // would make open upgrade the new tables.
        for legacy in [IDS_FLAGS_FILE, IDS_SLOTS_FILE] {
            let legacy = dir.join(legacy);
            if legacy.exists() {
                fs::remove_file(&legacy).at(&legacy)?;
            }
        }

        let open_started = Instant::now();
        let mapper = Self::open(dir)?;
        let stats = IdMapBuildStats {
            ids: num_keys + uuid_keys,
            total_time: started.elapsed(),
            collect_time,
            phf_time,
            fill_time,
            write_time,
            open_time: open_started.elapsed(),
        };
        Ok((mapper, stats))
    }

    /// Open a mapper built by [`build`](Self::build); the tables follow
    /// the process-wide advice, else [`Advice::Random`] (the order index
    /// [`Advice::Normal`]: it is scanned).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_advice(dir, AdviceSetting::Global)
    }

    /// Open with an advice for the mapped tables: an explicit [`Advice`]
    /// applies to every table; [`AdviceSetting::Global`] follows
    /// [`set_global_advice`](crate::set_global_advice), else the defaults
    /// of [`open`](Self::open).
    pub fn open_with_advice(dir: &Path, advice: impl Into<AdviceSetting>) -> Result<Self> {
        let setting = advice.into();
        let advice = setting.resolve(Advice::Random);
        if dir.join(IDS_FLAGS_FILE).exists() {
            format_v1::upgrade(dir)?;
        }
        if dir.join(IDS_SLOTS_FILE).exists() {
            format_v2::upgrade(dir)?;
        }
        // Perfect hash functions: read into RAM.
        let phf_path = dir.join(IDS_PHF_FILE);
        let mut phf_file = fs::read(&phf_path).at(&phf_path)?;
        if file_format_version(&phf_file) == Some(TABLE_FORMAT_VERSION) {
            format_v3::upgrade(dir)?;
            phf_file = fs::read(&phf_path).at(&phf_path)?;
        }
        // Header version 3 (format 4) opens as it is.
        let version = match file_format_version(&phf_file) {
            Some(3) => 3,
            _ => PHF_FORMAT_VERSION,
        };
        let ph: PhfHeader = read_header(&phf_path, &phf_file, PHF_MAGIC, version)?;
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
        if ph.checksum(body) != ph.body_crc {
            return Err(corrupted(&phf_path, "hash functions fail their checksum"));
        }
        let num_layout = ph.num_layout(&phf_path)?;
        let key_count = |n: u64| {
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_TOTAL)
                .ok_or_else(|| corrupted(&phf_path, format!("key count {n} out of range")))
        };
        let num_keys = key_count(ph.num_keys)?;
        let uuid_keys = key_count(ph.uuid_keys)?;
        let (num_body, uuid_body) = body.split_at(num_len as usize);
        let num_phf = parse_phf(&phf_path, num_body, num_keys, "numeric", phf::read_num)?;
        let uuid_phf = parse_phf(&phf_path, uuid_body, uuid_keys, "UUID", phf::read_uuid)?;

        let nums = RecordTable::open(&dir.join(IDS_NUM_FILE), NUMS_MAGIC, "records", advice)?;
        let want_records = match num_layout {
            NumLayout::Records => num_keys,
            NumLayout::SlotOrdered => 0,
        };
        if nums.len() != want_records {
            return Err(corrupted(
                nums.file().path(),
                format!(
                    "{} records for {num_keys} numeric ids laid out as {num_layout:?}",
                    nums.len()
                ),
            ));
        }
        let uuids = RecordTable::open(
            &dir.join(IDS_UUIDS_FILE),
            UUIDS_MAGIC,
            "UUID records",
            advice,
        )?;
        if uuids.len() != uuid_keys {
            return Err(corrupted(
                uuids.file().path(),
                format!("{} records for {uuid_keys} UUIDs", uuids.len()),
            ));
        }
        let (external, total) = open_table(
            &dir.join(IDS_EXTERNAL_FILE),
            EXTERNAL_MAGIC,
            8,
            "external ids",
            advice,
        )?;
        if num_keys + uuid_keys > total {
            return Err(corrupted(
                external.path(),
                format!("{total} offsets cannot hold {} ids", num_keys + uuid_keys),
            ));
        }
        let (kinds, n) = open_table(
            &dir.join(IDS_KINDS_FILE),
            KINDS_MAGIC,
            8,
            "is-UUID words",
            advice,
        )?;
        if n != bitmap_words(total) {
            return Err(corrupted(
                kinds.path(),
                format!("{n} words for {total} offsets"),
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
        let (order, n) = open_table(
            &dir.join(IDS_ORDER_FILE),
            ORDER_MAGIC,
            4,
            "order",
            setting.resolve(Advice::Normal),
        )?;
        if n != num_keys + uuid_keys {
            return Err(corrupted(
                order.path(),
                format!("{n} ordered offsets for {} ids", num_keys + uuid_keys),
            ));
        }
        let deleted = CheckedBitmap::open(&dir.join(IDS_DELETED_FILE))?;
        if deleted.len() != total {
            return Err(corrupted(
                deleted.path(),
                format!(
                    "covers {} offsets, {IDS_EXTERNAL_FILE} has {total}",
                    deleted.len()
                ),
            ));
        }
        let available = total - deleted.count_ones();

        let mapper = MmapIdMapper {
            dir: dir.to_path_buf(),
            num_phf,
            uuid_phf,
            phf_bytes: body.len(),
            num_layout,
            nums,
            uuids,
            external,
            kinds,
            deleted,
            versions,
            order,
            total,
            num_keys,
            uuid_keys,
            available,
            pending_versions: Default::default(),
        };
        let kinds = mapper.kind_words();
        if has_bits_past(kinds, total) {
            return Err(corrupted(
                mapper.kinds.path(),
                "bits set past the last offset",
            ));
        }
        // Slot-ordered: offsets `0..num_keys` hold the numeric ids, which
        // lookups take on trust from the external array.
        if mapper.num_layout == NumLayout::SlotOrdered && (0..num_keys).any(|o| bit(kinds, o)) {
            return Err(corrupted(
                mapper.kinds.path(),
                "a UUID at an offset reserved for the numeric ids' slots",
            ));
        }
        if count_ones(kinds) != uuid_keys {
            return Err(corrupted(
                mapper.kinds.path(),
                format!(
                    "{} offsets flagged UUID for {uuid_keys} UUIDs",
                    count_ones(kinds)
                ),
            ));
        }
        if available > num_keys + uuid_keys {
            return Err(corrupted(
                mapper.deleted.path(),
                format!("{available} live offsets for {} ids", num_keys + uuid_keys),
            ));
        }
        mapper.check_sample()?;
        Ok(mapper)
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
            if self.deleted.get(o as usize) {
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
    fn external_slice(&self) -> &[u64] {
        cast_slice(self.external.path(), &self.external.bytes()[TABLE_START..]).unwrap_or(&[])
    }

    fn order_slice(&self) -> &[u32] {
        cast_slice(self.order.path(), &self.order.bytes()[TABLE_START..]).unwrap_or(&[])
    }

    /// The is-UUID bitmap.
    #[inline]
    fn kind_words(&self) -> &[u64] {
        cast_slice(self.kinds.path(), &self.kinds.bytes()[TABLE_START..]).unwrap_or(&[])
    }

    fn versions_slice(&self) -> &[u64] {
        cast_slice(self.versions.path(), &self.versions.bytes()[COUNT_START..]).unwrap_or(&[])
    }

    /// The external id stored for `offset`, ignoring the deleted bit.
    fn external_raw(&self, offset: PointOffset) -> Option<PointId> {
        let o = offset as usize;
        let value = *self.external_slice().get(o)?;
        if bit(self.kind_words(), o) {
            let r = self.uuids.get(usize::try_from(value).ok()?)?;
            Some(PointId::Uuid(uuid::Uuid::from_bytes(r.uuid)))
        } else {
            Some(PointId::Num(value))
        }
    }

    /// The offset `id` was built with (dropped or not).
    #[inline]
    fn find(&self, id: PointId) -> Option<PointOffset> {
        match id {
            PointId::Num(n) => {
                let s = self.num_phf.as_ref()?.get(&n);
                match self.num_layout {
                    NumLayout::Records => {
                        let r = self.nums.get(s)?;
                        (r.id() == n).then_some(r.offset)
                    }
                    // Offsets `0..num_keys` are numeric (checked at open).
                    NumLayout::SlotOrdered => (s < self.num_keys
                        && *self.external_slice().get(s)? == n)
                        .then_some(s as PointOffset),
                }
            }
            PointId::Uuid(u) => {
                let s = self.uuid_phf.as_ref()?.get(&u.as_u128())? as usize;
                let r = self.uuids.get(s)?;
                (r.uuid == *u.as_bytes()).then_some(r.offset)
            }
        }
    }

    /// Sizes of this mapper's structures (for reports and budgets).
    pub fn sizes(&self) -> IdMapSizes {
        let ids = self.num_keys + self.uuid_keys;
        let per = |b: usize| if ids == 0 { 0.0 } else { b as f64 / ids as f64 };
        // Kinds on disk, deleted in RAM: two bitmaps.
        let mapping_bytes = self.phf_bytes
            + self.nums.record_bytes()
            + self.uuids.record_bytes()
            + self.total * 8
            + 2 * bitmap_words(self.total) * 8;
        IdMapSizes {
            ids,
            num_layout: self.num_layout,
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
        self.nums.file().populate();
        self.uuids.file().populate();
        self.external.populate();
        self.kinds.populate();
        self.versions.populate();
    }

    /// Evict the read-only tables from the page cache (cold-lookup
    /// benchmarks). The versions mapping keeps its pages; the deleted
    /// bitmap lives in RAM.
    pub fn clear_cache(&self) -> Result<()> {
        self.nums.file().clear_cache()?;
        self.uuids.file().clear_cache()?;
        self.external.clear_cache()?;
        self.kinds.clear_cache()?;
        self.order.clear_cache()
    }

    /// Pages of the read-only tables (records, external ids, kinds, order)
    /// in the page cache, by `mincore`: after [`clear_cache`](Self::clear_cache),
    /// the pages a lookup touched (cold-lookup measurements).
    pub fn resident_pages(&self) -> usize {
        self.nums.file().resident_pages()
            + self.uuids.file().resident_pages()
            + self.external.resident_pages()
            + self.kinds.resident_pages()
            + self.order.resident_pages()
    }

    /// external → internal without the `Result` wrapper (lookups in the
    /// mapped arrays cannot fail; every index is bounds-checked).
    #[inline]
    fn lookup(&self, id: PointId) -> Option<PointOffset> {
        // Hot path: hash, one record read (one page), one bit of the in-RAM
        // deleted bitmap.
        self.find(id).filter(|o| !self.deleted.get(*o as usize))
    }
}

impl IdMapperRead for MmapIdMapper {
    #[inline]
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        Ok(self.lookup(id))
    }

    fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        if self.deleted.get(offset as usize) {
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
        Box::new(order[start..].iter().filter_map(move |&o| {
            if self.deleted.get(o as usize) {
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
        let mut bytes = (self.nums.file().len()
            + self.uuids.file().len()
            + self.external.len()
            + self.kinds.len()
            + self.versions.len()
            + self.order.len()) as u64;
        bytes += (std::mem::size_of::<PhfHeader>() + self.phf_bytes) as u64;
        bytes + self.deleted.file_len()
    }

    /// The deleted bitmap's generation (+1 per flush that dropped ids).
    fn durable_sequence(&self) -> Option<u64> {
        Some(self.deleted.generation())
    }
}

impl IdMapper for MmapIdMapper {
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
        let Some(offset) = self.find(id) else {
            return Ok(None);
        };
        if offset as usize >= self.total {
            return Err(corrupted(
                self.external.path(),
                format!("{id} maps to offset {offset} of {}", self.total),
            ));
        }
        // In RAM until `flush_mappings`: a kill keeps the point mapped, as
        // of the last flush.
        if self.deleted.set(offset)? {
            return Ok(None);
        }
        self.available = self.available.saturating_sub(1);
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

    /// Persist the deleted bitmap (both checksummed copies).
    fn flush_mappings(&mut self) -> Result<()> {
        self.deleted.flush()
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
