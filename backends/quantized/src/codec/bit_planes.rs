//! A query as integer bit planes, and the kernel that sums it over the set
//! bits of binary codes.
//!
//! A binary code is bit vectors (signs, magnitudes) over the dimensions;
//! its score needs `Σ z_i` over the set bits `x_i` of each vector, for the
//! query's per-dimension weights `z`. [`QueryPlanes`] rounds the weights
//! to [`BITS`]-bit integers `k_i = round((z_i − lo) / step)` and keeps bit
//! `p` of every `k_i` as plane `K_p`, so that
//!
//! ```text
//! Σ_{x_i = 1} k_i = Σ_p 2^p · popcount(K_p & x)      Σ_{x_i = 1} z_i ≈ lo · popcount(x) + step · Σ_{x_i = 1} k_i
//! ```
//!
//! ([`BitSums`] holds the two integers, [`QueryPlanes::weight`] the
//! estimate; the rounding error is at most `step / 2` per set bit). The
//! sums are exact integers, and both kernels compute the same ones, so
//! every path gives the same scores bit for bit:
//!
//! * [`block_sums_avx2`]: 32 codes a step. Their rows are transposed in
//!   registers 16 bytes at a time ([`transpose_rows`]), so a register
//!   holds one byte position of all 32 codes, and each position's nibbles
//!   are looked up with `vpshufb` in 16-entry tables of the query (`Σ k`
//!   and the bit count of every nibble value): FAISS's fast scan, without
//!   storing the codes transposed.
//! * [`QueryPlanes::sums`]: `u64` popcounts of the planes
//!   `Σ_p 2^p · popcount(K_p & x)`, for the codes after the last whole
//!   block, single scores and CPUs without AVX2.

/// Bits per query weight: per byte of code the weighted popcounts add up
/// to at most `8 · (2^BITS − 1)`, which must fit a byte.
pub const BITS: usize = 5;
const TOP: f32 = ((1 << BITS) - 1) as f32;

/// Code bytes a kernel step reads per code (one 128-bit lane).
const CHUNK: usize = 16;

/// Counts of set bits of a bit vector under the query's planes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitSums {
    /// `Σ k_i` over the set bits.
    pub weighted: u64,
    /// Number of set bits.
    pub count: u64,
}

/// The query's weights as [`BITS`] bit planes (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct QueryPlanes {
    /// Bytes of one code bit vector.
    len: usize,
    lo: f32,
    step: f32,
    /// `Σ ẑ_i` over every dimension (`ẑ_i = lo + step · k_i`).
    total: f32,
    /// Plane `p`, word `w` at `p · words_per_plane + w` (little-endian: bit
    /// `i % 64` of word `i / 64` is dimension `i`).
    words: Vec<u64>,
    words_per_plane: usize,
    /// Bits of the dimensions that exist (a code's padding bits never
    /// count).
    valid_words: Vec<u64>,
    /// Per code byte `j`, four 16-entry tables (each twice, once per
    /// 128-bit lane) for [`block_sums_avx2`]: `Σ k_i` over the set bits of
    /// the byte's low nibble, of its high nibble, and the number of those
    /// bits that are dimensions (not padding), low and high.
    columns: Vec<[u8; 32]>,
}

