//! Payload filters used by search and scroll.
//!
//! A [`Filter`] is `must` (all), `should` (at least one, if any are given)
//! and `must_not` (none) over [`Condition`]s. Keys are dotted paths into the
//! JSON payload (`"meta.tenant"`); when a path reaches an array, a condition
//! matches if any element matches.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::types::{Payload, PointId};

/// One test on a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The value at `key` is the string `value`.
    MatchKeyword {
        /// Dotted payload path.
        key: String,
        /// Expected string.
        value: String,
    },
    /// The value at `key` is the integer `value`.
    MatchInteger {
        /// Dotted payload path.
        key: String,
        /// Expected integer.
        value: i64,
    },
    /// The value at `key` is the boolean `value`.
    MatchBool {
        /// Dotted payload path.
        key: String,
        /// Expected boolean.
        value: bool,
    },
    /// The number at `key` lies in the range (each bound optional).
    Range {
        /// Dotted payload path.
        key: String,
        /// The range bounds.
        range: Range,
    },
    /// The point's external id is one of these.
    HasId(HashSet<PointId>),
    /// A nested filter.
    Filter(Box<Filter>),
}

/// Numeric range bounds; unset bounds are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

impl Range {
    /// Whether `x` lies within every set bound.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }

    /// The set bounds, in the order gt, gte, lt, lte.
    fn bounds(&self) -> impl Iterator<Item = f64> {
        [self.gt, self.gte, self.lt, self.lte].into_iter().flatten()
    }
}

/// A boolean combination of conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Every one must hold.
    #[serde(default)]
    pub must: Vec<Condition>,
    /// At least one must hold (ignored when empty).
    #[serde(default)]
    pub should: Vec<Condition>,
    /// None may hold.
    #[serde(default)]
    pub must_not: Vec<Condition>,
}

impl Filter {
    /// A filter with the single `must` condition `c`.
    pub fn must(c: Condition) -> Self {
        Filter {
            must: vec![c],
            ..Default::default()
        }
    }

    /// Whether the point (`id`, `payload`) passes the filter.
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        self.must.iter().all(|c| c.matches(id, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(id, payload)))
            && !self.must_not.iter().any(|c| c.matches(id, payload))
    }

    /// Check the filter can be evaluated: a range bound that is NaN is an
    /// [`StorageError::InvalidArgument`] (it would silently match nothing).
    pub fn validate(&self) -> Result<()> {
        self.must
            .iter()
            .chain(&self.should)
            .chain(&self.must_not)
            .try_for_each(Condition::validate)
    }

    /// Whether evaluating the filter needs the payload (false when it only tests ids).
    pub fn needs_payload(&self) -> bool {
        self.must
            .iter()
            .chain(&self.should)
            .chain(&self.must_not)
            .any(Condition::needs_payload)
    }
}

