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
use crate::types::PointOffset;

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

    /// The vector at `offset` (deleted vectors are still readable).
    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<Self::Vector<'_>>;

    /// Read many vectors, calling `f(i, vector)` for `offsets[i]`. Callbacks
    /// may come in any order; backends use this to batch I/O.
    fn get_batch<P: AccessPattern>(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[Self::Element]),
    ) -> Result<()> {
        for (i, &offset) in offsets.iter().enumerate() {
            f(i, &self.get::<P>(offset)?);
        }
        Ok(())
    }

    /// Whether the slot is flagged deleted (false past the end).
    fn is_deleted(&self, offset: PointOffset) -> bool {
        self.deleted_bits().get(offset as usize).is_some_and(|b| *b)
    }

    /// Deleted flags, one bit per slot; may be longer than `total_count()`.
    fn deleted_bits(&self) -> &BitSlice<u64>;

    /// Bytes this storage occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
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
pub trait VectorStorage: VectorStorageRead {
    /// Flag `offset` deleted; returns whether it was live before.
    fn delete(&mut self, offset: PointOffset) -> Result<bool>;
    /// Make every change durable.
    fn flush(&mut self) -> Result<()>;
}

/// Storages that accept new vectors.
pub trait AppendableVectorStorage: VectorStorage {
    /// Store `vector` at `offset`, which must be `<= total_count()`: equal
    /// appends, lower overwrites and clears the deleted flag. The vector must
    /// already be validated and preprocessed (see [`VectorElement`]).
    fn insert(&mut self, offset: PointOffset, vector: &[Self::Element]) -> Result<()>;
}
