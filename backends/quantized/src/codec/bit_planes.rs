//! A query as integer bit planes, and the kernels that sum it over the set
//! bits of binary codes.
//!
//! A binary code is bit vectors (signs, magnitudes) over the dimensions;
//! its score needs `Σ z_i` over the set bits `x_i` of each vector, for the
//! query's per-dimension weights `z`. [`QueryPlanes`] rounds the weights
//! to signed integers `k_i = round(z_i / step)` in `−15 ..= 15` (`step =
//! max |z| / 15`, so the rounding error is at most `step / 2` per set bit)
//! and keeps the [`BITS`] bits of every `u_i = k_i + 15` as planes `U_p`:
//!
//! ```text
//! Σ_{x_i = 1} k_i = Σ_p 2^p · popcount(U_p & x) − 15 · popcount(x)      Σ_{x_i = 1} z_i ≈ step · Σ_{x_i = 1} k_i
//! ```
//!
//! ([`BitSums`] holds the integer, [`QueryPlanes::weight`] the estimate).
//! The sums are exact integers, and every kernel computes the same ones,
//! so every path gives the same scores bit for bit:
//!
//! * [`QueryPlanes::tables`]: `Σ k` of every nibble value of every code
//!   byte, for the fast scan of [`super::fast_scan`] (32 codes a step).
//!   Signed weights need no count of set bits, so a nibble costs one
//!   look-up.
//! * [`QueryPlanes::sums`]: `u64` popcounts of the planes, for the codes
//!   after the last whole block, single scores and CPUs without AVX2.

use super::fast_scan::{round_small, subset_sums, NibbleTables};

/// Bits per plane index: `u_i = k_i + 15` is at most 30.
pub const BITS: usize = 5;
/// Largest `|k_i|`.
const K_MAX: f32 = 15.0;
/// `u_i − k_i`.
const K_BIAS: u64 = 15;

/// `Σ k_i` over the set bits of a bit vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitSums {
    /// `Σ k_i` over the set bits.
    pub weighted: i64,
}

/// The query's weights as [`BITS`] bit planes (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct QueryPlanes {
    /// `Σ ẑ_i` over every dimension (`ẑ_i = step · k_i`).
    total: f32,
    /// Plane `p` of `u = k + 15`, word `w` at `p · words_per_plane + w`
    /// (little-endian: bit `i % 64` of word `i / 64` is dimension `i`).
    words: Vec<u64>,
    words_per_plane: usize,
    /// Bits of the dimensions that exist (a code's padding bits never
    /// count).
    valid_words: Vec<u64>,
    /// Per code byte, `Σ k_i` over the set bits of each low and high
    /// nibble (dimensions past the last count 0): within ±60.
    tables: NibbleTables<2>,
}

impl QueryPlanes {
    /// Round `z` (one weight per dimension) to planes over bit vectors of
    /// `len` bytes (`len ≥ ceil(z.len() / 8)`).
    pub fn new(z: &[f32], len: usize) -> Self {
        let top = z.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        let step = if top.is_finite() && top > 0.0 {
            top / K_MAX
        } else {
            0.0
        };
        let scale = if step > 0.0 { 1.0 / step } else { 0.0 };
        // Dimensions past `8 len` have no bits to weigh.
        let k: Vec<i8> = z
            .iter()
            .take(8 * len)
            .map(|&x| round_small(x * scale).clamp(-K_MAX as i32, K_MAX as i32) as i8)
            .collect();
        let k_sum: i64 = k.iter().map(|&k| i64::from(k)).sum();
        let words_per_plane = len.div_ceil(8);
        let mut words = vec![0u64; BITS * words_per_plane];
        let mut valid_words = vec![0u64; words_per_plane];
        for (i, &k) in k.iter().enumerate() {
            // Without branches: the bits of `u` are random.
            let u = (i64::from(k) + K_BIAS as i64) as u64;
            for p in 0..BITS {
                words[p * words_per_plane + i / 64] |= (u >> p & 1) << (i % 64);
            }
            valid_words[i / 64] |= 1 << (i % 64);
        }
        let tables = NibbleTables::from_entries(len, step, |j| {
            std::array::from_fn(|half| {
                subset_sums(std::array::from_fn(|b| {
                    k.get(8 * j + 4 * half + b).map_or(0, |&k| i32::from(k))
                }))
            })
        });
        QueryPlanes {
            total: step * k_sum as f32,
            words,
            words_per_plane,
            valid_words,
            tables,
        }
    }

    /// The weight of one step of `k`.
    pub fn step(&self) -> f32 {
        self.tables.step()
    }

    /// Largest error of one rounded weight (`step / 2`).
    pub fn max_rounding_error(&self) -> f32 {
        self.tables.max_rounding_error()
    }

