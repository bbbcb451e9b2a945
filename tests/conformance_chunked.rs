//! The shared conformance suite, instantiated for the chunked (appendable,
//! memory-mapped) backend: once with small chunks/pages so every check
//! crosses file boundaries, and once in `InRam` (populated) mode.

mod common;

use std::path::Path;

use common::{fill_ids, fill_payloads, fill_vectors};
use vecseg::testing::*;
use vecseg::{
    Distance, IdMapper, Payload, PayloadStorage, PointId, PointOffset, Result, Segment,
    VectorStorage, Version,
};
use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};

/// Vector config used by the tests: 16 KiB chunks.
fn vector_config(in_ram: bool) -> ChunkedVectorOptions {
    ChunkedVectorOptions::default()
        .with_chunk_size(16 << 10)
        .with_populate(in_ram)
}

/// Payload options used by the tests: 32-byte blocks, 16 KiB pages.
fn payload_options(in_ram: bool) -> ChunkedPayloadOptions {
    ChunkedPayloadOptions {
        populate: in_ram,
        ..ChunkedPayloadOptions::small_for_tests()
    }
}

struct Vectors {
    in_ram: bool,
}
impl VectorFactory for Vectors {
    type Storage = ChunkedVectorStorage<f32>;
    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage> {
        let mut s = self.create(dir, data.dim, data.distance)?;
        fill_vectors(&mut s, data)?;
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
        fill_payloads(&mut s, entries)?;
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
        fill_ids(&mut m, links, total)?;
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

/// A fully on-disk appendable segment.
type ChunkedSegment = Segment<ChunkedVectorStorage<f32>, ChunkedPayloadStorage, ChunkedIdMapper>;

/// Open the three storages of a segment directory and the segment.
fn open_segment(dir: &Path) -> Result<ChunkedSegment> {
    Segment::open(
        dir,
        ChunkedVectorStorage::open(&dir.join("vectors"))?,
        ChunkedPayloadStorage::open(&dir.join("payloads"))?,
        ChunkedIdMapper::open(&dir.join("ids"))?,
    )
}

struct Segments {
    in_ram: bool,
}
impl SegmentFactory for Segments {
    type Segment = ChunkedSegment;
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Segment> {
        Segment::create(
            dir,
            ChunkedVectorStorage::create(
                &dir.join("vectors"),
                dim,
                distance,
                vector_config(self.in_ram),
            )?,
            ChunkedPayloadStorage::create(&dir.join("payloads"), payload_options(self.in_ram))?,
            ChunkedIdMapper::create(&dir.join("ids"))?,
        )
    }
    fn reopen(&self, dir: &Path, mut s: Self::Segment) -> Result<Self::Segment> {
        s.flush()?;
        drop(s);
        open_segment(dir)
    }
}

vecseg::conformance_suite! {
    vectors(appendable): Vectors { in_ram: false },
    payloads(appendable): Payloads { in_ram: false },
    id_map(appendable): Ids,
    segment(appendable): Segments { in_ram: false },
}

/// The same suite with every mapping populated at open (`InRam` mode).
mod in_ram {
    use super::*;

    vecseg::conformance_suite! {
        vectors(appendable): Vectors { in_ram: true },
        payloads(appendable): Payloads { in_ram: true },
        segment(appendable): Segments { in_ram: true },
    }
}

#[test]
fn payload_storage_is_clear_and_flush_ready() {
    // Compile-time check that the storage is usable through the write trait.
    fn takes<P: PayloadStorage>(_: &P) {}
    let dir = temp_dir();
    let s = Payloads { in_ram: false }.create(dir.path()).unwrap();
    takes(&s);
}
