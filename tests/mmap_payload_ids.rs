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
use vecseg_mmap::id_map::{self, MmapIdMapper, NumLayout, NumSlotPlan};
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
    // Record 12 B + external id 8 B + PHF and bitmaps: the id is stored
    // twice so that a lookup reads one page (design-decisions, "Id map").
    assert!(sizes.mapping_bytes_per_id <= 21.0, "{sizes:?}");
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

/// `ids` laid out as a planned build lays them out: every numeric id at
/// its slot of a plan over them, the UUIDs after them, then `holes`
/// offsets mapped and dropped (versions `o + 1`). Returns the source, the
/// plan and the live mappings.
fn slot_ordered_source(
    ids: &[PointId],
    holes: usize,
) -> (MemoryIdMapper, NumSlotPlan, BTreeMap<PointId, PointOffset>) {
    let nums: Vec<u64> = ids
        .iter()
        .filter_map(|id| match id {
            PointId::Num(n) => Some(*n),
            PointId::Uuid(_) => None,
        })
        .collect();
    let plan = NumSlotPlan::build(nums.clone());
    let mut placed: Vec<(PointOffset, PointId)> = nums
        .iter()
        .map(|&n| (plan.slot(n) as PointOffset, PointId::Num(n)))
        .collect();
    let uuids = ids.iter().filter(|id| matches!(id, PointId::Uuid(_)));
    for (i, id) in uuids.enumerate() {
        placed.push(((nums.len() + i) as PointOffset, *id));
    }
    placed.sort_unstable();
    let model: BTreeMap<PointId, PointOffset> = placed.iter().map(|(o, id)| (*id, *o)).collect();
    let mut m = MemoryIdMapper::new();
    for (o, id) in &placed {
        m.set_link(*id, *o, u64::from(*o) + 1).unwrap();
    }
    let filler = |i: usize| PointId::Uuid(uuid::Uuid::from_u128(u128::MAX - i as u128));
    for i in 0..holes {
        let o = (placed.len() + i) as PointOffset;
        m.set_link(filler(i), o, u64::from(o) + 1).unwrap();
        m.drop_id(filler(i)).unwrap();
    }
    (m, plan, model)
}

/// A slot-ordered mapper over 500 mixed ids and 7 holes.
fn slot_ordered_ids_dir() -> tempfile::TempDir {
    let dir = tmp();
    let (source, plan, _) = slot_ordered_source(&mixed_ids(500, 21), 7);
    let m = MmapIdMapper::build_planned(dir.path(), &source, Some(plan)).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::SlotOrdered);
    dir
}

#[test]
fn ids_slot_ordered_layout_lookups_drops_and_reopen() {
    let dir = tmp();
    let ids = mixed_ids(20_000, 5);
    let (source, plan, mut model) = slot_ordered_source(&ids, 30);
    let total = model.len() + 30;
    let mut m = MmapIdMapper::build_planned(dir.path(), &source, Some(plan)).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::SlotOrdered);
    check_mapper(&m, &model, total);
    // Unknown numeric ids land on some slot holding another id; UUIDs
    // and numbers with the same bits stay apart.
    let mut rng = Rng::new(6);
    for _ in 0..200_000 {
        let id = PointId::Num(rng.next_u64());
        assert_eq!(m.internal(id).unwrap(), model.get(&id).copied(), "{id}");
    }
    for id in &ids {
        let twin = match id {
            PointId::Num(n) => PointId::Uuid(uuid::Uuid::from_u128(*n as u128)),
            PointId::Uuid(u) => PointId::Num(u.as_u128() as u64),
        };
        assert_eq!(m.internal(twin).unwrap(), model.get(&twin).copied());
    }
    for id in ids.iter().step_by(3) {
        assert_eq!(m.drop_id(*id).unwrap(), model.remove(id));
        assert_eq!(m.drop_id(*id).unwrap(), None);
    }
    check_mapper(&m, &model, total);
    m.flush_mappings().unwrap();
    drop(m);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::SlotOrdered);
    check_mapper(&m, &model, total);
    assert_eq!(m.version(4).unwrap(), Some(5));
}

