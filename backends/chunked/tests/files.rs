//! Reopen, crash-consistency and bad-file tests for the chunked storages.
//!
//! Every damaged file must give an error naming that file (never a panic):
//! truncated, wrong magic, wrong version, garbage. The id mapping log's torn
//! tail is cut; corruption in its middle is an error.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};
use vecseg_traits::testing::{temp_dir, Rng};
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, IdMapper,
    IdMapperRead, Payload, PayloadStorage, PayloadStorageRead, PointId, PointOffset, Random,
    StorageError, VectorStorage, VectorStorageRead,
};

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap()
}

/// Assert `err` is a file error naming `file`.
fn assert_names(err: StorageError, file: &str) {
    let path: PathBuf = match &err {
        StorageError::Corrupted { path, .. }
        | StorageError::UnsupportedVersion { path, .. }
        | StorageError::Io { path, .. } => path.clone(),
        other => panic!("expected a file error naming {file}, got {other:?}"),
    };
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(file),
        "error {err} should name {file}"
    );
    assert!(
        err.to_string().contains(file),
        "message names the file: {err}"
    );
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Make a copy of `src` in a fresh directory, damage `file` with `damage`,
/// and return the error of `open`.
fn damaged<T, E: std::fmt::Debug>(
    src: &Path,
    file: &str,
    damage: impl FnOnce(&Path),
    open: impl FnOnce(&Path) -> Result<T, E>,
) -> E {
    let dir = temp_dir();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    damage(&dir.path().join(file));
    match open(dir.path()) {
        Ok(_) => panic!("opening with a damaged {file} must fail"),
        Err(e) => e,
    }
}

/// The standard damages every binary file must be rejected for.
/// A named way to damage a file.
type Damage = (&'static str, Box<dyn Fn(&Path)>);

fn standard_damages() -> Vec<Damage> {
    vec![
        ("truncated", Box::new(|p: &Path| truncate(p, 10))),
        ("empty", Box::new(|p: &Path| truncate(p, 0))),
        ("wrong magic", Box::new(|p: &Path| patch(p, 0, b"NOTMAGIC"))),
        (
            "wrong version",
            Box::new(|p: &Path| patch(p, 8, &99u32.to_le_bytes())),
        ),
        (
            "wrong header length",
            Box::new(|p: &Path| patch(p, 12, &7u32.to_le_bytes())),
        ),
        (
            "garbage",
            Box::new(|p: &Path| fs::write(p, vec![0xA5u8; 4096]).unwrap()),
        ),
    ]
}

fn vector_store(dir: &Path) -> ChunkedVectorStorage<f32> {
    let mut s = ChunkedVectorStorage::<f32>::create(
        dir,
        4,
        Distance::Dot,
        ChunkedVectorOptions::default().with_chunk_size(256),
    )
    .unwrap();
    for i in 0..40u32 {
        s.insert(i, &[i as f32, 1.0, 2.0, 3.0]).unwrap();
    }
    s.delete(7).unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn vectors_reopen_keeps_vectors_deletions_and_config() {
    let dir = temp_dir();
    let s = vector_store(dir.path());
    assert_eq!(s.chunk_vectors(), 16);
    assert_eq!(s.chunk_count(), 3);
    drop(s);
    let mut s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!((s.total_count(), s.deleted_count(), s.dim()), (40, 1, 4));
    assert_eq!(s.distance(), Distance::Dot);
    for i in 0..40u32 {
        assert_eq!(s.get::<Random>(i).unwrap(), &[i as f32, 1.0, 2.0, 3.0]);
        assert_eq!(s.is_deleted(i), i == 7);
    }
    // Whole-chunk views agree with get.
    assert_eq!(s.chunk_slice(2).unwrap().len(), 8 * 4);
    assert_eq!(s.chunk_slice(1).unwrap()[..4], [16.0, 1.0, 2.0, 3.0]);
    // Overwrite undeletes; reopen keeps that too.
    s.insert(7, &[70.0; 4]).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.get::<Random>(7).unwrap(), &[70.0; 4]);
    assert_eq!(s.deleted_count(), 0);
    // Wrong element type.
    assert_names(
        ChunkedVectorStorage::<u8>::open(dir.path()).unwrap_err(),
        "config.json",
    );
    // InRam override.
    let s = ChunkedVectorStorage::<f32>::open_with_populate(dir.path(), true).unwrap();
    assert!(s.is_populated());
    // Creating over an existing storage is refused.
    assert!(matches!(
        ChunkedVectorStorage::<f32>::create(
            dir.path(),
            4,
            Distance::Dot,
            ChunkedVectorOptions::default()
        ),
        Err(StorageError::InvalidArgument(_))
    ));
}

#[test]
fn vectors_crash_keeps_flushed_data_only() {
    let dir = temp_dir();
    let mut s = vector_store(dir.path());
    // Unflushed: 30 more appends (crossing chunks), a delete, an undelete.
    for i in 40..70u32 {
        s.insert(i, &[-(i as f32); 4]).unwrap();
    }
    s.delete(3).unwrap();
    drop(s); // no flush: like a crash
    let mut s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.total_count(), 40, "only the flushed count is visible");
    assert!(s.get::<Random>(40).is_err());
    assert!(!s.is_deleted(3));
    assert!(s.is_deleted(7));
    // Appending again over the lost slots works and persists.
    for i in 40..50u32 {
        s.insert(i, &[i as f32; 4]).unwrap();
    }
    s.flush().unwrap();
    drop(s);
    let s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.total_count(), 50);
    assert_eq!(s.get::<Random>(45).unwrap(), &[45.0; 4]);
    assert_eq!(s.deleted_count(), 1);
}

