//! FAISS's fast scan for binary codes: per code byte position, 16-entry
//! tables of small integers indexed by nibbles of the code, and the
//! kernels that sum them over 32 codes at once.
//!
//! A score that is a sum over a code's byte positions of per-nibble
//! values (`Σ k` of the dimensions whose bits are set, for bit vectors;
//! the levels of two dimensions, for 2-bit codes; signs and pair
//! magnitudes, for 1.5 bits) is kept as [`NibbleTables`]: `P` tables per
//! position, the values rounded to integers (one `step` each) whose
//! largest magnitudes add up to at most [`SUM_MAX`] per position, each
//! table biased into bytes so that a position's `P` entries add up to at
//! most 254 in a byte. Every path sums the same integers, so every path
//! gives the same scores bit for bit:
//!
//! * [`block_sums_avx2`]: 32 codes a step, one byte position of all 32 in
//!   a register (loaded from a column group, or transposed from rows in
//!   registers by [`transpose_rows`]); each position's `P` nibble indices
//!   are looked up with `vpshufb` and added in bytes, summed in 16 bits
//!   per [`CHUNK`] positions and 32 bits over chunks.
//! * [`LaneSums`]: the exact sums of one byte per code lane over many
//!   positions, shared with the product codes' AVX2 kernel.
//! * [`NibbleTables::sum`]: `P` table reads per position, for single
//!   scores, the codes after the last whole block and CPUs without AVX2.

/// Largest sum of the largest `|entry|` of a position's tables (rounding
/// may add half a unit per table).
pub const SUM_MAX: i32 = 120;

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

/// `Σ w_b` over the set bits `b` of each nibble value `n`, at `n` (each
/// from the value without its highest bit).
pub fn subset_sums<T: Copy + Default + std::ops::Add<Output = T>>(w: [T; 4]) -> [T; 16] {
    let mut sums = [T::default(); 16];
    for (b, w) in w.into_iter().enumerate() {
        for n in 0..1 << b {
            sums[n | 1 << b] = sums[n] + w;
        }
    }
    sums
}

/// Per byte position, `P` tables of the integer value of each nibble
/// (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct NibbleTables<const P: usize> {
    /// Byte positions covered.
    len: usize,
    /// The weight of one unit of an entry.
    step: f32,
    /// The biases of every table, added up (taken off every sum).
    bias: i64,
    /// Per position, its `P` tables: entry `n` plus the table's bias (the
    /// largest `|entry|` of the table) at `n` and again at `16 + n` (once
    /// per 128-bit lane).
    tables: Vec<[[u8; 32]; P]>,
}

impl<const P: usize> NibbleTables<P> {
    /// Tables over `len` positions whose entries are `entries(j)` (table
    /// `t`, nibble value `n` at `[t][n]`), each worth `step`; per
    /// position, the largest `|entry|` of the tables add up to at most
    /// `SUM_MAX + P / 2`.
    pub fn from_entries(len: usize, step: f32, entries: impl Fn(usize) -> [[i32; 16]; P]) -> Self {
        let mut bias = 0i64;
        let tables = (0..len)
            .map(|j| {
                let entries = entries(j);
                let mut out = [[0u8; 32]; P];
                let mut position_bias = 0;
                for (table, e) in out.iter_mut().zip(entries) {
                    let b = e.iter().map(|e| e.abs()).max().unwrap_or(0);
                    position_bias += b;
                    for (n, e) in e.into_iter().enumerate() {
                        // In 0 ..= 2 b.
                        table[n] = (e + b) as u8;
                        table[CHUNK + n] = table[n];
                    }
                }
                assert!(
                    2 * position_bias <= 255,
                    "entries of position {j} exceed a byte"
                );
                bias += i64::from(position_bias);
                out
            })
            .collect();
        NibbleTables {
            len,
            step,
            bias,
            tables,
        }
    }

