//! Scalar quantization to four bits per component, each over its own
//! trained range, scored with fast-scan tables.
//!
//! Training finds a range `[lo_i, hi_i]` per component `i`: the minimum
//! and maximum of the sample's values of that component, or with
//! `quantile = Some(q)` their central `q` share (outliers then clip). A
//! component `x` becomes `c = round((x − lo_i) / alpha_i)` clamped to
//! `0..=15`, with `alpha_i = (hi_i − lo_i) / 15`; it decodes as `lo_i +
//! alpha_i · c`. Ranges per component suit real embeddings, whose
//! components spread very differently; with 16 levels one shared range
//! would waste most of them on the widest components.
//!
//! Scoring is asymmetric: the query stays exact in the tables. A code
//! byte holds two components, so per byte position the query's
//! [`NibbleTables<2>`] hold the term of each of the 16 levels of each
//! component — `q_i · x̂`, `(q_i − x̂)²` or `|q_i − x̂|` — rounded to
//! integers ([`super::fast_scan`]); a code's score is the sum of its
//! entries (dot, cosine), its negated square root (euclid) or its
//! negation (manhattan). No per-vector term is needed, for any distance.
//! The AVX2 kernel looks the nibbles up with `vpshufb`, 32 codes at a time
//! ([`plain_sums`](super::block_source::plain_sums)); every path sums
//! the same integers, so scores agree bit for bit.
//!
//! Code layout (`ceil(dim / 2)` bytes): component `2 j` in the low nibble
//! of byte `j`, component `2 j + 1` in its high nibble (0 past `dim`).
//! Parameters: `lo` (`dim` f32 LE), then `alpha` (`dim` f32 LE).

use vecseg_traits::{Distance, Result};

use super::fast_scan::NibbleTables;
use super::scalar::{value_range, ScalarConfig};
use super::{check_sample, put_f32s, Codec, ParamReader};

/// Largest code of a component.
const LEVELS: f32 = 15.0;

/// Four bits per component over per-component trained ranges (see the
/// [module docs](self)). Trained with [`ScalarConfig`], as
/// [`ScalarU8`](super::ScalarU8) is.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarU4 {
    dim: usize,
    distance: Distance,
    lo: Vec<f32>,
    alpha: Vec<f32>,
}

/// A query prepared for [`ScalarU4`]: per code byte, the rounded terms of
/// the 16 levels of its two components.
#[derive(Debug, Clone)]
pub struct ScalarU4Query {
    tables: NibbleTables<2>,
}

impl ScalarU4Query {
    /// Largest rounding error of one table entry (one per component).
    pub fn max_rounding_error(&self) -> f32 {
        self.tables.max_rounding_error()
    }
}

impl ScalarU4 {
    /// The trained range `(lo, hi)` of each component.
    pub fn ranges(&self) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.lo
            .iter()
            .zip(&self.alpha)
            .map(|(&lo, &alpha)| (lo, lo + alpha * LEVELS))
    }

    /// The code of component `i` with value `x`.
    fn quantize(&self, i: usize, x: f32) -> u8 {
        ((x - self.lo[i]) / self.alpha[i])
            .round()
            .clamp(0.0, LEVELS) as u8
    }

    /// The decoded value of level `c` of component `i`.
    fn level(&self, i: usize, c: u8) -> f32 {
        self.lo[i] + self.alpha[i] * f32::from(c)
    }

    /// The decoded vector of `code`.
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        (0..self.dim)
            .map(|i| self.level(i, code[i / 2] >> (4 * (i % 2)) & 0xF))
            .collect()
    }

    /// The score from the sum of a code's terms.
    #[inline(always)]
    fn finish(&self, sum: f32) -> f32 {
        super::score_of_terms(self.distance, sum)
    }

    /// The term one component of value `q` adds for decoded value `x`.
    #[inline(always)]
    fn term(&self, q: f32, x: f32) -> f32 {
        match self.distance {
            Distance::Cosine | Distance::Dot => q * x,
            Distance::Euclid => (q - x) * (q - x),
            Distance::Manhattan => (q - x).abs(),
        }
    }
}

/// [`ScalarU4::score_batch`]'s AVX2 bodies: 32 codes per kernel pass,
/// from rows or a column group.
#[cfg(target_arch = "x86_64")]
impl super::BatchAvx2 for ScalarU4 {
    #[inline(always)]
    fn batch_avx2(&self, simd: pulp::x86::V3, q: &ScalarU4Query, codes: &[u8], out: &mut [f32]) {
        super::block_source::score_rows(
            simd,
            codes,
            self.code_len(),
            out,
            #[inline(always)]
            |rows, o| self.score_block(simd, q, rows, o),
            #[inline(always)]
            |code| self.score(q, code),
        );
    }