    /// The estimate of `Σ z_i` over the set bits that `sums` counted.
    #[inline]
    pub fn weight(&self, sums: BitSums) -> f32 {
        self.tables.weight(sums.weighted)
    }

    /// The estimate of `Σ z_i` over every dimension.
    #[inline]
    pub fn total(&self) -> f32 {
        self.total
    }

    /// The sums of the bit vector whose 64-bit word `w` is `word(w)`
    /// (portable `u64` popcounts; bits past the last dimension are
    /// ignored).
    #[inline(always)]
    pub fn sums(&self, word: impl Fn(usize) -> u64) -> BitSums {
        let (mut u, mut count) = (0u64, 0u64);
        for (w, valid) in self.valid_words.iter().enumerate() {
            let x = word(w) & valid;
            count += u64::from(x.count_ones());
            for p in 0..BITS {
                let k = self.words[p * self.words_per_plane + w];
                u += u64::from((k & x).count_ones()) << p;
            }
        }
        BitSums {
            weighted: u as i64 - (K_BIAS * count) as i64,
        }
    }

    /// `Σ k` of every nibble of a code bit vector, for the fast scan.
    pub fn tables(&self) -> &NibbleTables<2> {
        &self.tables
    }
}

/// The little-endian 64-bit word `w` of `bytes`, zero past their end.
#[inline(always)]
pub fn word_at(bytes: &[u8], w: usize) -> u64 {
    let start = (w * 8).min(bytes.len());
    let rest = &bytes[start..];
    if let Some(b) = rest.first_chunk::<8>() {
        u64::from_le_bytes(*b)
    } else {
        // At most 7 bytes: assembled without a variable-length copy.
        rest.iter()
            .enumerate()
            .fold(0, |acc, (i, &b)| acc | u64::from(b) << (8 * i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// `Σ k_i` and the number of set bits over the first `z_len` bits.
    fn naive(z_len: usize, bits: &[u8], k: &[i8]) -> (BitSums, usize) {
        let (mut s, mut count) = (BitSums::default(), 0);
        for i in 0..z_len {
            if bits[i / 8] >> (i % 8) & 1 == 1 {
                count += 1;
                s.weighted += i64::from(k[i]);
            }
        }
        (s, count)
    }

    /// The popcounts and the fast-scan tables count exactly what the
    /// definition says, for lengths around the word and chunk sizes; the
    /// estimate is within the rounding bound of the true weight sum.
    #[test]
    fn sums_match_the_definition_on_both_paths() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for dim in [1usize, 7, 8, 63, 64, 65, 127, 128, 129, 300, 384] {
            let len = dim.div_ceil(8);
            let z: Vec<f32> = (0..dim).map(|_| rng.gen_range(-2.0f32..3.0)).collect();
            let q = QueryPlanes::new(&z, len);
            let k: Vec<i8> = z
                .iter()
                .map(|&x| round_small(x * (1.0 / q.step())).clamp(-15, 15) as i8)
                .collect();
            let codes: Vec<Vec<u8>> = (0..32)
                // Padding bits set too: they must not count.
                .map(|_| (0..len).map(|_| rng.gen()).collect())
                .collect();
            for c in &codes {
                let (want, count) = naive(dim, c, &k);
                assert_eq!(q.sums(|w| word_at(c, w)), want, "dim {dim}");
                assert_eq!(
                    q.tables().sum_bytes(c),
                    want.weighted,
                    "dim {dim}: fast-scan tables"
                );
                let exact: f32 = (0..dim)
                    .filter(|&i| c[i / 8] >> (i % 8) & 1 == 1)
                    .map(|i| z[i])
                    .sum();
                let bound = q.max_rounding_error() * count as f32 + 1e-3;
                assert!(
                    (q.weight(want) - exact).abs() <= bound,
                    "dim {dim}: {} vs {exact}",
                    q.weight(want)
                );
            }
        }
    }

    #[test]
    fn constant_and_empty_weights() {
        let q = QueryPlanes::new(&[0.5; 10], 2);
        let s = q.sums(|w| word_at(&[0b101, 0], w));
        assert_eq!(s.weighted, 30, "two weights of 15 steps");
        assert!((q.weight(s) - 1.0).abs() < 1e-6, "{}", q.weight(s));
        assert!((q.total() - 5.0).abs() < 1e-5, "{}", q.total());
        let zero = QueryPlanes::new(&[0.0; 10], 2);
        assert_eq!(zero.weight(zero.sums(|w| word_at(&[0xFF, 3], w))), 0.0);
        let e = QueryPlanes::new(&[], 0);
        assert_eq!(e.total(), 0.0);
        assert!(e.tables().is_empty());
    }
}
