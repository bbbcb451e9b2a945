//! [`ChunkedIdMapper`]: an append-only mapping log replayed into RAM, plus a
//! memory-mapped versions file written in place.
//!
//! ## Directory layout
//!
//! ```text
//! <dir>/mappings.log   16-byte prefix, then CRC-protected records (append only)
//! <dir>/versions.dat   32-byte header, then one little-endian u64 per offset
//! ```
//!
//! ### `mappings.log`
//!
//! A 32-byte header — magic `VSIDMLOG`, format version `u32` (2), header
//! length `u32` (32), **committed length** `u64` (bytes of the file, header
//! included, that the last completed flush made durable), `crc32c` of the
//! first 24 bytes `u32`, 4 zero bytes — then records. Every record is
//! `tag: u8`, a tag-specific body, then `crc32c(tag ++ body)` as a
//! little-endian `u32`:
//!
//! | tag | record      | body                                    | total size |
//! |----:|-------------|-----------------------------------------|-----------:|
//! | 1   | link u64    | id `u64`, offset `u32`                  | 17         |
//! | 2   | link UUID   | id 16 bytes (big-endian UUID), offset `u32` | 25     |
//! | 3   | drop u64    | id `u64`                                | 13         |
//! | 4   | drop UUID   | id 16 bytes                             | 21         |
//! | 5   | total       | allocated offsets `u64`                 | 13         |
//!
//! Records are buffered in RAM; [`IdMapper::flush_mappings`] appends them
//! with one `write` + `fdatasync`, then rewrites the header with the new
//! committed length + `fdatasync`. At open the records up to the committed
//! length must all decode (a bad one is corruption, an error naming the
//! file and byte), and a file shorter than the committed length has lost
//! flushed records (an error, never a silent cut). Bytes past the committed
//! length are an append that no flush completed: they are cut. So a torn
//! tail is told apart from a truncated file by the header, which a
//! truncation cannot change. The log is replayed into a
//! `BTreeMap<PointId, PointOffset>` (ordered iteration) and a
//! `Vec<Option<PointId>>`. When the log holds many more records than live
//! mappings it is compacted at open (written to a temporary file and
//! renamed over the log). A format-1 log (16-byte header, no committed
//! length) is read with the old torn-tail rules and compacted into format 2.
//!
//! ### `versions.dat`
//!
//! Slot `o` holds the version of offset `o` encoded by
//! [`vecseg_traits::version_slot`] (`0` = no version, so the zero bytes of
//! a grown file read as unset; a CRC-8 check byte, so a flipped version is
//! an error, never a different version; versions up to `2^56 - 2`). The file
//! grows by doubling. A format-1 file (plain `version + 1`) is converted in
//! place at open (idempotently, the header last). [`IdMapper::set_version`] only records
//! the version in RAM (reads see it at once); [`IdMapper::flush_versions`]
//! writes the buffered versions into the mapping and msyncs them. A version
//! on disk vouches for the point's data, so it must not be written before
//! the segment has flushed the vectors and payloads; the segment flushes
//! versions before mappings. At open every mapped offset must have a slot
//! in the file (a shorter file lost flushed versions: an error).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use vecseg_mmap::header::{read_header, CheckedHeader, FilePrefix};
use vecseg_mmap::MmapFileMut;
use vecseg_traits::fsutil::{dir_size, write_atomic};
use vecseg_traits::version_slot;
use vecseg_traits::{
    AppendableIdMapper, IdMapper, IdMapperRead, IoResultExt, PointId, PointOffset, Result,
    StorageError, Version,
};

use crate::common::{prepare_new_dir, read_u32, read_u64};

/// File name of the mapping log.
pub const LOG_FILE: &str = "mappings.log";
/// File name of the versions file.
pub const VERSIONS_FILE: &str = "versions.dat";
/// Format version of `mappings.log` this build writes (it also reads 1).
pub const LOG_FORMAT_VERSION: u32 = 2;
/// Format version of `versions.dat` this build writes (it converts 1).
pub const FORMAT_VERSION: u32 = 2;

