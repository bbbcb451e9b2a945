//! Vector storage traits: a read half, a write half (delete, flush) and an
//! appendable half (insert).
//!
//! Offsets are dense `0..total_count()`. A deleted vector keeps its slot and
//! its bytes; it is only flagged in the deleted bit slice.

use std::ops::Deref;

use bitvec::slice::BitSlice;

use crate::access::AccessPattern;
use crate::distance::Distance;
use crate::element::VectorElement;
use crate::error::{Result, StorageError};
use crate::scorer::QueryScorer;
#[cfg(doc)]
use crate::scorer::RawScorer;
use crate::types::PointOffset;

/// How many reads ahead the default [`VectorStorageRead::get_batch`]
/// prefetches: far enough to overlap several cache misses, near enough
/// that the lines are still cached when read.
pub const PREFETCH_AHEAD: usize = 16;

/// Reading vectors by offset.
pub trait VectorStorageRead: Send + Sync {
    /// Component type.
    type Element: VectorElement;
    /// What `get` returns: `&[T]` for memory and mmap, an owned buffer for RocksDB.
    type Vector<'a>: Deref<Target = [Self::Element]>
    where
        Self: 'a;

    /// Components per vector.
    fn dim(&self) -> usize;
    /// Distance the vectors are stored for.
    fn distance(&self) -> Distance;
    /// Number of slots, deleted ones included.
    fn total_count(&self) -> usize;
    /// Number of slots flagged deleted.
    fn deleted_count(&self) -> usize;
    /// Number of live vectors.
    fn available_count(&self) -> usize {
        self.total_count() - self.deleted_count()
    }

    /// What [`scorer`](Self::scorer) returns: [`RawScorer`] for storages
    /// of raw vectors.
    type Scorer<'a>: QueryScorer
    where
        Self: 'a;

    /// The scorer of `query` (in stored form: validated, and normalised
    /// for cosine) against this storage: the seam search scores through
    /// (see [`crate::scorer`]). Raw storages return
    /// `Ok(RawScorer::new(self, query))`.
    fn scorer(&self, query: &[Self::Element]) -> Result<Self::Scorer<'_>>;

    /// The storage type a segment directory records for this storage
    /// (`segment.json`): this type, or for a layer over another storage
    /// (quantized codes), the storage whose files the segment holds.
    fn layout_type_name() -> &'static str
    where
        Self: Sized,
    {
        std::any::type_name::<Self>()
    }

    /// The vector at `offset` (deleted vectors are still readable).
    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<Self::Vector<'_>>;

