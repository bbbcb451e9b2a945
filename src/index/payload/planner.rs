//! Cardinality estimates: how many points a condition or filter may match,
//! as `min ≤ expected ≤ max`, and how `must` / `should` / `must_not`
//! combine them (conditions assumed independent for the expectation).

/// Estimated number of matching points out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cardinality {
    /// At least this many.
    pub min: usize,
    /// Expected.
    pub expected: usize,
    /// At most this many.
    pub max: usize,
}

impl Cardinality {
    /// Exactly `n`.
    pub fn exact(n: usize) -> Self {
        Cardinality {
            min: n,
            expected: n,
            max: n,
        }
    }

    /// Anything from 0 to `total` (a condition no index answers).
    pub fn unknown(total: usize) -> Self {
        Cardinality {
            min: 0,
            expected: total / 2,
            max: total,
        }
    }

    /// The points of `total` that do *not* match.
    pub fn negate(self, total: usize) -> Self {
        Cardinality {
            min: total.saturating_sub(self.max),
            expected: total.saturating_sub(self.expected),
            max: total.saturating_sub(self.min),
        }
    }

    /// Points matching all of `parts` (`total` when there are none).
    pub fn all(parts: &[Cardinality], total: usize) -> Self {
        if parts.is_empty() {
            return Cardinality::exact(total);
        }
        let t = total.max(1) as f64;
        let min_sum: usize = parts.iter().map(|c| c.min).sum();
        let share: f64 = parts.iter().map(|c| c.expected as f64 / t).product::<f64>();
        let max = parts.iter().map(|c| c.max).min().unwrap_or(total);
        Cardinality {
            min: min_sum.saturating_sub((parts.len() - 1) * total).min(max),
            expected: ((share * t).round() as usize).min(max),
            max,
        }
        .clamped()
    }

    /// Points matching at least one of `parts` (none given: `total`).
    pub fn any(parts: &[Cardinality], total: usize) -> Self {
        if parts.is_empty() {
            return Cardinality::exact(total);
        }
        let t = total.max(1) as f64;
        let miss: f64 = parts
            .iter()
            .map(|c| 1.0 - c.expected as f64 / t)
            .product::<f64>();
        let min = parts.iter().map(|c| c.min).max().unwrap_or(0);
        let max = parts.iter().map(|c| c.max).sum::<usize>().min(total);
        Cardinality {
            min,
            expected: (((1.0 - miss) * t).round() as usize).clamp(min, max.max(min)),
            max: max.max(min),
        }
        .clamped()
    }

    fn clamped(mut self) -> Self {
        self.expected = self.expected.clamp(self.min, self.max.max(self.min));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_bound_the_truth() {
        let total = 1000;
        let a = Cardinality::exact(100);
        let b = Cardinality::exact(500);
        let all = Cardinality::all(&[a, b], total);
        assert_eq!((all.min, all.expected, all.max), (0, 50, 100));
        let any = Cardinality::any(&[a, b], total);
        assert_eq!((any.min, any.expected, any.max), (500, 550, 600));
        let not_a = a.negate(total);
        assert_eq!((not_a.min, not_a.expected, not_a.max), (900, 900, 900));
        let big = Cardinality::all(&[Cardinality::exact(900), Cardinality::exact(800)], total);
        assert_eq!(big.min, 700);
        assert_eq!(Cardinality::all(&[], total), Cardinality::exact(total));
        let u = Cardinality::unknown(total);
        assert_eq!(Cardinality::all(&[a, u], total).max, 100);
    }
}
