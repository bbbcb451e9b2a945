//! [`CheckedBitmap`]: a fixed-size bitmap kept in RAM and persisted as two
//! checksummed copies, for the few bits an immutable storage still changes
//! after its build (dropped ids, cleared payloads).
//!
//! A bit flip in a plain mapped bitmap reads as a dropped point or a
//! resurrected one, with nothing to tell it apart from the truth. Here
//! every copy carries a CRC-32C and a generation, so damage is detected;
//! and because a flush rewrites the copies one after the other (each
//! synced before the next is touched), a kill mid-flush always leaves one
//! whole copy: the new state or the previous one.
//!
//! File layout (little-endian, see `docs/file-formats.md`), `w` = words of
//! the bitmap (`bits.div_ceil(64)`):
//!
//! | offset          | size | field                                            |
//! |----------------:|-----:|--------------------------------------------------|
//! | 0               | 32   | [`CheckedHeader`]: magic `VSCKBMAP`, version 1, value = `bits` |
//! | 32 + c·(16+8w)  | 8    | copy `c` (0, 1): `generation` (u64)                |
//! | +8              | 4    | CRC-32C of `generation` (8 LE bytes) ‖ the words   |
//! | +12             | 4    | reserved, 0                                        |
//! | +16             | 8·w  | the words: bit `i` = bit `i % 64` of word `i / 64` |
//!
//! Opening loads the valid copy with the highest generation (bits past
//! `bits` must be zero); both copies failing is [`StorageError::Corrupted`].
//! The generation is the storage's durable sequence: a segment records it
//! in `segment.json` at each flush, so a damaged newest copy that makes the
//! bitmap fall back to an older one is reported as flushed data missing.

use std::io::Write;
use std::path::Path;

use vecseg_traits::{PointOffset, Result, StorageError};

use crate::file::{write_new_file, MmapFileMut};
use crate::header::CheckedHeader;

/// Magic of a checked bitmap file.
pub const CHECKED_BITMAP_MAGIC: [u8; 8] = *b"VSCKBMAP";
/// Format version of the checked bitmap file.
pub const CHECKED_BITMAP_VERSION: u32 = 1;

const HEADER_LEN: usize = std::mem::size_of::<CheckedHeader>();
/// Bytes before the words of a copy: generation, CRC, reserved.
const COPY_HEAD: usize = 16;

