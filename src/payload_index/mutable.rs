//! [`MutableFieldIndex`]: the in-RAM form of a field index for appendable
//! segments, kept up to date by every payload write.
//!
//! Values map to [`RoaringBitmap`]s of offsets in a `BTreeMap` (ordered, so
//! integer and float ranges are one `range` walk), and each offset keeps
//! the list of its values so an update removes exactly what it added. It
//! is not persisted: a segment rebuilds it from its payloads at open (see
//! `docs/design-decisions.md` for the measured cost).

use std::collections::BTreeMap;
use std::ops::Bound;

use roaring::RoaringBitmap;
use vecseg_traits::{Payload, PointOffset};

use super::field::{FieldIndexRead, FieldIndexStats};
use super::value::{float_span, integer_span, values_at, FieldTypeExt, IndexedValue, ValueMatch};
use vecseg_traits::FieldSchema;

/// A field index in RAM, updated in place.
#[derive(Debug, Clone)]
pub struct MutableFieldIndex {
    schema: FieldSchema,
    postings: BTreeMap<IndexedValue, RoaringBitmap>,
    /// Values of each offset (index = offset), to undo an update.
    values_of: Vec<Vec<IndexedValue>>,
    skipped: RoaringBitmap,
    pairs: usize,
}

impl MutableFieldIndex {
    /// An empty index for `schema`.
    pub fn new(schema: FieldSchema) -> Self {
        MutableFieldIndex {
            schema,
            postings: BTreeMap::new(),
            values_of: Vec::new(),
            skipped: RoaringBitmap::new(),
            pairs: 0,
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
        for v in &values {
            self.postings.entry(v.clone()).or_default().insert(offset);
        }
        self.pairs += values.len();
        let slot = offset as usize;
        if self.values_of.len() <= slot {
            self.values_of.resize_with(slot + 1, Vec::new);
        }
        self.values_of[slot] = values;
    }

    /// Forget whatever `offset` held.
    pub fn remove(&mut self, offset: PointOffset) {
        self.skipped.remove(offset);
        let Some(values) = self.values_of.get_mut(offset as usize) else {
            return;
        };
        for v in std::mem::take(values) {
            self.pairs -= 1;
            if let Some(bitmap) = self.postings.get_mut(&v) {
                bitmap.remove(offset);
                if bitmap.is_empty() {
                    self.postings.remove(&v);
                }
            }
        }
    }

    /// Every distinct value with its offsets, in increasing value order
    /// (what [`super::ImmutableFieldIndex::build`] takes).
    pub fn postings(&self) -> impl Iterator<Item = (&IndexedValue, &RoaringBitmap)> {
        self.postings.iter()
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
            if let Some(bitmap) = self.postings.get(&v) {
                f(bitmap);
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
            for (v, bitmap) in self
                .postings
                .range((Bound::Included(lo), Bound::Included(hi)))
            {
                if v.satisfies(m) {
                    f(bitmap);
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
                .values_of
                .get(offset as usize)
                .is_some_and(|values| values.iter().any(|v| v.satisfies(m)))
    }

    fn skipped(&self) -> &RoaringBitmap {
        &self.skipped
    }

    fn stats(&self) -> FieldIndexStats {
        let posting_bytes: u64 = self
            .postings
            .values()
            .map(|b| b.serialized_size() as u64)
            .sum();
        let value_bytes = |v: &IndexedValue| match v {
            IndexedValue::Keyword(s) => s.capacity() + std::mem::size_of::<IndexedValue>(),
            _ => std::mem::size_of::<IndexedValue>(),
        };
        let values_of: usize = self
            .values_of
            .iter()
            .map(|vs| {
                std::mem::size_of::<Vec<IndexedValue>>() + vs.iter().map(value_bytes).sum::<usize>()
            })
            .sum();
        let keys: usize = self.postings.keys().map(value_bytes).sum();
        FieldIndexStats {
            values: self.postings.len(),
            points: self.values_of.iter().filter(|v| !v.is_empty()).count(),
            pairs: self.pairs,
            skipped: self.skipped.len() as usize,
            posting_bytes,
            ram_bytes: posting_bytes
                + (values_of + keys) as u64
                + self.skipped.serialized_size() as u64,
            disk_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload_index::FieldType;
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
