//! Reopen, corruption, scale and mixed-id tests for `MmapPayloadStorage`
//! and `MmapIdMapper`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::json;
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage};
use vecseg::testing::Rng;
use vecseg::{
    AppendableIdMapper, AppendablePayloadStorage, IdMapper, IdMapperRead, Payload, PayloadStorage,
    PayloadStorageRead, PointId, PointOffset, StorageError,
};
use vecseg_mmap::id_map::{self, MmapIdMapper};
use vecseg_mmap::payload::{self, MmapPayloadStorage};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vecseg-mmap-pi-")
        .tempdir()
        .unwrap()
}

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap()
}

/// The error is `Corrupted` or `UnsupportedVersion` and names `file`.
fn assert_names_file(err: StorageError, file: &str) {
    let path = match &err {
        StorageError::Corrupted { path, .. } | StorageError::UnsupportedVersion { path, .. } => {
            path.clone()
        }
        other => panic!("expected Corrupted/UnsupportedVersion naming {file}, got {other:?}"),
    };
    assert!(
        path.file_name().is_some_and(|n| n == file),
        "error {err} should name {file}"
    );
    assert!(
        err.to_string().contains(file),
        "message names the file: {err}"
    );
}

// ---------------------------------------------------------------- payloads

fn payload_source(n: usize) -> (MemoryPayloadStorage, BTreeMap<PointOffset, Payload>) {
    let mut rng = Rng::new(7);
    let mut s = MemoryPayloadStorage::new();
    let mut model = BTreeMap::new();
    for o in 0..n as PointOffset {
        if o % 5 == 3 {
            continue;
        }
        let mut p = rng.payload();
        p.insert("o".into(), json!(o));
        s.overwrite(o, &p).unwrap();
        model.insert(o, p);
    }
    (s, model)
}

