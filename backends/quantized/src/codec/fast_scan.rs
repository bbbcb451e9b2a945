//! FAISS's fast scan for binary codes: per code byte, two 16-entry tables
//! of small integers (one for each nibble), and the kernels that sum them
//! over 32 codes at once.
//!
//! A score that is a sum over a code's nibbles of some per-nibble value
//! (`Σ k` of the dimensions whose bits are set, for bit vectors; the
//! levels of two dimensions, for 2-bit codes) is kept as
//! [`NibbleTables`]: the values rounded to integers in `−60 ..= 60` (one
//! `step` each), biased by 64 into a byte, so the two entries of a code
//! byte sum to at most 248. Every path sums the same integers, so every
//! path gives the same scores bit for bit:
//!
//! * [`block_sums_avx2`]: 32 codes a step, one byte position of all 32 in
//!   a register (loaded from a column group, or transposed from rows in
//!   registers by [`transpose_rows`]); each position's two nibbles are
//!   looked up with `vpshufb`, summed in 16 bits per [`CHUNK`] positions
//!   and 32 bits over chunks.
//! * [`NibbleTables::sum`]: two table reads per code byte, for single
//!   scores, the codes after the last whole block and CPUs without AVX2.

/// Largest `|entry|` of a table.
pub const ENTRY_MAX: i32 = 60;
/// Bias of each stored table entry, so the two entries of a byte sum to
/// `Σ + 128` in `8 ..= 248`.
const NIBBLE_BIAS: i32 = 64;

/// Code bytes a kernel step reads per code (one 128-bit lane).
pub const CHUNK: usize = 16;

/// `x` rounded to the nearest integer, halves away from zero, for
/// `|x| < 2^22` (NaN gives 0): without the library call of `f32::round`
/// on CPUs without SSE4.1.
#[inline]
pub fn round_small(x: f32) -> i32 {
    let r = (x.abs() + 0.5) as i32;
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Per code byte, the integer value of each low and each high nibble
/// (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct NibbleTables {
    /// Code bytes covered.
    len: usize,
    /// The weight of one unit of an entry.
    step: f32,
    /// Per code byte `j`, at `2 j` the low nibble's table and at `2 j + 1`
    /// the high nibble's: entry `n` (`+ 64`) at `n` and again at `16 + n`
    /// (once per 128-bit lane).
    tables: Vec<[u8; 32]>,
}

impl NibbleTables {
    /// Tables over `len` code bytes whose entries are `entries(t)` for
    /// nibble `t` (the low nibble of byte `t / 2` for even `t`, the high
    /// one for odd; entry `n` for nibble value `n`, within
    /// ±[`ENTRY_MAX`]), each worth `step`.
    pub fn from_entries(len: usize, step: f32, entries: impl Fn(usize) -> [i32; 16]) -> Self {
        let tables = (0..2 * len)
            .map(|t| {
                let mut table = [0u8; 32];
                for (n, e) in entries(t).into_iter().enumerate() {
                    debug_assert!(e.abs() <= ENTRY_MAX, "entry {e}");
                    let stored = (e.clamp(-ENTRY_MAX, ENTRY_MAX) + NIBBLE_BIAS) as u8;
                    table[n] = stored;
                    table[CHUNK + n] = stored;
                }
                table
            })
            .collect();
        NibbleTables { len, step, tables }
    }

    /// Tables over `len` code bytes of the real values `values(t)` of
    /// nibble `t` (as in [`from_entries`](Self::from_entries)), rounded to
    /// steps of `max |value| / 60` (so each entry is off by at most
    /// [`max_rounding_error`](Self::max_rounding_error)). Non-finite
    /// values make every entry 0.
    pub fn rounded(len: usize, values: impl Fn(usize) -> [f32; 16]) -> Self {
        let values: Vec<[f32; 16]> = (0..2 * len).map(values).collect();
        let mut top = 0.0f32;
        for &v in values.iter().flatten() {
            // NaN stays NaN (`f32::max` would drop it).
            let v = v.abs();
            top = if v > top || v.is_nan() { v } else { top };
        }
        let step = if top.is_finite() && top > 0.0 {
            top / ENTRY_MAX as f32
        } else {
            0.0
        };
        let scale = if step > 0.0 { 1.0 / step } else { 0.0 };
        Self::from_entries(len, step, |t| values[t].map(|v| round_small(v * scale)))
    }