const LOG_MAGIC: [u8; 8] = *b"VSIDMLOG";
const VERSIONS_MAGIC: [u8; 8] = *b"VSIDVERS";
/// Header length of a format-1 log (prefix only).
const LOG_V1_HEADER_LEN: usize = 16;
const LOG_HEADER_LEN: usize = 32;
const VERSIONS_HEADER_LEN: usize = 32;
const MIN_VERSION_SLOTS: usize = 1024;

const TAG_LINK_NUM: u8 = 1;
const TAG_LINK_UUID: u8 = 2;
const TAG_DROP_NUM: u8 = 3;
const TAG_DROP_UUID: u8 = 4;
const TAG_TOTAL: u8 = 5;
/// Size of the largest record.
const MAX_RECORD: usize = 25;

/// Header of `versions.dat`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct VersionsHeader {
    prefix: FilePrefix,
    reserved: [u64; 2],
}

/// Header of a format-2 `mappings.log` carrying `committed_len`.
fn log_header(committed_len: u64) -> CheckedHeader {
    CheckedHeader::new(LOG_MAGIC, LOG_FORMAT_VERSION, committed_len)
}

/// The committed length of a format-2 log, checked.
fn read_committed_len(path: &Path, bytes: &[u8]) -> Result<u64> {
    let committed = CheckedHeader::read(path, bytes, LOG_MAGIC, LOG_FORMAT_VERSION, false)?;
    if committed < LOG_HEADER_LEN as u64 {
        return Err(StorageError::corrupted(
            path,
            format!("committed length {committed} is inside the header"),
        ));
    }
    Ok(committed)
}

/// One decoded log record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Record {
    Link(PointId, PointOffset),
    Drop(PointId),
    Total(u64),
}

fn body_len(tag: u8) -> Option<usize> {
    match tag {
        TAG_LINK_NUM => Some(12),
        TAG_LINK_UUID => Some(20),
        TAG_DROP_NUM | TAG_TOTAL => Some(8),
        TAG_DROP_UUID => Some(16),
        _ => None,
    }
}

