//! Writers killed with SIGKILL at random instants (issue: crash consistency).
//!
//! The test re-executes its own binary with `VECSEG_CRASH_CHILD=<dir>` and
//! `--exact crash_child`; that child applies a deterministic operation
//! sequence (derived from `VECSEG_CRASH_SEED`) to the segment in `<dir>`,
//! flushing every few dozen operations. The parent kills it at a random
//! moment, reopens the segment and checks the crash invariant:
//!
//! * the segment opens (no error, no panic) and its counts, `scroll`, `get`
//!   and `search` agree with each other;
//! * every point equals its state at the last completed flush (the version
//!   in `segment.json`) plus a prefix of its later operations — never a
//!   mix of two operations — and its stored version is one of the versions
//!   that prefix went through (a version never claims data that is not
//!   there);
//! * replaying every operation newer than the persisted version (as the
//!   WAL will) gives exactly the final state, also after flush and reopen.
//!
//! The `chunked+bq1` kind is a chunked segment whose vectors carry
//! appendable 1-bit codes (`Quantized<ChunkedVectorStorage, Binary1,
//! ChunkedCodes>`): after every kill, every live point's code must equal
//! the code of its reopened vector (codes and vectors flushed apart never
//! disagree about a live point).
//!
//! CI runs a few dozen kills per kind; `crash_kill_many` (ignored) runs
//! hundreds: `cargo test --test crash_kill crash_kill_many -- --ignored
//! --nocapture` (about 3 minutes; every cycle ended consistent in the
//! last run: 300 chunked, 150 chunked+bq1, 150 RocksDB, 150 mmap).
//!
//! Needs the `rocksdb` cargo feature (on by default): the same loops run
//! the RocksDB kind beside the chunked and mmap ones.
#![cfg(feature = "rocksdb")]

mod process;

use process::self_exe;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vecseg::chunked::{ChunkedIdMapper, ChunkedPayloadStorage, ChunkedVectorStorage};
use vecseg::kinds::QUANTIZED_DIR;
use vecseg::kinds::{
    create_chunked_segment, create_rocks_segment, open_chunked_segment, open_mmap_segment,
    open_rocks_segment,
};
use vecseg::migrate::build_mmap;
use vecseg::quantized::{Binary1, BinaryConfig, ChunkedCodes, Codec, Quantized};
use vecseg::segment::SegmentState;
use vecseg::{AppendableSegmentEntry, Distance, Payload, PointId, SegmentEntry, Version};
use vecseg::{IdMapperRead, PointOffset, Random, VectorStorageRead};
use vecseg_mmap::MmapVectorOptions;
use vecseg_rocksdb::RocksOptions;

const CHILD_ENV: &str = "VECSEG_CRASH_CHILD";
const SEED_ENV: &str = "VECSEG_CRASH_SEED";
const KIND_ENV: &str = "VECSEG_CRASH_KIND";
const DIM: usize = 8;
const IDS: u64 = 48;
const OPS: usize = 2500;
/// Points an mmap segment starts with (it can only delete and clear).
const MMAP_POINTS: u64 = 600;

/// One operation; its version is its index in the sequence + 1.
#[derive(Debug, Clone)]
enum Op {
    Upsert(PointId, Vec<f32>, Payload),
    Delete(PointId),
    Set(PointId, Payload),
    Overwrite(PointId, Payload),
    DeleteKeys(PointId, Vec<String>),
    Clear(PointId),
}

impl Op {
    fn id(&self) -> PointId {
        match self {
            Op::Upsert(id, ..)
            | Op::Delete(id)
            | Op::Set(id, _)
            | Op::Overwrite(id, _)
            | Op::DeleteKeys(id, _)
            | Op::Clear(id) => *id,
        }
    }
}

/// A point of the model: vector, payload, version.
type Point = (Vec<f32>, Payload, Version);
type Model = BTreeMap<PointId, Point>;

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap_or_default()
}

