//! Upgrade of a format-1 id map (written before the tables carried
//! checksums) to format 2, run by [`MmapIdMapper::open`] when
//! `ids_flags.dat` is present; `format_v2.rs` then takes it to format 3.
//!
//! Format 1 kept the dropped state twice, in bit 31 of each slot / UUID
//! record and in the deleted half of `ids_flags.dat` (whose other half is
//! the is-UUID bitmap), with a `dirty` word for drops only partly written.
//! The upgrade:
//!
//! 1. reads the deleted bitmap as the union of every place a drop may be
//!    recorded: the flags file, the slots' and records' bit 31, and an
//!    `ids_deleted.dat` left by an interrupted run (drops are never undone,
//!    so the union is the state of the last drop);
//! 2. writes `ids_deleted.dat` and `ids_kinds.dat`;
//! 3. rewrites every table still in format 1 (slots and records without
//!    bit 31; external, order and the PHF file only get the new header);
//! 4. removes `ids_flags.dat`, the marker of an unfinished upgrade.
//!
//! Each file is replaced by rename, and the drops are in `ids_deleted.dat`
//! before any table loses its bit 31, so a kill at any point leaves a
//! directory the next open upgrades to the same result. Versions are
//! converted separately (their format is independent).

use std::fs;
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{IoResultExt, Result};

use super::format_v2::UuidRecordV2;
use super::{
    corrupted, write_bitmaps, write_phf_file, write_table, NumLayout, PhfHeader, TableHeader,
    EXTERNAL_MAGIC, FLAGS_MAGIC, IDS_DELETED_FILE, IDS_EXTERNAL_FILE, IDS_FLAGS_FILE,
    IDS_ORDER_FILE, IDS_PHF_FILE, IDS_SLOTS_FILE, IDS_UUIDS_FILE, MAX_TOTAL, ORDER_MAGIC,
    PHF_MAGIC, SLOTS_MAGIC, TABLE_FORMAT_VERSION, UUIDS_MAGIC,
};
use crate::checked_bitmap::{bitmap_words, has_bits_past, set_bit, CheckedBitmap};
use crate::header::{read_header, FilePrefix};

/// Format 1's bit of a slot entry / UUID record marking a dropped id.
const DROPPED_V1: u32 = 1 << 31;

/// Header of a format-1 `ids_flags.dat` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct FlagsHeaderV1 {
    prefix: FilePrefix,
    total: u64,
    dirty: u64,
}

/// Header of a format-1 table (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct CountHeaderV1 {
    prefix: FilePrefix,
    count: u64,
}

/// Header of a format-1 `ids_phf.bin` (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PhfHeaderV1 {
    prefix: FilePrefix,
    num_keys: u64,
    uuid_keys: u64,
    num_phf_bytes: u64,
    uuid_phf_bytes: u64,
}

/// A table read in either format: its format version and body.
pub(super) struct AnyTable {
    version: u32,
    count: usize,
    /// The entries' bytes.
    pub body: Vec<u8>,
}

/// `bytes` as `T`s (copied: a `Vec<u8>` need not be aligned for `T`).
pub(super) fn collect<T: Pod>(bytes: &[u8]) -> Vec<T> {
    bytes
        .chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

/// Read a table of `entry`-byte entries in format 1 or 2 (format 2 with
/// its checksum checked; also used by the format-2 upgrade).
pub(super) fn read_any_table(path: &Path, magic: [u8; 8], entry: usize) -> Result<AnyTable> {
    let bytes = fs::read(path).at(path)?;
    let prefix_len = std::mem::size_of::<FilePrefix>();
    let version = (bytes.len() >= prefix_len)
        .then(|| bytemuck::pod_read_unaligned::<FilePrefix>(&bytes[..prefix_len]).format_version);
    let (count, start) = if version == Some(1) {
        let h: CountHeaderV1 = read_header(path, &bytes, magic, 1)?;
        (h.count, std::mem::size_of::<CountHeaderV1>())
    } else {
        let h: TableHeader = read_header(path, &bytes, magic, TABLE_FORMAT_VERSION)?;
        let body = &bytes[std::mem::size_of::<TableHeader>()..];
        if h.reserved != 0 || crc32c::crc32c(body) != h.body_crc {
            return Err(corrupted(path, "table fails its checksum"));
        }
        (h.count, std::mem::size_of::<TableHeader>())
    };
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_TOTAL)
        .ok_or_else(|| corrupted(path, format!("count {count} out of range")))?;
    let body = bytes[start..].to_vec();
    if body.len() as u64 != count as u64 * entry as u64 {
        return Err(corrupted(
            path,
            format!("holds {} bytes for {count} entries of {entry}", body.len()),
        ));
    }
    Ok(AnyTable {
        version: version.unwrap_or(0),
        count,
        body,
    })
}