fn encode(record: Record, out: &mut Vec<u8>) {
    let start = out.len();
    match record {
        Record::Link(PointId::Num(n), o) => {
            out.push(TAG_LINK_NUM);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
        }
        Record::Link(PointId::Uuid(u), o) => {
            out.push(TAG_LINK_UUID);
            out.extend_from_slice(u.as_bytes());
            out.extend_from_slice(&o.to_le_bytes());
        }
        Record::Drop(PointId::Num(n)) => {
            out.push(TAG_DROP_NUM);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Record::Drop(PointId::Uuid(u)) => {
            out.push(TAG_DROP_UUID);
            out.extend_from_slice(u.as_bytes());
        }
        Record::Total(t) => {
            out.push(TAG_TOTAL);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Why a record could not be decoded.
enum Bad {
    Tag(u8),
    Incomplete,
    Crc,
}

impl Bad {
    fn describe(&self) -> String {
        match self {
            Bad::Tag(t) => format!("unknown record tag {t}"),
            Bad::Crc => "checksum mismatch".to_string(),
            Bad::Incomplete => "incomplete record".to_string(),
        }
    }
}

/// Decode the record at the start of `bytes`; returns it and its size.
fn decode(bytes: &[u8]) -> std::result::Result<(Record, usize), Bad> {
    let tag = *bytes.first().ok_or(Bad::Incomplete)?;
    let body = body_len(tag).ok_or(Bad::Tag(tag))?;
    let size = 1 + body + 4;
    if bytes.len() < size {
        return Err(Bad::Incomplete);
    }
    let crc = read_u32(bytes, 1 + body).ok_or(Bad::Incomplete)?;
    if crc32c::crc32c(&bytes[..1 + body]) != crc {
        return Err(Bad::Crc);
    }
    let uuid = |b: &[u8]| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[1..17]);
        PointId::Uuid(uuid::Uuid::from_bytes(a))
    };
    let u64_at = |at| read_u64(bytes, at).ok_or(Bad::Incomplete);
    let u32_at = |at| read_u32(bytes, at).ok_or(Bad::Incomplete);
    let record = match tag {
        TAG_LINK_NUM => Record::Link(PointId::Num(u64_at(1)?), u32_at(9)?),
        TAG_LINK_UUID => Record::Link(uuid(bytes), u32_at(17)?),
        TAG_DROP_NUM => Record::Drop(PointId::Num(u64_at(1)?)),
        TAG_DROP_UUID => Record::Drop(uuid(bytes)),
        _ => Record::Total(u64_at(1)?),
    };
    Ok((record, size))
}

/// The in-RAM mapping both replay and live operations update.
#[derive(Debug, Default)]
struct Maps {
    by_external: BTreeMap<PointId, PointOffset>,
    by_internal: Vec<Option<PointId>>,
}

impl Maps {
    /// Map `id` to `offset` (`offset <= total`), unmapping whatever either
    /// side was mapped to before. `None` when `offset` is out of range.
    fn link(&mut self, id: PointId, offset: PointOffset) -> Option<()> {
        let index = offset as usize;
        if index > self.by_internal.len() {
            return None;
        }
        if index == self.by_internal.len() {
            self.by_internal.push(None);
        }
        if let Some(old_id) = self.by_internal[index] {
            self.by_external.remove(&old_id);
        }
        if let Some(old) = self.by_external.insert(id, offset) {
            if old != offset {
                if let Some(slot) = self.by_internal.get_mut(old as usize) {
                    *slot = None;
                }
            }
        }
        self.by_internal[index] = Some(id);
        Some(())
    }

    fn drop_id(&mut self, id: PointId) -> Option<PointOffset> {
        let offset = self.by_external.remove(&id)?;
        if let Some(slot) = self.by_internal.get_mut(offset as usize) {
            *slot = None;
        }
        Some(offset)
    }
}

/// Id mapping persisted as an append-only log, versions in a mapped file;
/// see the module documentation for the formats.
#[derive(Debug)]
pub struct ChunkedIdMapper {
    dir: PathBuf,
    maps: Maps,
    log: File,
    log_path: PathBuf,
    /// Committed length of the log (what its header says).
    committed_len: u64,
    /// Offsets allocated by the committed part of the log.
    durable_offsets: usize,
    /// Encoded records not yet appended to the log.
    pending: Vec<u8>,
    versions: MmapFileMut,
    /// Raw slot values (`version + 1`, 0 = none) not yet written to
    /// `versions.dat`, by offset.
    pending_versions: BTreeMap<usize, u64>,
}

impl ChunkedIdMapper {
    /// Create an empty mapper in `dir` (created if missing; an existing
    /// mapper there is an error).
    pub fn create(dir: &Path) -> Result<Self> {
        prepare_new_dir(dir, LOG_FILE)?;
        let header = VersionsHeader {
            prefix: FilePrefix::new::<VersionsHeader>(VERSIONS_MAGIC, FORMAT_VERSION),
            reserved: [0; 2],
        };
        MmapFileMut::create(
            &dir.join(VERSIONS_FILE),
            (VERSIONS_HEADER_LEN + MIN_VERSION_SLOTS * 8) as u64,
            bytemuck::bytes_of(&header),
        )?;
        // The log last: its presence marks a complete mapper.
        let header = log_header(LOG_HEADER_LEN as u64);
        write_atomic(&dir.join(LOG_FILE), bytemuck::bytes_of(&header))?;
        Self::open(dir)
    }

    /// Open the mapper in `dir`: validate both files, replay the log
    /// (cutting an append no flush completed), compact it when mostly dead.
    pub fn open(dir: &Path) -> Result<Self> {
        let log_path = dir.join(LOG_FILE);
        let bytes = std::fs::read(&log_path).at(&log_path)?;
        let prefix_len = std::mem::size_of::<FilePrefix>();
        let v1 = bytes.len() >= prefix_len
            && bytemuck::pod_read_unaligned::<FilePrefix>(&bytes[..prefix_len]).format_version == 1;
        let (maps, records) = if v1 {
            read_header::<FilePrefix>(&log_path, &bytes, LOG_MAGIC, 1)?;
            let (maps, records, _) = replay_v1(&log_path, &bytes)?;
            compact(&log_path, &maps)?;
            (maps, records)
        } else {
            let committed = read_committed_len(&log_path, &bytes)?;
            if (bytes.len() as u64) < committed {
                return Err(StorageError::corrupted(
                    &log_path,
                    format!(
                        "flushed records missing: the file is {} bytes, its header says {committed} were flushed",
                        bytes.len()
                    ),
                ));
            }
            let committed = committed as usize;
            let (maps, records) = replay(&log_path, &bytes[..committed])?;
            if bytes.len() > committed {
                log::warn!(
                    "{}: cutting {} bytes appended after the last completed flush",
                    log_path.display(),
                    bytes.len() - committed
                );
                truncate_file(&log_path, committed as u64)?;
            }
            (maps, records)
        };
        if records > 4096 && records > 2 * maps.by_external.len() + 1 {
            compact(&log_path, &maps)?;
        }
        // Not `O_APPEND`: Linux ignores `pwrite`'s offset on such files, and
        // the header is rewritten in place.
        let log = OpenOptions::new()
            .write(true)
            .open(&log_path)
            .at(&log_path)?;

        let versions_path = dir.join(VERSIONS_FILE);
        let mut versions = MmapFileMut::open(&versions_path)?;
        let prefix_len = std::mem::size_of::<FilePrefix>();
        if versions.len() >= prefix_len
            && bytemuck::pod_read_unaligned::<FilePrefix>(&versions.bytes()[..prefix_len])
                .format_version
                == 1
        {
            read_header::<VersionsHeader>(&versions_path, versions.bytes(), VERSIONS_MAGIC, 1)?;
            convert_versions_v1(&mut versions)?;
        }
        read_header::<VersionsHeader>(
            &versions_path,
            versions.bytes(),
            VERSIONS_MAGIC,
            FORMAT_VERSION,
        )?;
        if !(versions.len() - VERSIONS_HEADER_LEN).is_multiple_of(8) {
            return Err(StorageError::corrupted(
                &versions_path,
                format!(
                    "{} bytes after the header is not a whole number of u64 slots",
                    versions.len() - VERSIONS_HEADER_LEN
                ),
            ));
        }
        let slots = (versions.len() - VERSIONS_HEADER_LEN) / 8;
        if let Some(&last) = maps.by_external.values().max() {
            if last as usize >= slots {
                return Err(StorageError::corrupted(
                    &versions_path,
                    format!(
                        "flushed versions missing: offset {last} is mapped, the file holds {slots} slots"
                    ),
                ));
            }
        }
        let committed_len = std::fs::metadata(&log_path).at(&log_path)?.len();
        let durable_offsets = maps.by_internal.len();
        Ok(ChunkedIdMapper {
            dir: dir.to_path_buf(),
            maps,
            log,
            log_path,
            committed_len,
            durable_offsets,
            pending: Vec::new(),
            versions,
            pending_versions: BTreeMap::new(),
        })
    }

    /// The mapper's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of log records not yet flushed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    fn version_slots(&self) -> usize {
        (self.versions.len() - VERSIONS_HEADER_LEN) / 8
    }

    /// Raw slot value of `offset` as `versions.dat` holds it (0 past the end).
    fn stored_slot(&self, offset: usize) -> u64 {
        read_u64(self.versions.bytes(), VERSIONS_HEADER_LEN + offset * 8).unwrap_or(0)
    }

    /// Write the buffered versions into the mapping (growing it) and msync them.
    fn write_pending_versions(&mut self) -> Result<()> {
        let Some((&last, _)) = self.pending_versions.last_key_value() else {
            return Ok(());
        };
        if last >= self.version_slots() {
            let mut slots = self.version_slots().max(MIN_VERSION_SLOTS);
            while slots <= last {
                slots *= 2;
            }
            self.versions
                .resize((VERSIONS_HEADER_LEN + slots * 8) as u64)?;
        }
        let first = *self.pending_versions.keys().next().unwrap_or(&last);
        let bytes = self.versions.bytes_mut();
        for (&o, &raw) in &self.pending_versions {
            let at = VERSIONS_HEADER_LEN + o * 8;
            bytes[at..at + 8].copy_from_slice(&raw.to_le_bytes());
        }
        let from = VERSIONS_HEADER_LEN + first * 8;
        self.versions.flush_range(from, (last - first + 1) * 8)?;
        self.pending_versions.clear();
        Ok(())
    }
}

/// Replay the records of a format-2 log's committed part; every record in
/// it must decode.
fn replay(path: &Path, bytes: &[u8]) -> Result<(Maps, usize)> {
    let mut maps = Maps::default();
    let mut pos = LOG_HEADER_LEN;
    let mut records = 0usize;
    while pos < bytes.len() {
        let (record, size) = decode(&bytes[pos..]).map_err(|bad| {
            StorageError::corrupted(
                path,
                format!("{} at byte {pos} of the flushed records", bad.describe()),
            )
        })?;
        apply_at(&mut maps, record, path, pos)?;
        records += 1;
        pos += size;
    }
    Ok((maps, records))
}

/// Replay a format-1 log (no committed length): a bad record that runs to
/// the end of the file, or is followed only by zero bytes or by less than
/// one record's worth of bytes, is a torn tail; a bad record followed by
/// more data is corruption. Returns the maps, the record count and the
/// length of the good part.
fn replay_v1(path: &Path, bytes: &[u8]) -> Result<(Maps, usize, usize)> {
    let mut maps = Maps::default();
    let mut pos = LOG_V1_HEADER_LEN;
    let mut records = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        match decode(rest) {
            Ok((record, size)) => {
                apply_at(&mut maps, record, path, pos)?;
                records += 1;
                pos += size;
            }
            Err(bad) => {
                let torn = match bad {
                    Bad::Incomplete => true,
                    Bad::Crc => {
                        let size = body_len(rest[0]).map_or(0, |b| 1 + b + 4);
                        rest.len() <= size || rest[size..].iter().all(|&b| b == 0)
                    }
                    Bad::Tag(_) => rest.len() < MAX_RECORD || rest.iter().all(|&b| b == 0),
                };
                if !torn {
                    return Err(StorageError::corrupted(
                        path,
                        format!(
                            "{} at byte {pos} with {} more bytes after it",
                            bad.describe(),
                            rest.len()
                        ),
                    ));
                }
                break;
            }
        }
    }
    Ok((maps, records, pos))
}