    #[inline(always)]
    fn columns_avx2(
        &self,
        simd: pulp::x86::V3,
        q: &ScalarU4Query,
        columns: &[u8],
        out: &mut [f32],
    ) {
        super::block_source::score_groups(
            simd,
            columns,
            self.code_len(),
            out,
            #[inline(always)]
            |group, o| self.score_block(simd, q, group, o),
        );
    }
}

#[cfg(target_arch = "x86_64")]
impl ScalarU4 {
    /// The scores of 32 codes from `src`: the table sums of
    /// [`plain_sums`](super::block_source::plain_sums), weighted and
    /// finished as [`Codec::score`] does.
    #[inline(always)]
    fn score_block(
        &self,
        simd: pulp::x86::V3,
        q: &ScalarU4Query,
        src: &impl super::block_source::BlockSource,
        out: &mut [f32],
    ) {
        use super::block_source::{block_weight, plain_sums};
        use pulp::Simd;
        let sums = plain_sums(simd, &q.tables, src);
        let step = simd.splat_f32s(q.tables.step());
        for (out, sums) in out.chunks_exact_mut(8).zip(sums.sums) {
            let weighted: [f32; 8] = pulp::cast(block_weight(simd, step, sums));
            for (o, x) in out.iter_mut().zip(weighted) {
                *o = self.finish(x);
            }
        }
    }
}

impl Codec for ScalarU4 {
    const NAME: &'static str = "scalar-u4";
    type Config = ScalarConfig;
    type Query = ScalarU4Query;

    fn sample_limit(config: &ScalarConfig) -> usize {
        config.sample
    }

