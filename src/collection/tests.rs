//! Collection tests: a model under random operations across an appendable
//! and sealed segments (so copy-on-write happens), with flushes, seals,
//! optimizations (convert, merge, vacuum, defragment) and reopens without
//! flush (WAL replay); the directory lock.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vecseg_traits::{
    Condition, Distance, FieldSchema, FieldType, Filter, Payload, PointId, Range, StorageError,
    VectorElement,
};

use super::*;

const DIM: usize = 3;

fn options() -> CollectionOptions {
    CollectionOptions::new(DIM, Distance::Euclid)
        .with_wal(WalOptions {
            file_capacity: 4096,
            durability: Durability::None,
        })
        .with_optimizer(OptimizerOptions {
            convert_points: 6,
            convert_bytes: u64::MAX,
            max_segments: 2,
            vacuum_ratio: 0.2,
            vacuum_min_dead: 2,
            ..Default::default()
        })
}

fn payload(k: &str, v: i64) -> Payload {
    let mut p = Payload::new();
    p.insert(k.to_string(), v.into());
    p
}

#[derive(Debug, Clone)]
enum Step {
    Upsert(Vec<(u64, i64)>),
    Delete(Vec<u64>),
    Set(Vec<u64>, i64),
    Overwrite(Vec<u64>, i64),
    DeleteKey(Vec<u64>),
    Clear(Vec<u64>),
    Flush,
    Seal,
    /// Run every due optimization.
    Optimize,
    Reopen,
    /// Index payload key `a` or `b` (integers).
    Index(&'static str),
    /// Index payload key `a` as the tenant key.
    Tenant,
}

fn ids() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(0u64..24, 1..5)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec((0u64..24, -50i64..50), 1..6).prop_map(Step::Upsert),
        2 => ids().prop_map(Step::Delete),
        2 => (ids(), -9i64..9).prop_map(|(i, v)| Step::Set(i, v)),
        1 => (ids(), -9i64..9).prop_map(|(i, v)| Step::Overwrite(i, v)),
        1 => ids().prop_map(Step::DeleteKey),
        1 => ids().prop_map(Step::Clear),
        1 => Just(Step::Flush),
        1 => Just(Step::Seal),
        2 => Just(Step::Optimize),
        2 => Just(Step::Reopen),
        1 => prop_oneof![Just("a"), Just("b")].prop_map(Step::Index),
        1 => Just(Step::Tenant),
    ]
}

/// The model: id → (vector, payload, version).
type Model = BTreeMap<u64, (Vec<f32>, Payload, u64)>;