    /// Tables over `len` positions of the real values `values(j)` (as in
    /// [`from_entries`](Self::from_entries)), rounded to steps of the
    /// largest position's `Σ_t max |value| / SUM_MAX` (so each entry is
    /// off by at most [`max_rounding_error`](Self::max_rounding_error)).
    /// Non-finite values make every entry 0.
    pub fn rounded(len: usize, values: impl Fn(usize) -> [[f32; 16]; P]) -> Self {
        let values: Vec<[[f32; 16]; P]> = (0..len).map(values).collect();
        let mut top = 0.0f32;
        for position in &values {
            let mut sum = 0.0f32;
            for table in position {
                // NaN stays NaN (`f32::max` would drop it).
                let m = table.iter().fold(0.0f32, |m, &v| {
                    let v = v.abs();
                    if v > m || v.is_nan() {
                        v
                    } else {
                        m
                    }
                });
                sum += m;
            }
            top = if sum > top || sum.is_nan() { sum } else { top };
        }
        let step = if top.is_finite() && top > 0.0 {
            top / SUM_MAX as f32
        } else {
            0.0
        };
        let scale = if step > 0.0 { 1.0 / step } else { 0.0 };
        Self::from_entries(len, step, |j| {
            values[j].map(|table| table.map(|v| round_small(v * scale)))
        })
    }

    /// Byte positions covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tables cover no position.
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

    /// Number of [`CHUNK`]-position steps the AVX2 kernel takes.
    pub fn chunks(&self) -> usize {
        self.len.div_ceil(CHUNK)
    }

    /// The sum of the entries at the nibble values `index(j)` of every
    /// position `j` (one per table, each below 16), read one at a time.
    #[inline(always)]
    pub fn sum(&self, index: impl Fn(usize) -> [u8; P]) -> i64 {
        let mut sum = 0i32;
        for (j, tables) in self.tables.iter().enumerate() {
            for (table, n) in tables.iter().zip(index(j)) {
                sum += i32::from(table[usize::from(n & 0xF)]);
            }
        }
        i64::from(sum) - self.bias
    }

    /// The estimate `step · Σ` of the entries summed to `sum`.
    #[inline]
    pub fn weight(&self, sum: i64) -> f32 {
        // |Σ| ≤ 127 per position: i32 converts without the branches of a
        // 64-bit conversion.
        self.step * sum as i32 as f32
    }
}

impl NibbleTables<2> {
    /// [`sum`](Self::sum) of tables indexed by the low and the high nibble
    /// of each of the first [`len`](Self::len) bytes of `code`.
    #[inline(always)]
    pub fn sum_bytes(&self, code: &[u8]) -> i64 {
        debug_assert!(code.len() >= self.len, "a whole code");
        self.sum(|j| [code[j] & 0xF, code[j] >> 4])
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

/// The sums of 32 codes at once, FAISS's fast scan: `column(&chunk(c),
/// j)` gives the `P` nibble indices (one per byte, below 16; e.g.
/// [`nibbles`]) of byte position `16 c + j` of the 32 codes (codes 0..16
/// in the low lane and 16..32 in the high lane: loaded as they are from a
/// column group, or from rows transposed in registers by `chunk`;
/// [`transpose_rows`]), each looked up with `vpshufb` in its table of
/// the position and added in bytes; the position sums are added in 16
/// bits per chunk and 32 bits over chunks, the bias taken off at the end.
/// The sums are those of [`NibbleTables::sum`]. Call inside
/// `V3::vectorize`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn block_sums_avx2<T, const P: usize>(
    simd: pulp::x86::V3,
    tables: &NibbleTables<P>,
    chunk: impl Fn(usize) -> T,
    column: impl Fn(&T, usize) -> [core::arch::x86_64::__m256i; P],
) -> BlockSums {
    let avx2 = simd.avx2;
    let zero = simd.avx._mm256_setzero_si256();
    let mut sums = LaneSums::new(simd);
    for c in 0..tables.chunks() {
        let sets = chunk(c);
        // The chunk's byte positions that exist, with their tables.
        for (j, position) in tables.tables[CHUNK * c..].iter().take(CHUNK).enumerate() {
            let mut k = zero;
            for (table, index) in position.iter().zip(column(&sets, j)) {
                let table: core::arch::x86_64::__m256i = pulp::cast(*table);
                k = avx2._mm256_add_epi8(k, avx2._mm256_shuffle_epi8(table, index));
            }
            sums.add(k);
        }
        sums.end_chunk();
    }
    // Less the tables' biases, added to every code.
    BlockSums {
        sums: sums.in_code_order(tables.bias as i32),
    }
}

/// Exact sums of byte values over many positions for 32 codes, one code
/// per byte lane as `vpshufb` leaves them (codes 0..16 in the low 128-bit
/// lane, 16..32 in the high one), FAISS's way without unpacking every
/// position: within a chunk, u16 lanes add the bytes as they are (even
/// code + 256 · odd code, wrapping) and the odd codes' bytes shifted
/// down; [`LaneSums::end_chunk`] takes the even codes' sums as the
/// difference and adds both into u32. A chunk may hold at most 257
/// positions of bytes up to 255 (the even sums must stay below 2^16).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct LaneSums {
    simd: pulp::x86::V3,
    /// This chunk's u16 lanes: [0] even + 256 · odd, [1] the odd codes.
    k16: [core::arch::x86_64::__m256i; 2],
    /// u32 sums; register `r`, element `e` holds code
    /// `4 r + e % 4 + 16 (e / 4)` (see [`LaneSums::end_chunk`]).
    sums: [core::arch::x86_64::__m256i; 4],
}

