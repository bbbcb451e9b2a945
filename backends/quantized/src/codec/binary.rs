//! Binary quantization: 1 or 2 bits per component, centred on the
//! trained mean, with the query kept at 8 bits.
//!
//! Real embeddings share a large common component, so the sign of a raw
//! coordinate says little; this codec takes bits of `y = x - mean`
//! instead, in units of each dimension's standard deviation `sigma`:
//!
//! * 1 bit: `s = [y > 0]`; decodes as `mean + sigma · (±0.798)` (the mean
//!   of `|N(0, 1)|`).
//! * 2 bits: `s` and `m = [|y| > 0.982·sigma]`; decodes as
//!   `mean + sigma · (±0.453 or ±1.510)` (the 4-level Lloyd-Max quantizer
//!   of a normal distribution).
//!
//! The bits per dimension are a type parameter ([`typenum::U1`],
//! [`typenum::U2`]), so `Binary<U1>` and `Binary<U2>` are different
//! storages to the compiler. Scoring is asymmetric: the query becomes
//! `z = sigma · q`, quantized to 8 bits and split into 8 bit planes, so
//! `Σ z` over the dimensions where a code bit is set is a sum of
//! `popcount(code & plane) << p`:
//!
//! ```text
//! x̂·q = mean·q + Σ u_i z_i,   u_i = ±level
//! 1 bit:  Σ u z = a · (2 Σ_S z − Σ z)
//! 2 bits: Σ u z = L1 · (2 Σ_S z − Σ z) + (L2 − L1) · (2 Σ_{S∩M} z − Σ_M z)
//! ```
//!
//! Code layout: `bits` planes of `ceil(dim / 64)` u64 LE words (plane 0 the
//! signs, plane 1 the magnitudes), then `|x|²` as f32 LE (exact, for
//! euclid). Parameters: `mean` (`dim` f32 LE), then `sigma` (`dim` f32 LE).
//! Manhattan is not supported.

use std::marker::PhantomData;

use typenum::{Unsigned, U1, U2};
use vecseg_traits::{Distance, Result, StorageError};

use super::{check_sample, put_f32s, Codec, ParamReader};

/// Bits per dimension of a [`Binary`] codec: [`U1`] or [`U2`].
pub trait BitsPerDim: Unsigned + Send + Sync + 'static + sealed::Sealed {}
impl BitsPerDim for U1 {}
impl BitsPerDim for U2 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for typenum::U1 {}
    impl Sealed for typenum::U2 {}
}

/// One bit per dimension.
pub type Binary1 = Binary<U1>;
/// Two bits per dimension.
pub type Binary2 = Binary<U2>;

/// 1-bit decode level, `E|N(0,1)|`.
const LEVEL_1BIT: f32 = 0.797_884_6;
/// 2-bit levels and threshold (Lloyd-Max for a standard normal).
const LEVEL_INNER: f32 = 0.452_8;
const LEVEL_OUTER: f32 = 1.510_4;
const THRESHOLD: f32 = 0.981_6;

/// Training settings of [`Binary`].
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryConfig {
    /// Most vectors training looks at (default 100,000).
    pub sample: usize,
}

impl Default for BinaryConfig {
    fn default() -> Self {
        BinaryConfig { sample: 100_000 }
    }
}

/// Bits of `x - mean` per dimension (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Binary<B: BitsPerDim> {
    dim: usize,
    distance: Distance,
    mean: Vec<f32>,
    sigma: Vec<f32>,
    _bits: PhantomData<B>,
}

/// A query prepared for [`Binary`].
#[derive(Debug, Clone)]
pub struct BinaryQuery {
    /// 8 planes of `words` u64 each: bit `i` of plane `p` is bit `p` of
    /// the 8-bit level of `z_i`.
    planes: Vec<u64>,
    /// `z_i ≈ lo + step · level_i`.
    lo: f32,
    step: f32,
    /// `Σ z`, `mean·q`, `|q|²`.
    z_sum: f32,
    mean_dot: f32,
    norm_sq: f32,
}

impl<B: BitsPerDim> Binary<B> {
    fn words(&self) -> usize {
        self.dim.div_ceil(64)
    }

    /// `Σ z_i` over the dimensions whose bit is set in `mask` (`words` u64).
    #[inline]
    fn masked_sum(&self, q: &BinaryQuery, mask: impl Fn(usize) -> u64) -> f32 {
        let words = self.words();
        let mut count = 0u32;
        let mut weighted = 0u64;
        for w in 0..words {
            let m = mask(w);
            count += m.count_ones();
            for p in 0..8 {
                weighted += u64::from((m & q.planes[p * words + w]).count_ones()) << p;
            }
        }
        q.lo * count as f32 + q.step * weighted as f32
    }

