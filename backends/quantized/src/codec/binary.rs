//! Binary quantization: 1, 1.5 or 2 bits per component, centred on the
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
//! * 1.5 bits: `s_i`, and one `m` per pair of dimensions: whether the
//!   pair's mean `|y| / sigma` passes the training median; the two
//!   levels are trained (the mean `|y| / sigma` each bit value stands for).
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
//! parameter ([`typenum::U1`], [`typenum::U2`]). Scoring is asymmetric,
//! with the query's weights `z_i = w_i (q_i − mean_i)` (`w = 1` for 1
//! bit, `sigma` for 1.5 and 2 bits):
//!
//! ```text
//! 1 bit:    ŷ·(q − mean) = a · (2 Σ_S z − Σ z)
//! 1.5 bits: ŷ·(q − mean) = L1 · (2 Σ_S z − Σ z) + (L2 − L1) · (2 Σ_{S∩M} z − Σ_M z)
//! 2 bits:   ŷ·(q − mean) = Σ_i z_i · ±L(m_i)
//! ```
//!
//! The AVX2 kernel is always FAISS's fast scan ([`super::fast_scan`]):
//! per code byte position, 16-entry tables of the query's rounded
//! values, looked up by nibbles of the code, 32 codes at a time:
//!
//! * 1 bit: the weights are rounded to 5-bit integers, as bit planes
//!   ([`super::bit_planes`]: popcounts for single scores) and as `Σ k` of
//!   each sign nibble (two look-ups per sign byte).
//! * 1.5 bits: per sign byte, five tables added in one byte: `L1 ·
//!   (2 Σ_S z − Σ z)` of each sign nibble, `2 (L2 − L1) Σ_{S∩M} z` of
//!   each nibble of signs ∧ magnitudes (the pair bits spread to their
//!   dimensions), and `−(L2 − L1) Σ_M z` of the byte's pair nibble.
//! * 2 bits: each code nibble holds two whole dimensions (sign and
//!   magnitude bit each), and its table is the value `z_a·±L + z_b·±L` of
//!   each of the 16 states (two look-ups per code byte).
//!
//! Code layout (`nb = ceil(dim / 8)`): for 1 and 1.5 bits `nb` bytes of
//! signs (bit `i % 8` of byte `i / 8`), for 1.5 bits then
//! `ceil(dim / 16)` bytes of magnitudes (one bit per pair: bit `p % 8`
//! of byte `p / 8` for pair `p = i / 2`); for 2 bits `ceil(dim / 4)`
//! bytes, dimension `i`'s sign at bit `2 (i % 4)` of byte `i / 4` and its
//! magnitude at the bit above. Then f32 LE `|x|²` (for euclid),
//! `c_x = y·mean`, and `a` (1.0 for 1.5 and 2 bits).
//! Parameters: `mean` (`dim` f32 LE), then `sigma` (`dim` f32 LE), for
//! 1.5 bits then `threshold`, `inner`, `outer` (f32 LE). Manhattan is not
//! supported.

use std::marker::PhantomData;

use typenum::{Unsigned, U1, U2, U3};
use vecseg_traits::{Distance, Result, StorageError};

use super::bit_planes::{word_at, QueryPlanes};
#[cfg(target_arch = "x86_64")]
use super::block_source::{block_weight, plain_sums, score_groups, score_rows, BlockSource};
#[cfg(target_arch = "x86_64")]
use super::fast_scan::{block_sums_avx2, nibbles, BlockSums, BLOCK, CHUNK};
use super::fast_scan::{subset_sums, NibbleTables};
use super::{check_sample, euclid_from_dot, f32_at, put_f32s, Codec, ParamReader};

/// Bits per dimension of a [`Binary`] codec: [`U1`], [`U2`], or
/// [`Frac`]`<U3, U2>` (1.5 bits: two dimensions share a magnitude bit).
pub trait BitsPerDim: Send + Sync + 'static + sealed::Sealed {
    /// Half-bits per dimension: 2, 3 or 4.
    const HALF_BITS: usize;
}
impl BitsPerDim for U1 {
    const HALF_BITS: usize = 2;
}
impl BitsPerDim for U2 {
    const HALF_BITS: usize = 4;
}
impl BitsPerDim for Frac<U3, U2> {
    const HALF_BITS: usize = 3;
}

