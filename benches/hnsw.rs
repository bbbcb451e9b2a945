//! HNSW search against exact search over the same in-RAM vectors (one
//! search thread, one query at a time), on the real e5 embeddings
//! (`../shared/data/e5-dev`, or `VECSEG_E5_DIR`) and on generated
//! clustered data (`VECSEG_HNSW_BENCH_N` points × 128, default 100,000):
//! build time (two threads), then recall@10 and QPS at several `ef`,
//! QPS as a ratio to exact search measured in the same run; also with
//! scalar codes under the graph (scored through the codes, rescored).
//! Printed once as a table; criterion then times one graph search at
//! `ef = 64` beside one exact search.
//!
//! `cargo bench --no-default-features --bench hnsw`
//!
//! Options (environment): `VECSEG_HNSW_BENCH_N=0` skips the generated set;
//! `VECSEG_HNSW_BENCH_ROUNDS=r` measures each graph row `r` times and
//! prints the best QPS (the VM is noisy); `VECSEG_HNSW_BENCH_QUICK=1`
//! prints only the unfiltered raw-vector table (no sq8 rows, no filtered
//! table, no criterion timings); `VECSEG_HNSW_BENCH_GRAPH=dir` only
//! times index-level searches of the first set on the graph saved in
//! `dir` (built and saved there when missing), so two builds of the code
//! compare on the same graph; `VECSEG_HNSW_DUMP=dir` writes each set to
//! `dir/<set>/` in the e5 layout for `scripts/hnsw_faiss_anchor.py`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

#[path = "common/sets.rs"]
mod sets;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use sets::{dump, e5, generated, memory_segment, recall_and_qps, Set};
use vecseg::distance::{dot_f32, normalize};
use vecseg::index::hnsw::{write_links, HnswConfig, HnswIndex, LINKS_FILE};
use vecseg::memory::MemoryVectorStorage;
use vecseg::quantized::{Quantized, ScalarConfig, ScalarU8};
use vecseg::{PointId, PointOffset, Random, ScanOptions, VectorStorageRead};

fn ids(hits: Vec<vecseg::ScoredPoint>) -> Vec<PointId> {
    hits.into_iter().map(|h| h.id).collect()
}

/// A numeric option from the environment.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether only the unfiltered raw-vector table is wanted.
fn quick() -> bool {
    env_usize("VECSEG_HNSW_BENCH_QUICK", 0) > 0
}

/// (recall@10, best QPS) of `search` over `rounds` passes of the queries.
fn best_of(set: &Set, rounds: usize, mut search: impl FnMut(&[f32]) -> Vec<PointId>) -> (f64, f64) {
    let mut best = (0.0, 0.0);
    for _ in 0..rounds.max(1) {
        let (r, qps) = recall_and_qps(set, &mut search);
        best = (r, f64::max(best.1, qps));
    }
    best
}

