//! The optimizer's convert on 100k × 128 cosine vectors with a payload
//! (100 tenants, scattered): a collection's appendable segment rebuilt as
//! an immutable mmap segment ordered by id, and defragmented by tenant,
//! next to the baseline measured in the same run — `build_mmap` copying the
//! same chunked segment offset for offset (no reading by id, no ordering,
//! no staging). Throughput is in bytes of vectors.
//!
//! `VECSEG_OPT_BENCH_N` overrides the point count.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use serde_json::json;
use vecseg::collection::{
    Collection, CollectionOptions, Durability, OptimizerOptions, PointData, WalOptions,
};
use vecseg::kinds::create_chunked_segment;
use vecseg::migrate::build_mmap;
use vecseg::mmap::MmapVectorOptions;
use vecseg::testing::Rng;
use vecseg::{Distance, FieldSchema, FieldType, PointId};

const DIM: usize = 128;
const TENANTS: usize = 100;

fn points(n: usize) -> Vec<PointData> {
    let mut rng = Rng::new(11);
    (0..n)
        .map(|i| PointData {
            id: PointId::Num(i as u64),
            vector: rng.vector(DIM),
            payload: json!({"tenant": format!("tenant-{}", i % TENANTS)})
                .as_object()
                .unwrap()
                .clone(),
        })
        .collect()
}

/// A collection whose appendable segment holds `points`.
fn loaded(root: &std::path::Path, points: &[PointData], tenant: bool) -> Collection {
    let options = CollectionOptions::new(DIM, Distance::Cosine)
        .with_wal(WalOptions {
            durability: Durability::None,
            ..Default::default()
        })
        .with_optimizer(OptimizerOptions {
            convert_points: usize::MAX,
            convert_bytes: u64::MAX,
            ..Default::default()
        });
    let mut c = Collection::create(&root.join("c"), options).unwrap();
    let mut schema = FieldSchema::new("tenant", FieldType::Keyword);
    schema.is_tenant = tenant;
    c.create_field_index(schema).unwrap();
    for batch in points.chunks(2000) {
        c.upsert_points(batch.to_vec()).unwrap();
    }
    c.flush().unwrap();
    c
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("VECSEG_OPT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let points = points(n);
    let mut g = c.benchmark_group("optimizer");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes((n * DIM * 4) as u64));

    let source_dir = tempfile::tempdir().unwrap();
    let mut source =
        create_chunked_segment::<f32>(&source_dir.path().join("s"), DIM, Distance::Cosine).unwrap();
    for p in &points {
        source.upsert(1, p.id, &p.vector, &p.payload).unwrap();
    }
    source.flush().unwrap();
    g.bench_function(format!("build_mmap offset copy (baseline) {n}"), |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                build_mmap(
                    &source,
                    &dir.path().join("m"),
                    &MmapVectorOptions::default(),
                    &mut |_| {},
                )
                .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    drop(source);

    for (label, tenant) in [("by id", false), ("defragmented by tenant", true)] {
        g.bench_function(format!("convert {label} {n}"), |b| {
            b.iter_batched(
                || {
                    let root = tempfile::tempdir().unwrap();
                    let c = loaded(root.path(), &points, tenant);
                    (root, c)
                },
                |(root, mut c)| {
                    let report = c.seal_appendable().unwrap();
                    assert_eq!(report.points, n);
                    (root, c)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
