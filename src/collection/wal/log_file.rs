//! One file of the write-ahead log: its header, how an entry is encoded,
//! and the scan that finds the valid entries of a file after a crash.
//!
//! ```text
//! header (8 bytes):  magic "VW" | format version u16 | seed u32 (random per file)
//! entry:             len u32 | crc u32 | seq u64 | data (len bytes) | zero padding to 8
//!                    (the padding must be zero)
//! crc = CRC-32C of (seed LE ‖ seq LE ‖ len LE ‖ data)
//! ```
//!
//! Entries are 8-byte aligned. The seed is drawn when the file is created,
//! so bytes left from another file (or another life of the same name)
//! never validate, and the sequence number inside the CRC ties each entry
//! to its place in the log.
//!
//! A scan reads entries from the header on while they validate and their
//! sequence numbers follow one another. At the first entry that does not,
//! it looks at every later 8-byte boundary for an entry that validates: if
//! one exists, the damage is in the middle of the log and is reported as
//! [`StorageError::Corrupted`] with the file and the byte offset; if none
//! does, the rest is a torn tail (a write cut short by a crash), which the
//! log zeroes.
//!
//! Files are preallocated: created as the header followed by zeros up to
//! the log's file capacity ([`create`]), and entries overwrite the zeros.
//! The end of the valid entries is where the scan stops; zeros after it
//! are free space, anything else a torn tail.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use vecseg_traits::{IoResultExt, Result, StorageError};

/// First two bytes of a log file.
pub const MAGIC: [u8; 2] = *b"VW";
/// Format version of log files this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the file header.
pub const HEADER_LEN: u64 = 8;
/// Bytes of an entry's fixed part (len, crc, seq).
pub const ENTRY_HEAD: usize = 16;
/// Largest entry payload (the length field is a u32; 1 GiB keeps a damaged
/// length from asking for absurd allocations).
pub const MAX_ENTRY: usize = 1 << 30;

/// The 8-byte header of a log file.
pub fn header(seed: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..2].copy_from_slice(&MAGIC);
    h[2..4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[4..].copy_from_slice(&seed.to_le_bytes());
    h
}

/// Padding after `len` data bytes so the next entry starts 8-aligned.
fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Bytes an entry of `len` data bytes takes in the file.
pub fn entry_len(len: usize) -> u64 {
    (ENTRY_HEAD + len + padding(len)) as u64
}

fn entry_crc(seed: u32, seq: u64, data: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&seed.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(data.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc, data)
}

/// Append the encoding of entry `seq` holding `data` to `out`.
pub fn encode_entry(out: &mut Vec<u8>, seed: u32, seq: u64, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&entry_crc(seed, seq, data).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, padding(data.len())));
}

/// Create `path` holding a header with `seed` followed by zeros up to
/// `capacity` bytes: written as `path.tmp`, fsynced, renamed (the caller
/// fsyncs the directory). Returns the file open for writing.
///
/// The zeros preallocate the file: appends then overwrite blocks that
/// already exist, so an `fdatasync` after an append flushes data only and
/// needs no filesystem journal commit (which on ext4 would also flush
/// other files' dirty pages, the segments' among them).
pub fn create(path: &Path, seed: u32, capacity: u64) -> Result<File> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    preallocate(&tmp, seed, capacity)?;
    std::fs::rename(&tmp, path).at(path)?;
    std::fs::OpenOptions::new().write(true).open(path).at(path)
}

/// Write `path` as a header with `seed` and zeros up to `capacity` bytes,
/// and fsync it.
pub fn preallocate(path: &Path, seed: u32, capacity: u64) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(&header(seed)).at(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = capacity.saturating_sub(HEADER_LEN);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).at(path)?;
        // A megabyte at a time to disk: the appends' `fdatasync`s queue
        // behind at most this much, not behind the whole file.
        f.sync_data().at(path)?;
        left -= n as u64;
    }
    f.sync_all().at(path)
}

/// What a scan found in one file.
#[derive(Debug)]
pub struct Scanned {
    /// The file's seed.
    pub seed: u32,
    /// Valid entries in order: (sequence number, data).
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Byte length of the valid prefix (header + valid entries).
    pub valid_len: u64,
    /// End of the last non-zero byte after the valid prefix (`valid_len`
    /// when the rest is preallocated zeros); more than `valid_len`: a
    /// torn tail.
    pub dirty_end: u64,
}

