//! Checks for whole segments, including a model-based property test.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use crate::error::StorageError;
use crate::filter::{Condition, Filter};
use crate::segment::{AppendableSegmentEntry, SegmentEntry};
use crate::testing::{temp_dir, ImmutableSegmentFactory, ModelPoint, SegmentFactory};
use crate::types::{Payload, PointId, ScoredPoint, Version};
use crate::{Distance, VectorElement};

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().expect("object literal")
}

/// The reference model: what a segment should contain.
#[derive(Debug, Clone, Default)]
pub struct SegmentModel {
    /// Live points by id (vectors raw, as given).
    pub points: BTreeMap<PointId, ModelPoint>,
    /// Largest applied version.
    pub version: Version,
}

impl SegmentModel {
    fn apply_version(&mut self, v: Version) {
        self.version = self.version.max(v);
    }
}

/// Compare every read of `s` with the model: counts, get, scroll (plain and
/// filtered) and search (plain and filtered) for a few queries.
pub fn assert_segment_matches<S: SegmentEntry<f32> + ?Sized>(s: &S, m: &SegmentModel, dim: usize) {
    let distance = s.distance();
    assert_eq!(s.point_count(), m.points.len(), "point_count");
    assert_eq!(s.version(), m.version, "segment version");
    for (id, p) in &m.points {
        let rec = s
            .get(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("point {id} missing"));
        assert_eq!(rec.id, *id);
        assert_eq!(rec.version, p.version, "version of {id}");
        assert_eq!(s.point_version(*id).unwrap(), Some(p.version));
        let want = p.stored_vector(distance);
        assert!(
            rec.vector
                .iter()
                .zip(&want)
                .all(|(a, b)| (a - b).abs() < 1e-5),
            "vector of {id}: {:?} vs {:?}",
            rec.vector,
            want
        );
        assert_eq!(rec.payload, p.payload, "payload of {id}");
    }
    for absent in [
        PointId::Num(u64::MAX - 1),
        PointId::Uuid(uuid::Uuid::from_u128(7)),
    ] {
        if !m.points.contains_key(&absent) {
            assert!(s.get(absent).unwrap().is_none());
            assert_eq!(s.point_version(absent).unwrap(), None);
        }
    }
    let all: Vec<PointId> = m.points.keys().copied().collect();
    assert_eq!(s.scroll(None, usize::MAX, None).unwrap(), all, "scroll all");
    if all.len() > 2 {
        let from = all[all.len() / 2];
        let want: Vec<PointId> = all
            .iter()
            .copied()
            .filter(|id| *id >= from)
            .take(2)
            .collect();
        assert_eq!(s.scroll(Some(from), 2, None).unwrap(), want, "scroll page");
    }
    let tenant = Filter::must(Condition::keyword("tenant", "t1"));
    let want: Vec<PointId> = m
        .points
        .values()
        .filter(|p| tenant.matches(p.id, &p.payload))
        .map(|p| p.id)
        .collect();
    assert_eq!(
        s.scroll(None, usize::MAX, Some(&tenant)).unwrap(),
        want,
        "filtered scroll"
    );

    let mut rng = crate::testing::Rng::new(m.points.len() as u64 + 99);
    for q in 0..3 {
        let query = rng.vector(dim);
        for filter in [None, Some(&tenant)] {
            for k in [1usize, 5, 1000] {
                let got = s.search(&query, k, filter).unwrap();
                check_search(m, distance, &query, k, filter, &got, q);
            }
        }
    }
}