impl QueryPlanes {
    /// Round `z` (one weight per dimension) to planes over bit vectors of
    /// `len` bytes (`len ≥ ceil(z.len() / 8)`).
    pub fn new(z: &[f32], len: usize) -> Self {
        let (lo, hi) = z
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let (lo, step) = if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            (if z.is_empty() { 0.0 } else { lo }, 0.0)
        } else {
            (lo, (hi - lo) / TOP)
        };
        let k: Vec<u8> = z
            .iter()
            .map(|&x| {
                if step > 0.0 {
                    ((x - lo) / step).round().clamp(0.0, TOP) as u8
                } else {
                    0
                }
            })
            .collect();
        let k_sum: u64 = k.iter().map(|&k| u64::from(k)).sum();
        let padded = len.div_ceil(8) * 8;
        let mut planes = vec![0u8; BITS * padded];
        for (i, &k) in k.iter().enumerate() {
            for p in 0..BITS {
                if k >> p & 1 == 1 {
                    planes[p * padded + i / 8] |= 1 << (i % 8);
                }
            }
        }
        let words_per_plane = padded / 8;
        let to_words = |bytes: &[u8]| -> Vec<u64> {
            bytes
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect()
        };
        let words = to_words(&planes);
        let mut valid = vec![0u8; padded];
        for i in 0..z.len().min(8 * len) {
            valid[i / 8] |= 1 << (i % 8);
        }
        let valid_words = to_words(&valid);
        let mut columns = Vec::with_capacity(4 * len);
        for j in 0..len {
            let (mut k_low, mut k_high, mut n_low, mut n_high) =
                ([0u8; 32], [0u8; 32], [0u8; 32], [0u8; 32]);
            for n in 0..16usize {
                for b in (0..4).filter(|b| n >> b & 1 == 1) {
                    if let Some(&k) = k.get(8 * j + b) {
                        k_low[n] += k;
                        n_low[n] += 1;
                    }
                    if let Some(&k) = k.get(8 * j + 4 + b) {
                        k_high[n] += k;
                        n_high[n] += 1;
                    }
                }
            }
            for mut t in [k_low, k_high, n_low, n_high] {
                t.copy_within(..CHUNK, CHUNK);
                columns.push(t);
            }
        }
        QueryPlanes {
            len,
            lo,
            step,
            total: z.len() as f32 * lo + step * k_sum as f32,
            words,
            words_per_plane,
            valid_words,
            columns,
        }
    }

    /// Bytes of one code bit vector.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the bit vectors are empty (dimension 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The weight of `k = 0` (the smallest weight).
    pub fn lo(&self) -> f32 {
        self.lo
    }

    /// The weight of one step of `k`.
    pub fn step(&self) -> f32 {
        self.step
    }

    /// Largest error of one rounded weight (`step / 2`).
    pub fn max_rounding_error(&self) -> f32 {
        self.step / 2.0
    }

    /// The estimate of `Σ z_i` over the set bits that `sums` counted.
    #[inline]
    pub fn weight(&self, sums: BitSums) -> f32 {
        // The sums are at most 31 · 8 per code byte: u32 converts without
        // the branches of an unsigned 64-bit conversion.
        self.lo * sums.count as u32 as f32 + self.step * sums.weighted as u32 as f32
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
        let mut sums = BitSums::default();
        for (w, valid) in self.valid_words.iter().enumerate() {
            let x = word(w) & valid;
            sums.count += u64::from(x.count_ones());
            for p in 0..BITS {
                let k = self.words[p * self.words_per_plane + w];
                sums.weighted += u64::from((k & x).count_ones()) << p;
            }
        }
        sums
    }

    /// Number of 16-byte steps the AVX2 kernel takes.
    pub fn chunks(&self) -> usize {
        self.len.div_ceil(CHUNK)
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

/// Bytes `16 j ..` of `bytes`, zero past their end.
#[inline(always)]
pub fn chunk_at(bytes: &[u8], j: usize) -> [u8; 16] {
    let start = (j * CHUNK).min(bytes.len());
    let rest = &bytes[start..];
    if let Some(b) = rest.first_chunk::<16>() {
        *b
    } else {
        let mut b = [0u8; 16];
        b[..rest.len()].copy_from_slice(rest);
        b
    }
}

/// Codes [`block_sums_avx2`] scores at once.
pub const BLOCK: usize = 32;

/// [`BitSums`] of a block of [`BLOCK`] codes as f32 (exact), eight codes
/// per group in code order, ready for eight-lane float arithmetic.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockSums {
    /// `Σ k_i` over the set bits, code `8 g + e` at `[g][e]`.
    pub weighted: [[f32; 8]; 4],
    /// Number of set bits, same order.
    pub count: [[f32; 8]; 4],
}

