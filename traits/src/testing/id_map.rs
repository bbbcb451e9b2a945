//! Checks for id mappers.

use std::collections::BTreeMap;

use crate::id_map::{AppendableIdMapper, IdMapper, IdMapperRead};
use crate::testing::{temp_dir, AppendableIdMapperFactory, IdMapperFactory, Rng};
use crate::types::{PointId, PointOffset, Version};

type Links = Vec<(PointId, PointOffset, Version)>;

fn sample(n: usize, seed: u64) -> (Links, usize) {
    let mut rng = Rng::new(seed);
    let mut links = Vec::new();
    for o in 0..n as PointOffset {
        if o % 6 == 5 {
            continue; // an allocated but dropped offset
        }
        let id = if o % 3 == 0 {
            PointId::Uuid(uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()))
        } else {
            PointId::Num(rng.next_u64() >> (rng.below(60) + 1))
        };
        links.push((id, o, 1 + rng.next_u64() % 1000));
    }
    links.sort_by_key(|l| l.0);
    links.dedup_by_key(|l| l.0);
    (links, n)
}

fn assert_matches<M: IdMapperRead>(
    m: &M,
    model: &BTreeMap<PointId, (PointOffset, Version)>,
    total: usize,
) {
    assert_eq!(m.total_count(), total, "total_count");
    assert_eq!(m.available_count(), model.len(), "available_count");
    for (id, (o, v)) in model {
        assert_eq!(m.internal(*id).unwrap(), Some(*o), "internal({id})");
        assert_eq!(m.external(*o).unwrap(), Some(*id), "external({o})");
        assert_eq!(m.version(*o).unwrap(), Some(*v), "version({o})");
    }
    let mapped: std::collections::HashSet<_> = model.values().map(|(o, _)| *o).collect();
    for o in 0..total as PointOffset {
        if !mapped.contains(&o) {
            assert_eq!(m.external(o).unwrap(), None, "external of unmapped {o}");
        }
    }
    let all: Vec<_> = m.iter_from(None).map(Result::unwrap).collect();
    let want: Vec<_> = model.iter().map(|(id, (o, _))| (*id, *o)).collect();
    assert_eq!(all, want, "iteration in external-id order");
    if let Some((mid, _)) = model.iter().nth(model.len() / 2) {
        let tail: Vec<_> = m.iter_from(Some(*mid)).map(Result::unwrap).collect();
        let want_tail: Vec<_> = model.range(*mid..).map(|(id, (o, _))| (*id, *o)).collect();
        assert_eq!(tail, want_tail, "iteration from {mid}");
    }
}

/// Both directions, versions, counts and ordered iteration match what was built.
pub fn lookups_match_data<F: IdMapperFactory>(f: &F) {
    let dir = temp_dir();
    let (links, total) = sample(500, 31);
    let model: BTreeMap<_, _> = links.iter().map(|(id, o, v)| (*id, (*o, *v))).collect();
    let m = f.build(dir.path(), &links, total).unwrap();
    assert_matches(&m, &model, total);
    let m = f.reopen(dir.path(), m).unwrap();
    assert_matches(&m, &model, total);
}

/// Ids that were never inserted are absent, including ones colliding with
/// stored ids in other ways (same number as a UUID's bits, neighbours).
pub fn unknown_ids_are_absent<F: IdMapperFactory>(f: &F) {
    let dir = temp_dir();
    let (links, total) = sample(300, 32);
    let m = f.build(dir.path(), &links, total).unwrap();
    let known: std::collections::HashSet<_> = links.iter().map(|l| l.0).collect();
    let mut rng = Rng::new(33);
    let mut probes = Vec::new();
    for (id, _, _) in &links {
        match id {
            PointId::Num(n) => {
                probes.push(PointId::Num(n.wrapping_add(1)));
                probes.push(PointId::Uuid(uuid::Uuid::from_u128(*n as u128)));
            }
            PointId::Uuid(u) => probes.push(PointId::Num(u.as_u128() as u64)),
        }
    }
    for _ in 0..2000 {
        probes.push(PointId::Num(rng.next_u64()));
    }
    for p in probes.into_iter().filter(|p| !known.contains(p)) {
        assert_eq!(m.internal(p).unwrap(), None, "unknown id {p} must not map");
    }
    assert_eq!(m.external(total as PointOffset).unwrap(), None);
    assert_eq!(m.external(u32::MAX).unwrap(), None);
    assert_eq!(m.version(u32::MAX).unwrap(), None);
}

/// Dropping ids and changing versions persist across reopen.
pub fn drop_and_versions_persist<F: IdMapperFactory>(f: &F) {
    let dir = temp_dir();
    let (links, total) = sample(200, 34);
    let mut model: BTreeMap<_, _> = links.iter().map(|(id, o, v)| (*id, (*o, *v))).collect();
    let mut m = f.build(dir.path(), &links, total).unwrap();
    for (i, (id, o, _)) in links.iter().enumerate() {
        match i % 4 {
            0 => {
                assert_eq!(m.drop_id(*id).unwrap(), Some(*o));
                assert_eq!(m.drop_id(*id).unwrap(), None, "second drop");
                model.remove(id);
            }
            1 => {
                m.set_version(*o, 5000 + i as Version).unwrap();
                model.insert(*id, (*o, 5000 + i as Version));
            }
            _ => {}
        }
    }
    assert_eq!(m.drop_id(PointId::Num(u64::MAX)).unwrap(), None);
    assert_matches(&m, &model, total);
    m.flush_mappings().unwrap();
    m.flush_versions().unwrap();
    let m = f.reopen(dir.path(), m).unwrap();
    assert_matches(&m, &model, total);
}

/// New links, relinking an id to a new offset, drops, and reopen.
pub fn links_relinks_and_reopen<F: AppendableIdMapperFactory>(f: &F) {
    let dir = temp_dir();
    let mut m = f.create(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng::new(35);
    let mut total = 0usize;
    for step in 0..2000u64 {
        let id = if step % 4 == 0 {
            PointId::Uuid(uuid::Uuid::from_u128(rng.below(50) as u128))
        } else {
            PointId::Num(rng.below(300) as u64)
        };
        if rng.below(5) == 0 {
            let want = model.remove(&id).map(|(o, _)| o);
            assert_eq!(m.drop_id(id).unwrap(), want);
        } else {
            // Relinking moves the point to a fresh offset, as a segment does.
            let o = total as PointOffset;
            total += 1;
            m.set_link(id, o, step + 1).unwrap();
            if let Some((old, _)) = model.insert(id, (o, step + 1)) {
                assert_eq!(
                    m.external(old).unwrap(),
                    None,
                    "old offset of relinked id is unmapped"
                );
            }
        }
        if step % 500 == 499 {
            m = f.reopen(dir.path(), m).unwrap();
        }
    }
    assert!(m
        .set_link(PointId::Num(1), total as PointOffset + 5, 1)
        .is_err());
    assert_matches(&m, &model, total);
    let m = f.reopen(dir.path(), m).unwrap();
    assert_matches(&m, &model, total);
}
