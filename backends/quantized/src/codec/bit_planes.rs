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
//! * [`block_sums_avx2`]: 32 codes a step, one byte position of all 32 in
//!   a register (loaded from a column group, or transposed from rows in
//!   registers by [`transpose_rows`]); each position's two nibbles are
//!   looked up with `vpshufb` in 16-entry tables of the query (`Σ k` of
//!   every nibble value, biased to a byte): FAISS's fast scan. Signed
//!   weights need no count of set bits, so a nibble costs one look-up.
//! * [`QueryPlanes::sums`]: `u64` popcounts of the planes, for the codes
//!   after the last whole block, single scores and CPUs without AVX2.

/// Bits per plane index: `u_i = k_i + 15` is at most 30.
pub const BITS: usize = 5;
/// Largest `|k_i|`.
const K_MAX: f32 = 15.0;
/// `u_i − k_i`.
const K_BIAS: u64 = 15;
/// Bias of each nibble table entry (`Σ k` of a nibble is within ±60), so
/// the two entries of a byte sum to `Σ k + 128` in `8 ..= 248`.
const NIBBLE_BIAS: i32 = 64;

/// Code bytes a kernel step reads per code (one 128-bit lane).
pub const CHUNK: usize = 16;

/// `Σ k_i` over the set bits of a bit vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitSums {
    /// `Σ k_i` over the set bits.
    pub weighted: i64,
}