    /// Read many vectors, calling `f(i, vector)` for `offsets[i]`. Callbacks
    /// may come in any order; backends use this to batch I/O. The default
    /// reads them in order, [prefetching](Self::prefetch) a few ahead.
    fn get_batch<P: AccessPattern>(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[Self::Element]),
    ) -> Result<()> {
        for (i, &offset) in offsets.iter().enumerate() {
            if let Some(&ahead) = offsets.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead);
            }
            f(i, &self.get::<P>(offset)?);
        }
        Ok(())
    }

    /// A hint that the vector at `offset` is read soon: storages whose
    /// vectors are in memory (or mapped) start loading its cache lines.
    /// Never an error; the default does nothing.
    fn prefetch(&self, offset: PointOffset) {
        let _ = offset;
    }

    /// Call `f(offset, vector)` for every slot in `range` that is not flagged
    /// deleted, in increasing offset order. This is the scan loop of exact
    /// search; backends that hold vectors contiguously override it to skip
    /// per-vector bounds checks.
    fn scan_live<P: AccessPattern, F: FnMut(PointOffset, &[Self::Element])>(
        &self,
        range: std::ops::Range<PointOffset>,
        mut f: F,
    ) -> Result<()> {
        let end = range.end.min(self.total_count() as PointOffset);
        let bits = self.deleted_bits();
        for offset in range.start..end {
            if !bits.get(offset as usize).is_some_and(|b| *b) {
                f(offset, &self.get::<P>(offset)?);
            }
        }
        Ok(())
    }

    /// Every slot's elements back to back (deleted ones included), read
    /// with access pattern `P`, when the storage keeps them contiguous in
    /// RAM or one mapping (memory, immutable mmap): a scorer can then hand
    /// long runs to one kernel call instead of a call per
    /// [`scan_blocks`](Self::scan_blocks) block. `None` by default.
    fn contiguous<P: AccessPattern>(&self) -> Result<Option<&[Self::Element]>> {
        Ok(None)
    }

    /// Call `f(offset, vectors, deleted)` for consecutive blocks of at most
    /// [`SCAN_BLOCK`] slots covering `range` (clipped to `total_count()`),
    /// in increasing order: `vectors` holds the block's vectors back to
    /// back, deleted ones included, and bit `i` of `deleted` flags slot
    /// `offset + i` as deleted (its vector is to be ignored). For scorers
    /// that score many vectors per call (quantized codes). The default
    /// copies each block through `get` (zeros for a deleted slot);
    /// storages that keep vectors back to back lend their slices.
    fn scan_blocks<P: AccessPattern, F: FnMut(PointOffset, &[Self::Element], u64)>(
        &self,
        range: std::ops::Range<PointOffset>,
        mut f: F,
    ) -> Result<()> {
        let end = range.end.min(self.total_count() as PointOffset);
        let mut start = range.start.min(end);
        let mut block = Vec::new();
        while start < end {
            let next_block = (u64::from(start) / SCAN_BLOCK as u64 + 1) * SCAN_BLOCK as u64;
            let stop = end.min(next_block.min(u64::from(end)) as PointOffset);
            block.clear();
            let mut deleted = 0u64;
            for offset in start..stop {
                if self.is_deleted(offset) {
                    deleted |= 1 << (offset - start);
                    block.resize(block.len() + self.dim(), Self::Element::default());
                } else {
                    block.extend_from_slice(&self.get::<P>(offset)?);
                }
            }
            f(start, &block, deleted);
            start = stop;
        }
        Ok(())
    }

    /// Whether the slot is flagged deleted (false past the end).
    fn is_deleted(&self, offset: PointOffset) -> bool {
        self.deleted_bits().get(offset as usize).is_some_and(|b| *b)
    }

    /// Deleted flags, one bit per slot; may be longer than `total_count()`.
    fn deleted_bits(&self) -> &BitSlice<u64>;

    /// A number that grows with every write the backend makes durable, for
    /// backends that have one (RocksDB's sequence number). The segment
    /// records it at each flush and refuses to open a storage whose number
    /// went backwards: flushed writes were lost (e.g. a damaged RocksDB
    /// `MANIFEST` recovered an older state).
    fn durable_sequence(&self) -> Option<u64> {
        None
    }

    /// Bytes this storage occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
    }

    /// Evict this storage's vector data from memory and the OS page cache so
    /// the next reads come from disk (for cold-cache measurements). Returns
    /// `Ok(false)` when the storage is not file-backed.
    fn drop_page_cache(&self) -> Result<bool> {
        Ok(false)
    }

    /// Error unless `offset` is a slot of this storage.
    fn check_offset(&self, offset: PointOffset) -> Result<()> {
        let len = self.total_count();
        if (offset as usize) < len {
            Ok(())
        } else {
            Err(StorageError::OffsetOutOfRange { offset, len })
        }
    }
}

/// Deleting and persisting; what immutable storages support.
///
/// Durability comes in two steps because a deleted flag vouches for
/// something else: the segment retires an offset (upsert moves a point to a
/// new offset, delete drops it) and the flag must not reach disk before the
/// id mapping that stops pointing at the offset does. So the segment calls
/// [`VectorStorage::flush_data`] first (new vectors and the count; deleted
/// flags of offsets that existed at the last flush stay as they were on
/// disk), then the id mappings, then [`VectorStorage::flush_deleted`].
pub trait VectorStorage: VectorStorageRead {
    /// Flag `offset` deleted; returns whether it was live before. Reads see
    /// it at once; disk only at [`VectorStorage::flush_deleted`].
    fn delete(&mut self, offset: PointOffset) -> Result<bool>;
    /// Make the stored vectors and the vector count durable, without the
    /// deleted flags of offsets that were already durable.
    fn flush_data(&mut self) -> Result<()>;
    /// Make the deleted flags durable.
    fn flush_deleted(&mut self) -> Result<()>;
    /// Make every change durable: [`VectorStorage::flush_data`], then
    /// [`VectorStorage::flush_deleted`].
    fn flush(&mut self) -> Result<()> {
        self.flush_data()?;
        self.flush_deleted()
    }
}

