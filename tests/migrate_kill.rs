//! The in-place upgrade killed with SIGKILL at random moments, many times.
//!
//! The test re-executes its own binary (`current_exe`) with
//! `VECSEG_KILL_CHILD=<segment dir>` and `--exact child_upgrade`; that child
//! runs the upgrade with small batches (many resume markers) and prints its
//! report. The parent kills children at random points and after every kill
//! checks the invariant: the directory opens as exactly what its
//! `segment.json` says (RocksDB or the target) and holds every point, bit
//! for bit. Runs continue on the same directory until one completes, which
//! exercises resuming; then a fresh copy of the source starts a new round.
//!
//! Needs the `rocksdb` cargo feature (on by default).
#![cfg(feature = "rocksdb")]

mod process;

use process::{copy_dir, self_exe};

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use vecseg::kinds::SegmentKind;
use vecseg::kinds::{
    create_rocks_segment, detect_kind, open_chunked_segment, open_mmap_segment, open_rocks_segment,
};
use vecseg::migrate::{upgrade_segment_dir, UpgradeOptions};
use vecseg::segment::SegmentState;
use vecseg::{Distance, Payload, PointId, Record, SegmentEntry};
use vecseg_mmap::MmapVectorOptions;
use vecseg_rocksdb::RocksOptions;

const CHILD_ENV: &str = "VECSEG_KILL_CHILD";
const TARGET_ENV: &str = "VECSEG_KILL_TARGET";

type Dump = BTreeMap<PointId, Record<f32>>;

fn dump<S: SegmentEntry<f32> + ?Sized>(s: &S) -> Dump {
    s.scroll(None, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|id| (id, s.get(id).unwrap().unwrap()))
        .collect()
}

/// The child side: does nothing unless started by the parent.
#[test]
fn child_upgrade() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let target = match std::env::var(TARGET_ENV).as_deref() {
        Ok("chunked") => SegmentKind::Chunked,
        _ => SegmentKind::Mmap,
    };
    let report = upgrade_segment_dir(
        Path::new(&dir),
        &UpgradeOptions {
            target,
            batch_slots: 97,
            ..UpgradeOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    println!("RESUMED_FROM={}", report.copy.resumed_from);
}

/// Open the directory as whatever `segment.json` says and dump it.
fn dump_dir(dir: &Path) -> (SegmentKind, Dump) {
    let state = SegmentState::read(dir).expect("segment.json must always be readable");
    let (kind, _) = detect_kind(&state).expect("a known segment kind");
    let d = match kind {
        SegmentKind::Rocks => {
            dump(&open_rocks_segment::<f32>(dir, &RocksOptions::default()).unwrap())
        }
        SegmentKind::Mmap => {
            dump(&open_mmap_segment::<f32>(dir, &MmapVectorOptions::default()).unwrap())
        }
        SegmentKind::Chunked => dump(&open_chunked_segment::<f32>(dir).unwrap()),
    };
    (kind, d)
}

fn make_source(dir: &Path, n: u64) -> Dump {
    let mut s =
        create_rocks_segment::<f32>(dir, 16, Distance::Dot, &RocksOptions::default()).unwrap();
    for i in 0..n {
        let payload: Payload = serde_json::json!({"i": i, "tenant": format!("t{}", i % 5)})
            .as_object()
            .unwrap()
            .clone();
        let v: Vec<f32> = (0..16).map(|k| (i * 16 + k) as f32 * 0.25).collect();
        s.upsert(i + 1, PointId::Num(i * 2), &v, &payload).unwrap();
    }
    for i in (0..n).step_by(10) {
        s.delete(n + i + 1, PointId::Num(i * 2)).unwrap();
    }
    s.flush().unwrap();
    dump(&s)
}

fn spawn(dir: &Path, target: &str) -> std::process::Child {
    Command::new(self_exe())
        .args([
            "--exact",
            "child_upgrade",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(TARGET_ENV, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill_many_times(target: &str, kind: SegmentKind, min_kills: usize) {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let want = make_source(&pristine, 3000);

    // Calibrate: one uninterrupted run.
    let calib = root.path().join("calibrate");
    copy_dir(&pristine, &calib);
    let t = Instant::now();
    let out = spawn(&calib, target).wait_with_output().unwrap();
    assert!(out.status.success(), "uninterrupted child failed");
    let full = t.elapsed();
    assert_eq!(dump_dir(&calib), (kind, want.clone()));

    let mut rng = rand::thread_rng();
    let (mut kills, mut completions, mut resumed_runs, mut rounds) = (0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    while (kills < min_kills || completions < 2) && Instant::now() < deadline {
        rounds += 1;
        let dir = root.path().join(format!("round{rounds}"));
        copy_dir(&pristine, &dir);
        // Kill runs on this directory until one finishes.
        for attempt in 0.. {
            let mut child = spawn(&dir, target);
            // Later attempts get longer so every round terminates.
            let max = full.mul_f64(1.2 + attempt as f64 * 0.3);
            let delay = max.mul_f64(rng.gen::<f64>());
            let started = Instant::now();
            let mut finished = None;
            while started.elapsed() < delay {
                if let Some(status) = child.try_wait().unwrap() {
                    finished = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let status = match finished {
                Some(s) => s,
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap()
                }
            };
            let mut stdout = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            let (now, got) = dump_dir(&dir);
            assert_eq!(
                got, want,
                "points after attempt {attempt} of round {rounds} ({now:?})"
            );
            if status.success() {
                completions += 1;
                assert_eq!(now, kind, "a finished run leaves the target kind");
                assert!(!dir.join("rocksdb").exists() && !dir.join("migration").exists());
                let resumed: u64 = stdout
                    .split("RESUMED_FROM=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .expect("the child prints where it resumed");
                if resumed > 0 {
                    resumed_runs += 1;
                }
                break;
            }
            kills += 1;
            assert!(attempt < 50, "round {rounds} never finished");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "{target}: {kills} kills, {completions} completed rounds, {resumed_runs} resumed a partial copy"
    );
    assert!(kills >= min_kills, "only {kills} kills before the deadline");
    assert!(resumed_runs > 0, "no run ever resumed a partial copy");
}

#[test]
fn sigkill_during_upgrade_to_mmap_never_loses_a_point() {
    kill_many_times("mmap", SegmentKind::Mmap, 40);
}

#[test]
fn sigkill_during_upgrade_to_chunked_never_loses_a_point() {
    kill_many_times("chunked", SegmentKind::Chunked, 20);
}