#[test]
fn payload_reopen_keeps_values_clears_and_raw_bytes() {
    let dir = tmp();
    let (source, mut model) = payload_source(1000);
    let mut s = MmapPayloadStorage::build(dir.path(), &source, 1200).unwrap();
    assert_eq!(s.total(), 1200);
    assert_eq!(s.count(), model.len());
    // Raw bytes are MessagePack of the payload.
    let raw = s.get_raw(1).unwrap();
    let decoded = s.decode(1, raw).unwrap();
    assert_eq!(&decoded, &model[&1]);
    assert!(s.get_raw(3).unwrap().is_empty(), "offset without payload");
    assert!(
        s.get_raw(1100).unwrap().is_empty(),
        "offset past the source"
    );
    assert!(s.get_raw(u32::MAX).unwrap().is_empty(), "offset past total");
    for o in [0, 1, 2, 3, 999] {
        let old = model.remove(&o).unwrap_or_default();
        assert_eq!(s.clear(o).unwrap(), old);
        assert!(s.is_cleared(o));
    }
    assert_eq!(s.count(), model.len());
    s.flush().unwrap();
    drop(s);
    let s = MmapPayloadStorage::open(dir.path()).unwrap();
    assert_eq!(s.count(), model.len());
    for o in 0..1200 {
        assert_eq!(
            s.get(o).unwrap(),
            model.get(&o).cloned().unwrap_or_default(),
            "{o}"
        );
    }
    let mut seen = Vec::new();
    s.for_each(&mut |o, p| {
        assert_eq!(Some(&p), model.get(&o));
        seen.push(o);
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen, model.keys().copied().collect::<Vec<_>>());
    assert!(s.disk_bytes() > 0);
}

#[test]
fn payload_empty_storage_and_odd_values() {
    let dir = tmp();
    let s = MmapPayloadStorage::build(dir.path(), &MemoryPayloadStorage::new(), 0).unwrap();
    assert_eq!(s.count(), 0);
    assert_eq!(s.get(0).unwrap(), Payload::new());
    let dir = tmp();
    let mut src = MemoryPayloadStorage::new();
    let cases = [
        obj(json!({"big": "x".repeat(100_000)})),
        obj(json!({"ünï": "ç🦀", "n": {"d": [1, {"a": [true, null]}]}})),
        obj(json!({"min": i64::MIN, "max": u64::MAX, "f": 1.5e300, "neg": -0.25})),
        obj(json!({"": ""})),
    ];
    for (o, p) in cases.iter().enumerate() {
        src.overwrite(o as PointOffset * 2, p).unwrap();
    }
    let s = MmapPayloadStorage::build(dir.path(), &src, 8).unwrap();
    for (o, p) in cases.iter().enumerate() {
        assert_eq!(&s.get(o as PointOffset * 2).unwrap(), p);
        assert_eq!(s.get(o as PointOffset * 2 + 1).unwrap(), Payload::new());
    }
}

fn payload_dir() -> tempfile::TempDir {
    let dir = tmp();
    let (source, _) = payload_source(200);
    MmapPayloadStorage::build(dir.path(), &source, 200).unwrap();
    dir
}

/// Apply `damage` to `file` of a fresh storage and check open (or, when
/// `on_read`, the first failing read) reports it naming the file.
fn check_bad_file<T: std::fmt::Debug>(
    make: &dyn Fn() -> tempfile::TempDir,
    open: &dyn Fn(&Path) -> vecseg::Result<T>,
    file: &str,
    damage: &dyn Fn(&mut Vec<u8>),
) {
    let dir = make();
    let path = dir.path().join(file);
    let mut bytes = fs::read(&path).unwrap();
    damage(&mut bytes);
    fs::write(&path, &bytes).unwrap();
    match open(dir.path()) {
        Ok(v) => panic!("{file}: damaged file opened: {v:?}"),
        Err(e) => assert_names_file(e, file),
    }
}

type Damage = (&'static str, fn(&mut Vec<u8>));

fn damages() -> Vec<Damage> {
    vec![
        ("wrong magic", |b| b[0] ^= 0xFF),
        ("wrong version", |b| b[8] = b[8].wrapping_add(1)),
        ("header length", |b| b[12] = b[12].wrapping_add(8)),
        ("truncated by 3 bytes", |b| b.truncate(b.len() - 3)),
        ("truncated to 10 bytes", |b| b.truncate(10)),
        ("empty", |b| b.clear()),
        ("extended by 8 bytes", |b| b.extend_from_slice(&[0; 8])),
    ]
}

#[test]
fn payload_bad_files_are_reported_naming_the_file() {
    for file in [
        payload::PAYLOAD_DATA_FILE,
        payload::PAYLOAD_OFFSETS_FILE,
        payload::PAYLOAD_CLEARED_FILE,
    ] {
        for (what, damage) in damages() {
            eprintln!("{file}: {what}");
            check_bad_file(&payload_dir, &MmapPayloadStorage::open, file, &damage);
        }
    }
    // Wrong version is UnsupportedVersion specifically.
    let dir = payload_dir();
    let p = dir.path().join(payload::PAYLOAD_OFFSETS_FILE);
    let mut b = fs::read(&p).unwrap();
    b[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&p, b).unwrap();
    assert!(matches!(
        MmapPayloadStorage::open(dir.path()),
        Err(StorageError::UnsupportedVersion {
            found: 7,
            supported: 1,
            ..
        })
    ));
}

#[test]
fn payload_damaged_offsets_and_values_fail_reads_not_the_process() {
    let dir = payload_dir();
    // Offset of point 10 made huge, and point 20's range reversed.
    let p = dir.path().join(payload::PAYLOAD_OFFSETS_FILE);
    let mut b = fs::read(&p).unwrap();
    let at = |o: usize| 40 + o * 8;
    b[at(11)..at(11) + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let v21 = u64::from_le_bytes(b[at(21)..at(21) + 8].try_into().unwrap());
    b[at(20)..at(20) + 8].copy_from_slice(&(v21 + 1).to_le_bytes());
    fs::write(&p, b).unwrap();
    // Data bytes of every value replaced by an invalid MessagePack marker.
    let d = dir.path().join(payload::PAYLOAD_DATA_FILE);
    let mut data = fs::read(&d).unwrap();
    for x in &mut data[24..] {
        *x = 0xC1;
    }
    fs::write(&d, data).unwrap();
    let s = MmapPayloadStorage::open(dir.path()).unwrap();
    assert_names_file(s.get(10).unwrap_err(), payload::PAYLOAD_OFFSETS_FILE);
    assert_names_file(s.get(20).unwrap_err(), payload::PAYLOAD_OFFSETS_FILE);
    assert_names_file(s.get(0).unwrap_err(), payload::PAYLOAD_DATA_FILE);
    assert!(s.for_each(&mut |_, _| Ok(true)).is_err());
}

// --------------------------------------------------------------------- ids

/// A memory mapper with `ids` at offsets `0..ids.len()`, versions `o + 1`.
fn id_source(ids: &[PointId]) -> MemoryIdMapper {
    let mut m = MemoryIdMapper::new();
    for (o, id) in ids.iter().enumerate() {
        m.set_link(*id, o as PointOffset, o as u64 + 1).unwrap();
    }
    m
}

fn random_u64_ids(n: usize, seed: u64) -> Vec<PointId> {
    let mut rng = Rng::new(seed);
    let mut set = std::collections::HashSet::new();
    while set.len() < n {
        set.insert(rng.next_u64());
    }
    let mut v: Vec<_> = set.into_iter().map(PointId::Num).collect();
    // Offsets in hash-set order, not id order.
    v.sort_by_key(|id| id.as_u128().wrapping_mul(0x9E37_79B9_7F4A_7C15));
    v
}

fn mixed_ids(n: usize, seed: u64) -> Vec<PointId> {
    let mut rng = Rng::new(seed);
    let mut set = std::collections::HashSet::new();
    let mut v = Vec::new();
    while v.len() < n {
        let id = match rng.below(4) {
            0 => PointId::Uuid(uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64())),
            // Small numbers and UUIDs with the same bits side by side.
            1 => PointId::Num(rng.below(5000) as u64),
            2 => PointId::Uuid(uuid::Uuid::from_u128(rng.below(5000) as u128)),
            _ => PointId::Num(rng.next_u64()),
        };
        if set.insert(id) {
            v.push(id);
        }
    }
    v
}

fn check_mapper(m: &MmapIdMapper, model: &BTreeMap<PointId, PointOffset>, total: usize) {
    assert_eq!(m.total_count(), total);
    assert_eq!(m.available_count(), model.len());
    for (id, o) in model {
        assert_eq!(m.internal(*id).unwrap(), Some(*o), "internal({id})");
        assert_eq!(m.external(*o).unwrap(), Some(*id), "external({o})");
    }
    let all: Vec<_> = m.iter_from(None).map(Result::unwrap).collect();
    let want: Vec<_> = model.iter().map(|(a, b)| (*a, *b)).collect();
    assert_eq!(all, want);
}

#[test]
fn ids_mixed_u64_and_uuid_lookups_drops_and_reopen() {
    let dir = tmp();
    let ids = mixed_ids(20_000, 3);
    let source = id_source(&ids);
    let mut model: BTreeMap<PointId, PointOffset> = ids
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o as PointOffset))
        .collect();
    let mut m = MmapIdMapper::build(dir.path(), &source).unwrap();
    check_mapper(&m, &model, ids.len());
    // Same bits, other kind: absent unless inserted as that kind too.
    for id in &ids {
        let twin = match id {
            PointId::Num(n) => PointId::Uuid(uuid::Uuid::from_u128(*n as u128)),
            PointId::Uuid(u) => PointId::Num(u.as_u128() as u64),
        };
        assert_eq!(
            m.internal(twin).unwrap(),
            model.get(&twin).copied(),
            "{twin}"
        );
    }
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        assert_eq!(m.drop_id(*id).unwrap(), Some(i as PointOffset));
        assert_eq!(m.drop_id(*id).unwrap(), None);
        model.remove(id);
    }
    m.set_version(5, 777).unwrap();
    check_mapper(&m, &model, ids.len());
    let from = *model.keys().nth(model.len() / 3).unwrap();
    let tail: Vec<_> = m.iter_from(Some(from)).map(Result::unwrap).collect();
    let want: Vec<_> = model.range(from..).map(|(a, b)| (*a, *b)).collect();
    assert_eq!(tail, want);
    m.flush_mappings().unwrap();
    m.flush_versions().unwrap();
    drop(m);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    check_mapper(&m, &model, ids.len());
    assert_eq!(m.version(5).unwrap(), Some(777));
    assert_eq!(m.version(6).unwrap(), Some(7));
    assert_eq!(m.version(ids.len() as PointOffset).unwrap(), None);
}