#[test]
fn ids_slot_ordered_memory_budget() {
    let dir = tmp();
    let (source, plan, _) = slot_ordered_source(&random_u64_ids(200_000, 14), 0);
    let m = MmapIdMapper::build_planned(dir.path(), &source, Some(plan)).unwrap();
    let sizes = m.sizes();
    eprintln!("{sizes:?}");
    assert_eq!(sizes.num_layout, NumLayout::SlotOrdered);
    // External id 8 B + PHF and bitmaps, no records.
    assert!(sizes.mapping_bytes_per_id <= 9.0, "{sizes:?}");
}

#[test]
fn ids_planned_build_without_numeric_ids() {
    // Only UUIDs: the plan is empty, there is nothing to lay out.
    let ids: Vec<PointId> = mixed_ids(400, 9)
        .into_iter()
        .filter(|id| matches!(id, PointId::Uuid(_)))
        .collect();
    let (source, plan, model) = slot_ordered_source(&ids, 2);
    assert!(plan.is_empty());
    let dir = tmp();
    let m = MmapIdMapper::build_planned(dir.path(), &source, Some(plan)).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::Records);
    check_mapper(&m, &model, ids.len() + 2);
    assert_eq!(m.internal(PointId::Num(0)).unwrap(), None);
}

#[test]
fn ids_plans_that_do_not_fit_the_source() {
    let ids = random_u64_ids(3_000, 15);
    let nums = || -> Vec<u64> {
        ids.iter()
            .map(|id| match id {
                PointId::Num(n) => *n,
                PointId::Uuid(_) => unreachable!(),
            })
            .collect()
    };
    // Offsets not at the slots: the plan's function, with records.
    let dir = tmp();
    let source = id_source(&ids);
    let plan = NumSlotPlan::build(nums());
    let m = MmapIdMapper::build_planned(dir.path(), &source, Some(plan)).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::Records);
    let model = ids
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o as PointOffset))
        .collect();
    check_mapper(&m, &model, ids.len());
    // A plan over other ids, or another number of them: an error.
    let other = random_u64_ids(3_000, 16)
        .into_iter()
        .map(|id| id.as_u128() as u64)
        .collect();
    for plan in [
        NumSlotPlan::build(other),
        NumSlotPlan::build(nums()[1..].to_vec()),
    ] {
        let err = MmapIdMapper::build_planned(tmp().path(), &source, Some(plan)).unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
    }
    // A records table from a records-layout build in a slot-ordered
    // directory (or the other way round) does not open.
    let slotted = slot_ordered_ids_dir();
    let records = ids_dir();
    let name = id_map::IDS_NUM_FILE;
    let tables = [&records, &slotted].map(|d| fs::read(d.path().join(name)).unwrap());
    for (to, table) in [(&slotted, &tables[0]), (&records, &tables[1])] {
        fs::write(to.path().join(name), table).unwrap();
        assert_names_file(MmapIdMapper::open(to.path()).unwrap_err(), name);
    }
}

#[test]
fn ids_bad_files_are_reported_naming_the_file() {
    for file in [
        id_map::IDS_PHF_FILE,
        id_map::IDS_NUM_FILE,
        id_map::IDS_UUIDS_FILE,
        id_map::IDS_EXTERNAL_FILE,
        id_map::IDS_KINDS_FILE,
        id_map::IDS_DELETED_FILE,
        id_map::IDS_VERSIONS_FILE,
        id_map::IDS_ORDER_FILE,
    ] {
        for (what, damage) in damages() {
            for make in [ids_dir, slot_ordered_ids_dir] {
                eprintln!("{file}: {what}");
                check_bad_file(&make, &MmapIdMapper::open, file, &damage);
            }
        }
    }
}

