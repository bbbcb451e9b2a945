//! Model test: `ChunkedPayloadStorage` against a `HashMap` under 100k random
//! put / delete-keys / clear / flush / reopen / crash operations, checking
//! every read. Small blocks, pages and regions so cells cross regions and
//! oversized values get pages of their own.

use std::collections::HashMap;

use serde_json::{json, Value};
use vecseg_chunked::{ChunkedPayloadOptions, ChunkedPayloadStorage};
use vecseg_traits::testing::{temp_dir, Rng};
use vecseg_traits::{
    AppendablePayloadStorage, Payload, PayloadStorage, PayloadStorageRead, PointOffset,
};

const OFFSETS: usize = 1500;
const OPS: usize = 100_000;

fn random_payload(rng: &mut Rng, step: usize) -> Payload {
    let mut p = Payload::new();
    let len = match rng.below(100) {
        0 => 2_000 + rng.below(30_000), // bigger than a page: own page
        1..=10 => rng.below(2_000),
        _ => rng.below(300),
    };
    p.insert("s".into(), Value::String("x".repeat(len)));
    p.insert("step".into(), json!(step));
    if rng.below(2) == 0 {
        p.insert("tenant".into(), json!(format!("t{}", rng.below(5))));
    }
    if rng.below(3) == 0 {
        p.insert("f".into(), json!(rng.unit() as f64 * 1e6));
    }
    p
}

fn blocks_of(model: &HashMap<PointOffset, Payload>, block: usize) -> usize {
    model
        .values()
        .map(|p| {
            ChunkedPayloadStorage::encode(p)
                .unwrap()
                .len()
                .div_ceil(block)
        })
        .sum()
}

fn check_all(s: &ChunkedPayloadStorage, model: &HashMap<PointOffset, Payload>) {
    for o in 0..OFFSETS as PointOffset {
        let want = model.get(&o).cloned().unwrap_or_default();
        assert_eq!(s.get(o).unwrap(), want, "offset {o}");
    }
    assert_eq!(s.count(), model.len(), "count");
    let mut seen = 0;
    s.for_each(&mut |o, p| {
        assert_eq!(Some(&p), model.get(&o));
        seen += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen, model.len());
}

#[test]
fn payload_storage_matches_hashmap_model() {
    let dir = temp_dir();
    let options = ChunkedPayloadOptions::small_for_tests();
    let mut s = ChunkedPayloadStorage::create(dir.path(), options).unwrap();
    let mut model: HashMap<PointOffset, Payload> = HashMap::new();
    let mut flushed = model.clone();
    let mut rng = Rng::new(0x5EED);
    // False after a crash whose leaked blocks were not reclaimed yet.
    let mut clean_since_reopen = true;
    let (mut flushes, mut reopens, mut crashes) = (0, 0, 0);
    for step in 0..OPS {
        let o = rng.below(OFFSETS) as PointOffset;
        match rng.below(1000) {
            0..=549 => {
                let p = random_payload(&mut rng, step);
                s.overwrite(o, &p).unwrap();
                model.insert(o, p);
            }
            550..=649 => {
                let p = Payload::from_iter([("extra".to_string(), json!(step))]);
                s.set(o, &p).unwrap();
                model.entry(o).or_default().extend(p);
            }
            650..=799 => {
                let removed = s.delete_keys(o, &["tenant", "s"]).unwrap();
                let mut want = Payload::new();
                if let Some(entry) = model.get_mut(&o) {
                    for k in ["tenant", "s"] {
                        if let Some(v) = entry.remove(k) {
                            want.insert(k.to_string(), v);
                        }
                    }
                }
                assert_eq!(removed, want, "step {step}");
            }
            800..=949 => {
                let want = model.remove(&o).unwrap_or_default();
                assert_eq!(s.clear(o).unwrap(), want, "step {step}");
            }
            950..=951 => {
                s.flush().unwrap();
                model.retain(|_, p| !p.is_empty());
                flushed = model.clone();
                flushes += 1;
            }
            952 if step % 4 == 0 => {
                // Crash: drop without flushing; only flushed data survives.
                drop(s);
                s = ChunkedPayloadStorage::open(dir.path()).unwrap();
                model = flushed.clone();
                crashes += 1;
                check_all(&s, &model);
                if rng.below(2) == 0 {
                    s.reclaim_leaked_blocks().unwrap();
                    check_all(&s, &model);
                } else {
                    clean_since_reopen = false;
                }
            }
            _ => {}
        }
        model.retain(|_, p| !p.is_empty());
        let want = model.get(&o).cloned().unwrap_or_default();
        assert_eq!(s.get(o).unwrap(), want, "step {step} offset {o}");
        if step % 4000 == 3999 {
            s.flush().unwrap();
            flushed = model.clone();
            drop(s);
            s = ChunkedPayloadStorage::open(dir.path()).unwrap();
            reopens += 1;
            check_all(&s, &model);
            if !clean_since_reopen {
                s.reclaim_leaked_blocks().unwrap();
            }
            {
                // A clean flush + reopen leaks no block.
                assert_eq!(
                    s.used_blocks(),
                    blocks_of(&model, options.block_size),
                    "used blocks after clean reopen at step {step}"
                );
            }
            clean_since_reopen = true;
        }
    }
    assert!(
        flushes > 50 && reopens >= 20 && crashes > 5,
        "{flushes} {reopens} {crashes}"
    );
    s.flush().unwrap();
    drop(s);
    let s = ChunkedPayloadStorage::open(dir.path()).unwrap();
    check_all(&s, &model);
}