fn vector(id: u64, version: Version) -> Vec<f32> {
    (0..DIM)
        .map(|k| ((id * 31 + version * 7 + k as u64) % 97) as f32 - 48.0)
        .collect()
}

/// Apply `op` (version `v`) to the model; every generated op is effective.
fn apply(m: &mut Model, op: &Op, v: Version) {
    match op {
        Op::Upsert(id, vec, p) => {
            m.insert(*id, (vec.clone(), p.clone(), v));
        }
        Op::Delete(id) => {
            m.remove(id);
        }
        Op::Set(id, p) => {
            if let Some(pt) = m.get_mut(id) {
                for (k, val) in p {
                    pt.1.insert(k.clone(), val.clone());
                }
                pt.2 = v;
            }
        }
        Op::Overwrite(id, p) => {
            if let Some(pt) = m.get_mut(id) {
                pt.1 = p.clone();
                pt.2 = v;
            }
        }
        Op::DeleteKeys(id, keys) => {
            if let Some(pt) = m.get_mut(id) {
                for k in keys {
                    pt.1.remove(k);
                }
                pt.2 = v;
            }
        }
        Op::Clear(id) => {
            if let Some(pt) = m.get_mut(id) {
                pt.1.clear();
                pt.2 = v;
            }
        }
    }
}

/// The starting points of an mmap segment (versions 1..=MMAP_POINTS).
fn mmap_initial() -> Vec<Op> {
    (0..MMAP_POINTS)
        .map(|i| {
            Op::Upsert(
                PointId::Num(i),
                vector(i, i + 1),
                obj(serde_json::json!({"i": i, "t": i % 7})),
            )
        })
        .collect()
}

/// The operation sequence of `kind` for `seed`, and the flush points (an
/// op index after which the writer flushes). For `mmap` the sequence starts
/// with the initial upserts, which the parent applies before building.
fn sequence(kind: &str, seed: u64) -> (Vec<Op>, Vec<usize>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    let mut ops = Vec::new();
    if kind == "mmap" {
        ops = mmap_initial();
        for (i, op) in ops.iter().enumerate() {
            apply(&mut model, op, i as Version + 1);
        }
    }
    let start = ops.len();
    let mut flushes = vec![start];
    let mut next_flush = start + rng.gen_range(5..60);
    while ops.len() < start + OPS {
        let v = ops.len() as Version + 1;
        let op = if kind == "mmap" {
            let live: Vec<PointId> = model.keys().copied().collect();
            if live.is_empty() {
                break;
            }
            let id = live[rng.gen_range(0..live.len())];
            if rng.gen_bool(0.5) {
                Op::Delete(id)
            } else {
                Op::Clear(id)
            }
        } else {
            let n = rng.gen_range(0..IDS);
            let id = PointId::Num(n);
            let exists = model.contains_key(&id);
            match rng.gen_range(0..100) {
                _ if !exists => {
                    Op::Upsert(id, vector(n, v), obj(serde_json::json!({"a": v, "id": n})))
                }
                0..=34 => Op::Upsert(id, vector(n, v), obj(serde_json::json!({"a": v, "id": n}))),
                35..=49 => Op::Delete(id),
                50..=69 => Op::Set(id, obj(serde_json::json!({"k": v}))),
                70..=79 => Op::Overwrite(id, obj(serde_json::json!({"o": v}))),
                80..=89 => Op::DeleteKeys(id, vec!["a".into()]),
                _ => Op::Clear(id),
            }
        };
        apply(&mut model, &op, v);
        ops.push(op);
        if ops.len() >= next_flush {
            flushes.push(ops.len());
            next_flush = ops.len() + rng.gen_range(5..60);
        }
    }
    (ops, flushes)
}

