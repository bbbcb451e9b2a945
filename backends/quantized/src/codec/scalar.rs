//! Scalar quantization to one byte per component.
//!
//! Training finds one range `[lo, hi]` for all components: the minimum and
//! maximum of the sample, or with `quantile = Some(q)` the central `q`
//! share of the sample's values (outliers then clip). A component `x`
//! becomes `c = round((x - lo) / alpha)` clamped to `0..=255`, with
//! `alpha = (hi - lo) / 255`; it decodes as `lo + alpha * c`.
//!
//! Scoring quantizes the query with the same range (`d`), so the heavy
//! part is an integer dot product `Σ c·d` (or `Σ |c - d|`):
//!
//! ```text
//! x̂·q ≈ lo·Σq  +  alpha·lo·Σc  +  alpha²·Σ c·d
//!       (query)   (per vector)    (integer kernel)
//! ```
//!
//! Code layout (`dim + 8` bytes): `dim` bytes `c`, then `alpha·lo·Σc` as
//! f32 LE, then `|x̂|²` as f32 LE (for euclid). Parameters: `lo` f32 LE,
//! `alpha` f32 LE.

use vecseg_traits::{Distance, Result};

use super::{check_sample, euclid_from_dot, f32_at, put_f32s, Codec, ParamReader};

/// Training settings of [`ScalarU8`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarConfig {
    /// Central share of the sample's values the range covers (e.g. 0.99);
    /// `None`: the whole range, minimum to maximum.
    pub quantile: Option<f32>,
    /// Most vectors training looks at (default 100,000).
    pub sample: usize,
}

impl Default for ScalarConfig {
    fn default() -> Self {
        ScalarConfig {
            quantile: None,
            sample: 100_000,
        }
    }
}

/// One byte per component over a trained range (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarU8 {
    dim: usize,
    distance: Distance,
    lo: f32,
    alpha: f32,
}

/// A query prepared for [`ScalarU8`].
#[derive(Debug, Clone)]
pub struct ScalarQuery {
    codes: Vec<u8>,
    /// `lo · Σq`.
    offset: f32,
    /// `|q|²`.
    norm_sq: f32,
}

impl ScalarU8 {
    /// The trained range `(lo, hi)`.
    pub fn range(&self) -> (f32, f32) {
        (self.lo, self.lo + self.alpha * 255.0)
    }

    fn quantize(&self, x: f32) -> u8 {
        ((x - self.lo) / self.alpha).round().clamp(0.0, 255.0) as u8
    }

    /// The decoded vector of `code`.
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        code[..self.dim]
            .iter()
            .map(|&c| self.lo + self.alpha * f32::from(c))
            .collect()
    }

    fn new(dim: usize, distance: Distance, lo: f32, hi: f32) -> Self {
        let alpha = if hi > lo {
            (hi - lo) / 255.0
        } else {
            // Every value equal: any positive step decodes it exactly.
            1.0
        };
        ScalarU8 {
            dim,
            distance,
            lo,
            alpha,
        }
    }

    /// The score of `code` with `dot` as the byte dot product (inlined
    /// into both [`Codec::score`] and the batch loop of
    /// [`Codec::score_batch`]).
    #[inline(always)]
    fn score_with(&self, q: &ScalarQuery, code: &[u8], dot: impl Fn(&[u8], &[u8]) -> u32) -> f32 {
        let c = &code[..self.dim];
        match self.distance {
            Distance::Manhattan => -self.alpha * l1_u8(c, &q.codes) as f32,
            d => {
                let dot = q.offset
                    + f32_at(code, self.dim)
                    + self.alpha * self.alpha * dot(c, &q.codes) as f32;
                if d == Distance::Euclid {
                    euclid_from_dot(f32_at(code, self.dim + 4), q.norm_sq, dot)
                } else {
                    dot
                }
            }
        }
    }
}

