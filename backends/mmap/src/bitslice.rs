//! [`MmapBitSlice`]: a growable bit slice stored in a memory-mapped file,
//! the format-1 mmap `deleted.dat`, read by `vector.rs` to convert it into a
//! [`crate::CheckedBitmap`].
//!
//! File layout (little-endian, see `docs/file-formats.md`):
//!
//! | offset | size | field                                          |
//! |-------:|-----:|------------------------------------------------|
//! | 0      | 16   | [`FilePrefix`]: magic `VSDELETE`, version 1, 32 |
//! | 16     | 8    | `len`: number of valid bits (u64)              |
//! | 24     | 8    | `data_offset`: start of the words (u64, = 32)  |
//! | 32     | 8·w  | `w` u64 words, bit `i` = bit `i % 64` of word `i / 64` |
//!
//! The file may hold more words than `len` needs (capacity for growth);
//! bits past `len` are kept zero. The words are viewed as `BitSlice<u64>`
//! (`Lsb0`) through a checked `bytemuck` cast, changed in place and written
//! back with `msync` by [`MmapBitSlice::flush`].

use std::path::Path;

use bitvec::slice::BitSlice;
use bytemuck::{Pod, Zeroable};
use vecseg_traits::{PointOffset, Result, StorageError};

use crate::file::MmapFileMut;
use crate::header::{cast_slice, cast_slice_mut, read_header, FilePrefix};

/// Magic of a deleted-flags / bit-slice file.
pub const BITSLICE_MAGIC: [u8; 8] = *b"VSDELETE";
/// Format version of the bit-slice file this build reads and writes.
pub const BITSLICE_VERSION: u32 = 1;

/// Header of a bit-slice file (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BitSliceHeader {
    /// Magic `VSDELETE`, version, header length.
    pub prefix: FilePrefix,
    /// Number of valid bits.
    pub len: u64,
    /// Byte offset of the first word (a multiple of 8, at least the header length).
    pub data_offset: u64,
}

const HEADER_LEN: usize = std::mem::size_of::<BitSliceHeader>();

/// Bytes needed for the words of `bits` bits.
fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// A bit slice in a memory-mapped file, settable in place and growable.
#[derive(Debug)]
pub struct MmapBitSlice {
    file: MmapFileMut,
    len: usize,
    data_offset: usize,
}

impl MmapBitSlice {
    /// Create `path` holding `len` zero bits (durably: temp file, fsync,
    /// rename, directory fsync), then map it.
    pub fn create(path: &Path, len: usize) -> Result<Self> {
        Self::create_with_capacity(path, len, len)
    }

    /// Create `path` holding `len` zero bits with room for at least
    /// `capacity` bits before the file has to grow.
    pub fn create_with_capacity(path: &Path, len: usize, capacity: usize) -> Result<Self> {
        let header = Self::header_for(len);
        let words = words_for(capacity.max(len));
        let file_len = HEADER_LEN as u64 + 8 * words as u64;
        let file = MmapFileMut::create(path, file_len, bytemuck::bytes_of(&header))?;
        let s = MmapBitSlice {
            file,
            len,
            data_offset: HEADER_LEN,
        };
        // Validate what we just wrote through the same path as `open`.
        s.words()?;
        Ok(s)
    }

    /// Create `path` holding a copy of `bits`, flushed to disk.
    pub fn create_from(path: &Path, bits: impl ExactSizeIterator<Item = bool>) -> Result<Self> {
        let mut s = Self::create(path, bits.len())?;
        {
            let slice = s.bits_mut()?;
            for (i, b) in bits.enumerate() {
                if b {
                    if let Some(mut bit) = slice.get_mut(i) {
                        *bit = true;
                    }
                }
            }
        }
        s.flush()?;
        Ok(s)
    }

