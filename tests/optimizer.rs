//! The optimizer on real collections: each optimization (convert, vacuum,
//! merge, defragment) keeps every point bit-exact with its version, and a
//! defragmented segment holds each tenant in one run of offsets at minimal
//! page locality; with a writer and a searcher running, the background
//! optimizer never makes a point vanish or appear twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vecseg::collection::{
    Collection, CollectionOptions, Durability, OptimizationKind, OptimizerOptions, PointData,
    Quantization, SharedCollection, WalOptions,
};
use vecseg::index::hnsw::HnswConfig;
use vecseg::kinds::open_mmap_segment;
use vecseg::mmap::MmapVectorOptions;
use vecseg::{
    Distance, FieldSchema, FieldType, Payload, PayloadStorageRead, PointId, VectorElement,
};

const DIM: usize = 8;

fn options() -> CollectionOptions {
    CollectionOptions::new(DIM, Distance::Dot)
        .with_wal(WalOptions {
            file_capacity: 1 << 20,
            durability: Durability::None,
        })
        .with_optimizer(OptimizerOptions {
            convert_points: 500,
            convert_bytes: u64::MAX,
            max_segments: 2,
            vacuum_ratio: 0.2,
            vacuum_min_dead: 50,
            ..Default::default()
        })
}

fn point(rng: &mut impl Rng, id: u64, tenants: u64) -> PointData {
    let mut payload = Payload::new();
    payload.insert(
        "tenant".into(),
        format!("t{}", rng.gen_range(0..tenants)).into(),
    );
    payload.insert("n".into(), id.into());
    PointData {
        id: PointId::Num(id),
        vector: (0..DIM).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
        payload,
    }
}

/// id → (vector, payload, version).
type Model = BTreeMap<u64, (Vec<f32>, Payload, u64)>;

fn upsert(c: &mut Collection, model: &mut Model, points: Vec<PointData>) {
    let seq = c.upsert_points(points.clone()).unwrap();
    for p in points {
        let PointId::Num(n) = p.id else {
            unreachable!()
        };
        model.insert(n, (p.vector, p.payload, seq));
    }
}

/// Every point reads back bit-exact with its version, nothing else is
/// there, and search equals a brute force over the model.
fn check(c: &Collection, model: &Model, ids: u64) {
    check_points(c, model, ids);
    let query: Vec<f32> = (0..DIM).map(|i| (i as f32 * 0.7).sin()).collect();
    let mut brute: Vec<f32> = model
        .values()
        .map(|(v, _, _)| f32::score(Distance::Dot, &query, v))
        .collect();
    brute.sort_by(|a, b| b.total_cmp(a));
    brute.truncate(10);
    let hits: Vec<f32> = c
        .search(&query, 10, None)
        .unwrap()
        .iter()
        .map(|h| h.score)
        .collect();
    assert_eq!(hits, brute);
}

/// Ids of the exact top 10 of `query` in the model.
fn brute_top10(model: &Model, query: &[f32]) -> BTreeSet<u64> {
    let mut brute: Vec<(f32, u64)> = model
        .iter()
        .map(|(id, (v, _, _))| (f32::score(Distance::Dot, query, v), *id))
        .collect();
    brute.sort_by(|a, b| b.0.total_cmp(&a.0));
    brute[..10].iter().map(|b| b.1).collect()
}

/// Every point reads back bit-exact with its version, nothing else.
fn check_points(c: &Collection, model: &Model, ids: u64) {
    for id in 0..ids {
        let got = c.get(PointId::Num(id)).unwrap();
        match model.get(&id) {
            None => assert!(got.is_none(), "{id} should be absent"),
            Some((v, p, version)) => {
                let r = got.unwrap_or_else(|| panic!("{id} missing"));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&r.vector), bits(v), "vector of {id}");
                assert_eq!(&r.payload, p, "payload of {id}");
                assert_eq!(r.version, *version, "version of {id}");
            }
        }
    }
    assert_eq!(c.count().unwrap(), model.len());
}

fn kinds_run(reports: &[vecseg::collection::OptimizationReport]) -> Vec<OptimizationKind> {
    reports.iter().map(|r| r.optimization.kind).collect()
}