/// `Σ a·b` of two byte slices: on x86-64 CPUs with AVX2 (checked at run
/// time by `pulp`, which holds the `unsafe` of enabling the features),
/// 32 bytes a step, each half zero-extended to sixteen i16 lanes and
/// multiplied-and-added pairwise into eight 32-bit lanes (`vpmovzxbw`,
/// `vpmaddwd`); elsewhere the SSE2 loop of [`dot_u8_sse2`]. Per lane a
/// step adds at most 2 · 255², so dimensions up to 65,536 cannot overflow.
#[inline]
fn dot_u8(a: &[u8], b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot_u8_avx2(simd, a, b),
        );
    }
    dot_u8_sse2(a, b)
}

/// The AVX2 body of [`dot_u8`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_u8_avx2(simd: pulp::x86::V3, a: &[u8], b: &[u8]) -> u32 {
    use pulp::Simd;
    let n = a.len().min(b.len());
    let (a32, _) = pulp::as_arrays::<32, u8>(&a[..n]);
    let (b32, _) = pulp::as_arrays::<32, u8>(&b[..n]);
    let widen = |x: &[u8; 32], half: usize| {
        let bytes: [u8; 16] = pulp::cast(pulp::cast::<[u8; 32], [[u8; 16]; 2]>(*x)[half]);
        simd.convert_u8x16_to_i16x16(pulp::cast(bytes))
    };
    let (mut acc0, mut acc1) = (simd.splat_u32s(0), simd.splat_u32s(0));
    for (x, y) in a32.iter().zip(b32) {
        let p0 = simd.multiply_wrapping_add_adjacent_i16x16(widen(x, 0), widen(y, 0));
        let p1 = simd.multiply_wrapping_add_adjacent_i16x16(widen(x, 1), widen(y, 1));
        acc0 = simd.add_u32s(acc0, pulp::cast(p0));
        acc1 = simd.add_u32s(acc1, pulp::cast(p1));
    }
    let tail = a32.len() * 32;
    let rest: u32 = a[tail..n]
        .iter()
        .zip(&b[tail..n])
        .map(|(&x, &y)| u32::from(x) * u32::from(y))
        .sum();
    let lanes: [u32; 8] = pulp::cast(simd.add_u32s(acc0, acc1));
    lanes.iter().sum::<u32>() + rest
}

#[cfg(target_arch = "x86_64")]
impl super::BatchAvx2 for ScalarU8 {
    #[inline(always)]
    fn batch_avx2(&self, simd: pulp::x86::V3, q: &ScalarQuery, codes: &[u8], out: &mut [f32]) {
        for (code, o) in codes.chunks_exact(self.code_len()).zip(out) {
            *o = self.score_with(
                q,
                code,
                #[inline(always)]
                |a, b| dot_u8_avx2(simd, a, b),
            );
        }
    }
}

/// The portable body of [`dot_u8`]: 16 bytes at a time widened to i16 and
/// multiplied-and-added pairwise into i32 lanes (`pmaddwd` through `wide`,
/// SSE2 on x86-64).
#[inline]
fn dot_u8_sse2(a: &[u8], b: &[u8]) -> u32 {
    use wide::{i16x8, i32x4, u8x16};
    let mut acc = i32x4::ZERO;
    let blocks = a.chunks_exact(16).zip(b.chunks_exact(16));
    for (x, y) in blocks {
        let x = u8x16::new(<[u8; 16]>::try_from(x).unwrap_or([0; 16]));
        let y = u8x16::new(<[u8; 16]>::try_from(y).unwrap_or([0; 16]));
        acc += i16x8::from_u8x16_low(x).dot(i16x8::from_u8x16_low(y));
        acc += i16x8::from_u8x16_high(x).dot(i16x8::from_u8x16_high(y));
    }
    let tail = a.len() - a.len() % 16;
    let rest: u32 = a[tail..]
        .iter()
        .zip(&b[tail.min(b.len())..])
        .map(|(&x, &y)| u32::from(x) * u32::from(y))
        .sum();
    // Each lane is below 2³¹; their sum fits a u32 (an i32 could not hold it).
    acc.to_array().iter().map(|&lane| lane as u32).sum::<u32>() + rest
}