/// The sums of 32 codes' `N` bit vectors at once, FAISS's fast scan
/// without its file layout: `columns(c)` gives, per vector, the 16 byte
/// positions `16 c ..` of the 32 codes transposed in registers (column
/// `j` holds byte `16 c + j` of codes 0..16 in its low lane and 16..32 in
/// its high lane; [`transpose_rows`]), and each column's nibbles are
/// looked up with `vpshufb` in 16-entry tables of the query (`Σ k` and
/// the bit count of each nibble value): two look-ups per byte position
/// shared by 32 codes. The sums are those of [`QueryPlanes::sums`]. Call
/// inside `V3::vectorize`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn block_sums_avx2<const N: usize>(
    simd: pulp::x86::V3,
    q: &QueryPlanes,
    columns: impl Fn(usize) -> [[core::arch::x86_64::__m256i; CHUNK]; N],
) -> [BlockSums; N] {
    use core::arch::x86_64::__m256i;
    let avx2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    let nibble = simd.avx._mm256_set1_epi8(0x0F);
    // u32 sums per vector; register r, element e holds code
    // `4 r + e % 4 + 16 (e / 4)` (see the widening below).
    let (mut weighted, mut count) = ([[zero; 4]; N], [[zero; 4]; N]);
    for c in 0..q.chunks() {
        let sets = columns(c);
        // u16 sums of this chunk: [0] codes 0..8 | 16..24, [1] 8..16 |
        // 24..32 (at most 16 · 248 each); counts in bytes (at most 128).
        let (mut k16, mut n8) = ([[zero; 2]; N], [zero; N]);
        // The chunk's byte positions that exist, with their four tables.
        let positions = q.columns[4 * CHUNK * c..].chunks_exact(4).take(CHUNK);
        for (j, tables) in positions.enumerate() {
            let (k_low, k_high, n_low, n_high): (__m256i, __m256i, __m256i, __m256i) = (
                pulp::cast(tables[0]),
                pulp::cast(tables[1]),
                pulp::cast(tables[2]),
                pulp::cast(tables[3]),
            );
            for v in 0..N {
                let column = sets[v][j];
                let low = avx2._mm256_and_si256(column, nibble);
                let high = avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(column), nibble);
                let k = avx2._mm256_add_epi8(
                    avx2._mm256_shuffle_epi8(k_low, low),
                    avx2._mm256_shuffle_epi8(k_high, high),
                );
                k16[v][0] = avx2._mm256_add_epi16(k16[v][0], avx2._mm256_unpacklo_epi8(k, zero));
                k16[v][1] = avx2._mm256_add_epi16(k16[v][1], avx2._mm256_unpackhi_epi8(k, zero));
                n8[v] = avx2._mm256_add_epi8(
                    n8[v],
                    avx2._mm256_add_epi8(
                        avx2._mm256_shuffle_epi8(n_low, low),
                        avx2._mm256_shuffle_epi8(n_high, high),
                    ),
                );
            }
        }
        for v in 0..N {
            let n16 = [
                avx2._mm256_unpacklo_epi8(n8[v], zero),
                avx2._mm256_unpackhi_epi8(n8[v], zero),
            ];
            for h in 0..2 {
                let (w, n) = (&mut weighted[v], &mut count[v]);
                w[2 * h] =
                    avx2._mm256_add_epi32(w[2 * h], avx2._mm256_unpacklo_epi16(k16[v][h], zero));
                w[2 * h + 1] = avx2
                    ._mm256_add_epi32(w[2 * h + 1], avx2._mm256_unpackhi_epi16(k16[v][h], zero));
                n[2 * h] =
                    avx2._mm256_add_epi32(n[2 * h], avx2._mm256_unpacklo_epi16(n16[h], zero));
                n[2 * h + 1] =
                    avx2._mm256_add_epi32(n[2 * h + 1], avx2._mm256_unpackhi_epi16(n16[h], zero));
            }
        }
    }
    let mut out = [BlockSums::default(); N];
    for v in 0..N {
        out[v] = BlockSums {
            weighted: in_code_order(simd, weighted[v]),
            count: in_code_order(simd, count[v]),
        };
    }
    out
}

