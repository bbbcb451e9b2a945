//! The shared conformance suite, instantiated for the RocksDB backend, plus
//! RocksDB-specific reopen and corruption tests.
//!
//! Needs the `rocksdb` cargo feature (on by default).
#![cfg(feature = "rocksdb")]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{fill_ids, fill_payloads, fill_vectors};
use vecseg::testing::*;
use vecseg::{
    AppendableIdMapper, AppendableVectorStorage, Distance, IdMapper, IdMapperRead, Payload,
    PayloadStorageRead, PointId, PointOffset, Random, Result, Segment, SegmentEntry, Sequential,
    StorageError, VectorStorage, VectorStorageRead, Version,
};
use vecseg_rocksdb::{
    create_storages, open_storages, RocksDb, RocksIdMapper, RocksOptions, RocksPayloadStorage,
    RocksVectorStorage,
};

type RocksSegment = Segment<RocksVectorStorage<f32>, RocksPayloadStorage, RocksIdMapper>;

/// Wait until every other handle of `db` is gone (storages hold clones).
fn release(db: Arc<RocksDb>) {
    drop(db);
}

struct Vectors;
impl VectorFactory for Vectors {
    type Storage = RocksVectorStorage<f32>;
    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage> {
        let mut s = self.create(dir, data.dim, data.distance)?;
        fill_vectors(&mut s, data)?;
        Ok(s)
    }
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        s.flush()?;
        drop(s);
        RocksVectorStorage::open(RocksDb::open(dir)?)
    }
}
impl AppendableVectorFactory for Vectors {
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Storage> {
        RocksVectorStorage::create(RocksDb::open(dir)?, dim, distance)
    }
}

struct Payloads;
impl PayloadFactory for Payloads {
    type Storage = RocksPayloadStorage;
    fn build(
        &self,
        dir: &Path,
        entries: &[(PointOffset, Payload)],
        _: usize,
    ) -> Result<Self::Storage> {
        let mut s = self.create(dir)?;
        fill_payloads(&mut s, entries)?;
        Ok(s)
    }
    fn reopen(&self, dir: &Path, mut s: Self::Storage) -> Result<Self::Storage> {
        vecseg::PayloadStorage::flush(&mut s)?;
        drop(s);
        RocksPayloadStorage::open(RocksDb::open(dir)?)
    }
}
impl AppendablePayloadFactory for Payloads {
    fn create(&self, dir: &Path) -> Result<Self::Storage> {
        RocksPayloadStorage::open(RocksDb::open(dir)?)
    }
}

struct Ids;
impl IdMapperFactory for Ids {
    type Mapper = RocksIdMapper;
    fn build(
        &self,
        dir: &Path,
        links: &[(PointId, PointOffset, Version)],
        total: usize,
    ) -> Result<Self::Mapper> {
        let mut m = self.create(dir)?;
        fill_ids(&mut m, links, total)?;
        Ok(m)
    }
    fn reopen(&self, dir: &Path, mut m: Self::Mapper) -> Result<Self::Mapper> {
        m.flush_mappings()?;
        m.flush_versions()?;
        drop(m);
        RocksIdMapper::open(RocksDb::open(dir)?)
    }
}
impl AppendableIdMapperFactory for Ids {
    fn create(&self, dir: &Path) -> Result<Self::Mapper> {
        RocksIdMapper::open(RocksDb::open(dir)?)
    }
}

struct Segments;
impl SegmentFactory for Segments {
    type Segment = RocksSegment;
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Segment> {
        let (v, p, i) = create_storages(dir, dim, distance, &RocksOptions::default())?;
        Segment::create(dir, v, p, i)
    }
    fn reopen(&self, dir: &Path, mut s: Self::Segment) -> Result<Self::Segment> {
        s.flush()?;
        drop(s);
        let (v, p, i) = open_storages(dir, &RocksOptions::default())?;
        Segment::open(dir, v, p, i)
    }
}

vecseg::conformance_suite! {
    vectors(appendable): Vectors,
    payloads(appendable): Payloads,
    id_map(appendable): Ids,
    segment(appendable): Segments,
}

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().unwrap_or_default()
}