/// Storages that accept new vectors.
pub trait AppendableVectorStorage: VectorStorage {
    /// Store `vector` at `offset`, which must be `<= total_count()`: equal
    /// appends, lower overwrites and clears the deleted flag. The vector must
    /// already be validated and preprocessed (see [`VectorElement`]).
    fn insert(&mut self, offset: PointOffset, vector: &[Self::Element]) -> Result<()>;
}

/// Slots per block of [`scan_flat_blocks`] and
/// [`VectorStorageRead::scan_blocks`] (one deleted word).
pub const SCAN_BLOCK: usize = 64;

/// The scan loop for storages that keep vectors back to back in one slice
/// (`flat[o * dim..(o + 1) * dim]` is the vector at offset `first + o`):
/// calls `f(offset, vector)` for every offset in `range` not set in
/// `deleted`. Blocks of 64 offsets with no deleted bit (the common case) run
/// without any per-vector check. `range` is clipped to the slice.
pub fn scan_flat<T, F: FnMut(PointOffset, &[T])>(
    flat: &[T],
    dim: usize,
    first: PointOffset,
    deleted: &BitSlice<u64>,
    range: std::ops::Range<PointOffset>,
    mut f: F,
) {
    scan_flat_blocks(flat, dim, first, deleted, range, |start, vectors, mask| {
        let vectors = vectors.chunks_exact(dim);
        if mask == 0 {
            for (o, v) in (start..).zip(vectors) {
                f(o, v);
            }
        } else {
            for (i, v) in vectors.enumerate() {
                if mask >> i & 1 == 0 {
                    f(start + i as PointOffset, v);
                }
            }
        }
    });
}

/// The block loop under [`scan_flat`] (same slice layout): calls
/// `f(offset, vectors, deleted)` for consecutive blocks of at most
/// [`SCAN_BLOCK`] offsets covering `range` (clipped to the slice), where
/// `vectors` is the block's part of `flat` and bit `i` of `deleted` is the
/// deleted flag of offset `offset + i`.
pub fn scan_flat_blocks<T, F: FnMut(PointOffset, &[T], u64)>(
    flat: &[T],
    dim: usize,
    first: PointOffset,
    deleted: &BitSlice<u64>,
    range: std::ops::Range<PointOffset>,
    mut f: F,
) {
    use bitvec::field::BitField;
    if dim == 0 {
        return;
    }
    let len = flat.len() / dim;
    let end = (range.end.saturating_sub(first) as usize).min(len);
    let mut o = (range.start.saturating_sub(first) as usize).min(end);
    while o < end {
        let block_end = ((o / SCAN_BLOCK + 1) * SCAN_BLOCK).min(end);
        let (bit_start, bit_end) = (first as usize + o, first as usize + block_end);
        let mask = match deleted.get(bit_start.min(deleted.len())..bit_end.min(deleted.len())) {
            Some(b) if b.any() => b.load_le::<u64>(),
            _ => 0,
        };
        f(
            first + o as PointOffset,
            &flat[o * dim..block_end * dim],
            mask,
        );
        o = block_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitvec::vec::BitVec;

    #[test]
    fn scan_flat_skips_deleted_and_clips() {
        let dim = 2;
        let n = 200usize;
        let flat: Vec<u32> = (0..(n * dim) as u32).collect();
        let mut deleted: BitVec<u64> = BitVec::repeat(false, 150); // shorter than the data
        for o in [0usize, 63, 64, 100, 149] {
            deleted.set(o, true);
        }
        for (first, range) in [
            (0u32, 0u32..200u32),
            (0, 5..130),
            (10, 0..300),
            (0, 190..500),
        ] {
            let mut seen = Vec::new();
            scan_flat(&flat, dim, first, &deleted, range.clone(), |o, v| {
                assert_eq!(v[0] as usize, (o - first) as usize * dim);
                seen.push(o);
            });
            let want: Vec<u32> = (range.start.max(first)..range.end.min(first + n as u32))
                .filter(|o| !deleted.get(*o as usize).is_some_and(|b| *b))
                .collect();
            assert_eq!(seen, want, "first {first} range {range:?}");
        }
    }
}