/// A search result is right when it has the expected length, is sorted,
/// every score is the true score of its point, and nothing left out scores
/// better than the last hit (ties may be broken either way).
fn check_search(
    m: &SegmentModel,
    distance: Distance,
    query: &[f32],
    k: usize,
    filter: Option<&Filter>,
    got: &[ScoredPoint],
    q: usize,
) {
    let mut stored_query = query.to_vec();
    f32::preprocess(distance, &mut stored_query).unwrap();
    let candidates: BTreeMap<PointId, (f32, Version)> = m
        .points
        .values()
        .filter(|p| filter.is_none_or(|f| f.matches(p.id, &p.payload)))
        .map(|p| {
            let score = f32::score(distance, &stored_query, &p.stored_vector(distance));
            (p.id, (score, p.version))
        })
        .collect();
    let ctx = format!("query {q} k {k} filter {}", filter.is_some());
    assert_eq!(got.len(), k.min(candidates.len()), "result length, {ctx}");
    for w in got.windows(2) {
        assert!(w[0].score >= w[1].score, "sorted best first, {ctx}");
    }
    let tol = 1e-3;
    for hit in got {
        let (score, version) = candidates
            .get(&hit.id)
            .unwrap_or_else(|| panic!("hit {} is not a candidate, {ctx}", hit.id));
        assert!(
            (hit.score - score).abs() < tol,
            "score of {}, {ctx}",
            hit.id
        );
        assert_eq!(hit.version, *version);
    }
    if let Some(last) = got.last() {
        let returned: std::collections::HashSet<_> = got.iter().map(|h| h.id).collect();
        for (id, (score, _)) in &candidates {
            if !returned.contains(id) {
                assert!(
                    *score <= last.score + tol,
                    "{id} scores {score} but was left out, {ctx}"
                );
            }
        }
    }
}

fn upsert_all<S: AppendableSegmentEntry<f32>>(
    s: &mut S,
    m: &mut SegmentModel,
    points: &[ModelPoint],
) {
    for p in points {
        assert!(s.upsert(p.version, p.id, &p.vector, &p.payload).unwrap());
        m.points.insert(p.id, p.clone());
        m.apply_version(p.version);
    }
}

/// Upserts are readable by get, scroll and search, with every distance.
pub fn upsert_get_search_scroll<F: SegmentFactory>(f: &F) {
    for distance in Distance::ALL {
        let dir = temp_dir();
        let mut s = f.create(dir.path(), 8, distance).unwrap();
        let mut m = SegmentModel::default();
        assert_segment_matches(&s, &m, 8);
        upsert_all(&mut s, &mut m, &ModelPoint::random_points(150, 8, 41));
        assert_segment_matches(&s, &m, 8);
        // Replace some points wholesale.
        let mut replacements = ModelPoint::random_points(20, 8, 42);
        for (i, p) in replacements.iter_mut().enumerate() {
            p.id = *m.points.keys().nth(i * 3).unwrap();
            p.version = 1000 + i as Version;
        }
        upsert_all(&mut s, &mut m, &replacements);
        assert_segment_matches(&s, &m, 8);
    }
}

/// Operations older than a point's version are ignored; replaying the same
/// operations again changes nothing.
pub fn versions_make_replay_idempotent<F: SegmentFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), 4, Distance::Dot).unwrap();
    let id = PointId::Num(10);
    let v1 = [1.0, 0.0, 0.0, 0.0];
    let v2 = [0.0, 2.0, 0.0, 0.0];
    assert!(s.upsert(5, id, &v1, &obj(json!({"a": 1}))).unwrap());
    assert!(
        !s.upsert(4, id, &v2, &Payload::new()).unwrap(),
        "stale upsert ignored"
    );
    assert!(
        !s.set_payload(3, id, &obj(json!({"b": 2}))).unwrap(),
        "stale set ignored"
    );
    assert!(!s.delete(4, id).unwrap(), "stale delete ignored");
    assert!(!s.clear_payload(1, id).unwrap(), "stale clear ignored");
    let rec = s.get(id).unwrap().unwrap();
    assert_eq!((rec.version, rec.vector.as_slice()), (5, &v1[..]));
    assert_eq!(rec.payload, obj(json!({"a": 1})));
    assert_eq!(s.version(), 5);
    // Same version applies again (idempotent replay of the same operation).
    assert!(s.upsert(5, id, &v1, &obj(json!({"a": 1}))).unwrap());
    assert!(s.upsert(7, id, &v2, &Payload::new()).unwrap());
    assert_eq!(s.get(id).unwrap().unwrap().vector, v2.to_vec());
    assert_eq!(s.version(), 7);
    assert!(s.delete(8, id).unwrap());
    assert!(s.get(id).unwrap().is_none());
    assert!(!s.delete(9, id).unwrap(), "deleting an absent point");
    assert_eq!(s.version(), 8);
    assert_eq!(s.point_count(), 0);
}

