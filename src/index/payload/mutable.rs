//! [`MutableFieldIndex`]: the in-RAM form of a field index for appendable
//! segments, kept up to date by every payload write.
//!
//! Values map to [`RoaringBitmap`]s of offsets through a `BTreeMap`
//! (ordered, so integer and float ranges are one `range` walk), and each
//! offset keeps the ids of its values (one `u32` for a single value) so an
//! update removes exactly what it added. It
//! is not persisted: a segment rebuilds it from its payloads at open (see
//! `docs/design-decisions.md` for the measured cost).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use roaring::RoaringBitmap;
use vecseg_traits::{Payload, PointOffset};

use super::field::{FieldIndexRead, FieldIndexStats};
use super::value::{float_span, integer_span, values_at, FieldTypeExt, IndexedValue, ValueMatch};
use vecseg_traits::FieldSchema;

/// `MutableFieldIndex::single` of an offset without values.
const NONE: u32 = u32::MAX;
/// `MutableFieldIndex::single` of an offset whose values are in `multi`.
const MULTI: u32 = u32::MAX - 1;

/// One distinct value and the offsets holding it.
#[derive(Debug, Clone)]
struct Entry {
    value: IndexedValue,
    offsets: RoaringBitmap,
}

/// A field index in RAM, updated in place.
///
/// Each distinct value gets a numeric id (never reused; an entry whose
/// offsets all went keeps its id for the next time the value comes back).
/// An offset records the ids of its values so an update removes exactly
/// what it added: one `u32` per offset when it holds at most one value
/// (the common case), a side table for offsets with several.
#[derive(Debug, Clone)]
pub struct MutableFieldIndex {
    schema: FieldSchema,
    /// Value → id, ordered (ranges are one `range` walk).
    ids: BTreeMap<IndexedValue, u32>,
    /// Id → value and offsets.
    entries: Vec<Entry>,
    /// Per offset: its value id, [`NONE`] or [`MULTI`].
    single: Vec<u32>,
    /// Value ids of the offsets holding several values.
    multi: HashMap<PointOffset, Box<[u32]>>,
    skipped: RoaringBitmap,
    pairs: usize,
    points: usize,
    live_values: usize,
}

impl MutableFieldIndex {
    /// An empty index for `schema`.
    pub fn new(schema: FieldSchema) -> Self {
        MutableFieldIndex {
            schema,
            ids: BTreeMap::new(),
            entries: Vec::new(),
            single: Vec::new(),
            multi: HashMap::new(),
            skipped: RoaringBitmap::new(),
            pairs: 0,
            points: 0,
            live_values: 0,
        }
    }

    /// Index `payload` as the new content of `offset` (replacing what the
    /// offset held).
    pub fn update(&mut self, offset: PointOffset, payload: &Payload) {
        self.remove(offset);
        let (values, skipped) = values_at(payload, &self.schema.key, self.schema.field_type);
        if skipped {
            self.skipped.insert(offset);
        }
        if values.is_empty() {
            return;
        }
        let ids: Vec<u32> = values.into_iter().map(|v| self.add(v, offset)).collect();
        self.pairs += ids.len();
        self.points += 1;
        let slot = offset as usize;
        if self.single.len() <= slot {
            self.single.resize(slot + 1, NONE);
        }
        if let [id] = ids[..] {
            self.single[slot] = id;
        } else {
            self.single[slot] = MULTI;
            self.multi.insert(offset, ids.into_boxed_slice());
        }
    }

    /// Add `offset` to the entry of `value` (created if new); its id.
    fn add(&mut self, value: IndexedValue, offset: PointOffset) -> u32 {
        let id = match self.ids.get(&value) {
            Some(&id) => id,
            None => {
                let id = self.entries.len() as u32;
                self.ids.insert(value.clone(), id);
                self.entries.push(Entry {
                    value,
                    offsets: RoaringBitmap::new(),
                });
                id
            }
        };
        let offsets = &mut self.entries[id as usize].offsets;
        if offsets.is_empty() {
            self.live_values += 1;
        }
        offsets.insert(offset);
        id
    }