    /// Code bytes covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tables cover no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The weight of one unit of an entry.
    pub fn step(&self) -> f32 {
        self.step
    }

    /// Largest rounding error of one entry made by
    /// [`rounded`](Self::rounded) (`step / 2`).
    pub fn max_rounding_error(&self) -> f32 {
        self.step / 2.0
    }

    /// Number of [`CHUNK`]-byte steps the AVX2 kernel takes.
    pub fn chunks(&self) -> usize {
        self.len.div_ceil(CHUNK)
    }

    /// The sum of the entries of the nibbles of `code`'s first
    /// [`len`](Self::len) bytes, read one byte at a time.
    #[inline(always)]
    pub fn sum(&self, code: &[u8]) -> i64 {
        debug_assert!(code.len() >= self.len, "a whole code");
        let mut sum = 0i32;
        for (tables, &b) in self.tables.chunks_exact(2).zip(code) {
            sum += i32::from(tables[0][usize::from(b & 0xF)])
                + i32::from(tables[1][usize::from(b >> 4)]);
        }
        i64::from(sum) - i64::from(2 * NIBBLE_BIAS) * self.len as i64
    }

    /// The estimate `step · Σ` of the entries summed to `sum`.
    #[inline]
    pub fn weight(&self, sum: i64) -> f32 {
        // |Σ| ≤ 120 per code byte: i32 converts without the branches of a
        // 64-bit conversion.
        self.step * sum as i32 as f32
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

/// [`NibbleTables::sum`] of a block of [`BLOCK`] codes as f32 (exact),
/// eight codes per group in code order, ready for eight-lane float
/// arithmetic.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockSums {
    /// The sum of code `8 g + e` at `[g][e]`.
    pub sums: [[f32; 8]; 4],
}

/// The sums of `N` byte vectors of 32 codes at once over the same
/// tables, FAISS's fast scan: `column(&chunk(c), j)` gives, per vector,
/// the low and high nibbles ([`nibbles`]) of byte position `16 c + j` of
/// the 32 codes (codes 0..16 in the low lane and 16..32 in the high lane:
/// loaded as they are from a column group, or from rows transposed in
/// registers by `chunk`; [`transpose_rows`]), and each column's two
/// nibbles are looked up with `vpshufb` in `tables`: two look-ups per
/// byte position shared by 32 codes, summed in 16 bits per chunk and 32
/// bits over chunks, the bias taken off at the end. The sums are those of
/// [`NibbleTables::sum`]. Call inside `V3::vectorize`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn block_sums_avx2<T, const N: usize>(
    simd: pulp::x86::V3,
    tables: &NibbleTables,
    chunk: impl Fn(usize) -> T,
    column: impl Fn(&T, usize) -> [[core::arch::x86_64::__m256i; 2]; N],
) -> [BlockSums; N] {
    let avx2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    // u32 sums per vector; register r, element e holds code
    // `4 r + e % 4 + 16 (e / 4)` (see the widening below).
    let mut sums = [[zero; 4]; N];
    for c in 0..tables.chunks() {
        let sets = chunk(c);
        // u16 sums of this chunk, FAISS's way without unpacking every
        // column: [0] adds the byte sums as u16 lanes (even code + 256 ·
        // odd code), [1] the odd codes alone; at most 16 · 248 each.
        let mut k16 = [[zero; 2]; N];
        // The chunk's byte positions that exist, with their two tables.
        let positions = tables.tables[2 * CHUNK * c..].chunks_exact(2).take(CHUNK);
        for (j, pair) in positions.enumerate() {
            let (k_low, k_high): (core::arch::x86_64::__m256i, core::arch::x86_64::__m256i) =
                (pulp::cast(pair[0]), pulp::cast(pair[1]));
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
                let w = &mut sums[v];
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
        ._mm256_set1_epi32((2 * NIBBLE_BIAS as usize * tables.len) as i32);
    let mut out = [BlockSums::default(); N];
    for v in 0..N {
        let mut w = sums[v];
        for x in &mut w {
            *x = avx2._mm256_sub_epi32(*x, bias);
        }
        out[v] = BlockSums {
            sums: in_code_order(simd, w),
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

    /// The sum by the definition: entry of every nibble.
    fn naive(values: &[[[i32; 16]; 2]], code: &[u8]) -> i64 {
        values
            .iter()
            .zip(code)
            .map(|(t, &b)| i64::from(t[0][usize::from(b & 0xF)] + t[1][usize::from(b >> 4)]))
            .sum()
    }

    /// Rounded tables are within half a step of the values, and the
    /// portable sum and the AVX2 kernel (over rows transposed in
    /// registers) both sum exactly the entries, for lengths around the
    /// chunk size.
    #[test]
    fn both_paths_sum_the_entries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [1usize, 7, 15, 16, 17, 32, 33, 48, 96] {
            let values: Vec<[[f32; 16]; 2]> = (0..len)
                .map(|_| [[0.0; 16]; 2].map(|t: [f32; 16]| t.map(|_| rng.gen_range(-3.0..2.0))))
                .collect();
            let tables = NibbleTables::rounded(len, |t| values[t / 2][t % 2]);
            let entries: Vec<[[i32; 16]; 2]> = (0..len)
                .map(|j| {
                    let mut t = [[0i32; 16]; 2];
                    for (h, half) in t.iter_mut().enumerate() {
                        for (n, e) in half.iter_mut().enumerate() {
                            *e = i32::from(tables.tables[2 * j + h][n]) - NIBBLE_BIAS;
                            let real = values[j][h][n];
                            assert!(
                                (tables.step() * *e as f32 - real).abs()
                                    <= tables.max_rounding_error() * 1.001,
                                "len {len}: {e} steps for {real}"
                            );
                        }
                    }
                    t
                })
                .collect();
            let top = entries.iter().flatten().flatten().map(|e| e.abs()).max();
            assert_eq!(top, Some(ENTRY_MAX), "the largest value uses the range");
            let codes: Vec<Vec<u8>> = (0..BLOCK)
                .map(|_| (0..len).map(|_| rng.gen()).collect())
                .collect();
            for c in &codes {
                assert_eq!(tables.sum(c), naive(&entries, c), "len {len}");
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                let [block] = simd.vectorize(
                    #[inline(always)]
                    || {
                        block_sums_avx2(
                            simd,
                            &tables,
                            |c| transpose_rows(simd, |i| bytes_at(&codes[i], CHUNK * c)),
                            |t, j| [nibbles(simd, t[j])],
                        )
                    },
                );
                for (i, code) in codes.iter().enumerate() {
                    assert_eq!(
                        block.sums[i / 8][i % 8],
                        tables.sum(code) as f32,
                        "len {len} code {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_and_empty_tables() {
        let zero = NibbleTables::rounded(3, |_| [0.0; 16]);
        assert_eq!(zero.step(), 0.0);
        assert_eq!(zero.sum(&[0xFF, 0x12, 0x34]), 0);
        let nan = NibbleTables::rounded(2, |t| {
            let mut v = [1.0; 16];
            v[3] = if t == 1 { f32::NAN } else { 1.0 };
            v
        });
        assert_eq!(
            nan.weight(nan.sum(&[3, 3])),
            0.0,
            "non-finite: every entry 0"
        );
        let empty = NibbleTables::rounded(0, |_| [1.0; 16]);
        assert!(empty.is_empty());
        assert_eq!(empty.sum(&[]), 0);
    }
}
