//! `MmapVectorStorage` beyond the conformance suite: reopen, corrupted
//! files, io_uring and pread batch reads, the single-mapping mode and a
//! whole `Segment` served from mmap.

use std::path::{Path, PathBuf};

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::{Rng, VectorData};
use vecseg::{
    AppendableVectorStorage, Condition, Distance, Filter, PointId, PointOffset, Random, Segment,
    Sequential, StorageError, VectorStorage, VectorStorageRead,
};
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage, ReadBackend};

const MATRIX: &str = "matrix.dat";
const DELETED: &str = "deleted.dat";

fn memory_from(data: &VectorData) -> MemoryVectorStorage<f32> {
    let mut s = MemoryVectorStorage::new(data.dim, data.distance).unwrap();
    for (i, v) in data.vectors.iter().enumerate() {
        s.insert(i as PointOffset, v).unwrap();
        if data.deleted[i] {
            s.delete(i as PointOffset).unwrap();
        }
    }
    s
}

fn build(dir: &Path, n: usize, dim: usize) -> (MemoryVectorStorage<f32>, MmapVectorStorage<f32>) {
    let src = memory_from(&VectorData::random(n, dim, Distance::Dot, 42));
    let s = MmapVectorStorage::build(dir, &src, MmapVectorOptions::default()).unwrap();
    (src, s)
}

fn open(dir: &Path) -> vecseg::Result<MmapVectorStorage<f32>> {
    MmapVectorStorage::open(dir, MmapVectorOptions::default())
}

fn assert_same<A, B>(a: &A, b: &B)
where
    A: VectorStorageRead<Element = f32>,
    B: VectorStorageRead<Element = f32>,
{
    assert_eq!(a.total_count(), b.total_count());
    assert_eq!(a.deleted_count(), b.deleted_count());
    assert_eq!(a.dim(), b.dim());
    assert_eq!(a.distance(), b.distance());
    for o in 0..a.total_count() as PointOffset {
        assert_eq!(&*a.get::<Random>(o).unwrap(), &*b.get::<Random>(o).unwrap());
        assert_eq!(
            &*a.get::<Sequential>(o).unwrap(),
            &*b.get::<Sequential>(o).unwrap()
        );
        assert_eq!(a.is_deleted(o), b.is_deleted(o), "deleted flag {o}");
    }
}

/// Assert `r` failed naming `file` as corrupted (or of an unsupported version).
fn assert_bad_file<T: std::fmt::Debug>(r: vecseg::Result<T>, file: &Path, unsupported: bool) {
    match r {
        Err(StorageError::Corrupted { path, reason }) if !unsupported => {
            assert_eq!(path, file, "wrong file named ({reason})");
            let msg = StorageError::Corrupted { path, reason }.to_string();
            assert!(msg.contains(&*file.to_string_lossy()), "{msg}");
        }
        Err(StorageError::UnsupportedVersion { path, found, .. }) if unsupported => {
            assert_eq!(path, file);
            assert_eq!(found, 99);
        }
        other => panic!(
            "expected a bad-file error for {}, got {other:?}",
            file.display()
        ),
    }
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut raw = std::fs::read(path).unwrap();
    raw[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, raw).unwrap();
}

fn truncate(path: &Path, by: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

/// A storage directory with a freshly built storage, closed.
fn built_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 50, 8));
    let m = dir.path().join(MATRIX);
    let d = dir.path().join(DELETED);
    (dir, m, d)
}

#[test]
fn reopen_keeps_vectors_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut src, mut s) = build(dir.path(), 1000, 32);
    assert_same(&src, &s);
    for o in [0, 1, 7, 500, 999] {
        assert_eq!(s.delete(o).unwrap(), src.delete(o).unwrap());
    }
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path()).unwrap();
    assert_same(&src, &s);
    assert!(s.disk_bytes() >= 64 + 1000 * 32 * 4);
    // Deleting without an explicit flush is still in the shared mapping,
    // and reaches the file when the storage is flushed.
    let mut s = s;
    s.delete(3).unwrap();
    src.delete(3).unwrap();
    s.flush().unwrap();
    drop(s);
    assert_same(&src, &open(dir.path()).unwrap());
}