    fn train(
        config: &ScalarConfig,
        dim: usize,
        distance: Distance,
        sample: &[f32],
    ) -> Result<Self> {
        let n = check_sample(sample, dim)?;
        let mut lo = Vec::with_capacity(dim);
        let mut alpha = Vec::with_capacity(dim);
        let mut column = Vec::with_capacity(n);
        for i in 0..dim {
            column.clear();
            column.extend(sample.iter().skip(i).step_by(dim));
            let (l, h) = value_range(&column, config.quantile)?;
            lo.push(l);
            // Every value equal: any positive step decodes it exactly.
            alpha.push(if h > l { (h - l) / LEVELS } else { 1.0 });
        }
        Ok(ScalarU4 {
            dim,
            distance,
            lo,
            alpha,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn code_len(&self) -> usize {
        self.dim.div_ceil(2)
    }

    fn encode(&self, v: &[f32], code: &mut [u8]) {
        code[..self.code_len()].fill(0);
        for (i, &x) in v.iter().enumerate().take(self.dim) {
            code[i / 2] |= self.quantize(i, x) << (4 * (i % 2));
        }
    }

    fn prepare(&self, query: &[f32]) -> ScalarU4Query {
        // Byte j: components 2 j (low nibble) and 2 j + 1; terms past
        // `dim` are 0.
        let table = |i: usize| -> [f32; 16] {
            match query.get(i).filter(|_| i < self.dim) {
                Some(&q) => std::array::from_fn(|c| self.term(q, self.level(i, c as u8))),
                None => [0.0; 16],
            }
        };
        ScalarU4Query {
            tables: NibbleTables::rounded(self.code_len(), |j| [table(2 * j), table(2 * j + 1)]),
        }
    }

    #[inline]
    fn score(&self, q: &ScalarU4Query, code: &[u8]) -> f32 {
        self.finish(q.tables.weight(q.tables.sum_bytes(code)))
    }

    fn score_batch(&self, q: &ScalarU4Query, codes: &[u8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::try_batch_avx2(self, q, codes, false, out) {
            return;
        }
        for (code, o) in codes.chunks_exact(self.code_len()).zip(out) {
            *o = self.score(q, code);
        }
    }

    /// Scans of stored column groups run the AVX2 kernel.
    const COLUMNS: bool = true;

    fn score_columns(&self, q: &ScalarU4Query, columns: &[u8], out: &mut [f32]) {
        super::score_columns_with_kernel(self, q, columns, out);
    }

    fn rescore_by_default(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * self.dim);
        put_f32s(&mut out, &self.lo);
        put_f32s(&mut out, &self.alpha);
        out
    }

    fn from_params(
        dim: usize,
        distance: Distance,
        bytes: &[u8],
    ) -> std::result::Result<Self, String> {
        let mut r = ParamReader::new(bytes);
        let lo = r.f32s(dim)?;
        let alpha = r.f32s(dim)?;
        r.finish()?;
        if let Some(i) =
            (0..dim).find(|&i| !lo[i].is_finite() || !alpha[i].is_finite() || alpha[i] <= 0.0)
        {
            return Err(format!(
                "invalid range of component {i}: lo {}, step {}",
                lo[i], alpha[i]
            ));
        }
        Ok(ScalarU4 {
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

    /// Components with very different spreads, as real embeddings have.
    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * dim)
            .map(|k| rng.gen_range(-1.0f32..1.0) * (1.0 + (k % dim) as f32 / 4.0) + 0.1)
            .collect()
    }

    /// Every component decodes within half its own step, and the score of
    /// a code is the decoded vector's exact score within the tables'
    /// rounding (one entry per component), for every distance.
    #[test]
    fn decoding_is_within_half_a_step_and_scores_are_the_decoded_ones() {
        let dim = 13;
        let data = random(300, dim, 1);
        for distance in [
            Distance::Cosine,
            Distance::Dot,
            Distance::Euclid,
            Distance::Manhattan,
        ] {
            let c = ScalarU4::train(&ScalarConfig::default(), dim, distance, &data).unwrap();
            assert_eq!(c.code_len(), 7);
            let q = &data[..dim];
            let prepared = c.prepare(q);
            let mut code = vec![0u8; c.code_len()];
            let mut spread = (f32::INFINITY, f32::NEG_INFINITY);
            for v in data.chunks_exact(dim).skip(1).take(100) {
                c.encode(v, &mut code);
                let decoded = c.decode(&code);
                for (i, ((&x, &y), (lo, hi))) in v.iter().zip(&decoded).zip(c.ranges()).enumerate()
                {
                    assert!((x - y).abs() <= (hi - lo) / 30.0 + 1e-6, "component {i}");
                }
                let sum: f32 = q.iter().zip(&decoded).map(|(&a, &b)| c.term(a, b)).sum();
                let err = prepared.max_rounding_error() * dim as f32 + 1e-4 * sum.abs();
                let got = c.score(&prepared, &code);
                let (low, high) = (c.finish(sum - err), c.finish(sum + err));
                let (low, high) = (low.min(high), low.max(high));
                assert!(
                    (low..=high).contains(&got),
                    "{distance:?}: {got} not in [{low}, {high}]"
                );
                spread = (spread.0.min(sum), spread.1.max(sum));
            }
            // The bound matters: it is far below the spread of the sums.
            assert!(
                prepared.max_rounding_error() * dim as f32 * 10.0 < spread.1 - spread.0,
                "{distance:?}"
            );
        }
    }

    #[test]
    fn quantile_clips_outliers_and_params_round_trip() {
        let dim = 4;
        let mut data = random(1000, dim, 2);
        data[0] = 1e6;
        let all = ScalarU4::train(&ScalarConfig::default(), dim, Distance::Dot, &data).unwrap();
        let config = ScalarConfig {
            quantile: Some(0.99),
            ..Default::default()
        };
        let clipped = ScalarU4::train(&config, dim, Distance::Dot, &data).unwrap();
        let hi = |c: &ScalarU4| c.ranges().next().unwrap().1;
        assert_eq!(hi(&all), 1e6);
        assert!(hi(&clipped) < 10.0);
        let back = ScalarU4::from_params(dim, Distance::Dot, &clipped.params()).unwrap();
        assert_eq!(back, clipped);
        // A value beyond the range clips to the last level.
        let mut code = vec![0u8; clipped.code_len()];
        clipped.encode(&[1e9, -1e9, 0.0, 0.0], &mut code);
        assert_eq!(code[0], 0x0F);
    }

    #[test]
    fn bad_training_input_and_params_are_errors() {
        let config = ScalarConfig::default();
        assert!(ScalarU4::train(&config, 4, Distance::Dot, &[]).is_err());
        assert!(ScalarU4::train(&config, 0, Distance::Dot, &[1.0]).is_err());
        assert!(ScalarU4::train(&config, 2, Distance::Dot, &[1.0, f32::NAN]).is_err());
        let bad_quantile = ScalarConfig {
            quantile: Some(1.5),
            ..Default::default()
        };
        assert!(ScalarU4::train(&bad_quantile, 2, Distance::Dot, &[1.0, 2.0]).is_err());
        // One value per component: a positive step, exact decoding.
        let c = ScalarU4::train(&config, 2, Distance::Dot, &[1.0, -2.0]).unwrap();
        let mut code = [0u8];
        c.encode(&[1.0, -2.0], &mut code);
        assert_eq!(c.decode(&code), vec![1.0, -2.0]);
        let params = c.params();
        assert!(ScalarU4::from_params(3, Distance::Dot, &params).is_err());
        assert!(ScalarU4::from_params(2, Distance::Dot, &params[..12]).is_err());
        let mut zero_step = params.clone();
        zero_step[8..12].copy_from_slice(&0.0f32.to_le_bytes());
        assert!(ScalarU4::from_params(2, Distance::Dot, &zero_step).is_err());
    }
}
