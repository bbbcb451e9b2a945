//! Binary quantization: 1 or 2 bits per component, centred on the
//! trained mean, scored asymmetrically against the full query.
//!
//! Real embeddings share a large common component, so the sign of a raw
//! coordinate says little; this codec takes bits of `y = x − mean`:
//!
//! * 1 bit: `s_i = [y_i > 0]`; `ŷ_i = ±a` with `a = mean |y_i|` of the
//!   vector (stored per vector).
//! * 2 bits: `s_i` and `m_i = [|y_i| > 0.982·sigma_i]`;
//!   `ŷ_i = ±sigma_i · (0.453 or 1.510)` (the 4-level Lloyd-Max quantizer
//!   of a normal distribution, per dimension).
//!
//! The score splits `x·q` so that only the part the bits are good at is
//! estimated; `y·mean` is stored exactly per vector:
//!
//! ```text
//! x·q = mean·q + y·mean + y·(q − mean)  ≈  mean·q + c_x + ŷ·(q − mean)
//! ```
//!
//! (on the e5 embeddings this raised 1-bit recall@10 at 4× oversampling
//! from 0.60, decoding `x̂ = mean + ŷ` and taking `x̂·q`, to 0.86; see
//! `docs/design-decisions.md`). The bits per dimension are a type
//! parameter ([`typenum::U1`], [`typenum::U2`]). Scoring is asymmetric:
//! the query stays in f32, and a table per code byte holds the sum of
//! `z_i = w_i (q_i − mean_i)` over every subset of its 8 dimensions
//! (`w = 1` for 1 bit, `sigma` for 2 bits), so `Σ z` over the set bits of
//! a code is one lookup per code byte:
//!
//! ```text
//! 1 bit:  ŷ·(q − mean) = a · (2 Σ_S z − Σ z)
//! 2 bits: ŷ·(q − mean) = L1 · (2 Σ_S z − Σ z) + (L2 − L1) · (2 Σ_{S∩M} z − Σ_M z)
//! ```
//!
//! Code layout (`nb = ceil(dim / 8)`): `nb` bytes of signs (bit `i % 8` of
//! byte `i / 8`), for 2 bits `nb` bytes of magnitudes, then f32 LE
//! `|x|²` (for euclid), `c_x = y·mean`, and `a` (1.0 for 2 bits).
//! Parameters: `mean` (`dim` f32 LE), then `sigma` (`dim` f32 LE).
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

/// Bits of `x − mean` per dimension (see the [module docs](self)).
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
    /// Per code byte, 256 sums: entry `b` is `Σ z_i` over the set bits of
    /// `b` (dimensions `8·byte + bit`).
    table: Vec<[f32; 256]>,
    /// `Σ z`, `mean·q`, `|q|²`.
    z_sum: f32,
    mean_dot: f32,
    norm_sq: f32,
}

