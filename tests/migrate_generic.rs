//! Generic migration, verification and the in-place upgrade (no kills; see
//! `migrate_kill.rs` for those).
//!
//! Needs the `rocksdb` cargo feature (on by default).
#![cfg(feature = "rocksdb")]

use std::collections::BTreeMap;
use std::path::Path;

use vecseg::kinds::{
    create_chunked_segment, create_rocks_segment, detect_kind, open_chunked_segment,
    open_mmap_segment, open_rocks_segment, short_type_name, SegmentKind,
};
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::migrate::{
    build_mmap, migrate, upgrade_segment_dir, verify, MigrateOptions, Progress, UpgradeOptions,
    UpgradeOutcome, VerifyOptions,
};
use vecseg::segment::SegmentState;
use vecseg::{
    Distance, Payload, PayloadStorage, PointId, Record, Segment, SegmentEntry, StorageError,
};
use vecseg_mmap::MmapVectorOptions;
use vecseg_rocksdb::RocksOptions;

type Dump = BTreeMap<PointId, Record<f32>>;

fn dump<S: SegmentEntry<f32> + ?Sized>(s: &S) -> Dump {
    s.scroll(None, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|id| (id, s.get(id).unwrap().unwrap()))
        .collect()
}

/// Fill an appendable segment with a mix that exercises every slot state:
/// UUID and numeric ids, empty payloads, deletions, relinked points (which
/// leave dropped offsets behind) and cleared payloads.
fn fill<S: vecseg::AppendableSegmentEntry<f32> + ?Sized>(s: &mut S, n: u64, dim: usize) {
    let mut version = 0;
    for i in 0..n {
        version += 1;
        let id = if i % 9 == 4 {
            PointId::Uuid(uuid::Uuid::from_u128(0xABCD_0000 + i as u128))
        } else {
            PointId::Num(i * 7 + 3)
        };
        let v: Vec<f32> = (0..dim)
            .map(|k| ((i as usize * 31 + k) % 17) as f32 - 8.5)
            .collect();
        let payload: Payload = if i % 5 == 0 {
            Payload::new()
        } else {
            serde_json::json!({"tenant": format!("t{}", i % 4), "i": i, "tags": ["x", i % 3]})
                .as_object()
                .unwrap()
                .clone()
        };
        s.upsert(version, id, &v, &payload).unwrap();
    }
    for i in (0..n).step_by(11) {
        version += 1;
        s.delete(version, PointId::Num(i * 7 + 3)).unwrap();
    }
    for i in (1..n).step_by(13) {
        version += 1;
        // Re-upsert: same offset, new version.
        let v = vec![1.5f32; dim];
        s.upsert(version, PointId::Num(i * 7 + 3), &v, &Payload::new())
            .unwrap();
    }
    for i in (0..n).step_by(11).take(5) {
        version += 1;
        // Re-insert a deleted id: a new offset, the old one stays dropped.
        s.upsert(
            version,
            PointId::Num(i * 7 + 3),
            &vec![2.0f32; dim],
            &Payload::new(),
        )
        .unwrap();
    }
    for i in (2..n).step_by(17) {
        version += 1;
        let _ = s.clear_payload(version, PointId::Num(i * 7 + 3));
    }
}

fn rocks_source(dir: &Path, n: u64, dim: usize) -> Dump {
    let mut s =
        create_rocks_segment::<f32>(dir, dim, Distance::Euclid, &RocksOptions::default()).unwrap();
    fill(&mut s, n, dim);
    s.flush().unwrap();
    dump(&s)
}

#[test]
fn short_type_names_match_segment_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = create_rocks_segment::<f32>(dir.path(), 2, Distance::Dot, &RocksOptions::default())
        .unwrap();
    drop(s);
    let state = SegmentState::read(dir.path()).unwrap();
    assert_eq!(
        state.backends.vectors,
        short_type_name::<vecseg_rocksdb::RocksVectorStorage<f32>>()
    );
    assert_eq!(detect_kind(&state), Some((SegmentKind::Rocks, "f32")));
}