#[test]
fn ids_unknown_ids_at_scale_are_absent() {
    let dir = tmp();
    let ids = random_u64_ids(100_000, 11);
    let known: std::collections::HashSet<_> = ids.iter().copied().collect();
    let m = MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    let mut rng = Rng::new(12);
    let mut probes = 0;
    while probes < 1_000_000 {
        let id = PointId::Num(rng.next_u64());
        if known.contains(&id) {
            continue;
        }
        assert_eq!(m.internal(id).unwrap(), None, "unknown {id}");
        probes += 1;
    }
    for _ in 0..100_000 {
        let id = PointId::Uuid(uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()));
        assert_eq!(m.internal(id).unwrap(), None);
    }
    for (o, id) in ids.iter().enumerate().step_by(97) {
        assert_eq!(m.internal(*id).unwrap(), Some(o as PointOffset));
    }
}

#[test]
fn ids_memory_budget() {
    let dir = tmp();
    let ids = random_u64_ids(200_000, 13);
    let m = MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    let sizes = m.sizes();
    eprintln!("{sizes:?}");
    assert_eq!(sizes.ids, 200_000);
    assert!(sizes.phf_bits_per_key <= 3.0, "{sizes:?}");
    assert!(sizes.mapping_bytes_per_id <= 14.0, "{sizes:?}");
}