/// Number of `u64` words of a bitmap of `bits` bits.
pub(crate) fn bitmap_words(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Bit `i` of a word bitmap (false past the end).
#[inline]
pub(crate) fn bit(words: &[u64], i: usize) -> bool {
    words.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
}

/// Set bit `i` of a word bitmap; returns its previous value (false and no
/// change past the end).
#[inline]
pub(crate) fn set_bit(words: &mut [u64], i: usize) -> bool {
    match words.get_mut(i / 64) {
        Some(w) => {
            let mask = 1u64 << (i % 64);
            let was = *w & mask != 0;
            *w |= mask;
            was
        }
        None => false,
    }
}

/// Whether any bit at index `>= bits` is set in the last word.
pub(crate) fn has_bits_past(words: &[u64], bits: usize) -> bool {
    if bits & 63 == 0 {
        return false;
    }
    words.last().is_some_and(|w| w >> (bits % 64) != 0)
}

/// Number of set bits.
pub(crate) fn count_ones(words: &[u64]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

fn copy_crc(generation: u64, words: &[u64]) -> u32 {
    let crc = crc32c::crc32c(&generation.to_le_bytes());
    crc32c::crc32c_append(crc, bytemuck::cast_slice(words))
}

/// The encoded head and words of one copy.
fn encode_copy(generation: u64, words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(COPY_HEAD + words.len() * 8);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&copy_crc(generation, words).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(bytemuck::cast_slice(words));
    out
}

/// A fixed-size bitmap in RAM, persisted as two checksummed copies. See
/// the [module docs](self).
#[derive(Debug)]
pub struct CheckedBitmap {
    file: MmapFileMut,
    bits: usize,
    words: Vec<u64>,
    /// Generation of the state in `words` as last persisted.
    generation: u64,
    /// Generation each copy holds (`None`: fails its checksum).
    copies: [Option<u64>; 2],
    /// Bits set since the last flush.
    changed: bool,
}

impl CheckedBitmap {
    /// Create `path` (durably: temp file, fsync, rename) holding `words`
    /// as a bitmap of `bits` bits, at generation 1, and open it.
    pub fn create(path: &Path, bits: usize, words: &[u64]) -> Result<Self> {
        if words.len() != bitmap_words(bits) || has_bits_past(words, bits) {
            return Err(StorageError::InvalidArgument(format!(
                "{} words with bits past the end cannot hold a bitmap of {bits} bits",
                words.len()
            )));
        }
        let header = CheckedHeader::new(CHECKED_BITMAP_MAGIC, CHECKED_BITMAP_VERSION, bits as u64);
        write_new_file(path, |w| {
            w.write_all(bytemuck::bytes_of(&header))?;
            let copy = encode_copy(1, words);
            w.write_all(&copy)?;
            w.write_all(&copy)
        })?;
        Self::open(path)
    }

    /// Open a bitmap file, loading its newest valid copy.
    pub fn open(path: &Path) -> Result<Self> {
        let file = MmapFileMut::open(path)?;
        let bytes = file.bytes();
        let bits = CheckedHeader::read(
            path,
            bytes,
            CHECKED_BITMAP_MAGIC,
            CHECKED_BITMAP_VERSION,
            false,
        )?;
        let bits = usize::try_from(bits)
            .ok()
            .filter(|b| *b <= u32::MAX as usize + 1)
            .ok_or_else(|| StorageError::corrupted(path, format!("{bits} bits out of range")))?;
        let w = bitmap_words(bits);
        let copy_len = COPY_HEAD + 8 * w;
        if bytes.len() != HEADER_LEN + 2 * copy_len {
            return Err(StorageError::corrupted(
                path,
                format!(
                    "file is {} bytes, a bitmap of {bits} bits takes {}",
                    bytes.len(),
                    HEADER_LEN + 2 * copy_len
                ),
            ));
        }
        let mut best: Option<(u64, Vec<u64>)> = None;
        let mut copies = [None, None];
        for (c, slot) in copies.iter_mut().enumerate() {
            let at = HEADER_LEN + c * copy_len;
            let copy = &bytes[at..at + copy_len];
            let generation = u64::from_le_bytes(copy[0..8].try_into().unwrap_or_default());
            let crc = u32::from_le_bytes(copy[8..12].try_into().unwrap_or_default());
            let reserved = u32::from_le_bytes(copy[12..16].try_into().unwrap_or_default());
            let words: Vec<u64> = copy[COPY_HEAD..]
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                .collect();
            if reserved != 0 || crc != copy_crc(generation, &words) || has_bits_past(&words, bits) {
                continue;
            }
            *slot = Some(generation);
            if best.as_ref().is_none_or(|(g, _)| generation > *g) {
                best = Some((generation, words));
            }
        }
        let (generation, words) = best.ok_or_else(|| {
            StorageError::corrupted(path, "both copies of the bitmap fail their checksums")
        })?;
        Ok(CheckedBitmap {
            file,
            bits,
            words,
            generation,
            copies,
            changed: false,
        })
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.bits
    }

    /// Whether the bitmap has no bits.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Bit `i` (false past the end).
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        bit(&self.words, i)
    }

    /// Set bit `offset` in RAM; returns its previous value. Durable after
    /// [`flush`](Self::flush).
    pub fn set(&mut self, offset: PointOffset) -> Result<bool> {
        if offset as usize >= self.bits {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.bits,
            });
        }
        let was = set_bit(&mut self.words, offset as usize);
        self.changed |= !was;
        Ok(was)
    }

    /// The words (bit `i` = bit `i % 64` of word `i / 64`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        count_ones(&self.words)
    }

    /// Generation of the persisted state: 1 at creation, +1 per flush that
    /// wrote a change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Persist the bitmap: write the stale copy (older or damaged) first,
    /// sync it, then the other. Does nothing when both copies already hold
    /// the current state.
    pub fn flush(&mut self) -> Result<()> {
        let generation = self.generation + u64::from(self.changed);
        if self.copies == [Some(generation); 2] {
            return Ok(());
        }
        let stale_first = if self.copies[0] >= self.copies[1] {
            [1, 0]
        } else {
            [0, 1]
        };
        let encoded = encode_copy(generation, &self.words);
        for c in stale_first {
            let at = HEADER_LEN + c * encoded.len();
            self.file.bytes_mut()[at..at + encoded.len()].copy_from_slice(&encoded);
            self.file.flush_range(at, encoded.len())?;
            self.copies[c] = Some(generation);
        }
        self.generation = generation;
        self.changed = false;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Bytes of the file.
    pub fn file_len(&self) -> u64 {
        self.file.len() as u64
    }

    /// Whether the two copies hold different states (a flush was
    /// interrupted, or one copy is damaged); the next flush rewrites both.
    pub fn copies_differ(&self) -> bool {
        self.copies[0] != self.copies[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn set_flush_reopen() {
        let dir = tmp();
        let p = dir.path().join("b.dat");
        let mut b = CheckedBitmap::create(&p, 130, &[0, 0, 0]).unwrap();
        assert_eq!(b.generation(), 1);
        assert!(!b.set(129).unwrap());
        assert!(b.set(129).unwrap());
        b.set(3).unwrap();
        assert!(b.set(130).is_err());
        // Unflushed bits are lost on reopen.
        drop(b);
        let mut b = CheckedBitmap::open(&p).unwrap();
        assert_eq!(b.count_ones(), 0);
        b.set(3).unwrap();
        b.set(129).unwrap();
        b.flush().unwrap();
        assert_eq!(b.generation(), 2);
        b.flush().unwrap();
        assert_eq!(
            b.generation(),
            2,
            "a flush without changes keeps the generation"
        );
        drop(b);
        let b = CheckedBitmap::open(&p).unwrap();
        assert_eq!(b.generation(), 2);
        assert!(b.get(3) && b.get(129) && !b.get(4));
        assert_eq!(b.count_ones(), 2);
        assert!(!b.copies_differ());
    }

    fn copy_at(c: usize, w: usize) -> usize {
        HEADER_LEN + c * (COPY_HEAD + 8 * w)
    }

    #[test]
    fn a_damaged_copy_falls_back_and_both_damaged_is_an_error() {
        let dir = tmp();
        let p = dir.path().join("b.dat");
        let mut b = CheckedBitmap::create(&p, 64, &[0]).unwrap();
        b.set(7).unwrap();
        b.flush().unwrap();
        drop(b);
        let good = std::fs::read(&p).unwrap();
        for c in 0..2 {
            // A flipped word in one copy: the other one (same state) wins.
            let mut bytes = good.clone();
            bytes[copy_at(c, 1) + COPY_HEAD] ^= 0x10;
            std::fs::write(&p, &bytes).unwrap();
            let mut b = CheckedBitmap::open(&p).unwrap();
            assert!(b.get(7) && !b.get(4));
            assert!(b.copies_differ());
            b.flush().unwrap();
            assert!(!b.copies_differ());
            drop(b);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                good,
                "the flush repaired copy {c}"
            );
        }
        let mut bytes = good.clone();
        bytes[copy_at(0, 1) + COPY_HEAD] ^= 1;
        bytes[copy_at(1, 1) + 3] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            CheckedBitmap::open(&p),
            Err(StorageError::Corrupted { .. })
        ));
        for bad in [&good[..good.len() - 1], &good[..20], &[][..]] {
            std::fs::write(&p, bad).unwrap();
            assert!(matches!(
                CheckedBitmap::open(&p),
                Err(StorageError::Corrupted { .. })
            ));
        }
    }

    #[test]
    fn an_interrupted_flush_leaves_the_old_or_the_new_state() {
        let dir = tmp();
        let p = dir.path().join("b.dat");
        let mut b = CheckedBitmap::create(&p, 64, &[0]).unwrap();
        b.set(1).unwrap();
        b.flush().unwrap();
        drop(b);
        let before = std::fs::read(&p).unwrap();
        let mut b = CheckedBitmap::open(&p).unwrap();
        b.set(2).unwrap();
        b.flush().unwrap();
        drop(b);
        let after = std::fs::read(&p).unwrap();
        // Every prefix of the flush's writes (copy 1 first, then copy 0):
        // the file is `before` with a prefix of the changed bytes applied.
        let changed: Vec<usize> = (0..before.len())
            .filter(|i| before[*i] != after[*i])
            .collect();
        for n in 0..=changed.len() {
            let mut bytes = before.clone();
            for &i in &changed[..n] {
                bytes[i] = after[i];
            }
            std::fs::write(&p, &bytes).unwrap();
            let b = CheckedBitmap::open(&p).unwrap();
            assert!(b.get(1));
            match b.generation() {
                2 => assert!(!b.get(2)),
                3 => assert!(b.get(2)),
                g => panic!("generation {g}"),
            }
        }
    }
}