fn table(set: &Set) {
    let rounds = env_usize("VECSEG_HNSW_BENCH_ROUNDS", 1);
    let mut seg = memory_segment(set);
    let exact_opts = ScanOptions::single_thread().exact();
    let (exact_recall, exact_qps) = recall_and_qps(set, |q| {
        ids(seg.search_with(q, 10, None, exact_opts).unwrap())
    });
    let started = Instant::now();
    seg.build_hnsw(HnswConfig::default()).unwrap();
    let build = started.elapsed();
    let index = seg.hnsw().unwrap();
    let degree = index.graph().link_count() as f64 / set.points.len() as f64;
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path()).unwrap();
    let file = std::fs::metadata(dir.path().join(LINKS_FILE))
        .unwrap()
        .len();
    println!(
        "\n{}: HNSW m 16, ef_construct 100, built in {:.1} s ({:.0} points/s); {:.1} links/point; \
         links file {:.1} B/point = {:.3} × (4 B × degree)",
        set.name,
        build.as_secs_f64(),
        set.points.len() as f64 / build.as_secs_f64(),
        degree,
        file as f64 / set.points.len() as f64,
        file as f64 / set.points.len() as f64 / (4.0 * degree)
    );
    println!("  search            ef   recall@10   QPS    ×exact");
    println!("  exact              -   {exact_recall:>9.3} {exact_qps:>6.0}   1.00");
    for ef in [16, 32, 64, 128, 256] {
        let opts = ScanOptions::single_thread().with_ef(ef);
        let (r, qps) = best_of(set, rounds, |q| {
            ids(seg.search_with(q, 10, None, opts).unwrap())
        });
        println!(
            "  hnsw           {ef:>5}   {r:>9.3} {qps:>6.0} {:>6.1}",
            qps / exact_qps
        );
    }
    // The saved graph, mapped: plain lists, and packed ones.
    let packed_dir = tempfile::tempdir().unwrap();
    let packed_config = HnswConfig {
        packed_links: true,
        ..*index.config()
    };
    write_links(
        &packed_dir.path().join(LINKS_FILE),
        index.graph(),
        &packed_config,
    )
    .unwrap();
    let packed_file = std::fs::metadata(packed_dir.path().join(LINKS_FILE))
        .unwrap()
        .len();
    println!(
        "  links file packed: {:.1} B/point ({:.2} × plain)",
        packed_file as f64 / set.points.len() as f64,
        packed_file as f64 / file as f64
    );
    for (name, dir) in [("mapped", dir.path()), ("packed", packed_dir.path())] {
        let mapped = HnswIndex::open(dir).unwrap();
        index_rows(set, seg.vectors(), &mapped, name, &[64, 128], rounds);
    }
    if quick() {
        return;
    }
    let sq8 = seg
        .map_vectors(|v| Quantized::<_, ScalarU8, _>::build_in_ram(v, &ScalarConfig::default()))
        .unwrap();
    for ef in [32, 64, 128] {
        let opts = ScanOptions::single_thread().with_ef(ef);
        let (r, qps) = recall_and_qps(set, |q| ids(sq8.search_with(q, 10, None, opts).unwrap()));
        println!(
            "  sq8+hnsw       {ef:>5}   {r:>9.3} {qps:>6.0} {:>6.1}",
            qps / exact_qps
        );
    }
}

/// A 1% tenant filter (100 tenants, offset mod 100) at the index level,
/// ef 64: with payload-aware links (walking only the tenant), without
/// them (walking only the tenant, then walking everything and keeping the
/// tenant's points), and the exact scoring of the tenant's points that
/// the planner picks for a filter this selective.
fn filtered_table(set: &Set) {
    let seg = memory_segment(set);
    let storage = seg.vectors();
    let blocks: Vec<Vec<PointOffset>> = (0..100)
        .map(|t| {
            (0..set.points.len() as PointOffset)
                .filter(|o| o % 100 == t)
                .collect()
        })
        .collect();
    let build = |payload_m| {
        HnswIndex::build(
            storage,
            |_| true,
            &blocks,
            HnswConfig {
                payload_m,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (with, without) = (build(8), build(0));
    let queries: Vec<Vec<f32>> = set
        .queries
        .iter()
        .take(200)
        .map(|q| {
            let mut q = q.clone();
            normalize(&mut q);
            q
        })
        .collect();
    let truth: Vec<Vec<PointOffset>> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut scored: Vec<(f32, PointOffset)> = blocks[i % 100]
                .iter()
                .map(|&o| (dot_f32(q, &set_vector(storage, o)), o))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.iter().take(10).map(|x| x.1).collect()
        })
        .collect();
    let run = |label: &str, search: &dyn Fn(usize) -> Vec<PointOffset>| {
        let started = Instant::now();
        let mut found = 0;
        for (i, expected) in truth.iter().enumerate() {
            found += search(i).iter().filter(|o| expected.contains(o)).count();
        }
        let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "  {label:<44} {:>9.3} {qps:>7.0}",
            found as f64 / (10 * queries.len()) as f64
        );
    };
    println!(
        "\n{}: 1% tenant filter (100 tenants), top 10, ef 64",
        set.name
    );
    println!("  search                                       recall@10     QPS");
    for (label, index, walk_tenant) in [
        (
            "hnsw + payload links (payload_m 8), tenant walk",
            &with,
            true,
        ),
        ("hnsw without payload links, tenant walk", &without, true),
        (
            "hnsw without payload links, walk all, keep tenant",
            &without,
            false,
        ),
    ] {
        run(label, &|i| {
            let t = (i % 100) as PointOffset;
            let in_tenant = move |o: PointOffset| o % 100 == t;
            let emit = move |o: PointOffset| walk_tenant || in_tenant(o);
            let walk: Option<&dyn Fn(PointOffset) -> bool> =
                if walk_tenant { Some(&in_tenant) } else { None };
            index
                .search(
                    storage,
                    &queries[i],
                    10,
                    64,
                    walk,
                    &emit,
                    &[blocks[i % 100][0]],
                )
                .unwrap()
                .iter()
                .map(|h| h.offset)
                .collect()
        });
    }
    run(
        "exact over the tenant's points (the planner's pick)",
        &|i| {
            let mut scored: Vec<(f32, PointOffset)> = blocks[i % 100]
                .iter()
                .map(|&o| (dot_f32(&queries[i], &set_vector(storage, o)), o))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.iter().take(10).map(|x| x.1).collect()
        },
    );
}