#[test]
fn memory_to_memory_copies_every_slot_and_verifies() {
    let mut source = Segment::new(
        MemoryVectorStorage::new(6, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    fill(&mut source, 300, 6);
    let mut target = Segment::new(
        MemoryVectorStorage::new(6, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    let mut last = None;
    let report = migrate(
        &source,
        &mut target,
        &MigrateOptions {
            batch_slots: 37,
            verify: true,
        },
        &mut |p: &Progress| last = Some(*p),
    )
    .unwrap();
    assert!(report.verified);
    assert_eq!(report.points as usize, source.point_count());
    assert_eq!(report.slots as usize, vecseg::migrate::slot_count(&source));
    assert_eq!(dump(&target), dump(&source));
    assert_eq!(target.version(), source.version());
    assert_eq!(last.unwrap().phase, vecseg::migrate::Phase::Verify);
    // A non-empty target is refused.
    assert!(matches!(
        migrate(
            &source,
            &mut target,
            &MigrateOptions::default(),
            &mut |_| {}
        ),
        Err(StorageError::InvalidArgument(_))
    ));
}

#[test]
fn rocks_to_chunked_and_mmap_then_tamper_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    let want = rocks_source(&src_dir, 700, 8);
    let source = open_rocks_segment::<f32>(&src_dir, &RocksOptions::default()).unwrap();
    assert_eq!(dump(&source), want);

    // Appendable target.
    let chunked_dir = dir.path().join("chunked");
    let mut target = create_chunked_segment::<f32>(&chunked_dir, 8, Distance::Euclid).unwrap();
    let report = migrate(
        &source,
        &mut target,
        &MigrateOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(report.vector_bytes > 0 && report.payload_bytes > 0);
    drop(target);
    let target = open_chunked_segment::<f32>(&chunked_dir).unwrap();
    assert_eq!(dump(&target), want);
    verify(&source, &target, &VerifyOptions::default(), &mut |_| {}).unwrap();

    // Buildable target.
    let mmap_dir = dir.path().join("mmap");
    let built = build_mmap(
        &source,
        &mmap_dir,
        &MmapVectorOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let v = verify(
        &source,
        &built,
        &VerifyOptions {
            expected_checksum: Some(report.checksum),
            batch_slots: 100,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(v.checksum, report.checksum);
    drop(built);
    let reopened = open_mmap_segment::<f32>(&mmap_dir, &MmapVectorOptions::default()).unwrap();
    assert_eq!(dump(&reopened), want);
    assert_eq!(reopened.version(), source.version());

    // Tamper with the chunked copy behind the segment's back: one payload cleared.
    let some = *want.iter().find(|(_, r)| !r.payload.is_empty()).unwrap().0;
    let offset = open_chunked_segment::<f32>(&chunked_dir)
        .unwrap()
        .offset_of(some)
        .unwrap()
        .unwrap();
    {
        let (_, mut payloads, _) =
            vecseg::kinds::open_chunked_storages::<f32>(&chunked_dir).unwrap();
        assert!(!payloads.clear(offset).unwrap().is_empty());
        payloads.flush().unwrap();
    }
    let target = open_chunked_segment::<f32>(&chunked_dir).unwrap();
    let err = verify(&source, &target, &VerifyOptions::default(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, StorageError::VerificationFailed(m) if m.contains("payload")),
        "{err}"
    );
}

fn upgrade(dir: &Path, target: SegmentKind, verify_only: bool) -> vecseg::migrate::UpgradeReport {
    upgrade_segment_dir(
        dir,
        &UpgradeOptions {
            target,
            batch_slots: 64,
            verify_only,
            ..UpgradeOptions::default()
        },
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn in_place_upgrade_to_mmap_and_chunked() {
    for kind in [SegmentKind::Mmap, SegmentKind::Chunked] {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path();
        let want = rocks_source(seg, 500, 5);
        let version = SegmentState::read(seg).unwrap().version;

        // Verify-only leaves the segment a RocksDB segment.
        let r = upgrade(seg, kind, true);
        assert_eq!(r.outcome, UpgradeOutcome::VerifiedOnly);
        assert!(r.verify.is_some());
        let state = SegmentState::read(seg).unwrap();
        assert_eq!(detect_kind(&state).unwrap().0, SegmentKind::Rocks);
        assert_eq!(
            dump(&open_rocks_segment::<f32>(seg, &RocksOptions::default()).unwrap()),
            want
        );

        // The real run switches without copying again.
        let r = upgrade(seg, kind, false);
        assert_eq!(r.outcome, UpgradeOutcome::Upgraded);
        assert_eq!(r.copy.points as usize, want.len());
        assert!(!seg.join("rocksdb").exists());
        assert!(!seg.join("migration").exists());
        let state = SegmentState::read(seg).unwrap();
        assert_eq!(detect_kind(&state).unwrap().0, kind);
        assert_eq!(state.version, version);
        let got = match kind {
            SegmentKind::Mmap => {
                dump(&open_mmap_segment::<f32>(seg, &MmapVectorOptions::default()).unwrap())
            }
            _ => dump(&open_chunked_segment::<f32>(seg).unwrap()),
        };
        assert_eq!(got, want);

        // Re-running is a no-op.
        assert_eq!(
            upgrade(seg, kind, false).outcome,
            UpgradeOutcome::AlreadyUpgraded
        );
    }
}

#[test]
fn upgrade_restarts_when_the_source_changed() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path();
    rocks_source(seg, 200, 4);
    upgrade(seg, SegmentKind::Mmap, true);
    // Change the source after a staged copy exists.
    let mut s = open_rocks_segment::<f32>(seg, &RocksOptions::default()).unwrap();
    s.upsert(10_000, PointId::Num(999_999), &[1.0; 4], &Payload::new())
        .unwrap();
    s.flush().unwrap();
    let want = dump(&s);
    drop(s);
    let r = upgrade(seg, SegmentKind::Mmap, false);
    assert_eq!(r.outcome, UpgradeOutcome::Upgraded);
    assert_eq!(r.copy.resumed_from, 0);
    let got = dump(&open_mmap_segment::<f32>(seg, &MmapVectorOptions::default()).unwrap());
    assert_eq!(got, want);
}

#[test]
fn upgrade_rejects_bad_directories() {
    let dir = tempfile::tempdir().unwrap();
    let opts = UpgradeOptions::default();
    assert!(upgrade_segment_dir(dir.path(), &opts, &mut |_| {}).is_err());
    std::fs::write(dir.path().join("segment.json"), b"{oops").unwrap();
    assert!(matches!(
        upgrade_segment_dir(dir.path(), &opts, &mut |_| {}),
        Err(StorageError::Corrupted { .. })
    ));
    // A memory-typed state is not something the upgrade handles.
    let seg = dir.path().join("other");
    std::fs::create_dir_all(&seg).unwrap();
    let s = Segment::create(
        &seg,
        MemoryVectorStorage::<f32>::new(2, Distance::Dot).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    )
    .unwrap();
    drop(s);
    assert!(matches!(
        upgrade_segment_dir(&seg, &opts, &mut |_| {}),
        Err(StorageError::Unsupported(_))
    ));
    // Rocks state but the database is gone: an error, nothing created.
    let seg = dir.path().join("rocks");
    rocks_source(&seg, 10, 2);
    std::fs::remove_dir_all(seg.join("rocksdb")).unwrap();
    assert!(upgrade_segment_dir(&seg, &opts, &mut |_| {}).is_err());
    assert!(!seg.join("vectors").exists());
}

/// The RocksDB bulk reader returns exactly what the generic one does, for
/// aligned, unaligned and out-of-range batches.
#[test]
fn rocks_bulk_reader_matches_generic_reader() {
    let dir = tempfile::tempdir().unwrap();
    rocks_source(dir.path(), 400, 3);
    let s = open_rocks_segment::<f32>(dir.path(), &RocksOptions::default()).unwrap();
    let total = vecseg::migrate::slot_count(&s);
    for range in [
        0..total,
        0..1,
        7..93,
        390..total,
        total..total + 5,
        100..100,
    ] {
        assert_eq!(
            vecseg::migrate::read_rocks_batch(&s, range.clone()).unwrap(),
            vecseg::migrate::read_batch(&s, range.clone()).unwrap(),
            "range {range:?}"
        );
    }
}

/// Stage a verified copy (`--verify-only`), then put the marker back to
/// `placed` so the next run verifies again, against the recorded hashes.
fn stage_for_reverification(seg: &Path, kind: SegmentKind) -> serde_json::Value {
    upgrade(seg, kind, true);
    let marker_path = seg
        .join("migration")
        .join(vecseg::migrate::upgrade::MARKER_FILE);
    let mut marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker_path).unwrap()).unwrap();
    assert_eq!(marker["step"], "verified");
    marker["step"] = "placed".into();
    std::fs::write(&marker_path, serde_json::to_vec(&marker).unwrap()).unwrap();
    marker
}

fn hash_file(seg: &Path) -> std::path::PathBuf {
    seg.join("migration")
        .join(vecseg::migrate::upgrade::HASH_FILE)
}

/// The upgrade fails with `VerificationFailed` and leaves the RocksDB
/// segment intact and nothing staged.
fn assert_rejected(seg: &Path, kind: SegmentKind, want: &Dump, what: &str, needle: &str) {
    let err = upgrade_segment_dir(
        seg,
        &UpgradeOptions {
            target: kind,
            batch_slots: 64,
            ..UpgradeOptions::default()
        },
        &mut |_| {},
    )
    .expect_err(what);
    assert!(
        matches!(err, StorageError::VerificationFailed(_)) && err.to_string().contains(needle),
        "{what}: {err}"
    );
    let state = SegmentState::read(seg).unwrap();
    assert_eq!(detect_kind(&state).unwrap().0, SegmentKind::Rocks, "{what}");
    assert!(!seg.join("migration").exists(), "{what}");
    assert!(!seg.join("vectors").exists(), "{what}");
    assert_eq!(
        &dump(&open_rocks_segment::<f32>(seg, &RocksOptions::default()).unwrap()),
        want,
        "{what}"
    );
}

#[test]
fn corrupted_slot_hash_file_fails_verification() {
    for kind in [SegmentKind::Mmap, SegmentKind::Chunked] {
        // One flipped bit: the hashes no longer fold to the recorded checksum.
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path();
        let want = rocks_source(seg, 300, 4);
        stage_for_reverification(seg, kind);
        let mut bytes = std::fs::read(hash_file(seg)).unwrap();
        bytes[8 * 123 + 3] ^= 0x10;
        std::fs::write(hash_file(seg), &bytes).unwrap();
        assert_rejected(seg, kind, &want, "flipped hash bit", "damaged hash file");

        // A damaged hash with the recorded checksum forged to match: the
        // slot itself no longer matches.
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path();
        let want = rocks_source(seg, 300, 4);
        let mut marker = stage_for_reverification(seg, kind);
        let mut bytes = std::fs::read(hash_file(seg)).unwrap();
        bytes[8 * 77] ^= 1;
        std::fs::write(hash_file(seg), &bytes).unwrap();
        let mut c = vecseg::migrate::Checksum::default();
        for h in bytes.chunks_exact(8) {
            c.mix(u64::from_le_bytes(h.try_into().unwrap()));
        }
        marker["checksum"] = c.value().into();
        std::fs::write(
            seg.join("migration")
                .join(vecseg::migrate::upgrade::MARKER_FILE),
            serde_json::to_vec(&marker).unwrap(),
        )
        .unwrap();
        assert_rejected(seg, kind, &want, "forged hash and checksum", "offset 77 ");

        // Truncated or missing hash files.
        for cut in [Some(8 * 299), Some(8 * 299 + 5), None] {
            let dir = tempfile::tempdir().unwrap();
            let seg = dir.path();
            let want = rocks_source(seg, 300, 4);
            stage_for_reverification(seg, kind);
            match cut {
                Some(len) => {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(hash_file(seg))
                        .unwrap();
                    f.set_len(len).unwrap();
                }
                None => std::fs::remove_file(hash_file(seg)).unwrap(),
            }
            let err = upgrade_segment_dir(
                seg,
                &UpgradeOptions {
                    target: kind,
                    ..UpgradeOptions::default()
                },
                &mut |_| {},
            )
            .expect_err("a short hash file must not pass");
            let state = SegmentState::read(seg).unwrap();
            assert_eq!(detect_kind(&state).unwrap().0, SegmentKind::Rocks, "{err}");
            assert_eq!(
                dump(&open_rocks_segment::<f32>(seg, &RocksOptions::default()).unwrap()),
                want
            );
        }
    }
}

#[test]
fn damaged_target_fails_hash_verification() {
    // A placed chunked target whose payload was changed after the copy.
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path();
    let want = rocks_source(seg, 300, 4);
    stage_for_reverification(seg, SegmentKind::Chunked);
    let offset = {
        use vecseg::{AppendablePayloadStorage, PayloadStorageRead};
        let (_, mut p, _) = vecseg::kinds::open_chunked_storages::<f32>(seg).unwrap();
        let offset = (40..).find(|&o| !p.get(o).unwrap().is_empty()).unwrap();
        let mut payload = Payload::new();
        payload.insert("tampered".into(), true.into());
        p.overwrite(offset, &payload).unwrap();
        p.flush().unwrap();
        offset
    };
    assert_rejected(
        seg,
        SegmentKind::Chunked,
        &want,
        "tampered target payload",
        &format!("offset {offset} "),
    );
}

#[test]
fn resume_with_a_short_hash_file_starts_over() {
    for damage in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path();
        let want = rocks_source(seg, 400, 4);
        // Interrupt the copy after a few batches (the panic stands in for a kill).
        let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            upgrade_segment_dir(
                seg,
                &UpgradeOptions {
                    batch_slots: 64,
                    ..UpgradeOptions::default()
                },
                &mut |p| {
                    if p.phase == vecseg::migrate::Phase::Copy && p.done >= 192 {
                        panic!("interrupted");
                    }
                },
            )
        }));
        assert!(interrupted.is_err());
        if damage {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(hash_file(seg))
                .unwrap();
            f.set_len(8 * 100).unwrap();
        }
        let r = upgrade(seg, SegmentKind::Mmap, false);
        assert_eq!(r.outcome, UpgradeOutcome::Upgraded);
        assert_eq!(r.copy.resumed_from, if damage { 0 } else { 192 });
        let got = dump(&open_mmap_segment::<f32>(seg, &MmapVectorOptions::default()).unwrap());
        assert_eq!(got, want);
    }
}

#[test]
fn paranoid_upgrade_rereads_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path();
    let want = rocks_source(seg, 300, 4);
    let r = upgrade_segment_dir(
        seg,
        &UpgradeOptions {
            batch_slots: 64,
            paranoid: true,
            ..UpgradeOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.outcome, UpgradeOutcome::Upgraded);
    assert!(r.until_commit <= r.copy.elapsed);
    let got = dump(&open_mmap_segment::<f32>(seg, &MmapVectorOptions::default()).unwrap());
    assert_eq!(got, want);
}