    /// The decoded vector of `code`.
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        let words = self.words();
        (0..self.dim)
            .map(|i| {
                let bit = |plane: usize| word(code, plane * words + i / 64) >> (i % 64) & 1 == 1;
                let sign = if bit(0) { 1.0 } else { -1.0 };
                let level = if B::USIZE == 1 {
                    LEVEL_1BIT
                } else if bit(1) {
                    LEVEL_OUTER
                } else {
                    LEVEL_INNER
                };
                self.mean[i] + self.sigma[i] * sign * level
            })
            .collect()
    }
}

#[inline]
fn word(code: &[u8], index: usize) -> u64 {
    let b = &code[index * 8..index * 8 + 8];
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<B: BitsPerDim> Codec for Binary<B> {
    const NAME: &'static str = if B::USIZE == 1 {
        "binary-1"
    } else {
        "binary-2"
    };
    type Config = BinaryConfig;
    type Query = BinaryQuery;

    fn sample_limit(config: &BinaryConfig) -> usize {
        config.sample
    }

    fn train(_: &BinaryConfig, dim: usize, distance: Distance, sample: &[f32]) -> Result<Self> {
        if distance == Distance::Manhattan {
            return Err(StorageError::Unsupported(
                "binary quantization cannot approximate manhattan distance".into(),
            ));
        }
        let n = check_sample(sample, dim)?;
        let mut mean = vec![0.0f64; dim];
        for v in sample.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(v) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; dim];
        for v in sample.chunks_exact(dim) {
            for ((s, &x), m) in var.iter_mut().zip(v).zip(&mean) {
                *s += (f64::from(x) - m).powi(2);
            }
        }
        Ok(Binary {
            dim,
            distance,
            mean: mean.iter().map(|&m| m as f32).collect(),
            sigma: var.iter().map(|&s| (s / n as f64).sqrt() as f32).collect(),
            _bits: PhantomData,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn code_len(&self) -> usize {
        B::USIZE * self.words() * 8 + 4
    }

    fn encode(&self, v: &[f32], code: &mut [u8]) {
        let words = self.words();
        let mut planes = vec![0u64; B::USIZE * words];
        for (i, ((&x, &m), &s)) in v.iter().zip(&self.mean).zip(&self.sigma).enumerate() {
            let y = x - m;
            if y > 0.0 {
                planes[i / 64] |= 1 << (i % 64);
            }
            if B::USIZE == 2 && y.abs() > THRESHOLD * s {
                planes[words + i / 64] |= 1 << (i % 64);
            }
        }
        for (chunk, w) in code.chunks_exact_mut(8).zip(&planes) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let norm_sq: f32 = v.iter().map(|x| x * x).sum();
        let at = planes.len() * 8;
        code[at..at + 4].copy_from_slice(&norm_sq.to_le_bytes());
    }

    fn prepare(&self, query: &[f32]) -> BinaryQuery {
        let z: Vec<f32> = query.iter().zip(&self.sigma).map(|(q, s)| q * s).collect();
        let (lo, hi) = z
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let step = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let words = self.words();
        let mut planes = vec![0u64; 8 * words];
        for (i, &x) in z.iter().enumerate() {
            let level = ((x - lo) / step).round().clamp(0.0, 255.0) as u32;
            for (p, plane) in planes.chunks_exact_mut(words).enumerate() {
                if level >> p & 1 == 1 {
                    plane[i / 64] |= 1 << (i % 64);
                }
            }
        }
        BinaryQuery {
            planes,
            lo: if z.is_empty() { 0.0 } else { lo },
            step,
            z_sum: z.iter().sum(),
            mean_dot: self.mean.iter().zip(query).map(|(m, q)| m * q).sum(),
            norm_sq: query.iter().map(|x| x * x).sum(),
        }
    }

    #[inline]
    fn score(&self, q: &BinaryQuery, code: &[u8]) -> f32 {
        let words = self.words();
        let signs = self.masked_sum(q, |w| word(code, w));
        let centred = if B::USIZE == 1 {
            LEVEL_1BIT * (2.0 * signs - q.z_sum)
        } else {
            let both = self.masked_sum(q, |w| word(code, w) & word(code, words + w));
            let outer = self.masked_sum(q, |w| word(code, words + w));
            LEVEL_INNER * (2.0 * signs - q.z_sum)
                + (LEVEL_OUTER - LEVEL_INNER) * (2.0 * both - outer)
        };
        let dot = q.mean_dot + centred;
        if self.distance == Distance::Euclid {
            let at = B::USIZE * words * 8;
            let norm_sq = f32::from_le_bytes([code[at], code[at + 1], code[at + 2], code[at + 3]]);
            -(norm_sq + q.norm_sq - 2.0 * dot).max(0.0).sqrt()
        } else {
            dot
        }
    }

    fn rescore_by_default(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * self.dim);
        put_f32s(&mut out, &self.mean);
        put_f32s(&mut out, &self.sigma);
        out
    }

    fn from_params(
        dim: usize,
        distance: Distance,
        bytes: &[u8],
    ) -> std::result::Result<Self, String> {
        let mut r = ParamReader::new(bytes);
        let mean = r.f32s(dim)?;
        let sigma = r.f32s(dim)?;
        r.finish()?;
        if mean.iter().chain(&sigma).any(|x| !x.is_finite()) || sigma.iter().any(|s| *s < 0.0) {
            return Err("invalid binary parameters: non-finite mean or negative deviation".into());
        }
        Ok(Binary {
            dim,
            distance,
            mean,
            sigma,
            _bits: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Anisotropic data: a large shared component plus noise.
    fn shifted(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * dim)
            .map(|i| 3.0 + (i % dim) as f32 * 0.01 + rng.gen_range(-1.0f32..1.0))
            .collect()
    }

    fn recall_at_10<B: BitsPerDim>(dim: usize, oversample: usize) -> f64 {
        let data = shifted(2000, dim, 3);
        let codec =
            Binary::<B>::train(&BinaryConfig::default(), dim, Distance::Dot, &data).unwrap();
        let codes: Vec<Vec<u8>> = data
            .chunks_exact(dim)
            .map(|v| {
                let mut c = vec![0u8; codec.code_len()];
                codec.encode(v, &mut c);
                c
            })
            .collect();
        let queries = shifted(20, dim, 4);
        let mut found = 0;
        for q in queries.chunks_exact(dim) {
            let mut exact: Vec<(f32, usize)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| (Distance::Dot.score_f32(q, v), i))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let prepared = codec.prepare(q);
            let mut approx: Vec<(f32, usize)> = codes
                .iter()
                .enumerate()
                .map(|(i, c)| (codec.score(&prepared, c), i))
                .collect();
            approx.sort_by(|a, b| b.0.total_cmp(&a.0));
            // Rescore the oversampled candidates exactly.
            let mut rescored: Vec<(f32, usize)> = approx[..10 * oversample]
                .iter()
                .map(|&(_, i)| (exact.iter().find(|e| e.1 == i).unwrap().0, i))
                .collect();
            rescored.sort_by(|a, b| b.0.total_cmp(&a.0));
            found += rescored[..10]
                .iter()
                .filter(|r| exact[..10].iter().any(|e| e.1 == r.1))
                .count();
        }
        found as f64 / 200.0
    }

    #[test]
    fn scores_are_the_decoded_vectors_scores() {
        let dim = 100;
        let data = shifted(200, dim, 1);
        for distance in [Distance::Dot, Distance::Euclid] {
            let c1 = Binary1::train(&BinaryConfig::default(), dim, distance, &data).unwrap();
            let c2 = Binary2::train(&BinaryConfig::default(), dim, distance, &data).unwrap();
            let q = &data[..dim];
            for v in data.chunks_exact(dim).skip(1).take(50) {
                for (decoded, approx) in [
                    {
                        let mut code = vec![0u8; c1.code_len()];
                        c1.encode(v, &mut code);
                        (c1.decode(&code), c1.score(&c1.prepare(q), &code))
                    },
                    {
                        let mut code = vec![0u8; c2.code_len()];
                        c2.encode(v, &mut code);
                        (c2.decode(&code), c2.score(&c2.prepare(q), &code))
                    },
                ] {
                    // The decoded vector's dot with the query, up to the
                    // query's 8-bit rounding (half a step per dimension).
                    let dot: f32 = decoded.iter().zip(q).map(|(a, b)| a * b).sum();
                    let want = if distance == Distance::Euclid {
                        let n: f32 = v.iter().map(|x| x * x).sum();
                        let qn: f32 = q.iter().map(|x| x * x).sum();
                        -(n + qn - 2.0 * dot).max(0.0).sqrt()
                    } else {
                        dot
                    };
                    assert!(
                        (want - approx).abs() <= 0.02 * want.abs().max(1.0),
                        "{want} vs {approx}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_bits_beat_one_and_rescoring_recovers_the_top() {
        let one = recall_at_10::<U1>(64, 10);
        let two = recall_at_10::<U2>(64, 10);
        assert!(two >= one, "2-bit {two} < 1-bit {one}");
        assert!(two >= 0.8, "2-bit recall {two}");
        assert!(
            recall_at_10::<U2>(64, 200) == 1.0,
            "oversampling to every point is exact"
        );
    }

    #[test]
    fn bad_input_and_params() {
        let c = BinaryConfig::default();
        assert!(Binary1::train(&c, 2, Distance::Manhattan, &[1.0, 2.0]).is_err());
        assert!(Binary1::train(&c, 2, Distance::Dot, &[]).is_err());
        assert!(Binary1::train(&c, 2, Distance::Dot, &[1.0, f32::INFINITY]).is_err());
        let codec = Binary2::train(&c, 3, Distance::Dot, &shifted(10, 3, 9)).unwrap();
        let back = Binary2::from_params(3, Distance::Dot, &codec.params()).unwrap();
        assert_eq!(back, codec);
        assert!(Binary2::from_params(4, Distance::Dot, &codec.params()).is_err());
        assert!(Binary2::from_params(3, Distance::Dot, &codec.params()[..7]).is_err());
        assert_eq!(Binary1::NAME, "binary-1");
        assert_eq!(Binary2::NAME, "binary-2");
    }
}
