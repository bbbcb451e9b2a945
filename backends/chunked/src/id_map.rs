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
//! Every record is `tag: u8`, a tag-specific body, then `crc32c(tag ++ body)`
//! as a little-endian `u32`:
//!
//! | tag | record      | body                                    | total size |
//! |----:|-------------|-----------------------------------------|-----------:|
//! | 1   | link u64    | id `u64`, offset `u32`                  | 17         |
//! | 2   | link UUID   | id 16 bytes (big-endian UUID), offset `u32` | 25     |
//! | 3   | drop u64    | id `u64`                                | 13         |
//! | 4   | drop UUID   | id 16 bytes                             | 21         |
//! | 5   | total       | allocated offsets `u64`                 | 13         |
//!
//! Records are buffered in RAM and appended with one `write` + `fdatasync`
//! in [`IdMapper::flush_mappings`]. At open the log is replayed into a
//! `BTreeMap<PointId, PointOffset>` (ordered iteration) and a
//! `Vec<Option<PointId>>`. A bad record that runs to the end of the file,
//! or is followed only by zero bytes or by less than one record's worth of
//! bytes, is a torn tail from an interrupted append: the file is truncated
//! to the last good record. A bad record followed by more data is
//! corruption in the middle and an error. When the log holds many more
//! records than live mappings it is compacted at open (a `total` record
//! plus one link per live mapping, written to a temporary file and renamed
//! over the log).
//!
//! ### `versions.dat`
//!
//! Slot `o` holds `version + 1` of offset `o`, `0` meaning "no version"
//! (so the zero bytes of a grown file read as unset; `u64::MAX` cannot be
//! stored). It is written in place through the mapping and msynced by
//! [`IdMapper::flush_versions`]; it grows by doubling.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use vecseg_mmap::header::{read_header, FilePrefix};
use vecseg_mmap::MmapFileMut;
use vecseg_traits::fsutil::{dir_size, write_atomic};
use vecseg_traits::{
    AppendableIdMapper, IdMapper, IdMapperRead, IoResultExt, PointId, PointOffset, Result,
    StorageError, Version,
};

use crate::common::{prepare_new_dir, read_u32, read_u64};

/// File name of the mapping log.
pub const LOG_FILE: &str = "mappings.log";
/// File name of the versions file.
pub const VERSIONS_FILE: &str = "versions.dat";
/// Format version of both files.
pub const FORMAT_VERSION: u32 = 1;

