//! Upgrade of a format-3 id map to format 4, run by
//! [`MmapIdMapper::open`](super::MmapIdMapper::open) when `ids_phf.bin`
//! still has header version 2 (after the format-1 and format-2 upgrades,
//! which leave it there).
//!
//! Format 3 hashed ids with `ph` 0.8's FMPH; format 4 hashes numeric ids
//! with PHast and UUIDs with an FMPH over a fixed hash (`phf.rs`). New
//! functions put ids in new slots, so the upgrade rebuilds everything that
//! is in slot order from the records, which hold every `(id, offset)`:
//!
//! 1. reads both record tables (checksums checked) and the external ids;
//! 2. builds the new functions and writes `ids_num.dat` and
//!    `ids_uuids.dat` in their slot order, and `ids_external.dat` with each
//!    UUID offset's new slot (numeric entries are the ids, unchanged);
//! 3. writes `ids_phf.bin` at header version 3, the marker of a finished
//!    upgrade.
//!
//! Every file is replaced by rename and the upgrade reads the records as a
//! set, never by slot, so a kill at any point leaves a directory the next
//! open upgrades to an equivalent result. The old function is not read.

use std::path::Path;

use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{PointOffset, Result};

use super::format_v1::{collect, read_any_table};
use super::records::{write_record_table, NumRecord, RecordTable, UuidRecord};
use super::{
    corrupted, phf, slots, write_phf_file, write_table, NumLayout, EXTERNAL_MAGIC,
    IDS_EXTERNAL_FILE, IDS_NUM_FILE, IDS_UUIDS_FILE, NUMS_MAGIC, PHF_FORMAT_VERSION, UUIDS_MAGIC,
};
use crate::advice::Advice;

/// Upgrade the format-3 id map in `dir` (see the module docs).
pub(super) fn upgrade(dir: &Path) -> Result<()> {
    // 1. Every mapping, from the records.
    let nums_path = dir.join(IDS_NUM_FILE);
    let uuids_path = dir.join(IDS_UUIDS_FILE);
    let old_nums: RecordTable<NumRecord> =
        RecordTable::open(&nums_path, NUMS_MAGIC, "records", Advice::Sequential)?;
    let old_uuids: RecordTable<UuidRecord> =
        RecordTable::open(&uuids_path, UUIDS_MAGIC, "UUID records", Advice::Sequential)?;
    let mut nums: Vec<(u64, PointOffset)> = (0..old_nums.len())
        .filter_map(|s| old_nums.get(s))
        .map(|r| (r.id(), r.offset))
        .collect();
    let mut uuids: Vec<(u128, PointOffset)> = (0..old_uuids.len())
        .filter_map(|s| old_uuids.get(s))
        .map(|r| (u128::from_be_bytes(r.uuid), r.offset))
        .collect();
    drop((old_nums, old_uuids));
    nums.sort_unstable();
    uuids.sort_unstable();
    if nums.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(corrupted(&nums_path, "an id has two records"));
    }
    if uuids.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(corrupted(&uuids_path, "a UUID has two records"));
    }
    let external_path = dir.join(IDS_EXTERNAL_FILE);
    let mut external: Vec<u64> = collect(&read_any_table(&external_path, EXTERNAL_MAGIC, 8)?.body);

    // 2. New functions, tables in their slot order.
    let phfs = slots::build_phfs(&nums, &uuids, None)?;
    let records = slots::fill_records(&phfs, &nums, &uuids)?;
    let total = external.len();
    for (&(_, o), &s) in uuids.iter().zip(&records.uuid_slots) {
        let entry = external.get_mut(o as usize).ok_or_else(|| {
            corrupted(
                &uuids_path,
                format!("record points at offset {o} of {total}"),
            )
        })?;
        *entry = s;
    }
    write_record_table(&nums_path, NUMS_MAGIC, &records.nums)?;
    write_record_table(&uuids_path, UUIDS_MAGIC, &records.uuids)?;
    write_table(
        &external_path,
        EXTERNAL_MAGIC,
        external.len(),
        bytemuck::cast_slice(&external),
    )?;

    // 3. The functions, last.
    let mut body = phf::num_to_bytes(&phfs.num);
    let num_bytes = body.len();
    body.extend_from_slice(&phf::uuid_to_bytes(&phfs.uuid));
    write_phf_file(
        dir,
        PHF_FORMAT_VERSION,
        NumLayout::Records,
        nums.len(),
        uuids.len(),
        num_bytes,
        &body,
    )?;
    fsync_dir(dir)
}
