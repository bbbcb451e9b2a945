//! Distances and the scoring kernels.
//!
//! Every score is "higher is better": cosine and dot return the similarity,
//! euclid and manhattan return the *negated* distance. Kernels keep 16
//! independent accumulators so the compiler emits packed SIMD without
//! `unsafe` or target-specific code.

use serde::{Deserialize, Serialize};

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Cosine similarity. f32 vectors are normalised on insert, so scoring is a dot product.
    Cosine,
    /// Dot product.
    Dot,
    /// Euclidean distance (score = -distance).
    Euclid,
    /// Manhattan (L1) distance (score = -distance).
    Manhattan,
}

impl Distance {
    /// All distances, for tests and CLIs.
    pub const ALL: [Distance; 4] = [
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ];

    /// Stable lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Dot => "dot",
            Distance::Euclid => "euclid",
            Distance::Manhattan => "manhattan",
        }
    }

    /// Parse the lowercase name (as printed by [`Distance::name`]).
    pub fn from_name(name: &str) -> Option<Distance> {
        Distance::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Score two f32 vectors of equal length (higher is better). For cosine,
    /// both sides must already be normalised (see [`normalize`]).
    #[inline]
    pub fn score_f32(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot_f32(a, b),
            Distance::Euclid => -l2_sq_f32(a, b).sqrt(),
            Distance::Manhattan => -l1_f32(a, b),
        }
    }

    /// Scores of `q` against four vectors, equal bit for bit to four
    /// [`score_f32`](Self::score_f32) calls: the four are read in one
    /// interleaved pass (one kernel dispatch), so their cache misses
    /// overlap. Vectors of another length than `q` are scored alone.
    #[inline]
    pub fn score4_f32(self, q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        if v.iter().any(|x| x.len() != q.len()) {
            return v.map(|x| self.score_f32(q, x));
        }
        let term = match self {
            Distance::Cosine | Distance::Dot => Term::Dot,
            Distance::Euclid => Term::L2,
            Distance::Manhattan => Term::L1,
        };
        let sums = pulp::Arch::new().dispatch(Fold4 { a: q, b: v, term });
        sums.map(|x| match self {
            Distance::Cosine | Distance::Dot => x,
            Distance::Euclid => -x.sqrt(),
            Distance::Manhattan => -x,
        })
    }
}

/// Dot product of two equally long f32 slices.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Fold {
        a,
        b,
        term: Term::Dot,
    })
}

/// Squared euclidean distance of two equally long f32 slices.
#[inline]
pub fn l2_sq_f32(a: &[f32], b: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Fold {
        a,
        b,
        term: Term::L2,
    })
}

/// Manhattan distance of two equally long f32 slices.
#[inline]
pub fn l1_f32(a: &[f32], b: &[f32]) -> f32 {
    pulp::Arch::new().dispatch(Fold {
        a,
        b,
        term: Term::L1,
    })
}

/// What [`Fold`] sums per component pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Term {
    /// `a · b`
    Dot,
    /// `(a − b)²`
    L2,
    /// `|a − b|`
    L1,
}

impl Term {
    /// `acc` plus this term of one SIMD vector pair.
    #[inline(always)]
    fn step<S: pulp::Simd>(self, simd: S, acc: S::f32s, x: S::f32s, y: S::f32s) -> S::f32s {
        match self {
            Term::Dot => simd.mul_add_f32s(x, y, acc),
            Term::L2 => {
                let d = simd.sub_f32s(x, y);
                simd.mul_add_f32s(d, d, acc)
            }
            Term::L1 => simd.add_f32s(acc, simd.abs_f32s(simd.sub_f32s(x, y))),
        }
    }

    /// This term of one scalar pair (the tails past the SIMD width).
    #[inline(always)]
    fn scalar(self, x: f32, y: f32) -> f32 {
        match self {
            Term::Dot => x * y,
            Term::L2 => (x - y) * (x - y),
            Term::L1 => (x - y).abs(),
        }
    }
}

/// Sum of a [`Term`] over two slices with four independent accumulators
/// of the widest SIMD vectors pulp offers for the CPU (AVX2 + FMA, SSE,
/// chosen at run time by `pulp`, which holds the `unsafe` of calling
/// target-feature code; none is here).
struct Fold<'a> {
    a: &'a [f32],
    b: &'a [f32],
    term: Term,
}