#[test]
fn ids_empty_and_all_dropped_mappers() {
    let dir = tmp();
    let m = MmapIdMapper::build(dir.path(), &MemoryIdMapper::new()).unwrap();
    assert_eq!(m.total_count(), 0);
    assert_eq!(m.internal(PointId::Num(0)).unwrap(), None);
    assert_eq!(m.iter_from(None).map(Result::unwrap).count(), 0);
    drop(m);
    MmapIdMapper::open(dir.path()).unwrap();

    let dir = tmp();
    let mut src = id_source(&[PointId::Num(1), PointId::Num(2)]);
    src.drop_id(PointId::Num(1)).unwrap();
    src.drop_id(PointId::Num(2)).unwrap();
    let m = MmapIdMapper::build(dir.path(), &src).unwrap();
    assert_eq!((m.total_count(), m.available_count()), (2, 0));
    assert_eq!(m.external(0).unwrap(), None);
    assert_eq!(m.version(1).unwrap(), Some(2));
}

#[test]
fn ids_reserved_version_is_rejected() {
    let dir = tmp();
    let mut m = MmapIdMapper::build(dir.path(), &id_source(&[PointId::Num(9)])).unwrap();
    assert!(matches!(
        m.set_version(0, id_map::NO_VERSION),
        Err(StorageError::InvalidArgument(_))
    ));
    assert!(matches!(
        m.set_version(1, 3),
        Err(StorageError::OffsetOutOfRange { offset: 1, len: 1 })
    ));
}

fn ids_dir() -> tempfile::TempDir {
    let dir = tmp();
    MmapIdMapper::build(dir.path(), &id_source(&mixed_ids(500, 21))).unwrap();
    dir
}

#[test]
fn ids_bad_files_are_reported_naming_the_file() {
    for file in [
        id_map::IDS_PHF_FILE,
        id_map::IDS_SLOTS_FILE,
        id_map::IDS_UUIDS_FILE,
        id_map::IDS_EXTERNAL_FILE,
        id_map::IDS_FLAGS_FILE,
        id_map::IDS_VERSIONS_FILE,
        id_map::IDS_ORDER_FILE,
    ] {
        for (what, damage) in damages() {
            eprintln!("{file}: {what}");
            check_bad_file(&ids_dir, &MmapIdMapper::open, file, &damage);
        }
    }
}

#[test]
fn ids_damaged_hash_functions_are_detected() {
    let phf = id_map::IDS_PHF_FILE;
    // Level count / sizes of the numeric PHF (first body byte after the
    // 48-byte header) made absurd: no allocation storm, a clear error.
    let cases: Vec<Damage> = vec![
        ("huge level count", |b| {
            b[48] = 0xFF;
            b[49] = 0xFF;
            b[50] = 0x7F
        }),
        ("huge level size", |b| {
            b[49] = 0xFF;
            b[50] = 0xFF;
            b[51] = 0xFF;
            b[52] = 0x7F
        }),
        ("flipped bits in the bit array", |b| {
            let n = b.len();
            for x in &mut b[n - 40..n - 8] {
                *x = !*x;
            }
        }),
        ("announced length off by one", |b| {
            b[32] = b[32].wrapping_add(1)
        }),
    ];
    for (what, damage) in cases {
        eprintln!("{what}");
        check_bad_file(&ids_dir, &MmapIdMapper::open, phf, &damage);
    }
    // A hash function from another build does not match these arrays.
    // (Same key counts, so only the consistency sample can tell.)
    let a = tmp();
    MmapIdMapper::build(a.path(), &id_source(&random_u64_ids(500, 41))).unwrap();
    let other = tmp();
    MmapIdMapper::build(other.path(), &id_source(&random_u64_ids(500, 42))).unwrap();
    fs::copy(other.path().join(phf), a.path().join(phf)).unwrap();
    assert_names_file(MmapIdMapper::open(a.path()).unwrap_err(), phf);
}

