//! Random vector get and sequential scan on 200k × 128 f32, warm:
//! `MmapVectorStorage` against `RocksVectorStorage` (the mmap storage is
//! built from the RocksDB one, so both hold the same bytes).
//!
//! RocksDB runs with its defaults in this crate: a 64 MiB shared block
//! cache, LZ4, memtables flushed to SSTs before measuring; the whole DB
//! (~100 MB) stays in the OS page cache, so "warm" means no disk reads for
//! either side. Goal: mmap random get ≥ 10× faster.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vecseg::testing::Rng;
use vecseg::{Distance, PointOffset, Random, Sequential, VectorStorageRead};
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage};
use vecseg_rocksdb::{RocksDb, RocksVectorStorage};

const N: usize = 200_000;
const DIM: usize = 128;
const GETS: usize = 1000;

struct Fixture {
    _dir: tempfile::TempDir,
    rocks: RocksVectorStorage<f32>,
    mmap: MmapVectorStorage<f32>,
    offsets: Vec<PointOffset>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(&dir.path().join("rocksdb")).unwrap();
    let mut rocks = RocksVectorStorage::<f32>::create(db.clone(), DIM, Distance::Dot).unwrap();
    let mut rng = Rng::new(7);
    for _ in 0..N / 10_000 {
        let flat: Vec<f32> = (0..10_000 * DIM).map(|_| rng.unit()).collect();
        rocks.append_many(&flat).unwrap();
    }
    db.flush_memtables().unwrap();
    let mmap = MmapVectorStorage::build(
        &dir.path().join("mmap"),
        &rocks,
        MmapVectorOptions::default(),
    )
    .unwrap();
    let offsets = (0..GETS).map(|_| rng.below(N) as PointOffset).collect();
    Fixture {
        _dir: dir,
        rocks,
        mmap,
        offsets,
    }
}

fn random_get<S: VectorStorageRead<Element = f32>>(s: &S, offsets: &[PointOffset]) -> f32 {
    let mut acc = 0.0;
    for &o in offsets {
        acc += s.get::<Random>(o).unwrap()[DIM - 1];
    }
    acc
}

fn scan<S: VectorStorageRead<Element = f32>>(s: &S, all: &[PointOffset]) -> f32 {
    let mut acc = 0.0;
    for chunk in all.chunks(4096) {
        s.get_batch::<Sequential>(chunk, &mut |_, v| acc += v[0])
            .unwrap();
    }
    acc
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    // Warm both sides.
    let all: Vec<PointOffset> = (0..N as PointOffset).collect();
    black_box(scan(&f.rocks, &all));
    black_box(scan(&f.mmap, &all));
    assert_eq!(
        random_get(&f.rocks, &f.offsets),
        random_get(&f.mmap, &f.offsets)
    );

    let mut g = c.benchmark_group("random_get_200k_x128");
    g.throughput(Throughput::Elements(GETS as u64));
    g.bench_function("mmap", |b| {
        b.iter(|| black_box(random_get(&f.mmap, &f.offsets)))
    });
    g.bench_function("rocksdb", |b| {
        b.iter(|| black_box(random_get(&f.rocks, &f.offsets)))
    });
    g.finish();

    let mut g = c.benchmark_group("sequential_scan_200k_x128");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((N * DIM * 4) as u64));
    g.bench_function("mmap", |b| {
        b.iter_batched(
            || (),
            |_| black_box(scan(&f.mmap, &all)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("rocksdb", |b| {
        b.iter_batched(
            || (),
            |_| black_box(scan(&f.rocks, &all)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