/// Stored vector `o`.
fn set_vector(storage: &MemoryVectorStorage<f32>, o: PointOffset) -> Vec<f32> {
    storage.get::<Random>(o).unwrap().to_vec()
}

/// Recall@10 and QPS of index-level searches (no segment layer) on a
/// graph kept in `dir`: built and saved there on the first run, opened on
/// later ones, so builds of different code compare on the same graph.
/// Recall and QPS of index-level searches (no segment layer) at each `ef`.
fn index_rows(
    set: &Set,
    storage: &MemoryVectorStorage<f32>,
    index: &HnswIndex,
    name: &str,
    efs: &[usize],
    rounds: usize,
) {
    for &ef in efs {
        let (r, qps) = best_of(set, rounds, |q| {
            let mut q = q.to_vec();
            normalize(&mut q);
            let hits = index
                .search(storage, &q, 10, ef, None, &|_| true, &[])
                .unwrap();
            hits.iter()
                .map(|h| PointId::Num(u64::from(h.offset)))
                .collect()
        });
        println!("  hnsw {name:<9} {ef:>5}   {r:>9.3} {qps:>6.0}");
    }
}

fn fixed_graph_table(set: &Set, dir: &std::path::Path) {
    let seg = memory_segment(set);
    let storage = seg.vectors();
    let index = if dir.join(LINKS_FILE).exists() {
        HnswIndex::open(dir).unwrap()
    } else {
        let index = HnswIndex::build(storage, |_| true, &[], HnswConfig::default()).unwrap();
        index.save(dir).unwrap();
        index
    };
    let rounds = env_usize("VECSEG_HNSW_BENCH_ROUNDS", 1);
    println!("\n{}: fixed graph in {}", set.name, dir.display());
    println!("  search            ef   recall@10   QPS");
    index_rows(set, storage, &index, "", &[16, 32, 64, 128, 256], rounds);
}

fn bench(c: &mut Criterion) {
    let n = env_usize("VECSEG_HNSW_BENCH_N", 100_000);
    let sets: Vec<Set> = e5()
        .into_iter()
        .chain((n > 0).then(|| generated(n)))
        .collect();
    if let (Ok(dir), Some(set)) = (std::env::var("VECSEG_HNSW_BENCH_GRAPH"), sets.first()) {
        fixed_graph_table(set, std::path::Path::new(&dir));
        return;
    }
    if let Ok(dir) = std::env::var("VECSEG_HNSW_DUMP") {
        for set in &sets {
            let name: String = set
                .name
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { '_' })
                .collect();
            dump(set, &std::path::Path::new(&dir).join(name));
        }
    }
    for set in &sets {
        table(set);
        if !quick() {
            filtered_table(set);
        }
    }
    if quick() || sets.is_empty() {
        return;
    }
    let set = &sets[0];
    let mut seg = memory_segment(set);
    seg.build_hnsw(HnswConfig::default()).unwrap();
    let mut g = c.benchmark_group(format!("hnsw {}", set.name));
    let q = &set.queries[0];
    let exact = ScanOptions::single_thread().exact();
    g.bench_function("exact search", |b| {
        b.iter(|| seg.search_with(q, 10, None, exact).unwrap())
    });
    let graph = ScanOptions::single_thread().with_ef(64);
    g.bench_function("hnsw search ef 64", |b| {
        b.iter(|| seg.search_with(q, 10, None, graph).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