fn open_segment(dir: &Path) -> RocksSegment {
    let (v, p, i) = open_storages(dir, &RocksOptions::default()).unwrap();
    Segment::open(dir, v, p, i).unwrap()
}

/// A whole segment survives close and reopen, and writes keep working after it.
#[test]
fn segment_end_to_end_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (v, p, i) =
        create_storages::<f32>(dir.path(), 4, Distance::Cosine, &RocksOptions::default()).unwrap();
    let mut s = Segment::create(dir.path(), v, p, i).unwrap();
    for n in 0..500u64 {
        let vector = [1.0 + n as f32, 2.0, -(n as f32) / 10.0, 0.5];
        let payload = obj(serde_json::json!({"n": n, "tenant": format!("t{}", n % 3)}));
        s.upsert(n + 1, PointId::Num(n), &vector, &payload).unwrap();
    }
    for n in (0..500u64).step_by(7) {
        assert!(s.delete(1000 + n, PointId::Num(n)).unwrap());
    }
    let uuid = PointId::Uuid(uuid::Uuid::from_u128(42));
    s.upsert(2000, uuid, &[0.0, 1.0, 0.0, 0.0], &Payload::new())
        .unwrap();
    let before_hits = s.search(&[1.0, 2.0, 0.0, 0.5], 10, None).unwrap();
    let before_scroll = s.scroll(None, usize::MAX, None).unwrap();
    assert_eq!(s.flush().unwrap(), 2000);
    drop(s);

    let mut s = open_segment(dir.path());
    assert_eq!(s.version(), 2000);
    assert_eq!(s.point_count(), 500 - 72 + 1);
    assert_eq!(
        s.search(&[1.0, 2.0, 0.0, 0.5], 10, None).unwrap(),
        before_hits
    );
    assert_eq!(s.scroll(None, usize::MAX, None).unwrap(), before_scroll);
    assert!(s.get(PointId::Num(7)).unwrap().is_none());
    let rec = s.get(PointId::Num(8)).unwrap().unwrap();
    assert_eq!(rec.version, 9);
    assert_eq!(rec.payload["tenant"], "t2");
    assert_eq!(s.get(uuid).unwrap().unwrap().version, 2000);
    assert!(s.disk_bytes() > 0);
    assert_eq!(
        s.disk_bytes(),
        vecseg::fsutil::dir_size(&dir.path().join("rocksdb"))
    );
    // Keep writing after reopen: a relinked point takes a new offset.
    s.upsert(3000, PointId::Num(7), &[1.0; 4], &Payload::new())
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open_segment(dir.path());
    assert_eq!(s.point_count(), 500 - 72 + 2);
    assert_eq!(s.get(PointId::Num(7)).unwrap().unwrap().version, 3000);
}

/// Writes that were never flushed survive a drop without flush (the WAL is
/// replayed on open), and the segment repairs itself consistently.
#[test]
fn unflushed_writes_survive_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (v, p, i) =
        create_storages::<f32>(dir.path(), 2, Distance::Dot, &RocksOptions::default()).unwrap();
    let mut s = Segment::create(dir.path(), v, p, i).unwrap();
    for n in 0..50u64 {
        s.upsert(n + 1, PointId::Num(n), &[n as f32, 1.0], &Payload::new())
            .unwrap();
    }
    drop(s);
    let s = open_segment(dir.path());
    assert_eq!(s.point_count(), 50);
    assert_eq!(
        s.get(PointId::Num(49)).unwrap().unwrap().vector,
        [49.0, 1.0]
    );
}

/// Sequential batches walk an iterator; they must agree with point reads
/// for runs, gaps and repeats.
#[test]
fn sequential_batches_match_point_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data = VectorData::random(1000, 8, Distance::Dot, 3);
    let s = Vectors.build(dir.path(), &data).unwrap();
    let offsets: Vec<PointOffset> = vec![0, 1, 2, 2, 5, 6, 100, 101, 999];
    let mut seen = 0;
    s.get_batch::<Sequential>(&offsets, &mut |i, v| {
        assert_eq!(v, data.vectors[offsets[i] as usize].as_slice());
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, offsets.len());
    assert!(s
        .get_batch::<Sequential>(&[1, 2, 1000], &mut |_, _| {})
        .is_err());
}