/// set / overwrite / delete keys / clear payload, and their errors.
pub fn payload_operations<F: SegmentFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), 3, Distance::Euclid).unwrap();
    let id = PointId::Uuid(uuid::Uuid::from_u128(0xabc));
    s.upsert(1, id, &[1.0, 2.0, 3.0], &obj(json!({"a": 1, "b": 2})))
        .unwrap();
    assert!(s
        .set_payload(2, id, &obj(json!({"b": 3, "c": "x"})))
        .unwrap());
    assert_eq!(
        s.get(id).unwrap().unwrap().payload,
        obj(json!({"a": 1, "b": 3, "c": "x"}))
    );
    assert!(s
        .delete_payload_keys(3, id, &["a".into(), "zz".into()])
        .unwrap());
    assert_eq!(
        s.get(id).unwrap().unwrap().payload,
        obj(json!({"b": 3, "c": "x"}))
    );
    assert!(s
        .overwrite_payload(4, id, &obj(json!({"new": true})))
        .unwrap());
    assert_eq!(
        s.get(id).unwrap().unwrap().payload,
        obj(json!({"new": true}))
    );
    assert!(s.clear_payload(5, id).unwrap());
    let rec = s.get(id).unwrap().unwrap();
    assert_eq!((rec.payload, rec.version), (Payload::new(), 5));
    let missing = PointId::Num(404);
    for result in [
        s.set_payload(6, missing, &Payload::new()),
        s.overwrite_payload(6, missing, &Payload::new()),
        s.delete_payload_keys(6, missing, &[]),
        s.clear_payload(6, missing),
    ] {
        assert!(matches!(result, Err(StorageError::NotFound(p)) if p == missing));
    }
    assert_eq!(s.version(), 5);
}

/// Wrong dimension, NaN / infinite components and zero vectors for cosine
/// are errors that leave the segment unchanged.
pub fn bad_input_is_an_error<F: SegmentFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), 3, Distance::Cosine).unwrap();
    let p = Payload::new();
    let id = PointId::Num(1);
    assert!(matches!(
        s.upsert(1, id, &[1.0, 2.0], &p),
        Err(StorageError::DimensionMismatch {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        s.upsert(1, id, &[1.0, f32::NAN, 0.0], &p),
        Err(StorageError::NonFiniteComponent { index: 1 })
    ));
    assert!(matches!(
        s.upsert(1, id, &[f32::NEG_INFINITY, 0.0, 0.0], &p),
        Err(StorageError::NonFiniteComponent { index: 0 })
    ));
    assert!(matches!(
        s.upsert(1, id, &[0.0, 0.0, 0.0], &p),
        Err(StorageError::ZeroVector)
    ));
    assert!(matches!(
        s.search(&[1.0, 2.0], 3, None),
        Err(StorageError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        s.search(&[f32::NAN, 0.0, 1.0], 3, None),
        Err(StorageError::NonFiniteComponent { .. })
    ));
    assert_eq!((s.point_count(), s.version()), (0, 0));
    s.upsert(2, id, &[0.0, 3.0, 4.0], &p).unwrap();
    assert!(matches!(
        s.upsert(3, id, &[1.0], &p),
        Err(StorageError::DimensionMismatch { .. })
    ));
    let rec = s.get(id).unwrap().unwrap();
    assert_eq!((rec.version, rec.vector), (2, vec![0.0, 0.6, 0.8]));
    assert!(s.search(&[1.0, 0.0, 0.0], 0, None).unwrap().is_empty());
}

/// Flush and reopen keep points, versions, payloads and deletions.
pub fn reopen_keeps_everything<F: SegmentFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), 6, Distance::Cosine).unwrap();
    let mut m = SegmentModel::default();
    upsert_all(&mut s, &mut m, &ModelPoint::random_points(300, 6, 43));
    let ids: Vec<PointId> = m.points.keys().copied().collect();
    for (i, id) in ids.iter().enumerate().step_by(7) {
        let v = 2000 + i as Version;
        assert!(s.delete(v, *id).unwrap());
        m.points.remove(id);
        m.apply_version(v);
    }
    let id = ids[1];
    s.set_payload(5000, id, &obj(json!({"late": 1}))).unwrap();
    let p = m.points.get_mut(&id).unwrap();
    p.payload.insert("late".into(), json!(1));
    p.version = 5000;
    m.apply_version(5000);
    assert_eq!(s.flush().unwrap(), 5000);
    assert_eq!(s.persisted_version(), 5000);
    let mut s = f.reopen(dir.path(), s).unwrap();
    assert_eq!(s.persisted_version(), 5000);
    assert_segment_matches(&s, &m, 6);
    // It keeps working after reopen.
    upsert_all(
        &mut s,
        &mut m,
        &ModelPoint::random_points(10, 6, 44)
            .into_iter()
            .map(|mut p| {
                p.version += 6000;
                p
            })
            .collect::<Vec<_>>(),
    );
    let s = f.reopen(dir.path(), s).unwrap();
    assert_segment_matches(&s, &m, 6);
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Upsert {
        id: u64,
        vector: Vec<i8>,
        tenant: u8,
        stale: bool,
    },
    Delete {
        id: u64,
        stale: bool,
    },
    SetPayload {
        id: u64,
        n: i64,
    },
    Overwrite {
        id: u64,
        tenant: u8,
    },
    DeleteKey {
        id: u64,
    },
    Clear {
        id: u64,
    },
    Flush,
    Reopen,
}