/// Convert a format-1 `versions.dat` (plain `version + 1`) in place: every
/// slot whose top byte is 0 gets its check byte (a slot with one already
/// was converted by an interrupted earlier run), then the header says 2.
fn convert_versions_v1(file: &mut MmapFileMut) -> Result<()> {
    let path = file.path().to_path_buf();
    let bytes = file.bytes_mut();
    let slots = (bytes.len().saturating_sub(VERSIONS_HEADER_LEN)) / 8;
    for o in 0..slots {
        let at = VERSIONS_HEADER_LEN + o * 8;
        let raw = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        if raw != 0 && raw >> 56 == 0 {
            // A v1 slot holds `version + 1` < 2^56.
            let value = version_slot::encode(o as PointOffset, raw - 1)?;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
    }
    file.flush()?;
    let header = VersionsHeader {
        prefix: FilePrefix::new::<VersionsHeader>(VERSIONS_MAGIC, FORMAT_VERSION),
        reserved: [0; 2],
    };
    file.file()
        .write_all_at(bytemuck::bytes_of(&header), 0)
        .at(&path)?;
    file.flush()
}

/// [`apply`] the record at byte `pos` of log `path`; a link past the
/// allocated offsets is corruption.
fn apply_at(maps: &mut Maps, record: Record, path: &Path, pos: usize) -> Result<()> {
    apply(maps, record).ok_or_else(|| {
        StorageError::corrupted(
            path,
            format!("record at byte {pos} links past the allocated offsets"),
        )
    })
}

/// Cut `path` to `len` bytes durably.
fn truncate_file(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new().write(true).open(path).at(path)?;
    f.set_len(len).at(path)?;
    f.sync_all().at(path)
}

fn apply(maps: &mut Maps, record: Record) -> Option<()> {
    match record {
        Record::Link(id, o) => maps.link(id, o),
        Record::Drop(id) => {
            maps.drop_id(id);
            Some(())
        }
        Record::Total(t) => {
            let t = usize::try_from(t)
                .ok()
                .filter(|&t| t <= u32::MAX as usize + 1)?;
            if t > maps.by_internal.len() {
                maps.by_internal.resize(t, None);
            }
            Some(())
        }
    }
}

/// Rewrite the log as a `total` record plus one link per live mapping.
fn compact(path: &Path, maps: &Maps) -> Result<()> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN + 32 + maps.by_external.len() * MAX_RECORD);
    out.extend_from_slice(bytemuck::bytes_of(&log_header(0)));
    encode(Record::Total(maps.by_internal.len() as u64), &mut out);
    for (o, id) in maps.by_internal.iter().enumerate() {
        if let Some(id) = id {
            encode(Record::Link(*id, o as PointOffset), &mut out);
        }
    }
    let header = log_header(out.len() as u64);
    out[..LOG_HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
    write_atomic(path, &out)
}