#[test]
fn truncated_matrix_is_corrupted() {
    let (dir, m, _) = built_dir();
    truncate(&m, 4);
    assert_bad_file(open(dir.path()), &m, false);
    // Cut inside the header, and down to nothing.
    std::fs::write(&m, b"VSMATRIX\x01\x00").unwrap();
    assert_bad_file(open(dir.path()), &m, false);
    std::fs::write(&m, b"").unwrap();
    assert_bad_file(open(dir.path()), &m, false);
}

#[test]
fn extra_bytes_in_matrix_are_corrupted() {
    let (dir, m, _) = built_dir();
    let mut raw = std::fs::read(&m).unwrap();
    raw.extend_from_slice(&[0; 4]);
    std::fs::write(&m, raw).unwrap();
    assert_bad_file(open(dir.path()), &m, false);
}

#[test]
fn truncated_deleted_is_corrupted() {
    let (dir, _, d) = built_dir();
    truncate(&d, 8);
    assert_bad_file(open(dir.path()), &d, false);
    std::fs::write(&d, b"VSDEL").unwrap();
    assert_bad_file(open(dir.path()), &d, false);
}

#[test]
fn deleted_of_wrong_length_is_corrupted() {
    let (dir, _, d) = built_dir();
    patch(&d, 16, &10u64.to_le_bytes());
    assert_bad_file(open(dir.path()), &d, false);
}

#[test]
fn wrong_magic_is_corrupted() {
    let (dir, m, _) = built_dir();
    patch(&m, 0, b"NOTAMATX");
    assert_bad_file(open(dir.path()), &m, false);
    let (dir, _, d) = built_dir();
    patch(&d, 0, b"XXXXXXXX");
    assert_bad_file(open(dir.path()), &d, false);
}

#[test]
fn wrong_version_is_unsupported() {
    let (dir, m, _) = built_dir();
    patch(&m, 8, &99u32.to_le_bytes());
    assert_bad_file(open(dir.path()), &m, true);
    let (dir, _, d) = built_dir();
    patch(&d, 8, &99u32.to_le_bytes());
    assert_bad_file(open(dir.path()), &d, true);
}

#[test]
fn wrong_element_type_is_corrupted() {
    let (dir, m, _) = built_dir();
    // An f32 file opened as u8.
    let r = MmapVectorStorage::<u8>::open(dir.path(), MmapVectorOptions::default());
    assert_bad_file(r, &m, false);
    // A u8 tag written into an f32 file.
    patch(&m, 16, &2u32.to_le_bytes());
    assert_bad_file(open(dir.path()), &m, false);
    // An unknown tag.
    patch(&m, 16, &77u32.to_le_bytes());
    assert_bad_file(open(dir.path()), &m, false);
}

#[test]
fn wrong_dimension_or_count_is_corrupted() {
    for (at, value) in [
        (24usize, 9u64),
        (24, 0),
        (24, u64::MAX),
        (32, 51),
        (32, u64::MAX / 2),
    ] {
        let (dir, m, _) = built_dir();
        patch(&m, at, &value.to_le_bytes());
        assert_bad_file(open(dir.path()), &m, false);
    }
}

#[test]
fn bad_layout_fields_are_corrupted() {
    // Data offset not aligned, header length, distance code.
    for (at, bytes) in [
        (40usize, 65u64.to_le_bytes().to_vec()),
        (40, 0u64.to_le_bytes().to_vec()),
        (12, 48u32.to_le_bytes().to_vec()),
        (48, 9u32.to_le_bytes().to_vec()),
        (20, 8u32.to_le_bytes().to_vec()),
    ] {
        let (dir, m, _) = built_dir();
        patch(&m, at, &bytes);
        assert_bad_file(open(dir.path()), &m, false);
    }
}