/// The type-level fraction `N / D` of two [`typenum`] numbers (used for
/// 1.5 = `Frac<U3, U2>` bits per dimension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frac<N: Unsigned, D: Unsigned>(PhantomData<(N, D)>);

mod sealed {
    pub trait Sealed {}
    impl Sealed for typenum::U1 {}
    impl Sealed for typenum::U2 {}
    impl Sealed for super::Frac<typenum::U3, typenum::U2> {}
}

/// One bit per dimension.
pub type Binary1 = Binary<U1>;
/// One and a half bits per dimension: a sign each, a magnitude per pair.
pub type Binary1_5 = Binary<Frac<U3, U2>>;
/// Two bits per dimension.
pub type Binary2 = Binary<U2>;

/// Expands 4 pair bits into 8 dimension bits (each bit twice).
const SPREAD: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let mut b = 0;
        while b < 4 {
            if i >> b & 1 == 1 {
                t[i] |= 0b11 << (2 * b);
            }
            b += 1;
        }
        i += 1;
    }
    t
};

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
    /// Magnitude threshold and levels in units of sigma (2 bits: the
    /// Lloyd-Max constants; 1.5 bits: trained on the pair averages).
    threshold: f32,
    inner: f32,
    outer: f32,
    _bits: PhantomData<B>,
}

/// A query prepared for [`Binary`].
#[derive(Debug, Clone)]
pub struct BinaryQuery {
    weights: Weights,
    /// `mean·q`, `|q|²`.
    mean_dot: f32,
    norm_sq: f32,
}

/// The query's weights as the kernels read them.
#[derive(Debug, Clone)]
enum Weights {
    /// 1 bit: the weights `z` as bit planes.
    Planes(QueryPlanes),
    /// 1.5 bits: per sign byte, the values of its two sign nibbles, of
    /// its two nibbles of signs ∧ magnitudes and of its pair nibble.
    Pairs(NibbleTables<5>),
    /// 2 bits: the value of each state of each code nibble (two whole
    /// dimensions).
    Levels(NibbleTables<2>),
}

impl BinaryQuery {
    /// Largest rounding error of one query weight `z_i` (1 bit) or of one
    /// table entry (1.5 bits: five per sign byte; 2 bits: one per code
    /// nibble).
    pub fn max_rounding_error(&self) -> f32 {
        match &self.weights {
            Weights::Planes(planes) => planes.max_rounding_error(),
            Weights::Pairs(pairs) => pairs.max_rounding_error(),
            Weights::Levels(levels) => levels.max_rounding_error(),
        }
    }
}

/// The fast-scan indices of 1.5-bit sign byte `signs` whose pair nibble
/// is `pairs`: its low and high sign nibbles, the same nibbles of signs ∧
/// magnitudes, and the pair nibble.
#[inline(always)]
fn pair_indices(signs: u8, pairs: u8) -> [u8; 5] {
    let both = signs & SPREAD[usize::from(pairs & 0xF)];
    [signs & 0xF, signs >> 4, both & 0xF, both >> 4, pairs & 0xF]
}

/// The nibble `shift / 4` of [`SPREAD`] in both halves of a 256-bit
/// register: a pair nibble's bits spread to the dimensions of a low
/// (`shift` 0) or high (`shift` 4) nibble.
#[cfg(target_arch = "x86_64")]
const fn spread_twice(shift: u32) -> [u8; 32] {
    let mut t = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = (SPREAD[i % 16] >> shift) & 0x0F;
        i += 1;
    }
    t
}

/// [`Binary::score_batch`]'s AVX2 body: 32 codes per kernel pass
/// ([`block_sums_avx2`]), then the rest one at a time.
#[cfg(target_arch = "x86_64")]
impl<B: BitsPerDim> super::BatchAvx2 for Binary<B> {
    #[inline(always)]
    fn batch_avx2(&self, simd: pulp::x86::V3, q: &BinaryQuery, codes: &[u8], out: &mut [f32]) {
        // The rest after the whole blocks one at a time (the portable
        // path, compiled with `popcnt`).
        score_rows(
            simd,
            codes,
            self.code_len(),
            out,
            #[inline(always)]
            |rows, o| self.score_block(simd, q, rows, o),
            #[inline(always)]
            |code| self.score_one(q, code),
        );
    }