/// Apply `op` through the dynamic segment interface; `Ok(false)` for a
/// stale or no-op replay is fine, errors are not — except that a replayed
/// payload change may find its point gone: a later delete already reached
/// disk, and replaying that delete gives the same final state (the WAL
/// replay rule).
fn run_op(s: &mut dyn AppendableSegmentEntry<f32>, op: &Op, v: Version) {
    let r = match op {
        Op::Upsert(id, vec, p) => s.upsert(v, *id, vec, p),
        Op::Delete(id) => s.delete(v, *id),
        Op::Set(id, p) => s.set_payload(v, *id, p),
        Op::Overwrite(id, p) => s.overwrite_payload(v, *id, p),
        Op::DeleteKeys(id, keys) => s.delete_payload_keys(v, *id, keys),
        Op::Clear(id) => s.clear_payload(v, *id),
    };
    check_result(r, op, v);
}

/// Panic on an error other than a payload change finding its point gone.
fn check_result(r: vecseg::Result<bool>, op: &Op, v: Version) {
    match r {
        Ok(_) | Err(vecseg::StorageError::NotFound(_)) => {}
        Err(e) => panic!("op {v} {op:?}: {e}"),
    }
}

/// Immutable segments: delete and clear only.
fn run_immutable_op(s: &mut dyn SegmentEntry<f32>, op: &Op, v: Version) {
    let r = match op {
        Op::Delete(id) => s.delete(v, *id),
        Op::Clear(id) => s.clear_payload(v, *id),
        other => panic!("not an immutable op: {other:?}"),
    };
    check_result(r, op, v);
}

/// The `chunked+bq1` segment in `dir`: chunked storages, 1-bit codes in
/// `<dir>/quantized/`.
type ChunkedBq1 = vecseg::Segment<
    Quantized<ChunkedVectorStorage<f32>, Binary1, ChunkedCodes>,
    ChunkedPayloadStorage,
    ChunkedIdMapper,
>;

fn open_chunked_bq1(dir: &Path) -> ChunkedBq1 {
    let codes = dir.join(QUANTIZED_DIR);
    open_chunked_segment::<f32>(dir)
        .unwrap()
        .map_vectors(|v| Quantized::open_chunked(v, &codes))
        .unwrap()
}

/// Every live point's code is the code of its vector.
fn check_codes(dir: &Path) {
    let s = open_chunked_bq1(dir);
    let q = s.vectors();
    let mut code = vec![0u8; q.codec().code_len()];
    for o in 0..q.total_count() as PointOffset {
        if q.is_deleted(o) || s.ids().external(o).unwrap().is_none() {
            continue;
        }
        q.codec()
            .encode(q.raw().get::<Random>(o).unwrap(), &mut code);
        assert_eq!(
            q.codes().get::<Random>(o).unwrap(),
            &code[..],
            "offset {o}: code and vector disagree after the kill"
        );
    }
}

fn open(kind: &str, dir: &Path) -> Box<dyn AppendableOrNot> {
    match kind {
        "chunked" => Box::new(Appendable(open_chunked_segment::<f32>(dir).unwrap())),
        "chunked+bq1" => Box::new(Appendable(open_chunked_bq1(dir))),
        "rocksdb" => Box::new(Appendable(
            open_rocks_segment::<f32>(dir, &RocksOptions::default()).unwrap(),
        )),
        _ => Box::new(Immutable(
            open_mmap_segment::<f32>(dir, &MmapVectorOptions::default()).unwrap(),
        )),
    }
}

/// A segment of any kind, with the op runner that fits it.
trait AppendableOrNot {
    fn entry(&self) -> &dyn SegmentEntry<f32>;
    fn run(&mut self, op: &Op, v: Version);
    fn flush(&mut self) -> Version;
    /// `run`, then require that the operation changed the segment.
    fn run_strict(&mut self, op: &Op, v: Version) {
        let before = self.entry().version();
        self.run(op, v);
        assert_eq!(
            self.entry().version(),
            before.max(v),
            "op {v} {op:?} not applied"
        );
    }
}

struct Appendable<S>(S);
struct Immutable<S>(S);

