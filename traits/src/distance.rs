//! Distances and the scoring kernels.
//!
//! Every score is "higher is better": cosine and dot return the similarity,
//! euclid and manhattan return the *negated* distance. Kernels keep 16
//! independent accumulators so the compiler emits packed SIMD without
//! `unsafe` or target-specific code.

use serde::{Deserialize, Serialize};
use wide::f32x4;

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
}

const LANES: usize = 16;

/// Dot product of two equally long f32 slices.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    fold_f32(a, b, |x, y| x * y, |x, y| x * y)
}

/// Squared euclidean distance of two equally long f32 slices.
#[inline]
pub fn l2_sq_f32(a: &[f32], b: &[f32]) -> f32 {
    fold_f32(a, b, |x, y| (x - y) * (x - y), |x, y| (x - y) * (x - y))
}

/// Manhattan distance of two equally long f32 slices.
#[inline]
pub fn l1_f32(a: &[f32], b: &[f32]) -> f32 {
    fold_f32(a, b, |x, y| (x - y).abs(), |x, y| (x - y).abs())
}

/// Sum of `term(a[i], b[i])` with 16 independent accumulators held in four
/// 4-lane vectors (`wide::f32x4`, SSE on x86-64 without any `unsafe` here):
/// LLVM's auto-vectoriser only used 2-lane operations for the scalar form.
/// `lanes` is `term` on four lanes at once.
#[inline(always)]
fn fold_f32(
    a: &[f32],
    b: &[f32],
    term: impl Fn(f32, f32) -> f32,
    lanes: impl Fn(f32x4, f32x4) -> f32x4,
) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [f32x4::ZERO; 4];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for (j, group) in acc.iter_mut().enumerate() {
            let x = f32x4::from(four(&x[j * 4..]));
            let y = f32x4::from(four(&y[j * 4..]));
            *group += lanes(x, y);
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += term(*x, *y);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add() + tail
}

/// The first four values of `s` (which always has at least four here).
#[inline(always)]
fn four(s: &[f32]) -> [f32; 4] {
    match s {
        [a, b, c, d, ..] => [*a, *b, *c, *d],
        _ => [0.0; 4],
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
