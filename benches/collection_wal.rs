//! The cost of durability: loading 200k × 128 f32 points in batches of
//! 1,000 into a collection with the WAL in each durability mode, against
//! the same batches upserted into a bare chunked segment (no WAL) in the
//! same run. Also prints, once, the WAL bytes per point and the time to
//! reopen a collection whose whole load is still in the WAL (recovery by
//! replay).
//!
//! `cargo bench --no-default-features --bench collection_wal`
//! (`VECSEG_WAL_BENCH_N` overrides the number of points of the load
//! benchmarks, `VECSEG_WAL_RECOVERY_N` that of the recovery measurement:
//! 1,950,000 points make a WAL of about 1.07 GB). Before criterion's
//! groups, the four loads also run interleaved for `VECSEG_WAL_ROUNDS`
//! rounds (default 7) and the median ratio to the bare segment per round
//! is printed: the VM's disk and CPU speed drift between criterion's
//! groups, which run one after another.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vecseg::collection::{Durability, SharedCollection, WalOptions};
use vecseg::kinds::create_chunked_segment;
use vecseg::prelude::*;
use vecseg::testing::Rng;

const DIM: usize = 128;
const BATCH: usize = 1_000;

fn points(n: usize) -> Vec<PointData> {
    let mut rng = Rng::new(5);
    (0..n)
        .map(|i| {
            let mut payload = Payload::new();
            payload.insert("tenant".into(), format!("t{}", i % 16).into());
            PointData {
                id: PointId::Num(i as u64),
                vector: rng.vector(DIM),
                payload,
            }
        })
        .collect()
}

fn options(durability: Durability) -> CollectionOptions {
    CollectionOptions::new(DIM, Distance::Cosine).with_wal(WalOptions {
        durability,
        ..Default::default()
    })
}

fn batches(data: &[PointData]) -> Vec<Vec<PointData>> {
    data.chunks(BATCH).map(<[PointData]>::to_vec).collect()
}

fn load(c: &mut Collection, batches: Vec<Vec<PointData>>) {
    for batch in batches {
        c.upsert_points(batch).unwrap();
    }
}

/// Upsert `data` into a bare segment in batches, as the collection would.
fn load_segment(s: &mut ChunkedSegment<f32>, data: &[PointData]) {
    for chunk in data.chunks(BATCH) {
        let batch: Vec<PointInput<'_, f32>> = chunk
            .iter()
            .map(|p| PointInput {
                id: p.id,
                vector: &p.vector,
                payload: &p.payload,
            })
            .collect();
        s.upsert_batch(1, &batch).unwrap();
    }
}