#[test]
fn vectors_stale_deleted_bits_after_crash_are_not_resurrected() {
    let dir = temp_dir();
    let mut s = vector_store(dir.path());
    s.insert(40, &[1.0; 4]).unwrap();
    s.flush().unwrap();
    s.delete(40).unwrap();
    s.flush().unwrap();
    // Simulate: status.dat rolled back to 40 vectors (as if the crash hit
    // after the flags were written but before the count), with a valid CRC.
    let status = dir.path().join("status.dat");
    patch(&status, 16, &40u64.to_le_bytes());
    let head = fs::read(&status).unwrap();
    patch(&status, 24, &crc32c::crc32c(&head[..24]).to_le_bytes());
    drop(s);
    let mut s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.total_count(), 40);
    s.insert(40, &[2.0; 4]).unwrap();
    assert!(!s.is_deleted(40));
    s.flush().unwrap();
    drop(s);
    let s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert!(
        !s.is_deleted(40),
        "new vector must not inherit the stale flag"
    );
}

#[test]
fn vectors_bad_files_name_the_file() {
    let src = temp_dir();
    drop(vector_store(src.path()));
    let open = |d: &Path| ChunkedVectorStorage::<f32>::open(d);
    for file in ["status.dat", "chunk_0.dat", "chunk_1.dat", "deleted.dat"] {
        for (what, damage) in standard_damages() {
            let e = damaged(src.path(), file, damage, open);
            println!("{file} {what}: {e}");
            assert_names(e, file);
        }
    }
    // chunk header fields and length.
    let e = damaged(
        src.path(),
        "chunk_1.dat",
        |p| patch(p, 20, &9u32.to_le_bytes()),
        open,
    );
    assert_names(e, "chunk_1.dat"); // wrong dimension
    let e = damaged(src.path(), "chunk_0.dat", |p| truncate(p, 100), open);
    assert_names(e, "chunk_0.dat");
    let e = damaged(
        src.path(),
        "chunk_2.dat",
        |p| fs::remove_file(p).unwrap(),
        open,
    );
    assert_names(e, "chunk_2.dat"); // missing chunk
                                    // status count beyond the chunks.
    let e = damaged(
        src.path(),
        "status.dat",
        |p| patch(p, 16, &1000u64.to_le_bytes()),
        open,
    );
    assert!(matches!(e, StorageError::Corrupted { .. }), "{e}");
    // config.json: garbage, future version, inconsistent geometry.
    for (what, body) in [
        ("garbage", b"{not json".to_vec()),
        ("version", br#"{"format_version":99}"#.to_vec()),
    ] {
        let e = damaged(
            src.path(),
            "config.json",
            |p| fs::write(p, &body).unwrap(),
            open,
        );
        println!("config {what}: {e}");
        assert_names(e, "config.json");
    }
    let e = damaged(
        src.path(),
        "config.json",
        |p| {
            let s = fs::read_to_string(p).unwrap();
            fs::write(
                p,
                s.replace("\"chunk_vectors\": 16", "\"chunk_vectors\": 15"),
            )
            .unwrap();
        },
        open,
    );
    assert_names(e, "config.json");
    let e = damaged(
        src.path(),
        "config.json",
        |p| fs::remove_file(p).unwrap(),
        open,
    );
    assert_names(e, "config.json");
}

fn payload_store(dir: &Path) -> ChunkedPayloadStorage {
    let mut s =
        ChunkedPayloadStorage::create(dir, ChunkedPayloadOptions::small_for_tests()).unwrap();
    for o in 0..200u32 {
        s.overwrite(o, &obj(json!({"o": o, "pad": "y".repeat(o as usize * 3)})))
            .unwrap();
    }
    s.flush().unwrap();
    s
}

#[test]
fn payloads_reopen_and_crash_keep_flushed_values() {
    let dir = temp_dir();
    let mut s = payload_store(dir.path());
    assert!(s.page_count() > 1);
    // Unflushed changes: overwrite, clear, new offset.
    s.overwrite(5, &obj(json!({"new": true}))).unwrap();
    s.clear(6).unwrap();
    s.overwrite(500, &obj(json!({"late": 1}))).unwrap();
    assert_eq!(s.get(5).unwrap(), obj(json!({"new": true})));
    drop(s); // crash
    let s = ChunkedPayloadStorage::open(dir.path()).unwrap();
    assert_eq!(s.count(), 200);
    for o in 0..200u32 {
        assert_eq!(
            s.get(o).unwrap(),
            obj(json!({"o": o, "pad": "y".repeat(o as usize * 3)}))
        );
    }
    assert_eq!(s.get(500).unwrap(), Payload::new());
    let raw = s.get_raw(10).unwrap().unwrap();
    assert_eq!(
        ChunkedPayloadStorage::decode(raw).unwrap(),
        s.get(10).unwrap()
    );
    assert_eq!(s.get_raw(1000).unwrap(), None);
}

#[test]
fn payloads_bad_files_name_the_file() {
    let src = temp_dir();
    drop(payload_store(src.path()));
    let open = |d: &Path| ChunkedPayloadStorage::open(d);
    for file in ["page_0.dat", "page_1.dat", "tracker.dat", "bitmask.dat"] {
        for (what, damage) in standard_damages() {
            if file == "bitmask.dat" && what == "empty" {
                continue; // checked below: an empty bitmask has no header either
            }
            let e = damaged(src.path(), file, damage, open);
            println!("{file} {what}: {e}");
            assert_names(e, file);
        }
    }
    let e = damaged(src.path(), "bitmask.dat", |p| truncate(p, 0), open);
    assert_names(e, "bitmask.dat");
    let e = damaged(src.path(), "bitmask.dat", |p| truncate(p, 21), open);
    assert_names(e, "bitmask.dat");
    let e = damaged(src.path(), "tracker.dat", |p| truncate(p, 40), open);
    assert_names(e, "tracker.dat");
    let e = damaged(
        src.path(),
        "page_0.dat",
        |p| patch(p, 20, &64u32.to_le_bytes()),
        open,
    );
    assert_names(e, "page_0.dat"); // wrong block size
    for body in [b"[]".to_vec(), br#"{"format_version":2}"#.to_vec()] {
        let e = damaged(
            src.path(),
            "config.json",
            |p| fs::write(p, &body).unwrap(),
            open,
        );
        assert_names(e, "config.json");
    }
}

#[test]
fn payload_tracker_pointing_outside_pages_is_an_error_not_a_panic() {
    let dir = temp_dir();
    drop(payload_store(dir.path()));
    let tracker = dir.path().join("tracker.dat");
    // Entry 3: page 999.
    patch(&tracker, 32 + 3 * 16, &999u32.to_le_bytes());
    // Entry 4: block far past the page end.
    patch(&tracker, 32 + 4 * 16 + 4, &100_000u32.to_le_bytes());
    // Entry 5: unknown flags.
    patch(&tracker, 32 + 5 * 16 + 12, &0xF1u32.to_le_bytes());
    let s = ChunkedPayloadStorage::open(dir.path()).unwrap();
    for o in [3, 4, 5] {
        assert_names(s.get(o).unwrap_err(), "tracker.dat");
    }
    assert!(s.for_each(&mut |_, _| Ok(true)).is_err());
    assert_eq!(s.get(6).unwrap()["o"], json!(6));
}

fn id_store(dir: &Path) -> ChunkedIdMapper {
    let mut m = ChunkedIdMapper::create(dir).unwrap();
    for o in 0..50u32 {
        let id = if o % 2 == 0 {
            PointId::Num(o as u64 * 10)
        } else {
            PointId::Uuid(uuid::Uuid::from_u128(o as u128))
        };
        m.set_link(id, o, 100 + o as u64).unwrap();
    }
    m.drop_id(PointId::Num(20)).unwrap();
    m.flush_mappings().unwrap();
    m.flush_versions().unwrap();
    m
}

fn check_ids(m: &ChunkedIdMapper) {
    assert_eq!(m.total_count(), 50);
    assert_eq!(m.available_count(), 49);
    assert_eq!(m.internal(PointId::Num(20)).unwrap(), None);
    assert_eq!(m.internal(PointId::Num(40)).unwrap(), Some(4));
    assert_eq!(
        m.external(3).unwrap(),
        Some(PointId::Uuid(uuid::Uuid::from_u128(3)))
    );
    assert_eq!(m.version(49).unwrap(), Some(149));
}

#[test]
fn id_map_reopen_and_crash_keep_flushed_mappings() {
    let dir = temp_dir();
    let mut m = id_store(dir.path());
    check_ids(&m);
    m.set_link(PointId::Num(7777), 50, 1).unwrap();
    m.drop_id(PointId::Num(40)).unwrap();
    assert!(m.pending_bytes() > 0);
    drop(m); // crash: unflushed records are lost
    let m = ChunkedIdMapper::open(dir.path()).unwrap();
    check_ids(&m);
    assert_eq!(m.internal(PointId::Num(7777)).unwrap(), None);
    assert!(matches!(
        ChunkedIdMapper::create(dir.path()),
        Err(StorageError::InvalidArgument(_))
    ));
}

#[test]
fn id_map_flushed_records_missing_is_an_error() {
    let dir = temp_dir();
    drop(id_store(dir.path()));
    let log = dir.path().join("mappings.log");
    let len = fs::metadata(&log).unwrap().len();
    // A cut of the flushed records, even by one byte, is not a torn tail.
    for cut in [1, 5, len / 2, len - 32] {
        let open = |d: &Path| ChunkedIdMapper::open(d);
        let e = damaged(dir.path(), "mappings.log", |p| truncate(p, len - cut), open);
        assert!(e.to_string().contains("flushed records missing"), "{e}");
        assert_names(e, "mappings.log");
    }
    // versions.dat cut below the mapped offsets.
    let open = |d: &Path| ChunkedIdMapper::open(d);
    let e = damaged(
        dir.path(),
        "versions.dat",
        |p| truncate(p, 32 + 8 * 10),
        open,
    );
    assert_names(e, "versions.dat");
}

#[test]
fn id_map_torn_tail_is_cut() {
    let dir = temp_dir();
    drop(id_store(dir.path()));
    let log = dir.path().join("mappings.log");
    let good = fs::read(&log).unwrap();
    let good_len = good.len() as u64;
    let tails: Vec<Vec<u8>> = vec![
        vec![1, 2, 3, 4, 5, 6, 7],                         // partial link record
        vec![0; 4096],                                     // zero-filled tail
        vec![2],                                           // lone tag
        [vec![1], vec![9; 12], vec![0, 0, 0, 0]].concat(), // full size, bad CRC
    ];
    for tail in tails {
        OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&tail)
            .unwrap();
        let mut m = ChunkedIdMapper::open(dir.path()).unwrap();
        check_ids(&m);
        assert_eq!(fs::metadata(&log).unwrap().len(), good_len, "tail cut");
        // Appending after the cut works.
        m.set_link(PointId::Num(123_456), 50, 1).unwrap();
        m.flush_mappings().unwrap();
        drop(m);
        let m = ChunkedIdMapper::open(dir.path()).unwrap();
        assert_eq!(m.internal(PointId::Num(123_456)).unwrap(), Some(50));
        drop(m);
        fs::write(&log, &good).unwrap();
    }
}