#[cfg(target_arch = "x86_64")]
impl LaneSums {
    /// All sums zero.
    #[inline(always)]
    pub fn new(simd: pulp::x86::V3) -> Self {
        let zero = simd.avx._mm256_setzero_si256();
        LaneSums {
            simd,
            k16: [zero; 2],
            sums: [zero; 4],
        }
    }

    /// Adds one position's byte per code.
    #[inline(always)]
    pub fn add(&mut self, k: core::arch::x86_64::__m256i) {
        let avx2 = self.simd.avx2;
        self.k16[0] = avx2._mm256_add_epi16(self.k16[0], k);
        self.k16[1] = avx2._mm256_add_epi16(self.k16[1], avx2._mm256_srli_epi16::<8>(k));
    }

    /// Moves the chunk's u16 sums into the u32 ones.
    #[inline(always)]
    pub fn end_chunk(&mut self) {
        let avx2 = self.simd.avx2;
        let zero = self.simd.avx._mm256_setzero_si256();
        // Even codes: the lanes less 256 · the odd sums (mod 2^16, exact).
        // Interleaved back: [0] codes 0..8 | 16..24, [1] 8..16 | 24..32.
        let odd = self.k16[1];
        let even = avx2._mm256_sub_epi16(self.k16[0], avx2._mm256_slli_epi16::<8>(odd));
        let k16 = [
            avx2._mm256_unpacklo_epi16(even, odd),
            avx2._mm256_unpackhi_epi16(even, odd),
        ];
        for (h, k) in k16.into_iter().enumerate() {
            let sums = &mut self.sums[2 * h..2 * h + 2];
            sums[0] = avx2._mm256_add_epi32(sums[0], avx2._mm256_unpacklo_epi16(k, zero));
            sums[1] = avx2._mm256_add_epi32(sums[1], avx2._mm256_unpackhi_epi16(k, zero));
        }
        self.k16 = [zero; 2];
    }

    /// The sums less `bias` each, as f32 in code order (codes
    /// `8 g .. 8 g + 8` in group `g`; exact below 2^24). Call after
    /// [`LaneSums::end_chunk`].
    #[inline(always)]
    pub fn in_code_order(self, bias: i32) -> [[f32; 8]; 4] {
        let avx2 = self.simd.avx2;
        let bias = self.simd.avx._mm256_set1_epi32(bias);
        in_code_order(self.simd, self.sums.map(|x| avx2._mm256_sub_epi32(x, bias)))
    }
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