fn check(c: &Collection, model: &Model) {
    for id in 0..24u64 {
        let got = c.get(PointId::Num(id)).unwrap();
        match model.get(&id) {
            None => assert!(got.is_none(), "{id} should be absent"),
            Some((v, p, version)) => {
                let r = got.unwrap_or_else(|| panic!("{id} missing"));
                assert_eq!(&r.vector, v, "vector of {id}");
                assert_eq!(&r.payload, p, "payload of {id}");
                assert_eq!(r.version, *version, "version of {id}");
            }
        }
    }
    let scrolled: Vec<u64> = c
        .scroll(None, 1000, None)
        .unwrap()
        .into_iter()
        .map(|id| match id {
            PointId::Num(n) => n,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(scrolled, model.keys().copied().collect::<Vec<_>>());
    assert_eq!(c.count().unwrap(), model.len());
    let in_pages: Vec<PointId> = {
        let mut out = Vec::new();
        let mut from = None;
        loop {
            let page = c.scroll(from, 3, None).unwrap();
            out.extend(&page);
            match page.last() {
                Some(PointId::Num(n)) if page.len() == 3 => from = Some(PointId::Num(n + 1)),
                _ => break,
            }
        }
        out
    };
    assert_eq!(in_pages.len(), model.len());
    // Filtered scrolls (through the payload indexes once they exist)
    // select exactly what the model's payloads match.
    let filters = [
        Filter::must(Condition::integer("b", 3)),
        Filter::must(Condition::range(
            "a",
            Range {
                gte: Some(-10.0),
                lt: Some(20.0),
                ..Default::default()
            },
        )),
    ];
    for f in &filters {
        let matching = model
            .iter()
            .filter(|(id, (_, p, _))| f.matches(PointId::Num(**id), p))
            .count();
        assert_eq!(c.count_filtered(Some(f)).unwrap(), matching, "count {f:?}");
        let got = c.scroll(None, 1000, Some(f)).unwrap();
        let want: Vec<PointId> = model
            .iter()
            .filter(|(id, (_, p, _))| f.matches(PointId::Num(**id), p))
            .map(|(id, _)| PointId::Num(*id))
            .collect();
        assert_eq!(got, want, "{f:?}");
    }
    // Search equals a brute force over the model: the same top scores,
    // each hit a model point with its true score (ties may order ids
    // either way).
    let query = [3.5f32, -2.0, 1.0];
    let score = |v: &[f32]| f32::score(Distance::Euclid, &query, v);
    let mut brute: Vec<f32> = model.values().map(|(v, _, _)| score(v)).collect();
    brute.sort_by(|a, b| b.total_cmp(a));
    brute.truncate(5);
    let hits = c.search(&query, 5, None).unwrap();
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    assert_eq!(scores, brute, "search against brute force");
    for h in &hits {
        let PointId::Num(n) = h.id else {
            panic!("{}", h.id)
        };
        assert_eq!(score(&model[&n].0), h.score, "hit {n} is the model's point");
    }
}

/// After an optimization, every sealed segment of two or more points is
/// ordered by the tenant key (one point needs no defragmenting).
fn check_tenant_runs(c: &Collection) {
    let Some(key) = c.tenant_key() else { return };
    for (_, s) in &c.sealed {
        if s.point_count() > 1 {
            assert_eq!(s.tenant_key().as_deref(), Some(key), "defragmented");
        }
    }
}

fn vector(id: u64, salt: i64) -> Vec<f32> {
    vec![id as f32, salt as f32, 1.0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn matches_a_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collection::create(dir.path(), options()).unwrap();
        let mut model = Model::new();
        for s in steps {
            match s {
                Step::Upsert(points) => {
                    let batch = points
                        .iter()
                        .map(|&(id, salt)| PointData {
                            id: PointId::Num(id),
                            vector: vector(id, salt),
                            payload: payload("a", salt),
                        })
                        .collect();
                    let seq = c.upsert_points(batch).unwrap();
                    for (id, salt) in points {
                        model.insert(id, (vector(id, salt), payload("a", salt), seq));
                    }
                }
                Step::Delete(ids) => {
                    c.delete_points(ids.iter().map(|i| PointId::Num(*i)).collect()).unwrap();
                    for id in ids {
                        model.remove(&id);
                    }
                }
                Step::Set(ids, v) => {
                    let seq = c.set_payload(ids.iter().map(|i| PointId::Num(*i)).collect(), payload("b", v)).unwrap();
                    for id in ids {
                        if let Some(p) = model.get_mut(&id) {
                            p.1.insert("b".into(), v.into());
                            p.2 = seq;
                        }
                    }
                }
                Step::Overwrite(ids, v) => {
                    let seq = c.overwrite_payload(ids.iter().map(|i| PointId::Num(*i)).collect(), payload("c", v)).unwrap();
                    for id in ids {
                        if let Some(p) = model.get_mut(&id) {
                            p.1 = payload("c", v);
                            p.2 = seq;
                        }
                    }
                }
                Step::DeleteKey(ids) => {
                    let seq = c.delete_payload_keys(ids.iter().map(|i| PointId::Num(*i)).collect(), vec!["a".into()]).unwrap();
                    for id in ids {
                        if let Some(p) = model.get_mut(&id) {
                            p.1.remove("a");
                            p.2 = seq;
                        }
                    }
                }
                Step::Clear(ids) => {
                    let seq = c.clear_payload(ids.iter().map(|i| PointId::Num(*i)).collect()).unwrap();
                    for id in ids {
                        if let Some(p) = model.get_mut(&id) {
                            p.1.clear();
                            p.2 = seq;
                        }
                    }
                }
                Step::Flush => {
                    c.flush().unwrap();
                }
                Step::Seal => drop(c.seal_appendable().unwrap()),
                Step::Optimize => {
                    c.optimize().unwrap();
                    assert!(c.plan_optimizations().is_empty(), "nothing left to do");
                    check_tenant_runs(&c);
                }
                Step::Reopen => {
                    // No flush: what is not in the segments is in the WAL.
                    drop(c);
                    c = Collection::open(dir.path()).unwrap();
                }
                Step::Index(key) => {
                    c.create_field_index(FieldSchema::new(key, FieldType::Integer)).unwrap();
                    assert!(c.field_indexes().iter().any(|f| f.key == key));
                }
                Step::Tenant => {
                    let mut schema = FieldSchema::new("a", FieldType::Integer);
                    schema.is_tenant = true;
                    c.create_field_index(schema).unwrap();
                    assert_eq!(c.tenant_key(), Some("a"));
                }
            }
            check(&c, &model);
        }
        drop(c);
        let c = Collection::open(dir.path()).unwrap();
        check(&c, &model);
    }
}

#[test]
fn copy_on_write_moves_a_sealed_point_and_reads_take_the_newest_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collection::create(dir.path(), options()).unwrap();
    c.upsert_points(vec![PointData {
        id: PointId::Num(1),
        vector: vector(1, 0),
        payload: payload("a", 1),
    }])
    .unwrap();
    c.seal_appendable().unwrap();
    let segs = c.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].2, segs[1].1.as_str(), segs[1].2), (0, "mmap", 1));
    c.set_payload(vec![PointId::Num(1)], payload("b", 2))
        .unwrap();
    let segs = c.segments();
    assert_eq!(
        (segs[0].2, segs[1].2),
        (1, 0),
        "the point moved to the appendable segment"
    );
    let r = c.get(PointId::Num(1)).unwrap().unwrap();
    assert_eq!(r.payload.get("b"), Some(&2.into()));
    assert_eq!(r.payload.get("a"), Some(&1.into()));
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.count().unwrap(), 1);
    let dirs = std::fs::read_dir(dir.path().join(SEGMENTS_DIR))
        .unwrap()
        .count();
    assert_eq!(dirs, 2, "the sealed appendable segment's directory is gone");
}