/// `Σ |a - b|` of two byte slices.
#[inline]
fn l1_u8(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| u32::from(x.abs_diff(y)))
        .sum()
}

/// The range `(lo, hi)` of `values` (not empty, finite): minimum to
/// maximum, or with `quantile = Some(q)`, `q < 1`, the central `q` share
/// of them; a quantile outside `(0, 1]` is an error.
pub(super) fn value_range(values: &[f32], quantile: Option<f32>) -> Result<(f32, f32)> {
    match quantile {
        Some(q) if q > 0.0 && q < 1.0 => {
            let mut values = values.to_vec();
            let last = values.len() - 1;
            let tail = f64::from(1.0 - q) / 2.0;
            let lo_at = ((last as f64) * tail).round() as usize;
            let hi_at = ((last as f64) * (1.0 - tail)).round() as usize;
            let lo = *values.select_nth_unstable_by(lo_at, f32::total_cmp).1;
            let hi = *values.select_nth_unstable_by(hi_at, f32::total_cmp).1;
            Ok((lo, hi))
        }
        Some(q) if q != 1.0 => Err(vecseg_traits::StorageError::InvalidArgument(format!(
            "scalar quantile must be in (0, 1], got {q}"
        ))),
        _ => Ok(values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })),
    }
}

impl Codec for ScalarU8 {
    const NAME: &'static str = "scalar-u8";
    type Config = ScalarConfig;
    type Query = ScalarQuery;

    fn sample_limit(config: &ScalarConfig) -> usize {
        config.sample
    }

    fn train(
        config: &ScalarConfig,
        dim: usize,
        distance: Distance,
        sample: &[f32],
    ) -> Result<Self> {
        check_sample(sample, dim)?;
        let (lo, hi) = value_range(sample, config.quantile)?;
        Ok(ScalarU8::new(dim, distance, lo, hi))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn code_len(&self) -> usize {
        self.dim + 8
    }

    fn encode(&self, v: &[f32], code: &mut [u8]) {
        let mut sum = 0u32;
        let mut norm_sq = 0.0f32;
        for (c, &x) in code[..self.dim].iter_mut().zip(v) {
            *c = self.quantize(x);
            sum += u32::from(*c);
            let decoded = self.lo + self.alpha * f32::from(*c);
            norm_sq += decoded * decoded;
        }
        let per_vector = self.alpha * self.lo * sum as f32;
        code[self.dim..self.dim + 4].copy_from_slice(&per_vector.to_le_bytes());
        code[self.dim + 4..self.dim + 8].copy_from_slice(&norm_sq.to_le_bytes());
    }

    fn prepare(&self, query: &[f32]) -> ScalarQuery {
        ScalarQuery {
            codes: query.iter().map(|&x| self.quantize(x)).collect(),
            offset: self.lo * query.iter().sum::<f32>(),
            norm_sq: query.iter().map(|x| x * x).sum(),
        }
    }

    #[inline]
    fn score(&self, q: &ScalarQuery, code: &[u8]) -> f32 {
        self.score_with(q, code, dot_u8)
    }

    fn score_batch(&self, q: &ScalarQuery, codes: &[u8], out: &mut [f32]) {
        let len = self.code_len();
        #[cfg(target_arch = "x86_64")]
        if super::try_batch_avx2(self, q, codes, false, out) {
            return;
        }
        for (code, o) in codes.chunks_exact(len).zip(out) {
            *o = self.score(q, code);
        }
    }

    fn rescore_by_default(&self) -> bool {
        false
    }

    fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        put_f32s(&mut out, &[self.lo, self.alpha]);
        out
    }

