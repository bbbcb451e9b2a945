//! [`MemoryVectorStorage`]: vectors packed back to back in one `Vec<T>`.

use bitvec::vec::BitVec;
use vecseg_traits::bitvec::slice::BitSlice;
use vecseg_traits::vector::{scan_flat, scan_flat_blocks};
use vecseg_traits::{
    AccessPattern, AppendableVectorStorage, Distance, PointOffset, RawScorer, Result, StorageError,
    VectorElement, VectorStorage, VectorStorageRead,
};

/// Vectors of `dim` components of `T`, stored contiguously in RAM.
#[derive(Debug, Clone)]
pub struct MemoryVectorStorage<T = f32> {
    dim: usize,
    distance: Distance,
    data: Vec<T>,
    deleted: BitVec<u64>,
    deleted_count: usize,
}

impl<T: VectorElement> MemoryVectorStorage<T> {
    /// An empty storage; `dim` must be at least 1.
    pub fn new(dim: usize, distance: Distance) -> Result<Self> {
        if dim == 0 {
            return Err(StorageError::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        Ok(MemoryVectorStorage {
            dim,
            distance,
            data: Vec::new(),
            deleted: BitVec::new(),
            deleted_count: 0,
        })
    }

    /// All vectors (deleted ones included) as one flat slice.
    pub fn as_flat(&self) -> &[T] {
        &self.data
    }

    /// Reserve room for `additional` more vectors.
    pub fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional * self.dim);
    }
}

impl<T: VectorElement> VectorStorageRead for MemoryVectorStorage<T> {
    type Element = T;
    type Vector<'a> = &'a [T];
    type Scorer<'a> = RawScorer<'a, Self>;

    fn scorer(&self, query: &[T]) -> Result<Self::Scorer<'_>> {
        Ok(RawScorer::new(self, query))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn total_count(&self) -> usize {
        self.data.len() / self.dim
    }

    fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    #[inline]
    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<&[T]> {
        let start = offset as usize * self.dim;
        self.data
            .get(start..start + self.dim)
            .ok_or(StorageError::OffsetOutOfRange {
                offset,
                len: self.total_count(),
            })
    }

    fn prefetch(&self, offset: PointOffset) {
        if let Ok(v) = self.get::<vecseg_traits::Random>(offset) {
            vecseg_mmap::prefetch(v);
        }
    }

    fn deleted_bits(&self) -> &BitSlice<u64> {
        &self.deleted
    }

    fn scan_live<P: AccessPattern, F: FnMut(PointOffset, &[T])>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        scan_flat(&self.data, self.dim, 0, &self.deleted, range, f);
        Ok(())
    }

    fn scan_blocks<P: AccessPattern, F: FnMut(PointOffset, &[T], u64)>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        scan_flat_blocks(&self.data, self.dim, 0, &self.deleted, range, f);
        Ok(())
    }

    fn contiguous<P: AccessPattern>(&self) -> Result<Option<&[T]>> {
        Ok(Some(&self.data))
    }
}

impl<T: VectorElement> VectorStorage for MemoryVectorStorage<T> {
    fn delete(&mut self, offset: PointOffset) -> Result<bool> {
        self.check_offset(offset)?;
        let was_live = !self.deleted.replace(offset as usize, true);
        if was_live {
            self.deleted_count += 1;
        }
        Ok(was_live)
    }

    fn flush_data(&mut self) -> Result<()> {
        Ok(())
    }

    fn flush_deleted(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<T: VectorElement> AppendableVectorStorage for MemoryVectorStorage<T> {
    fn insert(&mut self, offset: PointOffset, vector: &[T]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(StorageError::DimensionMismatch {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let total = self.total_count();
        let index = offset as usize;
        if index > total {
            return Err(StorageError::OffsetOutOfRange { offset, len: total });
        }
        if index == total {
            self.data.extend_from_slice(vector);
            self.deleted.push(false);
        } else {
            self.data[index * self.dim..(index + 1) * self.dim].copy_from_slice(vector);
            if self.deleted.replace(index, false) {
                self.deleted_count -= 1;
            }
        }
        Ok(())
    }
}
