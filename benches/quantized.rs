//! Quantized search against exact search over the same raw vectors (one
//! search thread, one query at a time), on the real e5 embeddings
//! (`../shared/data/e5-dev`, or `VECSEG_E5_DIR`) and on generated
//! clustered data (`VECSEG_QUANT_BENCH_N` points × 128, default 200,000):
//! recall@10 and QPS per codec and oversampling, QPS as a ratio to exact
//! search in the same run, code bytes as a ratio to raw bytes. Printed
//! once as a table; criterion then times scoring every code of one query
//! (GB/s of codes read) beside the same loop over the raw f32 vectors.
//!
//! `cargo bench --no-default-features --bench quantized`
//! (`VECSEG_QUANT_TABLES=0` skips the recall tables).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

#[path = "common/sets.rs"]
mod sets;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sets::{e5, generated, memory_segment, recall_and_qps, Set};
use vecseg::memory::MemoryVectorStorage;
use vecseg::quantized::{
    Binary1, Binary1_5, Binary2, Codec, InRamCodes, Product, ProductConfig, Quantized,
    ScalarConfig, ScalarU4, ScalarU8,
};
use vecseg::{Distance, QueryScorer, ScanOptions, VectorStorageRead};

type Raw = MemoryVectorStorage<f32>;

fn report<Q: Codec>(set: &Set, label: &str, config: &Q::Config, exact_qps: f64) {
    let t = Instant::now();
    let segment = memory_segment(set)
        .map_vectors(|v| Quantized::<Raw, Q, InRamCodes>::build_in_ram(v, config))
        .unwrap();
    let build = t.elapsed().as_secs_f64();
    let raw_bytes = set.points.len() * set.dim * 4;
    let code_bytes = segment.vectors().code_bytes();
    for (oversampling, rescore) in [
        (1.0, false),
        (1.0, true),
        (2.0, true),
        (4.0, true),
        (8.0, true),
    ] {
        let options = ScanOptions::single_thread()
            .with_oversampling(oversampling)
            .with_rescore(rescore);
        let (recall, qps) = recall_and_qps(set, |q| {
            segment
                .search_with(q, 10, None, options)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect()
        });
        eprintln!(
            "{:<24} {label:<14} {:>5} {:>8} {recall:>9.3} {qps:>9.0} {:>8.2}x {:>9.3}x {build:>7.1}",
            set.name,
            format!("{oversampling}x"),
            if rescore { "yes" } else { "no" },
            qps / exact_qps,
            code_bytes as f64 / raw_bytes as f64,
        );
    }
}

fn table(set: &Set) {
    let exact = memory_segment(set);
    let one = ScanOptions::single_thread();
    let (recall, exact_qps) = recall_and_qps(set, |q| {
        exact
            .search_with(q, 10, None, one)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect()
    });
    drop(exact);
    eprintln!(
        "{:<24} {:<14} {:>5} {:>8} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "set", "codec", "over", "rescore", "recall@10", "QPS", "vs exact", "codes/raw", "build s"
    );
    eprintln!(
        "{:<24} {:<14} {:>5} {:>8} {recall:>9.3} {exact_qps:>9.0} {:>8.2}x {:>9.3}x {:>7}",
        set.name, "exact f32", "-", "-", 1.0, 1.0, "-"
    );
    report::<ScalarU8>(set, "sq8", &ScalarConfig::default(), exact_qps);
    let q99 = ScalarConfig {
        quantile: Some(0.99),
        ..Default::default()
    };
    report::<ScalarU8>(set, "sq8 q0.99", &q99, exact_qps);
    report::<ScalarU4>(set, "sq4", &ScalarConfig::default(), exact_qps);
    report::<Binary1>(set, "bq1", &Default::default(), exact_qps);
    report::<Binary1_5>(set, "bq1.5", &Default::default(), exact_qps);
    report::<Binary2>(set, "bq2", &Default::default(), exact_qps);
    // 384 / 24 = 16 sub-vectors, FAISS's PQ16 anchor on e5.
    let sub_dims: &[usize] = if set.dim.is_multiple_of(24) {
        &[4, 8, 24]
    } else {
        &[4, 8, 16]
    };
    for &sub_dim in sub_dims {
        let config = ProductConfig {
            sub_dim,
            ..Default::default()
        };
        report::<Product>(set, &format!("pq sub {sub_dim}"), &config, exact_qps);
    }
}

/// The best score of slots `0..n`, kept the way search keeps its
/// admission threshold: the scorer's bar (`score_live_above`, which may
/// skip blocks with nothing above it), written only when beaten.
fn best_score(scorer: &impl QueryScorer, n: u32) -> f32 {
    let best = std::cell::Cell::new(f32::NEG_INFINITY);
    scorer
        .score_live_above(
            0..n,
            |_| true,
            || best.get(),
            |_, s| {
                if s > best.get() {
                    best.set(s);
                }
            },
        )
        .unwrap();
    best.get()
}

fn scoring_speed<Q: Codec>(c: &mut Criterion, set: &Set, label: &str, config: &Q::Config) {
    let mut raw = Raw::new(set.dim, Distance::Cosine).unwrap();
    for (i, v) in set.points.iter().enumerate() {
        vecseg::AppendableVectorStorage::insert(&mut raw, i as u32, v).unwrap();
    }
    let q = Quantized::<Raw, Q, InRamCodes>::build_in_ram(raw, config).unwrap();
    let n = q.total_count() as u32;
    let mut g = c.benchmark_group(format!("score_every_code_one_query_{}", set.points.len()));
    g.throughput(Throughput::Bytes(q.code_bytes() as u64));
    let scorer = q.scorer(&set.queries[0]).unwrap();
    g.bench_function(label, |b| b.iter(|| best_score(&scorer, n)));
    g.throughput(Throughput::Bytes((set.points.len() * set.dim * 4) as u64));
    let raw_scorer = q.raw().scorer(&set.queries[0]).unwrap();
    g.bench_function("raw_f32", |b| b.iter(|| best_score(&raw_scorer, n)));
    g.finish();
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("VECSEG_QUANT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let sets: Vec<Set> = e5().into_iter().chain([generated(n)]).collect();
    // `VECSEG_QUANT_TABLES=0`: only the scoring-speed groups.
    if std::env::var("VECSEG_QUANT_TABLES").as_deref() != Ok("0") {
        for set in &sets {
            table(set);
        }
    }
    let set = sets.last().unwrap();
    scoring_speed::<ScalarU8>(c, set, "sq8", &ScalarConfig::default());
    scoring_speed::<ScalarU4>(c, set, "sq4", &ScalarConfig::default());
    scoring_speed::<Binary1>(c, set, "bq1", &Default::default());
    scoring_speed::<Binary1_5>(c, set, "bq1_5", &Default::default());
    scoring_speed::<Binary2>(c, set, "bq2", &Default::default());
    for sub_dim in [4, 8] {
        let config = ProductConfig {
            sub_dim,
            ..Default::default()
        };
        scoring_speed::<Product>(c, set, &format!("pq_sub{sub_dim}"), &config);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