#[test]
fn id_map_corrupted_middle_and_bad_files_name_the_file() {
    let src = temp_dir();
    drop(id_store(src.path()));
    let open = |d: &Path| ChunkedIdMapper::open(d);
    // A flipped byte inside the first record, with many records after it.
    let e = damaged(src.path(), "mappings.log", |p| patch(p, 36, &[0xFF]), open);
    assert!(matches!(e, StorageError::Corrupted { .. }));
    assert_names(e, "mappings.log");
    // An unknown tag in the middle.
    let e = damaged(src.path(), "mappings.log", |p| patch(p, 32, &[0x77]), open);
    assert_names(e, "mappings.log");
    // The committed length in the header.
    let e = damaged(src.path(), "mappings.log", |p| patch(p, 17, &[0x01]), open);
    assert_names(e, "mappings.log");
    for file in ["mappings.log", "versions.dat"] {
        for (what, damage) in standard_damages() {
            if file == "mappings.log" && what == "garbage" {
                // 0xA5 garbage has the wrong magic: still named.
            }
            let e = damaged(src.path(), file, damage, open);
            println!("{file} {what}: {e}");
            assert_names(e, file);
        }
    }
    let e = damaged(src.path(), "versions.dat", |p| truncate(p, 32 + 12), open);
    assert_names(e, "versions.dat");
}