impl<S: AppendableSegmentEntry<f32>> AppendableOrNot for Appendable<S> {
    fn entry(&self) -> &dyn SegmentEntry<f32> {
        &self.0
    }
    fn run(&mut self, op: &Op, v: Version) {
        run_op(&mut self.0, op, v)
    }
    fn flush(&mut self) -> Version {
        self.0.flush().unwrap()
    }
}

impl<S: SegmentEntry<f32>> AppendableOrNot for Immutable<S> {
    fn entry(&self) -> &dyn SegmentEntry<f32> {
        &self.0
    }
    fn run(&mut self, op: &Op, v: Version) {
        run_immutable_op(&mut self.0, op, v)
    }
    fn flush(&mut self) -> Version {
        self.0.flush().unwrap()
    }
}

/// The child side: does nothing unless started by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let kind = std::env::var(KIND_ENV).unwrap();
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let (ops, flushes) = sequence(&kind, seed);
    let mut s = open(&kind, Path::new(&dir));
    let start = flushes[0];
    let mut next = 1;
    for (i, op) in ops.iter().enumerate().skip(start) {
        // The writer's operations always find their points.
        s.run_strict(op, i as Version + 1);
        if flushes.get(next) == Some(&(i + 1)) {
            s.flush();
            next += 1;
        }
    }
    s.flush();
    println!("CHILD_DONE");
}

/// Create the segment the child starts from.
fn prepare(kind: &str, dir: &Path, ops: &[Op], start: usize) {
    match kind {
        "chunked" => {
            create_chunked_segment::<f32>(dir, DIM, Distance::Dot).unwrap();
        }
        "chunked+bq1" => {
            // The codec is trained on vectors like the ones the writer
            // upserts, then the segment starts empty.
            let sample: Vec<f32> = (0..64).flat_map(|i| vector(i, i + 1)).collect();
            let codec =
                Binary1::train(&BinaryConfig::default(), DIM, Distance::Dot, &sample).unwrap();
            let s = create_chunked_segment::<f32>(dir, DIM, Distance::Dot).unwrap();
            let codes = dir.join(QUANTIZED_DIR);
            let mut s = s
                .map_vectors(|v| Quantized::with_codec_chunked(v, &codes, codec))
                .unwrap();
            s.flush().unwrap();
        }
        "rocksdb" => {
            create_rocks_segment::<f32>(dir, DIM, Distance::Dot, &RocksOptions::default()).unwrap();
        }
        _ => {
            let src_dir = dir.with_extension("src");
            let mut src = create_chunked_segment::<f32>(&src_dir, DIM, Distance::Dot).unwrap();
            for (i, op) in ops[..start].iter().enumerate() {
                run_op(&mut src, op, i as Version + 1);
            }
            src.flush().unwrap();
            let mut built =
                build_mmap(&src, dir, &MmapVectorOptions::default(), &mut |_| {}).unwrap();
            SegmentEntry::flush(&mut built).unwrap();
            drop(built);
            std::fs::remove_dir_all(&src_dir).unwrap();
        }
    }
}

/// What a reopened point may look like: its state after the flush plus
/// `j` of its later operations, for any `j`; with a version any of the
/// states up to `j` had.
fn check_point(
    id: PointId,
    got: Option<Point>,
    at_flush: Option<&Point>,
    later: &[(Version, &Op)],
) -> Result<(), String> {
    let mut state: Option<Point> = at_flush.cloned();
    let mut versions: Vec<Version> = state.iter().map(|p| p.2).collect();
    for j in 0..=later.len() {
        if j > 0 {
            let (v, op) = later[j - 1];
            let mut m = Model::new();
            if let Some(p) = state.take() {
                m.insert(id, p);
            }
            apply(&mut m, op, v);
            state = m.remove(&id);
            if let Some(p) = &state {
                versions.push(p.2);
            }
        }
        // An operation can leave the content as it was (clearing an empty
        // payload) and only raise the version, so look on past a match.
        match (&got, &state) {
            (None, None) => return Ok(()),
            (Some(g), Some(s)) if g.0 == s.0 && g.1 == s.1 && versions.contains(&g.2) => {
                return Ok(())
            }
            _ => {}
        }
    }
    Err(format!(
        "point {id}: {got:?} is no whole state with a version it went through \
         (at flush {at_flush:?}, later ops {later:?})"
    ))
}

