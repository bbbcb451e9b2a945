//! The shared conformance suite, instantiated for the in-memory backend.

use std::path::Path;

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::*;
use vecseg::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, IdMapper,
    Payload, PointId, PointOffset, Result, Segment, VectorStorage, Version,
};

struct Vectors;
impl VectorFactory for Vectors {
    type Storage = MemoryVectorStorage<f32>;
    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage> {
        let mut s = self.create(dir, data.dim, data.distance)?;
        for (i, v) in data.vectors.iter().enumerate() {
            s.insert(i as PointOffset, v)?;
            if data.deleted[i] {
                s.delete(i as PointOffset)?;
            }
        }
        Ok(s)
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
        let mut s = MemoryPayloadStorage::new();
        for (o, p) in entries {
            s.overwrite(*o, p)?;
        }
        Ok(s)
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
        let mut m = MemoryIdMapper::new();
        // Allocate every offset, then drop the placeholders that have no link.
        for o in 0..total as PointOffset {
            m.set_link(PointId::Num(u64::MAX - o as u64), o)?;
        }
        for o in 0..total as PointOffset {
            m.drop_id(PointId::Num(u64::MAX - o as u64))?;
        }
        for (id, o, v) in links {
            m.set_link(*id, *o)?;
            m.set_version(*o, *v)?;
        }
        Ok(m)
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
    type Segment = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;
    fn create(&self, _: &Path, dim: usize, distance: Distance) -> Result<Self::Segment> {
        Ok(Segment::new(
            MemoryVectorStorage::new(dim, distance)?,
            MemoryPayloadStorage::new(),
            MemoryIdMapper::new(),
        ))
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
