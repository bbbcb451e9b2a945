//! `Segment::upsert_batch` equals the same upserts one by one (stale
//! versions and repeated ids inside a batch included), and
//! `Segment::get_batch` equals `get` per id, on every appendable backend.

use vecseg::kinds::{create_chunked_segment, ChunkedSegment};
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::Rng;
use vecseg::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, Payload,
    PointId, PointInput, Segment, StorageError,
};

const DIM: usize = 4;

/// One batch: version and (id, vector, payload) entries.
type Batch = (u64, Vec<(PointId, Vec<f32>, Payload)>);

/// Batches over a small id space, so ids repeat inside and across batches,
/// with versions that go back in time now and then (stale points).
fn batches(seed: u64) -> Vec<Batch> {
    let mut rng = Rng::new(seed);
    (0..40)
        .map(|b| {
            let version = if rng.below(4) == 0 { b / 2 } else { b + 10 };
            let n = 1 + rng.below(30);
            let points = (0..n)
                .map(|_| {
                    let id = PointId::Num(rng.below(60) as u64);
                    let mut v = rng.vector(DIM);
                    v[0] += 0.5;
                    (id, v, rng.payload())
                })
                .collect();
            (version as u64, points)
        })
        .collect()
}

fn check<V, P, I>(mut one: Segment<V, P, I>, mut batched: Segment<V, P, I>, seed: u64)
where
    V: AppendableVectorStorage<Element = f32>,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    for (version, points) in batches(seed) {
        let want: Vec<bool> = points
            .iter()
            .map(|(id, v, p)| one.upsert(version, *id, v, p).unwrap())
            .collect();
        let inputs: Vec<PointInput<'_, f32>> = points
            .iter()
            .map(|(id, v, p)| PointInput {
                id: *id,
                vector: v,
                payload: p,
            })
            .collect();
        assert_eq!(batched.upsert_batch(version, &inputs).unwrap(), want);
        if version % 7 == 0 {
            let (id, _, _) = points[0];
            assert_eq!(
                one.delete(version, id).unwrap(),
                batched.delete(version, id).unwrap()
            );
        }
    }
    assert_eq!(one.point_count(), batched.point_count());
    assert_eq!(one.version(), batched.version());
    let ids: Vec<PointId> = (0..70u64).rev().map(PointId::Num).collect();
    let got = batched.get_batch(&ids).unwrap();
    for (id, got) in ids.iter().zip(&got) {
        assert_eq!(got, &one.get(*id).unwrap(), "{id}");
        assert_eq!(got, &batched.get(*id).unwrap(), "{id}");
    }
    assert!(got.iter().filter(|r| r.is_some()).count() > 20);
}

fn memory_segment() -> Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper> {
    let v = MemoryVectorStorage::new(DIM, Distance::Cosine).unwrap();
    Segment::new(v, MemoryPayloadStorage::new(), MemoryIdMapper::new())
}

#[test]
fn batch_upsert_equals_one_by_one_in_memory() {
    check(memory_segment(), memory_segment(), 1);
}

#[test]
fn batch_upsert_equals_one_by_one_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| -> ChunkedSegment {
        create_chunked_segment(&dir.path().join(name), DIM, Distance::Cosine).unwrap()
    };
    check(make("one"), make("batched"), 2);
}

#[cfg(feature = "rocksdb")]
#[test]
fn batch_upsert_equals_one_by_one_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        vecseg::kinds::create_rocks_segment::<f32>(
            &dir.path().join(name),
            DIM,
            Distance::Cosine,
            &Default::default(),
        )
        .unwrap()
    };
    check(make("one"), make("batched"), 3);
}

#[test]
fn an_invalid_point_rejects_the_whole_batch() {
    let mut s = memory_segment();
    let empty = Payload::new();
    let good = [1.0, 0.0, 0.0, 0.0];
    let bad = [1.0, f32::NAN, 0.0, 0.0];
    let short = [1.0, 0.0];
    for wrong in [&bad[..], &short[..]] {
        let batch = [
            PointInput {
                id: PointId::Num(1),
                vector: &good,
                payload: &empty,
            },
            PointInput {
                id: PointId::Num(2),
                vector: wrong,
                payload: &empty,
            },
        ];
        assert!(matches!(
            s.upsert_batch(1, &batch),
            Err(StorageError::NonFiniteComponent { .. } | StorageError::DimensionMismatch { .. })
        ));
        assert_eq!(s.point_count(), 0, "nothing of a rejected batch is applied");
    }
    assert_eq!(s.upsert_batch(1, &[]).unwrap(), Vec::<bool>::new());
    assert_eq!(s.get_batch(&[]).unwrap(), Vec::new());
}
