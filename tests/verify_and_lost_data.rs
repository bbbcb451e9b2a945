//! `vecseg inspect --verify` / `Segment::verify`, and the checks that catch
//! a storage that lost flushed data (older files put back, a RocksDB that
//! recovered an older state).
//!
//! Needs the `rocksdb` cargo feature (on by default): the same loops run
//! the RocksDB kind beside the chunked and mmap ones.
#![cfg(feature = "rocksdb")]

mod process;

use process::copy_dir;

use vecseg::cli::inspect::inspect;
use vecseg::kinds::{
    create_chunked_segment, create_rocks_segment, open_chunked_segment, open_rocks_segment,
    SegmentLayout,
};
use vecseg::{AppendableSegmentEntry, Distance, Payload, PointId, StorageError};
use vecseg_rocksdb::RocksOptions;

fn payload(i: u64) -> Payload {
    serde_json::json!({ "i": i }).as_object().unwrap().clone()
}

fn fill(s: &mut dyn AppendableSegmentEntry<f32>, from: u64, to: u64) {
    for i in from..to {
        s.upsert(
            i + 1,
            PointId::Num(i),
            &[i as f32, 1.0, 2.0, 3.0],
            &payload(i),
        )
        .unwrap();
    }
    s.flush().unwrap();
}

#[test]
fn verify_reads_everything_and_reports_damage() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("seg");
    let mut s = create_chunked_segment::<f32>(&dir, 4, Distance::Dot).unwrap();
    fill(&mut s, 0, 50);
    s.delete(100, PointId::Num(3)).unwrap();
    s.flush().unwrap();
    let report = s.verify().unwrap();
    assert_eq!(report.points, 49);
    assert_eq!(report.payloads, 49);
    drop(s);
    let out = inspect(&dir, true).unwrap();
    assert!(out.contains("verified    49 points"), "{out}");

    // A vector component turned into NaN (vector bytes carry no checksum,
    // but verify checks every component is finite).
    let chunk = SegmentLayout::new(&dir).vectors().join("chunk_0.dat");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[64 + 10 * 16..64 + 10 * 16 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&chunk, bytes).unwrap();
    let s = open_chunked_segment::<f32>(&dir).unwrap();
    let e = s.verify().unwrap_err();
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    assert!(inspect(&dir, true).is_err());
    assert!(
        inspect(&dir, false).is_ok(),
        "without --verify only the files are checked"
    );
}

#[test]
fn an_older_id_map_put_back_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("seg");
    let mut s = create_chunked_segment::<f32>(&dir, 4, Distance::Dot).unwrap();
    fill(&mut s, 0, 10);
    let old_ids = root.path().join("old-ids");
    copy_dir(&SegmentLayout::new(&dir).ids(), &old_ids);
    fill(&mut s, 10, 20);
    drop(s);
    let ids = SegmentLayout::new(&dir).ids();
    std::fs::remove_dir_all(&ids).unwrap();
    copy_dir(&old_ids, &ids);
    let e = open_chunked_segment::<f32>(&dir).unwrap_err();
    assert!(e.to_string().contains("flushed data missing"), "{e}");
}

#[test]
fn a_rocksdb_that_went_back_in_time_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("seg");
    let mut s =
        create_rocks_segment::<f32>(&dir, 4, Distance::Dot, &RocksOptions::default()).unwrap();
    fill(&mut s, 0, 10);
    drop(s);
    let old = root.path().join("old-rocksdb");
    copy_dir(&SegmentLayout::new(&dir).rocksdb(), &old);
    let mut s = open_rocks_segment::<f32>(&dir, &RocksOptions::default()).unwrap();
    // Payload changes only: no new offsets, so only the sequence number
    // tells the older database apart.
    for i in 0..10u64 {
        s.set_payload(100 + i, PointId::Num(i), &payload(1000 + i))
            .unwrap();
    }
    s.flush().unwrap();
    drop(s);
    let db = SegmentLayout::new(&dir).rocksdb();
    std::fs::remove_dir_all(&db).unwrap();
    copy_dir(&old, &db);
    let e = open_rocks_segment::<f32>(&dir, &RocksOptions::default()).unwrap_err();
    assert!(e.to_string().contains("flushed data missing"), "{e}");
    assert!(e.to_string().contains("sequence"), "{e}");
}
