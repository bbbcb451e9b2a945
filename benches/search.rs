//! Exact search over 100k × 128 f32 vectors in the memory backend, on one
//! thread, next to a plain sum over the same `Vec<f32>` (the memory
//! bandwidth baseline). Throughput is reported in bytes of vector data per
//! second, so the ratio of the two is the scoring efficiency.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::Rng;
use vecseg::{Distance, Payload, PointId, ScanOptions, Segment};

const N: usize = 100_000;
const DIM: usize = 128;

fn segment(
    distance: Distance,
) -> Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper> {
    let mut rng = Rng::new(1);
    let mut s = Segment::new(
        MemoryVectorStorage::new(DIM, distance).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    let empty = Payload::new();
    for i in 0..N {
        s.upsert(1, PointId::Num(i as u64), &rng.vector(DIM), &empty)
            .unwrap();
    }
    s
}

fn bench(c: &mut Criterion) {
    let bytes = (N * DIM * std::mem::size_of::<f32>()) as u64;
    let mut group = c.benchmark_group("scan_100k_x_128");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(30);

    let seg = segment(Distance::Dot);
    let flat = seg.vectors().as_flat().to_vec();
    group.bench_function("plain_sum_baseline", |b| {
        b.iter(|| {
            let mut acc = [0.0f32; 16];
            for chunk in black_box(&flat).chunks_exact(16) {
                for i in 0..16 {
                    acc[i] += chunk[i];
                }
            }
            black_box(acc.iter().sum::<f32>())
        })
    });
    group.bench_function("dot_kernel_over_flat", |b| {
        let q = Rng::new(2).vector(DIM);
        b.iter(|| {
            let mut best = f32::MIN;
            for v in black_box(&flat).chunks_exact(DIM) {
                best = best.max(vecseg::distance::dot_f32(&q, v));
            }
            black_box(best)
        })
    });
    group.bench_function("dot_kernel_over_flat_runtime_dim", |b| {
        let q = Rng::new(2).vector(DIM);
        let dim = black_box(DIM);
        b.iter(|| {
            let mut best = f32::MIN;
            for v in black_box(&flat).chunks_exact(dim) {
                best = best.max(vecseg::distance::dot_f32(&q, v));
            }
            black_box(best)
        })
    });
    let one_thread = ScanOptions::single_thread();
    for distance in [Distance::Dot, Distance::Euclid] {
        let seg = if distance == Distance::Dot {
            &seg
        } else {
            &segment(distance)
        };
        let q = Rng::new(3).vector(DIM);
        group.bench_function(format!("segment_search_top10_{}", distance.name()), |b| {
            b.iter(|| black_box(seg.search_with(&q, 10, None, one_thread).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