#[test]
fn a_second_open_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(dir.path(), options()).unwrap();
    assert!(matches!(
        Collection::open(dir.path()),
        Err(StorageError::Locked { .. })
    ));
    assert!(matches!(
        Collection::create(dir.path(), options()),
        Err(StorageError::Locked { .. })
    ));
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    drop(c);
    assert!(
        Collection::create(dir.path(), options()).is_err(),
        "already a collection"
    );
}

#[test]
fn invalid_points_are_rejected_before_they_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collection::create(dir.path(), options()).unwrap();
    let bad = vec![
        PointData {
            id: PointId::Num(1),
            vector: vec![1.0, 2.0, 3.0],
            payload: Payload::new(),
        },
        PointData {
            id: PointId::Num(2),
            vector: vec![1.0, f32::NAN, 3.0],
            payload: Payload::new(),
        },
    ];
    assert!(c.upsert_points(bad).is_err());
    assert_eq!(c.wal().next_seq().unwrap(), 1, "nothing logged");
    assert_eq!(c.count().unwrap(), 0);
}

#[test]
fn inspect_reads_a_live_collection_without_changing_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collection::create(dir.path(), options()).unwrap();
    for i in 0..5u64 {
        c.upsert_points(vec![PointData {
            id: PointId::Num(i),
            vector: vector(i, 1),
            payload: Payload::new(),
        }])
        .unwrap();
    }
    c.seal_appendable().unwrap();
    c.delete_points(vec![PointId::Num(0)]).unwrap();
    // A torn tail after the last entry: reported, not cut.
    let wal_file = std::fs::read_dir(dir.path().join(WAL_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let (_, files) = wal::inspect(&dir.path().join(WAL_DIR)).unwrap();
    let end = files.last().unwrap().valid_len;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&wal_file)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 5], end).unwrap();
    let before = std::fs::read(&wal_file).unwrap();
    let report = crate::cli::inspect::inspect(dir.path(), false).unwrap();
    assert!(report.contains("collection"), "{report}");
    assert!(
        report.contains("mmap") && report.contains("(appendable)"),
        "{report}"
    );
    assert!(report.contains("torn tail of 5 B"), "{report}");
    assert!(
        std::fs::read(&wal_file).unwrap() == before,
        "nothing changed"
    );
    drop(c);
}