    /// Forget whatever `offset` held.
    pub fn remove(&mut self, offset: PointOffset) {
        self.skipped.remove(offset);
        let Some(slot) = self.single.get_mut(offset as usize) else {
            return;
        };
        let ids: Box<[u32]> = match std::mem::replace(slot, NONE) {
            NONE => return,
            MULTI => self.multi.remove(&offset).unwrap_or_default(),
            id => Box::new([id]),
        };
        self.points -= 1;
        for id in ids.iter() {
            self.pairs -= 1;
            if let Some(entry) = self.entries.get_mut(*id as usize) {
                entry.offsets.remove(offset);
                if entry.offsets.is_empty() {
                    self.live_values -= 1;
                }
            }
        }
    }

    /// The value ids of `offset`.
    fn ids_of(&self, offset: PointOffset) -> &[u32] {
        match self.single.get(offset as usize) {
            None | Some(&NONE) => &[],
            Some(&MULTI) => self.multi.get(&offset).map_or(&[], |ids| &ids[..]),
            Some(id) => std::slice::from_ref(id),
        }
    }

    /// Every distinct value with its offsets, in increasing value order
    /// (what [`super::ImmutableFieldIndex::build`] takes).
    pub fn postings(&self) -> impl Iterator<Item = (&IndexedValue, &RoaringBitmap)> {
        self.ids.values().filter_map(|&id| {
            let e = &self.entries[id as usize];
            (!e.offsets.is_empty()).then_some((&e.value, &e.offsets))
        })
    }

    /// Call `f` with the posting list of every value satisfying `m`.
    fn for_each_matching<'s>(&'s self, m: &ValueMatch<'_>, f: &mut dyn FnMut(&'s RoaringBitmap)) {
        if !self.schema.field_type.answers(m) {
            return;
        }
        let exact = match *m {
            ValueMatch::Keyword(k) => Some(IndexedValue::Keyword(k.to_string())),
            ValueMatch::Integer(i) => Some(IndexedValue::Integer(i)),
            ValueMatch::Bool(b) => Some(IndexedValue::Bool(b)),
            ValueMatch::Range(_) => None,
        };
        if let Some(v) = exact {
            if let Some(&id) = self.ids.get(&v) {
                f(&self.entries[id as usize].offsets);
            }
            return;
        }
        let ValueMatch::Range(r) = m else { return };
        let span = match self.schema.field_type {
            super::FieldType::Integer => integer_span(r)
                .map(|(lo, hi)| (IndexedValue::Integer(lo), IndexedValue::Integer(hi))),
            _ => float_span(r).map(|(lo, hi)| (IndexedValue::Float(lo), IndexedValue::Float(hi))),
        };
        if let Some((lo, hi)) = span {
            for (v, &id) in self.ids.range((Bound::Included(lo), Bound::Included(hi))) {
                if v.satisfies(m) {
                    f(&self.entries[id as usize].offsets);
                }
            }
        }
    }
}

impl FieldIndexRead for MutableFieldIndex {
    fn schema(&self) -> &FieldSchema {
        &self.schema
    }

    fn estimate(&self, m: &ValueMatch<'_>) -> usize {
        let mut n = 0;
        self.for_each_matching(m, &mut |b| n += b.len() as usize);
        n
    }

    fn add_matching(&self, m: &ValueMatch<'_>, out: &mut RoaringBitmap) {
        self.for_each_matching(m, &mut |b| *out |= b);
    }

    fn offset_matches(&self, offset: PointOffset, m: &ValueMatch<'_>) -> bool {
        self.schema.field_type.answers(m)
            && self
                .ids_of(offset)
                .iter()
                .any(|&id| self.entries[id as usize].value.satisfies(m))
    }

    fn skipped(&self) -> &RoaringBitmap {
        &self.skipped
    }

