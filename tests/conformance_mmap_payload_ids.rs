//! The shared conformance suite for the immutable mmap payload storage and
//! perfect-hash id mapper. Each factory fills a memory storage with the
//! suite's data and builds the mmap one from it; reopen = flush, drop, open.

use std::path::Path;

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage};
use vecseg::testing::*;
use vecseg::{
    AppendableIdMapper, AppendablePayloadStorage, IdMapper, Payload, PayloadStorage, PointId,
    PointOffset, Result, Version,
};
use vecseg_mmap::id_map::MmapIdMapper;
use vecseg_mmap::payload::MmapPayloadStorage;

struct Payloads;
impl PayloadFactory for Payloads {
    type Storage = MmapPayloadStorage;
    fn build(
        &self,
        dir: &Path,
        entries: &[(PointOffset, Payload)],
        total: usize,
    ) -> Result<Self::Storage> {
        let mut source = MemoryPayloadStorage::new();
        for (o, p) in entries {
            source.overwrite(*o, p)?;
        }
        MmapPayloadStorage::build(dir, &source, total)
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
        let mut source = MemoryIdMapper::new();
        // Allocate every offset, then drop the placeholders that have no link.
        for o in 0..total as PointOffset {
            source.set_link(PointId::Num(u64::MAX - o as u64), o)?;
        }
        for o in 0..total as PointOffset {
            source.drop_id(PointId::Num(u64::MAX - o as u64))?;
        }
        for (id, o, v) in links {
            source.set_link(*id, *o)?;
            source.set_version(*o, *v)?;
        }
        MmapIdMapper::build(dir, &source)
    }
    fn reopen(&self, dir: &Path, mut m: Self::Mapper) -> Result<Self::Mapper> {
        m.flush_mappings()?;
        m.flush_versions()?;
        drop(m);
        MmapIdMapper::open(dir)
    }
}

vecseg::conformance_suite! {
    payloads(immutable): Payloads,
    id_map(immutable): Ids,
}