    #[inline(always)]
    fn columns_avx2(&self, simd: pulp::x86::V3, q: &BinaryQuery, columns: &[u8], out: &mut [f32]) {
        score_groups(
            simd,
            columns,
            self.code_len(),
            out,
            #[inline(always)]
            |group, o| self.score_block(simd, q, group, o),
        );
    }
}

impl<B: BitsPerDim> Binary<B> {
    /// Bytes of the sign bits (1 and 1.5 bits).
    fn plane_len(&self) -> usize {
        self.dim.div_ceil(8)
    }

    /// Bytes of the bits (before the three f32s).
    fn planes_len(&self) -> usize {
        match B::HALF_BITS {
            2 => self.plane_len(),
            3 => self.plane_len() + self.dim.div_ceil(16),
            _ => self.dim.div_ceil(4),
        }
    }

    /// The sign and magnitude bits of dimension `i` of `code` (the
    /// magnitude is `false` for 1 bit).
    #[inline]
    fn bits(&self, code: &[u8], i: usize) -> (bool, bool) {
        let bit = |byte: u8, at: usize| byte >> at & 1 == 1;
        match B::HALF_BITS {
            2 => (bit(code[i / 8], i % 8), false),
            3 => (
                bit(code[i / 8], i % 8),
                bit(code[self.plane_len() + i / 16], i / 2 % 8),
            ),
            _ => (
                bit(code[i / 4], 2 * (i % 4)),
                bit(code[i / 4], 2 * (i % 4) + 1),
            ),
        }
    }

    /// The level of a dimension's bits in units of its sigma (2 bits).
    #[inline]
    fn level(&self, sign: bool, magnitude: bool) -> f32 {
        let level = if magnitude { self.outer } else { self.inner };
        if sign {
            level
        } else {
            -level
        }
    }

    /// `ŷ·(q − mean)` of a 1-bit code (portable popcounts).
    #[inline(always)]
    fn centred(&self, p: &QueryPlanes, code: &[u8]) -> f32 {
        let signs = &code[..self.plane_len()];
        let sums = p.sums(|w| word_at(signs, w));
        f32_at(code, self.planes_len() + 8) * (2.0 * p.weight(sums) - p.total())
    }

    /// The score of one code, portable (popcounts for 1 bit, table reads
    /// for 1.5 and 2 bits).
    #[inline(always)]
    fn score_one(&self, q: &BinaryQuery, code: &[u8]) -> f32 {
        let centred = match &q.weights {
            Weights::Planes(p) => self.centred(p, code),
            Weights::Pairs(t) => {
                let nb = self.plane_len();
                t.weight(t.sum(|j| pair_indices(code[j], code[nb + j / 2] >> (4 * (j % 2)))))
            }
            Weights::Levels(t) => t.weight(t.sum_bytes(code)),
        };
        self.finish(q, code, centred)
    }

    /// The score of `code` from its `ŷ·(q − mean)`.
    #[inline(always)]
    fn finish(&self, q: &BinaryQuery, code: &[u8], centred: f32) -> f32 {
        let planes = self.planes_len();
        let dot = q.mean_dot + f32_at(code, planes + 4) + centred;
        if self.distance == Distance::Euclid {
            euclid_from_dot(f32_at(code, planes), q.norm_sq, dot)
        } else {
            dot
        }
    }