/// Seconds [`load_segment`] takes (dropping the segment is not timed).
fn time_segment_load(mut s: ChunkedSegment<f32>, data: &[PointData]) -> f64 {
    let t = Instant::now();
    load_segment(&mut s, data);
    t.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("VECSEG_WAL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let recovery_n: usize = std::env::var("VECSEG_WAL_RECOVERY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    let data = points(n.max(recovery_n));
    let (data, recovery_data) = (&data[..n], &data[..recovery_n]);
    let root = tempfile::tempdir().unwrap();
    let mut round = 0usize;
    // A new directory per round; the previous round's (its segment or
    // collection already dropped) is deleted, so dirty pages of old rounds
    // are not written back while later rounds are timed.
    let mut fresh = move |root: &std::path::Path| {
        let _ = std::fs::remove_dir_all(root.join(round.to_string()));
        round += 1;
        root.join(round.to_string())
    };

    // Once: WAL size and recovery time.
    {
        let dir = fresh(root.path());
        let mut coll = Collection::create(&dir, options(Durability::None)).unwrap();
        for chunk in recovery_data.chunks(BATCH) {
            coll.upsert_points(chunk.to_vec()).unwrap();
        }
        let wal_bytes = coll.wal().disk_bytes().unwrap();
        drop(coll);
        let t = Instant::now();
        let coll = Collection::open(&dir).unwrap();
        let recovery = t.elapsed();
        assert_eq!(coll.count().unwrap(), recovery_n);
        drop(coll);
        eprintln!(
            "collection_wal: {recovery_n} points, WAL {:.1} MB = {:.1} bytes/point; recovery by replay {:.2} s = {:.2} s per GB of WAL",
            wal_bytes as f64 / 1e6,
            wal_bytes as f64 / recovery_n as f64,
            recovery.as_secs_f64(),
            recovery.as_secs_f64() / (wal_bytes as f64 / 1e9)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Once: what batching buys with fsync per write (2,000 points).
    {
        let small = &data[..2_000.min(n)];
        let mut one_by_one =
            Collection::create(&fresh(root.path()), options(Durability::Fsync)).unwrap();
        let t = Instant::now();
        for p in small {
            one_by_one.upsert_points(vec![p.clone()]).unwrap();
        }
        let single = t.elapsed().as_secs_f64();
        let mut batched =
            Collection::create(&fresh(root.path()), options(Durability::Fsync)).unwrap();
        let t = Instant::now();
        load(&mut batched, batches(small));
        let batch = t.elapsed().as_secs_f64();
        eprintln!(
            "collection_wal: {} points with fsync: one per call {:.0} points/s, batches of {BATCH} {:.0} points/s ({:.1}x)",
            small.len(),
            small.len() as f64 / single,
            small.len() as f64 / batch,
            single / batch
        );
    }

    // Once: four writer threads through a SharedCollection, batches of 100.
    for durability in [Durability::Fsync, Durability::GroupCommit] {
        let shared = std::sync::Arc::new(SharedCollection::new(
            Collection::create(&fresh(root.path()), options(durability)).unwrap(),
        ));
        let small = &data[..20_000.min(n)];
        let t = Instant::now();
        std::thread::scope(|scope| {
            for part in small.chunks(small.len().div_ceil(4)) {
                let shared = &shared;
                scope.spawn(move || {
                    for batch in part.chunks(100) {
                        shared.upsert_points(batch.to_vec()).unwrap();
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let ops = small.len().div_ceil(100);
        let syncs = shared.read().unwrap().wal().sync_count();
        eprintln!(
            "collection_wal: 4 writers, {} points in batches of 100, {durability:?}: {:.0} points/s, {syncs} fdatasyncs for {ops} writes",
            small.len(),
            small.len() as f64 / secs
        );
    }

    // Once: the four loads interleaved round by round (the starting one
    // rotating), so that the VM's slow and fast spells fall on all of them
    // alike; the ratio to the bare segment is taken per round, and the
    // medians are printed.
    {
        let rounds: usize = std::env::var("VECSEG_WAL_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(7);
        let modes = [
            None,
            Some(Durability::None),
            Some(Durability::GroupCommit),
            Some(Durability::Fsync),
        ];
        let mut rates = vec![Vec::new(); modes.len()];
        for round in 0..rounds {
            for k in 0..modes.len() {
                let m = (round + k) % modes.len();
                let dir = fresh(root.path());
                let secs = match modes[m] {
                    None => {
                        let s = create_chunked_segment::<f32>(&dir, DIM, Distance::Cosine).unwrap();
                        time_segment_load(s, data)
                    }
                    Some(durability) => {
                        let coll = Collection::create(&dir, options(durability)).unwrap();
                        let batches = batches(data);
                        let t = Instant::now();
                        let coll = {
                            let mut coll = coll;
                            load(&mut coll, batches);
                            coll
                        };
                        let secs = t.elapsed().as_secs_f64();
                        drop(coll);
                        secs
                    }
                };
                rates[m].push(n as f64 / secs);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (m, mode) in modes.iter().enumerate() {
            let ratios: Vec<f64> = rates[m].iter().zip(&rates[0]).map(|(r, b)| r / b).collect();
            let label = mode.map_or("segment without WAL".to_string(), |d| format!("WAL {d:?}"));
            eprintln!(
                "collection_wal: {rounds} interleaved rounds, {label}: median {:.0} points/s, median ratio to the bare segment {:.2} (min {:.2}, max {:.2})",
                median(rates[m].clone()),
                median(ratios.clone()),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
        }
    }

    let mut g = c.benchmark_group(format!("load_{n}_x_{DIM}_batches_of_{BATCH}"));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    let root_path = root.path().to_path_buf();
    g.bench_function("segment_without_wal", |b| {
        b.iter_batched(
            || create_chunked_segment::<f32>(&fresh(&root_path), DIM, Distance::Cosine).unwrap(),
            |mut s| {
                load_segment(&mut s, data);
                s
            },
            BatchSize::PerIteration,
        )
    });
    for (name, durability) in [
        ("collection_wal_none", Durability::None),
        ("collection_wal_group_commit", Durability::GroupCommit),
        ("collection_wal_fsync", Durability::Fsync),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let coll = Collection::create(&fresh(&root_path), options(durability)).unwrap();
                    (coll, batches(data))
                },
                |(mut coll, batches)| {
                    load(&mut coll, batches);
                    coll
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