#[test]
fn every_optimization_keeps_every_point_and_defragments_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collection::create(dir.path(), options()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut model = Model::new();
    const IDS: u64 = 1200;

    // Convert: the appendable segment passes 500 points.
    let batch = (0..600).map(|i| point(&mut rng, i, 12)).collect();
    upsert(&mut c, &mut model, batch);
    let reports = c.optimize().unwrap();
    assert_eq!(kinds_run(&reports), vec![OptimizationKind::Convert]);
    assert_eq!(reports[0].points, 600);
    assert_eq!(c.segments()[0].2, 0, "a fresh appendable segment");
    check(&c, &model, IDS);

    // Vacuum: a third of the sealed points deleted.
    let doomed: Vec<u64> = (0..600).filter(|i| i % 3 == 0).collect();
    c.delete_points(doomed.iter().map(|&i| PointId::Num(i)).collect())
        .unwrap();
    doomed.iter().for_each(|i| drop(model.remove(i)));
    assert_eq!(
        kinds_run(&c.optimize().unwrap()),
        vec![OptimizationKind::Vacuum]
    );
    check(&c, &model, IDS);

    // Merge: three small sealed segments (sealed by hand), two wanted.
    for round in 0..2u64 {
        let batch = (0..50)
            .map(|i| point(&mut rng, 600 + round * 50 + i, 12))
            .collect();
        upsert(&mut c, &mut model, batch);
        c.seal_appendable().unwrap();
    }
    // Some changes land in sealed segments (copy-on-write) first.
    let seq = c
        .set_payload(vec![PointId::Num(1), PointId::Num(610)], {
            let mut p = Payload::new();
            p.insert("x".into(), 1.into());
            p
        })
        .unwrap();
    for id in [1, 610] {
        let m = model.get_mut(&id).unwrap();
        m.1.insert("x".into(), 1.into());
        m.2 = seq;
    }
    let reports = c.optimize().unwrap();
    assert!(
        kinds_run(&reports).contains(&OptimizationKind::Merge),
        "{reports:?}"
    );
    assert!(c.segments().len() <= 3, "at most two sealed segments");
    check(&c, &model, IDS);

    // Defragment: the tenant key set after the segments were built.
    let mut tenant = FieldSchema::new("tenant", FieldType::Keyword);
    tenant.is_tenant = true;
    c.create_field_index(tenant).unwrap();
    let reports = c.optimize().unwrap();
    assert!(!reports.is_empty());
    assert!(kinds_run(&reports)
        .iter()
        .all(|k| *k == OptimizationKind::Defragment));
    check(&c, &model, IDS);

    // Reopen (WAL replay over the optimized segments) and look inside.
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    check(&c, &model, IDS);
    let sealed: Vec<String> = c
        .segments()
        .into_iter()
        .skip(1)
        .map(|(name, kind, _)| {
            assert_eq!(kind, "mmap");
            name
        })
        .collect();
    drop(c);
    for name in sealed {
        let seg = open_mmap_segment::<f32>(
            &dir.path().join("segments").join(&name),
            &MmapVectorOptions::default(),
        )
        .unwrap();
        let table = seg.tenants().expect("a defragmented segment");
        assert_eq!(table.key, "tenant");
        for w in table.ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start, "runs are back to back");
        }
        for r in &table.ranges {
            for o in r.start..r.end {
                let p = seg.payloads().get(o).unwrap();
                assert_eq!(p["tenant"], r.value, "offset {o} in {}'s run", r.value);
            }
        }
        for t in seg.tenant_locality("tenant").unwrap() {
            assert!(
                t.pages as f64 <= 1.2 * t.min_pages as f64 + 1.0,
                "tenant {} touches {} pages, minimum {}",
                t.value,
                t.pages,
                t.min_pages
            );
        }
    }
}