    /// The scores of 32 codes read from `src` (rows transposed 16 bytes
    /// at a time, or a column group as it is): the kernel
    /// [`block_sums_avx2`] (for 1.5 bits [`pair_sums`](Self::pair_sums)),
    /// then [`finish_block`](Self::finish_block) with the float work of
    /// [`score_one`](Self::score_one), eight codes per instruction (the
    /// same operations in the same order, so the same bits).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn score_block(
        &self,
        simd: pulp::x86::V3,
        q: &BinaryQuery,
        src: &impl BlockSource,
        out: &mut [f32],
    ) {
        use pulp::Simd;
        let zero = simd.splat_f32s(0.0);
        let mut centred = [zero; 4];
        let (sums, step) = match &q.weights {
            Weights::Levels(levels) => (plain_sums(simd, levels, src), levels.step()),
            Weights::Pairs(pairs) => (self.pair_sums(simd, pairs, src), pairs.step()),
            Weights::Planes(p) => {
                let (step, two) = (simd.splat_f32s(p.step()), simd.splat_f32s(2.0));
                let total = simd.splat_f32s(p.total());
                let signs = plain_sums(simd, p.tables(), src);
                // `a` of the codes (the last f32).
                let scales = src.f32s(self.planes_len() + 8);
                for (g, c) in centred.iter_mut().enumerate() {
                    let signed = simd.sub_f32s(
                        simd.mul_f32s(two, block_weight(simd, step, signs.sums[g])),
                        total,
                    );
                    *c = simd.mul_f32s(pulp::cast(scales[g]), signed);
                }
                return self.finish_block(simd, q, src, centred, out);
            }
        };
        let step = simd.splat_f32s(step);
        for (c, s) in centred.iter_mut().zip(sums.sums) {
            *c = block_weight(simd, step, s);
        }
        self.finish_block(simd, q, src, centred, out);
    }

    /// The sums of 32 codes of 1.5 bits: per sign byte, five look-ups
    /// ([`pair_indices`]), the pair nibble spread to the dimensions of the
    /// sign nibbles with one look-up each.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn pair_sums(
        &self,
        simd: pulp::x86::V3,
        tables: &NibbleTables<5>,
        src: &impl BlockSource,
    ) -> BlockSums {
        let (nb, planes) = (self.plane_len(), self.planes_len());
        let avx2 = simd.avx2;
        let nibble = simd.avx._mm256_set1_epi8(0x0F);
        let spread_low: core::arch::x86_64::__m256i = pulp::cast(const { spread_twice(0) });
        let spread_high: core::arch::x86_64::__m256i = pulp::cast(const { spread_twice(4) });
        block_sums_avx2(
            simd,
            tables,
            #[inline(always)]
            |c| {
                // Pair bytes 8c .. 8c + 8, column t holding the pair bits
                // of sign columns 2t (low nibble) and 2t + 1.
                (
                    src.chunk(CHUNK * c, nb),
                    src.chunk(nb + CHUNK / 2 * c, planes),
                )
            },
            #[inline(always)]
            |(signs, magnitudes), j| {
                let [s_low, s_high] = nibbles(simd, src.column(signs, j));
                let pairs = src.column(magnitudes, j / 2);
                let half = if j % 2 == 0 {
                    avx2._mm256_and_si256(pairs, nibble)
                } else {
                    avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(pairs), nibble)
                };
                [
                    s_low,
                    s_high,
                    avx2._mm256_and_si256(s_low, avx2._mm256_shuffle_epi8(spread_low, half)),
                    avx2._mm256_and_si256(s_high, avx2._mm256_shuffle_epi8(spread_high, half)),
                    half,
                ]
            },
        )
    }

    /// The scores of a block of 32 codes from `centred[g]`, the
    /// `ŷ·(q − mean)` of codes `8 g .. 8 g + 8`: the float work of
    /// [`finish`](Self::finish), eight codes per instruction (euclid's
    /// square root stays per code).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn finish_block(
        &self,
        simd: pulp::x86::V3,
        q: &BinaryQuery,
        src: &impl BlockSource,
        centred: [pulp::f32x8; 4],
        out: &mut [f32],
    ) {
        use pulp::Simd;
        let planes = self.planes_len();
        let mean_dot = simd.splat_f32s(q.mean_dot);
        // `c` of the codes (the second f32 after the bits).
        let offsets = src.f32s(planes + 4);
        for (g, o) in out.chunks_exact_mut(8).take(4).enumerate() {
            let dot = simd.add_f32s(simd.add_f32s(mean_dot, pulp::cast(offsets[g])), centred[g]);
            o.copy_from_slice(&pulp::cast::<_, [f32; 8]>(dot));
        }
        if self.distance == Distance::Euclid {
            let norms = src.f32s(planes);
            for (i, o) in out.iter_mut().take(BLOCK).enumerate() {
                *o = euclid_from_dot(norms[i / 8][i % 8], q.norm_sq, *o);
            }
        }
    }

    /// Whether dimension `i` of `v` (centred `y`) gets its magnitude bit.
    fn is_outer(&self, v: &[f32], i: usize) -> bool {
        let norm = |k: usize| {
            let s = self.sigma[k];
            let y = (v[k] - self.mean[k]).abs();
            if s > 0.0 {
                y / s
            } else if y > 0.0 {
                f32::INFINITY
            } else {
                0.0
            }
        };
        if B::HALF_BITS == 3 {
            let a = i & !1;
            let b = (a + 1).min(self.dim - 1);
            (norm(a) + norm(b)) / 2.0 > self.threshold
        } else {
            norm(i) > self.threshold
        }
    }

    /// `ŷ` of `code` (the centred reconstruction, without the mean).
    pub fn decode_centred(&self, code: &[u8]) -> Vec<f32> {
        let a = f32_at(code, self.planes_len() + 8);
        (0..self.dim)
            .map(|i| {
                let (sign, magnitude) = self.bits(code, i);
                if B::HALF_BITS == 2 {
                    if sign {
                        a
                    } else {
                        -a
                    }
                } else {
                    self.sigma[i] * self.level(sign, magnitude)
                }
            })
            .collect()
    }

    /// 1.5 bits: the threshold is the median of the pairs' mean
    /// `|y| / sigma` (half the pairs get the outer level), and each level
    /// is the mean `|y| / sigma` of the dimensions it stands for.
    fn train_pair_levels(&mut self, sample: &[f32]) {
        let dim = self.dim;
        let norm = |v: &[f32], k: usize| {
            let s = self.sigma[k];
            if s > 0.0 {
                (v[k] - self.mean[k]).abs() / s
            } else {
                0.0
            }
        };
        let mut averages: Vec<f32> = Vec::new();
        for v in sample.chunks_exact(dim) {
            for a in (0..dim).step_by(2) {
                let b = (a + 1).min(dim - 1);
                averages.push((norm(v, a) + norm(v, b)) / 2.0);
            }
        }
        let mid = averages.len() / 2;
        let threshold = *averages.select_nth_unstable_by(mid, f32::total_cmp).1;
        self.threshold = threshold;
        let (mut sums, mut counts) = ([0.0f64; 2], [0usize; 2]);
        for v in sample.chunks_exact(dim) {
            for i in 0..dim {
                let k = usize::from(self.is_outer(v, i));
                sums[k] += f64::from(norm(v, i));
                counts[k] += 1;
            }
        }
        let level = |k: usize| {
            if counts[k] > 0 {
                (sums[k] / counts[k] as f64) as f32
            } else {
                1.0
            }
        };
        self.inner = level(0);
        self.outer = level(1);
    }

    /// The trained mean.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }
}

