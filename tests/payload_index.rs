//! Payload indexes against a model: random payload writes and deletes on
//! segments with indexes on several keys, then random filters; search,
//! scroll and count (indexed plan or full scan) must return exactly the
//! points the model's payloads match. Covers the mutable form (memory and
//! chunked segments, across flush and reopen) and the immutable one (mmap
//! segments built from them, with payload clears and deletes after the
//! build, across reopen and a damaged index file).

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use serde_json::{json, Value};
use vecseg::index::payload::immutable_path;
use vecseg::kinds::{create_chunked_segment, open_chunked_segment, open_mmap_segment};
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::mmap::MmapVectorOptions;
use vecseg::testing::Rng;
use vecseg::{
    Condition, Distance, FieldSchema, FieldType, Filter, IdMapperRead, Payload, PayloadStorageRead,
    PlanKind, PointId, Range, Segment, VectorStorageRead,
};

const DIM: usize = 4;
const IDS: usize = 160;

fn schemas() -> Vec<FieldSchema> {
    vec![
        FieldSchema::new("t", FieldType::Keyword).tenant(),
        FieldSchema::new("n", FieldType::Integer),
        FieldSchema::new("x", FieldType::Float),
        FieldSchema::new("b", FieldType::Bool),
        FieldSchema::new("meta.t", FieldType::Keyword),
    ]
}

fn keyword(rng: &mut Rng) -> Value {
    json!(["a", "b", "c", "d", "e"][rng.below(5)])
}

/// A payload whose keys sometimes hold arrays or values of another type.
fn random_payload(rng: &mut Rng) -> Payload {
    let mut p = Payload::new();
    if rng.below(8) != 0 {
        let t = match rng.below(10) {
            0 => json!([keyword(rng), keyword(rng)]),
            1 => json!(7), // mixed type: a number under a keyword key
            _ => keyword(rng),
        };
        p.insert("t".into(), t);
    }
    if rng.below(6) != 0 {
        let n = match rng.below(10) {
            0 => json!(rng.below(10) as f64 + 0.5), // a float under an integer key
            1 => json!([rng.below(10) as i64 - 5, rng.below(10) as i64 - 5]),
            2 => json!("five"),
            _ => json!(rng.below(10) as i64 - 5),
        };
        p.insert("n".into(), n);
    }
    if rng.below(4) != 0 {
        p.insert("x".into(), json!((rng.below(200) as f64 - 100.0) / 8.0));
    }
    if rng.below(3) != 0 {
        p.insert("b".into(), json!(rng.below(2) == 1));
    }
    if rng.below(3) == 0 {
        p.insert("meta".into(), json!({ "t": keyword(rng) }));
    }
    if rng.below(2) == 0 {
        p.insert("u".into(), keyword(rng)); // never indexed
    }
    p
}

fn random_range(rng: &mut Rng, scale: f64) -> Range {
    let mut bound = || match rng.below(3) {
        0 => None,
        _ => Some((rng.below(21) as f64 - 10.0) * scale / 2.0),
    };
    let (lo, hi) = (bound(), bound());
    let mut r = Range::default();
    if rng.below(2) == 0 {
        r.gt = lo;
    } else {
        r.gte = lo;
    }
    if rng.below(2) == 0 {
        r.lt = hi;
    } else {
        r.lte = hi;
    }
    r
}

fn random_condition(rng: &mut Rng, depth: usize) -> Condition {
    let s = |k: &str| k.to_string();
    match rng.below(if depth > 0 { 9 } else { 8 }) {
        0 => Condition::keyword("t", keyword(rng).as_str().unwrap()),
        1 => Condition::keyword("meta.t", keyword(rng).as_str().unwrap()),
        2 => Condition::integer("n", rng.below(10) as i64 - 5),
        3 => Condition::boolean("b", rng.below(2) == 1),
        4 => Condition::range(s("n"), random_range(rng, 1.0)),
        5 => Condition::range(s("x"), random_range(rng, 2.0)),
        6 => Condition::keyword("u", keyword(rng).as_str().unwrap()),
        7 => Condition::HasId(
            (0..rng.below(6))
                .map(|_| PointId::Num(rng.below(IDS) as u64))
                .collect(),
        ),
        _ => Condition::Filter(Box::new(random_filter(rng, depth - 1))),
    }
}

fn random_filter(rng: &mut Rng, depth: usize) -> Filter {
    let list = |rng: &mut Rng, n: usize| {
        (0..rng.below(n))
            .map(|_| random_condition(rng, depth))
            .collect()
    };
    Filter {
        must: list(rng, 3),
        should: list(rng, 3),
        must_not: list(rng, 2),
    }
}

/// The payloads of live points.
type Model = BTreeMap<PointId, Payload>;

fn expected(model: &Model, f: &Filter) -> Vec<PointId> {
    model
        .iter()
        .filter(|(id, p)| f.matches(**id, p))
        .map(|(id, _)| *id)
        .collect()
}