    /// Rounded tables of `P` per position are within half a step of the
    /// values and use the byte's range, and the portable sum and the AVX2
    /// kernel (rows transposed in registers) both sum exactly the entries
    /// the indices pick, for lengths around the chunk size.
    fn check<const P: usize>(rng: &mut rand::rngs::StdRng) {
        for len in [1usize, 7, 15, 16, 17, 32, 33, 48, 96] {
            let values: Vec<[[f32; 16]; P]> = (0..len)
                .map(|_| [[0.0f32; 16]; P].map(|t| t.map(|_| rng.gen_range(-3.0..2.0))))
                .collect();
            let tables = NibbleTables::<P>::rounded(len, |j| values[j]);
            let mut widest = 0;
            // The entries, unbiased: table byte less the table's bias.
            let entries: Vec<[[i32; 16]; P]> = (0..len)
                .map(|j| {
                    let mut position_bias = 0;
                    let e = std::array::from_fn(|t| {
                        let stored = &tables.tables[j][t];
                        let real = values[j][t];
                        let scale = 1.0 / tables.step();
                        let b = (0..16)
                            .map(|n| round_small(real[n] * scale).abs())
                            .max()
                            .unwrap();
                        position_bias += b;
                        std::array::from_fn(|n| {
                            let e = i32::from(stored[n]) - b;
                            assert_eq!(stored[n], stored[16 + n], "both lanes");
                            assert!(
                                (tables.step() * e as f32 - real[n]).abs()
                                    <= tables.max_rounding_error() * 1.001,
                                "len {len}: {e} steps for {}",
                                real[n]
                            );
                            e
                        })
                    });
                    widest = widest.max(position_bias);
                    e
                })
                .collect();
            assert!(
                (SUM_MAX - P as i32 / 2 - 1..=SUM_MAX + P as i32 / 2 + 1).contains(&widest),
                "P {P} len {len}: the widest position uses the range ({widest})"
            );
            let codes: Vec<Vec<[u8; P]>> = (0..32)
                .map(|_| {
                    (0..len)
                        .map(|_| [0; P].map(|_| rng.gen_range(0..16)))
                        .collect()
                })
                .collect();
            for c in &codes {
                let naive: i64 = (0..len)
                    .flat_map(|j| (0..P).map(move |t| (j, t)))
                    .map(|(j, t)| i64::from(entries[j][t][usize::from(c[j][t])]))
                    .sum();
                assert_eq!(tables.sum(|j| c[j]), naive, "P {P} len {len}");
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                // Table t's indices as byte vector t of each code.
                let rows: Vec<Vec<Vec<u8>>> = (0..P)
                    .map(|t| {
                        codes
                            .iter()
                            .map(|c| c.iter().map(|i| i[t]).collect())
                            .collect()
                    })
                    .collect();
                let block = simd.vectorize(
                    #[inline(always)]
                    || {
                        block_sums_avx2(
                            simd,
                            &tables,
                            |c| {
                                let chunks: [_; P] = std::array::from_fn(|t| {
                                    transpose_rows(simd, |i| bytes_at(&rows[t][i], CHUNK * c))
                                });
                                chunks
                            },
                            |chunks, j| std::array::from_fn(|t| chunks[t][j]),
                        )
                    },
                );
                for (i, c) in codes.iter().enumerate() {
                    assert_eq!(
                        block.sums[i / 8][i % 8],
                        tables.sum(|j| c[j]) as f32,
                        "P {P} len {len} code {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn both_paths_sum_the_entries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        check::<2>(&mut rng);
        check::<5>(&mut rng);
    }

    #[test]
    fn round_small_rounds_halves_away_from_zero() {
        for (x, r) in [
            (0.0, 0),
            (0.49, 0),
            (0.5, 1),
            (-0.5, -1),
            (2.5, 3),
            (-7.6, -8),
        ] {
            assert_eq!(round_small(x), r, "{x}");
        }
        assert_eq!(round_small(f32::NAN), 0);
    }

    #[test]
    fn constant_and_empty_tables() {
        let zero = NibbleTables::<2>::rounded(3, |_| [[0.0; 16]; 2]);
        assert_eq!(zero.step(), 0.0);
        assert_eq!(zero.sum_bytes(&[0xFF, 0x12, 0x34]), 0);
        let nan = NibbleTables::<2>::rounded(2, |j| {
            let mut v = [[1.0; 16]; 2];
            v[1][3] = if j == 1 { f32::NAN } else { 1.0 };
            v
        });
        assert_eq!(
            nan.weight(nan.sum_bytes(&[3, 3])),
            0.0,
            "non-finite: every entry 0"
        );
        let empty = NibbleTables::<2>::rounded(0, |_| [[1.0; 16]; 2]);
        assert!(empty.is_empty());
        assert_eq!(empty.sum_bytes(&[]), 0);
    }
}