fn f32_at(code: &[u8], at: usize) -> f32 {
    code.get(at..at + 4)
        .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<B: BitsPerDim> Binary<B> {
    /// Bytes of one bit plane.
    fn plane_len(&self) -> usize {
        self.dim.div_ceil(8)
    }

    /// Bytes of the bit planes (before the three f32s).
    fn planes_len(&self) -> usize {
        B::USIZE * self.plane_len()
    }

    /// `Σ z_i` over the set bits of `bytes`.
    #[inline]
    fn masked_sum(table: &[[f32; 256]], bytes: impl Iterator<Item = u8>) -> f32 {
        bytes.zip(table).map(|(b, t)| t[b as usize]).sum()
    }

    /// `ŷ` of `code` (the centred reconstruction, without the mean).
    pub fn decode_centred(&self, code: &[u8]) -> Vec<f32> {
        let nb = self.plane_len();
        let a = f32_at(code, self.planes_len() + 8);
        (0..self.dim)
            .map(|i| {
                let bit = |plane: usize| code[plane * nb + i / 8] >> (i % 8) & 1 == 1;
                let sign = if bit(0) { 1.0 } else { -1.0 };
                if B::USIZE == 1 {
                    sign * a
                } else if bit(1) {
                    sign * self.sigma[i] * LEVEL_OUTER
                } else {
                    sign * self.sigma[i] * LEVEL_INNER
                }
            })
            .collect()
    }

    /// The trained mean.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }
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
        self.planes_len() + 12
    }

    fn encode(&self, v: &[f32], code: &mut [u8]) {
        let nb = self.plane_len();
        let planes = self.planes_len();
        code[..planes].fill(0);
        let (mut abs_sum, mut c, mut norm_sq) = (0.0f32, 0.0f32, 0.0f32);
        for (i, ((&x, &m), &s)) in v.iter().zip(&self.mean).zip(&self.sigma).enumerate() {
            let y = x - m;
            if y > 0.0 {
                code[i / 8] |= 1 << (i % 8);
            }
            if B::USIZE == 2 && y.abs() > THRESHOLD * s {
                code[nb + i / 8] |= 1 << (i % 8);
            }
            abs_sum += y.abs();
            c += y * m;
            norm_sq += x * x;
        }
        let a = if B::USIZE == 1 {
            abs_sum / self.dim.max(1) as f32
        } else {
            1.0
        };
        code[planes..planes + 4].copy_from_slice(&norm_sq.to_le_bytes());
        code[planes + 4..planes + 8].copy_from_slice(&c.to_le_bytes());
        code[planes + 8..planes + 12].copy_from_slice(&a.to_le_bytes());
    }

    fn prepare(&self, query: &[f32]) -> BinaryQuery {
        let z: Vec<f32> = query
            .iter()
            .zip(&self.mean)
            .zip(&self.sigma)
            .map(|((q, m), s)| if B::USIZE == 1 { q - m } else { (q - m) * s })
            .collect();
        let table = z
            .chunks(8)
            .map(|dims| {
                let mut t = [0.0f32; 256];
                for b in 1..256usize {
                    let low = b.trailing_zeros() as usize;
                    t[b] = t[b & (b - 1)] + dims.get(low).copied().unwrap_or(0.0);
                }
                t
            })
            .collect();
        BinaryQuery {
            table,
            z_sum: z.iter().sum(),
            mean_dot: self.mean.iter().zip(query).map(|(m, q)| m * q).sum(),
            norm_sq: query.iter().map(|x| x * x).sum(),
        }
    }

    #[inline]
    fn score(&self, q: &BinaryQuery, code: &[u8]) -> f32 {
        let nb = self.plane_len();
        let planes = self.planes_len();
        let signs = &code[..nb];
        let signs_sum = Self::masked_sum(&q.table, signs.iter().copied());
        let centred = if B::USIZE == 1 {
            f32_at(code, planes + 8) * (2.0 * signs_sum - q.z_sum)
        } else {
            let mags = &code[nb..2 * nb];
            let both = Self::masked_sum(&q.table, signs.iter().zip(mags).map(|(s, m)| s & m));
            let outer = Self::masked_sum(&q.table, mags.iter().copied());
            LEVEL_INNER * (2.0 * signs_sum - q.z_sum)
                + (LEVEL_OUTER - LEVEL_INNER) * (2.0 * both - outer)
        };
        let dot = q.mean_dot + f32_at(code, planes + 4) + centred;
        if self.distance == Distance::Euclid {
            -(f32_at(code, planes) + q.norm_sq - 2.0 * dot)
                .max(0.0)
                .sqrt()
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

    /// `mean·q + y·mean + ŷ·(q − mean)` in f64, what the score estimates.
    fn formula<B: BitsPerDim>(c: &Binary<B>, v: &[f32], q: &[f32], code: &[u8]) -> f32 {
        let yhat = c.decode_centred(code);
        let m = c.mean();
        let mut dot = 0.0f64;
        for i in 0..v.len() {
            let (x, q, m, yh) = (
                f64::from(v[i]),
                f64::from(q[i]),
                f64::from(m[i]),
                f64::from(yhat[i]),
            );
            dot += m * q + (x - m) * m + yh * (q - m);
        }
        dot as f32
    }

    #[test]
    fn scores_are_the_split_formula() {
        let dim = 100;
        let data = shifted(200, dim, 1);
        for distance in [Distance::Dot, Distance::Euclid] {
            let c1 = Binary1::train(&BinaryConfig::default(), dim, distance, &data).unwrap();
            let c2 = Binary2::train(&BinaryConfig::default(), dim, distance, &data).unwrap();
            let q = &data[..dim];
            for v in data.chunks_exact(dim).skip(1).take(50) {
                let mut code1 = vec![0u8; c1.code_len()];
                c1.encode(v, &mut code1);
                let mut code2 = vec![0u8; c2.code_len()];
                c2.encode(v, &mut code2);
                for (dot, approx) in [
                    (formula(&c1, v, q, &code1), c1.score(&c1.prepare(q), &code1)),
                    (formula(&c2, v, q, &code2), c2.score(&c2.prepare(q), &code2)),
                ] {
                    let want = if distance == Distance::Euclid {
                        let n: f32 = v.iter().map(|x| x * x).sum();
                        let qn: f32 = q.iter().map(|x| x * x).sum();
                        -(n + qn - 2.0 * dot).max(0.0).sqrt()
                    } else {
                        dot
                    };
                    assert!(
                        (want - approx).abs() <= 1e-3 * want.abs().max(1.0),
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