    fn stats(&self) -> FieldIndexStats {
        let posting_bytes: u64 = self
            .entries
            .iter()
            .map(|e| e.offsets.serialized_size() as u64)
            .sum();
        let value_bytes = |v: &IndexedValue| match v {
            IndexedValue::Keyword(s) => s.capacity() + std::mem::size_of::<IndexedValue>(),
            _ => std::mem::size_of::<IndexedValue>(),
        };
        // Values are held twice (map key and entry), plus the per-offset ids.
        let values: usize = self
            .entries
            .iter()
            .map(|e| 2 * value_bytes(&e.value) + 4)
            .sum();
        let per_offset = self.single.capacity() * 4
            + self
                .multi
                .values()
                .map(|ids| ids.len() * 4 + 24)
                .sum::<usize>();
        FieldIndexStats {
            values: self.live_values,
            points: self.points,
            pairs: self.pairs,
            skipped: self.skipped.len() as usize,
            posting_bytes,
            ram_bytes: posting_bytes
                + (values + per_offset) as u64
                + self.skipped.serialized_size() as u64,
            disk_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::payload::FieldType;
    use serde_json::json;
    use vecseg_traits::Range;

    fn payload(v: serde_json::Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    fn matching(index: &MutableFieldIndex, m: ValueMatch<'_>) -> Vec<u32> {
        let mut out = RoaringBitmap::new();
        index.add_matching(&m, &mut out);
        out.into_iter().collect()
    }

    #[test]
    fn updates_replace_and_removes_forget() {
        let mut idx = MutableFieldIndex::new(FieldSchema::new("t", FieldType::Keyword));
        idx.update(0, &payload(json!({"t": "a"})));
        idx.update(1, &payload(json!({"t": ["a", "b"]})));
        idx.update(2, &payload(json!({"t": 5})));
        assert_eq!(matching(&idx, ValueMatch::Keyword("a")), [0, 1]);
        assert_eq!(idx.estimate(&ValueMatch::Keyword("b")), 1);
        assert_eq!(idx.skipped().iter().collect::<Vec<_>>(), [2]);
        idx.update(1, &payload(json!({"t": "c"})));
        assert_eq!(matching(&idx, ValueMatch::Keyword("a")), [0]);
        assert!(matching(&idx, ValueMatch::Keyword("b")).is_empty());
        assert!(idx.offset_matches(1, &ValueMatch::Keyword("c")));
        idx.remove(0);
        idx.remove(2);
        idx.remove(99);
        assert!(matching(&idx, ValueMatch::Keyword("a")).is_empty());
        assert!(idx.skipped().is_empty());
        let stats = idx.stats();
        assert_eq!((stats.values, stats.points, stats.pairs), (1, 1, 1));
        // A value whose offsets all went comes back under its old id.
        idx.update(4, &payload(json!({"t": ["a", "c"]})));
        assert_eq!(matching(&idx, ValueMatch::Keyword("a")), [4]);
        assert_eq!(matching(&idx, ValueMatch::Keyword("c")), [1, 4]);
        let stats = idx.stats();
        assert_eq!((stats.values, stats.points, stats.pairs), (2, 2, 3));
        let values: Vec<_> = idx.postings().map(|(v, b)| (v.clone(), b.len())).collect();
        assert_eq!(
            values,
            [
                (IndexedValue::Keyword("a".into()), 1),
                (IndexedValue::Keyword("c".into()), 2)
            ]
        );
        // A type the index does not answer matches nothing.
        assert_eq!(idx.estimate(&ValueMatch::Integer(5)), 0);
        assert!(!idx.offset_matches(1, &ValueMatch::Integer(5)));
    }

    #[test]
    fn ranges_match_what_a_payload_check_matches() {
        for field_type in [FieldType::Integer, FieldType::Float] {
            let mut idx = MutableFieldIndex::new(FieldSchema::new("n", field_type));
            let values = [
                json!(-3),
                json!(0),
                json!(2.5),
                json!(7),
                json!(i64::MAX),
                json!(-0.0),
            ];
            for (o, v) in values.iter().enumerate() {
                idx.update(o as u32, &payload(json!({ "n": v })));
            }
            let r = Range {
                gt: Some(-3.0),
                lte: Some(7.0),
                ..Default::default()
            };
            let cond = vecseg_traits::Condition::range("n", r);
            let expect: Vec<u32> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| cond.matches_value(v))
                .map(|(o, _)| o as u32)
                .filter(|&o| !idx.skipped().contains(o))
                .collect();
            assert_eq!(
                matching(&idx, ValueMatch::Range(r)),
                expect,
                "{field_type:?}"
            );
            for o in 0..values.len() as u32 {
                assert_eq!(
                    idx.offset_matches(o, &ValueMatch::Range(r)),
                    expect.contains(&o),
                    "{field_type:?} {o}"
                );
            }
        }
    }
}