    /// Open and validate an existing bit-slice file.
    ///
    /// Checks magic, version, header length, word alignment and that the
    /// file holds every word `len` needs; anything else is
    /// [`StorageError::Corrupted`] (or `UnsupportedVersion`) naming `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = MmapFileMut::open(path)?;
        let header: BitSliceHeader =
            read_header(path, file.bytes(), BITSLICE_MAGIC, BITSLICE_VERSION)?;
        let corrupted = |reason: String| StorageError::corrupted(path, reason);
        let len = usize::try_from(header.len)
            .map_err(|_| corrupted(format!("bit count {} does not fit in memory", header.len)))?;
        let data_offset = usize::try_from(header.data_offset)
            .ok()
            .filter(|&o| o >= HEADER_LEN && o % 8 == 0)
            .ok_or_else(|| corrupted(format!("bad data offset {}", header.data_offset)))?;
        let file_len = file.len();
        if file_len < data_offset || (file_len - data_offset) % 8 != 0 {
            return Err(corrupted(format!(
                "file length {file_len} is not the data offset {data_offset} plus whole u64 words"
            )));
        }
        let capacity_words = (file_len - data_offset) / 8;
        if capacity_words < words_for(len) {
            return Err(corrupted(format!(
                "file truncated: {len} bits need {} words, file holds {capacity_words}",
                words_for(len)
            )));
        }
        let s = MmapBitSlice {
            file,
            len,
            data_offset,
        };
        s.words()?;
        Ok(s)
    }

    fn header_for(len: usize) -> BitSliceHeader {
        BitSliceHeader {
            prefix: FilePrefix::new::<BitSliceHeader>(BITSLICE_MAGIC, BITSLICE_VERSION),
            len: len as u64,
            data_offset: HEADER_LEN as u64,
        }
    }

    fn words(&self) -> Result<&[u64]> {
        let bytes =
            self.file.bytes().get(self.data_offset..).ok_or_else(|| {
                StorageError::corrupted(self.file.path(), "file shorter than header")
            })?;
        cast_slice(self.file.path(), bytes)
    }

    fn words_mut(&mut self) -> Result<&mut [u64]> {
        let path = self.file.path().to_path_buf();
        let offset = self.data_offset;
        let bytes = self
            .file
            .bytes_mut()
            .get_mut(offset..)
            .ok_or_else(|| StorageError::corrupted(&path, "file shorter than header"))?;
        cast_slice_mut(&path, bytes)
    }

    fn bits_mut(&mut self) -> Result<&mut BitSlice<u64>> {
        let len = self.len;
        let words = self.words_mut()?;
        Ok(&mut BitSlice::from_slice_mut(words)[..len])
    }

    /// The bits `0..len()` as a `bitvec` slice borrowed from the mapping.
    pub fn as_bitslice(&self) -> &BitSlice<u64> {
        match self.words() {
            // `open`/`create` checked that the words cover `len` bits.
            Ok(words) => BitSlice::from_slice(words)
                .get(..self.len)
                .unwrap_or_default(),
            Err(_) => Default::default(),
        }
    }

    /// Number of valid bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bits the file holds before it has to grow.
    pub fn capacity(&self) -> usize {
        self.file.len().saturating_sub(self.data_offset) / 8 * 64
    }

    /// Bit `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<bool> {
        self.as_bitslice().get(index).map(|b| *b)
    }

    /// Set bit `index` to `value` in the mapping; returns the previous value.
    /// Not durable until [`MmapBitSlice::flush`].
    pub fn set(&mut self, index: usize, value: bool) -> Result<bool> {
        let len = self.len;
        if index >= len {
            return Err(StorageError::OffsetOutOfRange {
                offset: PointOffset::try_from(index).unwrap_or(PointOffset::MAX),
                len,
            });
        }
        Ok(self.bits_mut()?.replace(index, value))
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.as_bitslice().count_ones()
    }

    /// Change the number of valid bits to `new_len`. New bits are zero.
    /// Grows the file (at least doubling its capacity, then remapping) when
    /// needed; shrinking clears the dropped bits and keeps the file size.
    /// The new length is durable after [`MmapBitSlice::flush`].
    pub fn resize(&mut self, new_len: usize) -> Result<()> {
        if new_len < self.len {
            let old = self.len;
            let words = self.words_mut()?;
            BitSlice::<u64>::from_slice_mut(words)[new_len..old].fill(false);
        } else if new_len > self.capacity() {
            let words = words_for(new_len)
                .max(words_for(self.capacity()) * 2)
                .max(1);
            let file_len = self.data_offset as u64 + 8 * words as u64;
            // The tail of the file is zero-filled by `set_len`, so the new bits are zero.
            self.file.resize(file_len)?;
        }
        self.len = new_len;
        self.write_header()?;
        self.words()?;
        Ok(())
    }

    fn write_header(&mut self) -> Result<()> {
        let mut header = Self::header_for(self.len);
        header.data_offset = self.data_offset as u64;
        let path = self.file.path().to_path_buf();
        let dst = self
            .file
            .bytes_mut()
            .get_mut(..HEADER_LEN)
            .ok_or_else(|| StorageError::corrupted(&path, "file shorter than header"))?;
        dst.copy_from_slice(bytemuck::bytes_of(&header));
        Ok(())
    }

    /// Write the changed pages back to the file and wait (`msync`).
    pub fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn set_get_count_and_reopen() {
        let dir = tmp();
        let p = dir.path().join("deleted.dat");
        let mut b = MmapBitSlice::create(&p, 130).unwrap();
        assert_eq!(b.len(), 130);
        assert_eq!(b.count_ones(), 0);
        assert!(!b.set(0, true).unwrap());
        assert!(b.set(0, true).unwrap());
        assert!(!b.set(129, true).unwrap());
        assert!(!b.set(64, true).unwrap());
        assert!(b.set(64, false).unwrap());
        assert!(b.set(130, true).is_err());
        assert_eq!(b.get(0), Some(true));
        assert_eq!(b.get(129), Some(true));
        assert_eq!(b.get(130), None);
        assert_eq!(b.count_ones(), 2);
        b.flush().unwrap();
        drop(b);
        let b = MmapBitSlice::open(&p).unwrap();
        assert_eq!(b.len(), 130);
        assert_eq!(b.count_ones(), 2);
        assert!(b.as_bitslice()[0] && b.as_bitslice()[129] && !b.as_bitslice()[64]);
        // Bit i lives in byte i / 8 at bit i % 8 of the file's data.
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw[HEADER_LEN], 1);
        assert_eq!(raw[HEADER_LEN + 129 / 8], 1 << (129 % 8));
    }

    #[test]
    fn grows_and_shrinks() {
        let dir = tmp();
        let p = dir.path().join("bits.dat");
        let mut b = MmapBitSlice::create(&p, 0).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.as_bitslice().len(), 0);
        for i in 0..1000 {
            b.resize(i + 1).unwrap();
            if i % 3 == 0 {
                b.set(i, true).unwrap();
            }
        }
        assert_eq!(b.count_ones(), 334);
        b.resize(10).unwrap();
        assert_eq!(b.count_ones(), 4);
        b.resize(1000).unwrap();
        assert_eq!(b.count_ones(), 4, "bits past a shrink come back zero");
        b.flush().unwrap();
        drop(b);
        let b = MmapBitSlice::open(&p).unwrap();
        assert_eq!(b.len(), 1000);
        assert_eq!(b.count_ones(), 4);
        assert!(b.capacity() >= 1000);
    }

    #[test]
    fn create_from_copies_bits() {
        let dir = tmp();
        let p = dir.path().join("bits.dat");
        let src: Vec<bool> = (0..77).map(|i| i % 5 == 0).collect();
        let b = MmapBitSlice::create_from(&p, src.iter().copied()).unwrap();
        let got: Vec<bool> = b.as_bitslice().iter().map(|b| *b).collect();
        assert_eq!(got, src);
    }

    #[test]
    fn bad_files_are_corrupted_not_panics() {
        let dir = tmp();
        let p = dir.path().join("bits.dat");
        drop(MmapBitSlice::create(&p, 200).unwrap());
        let good = std::fs::read(&p).unwrap();

        // Truncated inside the words.
        std::fs::write(&p, &good[..good.len() - 8]).unwrap();
        assert!(
            matches!(MmapBitSlice::open(&p), Err(StorageError::Corrupted { path, .. }) if path == p)
        );
        // Truncated inside the header, and empty.
        std::fs::write(&p, &good[..10]).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        // Wrong magic, wrong version, bad data offset, ragged length.
        let mut bad = good.clone();
        bad[0] = b'X';
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        let mut bad = good.clone();
        bad[8] = 9;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::UnsupportedVersion { found: 9, .. })
        ));
        let mut bad = good.clone();
        bad[24] = 3;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        let mut bad = good.clone();
        bad.push(0);
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        // Absurd bit count.
        let mut bad = good.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            MmapBitSlice::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
    }
}