/// Search, scroll and count with random filters equal the model; returns
/// how many filters took the indexed plan.
fn check_filters<V, P, I>(s: &Segment<V, P, I>, model: &Model, rng: &mut Rng, what: &str) -> usize
where
    V: VectorStorageRead<Element = f32>,
    P: PayloadStorageRead,
    I: IdMapperRead,
{
    assert_eq!(s.count(None).unwrap(), model.len(), "{what}");
    let mut indexed = 0;
    for _ in 0..60 {
        let f = random_filter(rng, 1);
        let want = expected(model, &f);
        indexed += usize::from(s.plan(&f).unwrap().kind == PlanKind::Indexed);
        assert_eq!(
            s.scroll(None, usize::MAX, Some(&f)).unwrap(),
            want,
            "{what}: scroll {f:?}"
        );
        assert_eq!(
            s.count(Some(&f)).unwrap(),
            want.len(),
            "{what}: count {f:?}"
        );
        let hits = s
            .search(&[1.0, 0.5, 0.0, -0.5], usize::MAX, Some(&f))
            .unwrap();
        let got: HashSet<PointId> = hits.iter().map(|h| h.id).collect();
        assert_eq!(got, want.iter().copied().collect(), "{what}: search {f:?}");
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "{what}: order"
        );
        if let Some(from) = want.get(want.len() / 2) {
            let page = s.scroll(Some(*from), 3, Some(&f)).unwrap();
            let want_page: Vec<_> = want
                .iter()
                .filter(|id| *id >= from)
                .take(3)
                .copied()
                .collect();
            assert_eq!(page, want_page, "{what}: scroll page {f:?}");
        }
    }
    indexed
}

/// Apply `ops` random writes to `s` and the model.
fn random_writes<V, P, I>(
    s: &mut Segment<V, P, I>,
    model: &mut Model,
    rng: &mut Rng,
    version: &mut u64,
    ops: usize,
) where
    V: vecseg::AppendableVectorStorage<Element = f32>,
    P: vecseg::AppendablePayloadStorage,
    I: vecseg::AppendableIdMapper,
{
    for _ in 0..ops {
        *version += 1;
        let id = PointId::Num(rng.below(IDS) as u64);
        let present = model.contains_key(&id);
        match rng.below(10) {
            0..=4 => {
                let p = random_payload(rng);
                s.upsert(*version, id, &rng.vector(DIM), &p).unwrap();
                model.insert(id, p);
            }
            5 if present => {
                let p = random_payload(rng);
                s.set_payload(*version, id, &p).unwrap();
                model.get_mut(&id).unwrap().extend(p);
            }
            6 if present => {
                let key = ["t", "n", "x", "b", "meta"][rng.below(5)];
                s.delete_payload_keys(*version, id, &[key]).unwrap();
                model.get_mut(&id).unwrap().remove(key);
            }
            7 if present => {
                s.clear_payload(*version, id).unwrap();
                model.get_mut(&id).unwrap().clear();
            }
            8 if present => {
                let p = random_payload(rng);
                s.overwrite_payload(*version, id, &p).unwrap();
                model.insert(id, p);
            }
            _ => {
                s.delete(*version, id).unwrap();
                model.remove(&id);
            }
        }
    }
}

