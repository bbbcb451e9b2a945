//! The shared conformance suite for the immutable [`MmapVectorStorage`]:
//! built from a memory storage holding the data, reopened by drop + open.

use std::path::Path;

use vecseg::memory::MemoryVectorStorage;
use vecseg::testing::*;
use vecseg::{AppendableVectorStorage, PointOffset, Result, VectorStorage};
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage};

struct MmapVectors;

impl VectorFactory for MmapVectors {
    type Storage = MmapVectorStorage<f32>;

    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage> {
        let mut source = MemoryVectorStorage::new(data.dim, data.distance)?;
        for (i, v) in data.vectors.iter().enumerate() {
            source.insert(i as PointOffset, v)?;
            if data.deleted[i] {
                source.delete(i as PointOffset)?;
            }
        }
        MmapVectorStorage::build(dir, &source, MmapVectorOptions::default())
    }

    fn reopen(&self, dir: &Path, mut storage: Self::Storage) -> Result<Self::Storage> {
        storage.flush()?;
        drop(storage);
        MmapVectorStorage::open(dir, MmapVectorOptions::default())
    }
}

vecseg::conformance_suite! {
    vectors(immutable): MmapVectors,
}