/// u32 sums where register `r`, element `e` holds code
/// `4 r + e % 4 + 16 (e / 4)`, as f32 in code order (codes `8 g .. 8 g + 8`
/// in group `g`; exact, the sums being far below 2^24).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_code_order(simd: pulp::x86::V3, x: [core::arch::x86_64::__m256i; 4]) -> [[f32; 8]; 4] {
    let avx2 = simd.avx2;
    let groups = [
        avx2._mm256_permute2x128_si256::<0x20>(x[0], x[1]),
        avx2._mm256_permute2x128_si256::<0x20>(x[2], x[3]),
        avx2._mm256_permute2x128_si256::<0x31>(x[0], x[1]),
        avx2._mm256_permute2x128_si256::<0x31>(x[2], x[3]),
    ];
    let mut out = [[0.0f32; 8]; 4];
    for (o, g) in out.iter_mut().zip(groups) {
        *o = pulp::cast(simd.avx._mm256_cvtepi32_ps(g));
    }
    out
}

/// The 32 rows `row(i)` (16 bytes each) transposed: column `j` holds byte
/// `j` of rows 0..16 in its low lane and of rows 16..32 in its high lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn transpose_rows(
    simd: pulp::x86::V3,
    row: impl Fn(usize) -> [u8; CHUNK],
) -> [core::arch::x86_64::__m256i; CHUNK] {
    let mut rows = [simd.avx._mm256_setzero_si256(); CHUNK];
    for (i, r) in rows.iter_mut().enumerate() {
        // Two 16-byte loads joined in registers: building the 32 bytes in
        // memory first makes the 32-byte load wait for two 16-byte stores
        // it cannot be forwarded from.
        let (low, high): (core::arch::x86_64::__m128i, core::arch::x86_64::__m128i) =
            (pulp::cast(row(i)), pulp::cast(row(i + CHUNK)));
        *r = simd
            .avx2
            ._mm256_inserti128_si256::<1>(simd.avx._mm256_castsi128_si256(low), high);
    }
    transpose_lanes(simd, rows)
}

