//! RocksDB -> mmap in-place upgrade throughput (not a criterion loop: one
//! run over a large segment is the measurement).
//!
//! Builds a RocksDB segment of `VECSEG_MIGRATION_POINTS` (default 1M)
//! points × 128 f32 with ~100-byte payloads, every 50th point deleted,
//! flushes it, then runs `upgrade_segment_dir` (copy into the chunked
//! staging segment with resume markers and recorded slot hashes, build mmap,
//! place, full verification of the target against what was read from the
//! source, commit, clean-up) and prints MB/s of vector data up to the
//! durable commit (the upgrade is complete from there; a kill afterwards
//! only leaves files for a re-run to remove) and over the whole call
//! including the removal of the RocksDB files, plus the time of each phase.
//!
//! `cargo bench --bench migration` (`VECSEG_MIGRATION_PARANOID=1` also
//! re-reads the source during verification).

use std::time::Instant;

use vecseg::kinds::create_rocks_segment;
use vecseg::migrate::{upgrade_segment_dir, Phase, UpgradeOptions};
use vecseg::testing::Rng;
use vecseg::{Distance, PointId};
use vecseg_rocksdb::RocksOptions;

const DIM: usize = 128;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("VECSEG_MIGRATION_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segment");
    std::fs::create_dir_all(&seg).unwrap();

    let t = Instant::now();
    let mut s =
        create_rocks_segment::<f32>(&seg, DIM, Distance::Dot, &RocksOptions::default()).unwrap();
    let mut rng = Rng::new(3);
    for i in 0..n {
        let v = rng.vector(DIM);
        // ~100 bytes as JSON.
        let payload = serde_json::json!({
            "tenant": format!("tenant-{:04}", i % 1000),
            "n": i,
            "score": rng.unit() as f64,
            "tags": ["alpha", "beta"],
        });
        s.upsert(i + 1, PointId::Num(i), &v, payload.as_object().unwrap())
            .unwrap();
    }
    for i in (0..n).step_by(50) {
        s.delete(n + i + 1, PointId::Num(i)).unwrap();
    }
    s.flush().unwrap();
    s.vectors().db().flush_memtables().unwrap();
    drop(s);
    eprintln!(
        "source: {n} points loaded into RocksDB in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let rocks_bytes = vecseg::fsutil::dir_size(&seg.join("rocksdb"));

    let mut phases: Vec<(Phase, Instant)> = Vec::new();
    let t = Instant::now();
    let options = UpgradeOptions {
        paranoid: std::env::var("VECSEG_MIGRATION_PARANOID").is_ok_and(|v| v == "1"),
        ..UpgradeOptions::default()
    };
    let report = upgrade_segment_dir(&seg, &options, &mut |p| {
        if phases.last().map(|(ph, _)| *ph) != Some(p.phase) {
            phases.push((p.phase, Instant::now()));
        }
    })
    .unwrap();
    let total = t.elapsed();
    // Each phase lasts until the next one starts (the last until the end).
    let ends = phases.iter().skip(1).map(|(_, s)| *s).chain([t + total]);
    let parts: Vec<_> = phases.iter().zip(ends).map(|((_, s), e)| e - *s).collect();
    let names: Vec<&str> = phases.iter().map(|(p, _)| p.label()).collect();
    let mb = |d: std::time::Duration| report.copy.vector_bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "migration rocksdb->mmap{}: {} points ({} slots), {:.1} MB vectors + {:.1} MB payloads in {:.2} s",
        if options.paranoid { " (paranoid)" } else { "" },
        report.copy.points,
        report.copy.slots,
        report.copy.vector_bytes as f64 / 1e6,
        report.copy.payload_bytes as f64 / 1e6,
        total.as_secs_f64()
    );
    println!(
        "  throughput: {:.1} MB/s of vector data up to the durable commit ({:.2} s), {:.1} MB/s including clean-up ({:.2} s)",
        mb(report.until_commit),
        report.until_commit.as_secs_f64(),
        mb(total),
        report.cleanup.as_secs_f64(),
    );
    println!(
        "  all data (vectors + payloads) over the whole call: {:.1} MB/s (RocksDB dir {:.1} MB -> mmap dir {:.1} MB)",
        report.copy.mb_per_s(),
        rocks_bytes as f64 / 1e6,
        vecseg::fsutil::dir_size(&seg) as f64 / 1e6
    );
    for (name, d) in names.iter().zip(parts) {
        println!("  phase {name:<8} {:.2} s", d.as_secs_f64());
    }
}