#[test]
fn a_convert_writes_the_codes_the_collection_asks_for() {
    for q in [Quantization::Sq8 { quantile: None }, Quantization::Bq1] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collection::create(dir.path(), options().with_quantization(q)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut model = Model::new();
        upsert(
            &mut c,
            &mut model,
            (0..800).map(|i| point(&mut rng, i, 4)).collect(),
        );
        assert_eq!(
            kinds_run(&c.optimize().unwrap()),
            vec![OptimizationKind::Convert]
        );
        let name = c.segments()[1].0.clone();
        let codes = dir.path().join("segments").join(&name).join("quantized");
        assert!(
            codes.join("quantized.meta").exists(),
            "{}: codes written",
            q.name()
        );
        // Reads return the raw vectors; binary codes are rescored to exact
        // scores by default, scalar codes score within their error.
        let exact = q == Quantization::Bq1;
        let recall = |c: &Collection| {
            let mut found = 0;
            for t in 0..20 {
                let query: Vec<f32> = (0..DIM).map(|i| ((i * 7 + t) as f32).sin()).collect();
                let want = brute_top10(&model, &query);
                for h in c.search(&query, 10, None).unwrap() {
                    let PointId::Num(n) = h.id else {
                        unreachable!()
                    };
                    let true_score = f32::score(Distance::Dot, &query, &model[&n].0);
                    if exact {
                        assert_eq!(h.score, true_score);
                    } else {
                        assert!(
                            (h.score - true_score).abs() < 0.05,
                            "{} vs {true_score}",
                            h.score
                        );
                    }
                    found += usize::from(want.contains(&n));
                }
            }
            found as f64 / 200.0
        };
        let before = recall(&c);
        drop(c);
        let c = Collection::open(dir.path()).unwrap();
        check_points(&c, &model, 800);
        assert_eq!(recall(&c), before, "reopened with the same codes");
        // 8 components: binary codes hold 8 bits a point, so their
        // candidates (rescored) are only roughly right; random would be ~0.03.
        let floor = if exact { 0.5 } else { 0.9 };
        assert!(before >= floor, "{}: recall@10 {before}", q.name());
    }
}

#[test]
fn a_convert_builds_the_hnsw_index_the_collection_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options().with_hnsw(HnswConfig {
        payload_m: 4,
        ..Default::default()
    });
    opts.optimizer.index_points = 500;
    let mut c = Collection::create(dir.path(), opts).unwrap();
    c.create_field_index(FieldSchema::new("tenant", FieldType::Keyword).tenant())
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut model = Model::new();
    upsert(
        &mut c,
        &mut model,
        (0..900).map(|i| point(&mut rng, i, 3)).collect(),
    );
    assert_eq!(
        kinds_run(&c.optimize().unwrap()),
        vec![OptimizationKind::Convert]
    );
    let name = c.segments()[1].0.clone();
    let links = dir
        .path()
        .join("segments")
        .join(&name)
        .join("hnsw")
        .join("hnsw.links");
    assert!(links.exists(), "the links file is written");
    let recall = |c: &Collection| {
        let mut found = 0;
        for t in 0..30 {
            let query: Vec<f32> = (0..DIM).map(|i| ((i * 5 + t) as f32).cos()).collect();
            let want = brute_top10(&model, &query);
            for h in c.search(&query, 10, None).unwrap() {
                let PointId::Num(n) = h.id else {
                    unreachable!()
                };
                found += usize::from(want.contains(&n));
            }
        }
        found as f64 / 300.0
    };
    let before = recall(&c);
    assert!(before >= 0.95, "recall@10 through the graph {before}");
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    check_points(&c, &model, 900);
    assert_eq!(recall(&c), before, "the reopened index answers the same");
}

/// The acknowledged state the writer keeps: ids live and acknowledged.
#[derive(Default)]
struct Acked {
    live: BTreeSet<u64>,
    /// Ids whose delete was acknowledged (never re-inserted).
    gone: BTreeSet<u64>,
    done: bool,
}

