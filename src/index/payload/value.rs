//! What a field index stores and answers: what each [`FieldType`] stores
//! ([`FieldTypeExt`]), the typed [`IndexedValue`]s read from a payload, and the [`ValueMatch`]
//! a condition asks of an index.
//!
//! Both index forms read a payload through [`values_at`], which walks the
//! key exactly as [`Condition::matches`](vecseg_traits::Condition::matches)
//! does, so an index and a payload check always see the same values.

use std::cmp::Ordering;

use serde_json::Value;
use vecseg_traits::{for_each_value, Condition, FieldType, Payload, Range};

/// What a [`FieldType`] stores and answers (the index side of the type).
pub trait FieldTypeExt {
    /// The typed value an index of this type stores for a payload value,
    /// `None` for values of another type.
    fn convert(self, v: &Value) -> Option<IndexedValue>;

    /// Whether an index of this type answers `m` exactly for the offsets
    /// it did not skip.
    fn answers(self, m: &ValueMatch<'_>) -> bool;
}

impl FieldTypeExt for FieldType {
    fn convert(self, v: &Value) -> Option<IndexedValue> {
        match self {
            FieldType::Keyword => v.as_str().map(|s| IndexedValue::Keyword(s.to_string())),
            FieldType::Integer => v.as_i64().map(IndexedValue::Integer),
            // `+ 0.0` folds -0.0 into 0.0: the two compare equal in ranges.
            FieldType::Float => v.as_f64().map(|x| IndexedValue::Float(x + 0.0)),
            FieldType::Bool => v.as_bool().map(IndexedValue::Bool),
        }
    }