/// Decode the entry at `at` if it validates with `seed`: (seq, data, next).
fn entry_at(bytes: &[u8], at: usize, seed: u32) -> Option<(u64, &[u8], usize)> {
    let head = bytes.get(at..at + ENTRY_HEAD)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    if len > MAX_ENTRY {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let data = bytes.get(at + ENTRY_HEAD..at + ENTRY_HEAD + len)?;
    let next = at + ENTRY_HEAD + len + padding(len);
    let pad = bytes.get(at + ENTRY_HEAD + len..next)?;
    if pad.iter().any(|b| *b != 0) || entry_crc(seed, seq, data) != crc {
        return None;
    }
    Some((seq, data, next))
}

/// Read and scan the log file at `path`, whose first entry must carry
/// sequence number `first` (see the module docs).
pub fn scan(path: &Path, first: u64) -> Result<Scanned> {
    let mut bytes = Vec::new();
    File::open(path)
        .at(path)?
        .read_to_end(&mut bytes)
        .at(path)?;
    if bytes.len() < HEADER_LEN as usize
        || bytes[..2] != MAGIC
        || u16::from_le_bytes([bytes[2], bytes[3]]) != FORMAT_VERSION
    {
        return Err(StorageError::corrupted(
            path,
            "not a vecseg WAL file of a supported version (bad header)",
        ));
    }
    let seed = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut entries = Vec::new();
    let mut at = HEADER_LEN as usize;
    let mut expect = first;
    while let Some((seq, data, next)) = entry_at(&bytes, at, seed) {
        if seq != expect {
            break;
        }
        entries.push((seq, data.to_vec()));
        expect += 1;
        at = next;
    }
    // Anything valid after the first bad entry means damage mid-log.
    let mut probe = at + 8;
    while probe + ENTRY_HEAD <= bytes.len() {
        // A zero head (preallocated space) claims sequence number 0,
        // which no entry has.
        let zero_head = bytes[probe..probe + ENTRY_HEAD].iter().all(|b| *b == 0);
        if let Some((seq, _, _)) = (!zero_head)
            .then(|| entry_at(&bytes, probe, seed))
            .flatten()
        {
            if seq >= expect {
                return Err(StorageError::corrupted(
                    path,
                    format!(
                        "entry {expect} at byte {at} fails its checksum, but entry {seq} \
                         after it at byte {probe} is intact: the log is damaged in the middle"
                    ),
                ));
            }
        }
        probe += 8;
    }
    let dirty_end = bytes[at..]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(at, |i| at + i + 1);
    Ok(Scanned {
        seed,
        entries,
        valid_len: at as u64,
        dirty_end: dirty_end as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(entries: &[&[u8]], first: u64, seed: u32) -> Vec<u8> {
        let mut out = header(seed).to_vec();
        for (i, e) in entries.iter().enumerate() {
            encode_entry(&mut out, seed, first + i as u64, e);
        }
        out
    }

    #[test]
    fn entries_are_aligned_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let entries: [&[u8]; 4] = [b"", b"x", b"12345678", b"123456789"];
        let bytes = file_with(&entries, 5, 77);
        assert_eq!(bytes.len() % 8, 0);
        std::fs::write(&p, &bytes).unwrap();
        let s = scan(&p, 5).unwrap();
        assert_eq!(s.valid_len, bytes.len() as u64);
        let got: Vec<(u64, &[u8])> = s.entries.iter().map(|(q, d)| (*q, &d[..])).collect();
        assert_eq!(
            got,
            vec![
                (5, &b""[..]),
                (6, b"x"),
                (7, b"12345678"),
                (8, b"123456789")
            ]
        );
        // Another seed (a stale file of the same name) validates nothing.
        let mut other = bytes.clone();
        other[4] ^= 1;
        std::fs::write(&p, &other).unwrap();
        assert!(scan(&p, 5).unwrap().entries.is_empty());
        // Entries that do not start at the file's first sequence number
        // (a renamed file) are not a torn tail: an error.
        std::fs::write(&p, &bytes).unwrap();
        assert!(scan(&p, 6).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let entries: [&[u8]; 3] = [b"first entry", b"second", b"the last entry, cut short"];
        let bytes = file_with(&entries, 1, 3);
        let last_start = bytes.len() - entry_len(entries[2].len()) as usize;
        for cut in last_start..bytes.len() {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let s = scan(&p, 1).unwrap();
            assert_eq!(s.entries.len(), 2, "cut at {cut}");
            assert_eq!(s.valid_len, last_start as u64);
        }
    }

    #[test]
    fn damage_before_a_valid_entry_is_an_error_naming_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let entries: [&[u8]; 3] = [b"first entry", b"second", b"third"];
        let bytes = file_with(&entries, 1, 3);
        let second = 8 + entry_len(entries[0].len()) as usize;
        for at in second..second + entry_len(entries[1].len()) as usize {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            std::fs::write(&p, &b).unwrap();
            let e = scan(&p, 1).unwrap_err();
            assert!(
                matches!(&e, StorageError::Corrupted { reason, .. } if reason.contains(&format!("byte {second}"))),
                "flip at {at}: {e}"
            );
        }
        // A damaged header is an error too.
        let mut b = bytes.clone();
        b[0] = b'X';
        std::fs::write(&p, &b).unwrap();
        assert!(scan(&p, 1).is_err());
    }
}