    fn from_params(
        dim: usize,
        distance: Distance,
        bytes: &[u8],
    ) -> std::result::Result<Self, String> {
        let mut r = ParamReader::new(bytes);
        let (lo, alpha) = (r.f32()?, r.f32()?);
        r.finish()?;
        if !lo.is_finite() || !alpha.is_finite() || alpha <= 0.0 {
            return Err(format!("invalid scalar range: lo {lo}, step {alpha}"));
        }
        Ok(ScalarU8 {
            dim,
            distance,
            lo,
            alpha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn decoding_is_within_half_a_step_and_scores_track_exact_ones() {
        let dim = 64;
        let data = random(500, dim, 1);
        for distance in [Distance::Dot, Distance::Euclid, Distance::Manhattan] {
            let codec = ScalarU8::train(&ScalarConfig::default(), dim, distance, &data).unwrap();
            let (lo, hi) = codec.range();
            assert!(lo >= -1.0 && hi <= 1.0 && hi > lo);
            let step = (hi - lo) / 255.0;
            let mut code = vec![0u8; codec.code_len()];
            let query: Vec<f32> = data[..dim].iter().map(|x| x * 0.5 + 0.1).collect();
            let prepared = codec.prepare(&query);
            for v in data.chunks_exact(dim) {
                codec.encode(v, &mut code);
                let decoded = codec.decode(&code);
                for (a, b) in v.iter().zip(&decoded) {
                    assert!((a - b).abs() <= step / 2.0 + 1e-6, "{a} vs {b}");
                }
                let exact = distance.score_f32(&query, v);
                let approx = codec.score(&prepared, &code);
                // Both sides quantized: each term errs by at most a step.
                let bound = match distance {
                    Distance::Euclid => 0.05 * exact.abs().max(1.0),
                    _ => step * dim as f32 * 1.5,
                };
                assert!(
                    (exact - approx).abs() <= bound,
                    "{distance:?}: {exact} vs {approx}"
                );
            }
        }
    }

    #[test]
    fn the_byte_dot_product_matches_a_plain_sum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for len in [0, 1, 15, 16, 17, 100, 384, 1000] {
            let a: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let want: u32 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| u32::from(x) * u32::from(y))
                .sum();
            assert_eq!(dot_u8(&a, &b), want, "len {len}");
            assert_eq!(dot_u8_sse2(&a, &b), want, "len {len}");
        }
        let max = vec![255u8; 65_536];
        assert_eq!(dot_u8(&max, &max), 65_536 * 255 * 255);
        assert_eq!(dot_u8_sse2(&max, &max), 65_536 * 255 * 255);
    }

    #[test]
    fn quantile_clips_outliers_and_params_round_trip() {
        let dim = 8;
        let mut data = random(1000, dim, 2);
        data[3] = 1000.0;
        let config = ScalarConfig {
            quantile: Some(0.99),
            ..Default::default()
        };
        let codec = ScalarU8::train(&config, dim, Distance::Dot, &data).unwrap();
        assert!(
            codec.range().1 < 2.0,
            "the outlier does not stretch the range"
        );
        let back = ScalarU8::from_params(dim, Distance::Dot, &codec.params()).unwrap();
        assert_eq!(back, codec);
        assert!(ScalarU8::from_params(dim, Distance::Dot, &codec.params()[..5]).is_err());
        assert!(ScalarU8::from_params(dim, Distance::Dot, &[0; 8]).is_err());
    }

    #[test]
    fn bad_training_input_is_an_error() {
        let c = ScalarConfig::default();
        assert!(ScalarU8::train(&c, 4, Distance::Dot, &[]).is_err());
        assert!(ScalarU8::train(&c, 4, Distance::Dot, &[1.0, 2.0, 3.0]).is_err());
        assert!(ScalarU8::train(&c, 2, Distance::Dot, &[1.0, f32::NAN]).is_err());
        assert!(ScalarU8::train(&c, 0, Distance::Dot, &[1.0]).is_err());
        let bad = ScalarConfig {
            quantile: Some(1.5),
            ..Default::default()
        };
        assert!(ScalarU8::train(&bad, 1, Distance::Dot, &[1.0]).is_err());
        // All-equal values (e.g. zero vectors) train and decode exactly.
        let z = ScalarU8::train(&c, 2, Distance::Dot, &[0.0; 8]).unwrap();
        let mut code = vec![0u8; z.code_len()];
        z.encode(&[0.0, 0.0], &mut code);
        assert_eq!(z.decode(&code), vec![0.0, 0.0]);
    }
}