/// Bulk append writes one batch and reads back like single inserts.
#[test]
fn append_many_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Vectors.create(dir.path(), 3, Distance::Euclid).unwrap();
    let flat: Vec<f32> = (0..300).map(|x| x as f32).collect();
    s.append_many(&flat).unwrap();
    assert!(matches!(
        s.append_many(&[1.0; 4]),
        Err(StorageError::DimensionMismatch { .. })
    ));
    let s = Vectors.reopen(dir.path(), s).unwrap();
    assert_eq!(s.total_count(), 100);
    assert_eq!(&*s.get::<Random>(42).unwrap(), &[126.0, 127.0, 128.0]);
}

/// Opening with the wrong element type, a missing directory or a corrupt
/// value is an error, never a panic.
#[test]
fn bad_databases_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_storages::<f32>(dir.path(), &RocksOptions::default()).is_err());
    {
        let (mut v, _, _) =
            create_storages::<f32>(dir.path(), 2, Distance::Dot, &RocksOptions::default()).unwrap();
        v.insert(0, &[1.0, 2.0]).unwrap();
        v.insert(1, &[3.0, 4.0]).unwrap();
        v.flush().unwrap();
        // Corrupt vector 1 and payload 0 behind the storages' backs.
        let db = v.db().clone();
        let cf = db.inner().cf_handle("vectors").unwrap();
        db.inner()
            .put_cf(cf, 1u32.to_be_bytes(), [1u8, 2, 3])
            .unwrap();
        let cf = db.inner().cf_handle("payload").unwrap();
        db.inner()
            .put_cf(cf, 0u32.to_be_bytes(), [1u8, b'['])
            .unwrap();
        db.inner().put_cf(cf, 1u32.to_be_bytes(), [7u8]).unwrap();
        release(db);
    }
    assert!(open_storages::<u8>(dir.path(), &RocksOptions::default()).is_err());
    let (v, p, _) = open_storages::<f32>(dir.path(), &RocksOptions::default()).unwrap();
    assert_eq!(&*v.get::<Random>(0).unwrap(), &[1.0, 2.0]);
    assert!(matches!(
        v.get::<Random>(1),
        Err(StorageError::Corrupted { .. })
    ));
    assert!(matches!(
        v.get_batch::<Sequential>(&[0, 1], &mut |_, _| {}),
        Err(StorageError::Corrupted { .. })
    ));
    assert!(matches!(p.get(0), Err(StorageError::Corrupted { .. })));
    assert!(matches!(p.get(1), Err(StorageError::Corrupted { .. })));
    assert!(p.for_each(&mut |_, _| Ok(true)).is_err());
}

/// The id mapper's lookups read RocksDB, not a RAM copy: a second handle on
/// the same database sees links made through the first.
#[test]
fn id_lookups_read_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDb::open(dir.path()).unwrap();
    let mut a = RocksIdMapper::open(db.clone()).unwrap();
    let b = RocksIdMapper::open(db).unwrap();
    a.set_link(PointId::Num(5), 0, 1).unwrap();
    assert_eq!(b.internal(PointId::Num(5)).unwrap(), Some(0));
    assert_eq!(
        b.iter_from(None).map(Result::unwrap).collect::<Vec<_>>(),
        [(PointId::Num(5), 0)]
    );
}

#[test]
fn reads_after_dropping_caches_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = VectorData::random(500, 16, Distance::Dot, 9);
    let mut s =
        RocksVectorStorage::<f32>::create(RocksDb::open(dir.path()).unwrap(), 16, Distance::Dot)
            .unwrap();
    fill_vectors(&mut s, &data).unwrap();
    assert!(
        s.drop_page_cache().unwrap(),
        "RocksDB supports cold-cache reads"
    );
    for (i, v) in data.vectors.iter().enumerate() {
        assert_eq!(&*s.get::<Random>(i as PointOffset).unwrap(), v.as_slice());
    }
}