#[test]
fn missing_files_are_io_errors_naming_the_file() {
    let (dir, m, d) = built_dir();
    std::fs::remove_file(&d).unwrap();
    assert!(matches!(open(dir.path()), Err(StorageError::Io { path, .. }) if path == d));
    std::fs::remove_file(&m).unwrap();
    assert!(matches!(open(dir.path()), Err(StorageError::Io { path, .. }) if path == m));
}

fn random_offsets(n: usize, count: usize, seed: u64) -> Vec<PointOffset> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(count) as PointOffset).collect()
}

fn check_batch(s: &MmapVectorStorage<f32>, offsets: &[PointOffset]) {
    let mut seen = vec![0u32; offsets.len()];
    s.read_batch_uring(offsets, &mut |i, v| {
        seen[i] += 1;
        assert_eq!(
            v,
            s.get::<Random>(offsets[i]).unwrap(),
            "offset {}",
            offsets[i]
        );
    })
    .unwrap();
    assert!(seen.iter().all(|&n| n == 1), "every index exactly once");
}

#[test]
fn io_uring_batch_read_equals_get_and_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = build(dir.path(), 3000, 24);
    let offsets = random_offsets(1000, 3000, 1);
    check_batch(&s, &offsets);
    check_batch(&s, &[2999, 0, 0, 1500]);
    check_batch(&s, &[]);
    // io_uring works on the machines this project is developed and tested
    // on: a silent fallback to pread here would be a bug.
    if std::env::var("VECSEG_NO_IO_URING").is_err() {
        assert_eq!(
            s.io_backend(),
            ReadBackend::IoUring,
            "io_uring unavailable: {:?}",
            vecseg_mmap::io_uring_unavailable_reason()
        );
        assert_eq!(s.io_counts().io_uring, 1004);
        assert_eq!(s.io_counts().pread, 0);
    }
    // After the page cache is dropped the reads still return the same data.
    s.clear_cache().unwrap();
    check_batch(&s, &offsets);
    // Out of range: an error before any I/O.
    assert!(matches!(
        s.read_batch_uring(&[1, 3000], &mut |_, _| panic!("no callback expected")),
        Err(StorageError::OffsetOutOfRange { offset: 3000, .. })
    ));
}

#[test]
fn pread_fallback_equals_get() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = build(dir.path(), 2000, 16);
    drop(s);
    let opts = MmapVectorOptions {
        read_backend: Some(ReadBackend::Pread),
        ..Default::default()
    };
    let s = MmapVectorStorage::<f32>::open(dir.path(), opts).unwrap();
    assert_eq!(s.io_backend(), ReadBackend::Pread);
    let offsets = random_offsets(500, 2000, 2);
    check_batch(&s, &offsets);
    assert_eq!(s.io_counts().pread, 500);
    assert_eq!(s.io_counts().io_uring, 0);
}

#[test]
fn concurrent_batch_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = build(dir.path(), 2000, 16);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for round in 0..5 {
                    check_batch(s, &random_offsets(300, 2000, t * 100 + round));
                }
            });
        }
    });
    let c = s.io_counts();
    assert_eq!(c.io_uring + c.pread, 4 * 5 * 300);
}

#[test]
fn get_batch_via_uring_option() {
    let dir = tempfile::tempdir().unwrap();
    let (src, s) = build(dir.path(), 1000, 8);
    drop(s);
    let opts = MmapVectorOptions {
        batch_reads_via_uring: true,
        ..Default::default()
    };
    let s = MmapVectorStorage::<f32>::open(dir.path(), opts).unwrap();
    let scattered = random_offsets(100, 1000, 3);
    let clustered: Vec<PointOffset> = (200..300).collect();
    // Cold: scattered batches go to io_uring.
    s.clear_cache().unwrap();
    for offsets in [scattered.clone(), clustered] {
        let mut n = 0;
        s.get_batch::<Random>(&offsets, &mut |i, v| {
            n += 1;
            assert_eq!(v, src.get::<Random>(offsets[i]).unwrap());
        })
        .unwrap();
        assert_eq!(n, offsets.len());
    }
    let c = s.io_counts();
    assert_eq!(
        c.io_uring + c.pread,
        100,
        "only the scattered batch goes to the file"
    );
    // Warm (every page resident): the mapping serves it.
    s.populate();
    let mut n = 0;
    s.get_batch::<Random>(&scattered, &mut |_, _| n += 1)
        .unwrap();
    assert_eq!(n, scattered.len());
    let warm = s.io_counts();
    assert_eq!(
        warm.io_uring + warm.pread,
        100,
        "a warm batch skips io_uring"
    );
}