fn dump(s: &dyn SegmentEntry<f32>) -> Model {
    let ids = s.scroll(None, usize::MAX, None).unwrap();
    assert_eq!(
        ids.len(),
        s.point_count(),
        "scroll and point_count disagree"
    );
    ids.into_iter()
        .map(|id| {
            let r = s
                .get(id)
                .unwrap_or_else(|e| panic!("get({id}) of a scrolled point: {e}"))
                .unwrap_or_else(|| panic!("scrolled point {id} is absent"));
            (id, (r.vector, r.payload, r.version))
        })
        .collect()
}

/// Reopen after a kill and check the invariant, then replay and compare.
fn check_after_kill(kind: &str, dir: &Path, ops: &[Op]) -> Version {
    let persisted = SegmentState::read(dir).unwrap().version;
    let mut s = open(kind, dir);
    let got = dump(s.entry());
    // Search sees exactly the live points.
    let query = vec![1.0f32; DIM];
    let hits = s.entry().search(&query, usize::MAX, None).unwrap();
    assert_eq!(hits.len(), got.len(), "search does not see every point");
    let mut at_flush = Model::new();
    for (i, op) in ops[..persisted as usize].iter().enumerate() {
        apply(&mut at_flush, op, i as Version + 1);
    }
    let mut later: BTreeMap<PointId, Vec<(Version, &Op)>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate().skip(persisted as usize) {
        later
            .entry(op.id())
            .or_default()
            .push((i as Version + 1, op));
    }
    let mut all: Vec<PointId> = got.keys().chain(at_flush.keys()).copied().collect();
    all.extend(later.keys().copied());
    all.sort();
    all.dedup();
    for id in all {
        let empty = Vec::new();
        if let Err(e) = check_point(
            id,
            got.get(&id).cloned(),
            at_flush.get(&id),
            later.get(&id).unwrap_or(&empty),
        ) {
            panic!("{kind}, persisted version {persisted}: {e}");
        }
    }
    // Replay everything after the persisted version, as the WAL will.
    for (i, op) in ops.iter().enumerate().skip(persisted as usize) {
        s.run(op, i as Version + 1);
    }
    let mut want = Model::new();
    for (i, op) in ops.iter().enumerate() {
        apply(&mut want, op, i as Version + 1);
    }
    assert_same(
        &dump(s.entry()),
        &want,
        &format!("{kind}: replay from {persisted}"),
    );
    s.flush();
    drop(s);
    let s = open(kind, dir);
    assert_same(
        &dump(s.entry()),
        &want,
        &format!("{kind}: replay, flush, reopen"),
    );
    persisted
}