impl Condition {
    /// Shorthand for [`Condition::MatchKeyword`].
    pub fn keyword(key: impl Into<String>, value: impl Into<String>) -> Self {
        Condition::MatchKeyword {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Shorthand for [`Condition::MatchInteger`].
    pub fn integer(key: impl Into<String>, value: i64) -> Self {
        Condition::MatchInteger {
            key: key.into(),
            value,
        }
    }

    /// Shorthand for [`Condition::MatchBool`].
    pub fn boolean(key: impl Into<String>, value: bool) -> Self {
        Condition::MatchBool {
            key: key.into(),
            value,
        }
    }

    /// Shorthand for [`Condition::Range`].
    pub fn range(key: impl Into<String>, range: Range) -> Self {
        Condition::Range {
            key: key.into(),
            range,
        }
    }

    /// The payload key this condition tests (`None` for ids and nested filters).
    pub fn key(&self) -> Option<&str> {
        match self {
            Condition::MatchKeyword { key, .. }
            | Condition::MatchInteger { key, .. }
            | Condition::MatchBool { key, .. }
            | Condition::Range { key, .. } => Some(key),
            Condition::HasId(_) | Condition::Filter(_) => None,
        }
    }

    /// Whether a single payload value satisfies this condition (what
    /// [`Condition::matches`] tests on each value its key reaches; `false`
    /// for ids and nested filters).
    pub fn matches_value(&self, v: &Value) -> bool {
        match self {
            Condition::MatchKeyword { value, .. } => v.as_str() == Some(value.as_str()),
            Condition::MatchInteger { value, .. } => v.as_i64() == Some(*value),
            Condition::MatchBool { value, .. } => v.as_bool() == Some(*value),
            Condition::Range { range, .. } => v.as_f64().is_some_and(|x| range.contains(x)),
            Condition::HasId(_) | Condition::Filter(_) => false,
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            Condition::Range { key, range } if range.bounds().any(f64::is_nan) => {
                Err(StorageError::InvalidArgument(format!(
                    "the range condition on {key:?} has a NaN bound"
                )))
            }
            Condition::Filter(f) => f.validate(),
            _ => Ok(()),
        }
    }

    /// Whether the point (`id`, `payload`) satisfies the condition.
    pub fn matches(&self, id: PointId, payload: &Payload) -> bool {
        match self {
            Condition::HasId(ids) => ids.contains(&id),
            Condition::Filter(f) => f.matches(id, payload),
            c => c.key().is_some_and(|key| {
                let mut hit = false;
                for_each_value(payload, key, &mut |v| {
                    hit = c.matches_value(v);
                    !hit
                });
                hit
            }),
        }
    }

    fn needs_payload(&self) -> bool {
        match self {
            Condition::HasId(_) => false,
            Condition::Filter(f) => f.needs_payload(),
            _ => true,
        }
    }
}

/// Call `visit` on every value the dotted `path` reaches in `payload`
/// (arrays fan out, at any level); stop as soon as `visit` returns `false`.
/// Returns `false` when stopped early. This is how conditions and payload
/// indexes read a key, so both see the same values.
pub fn for_each_value(
    payload: &Payload,
    path: &str,
    visit: &mut dyn FnMut(&Value) -> bool,
) -> bool {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    payload.get(head).is_none_or(|v| walk(v, rest, visit))
}

fn walk(value: &Value, rest: Option<&str>, visit: &mut dyn FnMut(&Value) -> bool) -> bool {
    match (value, rest) {
        (Value::Array(items), _) => items.iter().all(|v| walk(v, rest, visit)),
        (v, None) => visit(v),
        (Value::Object(map), Some(path)) => for_each_value(map, path, visit),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn conditions_follow_paths_and_arrays() {
        let p = payload(json!({"tenant": "a", "n": 5, "meta": {"tags": ["x", "y"], "score": 0.5}}));
        let id = PointId::Num(7);
        assert!(Condition::keyword("tenant", "a").matches(id, &p));
        assert!(!Condition::keyword("tenant", "b").matches(id, &p));
        assert!(Condition::integer("n", 5).matches(id, &p));
        assert!(!Condition::integer("tenant", 5).matches(id, &p));
        assert!(Condition::keyword("meta.tags", "y").matches(id, &p));
        assert!(!Condition::keyword("meta.missing", "y").matches(id, &p));
        let r = |gte, lt| Condition::Range {
            key: "meta.score".into(),
            range: Range {
                gte,
                lt,
                ..Default::default()
            },
        };
        assert!(r(Some(0.5), Some(1.0)).matches(id, &p));
        assert!(!r(Some(0.6), None).matches(id, &p));
        assert!(Condition::HasId([id].into()).matches(id, &p));
        let b = payload(json!({"flag": [false, true], "n": 1}));
        assert!(Condition::boolean("flag", true).matches(id, &b));
        assert!(Condition::boolean("flag", false).matches(id, &b));
        assert!(!Condition::boolean("n", true).matches(id, &b));
        let nan = Filter::must(Condition::range(
            "n",
            Range {
                lt: Some(f64::NAN),
                ..Default::default()
            },
        ));
        assert!(matches!(
            nan.validate(),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(Filter::must(Condition::Filter(Box::new(nan)))
            .validate()
            .is_err());
        assert!(Filter::must(Condition::integer("n", 1)).validate().is_ok());
        assert!(!Condition::HasId([PointId::Num(8)].into()).matches(id, &p));
    }

    #[test]
    fn filter_combines_must_should_must_not() {
        let p = payload(json!({"a": 1, "b": "x"}));
        let id = PointId::Num(1);
        let f = Filter {
            must: vec![Condition::integer("a", 1)],
            should: vec![Condition::keyword("b", "y"), Condition::keyword("b", "x")],
            must_not: vec![Condition::HasId([PointId::Num(2)].into())],
        };
        assert!(f.matches(id, &p));
        assert!(!f.matches(PointId::Num(2), &p));
        let f2 = Filter {
            should: vec![Condition::keyword("b", "z")],
            ..Default::default()
        };
        assert!(!f2.matches(id, &p));
        assert!(Filter::default().matches(id, &p));
        assert!(!Filter::must(Condition::HasId(Default::default())).needs_payload());
        assert!(f.needs_payload());
    }
}