#[test]
fn searches_never_see_a_point_twice_or_miss_one_while_the_optimizer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.optimizer.convert_points = 300;
    opts.optimizer.vacuum_min_dead = 30;
    let shared = Arc::new(SharedCollection::new(
        Collection::create(dir.path(), opts).unwrap(),
    ));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let optimizer = shared.start_optimizer(Duration::from_millis(2)).unwrap();
    const IDS: u64 = 3000;

    let writer = {
        let (shared, acked) = (Arc::clone(&shared), Arc::clone(&acked));
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            for id in 0..IDS {
                if id % 500 == 499 {
                    // Let the optimizer catch up now and then, so converts
                    // pile up into merges while the searcher runs.
                    for _ in 0..400 {
                        if shared.read().unwrap().plan_optimizations().is_empty() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                shared.upsert_points(vec![point(&mut rng, id, 20)]).unwrap();
                acked.lock().unwrap().live.insert(id);
                let pick = |rng: &mut rand::rngs::StdRng| {
                    let live = &acked.lock().unwrap().live;
                    live.iter().nth(rng.gen_range(0..live.len())).copied()
                };
                if id % 5 == 0 {
                    // A payload change: copy-on-write when the point is sealed.
                    if let Some(v) = pick(&mut rng) {
                        let mut p = Payload::new();
                        p.insert("touched".into(), id.into());
                        shared.set_payload(vec![PointId::Num(v)], p).unwrap();
                    }
                }
                if id % 7 == 0 {
                    if let Some(v) = pick(&mut rng) {
                        // Not required from now on, gone once acknowledged.
                        acked.lock().unwrap().live.remove(&v);
                        shared.delete_points(vec![PointId::Num(v)]).unwrap();
                        acked.lock().unwrap().gone.insert(v);
                    }
                }
            }
            acked.lock().unwrap().done = true;
        })
    };

    let mut rounds = 0;
    let query = vec![0.5f32; DIM];
    loop {
        let (before, gone, done) = {
            let a = acked.lock().unwrap();
            (a.live.clone(), a.gone.clone(), a.done)
        };
        let (hits, scrolled) = {
            let c = shared.read().unwrap();
            (
                c.search(&query, IDS as usize, None).unwrap(),
                c.scroll(None, usize::MAX, None).unwrap(),
            )
        };
        let after = acked.lock().unwrap().live.clone();
        let required: BTreeSet<u64> = before.intersection(&after).copied().collect();
        let hit_ids: Vec<u64> = hits
            .iter()
            .map(|h| match h.id {
                PointId::Num(n) => n,
                other => panic!("{other}"),
            })
            .collect();
        let unique: BTreeSet<u64> = hit_ids.iter().copied().collect();
        assert_eq!(unique.len(), hit_ids.len(), "a point returned twice");
        assert!(
            required.is_subset(&unique),
            "search missed {:?}",
            required.difference(&unique).take(5).collect::<Vec<_>>()
        );
        let scrolled: BTreeSet<u64> = scrolled
            .iter()
            .map(|id| match id {
                PointId::Num(n) => *n,
                other => panic!("{other}"),
            })
            .collect();
        assert!(required.is_subset(&scrolled), "scroll missed a point");
        assert!(
            unique.is_disjoint(&gone),
            "a deleted point came back: {:?}",
            unique.intersection(&gone).take(5).collect::<Vec<_>>()
        );
        assert_eq!(scrolled, unique, "search (k = all) and scroll agree");
        rounds += 1;
        if done {
            break;
        }
    }
    writer.join().unwrap();
    let reports = optimizer.stop().unwrap();
    let kinds: BTreeSet<&str> = reports.iter().map(|r| r.optimization.kind.name()).collect();
    assert!(kinds.contains("convert"), "{kinds:?}");
    assert!(kinds.contains("merge"), "{kinds:?}");
    assert!(rounds > 3, "the searcher ran {rounds} rounds only");
    println!(
        "{rounds} search rounds against {} optimizations: {:?}",
        reports.len(),
        reports
            .iter()
            .map(|r| r.optimization.kind.name())
            .collect::<Vec<_>>()
    );
    let live = acked.lock().unwrap().live.clone();
    let c = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
    assert_eq!(c.count().unwrap(), live.len());
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    let all: BTreeSet<u64> = c
        .scroll(None, usize::MAX, None)
        .unwrap()
        .into_iter()
        .map(|id| match id {
            PointId::Num(n) => n,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(all, live, "after reopen");
}
