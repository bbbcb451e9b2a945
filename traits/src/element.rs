//! Vector element types (`f32`, `u8`) and how each is validated and scored.

use std::fmt::Debug;

use crate::distance::{self, Distance};
use crate::error::{Result, StorageError};

/// A vector component type that can be stored and scored.
///
/// `Pod` makes it castable from mapped bytes; the methods tell how to
/// validate, prepare and score vectors of this type.
pub trait VectorElement:
    bytemuck::Pod + Send + Sync + PartialEq + Debug + Default + 'static
{
    /// Stable name used in file headers and configs.
    const NAME: &'static str;
    /// Tag written in binary file headers (1 = f32, 2 = u8).
    const TAG: u32;

    /// Widen to f32.
    fn to_f32(self) -> f32;

    /// Check a vector before it is stored: dimension and finiteness.
    fn validate(v: &[Self], dim: usize) -> Result<()> {
        if v.len() != dim {
            return Err(StorageError::DimensionMismatch {
                expected: dim,
                got: v.len(),
            });
        }
        Ok(())
    }

    /// Bring a valid vector into its stored form (cosine normalises f32).
    fn preprocess(distance: Distance, v: &mut [Self]) -> Result<()>;

    /// Score two stored-form vectors (higher is better).
    fn score(distance: Distance, a: &[Self], b: &[Self]) -> f32;

    /// Score `a` against four vectors, equal to four [`score`](Self::score)
    /// calls; types with an interleaved kernel override it.
    #[inline]
    fn score4(distance: Distance, a: &[Self], b: [&[Self]; 4]) -> [f32; 4] {
        b.map(|b| Self::score(distance, a, b))
    }
}

impl VectorElement for f32 {
    const NAME: &'static str = "f32";
    const TAG: u32 = 1;

    #[inline]
    fn to_f32(self) -> f32 {
        self
    }

    fn validate(v: &[f32], dim: usize) -> Result<()> {
        if v.len() != dim {
            return Err(StorageError::DimensionMismatch {
                expected: dim,
                got: v.len(),
            });
        }
        // A branch-free pass the compiler vectorises; the position is
        // only searched for when there is something to report.
        if v.iter().fold(true, |ok, x| ok & x.is_finite()) {
            return Ok(());
        }
        let index = v.iter().position(|x| !x.is_finite()).unwrap_or(0);
        Err(StorageError::NonFiniteComponent { index })
    }

    fn preprocess(distance: Distance, v: &mut [f32]) -> Result<()> {
        if distance == Distance::Cosine && !distance::normalize(v) {
            return Err(StorageError::ZeroVector);
        }
        Ok(())
    }

    #[inline]
    fn score(distance: Distance, a: &[f32], b: &[f32]) -> f32 {
        distance.score_f32(a, b)
    }

    #[inline]
    fn score4(distance: Distance, a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
        distance.score4_f32(a, b)
    }
}

impl VectorElement for u8 {
    const NAME: &'static str = "u8";
    const TAG: u32 = 2;

    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }

    fn preprocess(distance: Distance, v: &mut [u8]) -> Result<()> {
        if distance == Distance::Cosine && v.iter().all(|&x| x == 0) {
            return Err(StorageError::ZeroVector);
        }
        Ok(())
    }

    fn score(distance: Distance, a: &[u8], b: &[u8]) -> f32 {
        let (mut dot, mut na, mut nb, mut l2, mut l1) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as u64, y as u64);
            dot += x * y;
            na += x * x;
            nb += y * y;
            let d = x.abs_diff(y);
            l2 += d * d;
            l1 += d;
        }
        match distance {
            // Integer vectors cannot be normalised in place, so cosine is computed in full.
            Distance::Cosine => dot as f32 / ((na as f32).sqrt() * (nb as f32).sqrt()),
            Distance::Dot => dot as f32,
            Distance::Euclid => -(l2 as f32).sqrt(),
            Distance::Manhattan => -(l1 as f32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_validation_rejects_bad_input() {
        assert!(matches!(
            f32::validate(&[1.0], 2),
            Err(StorageError::DimensionMismatch {
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            f32::validate(&[1.0, f32::NAN], 2),
            Err(StorageError::NonFiniteComponent { index: 1 })
        ));
        assert!(matches!(
            f32::validate(&[f32::INFINITY, 0.0], 2),
            Err(StorageError::NonFiniteComponent { index: 0 })
        ));
        let mut zero = [0.0f32; 3];
        assert!(matches!(
            f32::preprocess(Distance::Cosine, &mut zero),
            Err(StorageError::ZeroVector)
        ));
        assert!(f32::preprocess(Distance::Dot, &mut zero).is_ok());
    }

    #[test]
    fn u8_cosine_matches_f32_cosine() {
        let (a, b) = ([1u8, 2, 3], [4u8, 0, 6]);
        let mut fa: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let mut fb: Vec<f32> = b.iter().map(|&x| x as f32).collect();
        f32::preprocess(Distance::Cosine, &mut fa).unwrap();
        f32::preprocess(Distance::Cosine, &mut fb).unwrap();
        let want = f32::score(Distance::Cosine, &fa, &fb);
        assert!((u8::score(Distance::Cosine, &a, &b) - want).abs() < 1e-5);
        assert_eq!(u8::score(Distance::Manhattan, &a, &b), -(3.0 + 2.0 + 3.0));
    }
}