#[test]
fn id_map_log_is_compacted_when_mostly_dead() {
    let dir = temp_dir();
    let mut m = ChunkedIdMapper::create(dir.path()).unwrap();
    let mut rng = Rng::new(9);
    // 10k links of 100 ids: most records are dead.
    for o in 0..10_000u32 {
        m.set_link(PointId::Num(rng.below(100) as u64), o, o as u64)
            .unwrap();
    }
    m.flush_mappings().unwrap();
    m.flush_versions().unwrap();
    let before: Vec<(PointId, PointOffset)> = m.iter_from(None).map(Result::unwrap).collect();
    drop(m);
    let log = dir.path().join("mappings.log");
    let big = fs::metadata(&log).unwrap().len();
    let m = ChunkedIdMapper::open(dir.path()).unwrap();
    let small = fs::metadata(&log).unwrap().len();
    assert!(small < big / 10, "{small} vs {big}");
    assert_eq!(
        m.iter_from(None).map(Result::unwrap).collect::<Vec<_>>(),
        before
    );
    assert_eq!(m.total_count(), 10_000);
    drop(m);
    let m = ChunkedIdMapper::open(dir.path()).unwrap();
    assert_eq!(
        m.iter_from(None).map(Result::unwrap).collect::<Vec<_>>(),
        before
    );
    assert_eq!(m.total_count(), 10_000);
    for (_, o) in before {
        assert_eq!(m.version(o).unwrap(), Some(o as u64));
    }
}