/// Transpose, in each 128-bit lane, the 16 × 16 bytes of `rows`: output
/// `j` holds byte `j` of every input, in input order (four rounds of
/// unpacks: bytes, words, double words, quad words).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose_lanes(
    simd: pulp::x86::V3,
    r: [core::arch::x86_64::__m256i; CHUNK],
) -> [core::arch::x86_64::__m256i; CHUNK] {
    let avx2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    // a[2i]: columns 0..8 of rows 2i, 2i + 1 as byte pairs; a[2i + 1]: 8..16.
    let mut a = [zero; CHUNK];
    for i in 0..8 {
        a[2 * i] = avx2._mm256_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = avx2._mm256_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
    }
    // b[4m + g]: columns 4g .. 4g + 4 of rows 4m .. 4m + 4, four bytes each.
    let mut b = [zero; CHUNK];
    for m in 0..4 {
        b[4 * m] = avx2._mm256_unpacklo_epi16(a[4 * m], a[4 * m + 2]);
        b[4 * m + 1] = avx2._mm256_unpackhi_epi16(a[4 * m], a[4 * m + 2]);
        b[4 * m + 2] = avx2._mm256_unpacklo_epi16(a[4 * m + 1], a[4 * m + 3]);
        b[4 * m + 3] = avx2._mm256_unpackhi_epi16(a[4 * m + 1], a[4 * m + 3]);
    }
    // c[8h + 2g + s]: columns 4g + 2s, 4g + 2s + 1 of rows 8h .. 8h + 8.
    let mut c = [zero; CHUNK];
    for h in 0..2 {
        for g in 0..4 {
            let (x, y) = (b[4 * (2 * h) + g], b[4 * (2 * h + 1) + g]);
            c[8 * h + 2 * g] = avx2._mm256_unpacklo_epi32(x, y);
            c[8 * h + 2 * g + 1] = avx2._mm256_unpackhi_epi32(x, y);
        }
    }
    // Column 2t, 2t + 1 from rows 0..8 and 8..16.
    let mut d = [zero; CHUNK];
    for t in 0..8 {
        d[2 * t] = avx2._mm256_unpacklo_epi64(c[t], c[8 + t]);
        d[2 * t + 1] = avx2._mm256_unpackhi_epi64(c[t], c[8 + t]);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(q: &QueryPlanes, z_len: usize, bits: &[u8], k: &[u8]) -> BitSums {
        let mut s = BitSums::default();
        for i in 0..z_len {
            if bits[i / 8] >> (i % 8) & 1 == 1 {
                s.count += 1;
                s.weighted += u64::from(k[i]);
            }
        }
        let _ = q;
        s
    }

    /// Both paths count exactly what the definition says, for lengths
    /// around the word and chunk sizes; the estimate is within the
    /// rounding bound of the true weight sum.
    #[test]
    fn sums_match_the_definition_on_both_paths() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for dim in [1usize, 7, 8, 63, 64, 65, 127, 128, 129, 300, 384] {
            let len = dim.div_ceil(8);
            let z: Vec<f32> = (0..dim).map(|_| rng.gen_range(-2.0f32..3.0)).collect();
            let q = QueryPlanes::new(&z, len);
            let k: Vec<u8> = z
                .iter()
                .map(|&x| {
                    if q.step > 0.0 {
                        ((x - q.lo) / q.step).round().clamp(0.0, TOP) as u8
                    } else {
                        0
                    }
                })
                .collect();
            let codes: Vec<Vec<u8>> = (0..BLOCK)
                // Padding bits set too: they must not count.
                .map(|_| (0..len).map(|_| rng.gen()).collect())
                .collect();
            for c in &codes {
                let want = naive(&q, dim, c, &k);
                assert_eq!(q.sums(|w| word_at(c, w)), want, "dim {dim}");
                let exact: f32 = (0..dim)
                    .filter(|&i| c[i / 8] >> (i % 8) & 1 == 1)
                    .map(|i| z[i])
                    .sum();
                let bound = q.max_rounding_error() * want.count as f32 + 1e-3;
                assert!(
                    (q.weight(want) - exact).abs() <= bound,
                    "dim {dim}: {} vs {exact}",
                    q.weight(want)
                );
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                let [block] = simd.vectorize(
                    #[inline(always)]
                    || {
                        block_sums_avx2(simd, &q, |c| {
                            [transpose_rows(simd, |i| chunk_at(&codes[i], c))]
                        })
                    },
                );
                for (i, code) in codes.iter().enumerate() {
                    let want = q.sums(|w| word_at(code, w));
                    let got = (block.weighted[i / 8][i % 8], block.count[i / 8][i % 8]);
                    assert_eq!(
                        got,
                        (want.weighted as f32, want.count as f32),
                        "dim {dim} code {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_and_empty_weights() {
        let q = QueryPlanes::new(&[0.5; 10], 2);
        let s = q.sums(|w| word_at(&[0b101, 0], w));
        assert_eq!(s.count, 2);
        assert_eq!(q.weight(s), 1.0);
        assert_eq!(q.total(), 5.0);
        let e = QueryPlanes::new(&[], 0);
        assert_eq!(e.total(), 0.0);
        assert!(e.is_empty());
    }
}
