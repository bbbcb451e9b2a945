//! Checks for payload storages.

use std::collections::HashMap;

use serde_json::json;

use crate::payload::{AppendablePayloadStorage, PayloadStorage, PayloadStorageRead};
use crate::testing::{temp_dir, AppendablePayloadFactory, PayloadFactory, Rng};
use crate::types::{Payload, PointOffset};

fn obj(v: serde_json::Value) -> Payload {
    v.as_object().cloned().expect("object literal")
}

fn assert_matches<S: PayloadStorageRead>(
    s: &S,
    model: &HashMap<PointOffset, Payload>,
    total: usize,
) {
    for o in 0..total as PointOffset {
        let want = model.get(&o).cloned().unwrap_or_default();
        assert_eq!(s.get(o).unwrap(), want, "payload at {o}");
    }
    let live = model.values().filter(|p| !p.is_empty()).count();
    assert_eq!(s.count(), live, "count");
    let mut seen = Vec::new();
    s.for_each(&mut |o, p| {
        assert_eq!(Some(&p), model.get(&o), "for_each value at {o}");
        seen.push(o);
        Ok(true)
    })
    .unwrap();
    let mut want: Vec<PointOffset> = model
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(o, _)| *o)
        .collect();
    want.sort_unstable();
    assert_eq!(
        seen, want,
        "for_each visits non-empty payloads in offset order"
    );
}

fn sample(n: usize, seed: u64) -> Vec<(PointOffset, Payload)> {
    let mut rng = Rng::new(seed);
    (0..n as PointOffset)
        .filter(|o| o % 4 != 2)
        .map(|o| (o, rng.payload()))
        .collect()
}

/// Payloads read back as built (missing ones empty), before and after reopen;
/// `for_each` stops when asked.
pub fn reads_match_data<F: PayloadFactory>(f: &F) {
    let dir = temp_dir();
    let entries = sample(300, 21);
    let model: HashMap<_, _> = entries.iter().cloned().collect();
    let s = f.build(dir.path(), &entries, 300).unwrap();
    assert_matches(&s, &model, 300);
    let mut calls = 0;
    s.for_each(&mut |_, _| {
        calls += 1;
        Ok(calls < 3)
    })
    .unwrap();
    assert_eq!(calls, 3, "for_each stops at Ok(false)");
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches(&s, &model, 300);
    // Reading an offset nobody wrote is an empty payload, not an error.
    assert_eq!(s.get(100_000).unwrap(), Payload::new());
}

/// `clear` returns the old payload, empties it, and survives reopen.
pub fn clear_removes_and_persists<F: PayloadFactory>(f: &F) {
    let dir = temp_dir();
    let entries = sample(100, 22);
    let mut model: HashMap<_, _> = entries.iter().cloned().collect();
    let mut s = f.build(dir.path(), &entries, 100).unwrap();
    for o in [0, 5, 99] {
        let old = model.remove(&o).unwrap_or_default();
        assert_eq!(s.clear(o).unwrap(), old);
        assert_eq!(s.clear(o).unwrap(), Payload::new());
    }
    s.flush().unwrap();
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches(&s, &model, 100);
}

/// `set` merges keys, `overwrite` replaces, `delete_keys` removes.
pub fn set_merges_overwrite_replaces<F: AppendablePayloadFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path()).unwrap();
    s.set(0, &obj(json!({"a": 1, "b": "x"}))).unwrap();
    s.set(0, &obj(json!({"b": "y", "c": [1, 2]}))).unwrap();
    assert_eq!(
        s.get(0).unwrap(),
        obj(json!({"a": 1, "b": "y", "c": [1, 2]}))
    );
    s.overwrite(1, &obj(json!({"z": null}))).unwrap();
    s.overwrite(0, &obj(json!({"only": true}))).unwrap();
    assert_eq!(s.get(0).unwrap(), obj(json!({"only": true})));
    s.set(2, &obj(json!({"k1": 1, "k2": 2, "k3": 3}))).unwrap();
    let removed = s.delete_keys(2, &["k1", "k3", "absent"]).unwrap();
    assert_eq!(removed, obj(json!({"k1": 1, "k3": 3})));
    assert_eq!(s.get(2).unwrap(), obj(json!({"k2": 2})));
    let s = f.reopen(dir.path(), s).unwrap();
    assert_eq!(s.get(0).unwrap(), obj(json!({"only": true})));
    assert_eq!(s.get(1).unwrap(), obj(json!({"z": null})));
    assert_eq!(s.get(2).unwrap(), obj(json!({"k2": 2})));
    assert_eq!(s.count(), 3);
}

/// Big, nested, unicode and number-edge payloads round-trip exactly.
pub fn large_and_odd_payloads_round_trip<F: AppendablePayloadFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path()).unwrap();
    let big = "x".repeat(100_000);
    let cases = [
        obj(json!({"big": big})),
        obj(json!({"ünï": "ç🦀", "nested": {"deep": {"deeper": [1, {"a": [true, false]}]}}})),
        obj(json!({"min": i64::MIN, "max": u64::MAX, "f": 1.5e300, "neg": -0.25})),
        obj(json!({"": ""})),
    ];
    for (o, p) in cases.iter().enumerate() {
        s.overwrite(o as PointOffset, p).unwrap();
    }
    // Shrink and grow in place a few times.
    s.overwrite(0, &obj(json!({"small": 1}))).unwrap();
    s.overwrite(0, &cases[0]).unwrap();
    let s = f.reopen(dir.path(), s).unwrap();
    for (o, p) in cases.iter().enumerate() {
        assert_eq!(&s.get(o as PointOffset).unwrap(), p, "case {o}");
    }
}

/// Random set / overwrite / clear / delete-keys / reopen against a `HashMap`.
pub fn random_operations_match_model<F: AppendablePayloadFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path()).unwrap();
    let mut model: HashMap<PointOffset, Payload> = HashMap::new();
    let mut rng = Rng::new(23);
    let total = 64;
    for step in 0..3000 {
        let o = rng.below(total) as PointOffset;
        match rng.below(10) {
            0..=3 => {
                let p = rng.payload();
                s.overwrite(o, &p).unwrap();
                model.insert(o, p);
            }
            4..=5 => {
                let p = obj(json!({ "extra": step }));
                s.set(o, &p).unwrap();
                model.entry(o).or_default().extend(p);
            }
            6 => {
                let want = model.remove(&o).unwrap_or_default();
                assert_eq!(s.clear(o).unwrap(), want);
            }
            7 => {
                let removed = s.delete_keys(o, &["tenant", "extra"]).unwrap();
                let entry = model.entry(o).or_default();
                let mut want = Payload::new();
                for k in ["tenant", "extra"] {
                    if let Some(v) = entry.remove(k) {
                        want.insert(k.to_string(), v);
                    }
                }
                assert_eq!(removed, want);
            }
            8 => s.flush().unwrap(),
            _ => {
                if step % 5 == 0 {
                    s = f.reopen(dir.path(), s).unwrap();
                }
            }
        }
        let want = model.get(&o).cloned().unwrap_or_default();
        assert_eq!(s.get(o).unwrap(), want, "step {step} offset {o}");
    }
    model.retain(|_, p| !p.is_empty());
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches(&s, &model, total);
}