const MODEL_DIM: usize = 4;

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = 0u64..24;
    prop_oneof![
        4 => (id.clone(), proptest::collection::vec(-4i8..5, MODEL_DIM), 0u8..3, proptest::bool::weighted(0.15))
            .prop_map(|(id, vector, tenant, stale)| Op::Upsert { id, vector, tenant, stale }),
        2 => (id.clone(), proptest::bool::weighted(0.2)).prop_map(|(id, stale)| Op::Delete { id, stale }),
        1 => (id.clone(), 0i64..5).prop_map(|(id, n)| Op::SetPayload { id, n }),
        1 => (id.clone(), 0u8..3).prop_map(|(id, tenant)| Op::Overwrite { id, tenant }),
        1 => id.clone().prop_map(|id| Op::DeleteKey { id }),
        1 => id.prop_map(|id| Op::Clear { id }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// Drive a segment with random operation sequences (upserts, deletes,
/// payload changes, stale versions, flushes, reopens) and compare every read
/// and search with [`SegmentModel`]; 256 cases.
pub fn matches_model_under_random_operations<F: SegmentFactory>(f: &F) {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op_strategy(), 1..40),
        proptest::sample::select(&[Distance::Cosine, Distance::Dot, Distance::Euclid][..]),
    );
    runner
        .run(&strategy, |(ops, distance)| {
            run_model_case(f, &ops, distance);
            Ok(())
        })
        .unwrap();
}

