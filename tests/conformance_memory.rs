//! The shared conformance suite, instantiated for the in-memory backend.

mod common;

use std::path::Path;

use common::*;
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::*;
use vecseg::{Distance, Payload, PointId, PointOffset, Result, Version};

struct Vectors;
impl VectorFactory for Vectors {
    type Storage = MemoryVectorStorage<f32>;
    fn build(&self, _: &Path, data: &VectorData) -> Result<Self::Storage> {
        memory_vectors(data)
    }
    fn reopen(&self, _: &Path, s: Self::Storage) -> Result<Self::Storage> {
        Ok(s)
    }
}
impl AppendableVectorFactory for Vectors {
    fn create(&self, _: &Path, dim: usize, distance: Distance) -> Result<Self::Storage> {
        MemoryVectorStorage::new(dim, distance)
    }
}

struct Payloads;
impl PayloadFactory for Payloads {
    type Storage = MemoryPayloadStorage;
    fn build(
        &self,
        _: &Path,
        entries: &[(PointOffset, Payload)],
        _: usize,
    ) -> Result<Self::Storage> {
        memory_payloads(entries)
    }
    fn reopen(&self, _: &Path, s: Self::Storage) -> Result<Self::Storage> {
        Ok(s)
    }
}
impl AppendablePayloadFactory for Payloads {
    fn create(&self, _: &Path) -> Result<Self::Storage> {
        Ok(MemoryPayloadStorage::new())
    }
}

struct Ids;
impl IdMapperFactory for Ids {
    type Mapper = MemoryIdMapper;
    fn build(
        &self,
        _: &Path,
        links: &[(PointId, PointOffset, Version)],
        total: usize,
    ) -> Result<Self::Mapper> {
        memory_ids(links, total)
    }
    fn reopen(&self, _: &Path, m: Self::Mapper) -> Result<Self::Mapper> {
        Ok(m)
    }
}
impl AppendableIdMapperFactory for Ids {
    fn create(&self, _: &Path) -> Result<Self::Mapper> {
        Ok(MemoryIdMapper::new())
    }
}

struct Segments;
impl SegmentFactory for Segments {
    type Segment = MemorySegment;
    fn create(&self, _: &Path, dim: usize, distance: Distance) -> Result<Self::Segment> {
        memory_segment(dim, distance)
    }
    fn reopen(&self, _: &Path, mut s: Self::Segment) -> Result<Self::Segment> {
        s.flush()?;
        Ok(s)
    }
}

vecseg::conformance_suite! {
    vectors(appendable): Vectors,
    payloads(appendable): Payloads,
    id_map(appendable): Ids,
    segment(appendable): Segments,
}
