//! `vecseg migrate` through its library entry point (`cli::migrate::run`).
//!
//! Needs the `rocksdb` cargo feature (on by default).
#![cfg(feature = "rocksdb")]

use clap::Parser;
use vecseg::cli::migrate::{run, MigrateArgs, MigrateTarget};
use vecseg::kinds::SegmentKind;
use vecseg::kinds::{create_rocks_segment, detect_kind, open_mmap_segment};
use vecseg::segment::SegmentState;
use vecseg::{Distance, Payload, PointId};
use vecseg_rocksdb::RocksOptions;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: MigrateArgs,
}

#[test]
fn parses_defaults_and_flags() {
    let w = Wrapper::parse_from(["x", "/some/seg"]);
    assert_eq!(w.args.to, MigrateTarget::Mmap);
    assert!(!w.args.verify_only);
    let w = Wrapper::parse_from(["x", "/some/seg", "--to", "chunked", "--verify-only"]);
    assert_eq!(w.args.to, MigrateTarget::Chunked);
    assert!(w.args.verify_only);
    assert!(Wrapper::try_parse_from(["x", "/s", "--to", "rocksdb"]).is_err());
}

#[test]
fn migrates_a_segment_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("seg");
    std::fs::create_dir_all(&seg).unwrap();
    {
        let mut s =
            create_rocks_segment::<f32>(&seg, 3, Distance::Cosine, &RocksOptions::default())
                .unwrap();
        for i in 0..100u64 {
            s.upsert(
                i + 1,
                PointId::Num(i),
                &[1.0, i as f32, 2.0],
                &Payload::new(),
            )
            .unwrap();
        }
        s.flush().unwrap();
    }
    let args = |verify_only| MigrateArgs {
        segment_dir: seg.clone(),
        to: MigrateTarget::Mmap,
        verify_only,
        paranoid: verify_only,
        batch: 16,
    };
    run(&args(true), true).unwrap();
    let state = SegmentState::read(&seg).unwrap();
    assert_eq!(detect_kind(&state).unwrap().0, SegmentKind::Rocks);
    run(&args(false), true).unwrap();
    let state = SegmentState::read(&seg).unwrap();
    assert_eq!(detect_kind(&state).unwrap().0, SegmentKind::Mmap);
    let s = open_mmap_segment::<f32>(&seg, &Default::default()).unwrap();
    assert_eq!(s.point_count(), 100);
    // Idempotent.
    run(&args(false), true).unwrap();

    // Not a segment directory: a clear error.
    let err = run(
        &MigrateArgs {
            segment_dir: dir.path().join("missing"),
            ..args(false)
        },
        true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a segment directory"), "{err}");
    // A corrupt segment.json: an error naming the file.
    std::fs::write(seg.join("segment.json"), b"{").unwrap();
    let err = run(&args(false), true).unwrap_err();
    assert!(err.to_string().contains("segment.json"), "{err}");
}
