//! Upgrade of a format-2 id map to format 3, run by
//! [`MmapIdMapper::open`](super::MmapIdMapper::open) when `ids_slots.dat`
//! is present (after the format-1 upgrade, which writes format 2).
//!
//! Format 2 answered a numeric lookup with two reads, `slots[s]` (the
//! offset) and `external[offset]` (the id to check); format 3 keeps both in
//! one record per slot. The upgrade:
//!
//! 1. writes `ids_num.dat` with `{external[slots[s]], slots[s]}` for every
//!    slot (the slots and external tables' checksums checked first);
//! 2. rewrites `ids_uuids.dat` into format 3 (20-byte records in 4 KiB
//!    blocks) if it is still in format 2 (24-byte records);
//! 3. removes `ids_slots.dat`, the marker of an unfinished upgrade.
//!
//! The other tables keep their format-2 layout and headers. Each file is
//! replaced by rename and the slots file goes last, so a kill at any point
//! leaves a directory the next open upgrades to the same result.

use std::fs;
use std::io::Read;
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{IoResultExt, Result};

use super::format_v1::{collect, read_any_table};
use super::records::{write_record_table, NumRecord, UuidRecord, RECORDS_FORMAT_VERSION};
use super::{
    corrupted, EXTERNAL_MAGIC, IDS_EXTERNAL_FILE, IDS_NUM_FILE, IDS_SLOTS_FILE, IDS_UUIDS_FILE,
    NUMS_MAGIC, SLOTS_MAGIC, UUIDS_MAGIC,
};
use crate::header::FilePrefix;

/// One UUID record of a format-1/2 `ids_uuids.dat` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(super) struct UuidRecordV2 {
    /// The UUID's 16 bytes (RFC 4122 order).
    pub uuid: [u8; 16],
    /// Offset of the point (format 1: bit 31 = dropped).
    pub offset: u32,
    /// Zero.
    pub pad: u32,
}

/// Upgrade the format-2 id map in `dir` (see the module docs).
pub(super) fn upgrade(dir: &Path) -> Result<()> {
    // 1. Numeric records from the slots and the external ids.
    let slots_path = dir.join(IDS_SLOTS_FILE);
    let slots: Vec<u32> = collect(&read_any_table(&slots_path, SLOTS_MAGIC, 4)?.body);
    let external_path = dir.join(IDS_EXTERNAL_FILE);
    let external: Vec<u64> = collect(&read_any_table(&external_path, EXTERNAL_MAGIC, 8)?.body);
    let nums = slots
        .iter()
        .map(|&o| {
            let id = external.get(o as usize).ok_or_else(|| {
                corrupted(
                    &slots_path,
                    format!("slot points at offset {o} of {}", external.len()),
                )
            })?;
            Ok(NumRecord::new(*id, o))
        })
        .collect::<Result<Vec<_>>>()?;
    write_record_table(&dir.join(IDS_NUM_FILE), NUMS_MAGIC, &nums)?;

    // 2. UUID records, unless an interrupted run converted them already.
    let uuids_path = dir.join(IDS_UUIDS_FILE);
    // Only the prefix: the table itself is read once, below, if needed.
    let mut head = [0u8; std::mem::size_of::<FilePrefix>()];
    let version = fs::File::open(&uuids_path)
        .and_then(|mut f| f.read_exact(&mut head))
        .ok()
        .map(|()| bytemuck::pod_read_unaligned::<FilePrefix>(&head).format_version);
    if version != Some(RECORDS_FORMAT_VERSION) {
        let old = read_any_table(
            &uuids_path,
            UUIDS_MAGIC,
            std::mem::size_of::<UuidRecordV2>(),
        )?;
        let records: Vec<UuidRecord> = collect::<UuidRecordV2>(&old.body)
            .into_iter()
            .map(|r| UuidRecord {
                uuid: r.uuid,
                offset: r.offset,
            })
            .collect();
        write_record_table(&uuids_path, UUIDS_MAGIC, &records)?;
    }

    // 3. Done.
    fs::remove_file(&slots_path).at(&slots_path)?;
    fsync_dir(dir)
}