#[test]
fn vectors_new_deleted_flags_wait_for_flush_deleted() {
    let dir = temp_dir();
    let mut s = vector_store(dir.path());
    s.delete(3).unwrap(); // an offset that was durable: its flag must wait
    s.insert(40, &[1.0; 4]).unwrap();
    s.insert(41, &[1.0; 4]).unwrap();
    s.delete(41).unwrap(); // appended and deleted: written with the count
    s.insert(7, &[7.0; 4]).unwrap(); // undelete: safe to write early
    s.flush_data().unwrap();
    drop(s); // crash before the mappings and flush_deleted
    let mut s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.total_count(), 42);
    assert!(
        !s.is_deleted(3),
        "a set flag of a durable offset reached disk early"
    );
    assert!(s.is_deleted(41));
    assert!(!s.is_deleted(7));
    s.delete(3).unwrap();
    s.flush_data().unwrap();
    s.flush_deleted().unwrap();
    drop(s);
    let s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert!(s.is_deleted(3));
}

/// A mapper written by the previous format (log v1 without a committed
/// length, versions v1 without check bytes) opens with every mapping and
/// version, and is converted.
#[test]
fn id_map_format_1_files_are_converted() {
    let dir = temp_dir();
    let mut log = Vec::new();
    log.extend_from_slice(b"VSIDMLOG");
    log.extend_from_slice(&1u32.to_le_bytes());
    log.extend_from_slice(&16u32.to_le_bytes());
    for (id, o) in [(10u64, 0u32), (20, 1), (30, 2)] {
        let start = log.len();
        log.push(1);
        log.extend_from_slice(&id.to_le_bytes());
        log.extend_from_slice(&o.to_le_bytes());
        let crc = crc32c::crc32c(&log[start..]);
        log.extend_from_slice(&crc.to_le_bytes());
    }
    let start = log.len();
    log.push(3);
    log.extend_from_slice(&20u64.to_le_bytes());
    let crc = crc32c::crc32c(&log[start..]);
    log.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.path().join("mappings.log"), &log).unwrap();
    let mut versions = Vec::new();
    versions.extend_from_slice(b"VSIDVERS");
    versions.extend_from_slice(&1u32.to_le_bytes());
    versions.extend_from_slice(&32u32.to_le_bytes());
    versions.extend_from_slice(&[0; 16]);
    for v in [5u64, 6, 7] {
        versions.extend_from_slice(&(v + 1).to_le_bytes());
    }
    versions.extend_from_slice(&[0; 8 * 61]);
    fs::write(dir.path().join("versions.dat"), &versions).unwrap();
    for _ in 0..2 {
        let m = ChunkedIdMapper::open(dir.path()).unwrap();
        assert_eq!(m.total_count(), 3);
        assert_eq!(m.internal(PointId::Num(10)).unwrap(), Some(0));
        assert_eq!(m.internal(PointId::Num(20)).unwrap(), None);
        assert_eq!(m.internal(PointId::Num(30)).unwrap(), Some(2));
        assert_eq!(m.version(0).unwrap(), Some(5));
        assert_eq!(m.version(2).unwrap(), Some(7));
        let head = fs::read(dir.path().join("mappings.log")).unwrap();
        assert_eq!(u32::from_le_bytes(head[8..12].try_into().unwrap()), 2);
        let head = fs::read(dir.path().join("versions.dat")).unwrap();
        assert_eq!(u32::from_le_bytes(head[8..12].try_into().unwrap()), 2);
    }
}

#[test]
fn id_map_flipped_version_is_an_error_not_another_version() {
    let dir = temp_dir();
    drop(id_store(dir.path()));
    // Slot of offset 3, its second byte.
    patch(&dir.path().join("versions.dat"), 32 + 3 * 8 + 1, &[0x40]);
    let m = ChunkedIdMapper::open(dir.path()).unwrap();
    assert_names(m.version(3).unwrap_err(), "versions.dat");
    assert_eq!(m.version(4).unwrap(), Some(104));
}