/// The query's weights as [`BITS`] bit planes (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct QueryPlanes {
    /// Bytes of one code bit vector.
    len: usize,
    step: f32,
    /// `Σ ẑ_i` over every dimension (`ẑ_i = step · k_i`).
    total: f32,
    /// Plane `p` of `u = k + 15`, word `w` at `p · words_per_plane + w`
    /// (little-endian: bit `i % 64` of word `i / 64` is dimension `i`).
    words: Vec<u64>,
    words_per_plane: usize,
    /// Bits of the dimensions that exist (a code's padding bits never
    /// count).
    valid_words: Vec<u64>,
    /// Per code byte `j`, two 16-entry tables (each twice, once per
    /// 128-bit lane) for [`block_sums_avx2`]: `Σ k_i + 64` over the set
    /// bits of the byte's low nibble, and of its high nibble (dimensions
    /// past the last count 0).
    columns: Vec<[u8; 32]>,
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
        let k: Vec<i8> = z
            .iter()
            .map(|&x| {
                if step > 0.0 {
                    (x / step).round().clamp(-K_MAX, K_MAX) as i8
                } else {
                    0
                }
            })
            .collect();
        let k_sum: i64 = k.iter().map(|&k| i64::from(k)).sum();
        let padded = len.div_ceil(8) * 8;
        let mut planes = vec![0u8; BITS * padded];
        for (i, &k) in k.iter().enumerate() {
            let u = (i64::from(k) + K_BIAS as i64) as u8;
            for p in 0..BITS {
                if u >> p & 1 == 1 {
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
        let mut columns = Vec::with_capacity(2 * len);
        for j in 0..len {
            for half in 0..2 {
                let mut table = [0u8; 32];
                for (n, entry) in table.iter_mut().enumerate().take(CHUNK) {
                    let sum: i32 = (0..4)
                        .filter(|b| n >> b & 1 == 1)
                        .filter_map(|b| k.get(8 * j + 4 * half + b))
                        .map(|&k| i32::from(k))
                        .sum();
                    *entry = (sum + NIBBLE_BIAS) as u8;
                }
                table.copy_within(..CHUNK, CHUNK);
                columns.push(table);
            }
        }
        QueryPlanes {
            len,
            step,
            total: step * k_sum as f32,
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
        // |Σ k| ≤ 15 · 8 per code byte: i32 converts without the branches
        // of a 64-bit conversion.
        self.step * sums.weighted as i32 as f32
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

/// Bytes `start .. start + 16` of `bytes`, zero past their end.
#[inline(always)]
pub fn bytes_at(bytes: &[u8], start: usize) -> [u8; 16] {
    let rest = &bytes[start.min(bytes.len())..];
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
}

/// The sums of 32 codes' `N` bit vectors at once, FAISS's fast scan:
/// `column(&chunk(c), j)` gives, per vector, the low and high nibbles
/// ([`nibbles`]) of byte position `16 c + j` of the 32 codes (byte
/// `16 c + j` of codes 0..16 in the low lane and 16..32 in the high lane:
/// loaded as they are from a column group, or from rows transposed in
/// registers by `chunk`; [`transpose_rows`]), and each column's two
/// nibbles are looked up with `vpshufb` in 16-entry
/// tables of the query (`Σ k + 64` of each nibble value): two look-ups per
/// byte position shared by 32 codes, summed in 16 bits per chunk and 32
/// bits over chunks, the bias taken off at the end. The sums are those of
/// [`QueryPlanes::sums`]. Call inside `V3::vectorize`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn block_sums_avx2<T, const N: usize>(
    simd: pulp::x86::V3,
    q: &QueryPlanes,
    chunk: impl Fn(usize) -> T,
    column: impl Fn(&T, usize) -> [[core::arch::x86_64::__m256i; 2]; N],
) -> [BlockSums; N] {
    let avx2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    // u32 sums per vector; register r, element e holds code
    // `4 r + e % 4 + 16 (e / 4)` (see the widening below).
    let mut weighted = [[zero; 4]; N];
    for c in 0..q.chunks() {
        let sets = chunk(c);
        // u16 sums of this chunk, FAISS's way without unpacking every
        // column: [0] adds the byte sums as u16 lanes (even code + 256 ·
        // odd code), [1] the odd codes alone; at most 16 · 248 each.
        let mut k16 = [[zero; 2]; N];
        // The chunk's byte positions that exist, with their two tables.
        let positions = q.columns[2 * CHUNK * c..].chunks_exact(2).take(CHUNK);
        for (j, tables) in positions.enumerate() {
            let (k_low, k_high): (core::arch::x86_64::__m256i, core::arch::x86_64::__m256i) =
                (pulp::cast(tables[0]), pulp::cast(tables[1]));
            let columns = column(&sets, j);
            for v in 0..N {
                let [low, high] = columns[v];
                let k = avx2._mm256_add_epi8(
                    avx2._mm256_shuffle_epi8(k_low, low),
                    avx2._mm256_shuffle_epi8(k_high, high),
                );
                k16[v][0] = avx2._mm256_add_epi16(k16[v][0], k);
                k16[v][1] = avx2._mm256_add_epi16(k16[v][1], avx2._mm256_srli_epi16::<8>(k));
            }
        }
        for v in 0..N {
            // Even codes: the lanes less 256 · the odd sums (mod 2^16,
            // exact). Interleaved back: [0] codes 0..8 | 16..24, [1]
            // 8..16 | 24..32.
            let odd = k16[v][1];
            let even = avx2._mm256_sub_epi16(k16[v][0], avx2._mm256_slli_epi16::<8>(odd));
            k16[v] = [
                avx2._mm256_unpacklo_epi16(even, odd),
                avx2._mm256_unpackhi_epi16(even, odd),
            ];
            for h in 0..2 {
                let w = &mut weighted[v];
                w[2 * h] =
                    avx2._mm256_add_epi32(w[2 * h], avx2._mm256_unpacklo_epi16(k16[v][h], zero));
                w[2 * h + 1] = avx2
                    ._mm256_add_epi32(w[2 * h + 1], avx2._mm256_unpackhi_epi16(k16[v][h], zero));
            }
        }
    }
    // Every byte position added 2 · 64 to every code.
    let bias = simd
        .avx
        ._mm256_set1_epi32((2 * NIBBLE_BIAS as usize * q.len) as i32);
    let mut out = [BlockSums::default(); N];
    for v in 0..N {
        let mut w = weighted[v];
        for x in &mut w {
            *x = avx2._mm256_sub_epi32(*x, bias);
        }
        out[v] = BlockSums {
            weighted: in_code_order(simd, w),
        };
    }
    out
}

/// The low and high nibbles of each byte of `x`, one per byte.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn nibbles(
    simd: pulp::x86::V3,
    x: core::arch::x86_64::__m256i,
) -> [core::arch::x86_64::__m256i; 2] {
    let avx2 = simd.avx2;
    let nibble = simd.avx._mm256_set1_epi8(0x0F);
    [
        avx2._mm256_and_si256(x, nibble),
        avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(x), nibble),
    ]
}

/// u32 sums where register `r`, element `e` holds code
/// `4 r + e % 4 + 16 (e / 4)`, as f32 in code order (codes `8 g .. 8 g + 8`
/// in group `g`; exact, the sums being far below 2^24).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_code_order(simd: pulp::x86::V3, x: [core::arch::x86_64::__m256i; 4]) -> [[f32; 8]; 4] {
    let mut out = [[0.0f32; 8]; 4];
    for (o, g) in out.iter_mut().zip(to_code_order(simd, x)) {
        *o = pulp::cast(simd.avx._mm256_cvtepi32_ps(g));
    }
    out
}