    fn answers(self, m: &ValueMatch<'_>) -> bool {
        matches!(
            (self, m),
            (FieldType::Keyword, ValueMatch::Keyword(_))
                | (
                    FieldType::Integer,
                    ValueMatch::Integer(_) | ValueMatch::Range(_)
                )
                | (FieldType::Float, ValueMatch::Range(_))
                | (FieldType::Bool, ValueMatch::Bool(_))
        )
    }
}

/// A payload value as an index of one [`FieldType`] stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexedValue {
    /// A string.
    Keyword(String),
    /// An integer.
    Integer(i64),
    /// A number (never NaN: JSON has none; -0.0 is stored as 0.0).
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Eq for IndexedValue {}

impl PartialOrd for IndexedValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexedValue {
    /// Values of one type in their natural order (strings by bytes);
    /// across types by type (never mixed inside one index).
    fn cmp(&self, other: &Self) -> Ordering {
        use IndexedValue::*;
        match (self, other) {
            (Keyword(a), Keyword(b)) => a.cmp(b),
            (Integer(a), Integer(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl IndexedValue {
    fn rank(&self) -> u8 {
        match self {
            IndexedValue::Keyword(_) => 0,
            IndexedValue::Integer(_) => 1,
            IndexedValue::Float(_) => 2,
            IndexedValue::Bool(_) => 3,
        }
    }

    /// Whether this value satisfies `m` (the same test a payload check
    /// makes on the JSON value it came from).
    pub fn satisfies(&self, m: &ValueMatch<'_>) -> bool {
        match (self, m) {
            (IndexedValue::Keyword(v), ValueMatch::Keyword(k)) => v == k,
            (IndexedValue::Integer(v), ValueMatch::Integer(i)) => v == i,
            (IndexedValue::Bool(v), ValueMatch::Bool(b)) => v == b,
            (IndexedValue::Integer(v), ValueMatch::Range(r)) => r.contains(*v as f64),
            (IndexedValue::Float(v), ValueMatch::Range(r)) => r.contains(*v),
            _ => false,
        }
    }
}

/// What a condition asks of the values of one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueMatch<'a> {
    /// Equal to this string.
    Keyword(&'a str),
    /// Equal to this integer.
    Integer(i64),
    /// Equal to this boolean.
    Bool(bool),
    /// A number within the range.
    Range(Range),
}

impl<'a> ValueMatch<'a> {
    /// The key and value test of a payload condition (`None` for ids and
    /// nested filters).
    pub fn of(c: &'a Condition) -> Option<(&'a str, ValueMatch<'a>)> {
        Some(match c {
            Condition::MatchKeyword { key, value } => (key, ValueMatch::Keyword(value)),
            Condition::MatchInteger { key, value } => (key, ValueMatch::Integer(*value)),
            Condition::MatchBool { key, value } => (key, ValueMatch::Bool(*value)),
            Condition::Range { key, range } => (key, ValueMatch::Range(*range)),
            Condition::HasId(_) | Condition::Filter(_) => return None,
        })
    }
}

/// The values an index of `field_type` stores for `key` in `payload`
/// (deduplicated, sorted), and whether the key also holds values of another
/// type that some condition could match (numbers, strings or booleans the
/// index cannot store: the point is then checked against its payload).
pub fn values_at(payload: &Payload, key: &str, field_type: FieldType) -> (Vec<IndexedValue>, bool) {
    let mut values = Vec::new();
    let mut skipped = false;
    for_each_value(payload, key, &mut |v| {
        match field_type.convert(v) {
            Some(x) => values.push(x),
            None => skipped |= matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)),
        }
        true
    });
    values.sort();
    values.dedup();
    (values, skipped)
}

/// The smallest inclusive `i64` interval holding every integer `v` with
/// `range.contains(v as f64)`, or `None` when it is empty. A superset near
/// `2^53` and beyond, where `f64` rounds: callers test each value with
/// [`IndexedValue::satisfies`].
pub fn integer_span(range: &Range) -> Option<(i64, i64)> {
    // A margin of two ulps of the bound plus one covers the rounding of
    // `v as f64`; the saturating casts handle bounds beyond i64.
    let margin = |b: f64| b.abs() * f64::EPSILON * 2.0 + 1.0;
    let lo = [range.gt, range.gte]
        .into_iter()
        .flatten()
        .map(|b| (b - margin(b)).floor() as i64)
        .max()
        .unwrap_or(i64::MIN);
    let hi = [range.lt, range.lte]
        .into_iter()
        .flatten()
        .map(|b| (b + margin(b)).ceil() as i64)
        .min()
        .unwrap_or(i64::MAX);
    (lo <= hi).then_some((lo, hi))
}

/// The inclusive `f64` interval holding every number the range contains
/// (a superset: open bounds are returned as closed ones; callers test each
/// value with [`IndexedValue::satisfies`]). `None` when empty.
pub fn float_span(range: &Range) -> Option<(f64, f64)> {
    let lo = [range.gt, range.gte]
        .into_iter()
        .flatten()
        .fold(f64::NEG_INFINITY, f64::max);
    let hi = [range.lt, range.lte]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
    (lo <= hi).then_some((lo + 0.0, hi + 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn values_follow_paths_and_report_mixed_types() {
        let p = payload(json!({"t": ["b", "a", "b", 3], "n": [1, 2.5, "x"], "o": {"k": true}}));
        let (v, skipped) = values_at(&p, "t", FieldType::Keyword);
        assert_eq!(
            v,
            [
                IndexedValue::Keyword("a".into()),
                IndexedValue::Keyword("b".into())
            ]
        );
        assert!(skipped);
        let (v, skipped) = values_at(&p, "n", FieldType::Integer);
        assert_eq!(v, [IndexedValue::Integer(1)]);
        assert!(skipped);
        let (v, _) = values_at(&p, "n", FieldType::Float);
        assert_eq!(v, [IndexedValue::Float(1.0), IndexedValue::Float(2.5)]);
        assert_eq!(
            values_at(&p, "o.k", FieldType::Bool),
            (vec![IndexedValue::Bool(true)], false)
        );
        assert_eq!(values_at(&p, "missing", FieldType::Bool), (vec![], false));
        let neg_zero = payload(json!({"x": -0.0}));
        assert_eq!(
            values_at(&neg_zero, "x", FieldType::Float).0,
            [IndexedValue::Float(0.0)]
        );
    }

    /// The spans never exclude a value the range contains.
    #[test]
    fn spans_are_supersets_of_the_range() {
        let ranges = [
            Range {
                gt: Some(1.5),
                lt: Some(4.0),
                ..Default::default()
            },
            Range {
                gte: Some(-3.0),
                lte: Some(-3.0),
                ..Default::default()
            },
            Range {
                gt: Some(9.007_199_254_740_993e15),
                ..Default::default()
            },
            Range {
                lt: Some(-1e300),
                ..Default::default()
            },
            Range {
                gte: Some(1e300),
                ..Default::default()
            },
            Range::default(),
        ];
        let samples = [
            i64::MIN,
            -5,
            -3,
            -2,
            0,
            1,
            2,
            3,
            4,
            5,
            (1 << 53) - 1,
            1 << 53,
            (1 << 53) + 1,
            (1 << 53) + 2,
            i64::MAX,
        ];
        for r in &ranges {
            for &v in &samples {
                if r.contains(v as f64) {
                    let (lo, hi) = integer_span(r).expect("non-empty");
                    assert!(lo <= v && v <= hi, "{r:?} {v}");
                }
                let f = v as f64;
                if r.contains(f) {
                    let (lo, hi) = float_span(r).expect("non-empty");
                    assert!(lo <= f && f <= hi, "{r:?} {f}");
                }
            }
        }
        let empty = Range {
            gt: Some(5.0),
            lt: Some(-2.0),
            ..Default::default()
        };
        assert_eq!(integer_span(&empty), None);
        assert_eq!(float_span(&empty), None);
    }
}
