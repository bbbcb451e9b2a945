//! The segment conformance suite over mixed backends, to show that any
//! combination of storages makes a working `Segment<V, P, I>`: chunked
//! (on-disk, appendable) vectors with in-memory payloads and id map.
//! (`tests/mmap_vectors.rs` covers mmap vectors with memory payloads and ids.)

use std::path::Path;

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage};
use vecseg::testing::SegmentFactory;
use vecseg::{Distance, Result, Segment};
use vecseg_chunked::{ChunkedVectorOptions, ChunkedVectorStorage};

struct ChunkedVectorsInMemoryRest;

impl SegmentFactory for ChunkedVectorsInMemoryRest {
    type Segment = Segment<ChunkedVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;

    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Segment> {
        // Small chunks so the suite's data spans several chunk files.
        let config = ChunkedVectorOptions::default().with_chunk_size(16 * 1024);
        let vectors = ChunkedVectorStorage::create(&dir.join("vectors"), dim, distance, config)?;
        Ok(Segment::new(
            vectors,
            MemoryPayloadStorage::new(),
            MemoryIdMapper::new(),
        ))
    }

    /// The in-memory parts cannot be reopened from disk, so "reopen" is a flush.
    fn reopen(&self, _: &Path, mut segment: Self::Segment) -> Result<Self::Segment> {
        segment.flush()?;
        Ok(segment)
    }
}

vecseg::conformance_suite! {
    segment(appendable): ChunkedVectorsInMemoryRest,
}