#[test]
fn multi_mmap_off_works() {
    let dir = tempfile::tempdir().unwrap();
    let src = memory_from(&VectorData::random(500, 12, Distance::Euclid, 5));
    let opts = MmapVectorOptions {
        multi_mmap: false,
        populate: true,
        ..Default::default()
    };
    let mut s = MmapVectorStorage::build(dir.path(), &src, opts).unwrap();
    assert!(!s.has_sequential_mapping());
    assert_same(&src, &s);
    let offsets: Vec<PointOffset> = (10..40).collect();
    let mut n = 0;
    s.get_batch::<Sequential>(&offsets, &mut |i, v| {
        n += 1;
        assert_eq!(v, src.get::<Random>(offsets[i]).unwrap());
    })
    .unwrap();
    assert_eq!(n, 30);
    s.delete(11).unwrap();
    assert!(s.is_deleted(11));
    s.clear_cache().unwrap();
    s.populate();
    assert_eq!(
        s.get::<Sequential>(499).unwrap(),
        src.get::<Random>(499).unwrap()
    );
}

/// Run by `env_var_disables_second_mapping` in a child process with
/// `VECSEG_NO_MULTI_MMAP=1`; does nothing otherwise.
#[test]
fn env_child_no_multi_mmap() {
    if std::env::var("VECSEG_NO_MULTI_MMAP").as_deref() != Ok("1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, s) = build(dir.path(), 100, 4);
    assert!(!s.has_sequential_mapping());
    assert_same(&src, &s);
}

#[test]
fn env_var_disables_second_mapping() {
    if std::env::var("VECSEG_NO_MULTI_MMAP").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = build(dir.path(), 10, 4);
    assert!(s.has_sequential_mapping());
    // Setting the variable in this (multi-threaded) test process would race
    // with other tests: run the check in a child process instead.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child_no_multi_mmap", "--nocapture"])
        .env("VECSEG_NO_MULTI_MMAP", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn u8_vectors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = MemoryVectorStorage::<u8>::new(5, Distance::Manhattan).unwrap();
    for i in 0..40u8 {
        src.insert(i as PointOffset, &[i, i + 1, 255 - i, 0, 7])
            .unwrap();
    }
    src.delete(6).unwrap();
    let s = MmapVectorStorage::build(dir.path(), &src, MmapVectorOptions::default()).unwrap();
    drop(s);
    let s = MmapVectorStorage::<u8>::open(dir.path(), MmapVectorOptions::default()).unwrap();
    for o in 0..40 {
        assert_eq!(s.get::<Random>(o).unwrap(), src.get::<Random>(o).unwrap());
    }
    assert!(s.is_deleted(6));
    let offsets = [39, 0, 17];
    let mut n = 0;
    s.read_batch_uring(&offsets, &mut |i, v| {
        n += 1;
        assert_eq!(v, src.get::<Random>(offsets[i]).unwrap());
    })
    .unwrap();
    assert_eq!(n, 3);
    // Opening the u8 file as f32 fails.
    assert!(matches!(
        open(dir.path()),
        Err(StorageError::Corrupted { .. })
    ));
}

#[test]
fn build_into_existing_directory_replaces_files() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 100, 4));
    let src = memory_from(&VectorData::random(30, 6, Distance::Cosine, 9));
    drop(MmapVectorStorage::build(dir.path(), &src, MmapVectorOptions::default()).unwrap());
    assert_same(&src, &open(dir.path()).unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

type MemorySegment = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;
type MmapSegment = Segment<MmapVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;

#[test]
fn segment_served_from_mmap_matches_its_source() {
    let dim = 16;
    let mut rng = Rng::new(77);
    let mut source: MemorySegment = Segment::new(
        MemoryVectorStorage::new(dim, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    let n = 600u64;
    for i in 0..n {
        source
            .upsert(i + 1, PointId::Num(i * 3), &rng.vector(dim), &rng.payload())
            .unwrap();
    }
    // Overwrites and deletes leave deleted slots behind in the vectors.
    for i in (0..n).step_by(11) {
        source
            .upsert(
                n + i + 1,
                PointId::Num(i * 3),
                &rng.vector(dim),
                &rng.payload(),
            )
            .unwrap();
    }
    for i in (0..n).step_by(13) {
        source.delete(2 * n + i + 1, PointId::Num(i * 3)).unwrap();
    }

    let (vectors, payloads, ids) = source.clone_parts();
    let dir = tempfile::tempdir().unwrap();
    let mmap =
        MmapVectorStorage::build(dir.path(), &vectors, MmapVectorOptions::default()).unwrap();
    assert_eq!(mmap.deleted_count(), vectors.deleted_count());
    let segment: MmapSegment = Segment::new(mmap, payloads, ids);

    assert_eq!(segment.point_count(), source.point_count());
    for i in 0..n {
        let id = PointId::Num(i * 3);
        let (a, b) = (source.get(id).unwrap(), segment.get(id).unwrap());
        assert_eq!(a.is_some(), b.is_some(), "presence of {id}");
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(a.vector, b.vector);
            assert_eq!(a.payload, b.payload);
            assert_eq!(a.version, b.version);
        }
    }
    let filter = Filter {
        must: vec![Condition::MatchKeyword {
            key: "tenant".into(),
            value: "t1".into(),
        }],
        ..Default::default()
    };
    for q in 0..10 {
        let query = rng.vector(dim);
        let k = 5 + q;
        let want = source.search(&query, k, None).unwrap();
        let got = segment.search(&query, k, None).unwrap();
        assert_eq!(ids_of(&want), ids_of(&got), "query {q}");
        for (a, b) in want.iter().zip(&got) {
            assert!((a.score - b.score).abs() < 1e-6);
        }
        let want = source.search(&query, k, Some(&filter)).unwrap();
        let got = segment.search(&query, k, Some(&filter)).unwrap();
        assert_eq!(ids_of(&want), ids_of(&got), "filtered query {q}");
    }
}

fn ids_of(hits: &[vecseg::ScoredPoint]) -> Vec<PointId> {
    hits.iter().map(|h| h.id).collect()
}

trait CloneParts {
    fn clone_parts(
        &self,
    ) -> (
        MemoryVectorStorage<f32>,
        MemoryPayloadStorage,
        MemoryIdMapper,
    );
}

impl CloneParts for MemorySegment {
    fn clone_parts(
        &self,
    ) -> (
        MemoryVectorStorage<f32>,
        MemoryPayloadStorage,
        MemoryIdMapper,
    ) {
        (
            self.vectors().clone(),
            self.payloads().clone(),
            self.ids().clone(),
        )
    }
}

#[test]
fn reentrant_calls_from_a_callback_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (src, s) = build(dir.path(), 200, 8);
    let mut outer = 0;
    s.read_batch_uring(&[5, 150, 7], &mut |_, _| {
        outer += 1;
        // The shared reader is busy: this uses a reader of its own.
        let _ = s.io_backend();
        let mut inner = 0;
        s.read_batch_uring(&[1, 2], &mut |i, v| {
            inner += 1;
            assert_eq!(v, src.get::<Random>([1, 2][i]).unwrap());
        })
        .unwrap();
        assert_eq!(inner, 2);
    })
    .unwrap();
    assert_eq!(outer, 3);
    assert_eq!(s.io_counts().io_uring + s.io_counts().pread, 3 + 3 * 2);
}
