//! End to end: a fully on-disk appendable segment
//! `Segment<ChunkedVectorStorage, ChunkedPayloadStorage, ChunkedIdMapper>`
//! reopens with identical reads and search results, and a crash (drop
//! without flush) leaves exactly the flushed state.

use std::path::Path;

use serde_json::json;
use vecseg::testing::{temp_dir, Rng};
use vecseg::{Distance, Payload, PointId, Result, Segment, SegmentEntry};
use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};

type ChunkedSegment = Segment<ChunkedVectorStorage<f32>, ChunkedPayloadStorage, ChunkedIdMapper>;

const DIM: usize = 16;

fn create(dir: &Path) -> Result<ChunkedSegment> {
    Segment::create(
        dir,
        ChunkedVectorStorage::create(
            &dir.join("vectors"),
            DIM,
            Distance::Cosine,
            ChunkedVectorOptions::default().with_chunk_size(8 << 10),
        )?,
        ChunkedPayloadStorage::create(
            &dir.join("payloads"),
            ChunkedPayloadOptions::small_for_tests(),
        )?,
        ChunkedIdMapper::create(&dir.join("ids"))?,
    )
}

fn open(dir: &Path) -> Result<ChunkedSegment> {
    Segment::open(
        dir,
        ChunkedVectorStorage::open(&dir.join("vectors"))?,
        ChunkedPayloadStorage::open(&dir.join("payloads"))?,
        ChunkedIdMapper::open(&dir.join("ids"))?,
    )
}

fn payload(i: u64) -> Payload {
    json!({"tenant": format!("t{}", i % 4), "i": i})
        .as_object()
        .cloned()
        .unwrap()
}

type Snapshot = (
    usize,
    Vec<Option<vecseg::Record<f32>>>,
    Vec<Vec<vecseg::ScoredPoint>>,
);

fn snapshot(s: &ChunkedSegment, ids: &[PointId], queries: &[Vec<f32>]) -> Snapshot {
    let records = ids.iter().map(|id| s.get(*id).unwrap()).collect();
    let hits = queries
        .iter()
        .map(|q| s.search(q, 10, None).unwrap())
        .collect();
    (s.point_count(), records, hits)
}

#[test]
fn chunked_segment_reopens_identically_and_survives_a_crash() {
    let dir = temp_dir();
    let mut s = create(dir.path()).unwrap();
    let mut rng = Rng::new(77);
    let ids: Vec<PointId> = (0..1500u64)
        .map(|i| {
            if i % 5 == 0 {
                PointId::Uuid(uuid::Uuid::from_u128(i as u128 + 1))
            } else {
                PointId::Num(i)
            }
        })
        .collect();
    let mut version = 0;
    for (i, id) in ids.iter().enumerate() {
        version += 1;
        s.upsert(version, *id, &rng.vector(DIM), &payload(i as u64))
            .unwrap();
    }
    for id in ids.iter().step_by(7) {
        version += 1;
        s.delete(version, *id).unwrap();
    }
    for id in ids.iter().skip(3).step_by(11).take(50) {
        version += 1;
        // Re-upsert existing points (in-place overwrite of vector and payload).
        s.upsert(version, *id, &rng.vector(DIM), &payload(9999))
            .unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(DIM)).collect();
    let before = snapshot(&s, &ids, &queries);
    assert_eq!(s.flush().unwrap(), version);
    drop(s);

    let mut s = open(dir.path()).unwrap();
    assert_eq!(s.persisted_version(), version);
    assert_eq!(snapshot(&s, &ids, &queries), before, "reopen is identical");

    // Crash: more writes, no flush.
    for i in 0..300u64 {
        s.upsert(
            version + 1 + i,
            PointId::Num(100_000 + i),
            &rng.vector(DIM),
            &payload(i),
        )
        .unwrap();
    }
    s.delete(version + 400, ids[1]).unwrap();
    drop(s);
    let s = open(dir.path()).unwrap();
    assert_eq!(s.persisted_version(), version);
    assert_eq!(
        snapshot(&s, &ids, &queries),
        before,
        "crash keeps flushed state"
    );
    assert_eq!(s.get(PointId::Num(100_000)).unwrap(), None);
    assert!(s.disk_bytes() > 0);
}