impl<B: BitsPerDim> Codec for Binary<B> {
    const NAME: &'static str = match B::HALF_BITS {
        2 => "binary-1",
        3 => "binary-1.5",
        _ => "binary-2",
    };
    type Config = BinaryConfig;
    type Query = BinaryQuery;

    fn sample_limit(config: &BinaryConfig) -> usize {
        config.sample
    }

    fn supports(distance: Distance) -> bool {
        distance != Distance::Manhattan
    }

    fn train(_: &BinaryConfig, dim: usize, distance: Distance, sample: &[f32]) -> Result<Self> {
        if !Self::supports(distance) {
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
        let mut codec = Binary {
            dim,
            distance,
            mean: mean.iter().map(|&m| m as f32).collect(),
            sigma: var.iter().map(|&s| (s / n as f64).sqrt() as f32).collect(),
            threshold: THRESHOLD,
            inner: LEVEL_INNER,
            outer: LEVEL_OUTER,
            _bits: PhantomData,
        };
        if B::HALF_BITS == 3 {
            codec.train_pair_levels(sample);
        }
        Ok(codec)
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
        for (i, (&x, &m)) in v.iter().zip(&self.mean).enumerate() {
            let y = x - m;
            match B::HALF_BITS {
                4 => {
                    let bits = u8::from(y > 0.0) | u8::from(self.is_outer(v, i)) << 1;
                    code[i / 4] |= bits << (2 * (i % 4));
                }
                _ => {
                    code[i / 8] |= u8::from(y > 0.0) << (i % 8);
                    if B::HALF_BITS == 3 && i % 2 == 0 && self.is_outer(v, i) {
                        code[nb + i / 16] |= 1 << (i / 2 % 8);
                    }
                }
            }
            abs_sum += y.abs();
            c += y * m;
            norm_sq += x * x;
        }
        let a = if B::HALF_BITS == 2 {
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
            .map(|((q, m), s)| {
                if B::HALF_BITS == 2 {
                    q - m
                } else {
                    (q - m) * s
                }
            })
            .collect();
        let zi = |i: usize| z.get(i).copied().unwrap_or(0.0);
        let weights = match B::HALF_BITS {
            2 => Weights::Planes(QueryPlanes::new(&z, self.plane_len())),
            3 => {
                let (inner, outer_step) = (self.inner, self.outer - self.inner);
                // Sign byte j: `ŷ·(q − mean)` of its 8 dimensions is
                // inner · Σ ±z + (outer − inner) · (2 Σ_{S∩M} z − Σ_M z).
                Weights::Pairs(NibbleTables::rounded(self.plane_len(), |j| {
                    let dims =
                        |h: usize| subset_sums(std::array::from_fn(|b| zi(8 * j + 4 * h + b)));
                    let pairs = subset_sums(std::array::from_fn(|p| {
                        zi(8 * j + 2 * p) + zi(8 * j + 2 * p + 1)
                    }));
                    let [low, high] = [dims(0), dims(1)];
                    [
                        low.map(|x| inner * (2.0 * x - low[15])),
                        high.map(|x| inner * (2.0 * x - high[15])),
                        low.map(|x| 2.0 * outer_step * x),
                        high.map(|x| 2.0 * outer_step * x),
                        pairs.map(|x| -outer_step * x),
                    ]
                }))
            }
            _ => Weights::Levels(NibbleTables::rounded(self.planes_len(), |j| {
                // Nibble `h` of byte `j`: dimensions `4 j + 2 h` (bits 0,
                // 1) and `4 j + 2 h + 1` (bits 2, 3), each bit pair (sign,
                // magnitude).
                std::array::from_fn(|h| {
                    let [a, b] = [4 * j + 2 * h, 4 * j + 2 * h + 1].map(|i| {
                        [0, 1, 2, 3].map(|bits| zi(i) * self.level(bits & 1 == 1, bits & 2 == 2))
                    });
                    std::array::from_fn(|n| a[n & 3] + b[n >> 2])
                })
            })),
        };
        BinaryQuery {
            weights,
            mean_dot: self.mean.iter().zip(query).map(|(m, q)| m * q).sum(),
            norm_sq: query.iter().map(|x| x * x).sum(),
        }
    }

    #[inline]
    fn score(&self, q: &BinaryQuery, code: &[u8]) -> f32 {
        // A batch of one: with AVX2, the portable path (popcounts or table
        // reads) compiled with `popcnt` inside the batch kernel's function.
        let mut out = [0.0f32];
        self.score_batch(q, code, &mut out);
        out[0]
    }

    fn score_batch(&self, q: &BinaryQuery, codes: &[u8], out: &mut [f32]) {
        let len = self.code_len();
        let n = (codes.len() / len).min(out.len());
        let (codes, out) = (&codes[..n * len], &mut out[..n]);
        #[cfg(target_arch = "x86_64")]
        if super::try_batch_avx2(self, q, codes, false, out) {
            return;
        }
        for (code, o) in codes.chunks_exact(len).zip(out) {
            *o = self.score_one(q, code);
        }
    }

    /// 2-bit codes keep both bits of a dimension side by side since
    /// format version 3.
    const LAYOUT_VERSION: u16 = if B::HALF_BITS == 4 { 3 } else { 1 };

    /// Scans of stored column groups skip the in-register transposes.
    const COLUMNS: bool = true;

    fn score_columns(&self, q: &BinaryQuery, columns: &[u8], out: &mut [f32]) {
        super::score_columns_with_kernel(self, q, columns, out);
    }

    fn rescore_by_default(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * self.dim + 12);
        put_f32s(&mut out, &self.mean);
        put_f32s(&mut out, &self.sigma);
        if B::HALF_BITS == 3 {
            put_f32s(&mut out, &[self.threshold, self.inner, self.outer]);
        }
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
        let [threshold, inner, outer] = if B::HALF_BITS == 3 {
            [r.f32()?, r.f32()?, r.f32()?]
        } else {
            [THRESHOLD, LEVEL_INNER, LEVEL_OUTER]
        };
        r.finish()?;
        let finite = mean
            .iter()
            .chain(&sigma)
            .chain([&threshold, &inner, &outer])
            .all(|x| x.is_finite());
        if !finite || sigma.iter().any(|s| *s < 0.0) {
            return Err(
                "invalid binary parameters: non-finite values or negative deviation".into(),
            );
        }
        Ok(Binary {
            dim,
            distance,
            mean,
            sigma,
            threshold,
            inner,
            outer,
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

    /// How far the score may move by rounding: for 1 bit, when every query
    /// weight `z_i` moves by at most `err`, `err · Σ |a|`; for 1.5 and 2
    /// bits, `err` per rounded table entry the score adds.
    fn rounding_bound<B: BitsPerDim>(c: &Binary<B>, code: &[u8], err: f32) -> f32 {
        match B::HALF_BITS {
            // 1 bit: `±a z_i` per dimension.
            2 => err * c.decode_centred(code).iter().map(|y| y.abs()).sum::<f32>(),
            // 1.5 bits: five rounded entries per sign byte.
            3 => err * (5 * c.plane_len()) as f32,
            // 2 bits: one rounded value per nibble of two dimensions.
            _ => err * c.dim.div_ceil(2) as f32,
        }
    }

    /// Scores are the split formula up to the query's 5-bit rounding, and
    /// the bound is tight enough to matter (well below the spread of the
    /// scores).
    fn check_split_formula<B: BitsPerDim>(distance: Distance, data: &[f32], dim: usize) {
        let c = Binary::<B>::train(&BinaryConfig::default(), dim, distance, data).unwrap();
        let q = &data[..dim];
        let prepared = c.prepare(q);
        let qn: f32 = q.iter().map(|x| x * x).sum();
        let mut dots = Vec::new();
        for v in data.chunks_exact(dim).skip(1).take(50) {
            let mut code = vec![0u8; c.code_len()];
            c.encode(v, &mut code);
            let dot = formula(&c, v, q, &code);
            let bound = rounding_bound(&c, &code, prepared.max_rounding_error())
                + 1e-3 * dot.abs().max(1.0);
            let approx = c.score(&prepared, &code);
            let n: f32 = v.iter().map(|x| x * x).sum();
            let score = |dot: f32| match distance {
                Distance::Euclid => -(n + qn - 2.0 * dot).max(0.0).sqrt(),
                _ => dot,
            };
            let (low, high) = (score(dot - bound), score(dot + bound));
            assert!(
                (low..=high).contains(&approx),
                "{} {distance:?}: {approx} outside [{low}, {high}]",
                Binary::<B>::NAME
            );
            dots.push((dot, bound));
        }
        let spread = dots.iter().map(|d| d.0).fold(f32::NEG_INFINITY, f32::max)
            - dots.iter().map(|d| d.0).fold(f32::INFINITY, f32::min);
        let worst = dots.iter().map(|d| d.1).fold(0.0, f32::max);
        assert!(worst < spread / 4.0, "bound {worst} vs spread {spread}");
    }

    #[test]
    fn scores_are_the_split_formula() {
        let dim = 100;
        let data = shifted(200, dim, 1);
        for distance in [Distance::Dot, Distance::Euclid] {
            check_split_formula::<U1>(distance, &data, dim);
            check_split_formula::<Frac<U3, U2>>(distance, &data, dim);
            check_split_formula::<U2>(distance, &data, dim);
        }
    }

    #[test]
    fn two_bits_beat_one_and_rescoring_recovers_the_top() {
        let one = recall_at_10::<U1>(64, 10);
        let one_half = recall_at_10::<Frac<U3, U2>>(64, 10);
        let two = recall_at_10::<U2>(64, 10);
        assert!(
            two >= one_half && one_half >= one,
            "2 bits {two}, 1.5 {one_half}, 1 {one}"
        );
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
        assert_eq!(Binary1_5::NAME, "binary-1.5");
        let c15 = Binary1_5::train(&c, 5, Distance::Dot, &shifted(10, 5, 9)).unwrap();
        assert_eq!(
            Binary1_5::from_params(5, Distance::Dot, &c15.params()).unwrap(),
            c15
        );
        assert_eq!(c15.code_len(), 1 + 1 + 12, "5 signs, 3 pair bits, 3 floats");
        assert_eq!(Binary2::NAME, "binary-2");
    }
}
