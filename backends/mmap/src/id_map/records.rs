//! Lookup record tables (`ids_num.dat`, `ids_uuids.dat`, format 3): one
//! fixed-size record per perfect-hash slot, laid out so that **no record
//! crosses a 4 KiB page**. A cold lookup therefore reads exactly one page
//! of the table, whatever the slot.
//!
//! ## Layout
//!
//! ```text
//! 0      TableHeader (32 B: magic, format 3, header size, count, body CRC-32C)
//! 32     zero bytes up to 4096
//! 4096   block 0: records 0 .. P-1, then zero bytes to the end of the block
//! 8192   block 1: records P .. 2P-1, ...
//! ...    the last block holds only its records (no trailing zeros)
//! ```
//!
//! `P = 4096 / size_of::<R>()` records per block (341 of the 12-byte
//! [`NumRecord`], 204 of the 20-byte [`UuidRecord`]). Record `s` lives at
//! `4096 + (s / P) * 4096 + (s % P) * size_of::<R>()`. The body (everything
//! from byte 4096) carries a CRC-32C in the header, checked at open; the
//! header's padding must be zero.

use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use vecseg_traits::Result;

use super::{corrupted, TableHeader, MAX_TOTAL};
use crate::advice::Advice;
use crate::file::{write_new_file, MmapFile};
use crate::header::{read_header, FilePrefix};

/// Format version of the record tables.
pub const RECORDS_FORMAT_VERSION: u32 = 3;

/// Size of a block: records never straddle one.
pub const BLOCK_BYTES: usize = 4096;

/// One numeric-id record of `ids_num.dat` (12 bytes): the id (as two
/// little-endian `u32` halves, low first, so the record needs only 4-byte
/// alignment) and its offset.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct NumRecord {
    id: [u32; 2],
    /// Offset of the point.
    pub offset: u32,
}

impl NumRecord {
    /// The record of `id` at `offset`.
    pub fn new(id: u64, offset: u32) -> Self {
        NumRecord {
            id: [id as u32, (id >> 32) as u32],
            offset,
        }
    }

    /// The numeric id.
    #[inline]
    pub fn id(&self) -> u64 {
        self.id[0] as u64 | (self.id[1] as u64) << 32
    }
}

/// One UUID record of `ids_uuids.dat` (20 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct UuidRecord {
    /// The UUID's 16 bytes (RFC 4122 order).
    pub uuid: [u8; 16],
    /// Offset of the point.
    pub offset: u32,
}

/// Records of type `R` per block.
const fn per_block<R>() -> usize {
    BLOCK_BYTES / std::mem::size_of::<R>()
}

/// Byte length of a body of `count` records of type `R`.
fn body_len<R>(count: usize) -> usize {
    let per = per_block::<R>();
    (count / per) * BLOCK_BYTES + (count % per) * std::mem::size_of::<R>()
}

/// Byte position of record `s` within the body.
#[inline]
fn record_pos<R>(s: usize) -> usize {
    let per = per_block::<R>();
    (s / per) * BLOCK_BYTES + (s % per) * std::mem::size_of::<R>()
}

/// The body of a table holding `records`, as the pieces written in turn:
/// each block's records, then, if the block is full, its zero padding (a
/// last block that is not full ends with its last record).
fn body_pieces<R: Pod>(records: &[R]) -> impl Iterator<Item = &[u8]> {
    const ZEROS: [u8; BLOCK_BYTES] = [0; BLOCK_BYTES];
    records.chunks(per_block::<R>()).flat_map(|chunk| {
        let bytes: &[u8] = bytemuck::cast_slice(chunk);
        let pad = if chunk.len() == per_block::<R>() {
            &ZEROS[bytes.len()..]
        } else {
            &[][..]
        };
        [bytes, pad]
    })
}

/// Write a record table of `records` at `path` (temp file + rename).
pub fn write_record_table<R: Pod>(path: &Path, magic: [u8; 8], records: &[R]) -> Result<()> {
    let body_crc = body_pieces(records).fold(0, crc32c::crc32c_append);
    let header = TableHeader {
        prefix: FilePrefix::new::<TableHeader>(magic, RECORDS_FORMAT_VERSION),
        count: records.len() as u64,
        body_crc,
        reserved: 0,
    };
    let mut head = vec![0u8; BLOCK_BYTES];
    head[..std::mem::size_of::<TableHeader>()].copy_from_slice(bytemuck::bytes_of(&header));
    write_new_file(path, |w| {
        w.write_all(&head)?;
        body_pieces(records).try_for_each(|piece| w.write_all(piece))
    })
}

