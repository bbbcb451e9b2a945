//! The shared conformance suite for the immutable mmap backend. Every
//! factory fills an in-memory storage (or segment) with the suite's data and
//! builds the mmap one from it, as the optimizer does; reopen = flush,
//! drop, open.

mod common;

use std::path::Path;

use common::*;
use vecseg::kinds::{self, MmapSegment};
use vecseg::migrate::build_mmap;
use vecseg::testing::*;
use vecseg::{
    Distance, IdMapper, Payload, PayloadStorage, PointId, PointOffset, Result, VectorStorage,
    Version,
};
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};

struct Vectors;
impl VectorFactory for Vectors {
    type Storage = MmapVectorStorage<f32>;
    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage> {
        MmapVectorStorage::build(dir, &memory_vectors(data)?, MmapVectorOptions::default())
    }
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        s.flush()?;
        drop(s);
        MmapVectorStorage::open(dir, MmapVectorOptions::default())
    }
}

struct Payloads;
impl PayloadFactory for Payloads {
    type Storage = MmapPayloadStorage;
    fn build(
        &self,
        dir: &Path,
        entries: &[(PointOffset, Payload)],
        total: usize,
    ) -> Result<Self::Storage> {
        MmapPayloadStorage::build(dir, &memory_payloads(entries)?, total)
    }
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        s.flush()?;
        drop(s);
        MmapPayloadStorage::open(dir)
    }
}

struct Ids;
impl IdMapperFactory for Ids {
    type Mapper = MmapIdMapper;
    fn build(
        &self,
        dir: &Path,
        links: &[(PointId, PointOffset, Version)],
        total: usize,
    ) -> Result<Self::Mapper> {
        MmapIdMapper::build(dir, &memory_ids(links, total)?)
    }
    fn reopen(&self, dir: &Path, mut m: Self::Mapper) -> Result<Self::Mapper> {
        m.flush_mappings()?;
        m.flush_versions()?;
        drop(m);
        MmapIdMapper::open(dir)
    }
}

struct Segments;
impl ImmutableSegmentFactory for Segments {
    type Segment = MmapSegment<f32>;
    fn build(
        &self,
        dir: &Path,
        dim: usize,
        distance: Distance,
        points: &[ModelPoint],
    ) -> Result<Self::Segment> {
        let source = memory_segment_with(dim, distance, points)?;
        build_mmap(&source, dir, &MmapVectorOptions::default(), &mut |_| {})
    }
    fn reopen(&self, dir: &Path, mut s: Self::Segment) -> Result<Self::Segment> {
        s.flush()?;
        drop(s);
        kinds::open_mmap_segment(dir, &MmapVectorOptions::default())
    }
}

vecseg::conformance_suite! {
    vectors(immutable): Vectors,
    payloads(immutable): Payloads,
    id_map(immutable): Ids,
    segment(immutable): Segments,
}