/// 32-bit elements where register `r`, element `e` holds code
/// `4 r + e % 4 + 16 (e / 4)`, put in code order (codes `8 g .. 8 g + 8`
/// in register `g`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn to_code_order(
    simd: pulp::x86::V3,
    x: [core::arch::x86_64::__m256i; 4],
) -> [core::arch::x86_64::__m256i; 4] {
    let avx2 = simd.avx2;
    [
        avx2._mm256_permute2x128_si256::<0x20>(x[0], x[1]),
        avx2._mm256_permute2x128_si256::<0x20>(x[2], x[3]),
        avx2._mm256_permute2x128_si256::<0x31>(x[0], x[1]),
        avx2._mm256_permute2x128_si256::<0x31>(x[2], x[3]),
    ]
}

/// The little-endian 32-bit words whose bytes are the byte columns
/// `t[0..4]` of 32 codes (lanes as [`transpose_rows`] leaves them: codes
/// 0..16 low, 16..32 high), in code order, eight codes per register.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn words_of_columns(
    simd: pulp::x86::V3,
    t: [core::arch::x86_64::__m256i; 4],
) -> [core::arch::x86_64::__m256i; 4] {
    let avx2 = simd.avx2;
    // Byte pairs (0, 1) and (2, 3) of codes 0..8 | 16..24 and 8..16 | 24..32.
    let (a, b) = (
        avx2._mm256_unpacklo_epi8(t[0], t[1]),
        avx2._mm256_unpacklo_epi8(t[2], t[3]),
    );
    let (c, d) = (
        avx2._mm256_unpackhi_epi8(t[0], t[1]),
        avx2._mm256_unpackhi_epi8(t[2], t[3]),
    );
    // Register r, element e: code 4 r + e % 4 + 16 (e / 4).
    to_code_order(
        simd,
        [
            avx2._mm256_unpacklo_epi16(a, b),
            avx2._mm256_unpackhi_epi16(a, b),
            avx2._mm256_unpacklo_epi16(c, d),
            avx2._mm256_unpackhi_epi16(c, d),
        ],
    )
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
            let k: Vec<i8> = z
                .iter()
                .map(|&x| (x / q.step).round().clamp(-15.0, 15.0) as i8)
                .collect();
            let codes: Vec<Vec<u8>> = (0..BLOCK)
                // Padding bits set too: they must not count.
                .map(|_| (0..len).map(|_| rng.gen()).collect())
                .collect();
            for c in &codes {
                let (want, count) = naive(dim, c, &k);
                assert_eq!(q.sums(|w| word_at(c, w)), want, "dim {dim}");
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
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                let [block] = simd.vectorize(
                    #[inline(always)]
                    || {
                        block_sums_avx2(
                            simd,
                            &q,
                            |c| transpose_rows(simd, |i| bytes_at(&codes[i], CHUNK * c)),
                            |t, j| [nibbles(simd, t[j])],
                        )
                    },
                );
                for (i, code) in codes.iter().enumerate() {
                    let want = q.sums(|w| word_at(code, w));
                    assert_eq!(
                        block.weighted[i / 8][i % 8],
                        want.weighted as f32,
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
        assert_eq!(s.weighted, 30, "two weights of 15 steps");
        assert!((q.weight(s) - 1.0).abs() < 1e-6, "{}", q.weight(s));
        assert!((q.total() - 5.0).abs() < 1e-5, "{}", q.total());
        let zero = QueryPlanes::new(&[0.0; 10], 2);
        assert_eq!(zero.weight(zero.sums(|w| word_at(&[0xFF, 3], w))), 0.0);
        let e = QueryPlanes::new(&[], 0);
        assert_eq!(e.total(), 0.0);
        assert!(e.is_empty());
    }
}
