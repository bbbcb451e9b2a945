//! Loading points: `Segment::upsert_batch` (batches of 1,000, one version
//! each) against the same points through `Segment::upsert` one by one, in
//! the same run, on a chunked segment on disk and on the memory backend
//! (50k × 128 f32, cosine, small payloads); and `get_batch` of 1,000 random
//! ids against 1,000 `get` calls.
//!
//! Needs no RocksDB: `cargo bench --no-default-features --bench batch_upsert`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vecseg::kinds::create_chunked_segment;
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::prelude::*;
use vecseg::testing::Rng;

const N: usize = 50_000;
const DIM: usize = 128;
const BATCH: usize = 1_000;

struct Data {
    vectors: Vec<Vec<f32>>,
    payloads: Vec<Payload>,
}

fn data() -> Data {
    let mut rng = Rng::new(3);
    Data {
        vectors: (0..N).map(|_| rng.vector(DIM)).collect(),
        payloads: (0..N)
            .map(|i| {
                let mut p = Payload::new();
                p.insert("tenant".into(), format!("t{}", i % 16).into());
                p
            })
            .collect(),
    }
}

fn one_by_one<V, P, I>(s: &mut Segment<V, P, I>, d: &Data)
where
    V: AppendableVectorStorage<Element = f32>,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    for i in 0..N {
        s.upsert(1, PointId::Num(i as u64), &d.vectors[i], &d.payloads[i])
            .unwrap();
    }
}

fn batched<V, P, I>(s: &mut Segment<V, P, I>, d: &Data)
where
    V: AppendableVectorStorage<Element = f32>,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    for start in (0..N).step_by(BATCH) {
        let batch: Vec<PointInput<'_, f32>> = (start..(start + BATCH).min(N))
            .map(|i| PointInput {
                id: PointId::Num(i as u64),
                vector: &d.vectors[i],
                payload: &d.payloads[i],
            })
            .collect();
        s.upsert_batch(1, &batch).unwrap();
    }
}

fn memory() -> Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper> {
    Segment::new(
        MemoryVectorStorage::new(DIM, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    )
}

fn bench(c: &mut Criterion) {
    let d = data();
    let mut g = c.benchmark_group("load_50k_x_128");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("memory_upsert_one_by_one", |b| {
        b.iter_batched(
            memory,
            |mut s| one_by_one(&mut s, &d),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("memory_upsert_batch_1000", |b| {
        b.iter_batched(memory, |mut s| batched(&mut s, &d), BatchSize::PerIteration)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut round = 0usize;
    let mut chunked = || {
        round += 1;
        create_chunked_segment::<f32>(&dir.path().join(round.to_string()), DIM, Distance::Cosine)
            .unwrap()
    };
    g.bench_function("chunked_upsert_one_by_one", |b| {
        b.iter_batched(
            &mut chunked,
            |mut s| one_by_one(&mut s, &d),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("chunked_upsert_batch_1000", |b| {
        b.iter_batched(
            &mut chunked,
            |mut s| batched(&mut s, &d),
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut s = memory();
    batched(&mut s, &d);
    let mut rng = Rng::new(9);
    let ids: Vec<PointId> = (0..BATCH)
        .map(|_| PointId::Num(rng.below(N) as u64))
        .collect();
    let mut g = c.benchmark_group("read_1000_random_ids");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("memory_get_one_by_one", |b| {
        b.iter(|| {
            for id in &ids {
                black_box(s.get(*id).unwrap());
            }
        })
    });
    g.bench_function("memory_get_batch", |b| {
        b.iter(|| black_box(s.get_batch(&ids).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
