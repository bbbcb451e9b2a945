//! A fully on-disk appendable segment (chunked) and the immutable mmap
//! segment built from it both reopen in a *different process* with
//! identical reads and search results.

use std::path::Path;
use std::process::Command;

use vecseg::kinds;
use vecseg::migrate::build_mmap;
use vecseg::testing::{ModelPoint, Rng};
use vecseg::{Condition, Distance, Filter, PointId, SegmentEntry};
use vecseg_mmap::MmapVectorOptions;

const DIM: usize = 16;
const CHILD_ENV: &str = "VECSEG_DISK_SEGMENTS_DIR";

/// Everything the reading process must see again, as JSON.
fn snapshot(s: &dyn SegmentEntry<f32>) -> serde_json::Value {
    let ids = s.scroll(None, usize::MAX, None).unwrap();
    let records: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            let r = s.get(*id).unwrap().unwrap();
            serde_json::json!({"id": r.id.to_string(), "version": r.version, "vector": r.vector, "payload": r.payload})
        })
        .collect();
    let mut rng = Rng::new(77);
    let tenant = Filter::must(Condition::keyword("tenant", "t1"));
    let searches: Vec<serde_json::Value> = (0..5)
        .flat_map(|_| {
            let q = rng.vector(DIM);
            [None, Some(&tenant)].map(|f| {
                let hits = s.search(&q, 10, f).unwrap();
                serde_json::json!(hits
                    .iter()
                    .map(|h| (h.id.to_string(), h.score))
                    .collect::<Vec<_>>())
            })
        })
        .collect();
    serde_json::json!({"version": s.version(), "count": s.point_count(), "records": records, "searches": searches})
}

#[test]
fn on_disk_segments_reopen_in_another_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // running as the child of the test below
    }
    let dir = tempfile::tempdir().unwrap();
    let chunked_dir = dir.path().join("chunked");
    let mmap_dir = dir.path().join("mmap");
    let mut seg =
        kinds::create_chunked_segment::<f32>(&chunked_dir, DIM, Distance::Cosine).unwrap();
    let points = ModelPoint::random_points(3000, DIM, 5);
    for p in &points {
        seg.upsert(p.version, p.id, &p.vector, &p.payload).unwrap();
    }
    for p in points.iter().step_by(11) {
        seg.delete(10_000, p.id).unwrap();
    }
    seg.flush().unwrap();
    let built = build_mmap(&seg, &mmap_dir, &MmapVectorOptions::default(), &mut |_| {}).unwrap();
    let want_chunked = snapshot(&seg);
    let want_mmap = snapshot(&built);
    assert_eq!(
        want_chunked, want_mmap,
        "the built segment reads like its source"
    );
    assert_eq!(want_chunked["count"], 3000 - 3000usize.div_ceil(11));
    drop((seg, built));
    std::fs::write(
        dir.path().join("expected.json"),
        serde_json::to_vec(&want_chunked).unwrap(),
    )
    .unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reader_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "reader process failed:\n{out}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        out.contains("1 passed"),
        "the reader test must have run: {out}"
    );
}

/// Runs only as the child process: opens both segments and compares.
#[test]
fn reader_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let chunked = kinds::open_chunked_segment::<f32>(&dir.join("chunked")).unwrap();
    assert_same(&snapshot(&chunked), &want, "chunked segment after reopen");
    let mmap =
        kinds::open_mmap_segment::<f32>(&dir.join("mmap"), &MmapVectorOptions::default()).unwrap();
    assert_same(&snapshot(&mmap), &want, "mmap segment after reopen");
    assert!(mmap.get(PointId::Num(u64::MAX)).unwrap().is_none());
}

/// Compare snapshots and name the first difference (they are too big to print whole).
fn assert_same(got: &serde_json::Value, want: &serde_json::Value, what: &str) {
    for key in ["version", "count"] {
        assert_eq!(got[key], want[key], "{what}: {key}");
    }
    for section in ["records", "searches"] {
        let (g, w) = (
            got[section].as_array().unwrap(),
            want[section].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len(), "{what}: number of {section}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(a, b, "{what}: {section}[{i}] differs");
        }
    }
}

#[test]
fn opening_a_segment_as_the_wrong_types_or_shape_is_an_error() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage};
    use vecseg::{Segment, StorageError};
    use vecseg_chunked::{ChunkedIdMapper, ChunkedPayloadStorage, ChunkedVectorStorage};
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("seg");
    let mut seg = kinds::create_chunked_segment::<f32>(&seg_dir, 4, Distance::Dot).unwrap();
    seg.upsert(
        1,
        PointId::Num(1),
        &[1.0, 2.0, 3.0, 4.0],
        &Default::default(),
    )
    .unwrap();
    seg.flush().unwrap();
    drop(seg);
    // Right storages, wrong types for the id map and payloads.
    let vectors = ChunkedVectorStorage::<f32>::open(&seg_dir.join("vectors")).unwrap();
    let err = Segment::open(
        &seg_dir,
        vectors,
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidArgument(ref m) if m.contains("opened as")),
        "{err}"
    );
    // segment.json disagreeing with the vector storage's dimension.
    let state_path = seg_dir.join("segment.json");
    let text = std::fs::read_to_string(&state_path)
        .unwrap()
        .replace("\"dim\": 4", "\"dim\": 5");
    std::fs::write(&state_path, text).unwrap();
    let open = || {
        Segment::open(
            &seg_dir,
            ChunkedVectorStorage::<f32>::open(&seg_dir.join("vectors")).unwrap(),
            ChunkedPayloadStorage::open(&seg_dir.join("payloads")).unwrap(),
            ChunkedIdMapper::open(&seg_dir.join("ids")).unwrap(),
        )
    };
    let err = open().unwrap_err();
    assert!(
        matches!(err, StorageError::Corrupted { ref path, .. } if path.ends_with("segment.json")),
        "{err}"
    );
}