/// A mapped record table (see the module docs).
#[derive(Debug)]
pub struct RecordTable<R> {
    file: MmapFile,
    count: usize,
    _record: PhantomData<R>,
}

impl<R: Pod> RecordTable<R> {
    /// Map and validate the table at `path`: header, zero padding, body
    /// length for the announced count and the body's checksum.
    pub fn open(path: &Path, magic: [u8; 8], what: &str, advice: Advice) -> Result<Self> {
        let file = MmapFile::open(path, advice)?;
        let bytes = file.bytes();
        let h: TableHeader = read_header(path, bytes, magic, RECORDS_FORMAT_VERSION)?;
        let count = usize::try_from(h.count)
            .ok()
            .filter(|c| *c <= MAX_TOTAL)
            .ok_or_else(|| corrupted(path, format!("{what} count {} out of range", h.count)))?;
        let want = BLOCK_BYTES as u64 + body_len::<R>(count) as u64;
        if bytes.len() as u64 != want {
            return Err(corrupted(
                path,
                format!("holds {} bytes, {count} {what} need {want}", bytes.len()),
            ));
        }
        let padding = &bytes[std::mem::size_of::<TableHeader>()..BLOCK_BYTES];
        if h.reserved != 0 || padding.iter().any(|b| *b != 0) {
            return Err(corrupted(path, "header padding is not zero"));
        }
        if crc32c::crc32c(&bytes[BLOCK_BYTES..]) != h.body_crc {
            return Err(corrupted(path, format!("{what} fail their checksum")));
        }
        Ok(RecordTable {
            file,
            count,
            _record: PhantomData,
        })
    }

    /// Record `s`, or `None` past the end. Reads one page of the file.
    #[inline]
    pub fn get(&self, s: usize) -> Option<R> {
        if s >= self.count {
            return None;
        }
        let pos = BLOCK_BYTES + record_pos::<R>(s);
        let bytes = self.file.bytes().get(pos..pos + std::mem::size_of::<R>())?;
        Some(bytemuck::pod_read_unaligned(bytes))
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Bytes of the records (padding excluded), for memory budgets.
    pub fn record_bytes(&self) -> usize {
        self.count * std::mem::size_of::<R>()
    }

    /// The mapped file.
    pub fn file(&self) -> &MmapFile {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_record_crosses_a_block_and_records_round_trip() {
        for count in [0usize, 1, 340, 341, 342, 1000, 5000] {
            let nums: Vec<NumRecord> = (0..count)
                .map(|s| NumRecord::new(u64::MAX - s as u64 * 7_919, s as u32))
                .collect();
            for s in 0..count {
                let pos = BLOCK_BYTES + record_pos::<NumRecord>(s);
                assert_eq!(pos / BLOCK_BYTES, (pos + 11) / BLOCK_BYTES, "slot {s}");
                let pos = BLOCK_BYTES + record_pos::<UuidRecord>(s);
                assert_eq!(pos / BLOCK_BYTES, (pos + 19) / BLOCK_BYTES, "slot {s}");
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.dat");
            write_record_table(&path, *b"TESTRECS", &nums).unwrap();
            let t = RecordTable::<NumRecord>::open(&path, *b"TESTRECS", "records", Advice::Normal)
                .unwrap();
            assert_eq!(t.len(), count);
            assert!((0..count)
                .map(|s| t.get(s).unwrap())
                .eq(nums.iter().copied()));
            assert_eq!(t.get(count), None);
            for (s, r) in nums.iter().enumerate() {
                assert_eq!(r.id(), u64::MAX - s as u64 * 7_919);
            }
        }
    }

    #[test]
    fn damaged_tables_fail_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        let recs: Vec<UuidRecord> = (0..500)
            .map(|s| UuidRecord {
                uuid: [s as u8; 16],
                offset: s,
            })
            .collect();
        write_record_table(&path, *b"TESTRECS", &recs).unwrap();
        let good = std::fs::read(&path).unwrap();
        let open = || RecordTable::<UuidRecord>::open(&path, *b"TESTRECS", "r", Advice::Normal);
        for at in [0, 9, 16, 40, 4095, 4096, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(open().is_err(), "flip at {at}");
        }
        for len in [0, 31, 4096, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(open().is_err(), "truncated to {len}");
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(open().unwrap().len(), 500);
    }
}