#[test]
fn shared_writers_from_many_threads_all_land_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for durability in [Durability::GroupCommit, Durability::Fsync] {
        let path = dir.path().join(format!("{durability:?}"));
        let options = CollectionOptions::new(DIM, Distance::Euclid).with_wal(WalOptions {
            file_capacity: 4096,
            durability,
        });
        let shared = std::sync::Arc::new(SharedCollection::new(
            Collection::create(&path, options).unwrap(),
        ));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let shared = std::sync::Arc::clone(&shared);
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..25u64 {
                        let id = t * 100 + i;
                        let p = PointData {
                            id: PointId::Num(id),
                            vector: vector(id, 1),
                            payload: payload("t", t as i64),
                        };
                        seqs.push(shared.upsert_points(vec![p]).unwrap());
                        if i % 10 == 9 {
                            // Reads interleave with the writes.
                            assert!(shared
                                .read()
                                .unwrap()
                                .get(PointId::Num(id))
                                .unwrap()
                                .is_some());
                        }
                    }
                    seqs
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=100).collect::<Vec<u64>>(),
            "one sequence number each"
        );
        shared.delete_points(vec![PointId::Num(0)]).unwrap();
        let c = std::sync::Arc::into_inner(shared)
            .unwrap()
            .into_inner()
            .unwrap();
        drop(c); // no flush: the WAL has everything
        let c = Collection::open(&path).unwrap();
        assert_eq!(c.count().unwrap(), 99);
        assert_eq!(c.get(PointId::Num(301)).unwrap().unwrap().payload["t"], 3);
    }
}

/// A payload index is a logged operation: it survives a reopen without
/// flush (replay), reaches sealed segments (as index files) and the
/// appendable segment that replaces a sealed one, and filtered searches
/// take the indexed plan in every segment.
#[test]
fn field_indexes_reach_every_segment_and_survive_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collection::create(dir.path(), options()).unwrap();
    let points = |range: std::ops::Range<u64>| {
        range
            .map(|i| {
                let mut p = Payload::new();
                p.insert("tenant".into(), format!("t{}", i % 50).into());
                PointData {
                    id: PointId::Num(i),
                    vector: vector(i, 0),
                    payload: p,
                }
            })
            .collect::<Vec<_>>()
    };
    c.upsert_points(points(0..500)).unwrap();
    let schema = FieldSchema::new("tenant", FieldType::Keyword).tenant();
    c.create_field_index(schema.clone()).unwrap();
    assert!(c
        .create_field_index(FieldSchema::new("", FieldType::Bool))
        .is_err());
    drop(c);
    let mut c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.field_indexes(), std::slice::from_ref(&schema));
    c.seal_appendable().unwrap();
    c.upsert_points(points(500..1000)).unwrap();
    let f = Filter::must(Condition::keyword("tenant", "t7"));
    let check = |c: &Collection| {
        let hits = c.search(&vector(7, 0), 100, Some(&f)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(hits
            .iter()
            .all(|h| matches!(h.id, PointId::Num(n) if n % 50 == 7)));
        assert_eq!(hits[0].id, PointId::Num(7));
        assert_eq!(c.appendable.field_indexes(), std::slice::from_ref(&schema));
        for (_, s) in &c.sealed {
            assert_eq!(s.field_indexes(), std::slice::from_ref(&schema));
        }
        assert_eq!(
            c.appendable.plan(&f).unwrap().kind,
            crate::PlanKind::Indexed
        );
    };
    check(&c);
    drop(c);
    let mut c = Collection::open(dir.path()).unwrap();
    check(&c);
    c.drop_field_index("tenant").unwrap();
    assert!(c.field_indexes().is_empty());
    assert_eq!(
        c.appendable.plan(&f).unwrap().kind,
        crate::PlanKind::FullScan
    );
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    assert!(c.field_indexes().is_empty());
    assert!(c.sealed.iter().all(|(_, s)| s.field_indexes().is_empty()));
}
