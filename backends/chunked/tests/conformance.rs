//! The storage-level conformance checks (vectors, payloads, id map) run from
//! this crate alone, so `cargo test -p vecseg-chunked` covers them without
//! building the facade crate. The full suite including segments is in the
//! workspace's `tests/conformance_chunked.rs`.

use std::path::Path;

use vecseg_chunked::{
    ChunkedConfig, ChunkedIdMapper, ChunkedPayloadStorage, ChunkedVectorStorage, PayloadOptions,
};
use vecseg_traits::testing::*;
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, IdMapper,
    Payload, PayloadStorage, PointId, PointOffset, Result, VectorStorage, Version,
};

/// Vector config used by the tests: 16 KiB chunks.
fn vector_config(in_ram: bool) -> ChunkedConfig {
    ChunkedConfig::default()
        .with_chunk_size(16 << 10)
        .with_populate(in_ram)
}

/// Payload options used by the tests: 32-byte blocks, 16 KiB pages.
fn payload_options(in_ram: bool) -> PayloadOptions {
    PayloadOptions {
        populate: in_ram,
        ..PayloadOptions::small_for_tests()
    }
}

struct Vectors {
    in_ram: bool,
}
impl VectorFactory for Vectors {
    type Storage = ChunkedVectorStorage<f32>;
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
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        s.flush()?;
        drop(s);
        ChunkedVectorStorage::open(dir)
    }
}
impl AppendableVectorFactory for Vectors {
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Storage> {
        ChunkedVectorStorage::create(dir, dim, distance, vector_config(self.in_ram))
    }
}

struct Payloads {
    in_ram: bool,
}
impl PayloadFactory for Payloads {
    type Storage = ChunkedPayloadStorage;
    fn build(
        &self,
        dir: &Path,
        entries: &[(PointOffset, Payload)],
        _: usize,
    ) -> Result<Self::Storage> {
        let mut s = self.create(dir)?;
        for (o, p) in entries {
            s.overwrite(*o, p)?;
        }
        Ok(s)
    }
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        s.flush()?;
        drop(s);
        ChunkedPayloadStorage::open(dir)
    }
}
impl AppendablePayloadFactory for Payloads {
    fn create(&self, dir: &Path) -> Result<Self::Storage> {
        ChunkedPayloadStorage::create(dir, payload_options(self.in_ram))
    }
}

struct Ids;
impl IdMapperFactory for Ids {
    type Mapper = ChunkedIdMapper;
    fn build(
        &self,
        dir: &Path,
        links: &[(PointId, PointOffset, Version)],
        total: usize,
    ) -> Result<Self::Mapper> {
        let mut m = ChunkedIdMapper::create(dir)?;
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
    fn reopen(&self, dir: &Path, mut m: Self::Mapper) -> Result<Self::Mapper> {
        m.flush_mappings()?;
        m.flush_versions()?;
        drop(m);
        ChunkedIdMapper::open(dir)
    }
}
impl AppendableIdMapperFactory for Ids {
    fn create(&self, dir: &Path) -> Result<Self::Mapper> {
        ChunkedIdMapper::create(dir)
    }
}

vecseg_traits::conformance_suite! {
    vectors(appendable): Vectors { in_ram: false },
    payloads(appendable): Payloads { in_ram: false },
    id_map(appendable): Ids,
}