/// Upgrade the format-1 id map in `dir` (see the module docs).
pub(super) fn upgrade(dir: &Path) -> Result<()> {
    let flags_path = dir.join(IDS_FLAGS_FILE);
    let flags = fs::read(&flags_path).at(&flags_path)?;
    let fh: FlagsHeaderV1 = read_header(&flags_path, &flags, FLAGS_MAGIC, 1)?;
    let total = usize::try_from(fh.total)
        .ok()
        .filter(|t| *t <= MAX_TOTAL)
        .ok_or_else(|| corrupted(&flags_path, format!("total {} out of range", fh.total)))?;
    let words = bitmap_words(total);
    let body: Vec<u64> = collect(&flags[std::mem::size_of::<FlagsHeaderV1>()..]);
    if body.len() != 2 * words || flags.len() % 8 != 0 {
        return Err(corrupted(
            &flags_path,
            format!("bitmaps are {} words, expected {}", body.len(), 2 * words),
        ));
    }
    let (deleted, kinds) = body.split_at(words);
    let (mut deleted, kinds) = (deleted.to_vec(), kinds.to_vec());
    if has_bits_past(&deleted, total) || has_bits_past(&kinds, total) {
        return Err(corrupted(&flags_path, "bits set past the last offset"));
    }

    // 1. Every recorded drop.
    let deleted_path = dir.join(IDS_DELETED_FILE);
    if deleted_path.exists() {
        if let Ok(earlier) = CheckedBitmap::open(&deleted_path) {
            if earlier.len() == total {
                for (w, e) in deleted.iter_mut().zip(earlier.words()) {
                    *w |= e;
                }
            }
        }
    }
    let slots_path = dir.join(IDS_SLOTS_FILE);
    let slots = read_any_table(&slots_path, SLOTS_MAGIC, 4)?;
    let mut slot_entries: Vec<u32> = collect(&slots.body);
    let uuids_path = dir.join(IDS_UUIDS_FILE);
    let uuids = read_any_table(
        &uuids_path,
        UUIDS_MAGIC,
        std::mem::size_of::<UuidRecordV2>(),
    )?;
    let mut records: Vec<UuidRecordV2> = collect(&uuids.body);
    let entries = slot_entries
        .iter_mut()
        .map(|e| (e, &slots_path))
        .chain(records.iter_mut().map(|r| (&mut r.offset, &uuids_path)));
    for (e, path) in entries {
        let o = (*e & !DROPPED_V1) as usize;
        if o >= total {
            return Err(corrupted(
                path,
                format!("entry points at offset {o} of {total}"),
            ));
        }
        if *e & DROPPED_V1 != 0 {
            set_bit(&mut deleted, o);
        }
        *e = o as u32;
    }

    // 2. The new bitmaps.
    write_bitmaps(dir, total, &deleted, &kinds)?;

    // 3. Tables still in format 1.
    if slots.version == 1 {
        write_table(
            &slots_path,
            SLOTS_MAGIC,
            slots.count,
            bytemuck::cast_slice(&slot_entries),
        )?;
    }
    if uuids.version == 1 {
        write_table(
            &uuids_path,
            UUIDS_MAGIC,
            uuids.count,
            bytemuck::cast_slice(&records),
        )?;
    }
    for (name, magic, entry) in [
        (IDS_EXTERNAL_FILE, EXTERNAL_MAGIC, 8),
        (IDS_ORDER_FILE, ORDER_MAGIC, 4),
    ] {
        let path = dir.join(name);
        let table = read_any_table(&path, magic, entry)?;
        if table.version == 1 {
            write_table(&path, magic, table.count, &table.body)?;
        }
    }
    let phf_path = dir.join(IDS_PHF_FILE);
    let phf = fs::read(&phf_path).at(&phf_path)?;
    if read_header::<PhfHeader>(&phf_path, &phf, PHF_MAGIC, TABLE_FORMAT_VERSION).is_err() {
        let h: PhfHeaderV1 = read_header(&phf_path, &phf, PHF_MAGIC, 1)?;
        let body = &phf[std::mem::size_of::<PhfHeaderV1>()..];
        if h.num_phf_bytes.checked_add(h.uuid_phf_bytes) != Some(body.len() as u64) {
            return Err(corrupted(
                &phf_path,
                "hash function lengths do not match the file",
            ));
        }
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        write_phf_file(
            dir,
            TABLE_FORMAT_VERSION,
            NumLayout::Records,
            count(h.num_keys),
            count(h.uuid_keys),
            h.num_phf_bytes as usize,
            body,
        )?;
    }

    // 4. Done.
    fs::remove_file(&flags_path).at(&flags_path)?;
    fsync_dir(dir)
}