/// Panic listing the points where `got` and `want` differ.
fn assert_same(got: &Model, want: &Model, what: &str) {
    let mut ids: Vec<&PointId> = got.keys().chain(want.keys()).collect();
    ids.sort();
    ids.dedup();
    let diffs: Vec<String> = ids
        .into_iter()
        .filter(|id| got.get(id) != want.get(id))
        .map(|id| format!("{id}: got {:?}, want {:?}", got.get(id), want.get(id)))
        .collect();
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

/// Kill `cycles` writers of `kind` at random instants; returns how many
/// were killed before they finished.
fn kill_cycles(kind: &str, cycles: usize, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    // Calibrate: one writer runs to the end; kills then land uniformly in
    // its running time.
    let mut run_ms = 1000u64;
    for cycle in 0..=cycles {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("segment");
        let op_seed = seed * 1000 + cycle as u64;
        let (ops, flushes) = sequence(kind, op_seed);
        prepare(kind, &dir, &ops, flushes[0]);
        let mut child = Command::new(self_exe())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(KIND_ENV, kind)
            .env(SEED_ENV, op_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if cycle == 0 {
            let started = std::time::Instant::now();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{kind}: calibration writer failed: {status:?}"
            );
            run_ms = (started.elapsed().as_millis() as u64).max(20);
        } else {
            std::thread::sleep(Duration::from_millis(rng.gen_range(1..run_ms * 9 / 10)));
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let status = child.wait().unwrap();
            if !finished {
                killed += 1;
            } else {
                assert!(status.success(), "{kind}: child failed: {status:?}");
            }
        }
        if kind == "chunked+bq1" {
            check_codes(&dir);
        }
        check_after_kill(kind, &dir, &ops);
    }
    killed
}

#[test]
fn killed_chunked_writers_leave_whole_points() {
    let killed = kill_cycles("chunked", 12, 1);
    assert!(
        killed >= 6,
        "only {killed} of 12 writers were killed mid-way"
    );
}

#[test]
fn killed_quantized_chunked_writers_keep_codes_and_vectors_in_step() {
    let killed = kill_cycles("chunked+bq1", 8, 4);
    assert!(
        killed >= 4,
        "only {killed} of 8 writers were killed mid-way"
    );
}

#[test]
fn killed_rocksdb_writers_leave_whole_points() {
    let killed = kill_cycles("rocksdb", 8, 2);
    assert!(
        killed >= 4,
        "only {killed} of 8 writers were killed mid-way"
    );
}

#[test]
fn killed_mmap_writers_leave_whole_points() {
    let killed = kill_cycles("mmap", 8, 3);
    assert!(
        killed >= 4,
        "only {killed} of 8 writers were killed mid-way"
    );
}

/// Hundreds of kills per kind (run by hand; the closing note quotes it).
#[test]
#[ignore]
fn crash_kill_many() {
    for (kind, n) in [
        ("chunked", 300),
        ("chunked+bq1", 150),
        ("rocksdb", 150),
        ("mmap", 150),
    ] {
        let killed = kill_cycles(kind, n, 100);
        println!("{kind}: {n} cycles, {killed} killed mid-way, all consistent");
    }
}

/// The WAL replay case: upsert A at v1, flush, upsert A at v2, merge a key
/// at v3, drop without flushing, reopen, replay 2..3 → A is the v3 state.
#[test]
fn replay_after_unflushed_upsert_and_payload_merge() {
    for kind in ["chunked", "rocksdb"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("segment");
        prepare(kind, &dir, &[], 0);
        let a = PointId::Num(1);
        let ops = [
            Op::Upsert(a, vec![1.0; DIM], obj(serde_json::json!({"a": 1}))),
            Op::Upsert(a, vec![2.0; DIM], obj(serde_json::json!({"a": 2}))),
            Op::Set(a, obj(serde_json::json!({"k": 3}))),
        ];
        {
            let mut s = open(kind, &dir);
            s.run(&ops[0], 1);
            assert_eq!(s.flush(), 1);
            s.run(&ops[1], 2);
            s.run(&ops[2], 3);
        } // dropped without flushing
        let mut s = open(kind, &dir);
        let persisted = s.entry().persisted_version();
        assert_eq!(persisted, 1, "{kind}");
        for (i, op) in ops.iter().enumerate().skip(persisted as usize) {
            s.run(op, i as Version + 1);
        }
        let r = s.entry().get(a).unwrap().unwrap();
        assert_eq!(
            r.payload,
            obj(serde_json::json!({"a": 2, "k": 3})),
            "{kind}"
        );
        assert_eq!(r.vector, vec![2.0; DIM], "{kind}");
        assert_eq!(r.version, 3, "{kind}");
    }
}