fn run_model(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut version = 0;
    let mut indexed = 0;

    // Mutable form in RAM, indexes created before any write.
    let mut mem = Segment::new(
        MemoryVectorStorage::<f32>::new(DIM, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    for schema in schemas() {
        mem.create_field_index(schema).unwrap();
    }
    let mut model = Model::new();
    random_writes(&mut mem, &mut model, &mut rng, &mut version, 400);
    indexed += check_filters(&mem, &model, &mut rng, "memory");

    // Mutable form on disk, indexes created after data exists; flush and
    // reopen (the index is rebuilt from the payloads) between writes.
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("chunked");
    let mut chunked = create_chunked_segment::<f32>(&seg_dir, DIM, Distance::Cosine).unwrap();
    let mut model = Model::new();
    random_writes(&mut chunked, &mut model, &mut rng, &mut version, 200);
    for schema in schemas() {
        chunked.create_field_index(schema).unwrap();
    }
    random_writes(&mut chunked, &mut model, &mut rng, &mut version, 200);
    indexed += check_filters(&chunked, &model, &mut rng, "chunked");
    chunked.flush().unwrap();
    drop(chunked);
    let mut chunked = open_chunked_segment::<f32>(&seg_dir).unwrap();
    assert_eq!(chunked.field_indexes(), schemas());
    indexed += check_filters(&chunked, &model, &mut rng, "chunked reopened");
    random_writes(&mut chunked, &mut model, &mut rng, &mut version, 200);
    indexed += check_filters(&chunked, &model, &mut rng, "chunked after reopen");

    // Immutable form: an mmap segment built from the chunked one.
    let mmap_dir = dir.path().join("mmap");
    let opts = MmapVectorOptions::default();
    let mut mmap = vecseg::migrate::build_mmap(&chunked, &mmap_dir, &opts, &mut |_| {}).unwrap();
    assert_eq!(mmap.field_indexes(), schemas());
    assert!(immutable_path(&mmap_dir, &schemas()[0]).exists());
    indexed += check_filters(&mmap, &model, &mut rng, "mmap");
    // Payload clears and deletes after the build: masked and re-checked.
    for _ in 0..30 {
        version += 1;
        let id = PointId::Num(rng.below(IDS) as u64);
        if rng.below(2) == 0 {
            if model.contains_key(&id) {
                mmap.clear_payload(version, id).unwrap();
                model.get_mut(&id).unwrap().clear();
            }
        } else {
            mmap.delete(version, id).unwrap();
            model.remove(&id);
        }
    }
    indexed += check_filters(&mmap, &model, &mut rng, "mmap after clears");
    mmap.flush().unwrap();
    drop(mmap);
    let mmap = open_mmap_segment::<f32>(&mmap_dir, &opts).unwrap();
    indexed += check_filters(&mmap, &model, &mut rng, "mmap reopened");
    drop(mmap);
    // A damaged index file is rebuilt from the payloads at open.
    let path = immutable_path(&mmap_dir, &schemas()[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(immutable_path(&mmap_dir, &schemas()[0])).unwrap();
    let mmap = open_mmap_segment::<f32>(&mmap_dir, &opts).unwrap();
    assert!(immutable_path(&mmap_dir, &schemas()[0]).exists(), "rebuilt");
    indexed += check_filters(&mmap, &model, &mut rng, "mmap with rebuilt index files");
    assert!(
        indexed > 100,
        "only {indexed} of 420 filters took an indexed plan"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn indexed_results_equal_the_model(seed in any::<u64>()) {
        run_model(seed);
    }
}

/// 2,000 points, a tenant key with one value on 1% of them and another on
/// 90%: the planner reads the index for the first and scans for the second.
#[test]
fn planner_picks_the_index_for_selective_filters_only() {
    let mut s = Segment::new(
        MemoryVectorStorage::<f32>::new(DIM, Distance::Dot).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    let mut rng = Rng::new(5);
    for i in 0..2000u64 {
        let tenant = match i % 100 {
            0 => "small",
            1..=90 => "big",
            _ => "other",
        };
        let p = json!({ "tenant": tenant, "price": i })
            .as_object()
            .unwrap()
            .clone();
        s.upsert(i + 1, PointId::Num(i), &rng.vector(DIM), &p)
            .unwrap();
    }
    let small = Filter::must(Condition::keyword("tenant", "small"));
    let big = Filter::must(Condition::keyword("tenant", "big"));
    // Without an index every filter is a full scan.
    assert_eq!(s.plan(&small).unwrap().kind, PlanKind::FullScan);
    let stats = s
        .create_field_index(FieldSchema::new("tenant", FieldType::Keyword).tenant())
        .unwrap();
    assert_eq!((stats.values, stats.points, stats.skipped), (3, 2000, 0));
    let plan = s.plan(&small).unwrap();
    assert_eq!(plan.kind, PlanKind::Indexed);
    assert_eq!((plan.candidates, plan.estimate.max), (20, 20));
    assert_eq!(s.plan(&big).unwrap().kind, PlanKind::FullScan);
    assert_eq!(s.count(Some(&small)).unwrap(), 20);
    assert_eq!(s.count(Some(&big)).unwrap(), 1800);
    // A selective must condition drives the plan even next to an
    // unindexed one; a should list needs every branch indexed.
    let price = Condition::range(
        "price",
        Range {
            lt: Some(1000.0),
            ..Default::default()
        },
    );
    let mixed = Filter {
        must: vec![price.clone(), Condition::keyword("tenant", "small")],
        ..Default::default()
    };
    assert_eq!(s.plan(&mixed).unwrap().kind, PlanKind::Indexed);
    assert_eq!(s.count(Some(&mixed)).unwrap(), 10);
    let should = Filter {
        should: vec![Condition::keyword("tenant", "small"), price],
        ..Default::default()
    };
    assert_eq!(s.plan(&should).unwrap().kind, PlanKind::FullScan);
    // NaN bounds are an error, indexed or not.
    let nan = Filter::must(Condition::range(
        "price",
        Range {
            gt: Some(f64::NAN),
            ..Default::default()
        },
    ));
    assert!(s.search(&[1.0; DIM], 3, Some(&nan)).is_err());
    assert!(s.count(Some(&nan)).is_err());
    assert!(s.payload_index().field("tenant").is_some());
    assert!(s.drop_field_index("tenant").unwrap());
    assert_eq!(s.plan(&small).unwrap().kind, PlanKind::FullScan);
}