fn run_model_case<F: SegmentFactory>(f: &F, ops: &[Op], distance: Distance) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), MODEL_DIM, distance).unwrap();
    let mut m = SegmentModel::default();
    let mut clock: Version = 10;
    for op in ops {
        clock += 1;
        match *op {
            Op::Upsert {
                id,
                ref vector,
                tenant,
                stale,
            } => {
                let id = PointId::Num(id);
                let mut vector: Vec<f32> = vector.iter().map(|x| f32::from(*x)).collect();
                if vector.iter().all(|x| *x == 0.0) {
                    vector[0] = 1.0;
                }
                let version = if stale { clock - 5 } else { clock };
                let mut payload = tenant_payload(tenant);
                payload.insert("n".into(), json!(1));
                let applies = m.points.get(&id).is_none_or(|p| version >= p.version);
                assert_eq!(
                    s.upsert(version, id, &vector, &payload).unwrap(),
                    applies,
                    "{op:?}"
                );
                if applies {
                    m.points.insert(
                        id,
                        ModelPoint {
                            id,
                            version,
                            vector,
                            payload,
                        },
                    );
                    m.apply_version(version);
                }
            }
            Op::Delete { id, stale } => {
                let id = PointId::Num(id);
                let version = if stale { clock - 5 } else { clock };
                let applies = m.points.get(&id).is_some_and(|p| version >= p.version);
                assert_eq!(s.delete(version, id).unwrap(), applies, "{op:?}");
                if applies {
                    m.points.remove(&id);
                    m.apply_version(version);
                }
            }
            Op::SetPayload { id, .. }
            | Op::Overwrite { id, .. }
            | Op::DeleteKey { id }
            | Op::Clear { id } => {
                let id = PointId::Num(id);
                let result = apply_payload_op(&mut s, clock, id, op);
                let Some(point) = m.points.get_mut(&id) else {
                    assert!(matches!(result, Err(StorageError::NotFound(_))), "{op:?}");
                    continue;
                };
                assert!(result.unwrap(), "{op:?}");
                match op {
                    Op::SetPayload { n, .. } => {
                        point.payload.insert("n".into(), json!(n));
                    }
                    Op::Overwrite { tenant, .. } => point.payload = tenant_payload(*tenant),
                    Op::DeleteKey { .. } => {
                        point.payload.remove("n");
                    }
                    _ => point.payload.clear(),
                }
                point.version = clock;
                m.apply_version(clock);
            }
            Op::Flush => {
                assert_eq!(s.flush().unwrap(), m.version);
            }
            Op::Reopen => {
                s = f.reopen(dir.path(), s).unwrap();
            }
        }
    }
    assert_segment_matches(&s, &m, MODEL_DIM);
}

fn tenant_payload(tenant: u8) -> Payload {
    obj(json!({ "tenant": format!("t{tenant}") }))
}

fn apply_payload_op<S: AppendableSegmentEntry<f32>>(
    s: &mut S,
    version: Version,
    id: PointId,
    op: &Op,
) -> crate::Result<bool> {
    match op {
        Op::SetPayload { n, .. } => s.set_payload(version, id, &obj(json!({ "n": n }))),
        Op::Overwrite { tenant, .. } => s.overwrite_payload(version, id, &tenant_payload(*tenant)),
        Op::DeleteKey { .. } => s.delete_payload_keys(version, id, &["n".into()]),
        _ => s.clear_payload(version, id),
    }
}

/// An immutable segment built from points reads back exactly those points.
pub fn immutable_reads_match_points<F: ImmutableSegmentFactory>(f: &F) {
    for distance in [Distance::Cosine, Distance::Euclid] {
        let dir = temp_dir();
        let points = ModelPoint::random_points(400, 10, 45);
        let s = f.build(dir.path(), 10, distance, &points).unwrap();
        let m = SegmentModel {
            version: points.iter().map(|p| p.version).max().unwrap_or(0),
            points: points.into_iter().map(|p| (p.id, p)).collect(),
        };
        assert_segment_matches(&s, &m, 10);
        let s = f.reopen(dir.path(), s).unwrap();
        assert_segment_matches(&s, &m, 10);
    }
}

/// Deletes and payload clears on an immutable segment persist.
pub fn immutable_delete_and_clear_persist<F: ImmutableSegmentFactory>(f: &F) {
    let dir = temp_dir();
    let points = ModelPoint::random_points(200, 5, 46);
    let mut s = f.build(dir.path(), 5, Distance::Dot, &points).unwrap();
    let mut m = SegmentModel {
        version: points.len() as Version,
        points: points.iter().cloned().map(|p| (p.id, p)).collect(),
    };
    for (i, p) in points.iter().enumerate() {
        let v = 1000 + i as Version;
        match i % 5 {
            0 => {
                assert!(s.delete(v, p.id).unwrap());
                m.points.remove(&p.id);
                m.apply_version(v);
            }
            1 => {
                assert!(s.clear_payload(v, p.id).unwrap());
                let mp = m.points.get_mut(&p.id).unwrap();
                mp.payload.clear();
                mp.version = v;
                m.apply_version(v);
            }
            2 => assert!(!s.delete(0, p.id).unwrap(), "stale delete"),
            _ => {}
        }
    }
    assert_segment_matches(&s, &m, 5);
    s.flush().unwrap();
    let s = f.reopen(dir.path(), s).unwrap();
    assert_segment_matches(&s, &m, 5);
}