impl IdMapperRead for ChunkedIdMapper {
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        Ok(self.maps.by_external.get(&id).copied())
    }

    fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        Ok(self
            .maps
            .by_internal
            .get(offset as usize)
            .copied()
            .flatten())
    }

    fn version(&self, offset: PointOffset) -> Result<Option<Version>> {
        let o = offset as usize;
        if o >= self.maps.by_internal.len() {
            return Ok(None);
        }
        let raw = match self.pending_versions.get(&o) {
            Some(&raw) => raw,
            None => self.stored_slot(o),
        };
        version_slot::decode(offset, raw).map_err(|()| {
            StorageError::corrupted(
                self.versions.path(),
                format!("version slot of offset {offset} fails its checksum"),
            )
        })
    }

    fn total_count(&self) -> usize {
        self.maps.by_internal.len()
    }

    fn available_count(&self) -> usize {
        self.maps.by_external.len()
    }

    fn durable_offsets(&self) -> usize {
        self.durable_offsets
    }

    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_> {
        match from {
            Some(start) => Box::new(
                self.maps
                    .by_external
                    .range(start..)
                    .map(|(k, v)| Ok((*k, *v))),
            ),
            None => Box::new(self.maps.by_external.iter().map(|(k, v)| Ok((*k, *v)))),
        }
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

impl IdMapper for ChunkedIdMapper {
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
        let offset = self.maps.drop_id(id);
        if offset.is_some() {
            encode(Record::Drop(id), &mut self.pending);
        }
        Ok(offset)
    }

    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()> {
        let total = self.maps.by_internal.len();
        if offset as usize >= total {
            return Err(StorageError::OffsetOutOfRange { offset, len: total });
        }
        self.pending_versions
            .insert(offset as usize, version_slot::encode(offset, version)?);
        Ok(())
    }

    /// Append the buffered records to `mappings.log` and `fdatasync` it,
    /// then record the new committed length in the header and `fdatasync`.
    fn flush_mappings(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.log
            .write_all_at(&self.pending, self.committed_len)
            .at(&self.log_path)?;
        self.log.sync_data().at(&self.log_path)?;
        let committed = self.committed_len + self.pending.len() as u64;
        self.log
            .write_all_at(bytemuck::bytes_of(&log_header(committed)), 0)
            .at(&self.log_path)?;
        self.log.sync_data().at(&self.log_path)?;
        self.committed_len = committed;
        self.durable_offsets = self.maps.by_internal.len();
        self.pending.clear();
        Ok(())
    }

    /// Write the buffered versions into `versions.dat` and msync them.
    fn flush_versions(&mut self) -> Result<()> {
        self.write_pending_versions()
    }
}

impl AppendableIdMapper for ChunkedIdMapper {
    fn set_link(&mut self, id: PointId, offset: PointOffset, version: Version) -> Result<()> {
        let total = self.maps.by_internal.len();
        if offset as usize > total {
            return Err(StorageError::OffsetOutOfRange { offset, len: total });
        }
        let slot = version_slot::encode(offset, version)?;
        self.maps
            .link(id, offset)
            .ok_or(StorageError::OffsetOutOfRange { offset, len: total })?;
        encode(Record::Link(id, offset), &mut self.pending);
        self.pending_versions.insert(offset as usize, slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let u = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        for r in [
            Record::Link(PointId::Num(42), 7),
            Record::Link(PointId::Uuid(u), 9),
            Record::Drop(PointId::Num(u64::MAX)),
            Record::Drop(PointId::Uuid(u)),
            Record::Total(123),
        ] {
            let mut buf = Vec::new();
            encode(r, &mut buf);
            let (back, size) = decode(&buf).ok().expect("decodes");
            assert_eq!(back, r);
            assert_eq!(size, buf.len());
            assert!(size <= MAX_RECORD);
        }
    }
}
