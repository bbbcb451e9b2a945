//! Tenant-filtered exact search on 200k × 128 cosine vectors, one search
//! thread, a filter matching 1% of the points (100 tenants): with a
//! keyword index on the tenant key (mutable form in RAM, immutable form in
//! an mmap segment) next to the same search without an index, in the same
//! run; and the same filters on a second key whose tenants hold contiguous
//! runs of offsets (the layout defragmentation by tenant produces). Also
//! times what a reopen pays for the mutable form (rebuilding it from every
//! payload) and prints the indexes' sizes.
//!
//! `VECSEG_INDEX_BENCH_N` overrides the point count.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use vecseg::index::payload::build_mutable;
use vecseg::kinds::create_chunked_segment;
use vecseg::mmap::MmapVectorOptions;
use vecseg::testing::Rng;
use vecseg::{Condition, Distance, FieldSchema, FieldType, Filter, PlanKind, PointId, ScanOptions};

const DIM: usize = 128;
const TENANTS: usize = 100;

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("VECSEG_INDEX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let mut seg =
        create_chunked_segment::<f32>(&dir.path().join("chunked"), DIM, Distance::Cosine).unwrap();
    for i in 0..n {
        // `tenant` is scattered (every 100th point); `block` holds the
        // same shares in contiguous runs, the layout defragmentation by
        // tenant produces.
        let p = json!({
            "tenant": format!("tenant-{}", i % TENANTS),
            "block": format!("tenant-{}", i * TENANTS / n),
        });
        let p = p.as_object().unwrap().clone();
        seg.upsert(1, PointId::Num(i as u64), &rng.vector(DIM), &p)
            .unwrap();
    }
    seg.flush().unwrap();
    let queries: Vec<Vec<f32>> = (0..64).map(|_| rng.vector(DIM)).collect();
    let filters: Vec<Filter> = (0..64)
        .map(|q| {
            Filter::must(Condition::keyword(
                "tenant",
                format!("tenant-{}", q % TENANTS),
            ))
        })
        .collect();
    let blocks: Vec<Filter> = (0..64)
        .map(|q| {
            Filter::must(Condition::keyword(
                "block",
                format!("tenant-{}", q % TENANTS),
            ))
        })
        .collect();
    let one_thread = ScanOptions::single_thread();

    let mut group = c.benchmark_group(format!("tenant_filter_1pct_{n}_x_{DIM}"));
    group.sample_size(20);
    round_robin(
        &mut group,
        "no_index_chunked",
        &queries,
        &filters,
        |q, f| {
            black_box(seg.search_with(q, 10, Some(f), one_thread).unwrap());
        },
    );
    let schema = FieldSchema::new("tenant", FieldType::Keyword).tenant();
    let stats = seg.create_field_index(schema.clone()).unwrap();
    seg.create_field_index(FieldSchema::new("block", FieldType::Keyword))
        .unwrap();
    assert_eq!(seg.plan(&filters[0]).unwrap().kind, PlanKind::Indexed);
    println!("mutable index: {stats:?}");
    round_robin(
        &mut group,
        "mutable_index_chunked",
        &queries,
        &filters,
        |q, f| {
            black_box(seg.search_with(q, 10, Some(f), one_thread).unwrap());
        },
    );
    round_robin(
        &mut group,
        "mutable_index_chunked_contiguous_tenants",
        &queries,
        &blocks,
        |q, f| {
            black_box(seg.search_with(q, 10, Some(f), one_thread).unwrap());
        },
    );
    let opts = MmapVectorOptions::default();
    let mmap =
        vecseg::migrate::build_mmap(&seg, &dir.path().join("mmap"), &opts, &mut |_| {}).unwrap();
    let stats = mmap.payload_index().field("tenant").unwrap().stats();
    println!(
        "immutable index: {stats:?}; posting bytes per pair {:.3}",
        stats.posting_bytes as f64 / stats.pairs as f64
    );
    round_robin(
        &mut group,
        "immutable_index_mmap",
        &queries,
        &filters,
        |q, f| {
            black_box(mmap.search_with(q, 10, Some(f), one_thread).unwrap());
        },
    );
    round_robin(
        &mut group,
        "immutable_index_mmap_contiguous_tenants",
        &queries,
        &blocks,
        |q, f| {
            black_box(mmap.search_with(q, 10, Some(f), one_thread).unwrap());
        },
    );
    round_robin(
        &mut group,
        "count_immutable_index_mmap",
        &queries,
        &filters,
        |_, f| {
            black_box(mmap.count(Some(f)).unwrap());
        },
    );
    group.finish();

    let mut group = c.benchmark_group(format!("index_build_{n}"));
    group.sample_size(10);
    group.bench_function("mutable_from_chunked_payloads", |b| {
        b.iter(|| black_box(build_mutable(&schema, seg.payloads()).unwrap()))
    });
    group.finish();
}

/// Time `f` over the queries and filters in turn.
fn round_robin(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    queries: &[Vec<f32>],
    filters: &[Filter],
    f: impl Fn(&[f32], &Filter),
) {
    let mut q = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            f(&queries[q % queries.len()], &filters[q % filters.len()]);
            q += 1;
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