const LOG_MAGIC: [u8; 8] = *b"VSIDMLOG";
const VERSIONS_MAGIC: [u8; 8] = *b"VSIDVERS";
const LOG_HEADER_LEN: usize = 16;
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
    /// Encoded records not yet appended to the log.
    pending: Vec<u8>,
    versions: MmapFileMut,
    versions_dirty: bool,
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
        let prefix = FilePrefix::new::<FilePrefix>(LOG_MAGIC, FORMAT_VERSION);
        write_atomic(&dir.join(LOG_FILE), bytemuck::bytes_of(&prefix))?;
        Self::open(dir)
    }

    /// Open the mapper in `dir`: validate both files, replay the log
    /// (cutting a torn tail), compact it when mostly dead.
    pub fn open(dir: &Path) -> Result<Self> {
        let log_path = dir.join(LOG_FILE);
        let bytes = std::fs::read(&log_path).at(&log_path)?;
        read_header::<FilePrefix>(&log_path, &bytes, LOG_MAGIC, FORMAT_VERSION)?;
        let mut maps = Maps::default();
        let mut pos = LOG_HEADER_LEN;
        let mut records = 0usize;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            match decode(rest) {
                Ok((record, size)) => {
                    apply(&mut maps, record).ok_or_else(|| {
                        StorageError::corrupted(
                            &log_path,
                            format!("record at byte {pos} links past the allocated offsets"),
                        )
                    })?;
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
                        let what = match bad {
                            Bad::Tag(t) => format!("unknown record tag {t}"),
                            Bad::Crc => "checksum mismatch".to_string(),
                            Bad::Incomplete => "incomplete record".to_string(),
                        };
                        return Err(StorageError::corrupted(
                            &log_path,
                            format!(
                                "{what} at byte {pos} with {} more bytes after it",
                                rest.len()
                            ),
                        ));
                    }
                    log::warn!(
                        "{}: cutting a torn tail of {} bytes at byte {pos}",
                        log_path.display(),
                        rest.len()
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&log_path)
                        .at(&log_path)?;
                    f.set_len(pos as u64).at(&log_path)?;
                    f.sync_all().at(&log_path)?;
                    break;
                }
            }
        }
        if records > 4096 && records > 2 * maps.by_external.len() + 1 {
            compact(&log_path, &maps)?;
        }
        let log = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .at(&log_path)?;

        let versions_path = dir.join(VERSIONS_FILE);
        let versions = MmapFileMut::open(&versions_path)?;
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
        Ok(ChunkedIdMapper {
            dir: dir.to_path_buf(),
            maps,
            log,
            log_path,
            pending: Vec::new(),
            versions,
            versions_dirty: false,
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

    fn write_version_slot(&mut self, offset: usize, raw: u64) -> Result<()> {
        if offset >= self.version_slots() {
            if raw == 0 {
                return Ok(()); // beyond the file everything reads as unset
            }
            let mut slots = self.version_slots().max(MIN_VERSION_SLOTS);
            while slots <= offset {
                slots *= 2;
            }
            self.versions
                .resize((VERSIONS_HEADER_LEN + slots * 8) as u64)?;
        }
        let at = VERSIONS_HEADER_LEN + offset * 8;
        self.versions.bytes_mut()[at..at + 8].copy_from_slice(&raw.to_le_bytes());
        self.versions_dirty = true;
        Ok(())
    }
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
    out.extend_from_slice(bytemuck::bytes_of(&FilePrefix::new::<FilePrefix>(
        LOG_MAGIC,
        FORMAT_VERSION,
    )));
    encode(Record::Total(maps.by_internal.len() as u64), &mut out);
    for (o, id) in maps.by_internal.iter().enumerate() {
        if let Some(id) = id {
            encode(Record::Link(*id, o as PointOffset), &mut out);
        }
    }
    write_atomic(path, &out)
}

impl IdMapperRead for ChunkedIdMapper {
    fn internal(&self, id: PointId) -> Option<PointOffset> {
        self.maps.by_external.get(&id).copied()
    }

    fn external(&self, offset: PointOffset) -> Option<PointId> {
        self.maps
            .by_internal
            .get(offset as usize)
            .copied()
            .flatten()
    }

    fn version(&self, offset: PointOffset) -> Option<Version> {
        let o = offset as usize;
        if o >= self.maps.by_internal.len() {
            return None;
        }
        match read_u64(self.versions.bytes(), VERSIONS_HEADER_LEN + o * 8) {
            None | Some(0) => None,
            Some(raw) => Some(raw - 1),
        }
    }

    fn total_count(&self) -> usize {
        self.maps.by_internal.len()
    }

    fn available_count(&self) -> usize {
        self.maps.by_external.len()
    }

    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = (PointId, PointOffset)> + '_> {
        match from {
            Some(start) => Box::new(self.maps.by_external.range(start..).map(|(k, v)| (*k, *v))),
            None => Box::new(self.maps.by_external.iter().map(|(k, v)| (*k, *v))),
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
        if version == u64::MAX {
            return Err(StorageError::InvalidArgument(
                "version u64::MAX cannot be stored".into(),
            ));
        }
        self.write_version_slot(offset as usize, version + 1)
    }

    /// Append the buffered records to `mappings.log` and `fdatasync` it.
    fn flush_mappings(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.log.write_all(&self.pending).at(&self.log_path)?;
        self.log.sync_data().at(&self.log_path)?;
        self.pending.clear();
        Ok(())
    }

    /// msync `versions.dat`.
    fn flush_versions(&mut self) -> Result<()> {
        if self.versions_dirty {
            self.versions.flush()?;
            self.versions_dirty = false;
        }
        Ok(())
    }
}

impl AppendableIdMapper for ChunkedIdMapper {
    fn set_link(&mut self, id: PointId, offset: PointOffset) -> Result<()> {
        let total = self.maps.by_internal.len();
        if offset as usize > total {
            return Err(StorageError::OffsetOutOfRange { offset, len: total });
        }
        if offset as usize == total {
            // A slot past the old end may hold a stale version from a
            // mapping lost in a crash: clear it.
            self.write_version_slot(total, 0)?;
        }
        self.maps
            .link(id, offset)
            .ok_or(StorageError::OffsetOutOfRange { offset, len: total })?;
        encode(Record::Link(id, offset), &mut self.pending);
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