#[test]
fn ids_out_of_range_entries_do_not_panic() {
    let dir = tmp();
    let ids = random_u64_ids(1000, 31);
    MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    // Every slot and ordered offset points far past the arrays; the
    // consistency sample at open catches it.
    for file in [id_map::IDS_SLOTS_FILE, id_map::IDS_ORDER_FILE] {
        let p = dir.path().join(file);
        let orig = fs::read(&p).unwrap();
        let mut b = orig.clone();
        for x in b[24..].chunks_mut(4) {
            x.copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        }
        fs::write(&p, &b).unwrap();
        assert!(MmapIdMapper::open(dir.path()).is_err(), "{file}");
        fs::write(&p, orig).unwrap();
    }
    // A single bad slot (not in the sample) only makes its id unknown.
    let m = MmapIdMapper::open(dir.path()).unwrap();
    let victim = ids
        .iter()
        .position(|id| m.internal(*id).unwrap() == Some(1))
        .unwrap();
    drop(m);
    let p = dir.path().join(id_map::IDS_SLOTS_FILE);
    let mut b = fs::read(&p).unwrap();
    let slot = b[24..]
        .chunks(4)
        .position(|c| u32::from_le_bytes(c.try_into().unwrap()) == 1)
        .unwrap();
    b[24 + slot * 4..28 + slot * 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    fs::write(&p, b).unwrap();
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.internal(ids[victim]).unwrap(), None);
    assert_eq!(m.internal(ids[0]).unwrap(), Some(0));
}

/// Flags file layout: 32-byte header (dirty word at 24), deleted bitmap,
/// UUID bitmap.
fn set_dirty_and_bit(dir: &Path, offset: usize, deleted: bool) {
    let p = dir.join(id_map::IDS_FLAGS_FILE);
    let mut b = fs::read(&p).unwrap();
    b[24..32].copy_from_slice(&1u64.to_le_bytes());
    let byte = 32 + offset / 8;
    if deleted {
        b[byte] |= 1 << (offset % 8);
    } else {
        b[byte] &= !(1 << (offset % 8));
    }
    fs::write(&p, b).unwrap();
}

#[test]
fn ids_interrupted_drops_are_reconciled_at_open() {
    let ids: Vec<PointId> = (0..100u64).map(PointId::Num).collect();
    // Drop reached the slot file but not the deleted bitmap.
    let dir = tmp();
    let mut m = MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    assert_eq!(m.drop_id(PointId::Num(40)).unwrap(), Some(40));
    m.flush_mappings().unwrap();
    drop(m);
    set_dirty_and_bit(dir.path(), 40, false);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.internal(PointId::Num(40)).unwrap(), None);
    assert_eq!(m.external(40).unwrap(), None);
    assert_eq!(m.available_count(), 99);
    drop(m);
    // And the dirty word was cleared: opening again is a plain open.
    let b = fs::read(dir.path().join(id_map::IDS_FLAGS_FILE)).unwrap();
    assert_eq!(&b[24..32], &0u64.to_le_bytes());

    // Drop reached the deleted bitmap but not the slot file.
    let dir = tmp();
    MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    set_dirty_and_bit(dir.path(), 7, true);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.internal(PointId::Num(7)).unwrap(), None);
    assert_eq!(m.external(7).unwrap(), None);
    assert_eq!(m.available_count(), 99);
    assert_eq!(m.iter_from(None).map(Result::unwrap).count(), 99);

    // Unflushed drops still in the page cache are applied on reopen.
    let dir = tmp();
    let mut m = MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    m.drop_id(PointId::Num(3)).unwrap();
    drop(m);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.internal(PointId::Num(3)).unwrap(), None);
    assert_eq!(m.available_count(), 99);
}