impl pulp::WithSimd for Fold<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let n = self.a.len().min(self.b.len());
        let (a, a_tail) = S::as_simd_f32s(&self.a[..n]);
        let (b, b_tail) = S::as_simd_f32s(&self.b[..n]);
        let zero = simd.splat_f32s(0.0);
        let mut acc = [zero; 4];
        let term = self.term;
        let step = |acc: S::f32s, x: S::f32s, y: S::f32s| term.step(simd, acc, x, y);
        let (a4, a1) = pulp::as_arrays::<4, _>(a);
        let (b4, b1) = pulp::as_arrays::<4, _>(b);
        for (x, y) in a4.iter().zip(b4) {
            for j in 0..4 {
                acc[j] = step(acc[j], x[j], y[j]);
            }
        }
        for (x, y) in a1.iter().zip(b1) {
            acc[0] = step(acc[0], *x, *y);
        }
        let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
        let mut total = simd.reduce_sum_f32s(sum);
        for (x, y) in a_tail.iter().zip(b_tail) {
            total += self.term.scalar(*x, *y);
        }
        total
    }
}

/// [`Fold`] of one slice `a` against four slices `b` (each as long as
/// `a`), interleaved: every sum is accumulated in the same order as
/// [`Fold`]'s, so the results are identical.
struct Fold4<'a> {
    a: &'a [f32],
    b: [&'a [f32]; 4],
    term: Term,
}

impl pulp::WithSimd for Fold4<'_> {
    type Output = [f32; 4];

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> [f32; 4] {
        let (a, a_tail) = S::as_simd_f32s(self.a);
        let b = self.b.map(|b| S::as_simd_f32s(b));
        let zero = simd.splat_f32s(0.0);
        let mut acc = [[zero; 4]; 4];
        let term = self.term;
        let step = |acc: S::f32s, x: S::f32s, y: S::f32s| term.step(simd, acc, x, y);
        let (a4, a1) = pulp::as_arrays::<4, _>(a);
        let b4 = b.map(|(b, _)| pulp::as_arrays::<4, _>(b));
        for (i, x) in a4.iter().enumerate() {
            for j in 0..4 {
                for (acc, b) in acc.iter_mut().zip(&b4) {
                    acc[j] = step(acc[j], x[j], b.0[i][j]);
                }
            }
        }
        for (i, x) in a1.iter().enumerate() {
            for (acc, b) in acc.iter_mut().zip(&b4) {
                acc[0] = step(acc[0], *x, b.1[i]);
            }
        }
        let mut out = [0.0; 4];
        for ((total, acc), (_, b_tail)) in out.iter_mut().zip(&acc).zip(&b) {
            let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
            *total = simd.reduce_sum_f32s(sum);
            for (x, y) in a_tail.iter().zip(b_tail.iter()) {
                *total += self.term.scalar(*x, *y);
            }
        }
        out
    }
}

/// Normalise `v` in place to unit length. Returns `false` (leaving `v`
/// untouched) for a zero vector.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot_f32(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(d: Distance, a: &[f32], b: &[f32]) -> f32 {
        match d {
            Distance::Cosine | Distance::Dot => a.iter().zip(b).map(|(x, y)| x * y).sum(),
            Distance::Euclid => -a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Distance::Manhattan => -a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>(),
        }
    }

    #[test]
    fn kernels_match_naive_for_every_length() {
        for len in 0..70 {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            for d in Distance::ALL {
                let (got, want) = (d.score_f32(&a, &b), naive(d, &a, &b));
                assert!(
                    (got - want).abs() < 1e-4,
                    "{d:?} len {len}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn four_at_once_equals_one_at_a_time_bit_for_bit() {
        for len in [0, 1, 7, 8, 31, 32, 33, 64, 100, 384, 385] {
            let q: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let vs: Vec<Vec<f32>> = (0..4)
                .map(|k| {
                    (0..len)
                        .map(|i| ((i + 13 * k) as f32 * 0.11).cos())
                        .collect()
                })
                .collect();
            let v = [&vs[0][..], &vs[1][..], &vs[2][..], &vs[3][..]];
            for d in Distance::ALL {
                let four = d.score4_f32(&q, v);
                for (k, got) in four.iter().enumerate() {
                    let want = d.score_f32(&q, v[k]);
                    assert_eq!(got.to_bits(), want.to_bits(), "{d:?} len {len} vector {k}");
                }
            }
        }
        let short = [1.0f32, 2.0];
        let q = [0.5f32, 0.25, 1.0];
        let four = Distance::Dot.score4_f32(&q, [&short, &q, &q, &q]);
        assert_eq!(four[0], Distance::Dot.score_f32(&q, &short));
    }

    #[test]
    fn normalize_rejects_zero_and_yields_unit_norm() {
        assert!(!normalize(&mut [0.0, 0.0]));
        let mut v = [3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn names_round_trip() {
        for d in Distance::ALL {
            assert_eq!(Distance::from_name(d.name()), Some(d));
        }
        assert_eq!(Distance::from_name("hamming"), None);
    }
}