#[test]
fn ids_damaged_hash_functions_are_detected() {
    let phf = id_map::IDS_PHF_FILE;
    // Level count / sizes of the numeric PHF (first body byte after the
    // 56-byte header) made absurd: no allocation storm, a clear error.
    let cases: Vec<Damage> = vec![
        ("huge level count", |b| {
            b[56] = 0xFF;
            b[57] = 0xFF;
            b[58] = 0x7F
        }),
        ("huge level size", |b| {
            b[57] = 0xFF;
            b[58] = 0xFF;
            b[59] = 0xFF;
            b[60] = 0x7F
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
fn ids_any_damaged_table_byte_fails_open() {
    // Every write-once file carries a checksum: one flipped bit anywhere
    // (header or body) is an error naming the file, never a lookup that
    // silently misses or finds the wrong point; in both numeric layouts.
    let ids = mixed_ids(600, 31);
    let records = tmp();
    MmapIdMapper::build(records.path(), &id_source(&ids)).unwrap();
    let slotted = tmp();
    let (source, plan, _) = slot_ordered_source(&ids, 3);
    MmapIdMapper::build_planned(slotted.path(), &source, Some(plan)).unwrap();
    for dir in [&records, &slotted] {
        flip_every_table_byte(dir.path());
    }
    let m = MmapIdMapper::open(records.path()).unwrap();
    assert_eq!(m.internal(ids[5]).unwrap(), Some(5));
}

/// Flip bits through each write-once file of the mapper in `dir`: every
/// open fails naming the file; each file is restored after.
fn flip_every_table_byte(dir: &Path) {
    for file in [
        id_map::IDS_PHF_FILE,
        id_map::IDS_NUM_FILE,
        id_map::IDS_UUIDS_FILE,
        id_map::IDS_EXTERNAL_FILE,
        id_map::IDS_KINDS_FILE,
        id_map::IDS_ORDER_FILE,
    ] {
        let p = dir.join(file);
        let orig = fs::read(&p).unwrap();
        let step = (orig.len() / 97).max(1);
        for at in (0..orig.len()).step_by(step).chain([orig.len() - 1]) {
            for bit in [0u8, 7] {
                let mut b = orig.clone();
                b[at] ^= 1 << bit;
                fs::write(&p, &b).unwrap();
                match MmapIdMapper::open(dir) {
                    Ok(_) => panic!("{file}: bit {bit} of byte {at} flipped, open succeeded"),
                    Err(e) => assert_names_file(e, file),
                }
            }
        }
        fs::write(&p, orig).unwrap();
    }
    MmapIdMapper::open(dir).unwrap();
}

/// Byte offset of copy `c` of a checked bitmap of `bits` bits.
fn bitmap_copy_at(c: usize, bits: usize) -> usize {
    32 + c * (16 + 8 * bits.div_ceil(64))
}

#[test]
fn ids_drops_are_durable_at_flush_and_survive_one_damaged_copy() {
    let ids: Vec<PointId> = (0..100u64).map(PointId::Num).collect();
    let dir = tmp();
    let mut m = MmapIdMapper::build(dir.path(), &id_source(&ids)).unwrap();
    let start = m.durable_sequence().unwrap();
    assert_eq!(m.drop_id(PointId::Num(40)).unwrap(), Some(40));
    m.flush_mappings().unwrap();
    assert_eq!(m.durable_sequence(), Some(start + 1));
    // Not flushed: gone after a kill (or a drop without flush).
    assert_eq!(m.drop_id(PointId::Num(3)).unwrap(), Some(3));
    assert_eq!(m.internal(PointId::Num(3)).unwrap(), None);
    drop(m);
    let m = MmapIdMapper::open(dir.path()).unwrap();
    assert_eq!(m.internal(PointId::Num(40)).unwrap(), None);
    assert_eq!(m.external(40).unwrap(), None);
    assert_eq!(m.internal(PointId::Num(3)).unwrap(), Some(3));
    assert_eq!(m.available_count(), 99);
    assert_eq!(m.durable_sequence(), Some(start + 1));
    drop(m);
    // A flipped bit in either copy of the deleted bitmap: the other copy
    // holds the same state.
    let p = dir.path().join(id_map::IDS_DELETED_FILE);
    let good = fs::read(&p).unwrap();
    for c in 0..2 {
        let mut b = good.clone();
        b[bitmap_copy_at(c, 100) + 16] ^= 0x08; // offset 3
        fs::write(&p, &b).unwrap();
        let m = MmapIdMapper::open(dir.path()).unwrap();
        assert_eq!(m.internal(PointId::Num(3)).unwrap(), Some(3), "copy {c}");
        assert_eq!(m.internal(PointId::Num(40)).unwrap(), None, "copy {c}");
        assert_eq!(m.durable_sequence(), Some(start + 1));
    }
    // Both copies damaged: an error.
    let mut b = good.clone();
    b[bitmap_copy_at(0, 100) + 16] ^= 0x08;
    b[bitmap_copy_at(1, 100) + 17] ^= 0x01;
    fs::write(&p, &b).unwrap();
    assert_names_file(
        MmapIdMapper::open(dir.path()).unwrap_err(),
        id_map::IDS_DELETED_FILE,
    );
}

// ------------------------------------------------------- format 1 upgrade

/// A copy of `tests/fixtures/mmap_v1` (an id map and payload storage
/// written by format 1, with flushed drops and clears) and its
/// `expected.json`.
fn v1_fixture() -> (tempfile::TempDir, serde_json::Value) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmap_v1");
    let dir = tmp();
    for sub in ["ids", "payloads"] {
        fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    let expected = serde_json::from_slice(&fs::read(src.join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn check_against_expected(
    m: &MmapIdMapper,
    expected: &serde_json::Value,
    extra_drop: Option<PointOffset>,
) {
    let mut links: Vec<(String, u64, u64)> =
        serde_json::from_value(expected["links"].clone()).unwrap();
    links.retain(|l| Some(l.1 as PointOffset) != extra_drop);
    assert_eq!(
        m.total_count(),
        expected["total"].as_u64().unwrap() as usize
    );
    assert_eq!(m.available_count(), links.len());
    let got: Vec<(String, u64, u64)> = m
        .iter_from(None)
        .map(|r| {
            let (id, o) = r.unwrap();
            assert_eq!(m.internal(id).unwrap(), Some(o));
            assert_eq!(m.external(o).unwrap(), Some(id));
            (id.to_string(), o as u64, m.version(o).unwrap().unwrap())
        })
        .collect();
    assert_eq!(got, links);
}

#[test]
fn format_1_id_map_and_payloads_are_upgraded_at_open() {
    let (dir, expected) = v1_fixture();
    let ids = dir.path().join("ids");
    assert!(ids.join(id_map::IDS_FLAGS_FILE).exists());
    open_and_check(&ids, &expected);
    assert!(!ids.join(id_map::IDS_FLAGS_FILE).exists());
    let m = MmapIdMapper::open(&ids).unwrap();
    check_against_expected(&m, &expected, None);

    let p = MmapPayloadStorage::open(&dir.path().join("payloads")).unwrap();
    let want: BTreeMap<String, Payload> =
        serde_json::from_value(expected["payloads"].clone()).unwrap();
    for (o, payload) in &want {
        assert_eq!(&p.get(o.parse().unwrap()).unwrap(), payload, "payload {o}");
    }
    assert_eq!(
        p.count() as u64,
        expected["payload_count"].as_u64().unwrap()
    );
    assert!(p.is_cleared(2) && p.is_cleared(20) && !p.is_cleared(3));
}

#[test]
fn format_1_interrupted_drops_and_upgrades_keep_every_drop() {
    // Format 1 after a kill: the drop of offset 7 reached the slot only
    // (bit 31), the dirty word set.
    let (dir, expected) = v1_fixture();
    let ids = dir.path().join("ids");
    let slot_of_7 = {
        let b = fs::read(ids.join(id_map::IDS_SLOTS_FILE)).unwrap();
        b[24..]
            .chunks(4)
            .position(|c| u32::from_le_bytes(c.try_into().unwrap()) == 7)
            .unwrap()
    };
    let mut b = fs::read(ids.join(id_map::IDS_SLOTS_FILE)).unwrap();
    b[24 + slot_of_7 * 4 + 3] |= 0x80;
    fs::write(ids.join(id_map::IDS_SLOTS_FILE), &b).unwrap();
    let mut f = fs::read(ids.join(id_map::IDS_FLAGS_FILE)).unwrap();
    f[24] = 1;
    fs::write(ids.join(id_map::IDS_FLAGS_FILE), &f).unwrap();
    let v1_state = dir_state(&ids);

    let m = MmapIdMapper::open(&ids).unwrap();
    check_against_expected(&m, &expected, Some(7));
    drop(m);

    // An upgrade killed after it wrote some files: the format-1 flags file
    // and one format-1 table beside format-2 ones (what the format-1
    // upgrade writes before the format-2 upgrade runs); the next open
    // finishes both with the same result.
    let v2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmap_v2/ids");
    for restore in [
        id_map::IDS_SLOTS_FILE,
        id_map::IDS_EXTERNAL_FILE,
        id_map::IDS_PHF_FILE,
    ] {
        // Format-2 tables beside the drops already in ids_deleted.dat
        // (written first by the format-1 upgrade).
        for e in fs::read_dir(&v2).unwrap() {
            let e = e.unwrap();
            if e.file_name() != id_map::IDS_DELETED_FILE {
                fs::copy(e.path(), ids.join(e.file_name())).unwrap();
            }
        }
        for (name, bytes) in &v1_state {
            if name == id_map::IDS_FLAGS_FILE || name == restore {
                fs::write(ids.join(name), bytes).unwrap();
            }
        }
        let m = MmapIdMapper::open(&ids).unwrap();
        check_against_expected(&m, &expected, Some(7));
        assert!(!ids.join(id_map::IDS_FLAGS_FILE).exists());
    }
}

// ------------------------------------------------------- format 2 upgrade

/// A copy of `tests/fixtures/<name>/ids` (the format-1 fixture's id map
/// as a later format wrote it) and the format-1 fixture's
/// `expected.json`, which describes the same points.
/// Open the id map in `ids` and check it holds `expected` (closed again
/// on return).
fn open_and_check(ids: &Path, expected: &serde_json::Value) {
    let m = MmapIdMapper::open(ids).unwrap();
    check_against_expected(&m, expected, None);
}

fn ids_fixture(name: &str) -> (tempfile::TempDir, serde_json::Value) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tmp();
    for e in fs::read_dir(fixtures.join(name).join("ids")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let expected =
        serde_json::from_slice(&fs::read(fixtures.join("mmap_v1/expected.json")).unwrap()).unwrap();
    (dir, expected)
}

/// `mmap_v2`: as format 2 wrote it (`u32` slots, 24-byte UUID records).
fn v2_fixture() -> (tempfile::TempDir, serde_json::Value) {
    ids_fixture("mmap_v2")
}

/// Every file of `dir` by name, with its bytes.
fn dir_state(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The format version in a file's header (bytes 8..12).
fn header_version(path: &Path) -> u32 {
    let b = fs::read(path).unwrap();
    u32::from_le_bytes(b[8..12].try_into().unwrap())
}

#[test]
fn format_2_id_map_is_upgraded_at_open_and_an_interrupted_upgrade_finishes() {
    let (dir, expected) = v2_fixture();
    let ids = dir.path();
    let v2_state = dir_state(ids);
    assert!(v2_state.contains_key(id_map::IDS_SLOTS_FILE));
    assert_eq!(header_version(&ids.join(id_map::IDS_UUIDS_FILE)), 2);

    open_and_check(ids, &expected);
    assert!(!ids.join(id_map::IDS_SLOTS_FILE).exists());
    assert_eq!(header_version(&ids.join(id_map::IDS_NUM_FILE)), 3);
    assert_eq!(header_version(&ids.join(id_map::IDS_UUIDS_FILE)), 3);
    assert_eq!(
        header_version(&ids.join(id_map::IDS_PHF_FILE)),
        id_map::PHF_FORMAT_VERSION
    );
    let upgraded = dir_state(ids);
    open_and_check(ids, &expected);

    // Killed after writing the records (UUIDs still format 2), or after
    // converting the UUIDs too: the slots file is still there (and the
    // format-3 upgrade, which follows, has not run), the next open
    // finishes with the same files.
    for restore in [
        vec![
            id_map::IDS_SLOTS_FILE,
            id_map::IDS_UUIDS_FILE,
            id_map::IDS_PHF_FILE,
        ],
        vec![id_map::IDS_SLOTS_FILE, id_map::IDS_PHF_FILE],
    ] {
        for name in restore {
            fs::write(ids.join(name), &v2_state[name]).unwrap();
        }
        open_and_check(ids, &expected);
        for (name, bytes) in &upgraded {
            assert_eq!(&fs::read(ids.join(name)).unwrap(), bytes, "{name}");
        }
        assert!(!ids.join(id_map::IDS_SLOTS_FILE).exists());
    }

    // A damaged format-2 table fails the upgrade with an error naming it.
    let mut slots = v2_state[id_map::IDS_SLOTS_FILE].clone();
    let n = slots.len();
    slots[n - 2] ^= 0x40;
    fs::write(ids.join(id_map::IDS_SLOTS_FILE), &slots).unwrap();
    assert_names_file(MmapIdMapper::open(ids).unwrap_err(), id_map::IDS_SLOTS_FILE);
}

// ------------------------------------------------------- format 3 upgrade

/// `mmap_v3`: as format 3 wrote it (`ph` 0.8 FMPH functions, records
/// in their slot order).
fn v3_fixture() -> (tempfile::TempDir, serde_json::Value) {
    ids_fixture("mmap_v3")
}

#[test]
fn format_3_id_map_is_upgraded_at_open_and_an_interrupted_upgrade_finishes() {
    let (dir, expected) = v3_fixture();
    let ids = dir.path();
    let v3_state = dir_state(ids);
    assert_eq!(header_version(&ids.join(id_map::IDS_PHF_FILE)), 2);

    open_and_check(ids, &expected);
    assert_eq!(
        header_version(&ids.join(id_map::IDS_PHF_FILE)),
        id_map::PHF_FORMAT_VERSION
    );
    // The slot-ordered tables were rewritten, the others kept.
    let upgraded = dir_state(ids);
    for name in [id_map::IDS_NUM_FILE, id_map::IDS_PHF_FILE] {
        assert_ne!(upgraded[name], v3_state[name], "{name}");
    }
    for name in [id_map::IDS_ORDER_FILE, id_map::IDS_VERSIONS_FILE] {
        assert_eq!(upgraded[name], v3_state[name], "{name}");
    }
    open_and_check(ids, &expected);

    // Killed before the function was written, with any of the rewritten
    // tables already replaced: the old function's header is still there
    // and the next open finishes, whichever tables are old or new.
    let rewritten = [
        id_map::IDS_NUM_FILE,
        id_map::IDS_UUIDS_FILE,
        id_map::IDS_EXTERNAL_FILE,
    ];
    for mask in 0..(1 << rewritten.len()) {
        fs::write(
            ids.join(id_map::IDS_PHF_FILE),
            &v3_state[id_map::IDS_PHF_FILE],
        )
        .unwrap();
        for (i, name) in rewritten.iter().enumerate() {
            let state = if mask & (1 << i) != 0 {
                &upgraded
            } else {
                &v3_state
            };
            fs::write(ids.join(name), &state[*name]).unwrap();
        }
        open_and_check(ids, &expected);
        assert_eq!(
            header_version(&ids.join(id_map::IDS_PHF_FILE)),
            id_map::PHF_FORMAT_VERSION
        );
    }

    // A damaged format-3 record table fails the upgrade with an error
    // naming it; the old function stays, so nothing was half-upgraded.
    for (name, state) in &v3_state {
        fs::write(ids.join(name), state).unwrap();
    }
    let mut records = v3_state[id_map::IDS_NUM_FILE].clone();
    records[4096 + 3] ^= 0x10;
    fs::write(ids.join(id_map::IDS_NUM_FILE), &records).unwrap();
    assert_names_file(MmapIdMapper::open(ids).unwrap_err(), id_map::IDS_NUM_FILE);
    assert_eq!(header_version(&ids.join(id_map::IDS_PHF_FILE)), 2);
}

/// `mmap_v4`: as format 4 wrote it (`ids_phf.bin` at header version 3,
/// before the numeric layout word).
#[test]
fn format_4_id_map_opens_as_it_is() {
    let (dir, expected) = ids_fixture("mmap_v4");
    let ids = dir.path();
    let v4_state = dir_state(ids);
    assert_eq!(header_version(&ids.join(id_map::IDS_PHF_FILE)), 3);
    let m = MmapIdMapper::open(ids).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::Records);
    check_against_expected(&m, &expected, None);
    drop(m);
    assert_eq!(dir_state(ids), v4_state, "nothing rewritten");
    // A layout word in a version-3 header is damage.
    let phf = ids.join(id_map::IDS_PHF_FILE);
    let mut bytes = v4_state[id_map::IDS_PHF_FILE].clone();
    bytes[52] = 1;
    fs::write(&phf, &bytes).unwrap();
    assert_names_file(MmapIdMapper::open(ids).unwrap_err(), id_map::IDS_PHF_FILE);
}

#[test]
fn ids_cold_lookup_reads_one_page() {
    // After the page cache is dropped, a lookup of a present id faults in
    // exactly one page of the tables (its record, or in the slot-ordered
    // layout its external-array entry), an absent id at most one; counted
    // with mincore.
    let ids = mixed_ids(300_000, 17);
    let records = tmp();
    let m = MmapIdMapper::build(records.path(), &id_source(&ids)).unwrap();
    let model: Vec<(PointId, PointOffset)> = ids
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o as PointOffset))
        .collect();
    if !cold_lookups_read_one_page(&m, &model) {
        eprintln!("page cache eviction does not work on this file system; skipped");
        return;
    }
    let slotted = tmp();
    let (source, plan, model) = slot_ordered_source(&ids, 0);
    let m = MmapIdMapper::build_planned(slotted.path(), &source, Some(plan)).unwrap();
    assert_eq!(m.sizes().num_layout, NumLayout::SlotOrdered);
    assert!(cold_lookups_read_one_page(
        &m,
        &model.into_iter().collect::<Vec<_>>()
    ));
}

/// 200 cold lookups of present ids of `model` read one page each, 200 of
/// absent ids at most one; `false` when eviction does not work here.
fn cold_lookups_read_one_page(m: &MmapIdMapper, model: &[(PointId, PointOffset)]) -> bool {
    // Populated first (huge pages where the kernel allows): eviction must
    // bring single-page faults back.
    m.populate();
    m.clear_cache().unwrap();
    if m.resident_pages() != 0 {
        return false;
    }
    let mut rng = Rng::new(5);
    for _ in 0..200 {
        let (id, o) = model[rng.below(model.len())];
        m.clear_cache().unwrap();
        assert_eq!(m.internal(id).unwrap(), Some(o));
        assert_eq!(m.resident_pages(), 1, "lookup of {id} (offset {o})");
        m.clear_cache().unwrap();
        let absent = PointId::Num(rng.next_u64() | 1 << 63);
        assert_eq!(m.internal(absent).unwrap(), None);
        assert!(m.resident_pages() <= 1);
    }
    true
}
