//! Product quantization: one byte per sub-vector.
//!
//! A vector of `dim` components is cut into `m = dim / sub_dim` sub-vectors
//! of `sub_dim` components. Each sub-space has its own table of 256
//! centroids, trained with k-means (euclidean, for every distance) on that
//! sub-space of the sample; a sub-vector is coded as the index of its
//! nearest centroid (squared L2), so a code is `m` bytes and decodes as the
//! concatenation of the chosen centroids.
//!
//! Training: k-means++ seeding from a [`StdRng`] seeded with
//! [`ProductConfig::seed`], then Lloyd iterations until no assignment
//! changes or [`ProductConfig::iterations`] have run. An empty cluster takes
//! a random point of a cluster that has several; with fewer distinct
//! sub-vectors than 256 the spare centroids duplicate others. Lloyd's
//! assignment step skips work with Yinyang-style bounds: the 256 centroids
//! form 32 groups of 8 (by index), each point keeps an upper bound on the
//! distance to its centroid and a lower bound per group, loosened by how far
//! the centroids move, and only groups whose bound falls below the upper
//! bound are searched again.
//!
//! Scoring builds, per query, a table of `m × 256` partial scores of the
//! query's sub-vectors against every centroid (dot product for dot and
//! cosine, squared L2 for euclid, L1 for manhattan), rounded to bytes
//! over one step for all sub-spaces (`t ≈ min_j + delta · u`, `u ≤ 255`,
//! as FAISS's fast scan does), so a code scores with `m` table look-ups
//! and an integer sum: `Σ min_j + delta · Σ u` for dot and cosine, its
//! negated square root for euclid, its negation for manhattan. That is the
//! score of the decoded vector within `m · delta / 2` (plus float
//! rounding). Codes stored as column groups are scored 32 or 64 at a
//! time: with AVX-512, from a sub-space's 256 byte entries held in four
//! registers (with VBMI, two `vpermi2b` pick the entries of 64 codes, two
//! groups; without it, two `vpermi2w` pick the words holding the entries
//! of 32); with AVX2 alone, sixteen `vpshufb` look up the low nibbles of
//! 32 codes in the sixteen 16-entry parts of the row, and byte blends by
//! the high nibble's bits keep the right one. Every path sums
//! the same integers, so scores agree bit for bit. Codes are coarse, so
//! search rescores with the raw vectors by default.
//!
//! Parameters (little-endian): `sub_dim` u32, `m` u32, then the centroids
//! as `m × 256 × sub_dim` f32s: sub-space `j`, centroid `k`, component `d`
//! at index `(j · 256 + k) · sub_dim + d`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vecseg_traits::{Distance, Result, StorageError};

#[cfg(target_arch = "x86_64")]
use super::columns::GROUP as GROUP_CODES;
#[cfg(target_arch = "x86_64")]
use super::fast_scan::LaneSums;
use super::{check_sample, put_f32s, Codec, ParamReader};
#[cfg(target_arch = "x86_64")]
use vecseg_mmap::raw::byte_permute::Vbmi;

/// Centroids per sub-quantizer (one code byte indexes them).
pub const CENTROIDS: usize = 256;
/// Cap on [`ProductConfig::sample`].
pub const MAX_SAMPLE: usize = 10_000;
/// Cap on [`ProductConfig::iterations`].
pub const MAX_ITERATIONS: usize = 100;

/// Centroids per group: the distance kernel's width and the unit of the
/// training's lower bounds.
const GROUP: usize = 8;
/// Groups per sub-quantizer.
const GROUPS: usize = CENTROIDS / GROUP;
/// Largest rounded table entry.
const LEVELS: f32 = 255.0;
/// Sub-spaces whose entries still sum within a u16 (`257 · 255 < 2^16`).
const U16_SUBSPACES: usize = 256;
/// Tries at finding a point for an empty cluster before leaving it be.
const RESEED_TRIES: usize = 16;

/// Training settings of [`Product`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductConfig {
    /// Components per sub-vector, each coded as one byte (default 4); must
    /// divide the dimension.
    pub sub_dim: usize,
    /// Most vectors training looks at (default 10,000); values above
    /// 10,000 ([`MAX_SAMPLE`]) count as 10,000, 0 is an error.
    pub sample: usize,
    /// Most Lloyd iterations per sub-space (default 25); values above 100
    /// ([`MAX_ITERATIONS`]) count as 100. Training stops earlier once no
    /// assignment changes.
    pub iterations: usize,
    /// Seed of the k-means++ seeding and of empty-cluster re-seeding
    /// (default 42): the same sample and config train the same codec.
    pub seed: u64,
}

impl Default for ProductConfig {
    fn default() -> Self {
        ProductConfig {
            sub_dim: 4,
            sample: MAX_SAMPLE,
            iterations: 25,
            seed: 42,
        }
    }
}

/// Product quantization: one byte per sub-vector of `sub_dim` components
/// (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Product {
    dim: usize,
    distance: Distance,
    sub_dim: usize,
    /// Sub-quantizers: `dim / sub_dim`.
    m: usize,
    /// `m × 256 × sub_dim`, the parameters' layout.
    centroids: Vec<f32>,
    /// The same in the kernel's layout (see [`to_blocks`]):
    /// `m × 32 × sub_dim × 8`.
    blocks: Vec<f32>,
}

/// A query prepared for [`Product`]: its partial score against every
/// centroid of every sub-space, rounded to integers (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct ProductQuery {
    table: Vec<TableRow>,
    /// `Σ_j min_j`.
    offset: f32,
    delta: f32,
}

impl ProductQuery {
    /// Number of sub-spaces (table rows).
    pub fn sub_spaces(&self) -> usize {
        self.table.len()
    }

    /// The rounded partial score `u` of the query's sub-vector `j`
    /// against centroid `c` of sub-space `j`.
    #[inline]
    pub fn entry(&self, j: usize, c: u8) -> u8 {
        self.table[j].entry(c)
    }

    /// The partial-score step of one table unit; a code's score is within
    /// `m · delta / 2` of the decoded vector's (plus float rounding).
    pub fn delta(&self) -> f32 {
        self.delta
    }

    /// `Σ_j u_j[code_j]` (codes shorter or longer than `m` bytes: the
    /// common part).
    #[inline]
    fn sum(&self, code: &[u8]) -> u32 {
        self.table
            .iter()
            .zip(code)
            .map(|(row, &c)| u32::from(row.entry(c)))
            .sum()
    }
}

/// One sub-space's rounded table: entry `c` at byte `c`. Aligned so each
/// of the kernels' four 64-byte loads touches one cache line (unaligned
/// rows cost about 1.6× the scan time).
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct TableRow([u8; CENTROIDS]);

impl TableRow {
    /// Entry `c`.
    #[inline(always)]
    fn entry(&self, c: u8) -> u8 {
        self.0[usize::from(c)]
    }

    /// Bytes `16 h .. 16 h + 16` in both 128-bit lanes of a register.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn sixteenth(&self, simd: pulp::x86::V3, h: usize) -> core::arch::x86_64::__m256i {
        let bytes: [u8; 16] = self.0[16 * h..16 * h + 16].try_into().expect("16 bytes");
        simd.avx2._mm256_broadcastsi128_si256(pulp::cast(bytes))
    }

    /// Bytes `64 k .. 64 k + 64` as one register.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn quarter(&self, k: usize) -> core::arch::x86_64::__m512i {
        let bytes: [u8; 64] = self.0[64 * k..64 * k + 64].try_into().expect("64 bytes");
        pulp::cast(bytes)
    }
}

impl Product {
    /// The query's partial scores `Σ_d term(q_d, c_d)` against every
    /// centroid of every sub-space (one loop per distance, so the
    /// compiler vectorizes each over 8 centroids).
    #[inline(always)]
    fn partial_scores(
        &self,
        query: &[f32],
        term: impl Fn(f32, f32) -> f32,
    ) -> Vec<[f32; CENTROIDS]> {
        let sd = self.sub_dim;
        let mut table = vec![[0.0; CENTROIDS]; self.m];
        for ((row, q), blocks) in table
            .iter_mut()
            .zip(query.chunks_exact(sd))
            .zip(self.blocks.chunks_exact(CENTROIDS * sd))
        {
            for (out, block) in row
                .as_chunks_mut::<GROUP>()
                .0
                .iter_mut()
                .zip(blocks.chunks_exact(sd * GROUP))
            {
                let mut acc = [0.0f32; GROUP];
                for (&x, c) in q.iter().zip(block.as_chunks::<GROUP>().0) {
                    for (a, &c) in acc.iter_mut().zip(c) {
                        *a += term(x, c);
                    }
                }
                *out = acc;
            }
        }
        table
    }

    /// The score from the partial scores' sum `x`.
    #[inline(always)]
    fn finish(&self, x: f32) -> f32 {
        super::score_of_terms(self.distance, x)
    }

    fn from_parts(dim: usize, distance: Distance, sub_dim: usize, centroids: Vec<f32>) -> Self {
        let m = dim / sub_dim;
        let mut blocks = vec![0.0; centroids.len()];
        for (cent, out) in centroids
            .chunks_exact(CENTROIDS * sub_dim)
            .zip(blocks.chunks_exact_mut(CENTROIDS * sub_dim))
        {
            to_blocks(cent, sub_dim, out);
        }
        Product {
            dim,
            distance,
            sub_dim,
            m,
            centroids,
            blocks,
        }
    }

    /// Components per sub-vector.
    pub fn sub_dim(&self) -> usize {
        self.sub_dim
    }

    /// Number of sub-quantizers (`dim / sub_dim`, the code length).
    pub fn sub_quantizers(&self) -> usize {
        self.m
    }

    /// The centroids, `m × 256 × sub_dim` (the parameters' layout).
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// The decoded vector of `code`: the chosen centroids back to back
    /// (shorter when `code` is shorter than [`code_len`](Codec::code_len)).
    pub fn decode(&self, code: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dim);
        for (&c, cent) in code
            .iter()
            .zip(self.centroids.chunks_exact(CENTROIDS * self.sub_dim))
        {
            let k = usize::from(c) * self.sub_dim;
            out.extend_from_slice(&cent[k..k + self.sub_dim]);
        }
        out
    }
}

/// The query's partial-score table rounded to integers: `min_j` per row,
/// one `delta` for all rows (the widest row's range over [`LEVELS`]).
fn rounded(table: &[[f32; CENTROIDS]]) -> ProductQuery {
    let bounds: Vec<(f32, f32)> = table
        .iter()
        .map(|row| {
            row.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                })
        })
        .collect();
    let widest = bounds.iter().fold(0.0f32, |w, &(lo, hi)| w.max(hi - lo));
    let delta = if widest.is_finite() && widest > 0.0 {
        widest / LEVELS
    } else {
        0.0
    };
    // Units per partial score; 0 when every row is constant (or the
    // scores are not finite): every entry is 0 then.
    let scale = if delta > 0.0 { 1.0 / delta } else { 0.0 };
    let rows = table
        .iter()
        .zip(&bounds)
        .map(|(row, &(lo, _))| {
            let mut entries = [0u8; CENTROIDS];
            for (e, &x) in entries.iter_mut().zip(row) {
                // Rounded half up; `max` first maps NaN to 0, and the
                // clamped value converts without the library's rounding
                // call or saturation branches.
                #[allow(clippy::manual_clamp)] // `clamp` keeps NaN
                let u = ((x - lo) * scale + 0.5).max(0.0).min(LEVELS);
                *e = u as i32 as u8;
            }
            TableRow(entries)
        })
        .collect();
    ProductQuery {
        table: rows,
        offset: bounds.iter().map(|&(lo, _)| lo).sum(),
        delta,
    }
}

/// [`Product::score_columns`]' kernels: none for rows (the default: one
/// code at a time); with AVX2, 32 codes per step; with AVX-512 too, 32
/// codes in fewer instructions, and with AVX-512 VBMI, 64 (two column
/// groups).
#[cfg(target_arch = "x86_64")]
impl super::BatchAvx2 for Product {
    #[inline(always)]
    fn columns_avx2(&self, simd: pulp::x86::V3, q: &ProductQuery, columns: &[u8], out: &mut [f32]) {
        self.columns_shuffle(simd, q, columns, out);
    }

    #[inline(always)]
    fn columns_avx512(
        &self,
        v4: pulp::x86::V4,
        vbmi: Option<Vbmi>,
        q: &ProductQuery,
        columns: &[u8],
        out: &mut [f32],
    ) {
        match vbmi {
            Some(vbmi) => self.columns_vbmi(vbmi, q, columns, out),
            None => self.columns_words(v4, q, columns, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Product {
    /// The VBMI kernel, per pair of column groups (a last odd group is
    /// paired with itself) and sub-space: the two groups' 32-byte columns
    /// as one register of 64 indexes, two `vpermi2b` (entries `c & 127`
    /// of the row's low and high half) and a blend by bit 7 give the 64
    /// entries. Their bytes are added as u16 words (even code + 256 · odd
    /// code, wrapping) and, shifted down, as the odd codes' sums; the even
    /// codes' sums are the difference. u16 sums over up to 256 sub-spaces
    /// at a time, u32 over all.
    #[inline(always)]
    fn columns_vbmi(&self, vbmi: Vbmi, q: &ProductQuery, columns: &[u8], out: &mut [f32]) {
        use core::arch::x86_64::__m512i;
        let v4 = vbmi.v4();
        let (f, bw) = (v4.avx512f, v4.avx512bw);
        // Word lanes of codes 0..32 and 32..64, from the even codes'
        // sums (words 0..32) and the odd codes' (words 32..64).
        let interleave = |first: u16| -> __m512i {
            pulp::cast::<[u16; 32], _>(std::array::from_fn(|i| {
                first + (i as u16 / 2) + 32 * (i as u16 % 2)
            }))
        };
        let (codes_0_32, codes_32_64) = (interleave(0), interleave(16));
        let group_bytes = GROUP_CODES * self.m;
        for (pair, out) in columns
            .chunks(2 * group_bytes)
            .zip(out.chunks_mut(2 * GROUP_CODES))
        {
            let (a, b) = pair.split_at(group_bytes);
            let b = if b.is_empty() { a } else { b };
            let mut sums = [f._mm512_setzero_si512(); 4];
            for (chunk, rows) in q.table.chunks(U16_SUBSPACES).enumerate() {
                let (mut words, mut odd) = (f._mm512_setzero_si512(), f._mm512_setzero_si512());
                let first = chunk * U16_SUBSPACES * GROUP_CODES;
                let columns = a[first..]
                    .chunks_exact(GROUP_CODES)
                    .zip(b[first..].chunks_exact(GROUP_CODES));
                for (row, (a, b)) in rows.iter().zip(columns) {
                    let (a, b): ([u8; 32], [u8; 32]) = (
                        a.try_into().expect("a whole column"),
                        b.try_into().expect("a whole column"),
                    );
                    let idx = f._mm512_inserti64x4::<1>(
                        f._mm512_castsi256_si512(pulp::cast(a)),
                        pulp::cast(b),
                    );
                    let low = vbmi.permute_bytes(row.quarter(0), idx, row.quarter(1));
                    let high = vbmi.permute_bytes(row.quarter(2), idx, row.quarter(3));
                    let entries = bw._mm512_mask_blend_epi8(bw._mm512_movepi8_mask(idx), low, high);
                    words = bw._mm512_add_epi16(words, entries);
                    odd = bw._mm512_add_epi16(odd, bw._mm512_srli_epi16::<8>(entries));
                }
                let even = bw._mm512_sub_epi16(words, bw._mm512_slli_epi16::<8>(odd));
                for (k, order) in [codes_0_32, codes_32_64].into_iter().enumerate() {
                    let codes = bw._mm512_permutex2var_epi16(even, order, odd);
                    let halves = [
                        f._mm512_castsi512_si256(codes),
                        f._mm512_extracti64x4_epi64::<1>(codes),
                    ];
                    for (h, half) in halves.into_iter().enumerate() {
                        let sum = &mut sums[2 * k + h];
                        *sum = f._mm512_add_epi32(*sum, f._mm512_cvtepu16_epi32(half));
                    }
                }
            }
            self.finish_sums(v4, q, &sums, out);
        }
    }

    /// The AVX-512 kernel without VBMI, per column group and sub-space:
    /// the 32 code bytes widened to u16 lanes and halved, the row's 128
    /// words held in four registers, two `vpermi2w` (64 words each, picked
    /// by the low six bits of `c / 2`) and a blend by bit 7 of `c` give
    /// word `c / 2`; bit 0 picks its high or low byte. u16 sums over up to
    /// 256 sub-spaces at a time, u32 over all.
    #[inline(always)]
    fn columns_words(&self, v4: pulp::x86::V4, q: &ProductQuery, columns: &[u8], out: &mut [f32]) {
        use core::arch::x86_64::__m512i;
        let (f, bw) = (v4.avx512f, v4.avx512bw);
        let bit7: __m512i = pulp::cast([0x80u16; 32]);
        let bit0: __m512i = pulp::cast([0x01u16; 32]);
        let low_byte: __m512i = pulp::cast([0xFFu16; 32]);
        let m = self.m;
        for (group, out) in columns
            .chunks_exact(GROUP_CODES * m)
            .zip(out.chunks_exact_mut(GROUP_CODES))
        {
            let mut sums = [f._mm512_setzero_si512(); 2];
            let steps = q.table.chunks(U16_SUBSPACES);
            for (rows, group) in steps.zip(group.chunks(U16_SUBSPACES * GROUP_CODES)) {
                let mut acc = f._mm512_setzero_si512();
                for (row, column) in rows.iter().zip(group.chunks_exact(GROUP_CODES)) {
                    let bytes: [u8; 32] = column.try_into().expect("a whole column");
                    let codes = bw._mm512_cvtepu8_epi16(pulp::cast(bytes));
                    let idx = bw._mm512_srli_epi16::<1>(codes);
                    let r0 = bw._mm512_permutex2var_epi16(row.quarter(0), idx, row.quarter(1));
                    let r1 = bw._mm512_permutex2var_epi16(row.quarter(2), idx, row.quarter(3));
                    let word =
                        bw._mm512_mask_blend_epi16(bw._mm512_test_epi16_mask(codes, bit7), r0, r1);
                    let odd = bw._mm512_test_epi16_mask(codes, bit0);
                    let low = f._mm512_and_si512(word, low_byte);
                    acc = bw._mm512_add_epi16(acc, bw._mm512_mask_srli_epi16::<8>(low, odd, word));
                }
                // Codes 0..16 and 16..32 widened to u32.
                sums[0] = f._mm512_add_epi32(
                    sums[0],
                    f._mm512_cvtepu16_epi32(f._mm512_castsi512_si256(acc)),
                );
                sums[1] = f._mm512_add_epi32(
                    sums[1],
                    f._mm512_cvtepu16_epi32(f._mm512_extracti64x4_epi64::<1>(acc)),
                );
            }
            self.finish_sums(v4, q, &sums, out);
        }
    }

    /// The AVX2 kernel, per column group and sub-space: the row's 256
    /// entries as sixteen 16-byte tables (one per high nibble), each looked
    /// up with `vpshufb` by the low nibbles of the 32 code bytes. Bit 3 of
    /// the high nibble costs no blend (an OR of two look-ups, each zeroed
    /// by bit 7 of its index where it does not apply); a tree of seven
    /// byte blends by bits 0, 1 and 2 keeps each code's entry. Summed
    /// exactly by [`LaneSums`], u16 over up to 256 sub-spaces at a time,
    /// u32 over all.
    #[inline(always)]
    fn columns_shuffle(
        &self,
        simd: pulp::x86::V3,
        q: &ProductQuery,
        columns: &[u8],
        out: &mut [f32],
    ) {
        use core::arch::x86_64::__m256i;
        let avx2 = simd.avx2;
        let low_nibble_bit7 = simd.avx._mm256_set1_epi8(0x8F_u8 as i8);
        let bit7 = simd.avx._mm256_set1_epi8(0x80_u8 as i8);
        for (group, out) in columns
            .chunks_exact(GROUP_CODES * self.m)
            .zip(out.chunks_exact_mut(GROUP_CODES))
        {
            let mut sums = LaneSums::new(simd);
            let steps = q.table.chunks(U16_SUBSPACES);
            for (rows, group) in steps.zip(group.chunks(U16_SUBSPACES * GROUP_CODES)) {
                for (row, column) in rows.iter().zip(group.chunks_exact(GROUP_CODES)) {
                    let bytes: [u8; 32] = column.try_into().expect("a whole column");
                    let codes: __m256i = pulp::cast(bytes);
                    // `vpshufb` gives 0 where an index has bit 7 set:
                    // indexes of the codes whose high nibble is below 8,
                    // and of those whose high nibble is 8 or more.
                    let first_half = avx2._mm256_and_si256(codes, low_nibble_bit7);
                    let second_half = avx2._mm256_xor_si256(first_half, bit7);
                    // Bits 0, 1 and 2 of each high nibble moved to bit 7
                    // of its byte, the one bit a blend reads (16-bit
                    // shifts: a byte's bit 7 comes from its own bits).
                    let bit = [
                        avx2._mm256_slli_epi16::<3>(codes),
                        avx2._mm256_slli_epi16::<2>(codes),
                        avx2._mm256_slli_epi16::<1>(codes),
                    ];
                    // The entry of high nibble `h` or `h + 8`, then blends
                    // by bits 0, 1 and 2, depth first (few values live).
                    let part = |h: usize| {
                        avx2._mm256_or_si256(
                            avx2._mm256_shuffle_epi8(row.sixteenth(simd, h), first_half),
                            avx2._mm256_shuffle_epi8(row.sixteenth(simd, h + 8), second_half),
                        )
                    };
                    let pick =
                        |b: usize, x: __m256i, y: __m256i| avx2._mm256_blendv_epi8(x, y, bit[b]);
                    let two = |g: usize| pick(0, part(2 * g), part(2 * g + 1));
                    let four = |g: usize| pick(1, two(2 * g), two(2 * g + 1));
                    sums.add(pick(2, four(0), four(1)));
                }
                sums.end_chunk();
            }
            for (out, x) in out.chunks_exact_mut(8).zip(sums.in_code_order(0)) {
                for (o, x) in out.iter_mut().zip(x) {
                    *o = self.finish(q.offset + q.delta * x);
                }
            }
        }
    }

    /// `offset + delta · sum`, as [`Codec::score`] computes it, for the
    /// u32 sums of 16 codes per register, into `out` (as many as it holds).
    #[inline(always)]
    fn finish_sums(
        &self,
        v4: pulp::x86::V4,
        q: &ProductQuery,
        sums: &[core::arch::x86_64::__m512i],
        out: &mut [f32],
    ) {
        let f = v4.avx512f;
        let (delta, offset) = (f._mm512_set1_ps(q.delta), f._mm512_set1_ps(q.offset));
        for (out, &sum) in out.chunks_exact_mut(16).zip(sums) {
            let x = f._mm512_add_ps(offset, f._mm512_mul_ps(delta, f._mm512_cvtepi32_ps(sum)));
            let x: [f32; 16] = pulp::cast(x);
            for (o, x) in out.iter_mut().zip(x) {
                *o = self.finish(x);
            }
        }
    }
}

impl Codec for Product {
    const NAME: &'static str = "product";
    type Config = ProductConfig;
    type Query = ProductQuery;

    fn sample_limit(config: &ProductConfig) -> usize {
        config.sample.min(MAX_SAMPLE)
    }

    fn train(
        config: &ProductConfig,
        dim: usize,
        distance: Distance,
        sample: &[f32],
    ) -> Result<Self> {
        let n = check_sample(sample, dim)?;
        let sub_dim = config.sub_dim;
        if sub_dim == 0 || !dim.is_multiple_of(sub_dim) {
            return Err(StorageError::InvalidArgument(format!(
                "product quantization needs sub_dim to divide the dimension: dim {dim}, sub_dim {sub_dim}"
            )));
        }
        if u32::try_from(sub_dim).is_err() || u32::try_from(dim / sub_dim).is_err() {
            return Err(StorageError::InvalidArgument(format!(
                "product quantization: dim {dim} with sub_dim {sub_dim} does not fit the parameters' u32 fields"
            )));
        }
        if config.sample == 0 {
            return Err(StorageError::InvalidArgument(
                "product quantization: the training sample size is 0".into(),
            ));
        }
        let n = n.min(Self::sample_limit(config));
        let iterations = config.iterations.min(MAX_ITERATIONS);
        let m = dim / sub_dim;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut centroids = Vec::with_capacity(m * CENTROIDS * sub_dim);
        let mut points = vec![0.0; n * sub_dim];
        for j in 0..m {
            for (p, v) in points
                .chunks_exact_mut(sub_dim)
                .zip(sample.chunks_exact(dim))
            {
                p.copy_from_slice(&v[j * sub_dim..(j + 1) * sub_dim]);
            }
            centroids.extend(kmeans(&points, sub_dim, iterations, &mut rng));
        }
        Ok(Product::from_parts(dim, distance, sub_dim, centroids))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn code_len(&self) -> usize {
        self.m
    }

    fn encode(&self, v: &[f32], code: &mut [u8]) {
        for ((c, sub), blocks) in code
            .iter_mut()
            .zip(v.chunks_exact(self.sub_dim))
            .zip(self.blocks.chunks_exact(CENTROIDS * self.sub_dim))
        {
            // `nearest` returns an index below 256.
            *c = nearest(sub, blocks) as u8;
        }
    }

    fn prepare(&self, query: &[f32]) -> ProductQuery {
        let table = match self.distance {
            Distance::Cosine | Distance::Dot => self.partial_scores(query, |x, c| x * c),
            Distance::Euclid => self.partial_scores(query, |x, c| (x - c) * (x - c)),
            Distance::Manhattan => self.partial_scores(query, |x, c| (x - c).abs()),
        };
        rounded(&table)
    }

    #[inline]
    fn score(&self, query: &ProductQuery, code: &[u8]) -> f32 {
        self.finish(query.offset + query.delta * query.sum(code) as i32 as f32)
    }

    /// Scans of stored column groups run the AVX-512 kernel.
    const COLUMNS: bool = true;

    fn score_columns(&self, q: &ProductQuery, columns: &[u8], out: &mut [f32]) {
        super::score_columns_with_kernel(self, q, columns, out);
    }

    fn rescore_by_default(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * self.centroids.len());
        // `train` and `from_params` made sure both fit in a u32.
        out.extend_from_slice(&(self.sub_dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.m as u32).to_le_bytes());
        put_f32s(&mut out, &self.centroids);
        out
    }

    fn from_params(
        dim: usize,
        distance: Distance,
        bytes: &[u8],
    ) -> std::result::Result<Self, String> {
        let mut r = ParamReader::new(bytes);
        let sub_dim = r.u32()? as usize;
        let m = r.u32()? as usize;
        if dim == 0 {
            return Err("product parameters for dimension 0".into());
        }
        if sub_dim == 0 {
            return Err("product parameters: sub_dim is 0".into());
        }
        if m.checked_mul(sub_dim) != Some(dim) {
            return Err(format!(
                "product parameters: {m} sub-quantizers of {sub_dim} components do not make dimension {dim}"
            ));
        }
        let count = dim
            .checked_mul(CENTROIDS)
            .ok_or_else(|| format!("product parameters: dimension {dim} too large"))?;
        let expected = count
            .checked_mul(4)
            .and_then(|b| b.checked_add(8))
            .ok_or_else(|| format!("product parameters: dimension {dim} too large"))?;
        if bytes.len() != expected {
            return Err(format!(
                "product parameters are {} bytes, {expected} expected for dim {dim}, sub_dim {sub_dim}",
                bytes.len()
            ));
        }
        let centroids = r.f32s(count)?;
        r.finish()?;
        if let Some(i) = centroids.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "product parameters: centroid value {i} is not finite ({})",
                centroids[i]
            ));
        }
        Ok(Product::from_parts(dim, distance, sub_dim, centroids))
    }
}

/// One sub-space's centroids, `256 × sub_dim`, into the kernel's layout
/// `32 × sub_dim × 8`: group `g` holds centroids `8g..8g + 8`, component
/// by component, so a group's 8 distances are computed with packed
/// operations.
fn to_blocks(cent: &[f32], sub_dim: usize, out: &mut [f32]) {
    for (k, c) in cent.chunks_exact(sub_dim).enumerate() {
        let (g, l) = (k / GROUP, k % GROUP);
        for (d, &x) in c.iter().enumerate() {
            out[(g * sub_dim + d) * GROUP + l] = x;
        }
    }
}

/// Squared L2 distances of the sub-vector `x` to the 8 centroids of one
/// group (`block`: `sub_dim × 8`).
#[inline(always)]
fn group_dists(x: &[f32], block: &[f32]) -> [f32; GROUP] {
    let mut acc = [0.0f32; GROUP];
    for (&xd, c) in x.iter().zip(block.as_chunks::<GROUP>().0) {
        for (a, &c) in acc.iter_mut().zip(c) {
            let t = xd - c;
            *a += t * t;
        }
    }
    acc
}

/// The smaller of two values (`a` unless `b < a`), one packed `min`.
#[inline(always)]
fn fmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// The smallest of 8 values.
#[inline(always)]
fn min8(d: &[f32; GROUP]) -> f32 {
    let m4 = [
        fmin(d[0], d[4]),
        fmin(d[1], d[5]),
        fmin(d[2], d[6]),
        fmin(d[3], d[7]),
    ];
    fmin(fmin(m4[0], m4[2]), fmin(m4[1], m4[3]))
}

/// Index of the first occurrence of `v` in `d` (0 if none).
#[inline(always)]
fn lane_of(d: &[f32; GROUP], v: f32) -> usize {
    d.iter().position(|&x| x == v).unwrap_or(0)
}

/// Squared L2 distance of two equally long sub-vectors.
#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += (x - y) * (x - y);
    }
    s
}

/// Index of the centroid nearest to `x` (the lowest on ties; 0 when every
/// distance is NaN) among one sub-space's `blocks`.
#[inline]
fn nearest(x: &[f32], blocks: &[f32]) -> usize {
    let mut best = f32::INFINITY;
    let mut best_g = 0;
    let mut best_d = [0.0; GROUP];
    for (g, block) in blocks.chunks_exact(x.len() * GROUP).enumerate() {
        let d = group_dists(x, block);
        let m = min8(&d);
        if m < best {
            best = m;
            best_g = g;
            best_d = d;
        }
    }
    best_g * GROUP + lane_of(&best_d, best)
}

/// k-means with 256 centroids on `points` (`n × sub_dim`, n ≥ 1): k-means++
/// seeding, then at most `iterations` Lloyd iterations with group bounds
/// (see the [module docs](self)). Returns the centroids, `256 × sub_dim`.
fn kmeans(points: &[f32], sub_dim: usize, iterations: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = points.len() / sub_dim;
    let point = |i: usize| &points[i * sub_dim..(i + 1) * sub_dim];
    let (mut cent, mut state) = kmeans_pp(points, sub_dim, rng);
    let mut counts = vec![0usize; CENTROIDS];
    let mut sums = vec![0.0f64; CENTROIDS * sub_dim];
    let mut drift = [0.0f32; CENTROIDS];
    for _ in 0..iterations {
        counts.fill(0);
        for &a in &state.assign {
            counts[a as usize] += 1;
        }
        // An empty cluster takes a random point that is not on its
        // centroid, from a cluster that keeps others.
        for j in 0..CENTROIDS {
            if counts[j] > 0 {
                continue;
            }
            for _ in 0..RESEED_TRIES {
                let i = rng.gen_range(0..n);
                let a = state.assign[i] as usize;
                if counts[a] > 1 && sq_dist(point(i), &cent[a * sub_dim..(a + 1) * sub_dim]) > 0.0 {
                    counts[a] -= 1;
                    counts[j] = 1;
                    state.assign[i] = j as u32;
                    // Bounds unknown now: searched again in full.
                    state.upper[i] = f32::INFINITY;
                    state.lower[i * GROUPS..(i + 1) * GROUPS].fill(f32::NEG_INFINITY);
                    break;
                }
            }
        }

        // Move every centroid to its cluster's mean.
        sums.fill(0.0);
        for (p, &a) in points.chunks_exact(sub_dim).zip(&state.assign) {
            let a = a as usize;
            for (s, &x) in sums[a * sub_dim..(a + 1) * sub_dim].iter_mut().zip(p) {
                *s += f64::from(x);
            }
        }
        for (j, moved) in drift.iter_mut().enumerate() {
            *moved = 0.0;
            if counts[j] == 0 {
                continue;
            }
            let inv = 1.0 / counts[j] as f64;
            let c = &mut cent[j * sub_dim..(j + 1) * sub_dim];
            for (c, &s) in c.iter_mut().zip(&sums[j * sub_dim..(j + 1) * sub_dim]) {
                let new = (s * inv) as f32;
                *moved += (new - *c) * (new - *c);
                *c = new;
            }
            *moved = moved.sqrt();
        }
        to_blocks(&cent, sub_dim, &mut state.blocks);
        state.loosen(&drift);
        if state.assign_step(points) == 0 {
            break;
        }
    }
    cent
}

/// Assignments of the training points with their bounds.
struct Bounds {
    sub_dim: usize,
    /// The current centroids, in the kernel's layout.
    blocks: Vec<f32>,
    /// Each point's centroid.
    assign: Vec<u32>,
    /// Per point, at least its distance to its centroid.
    upper: Vec<f32>,
    /// Per point and group, at most its distance to any centroid of the
    /// group other than its own (`n × 32`).
    lower: Vec<f32>,
    /// Per point, the smallest of its `lower` (set by [`Bounds::loosen`]).
    lower_min: Vec<f32>,
}

impl Bounds {
    /// Loosen the bounds after centroid `j` moved by `drift[j]`.
    fn loosen(&mut self, drift: &[f32; CENTROIDS]) {
        let mut group_drift = [0.0f32; GROUPS];
        for (g, d) in drift.as_chunks::<GROUP>().0.iter().enumerate() {
            group_drift[g] = d.iter().fold(0.0, |a, &b| a.max(b));
        }
        for (u, &a) in self.upper.iter_mut().zip(&self.assign) {
            *u += drift[a as usize];
        }
        let group_drift = group_drift.as_chunks::<GROUP>().0;
        for (lower, lower_min) in self
            .lower
            .as_chunks_mut::<GROUPS>()
            .0
            .iter_mut()
            .zip(self.lower_min.iter_mut())
        {
            let mut m = [f32::INFINITY; GROUP];
            for (l, d) in lower.as_chunks_mut::<GROUP>().0.iter_mut().zip(group_drift) {
                for t in 0..GROUP {
                    l[t] -= d[t];
                    m[t] = fmin(m[t], l[t]);
                }
            }
            *lower_min = min8(&m);
        }
    }

    /// Move every point to its nearest centroid, searching only the groups
    /// its bounds do not rule out; the number of points that moved.
    fn assign_step(&mut self, points: &[f32]) -> usize {
        let sd = self.sub_dim;
        let mut changed = 0;
        let mut dists = [[0.0f32; GROUP]; GROUPS];
        let mut mins = [0.0f32; GROUPS];
        for (((x, lower), &global), (assigned, upper)) in points
            .chunks_exact(sd)
            .zip(self.lower.as_chunks_mut::<GROUPS>().0)
            .zip(&self.lower_min)
            .zip(self.assign.iter_mut().zip(self.upper.iter_mut()))
        {
            if *upper <= global {
                continue;
            }
            let a = *assigned as usize;
            let (ga, la) = (a / GROUP, a % GROUP);
            let da_sq = group_dists(x, &self.blocks[ga * sd * GROUP..(ga + 1) * sd * GROUP])[la];
            let da = da_sq.sqrt();
            *upper = da;
            if da <= global {
                continue;
            }
            // Search the groups whose bound is below the best distance.
            let mut candidates = 0u32;
            for (g, &l) in lower.iter().enumerate() {
                candidates |= u32::from(l < da) << g;
            }
            let (mut best, mut best_sq, mut best_k) = (da, da_sq, a);
            let mut searched = 0u32;
            while candidates != 0 {
                let g = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if lower[g] >= best {
                    continue;
                }
                let d = group_dists(x, &self.blocks[g * sd * GROUP..(g + 1) * sd * GROUP]);
                let m = min8(&d);
                dists[g] = d;
                mins[g] = m;
                searched |= 1 << g;
                if m < best_sq {
                    best_sq = m;
                    best = m.sqrt();
                    best_k = g * GROUP + lane_of(&d, m);
                }
            }
            let (gb, lb) = (best_k / GROUP, best_k % GROUP);
            let mut left = searched;
            while left != 0 {
                let g = left.trailing_zeros() as usize;
                left &= left - 1;
                lower[g] = if g == gb {
                    let mut others = dists[g];
                    others[lb] = f32::INFINITY;
                    min8(&others).sqrt()
                } else {
                    mins[g].sqrt()
                };
            }
            if best_k != a {
                changed += 1;
                *assigned = best_k as u32;
                // The old centroid now counts among its group's others.
                if searched & (1 << ga) == 0 {
                    lower[ga] = fmin(lower[ga], da);
                }
            }
            *upper = best;
        }
        changed
    }
}

/// k-means++ seeding of 256 centroids from `points` (`n × sub_dim`, n ≥ 1):
/// each next centroid is a point drawn with probability proportional to its
/// squared distance to the nearest centroid so far; once every point lies on
/// a centroid, a uniformly drawn point (a duplicate). Returns the centroids
/// (`256 × sub_dim`) and the points' nearest centroids with exact bounds,
/// found on the way.
fn kmeans_pp(points: &[f32], sub_dim: usize, rng: &mut StdRng) -> (Vec<f32>, Bounds) {
    let n = points.len() / sub_dim;
    // Components transposed, `sub_dim × n`, for packed distance updates.
    let mut cols = vec![0.0f32; n * sub_dim];
    for (i, p) in points.chunks_exact(sub_dim).enumerate() {
        for (d, &x) in p.iter().enumerate() {
            cols[d * n + i] = x;
        }
    }
    let mut cent = Vec::with_capacity(CENTROIDS * sub_dim);
    // Squared distance to the nearest centroid so far.
    let mut nearest = vec![f32::INFINITY; n];
    // Squared distance to each group's nearest centroid, `32 × n`.
    let mut group_min = vec![f32::INFINITY; GROUPS * n];
    let mut dist = vec![0.0f32; n];
    let mut pick = rng.gen_range(0..n);
    for k in 0..CENTROIDS {
        let c = &points[pick * sub_dim..(pick + 1) * sub_dim];
        cent.extend_from_slice(c);
        dist.fill(0.0);
        for (&c, col) in c.iter().zip(cols.chunks_exact(n)) {
            for (o, &x) in dist.iter_mut().zip(col) {
                let t = x - c;
                *o += t * t;
            }
        }
        let g = k / GROUP;
        for ((m, gm), &d) in nearest
            .iter_mut()
            .zip(&mut group_min[g * n..(g + 1) * n])
            .zip(&dist)
        {
            *m = fmin(*m, d);
            *gm = fmin(*gm, d);
        }
        if k + 1 < CENTROIDS {
            pick = weighted_pick(&nearest, rng).unwrap_or_else(|| rng.gen_range(0..n));
        }
    }
    let mut lower = vec![0.0f32; n * GROUPS];
    for (g, gm) in group_min.chunks_exact(n).enumerate() {
        for (l, &d) in lower[g..].iter_mut().step_by(GROUPS).zip(gm) {
            *l = d;
        }
    }
    let mut blocks = vec![0.0; CENTROIDS * sub_dim];
    to_blocks(&cent, sub_dim, &mut blocks);
    // Each point's centroid: the first of the nearest group's nearest.
    let mut assign = vec![0u32; n];
    let mut upper = vec![0.0f32; n];
    for (((l, x), a), u) in lower
        .as_chunks_mut::<GROUPS>()
        .0
        .iter_mut()
        .zip(points.chunks_exact(sub_dim))
        .zip(assign.iter_mut())
        .zip(upper.iter_mut())
    {
        let (mut g, mut best) = (0, l[0]);
        for (h, &d) in l.iter().enumerate().skip(1) {
            if d < best {
                (g, best) = (h, d);
            }
        }
        let d = group_dists(x, &blocks[g * sub_dim * GROUP..(g + 1) * sub_dim * GROUP]);
        *a = (g * GROUP + lane_of(&d, best)) as u32;
        *u = best.sqrt();
        l.iter_mut().for_each(|d| *d = d.sqrt());
        // The own group's bound must leave out the own centroid: 0 will do.
        l[g] = 0.0;
    }
    let bounds = Bounds {
        sub_dim,
        blocks,
        assign,
        upper,
        lower,
        lower_min: vec![0.0; n],
    };
    (cent, bounds)
}

/// An index drawn with probability proportional to `weights[i]` (all ≥ 0);
/// `None` when they sum to 0.
fn weighted_pick(weights: &[f32], rng: &mut StdRng) -> Option<usize> {
    /// Weights summed at a time: the scan adds chunk sums, not each weight.
    const CHUNK: usize = 16;
    let chunk_sum = |w: &[f32]| w.iter().map(|&w| f64::from(w)).sum::<f64>();
    let total: f64 = weights.chunks(CHUNK).map(chunk_sum).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let target = rng.gen::<f64>() * total;
    let mut acc = 0.0f64;
    for (c, w) in weights.chunks(CHUNK).enumerate() {
        let s = chunk_sum(w);
        if acc + s <= target {
            acc += s;
            continue;
        }
        for (i, &w) in w.iter().enumerate() {
            if w > 0.0 {
                acc += f64::from(w);
                if acc > target {
                    return Some(c * CHUNK + i);
                }
            }
        }
    }
    // Rounding left the sum at or below `target`: the last positive weight.
    weights.iter().rposition(|&w| w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_vectors(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    fn gaussian(rng: &mut StdRng) -> f32 {
        // Box-Muller.
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// `n` points around `clusters` random centres (σ = 0.15 per
    /// component), plus `queries` more from the same mixture.
    fn clustered(
        seed: u64,
        n: usize,
        queries: usize,
        dim: usize,
        clusters: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = random_vectors(&mut rng, clusters, dim);
        let mut draw = |count: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(count * dim);
            for _ in 0..count {
                let c = rng.gen_range(0..clusters);
                for d in 0..dim {
                    let x = centres[c * dim + d] + 0.15 * gaussian(&mut rng);
                    out.push(x);
                }
            }
            out
        };
        let data = draw(n);
        let qs = draw(queries);
        (data, qs)
    }

    fn normalize_all(v: &mut [f32], dim: usize) {
        for x in v.chunks_exact_mut(dim) {
            assert!(vecseg_traits::distance::normalize(x));
        }
    }

    fn config(sub_dim: usize) -> ProductConfig {
        ProductConfig {
            sub_dim,
            ..ProductConfig::default()
        }
    }

    fn encode_all(pq: &Product, data: &[f32]) -> Vec<u8> {
        let mut codes = vec![0u8; data.len() / pq.dim() * pq.code_len()];
        for (v, c) in data
            .chunks_exact(pq.dim())
            .zip(codes.chunks_exact_mut(pq.code_len()))
        {
            pq.encode(v, c);
        }
        codes
    }

    /// Indices of the `k` highest scores (ties by index).
    fn top(scores: &[(usize, f32)], k: usize) -> Vec<usize> {
        let mut s = scores.to_vec();
        s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.into_iter().take(k).map(|(i, _)| i).collect()
    }

    /// The column kernels' u16 sums are exact at their limits: 300
    /// sub-spaces (two u16 sums) whose entries are mostly 255, with codes
    /// that pick every entry of both table halves, over three column
    /// groups (a pair and an odd one).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn column_kernels_are_exact_with_full_tables() {
        use crate::codec::columns::{rows_to_columns, GROUP};
        use crate::codec::{run_on, test_levels};
        let mut rng = StdRng::seed_from_u64(3);
        let (dim, n) = (300, 3 * GROUP);
        let data = random_vectors(&mut rng, 300, dim);
        let config = ProductConfig {
            sub_dim: 1,
            iterations: 1,
            ..config(1)
        };
        let pq = Product::train(&config, dim, Distance::Dot, &data).unwrap();
        let mut q = pq.prepare(&data[..dim]);
        for (j, row) in q.table.iter_mut().enumerate() {
            for (c, e) in row.0.iter_mut().enumerate() {
                *e = if (j + c) % 7 == 0 { rng.gen() } else { 255 };
            }
        }
        let codes: Vec<u8> = (0..n * dim).map(|i| (i * 131 + i / dim) as u8).collect();
        let mut columns = vec![0u8; codes.len()];
        for (rows, group) in codes
            .chunks_exact(GROUP * dim)
            .zip(columns.chunks_exact_mut(GROUP * dim))
        {
            rows_to_columns(rows, dim, group);
        }
        let want: Vec<u32> = codes
            .chunks_exact(dim)
            .map(|c| pq.score(&q, c).to_bits())
            .collect();
        assert!(want
            .iter()
            .any(|&s| f32::from_bits(s) > q.offset + q.delta * 65_535.0));
        for (build, level) in test_levels() {
            let mut out = vec![f32::NAN; n];
            if run_on(level, &pq, &q, &columns, true, &mut out) {
                let got: Vec<u32> = out.iter().map(|s| s.to_bits()).collect();
                assert_eq!(got, want, "{build}");
            }
        }
    }

    #[test]
    fn code_scores_equal_decoded_vector_scores() {
        let (dim, n) = (32, 2_000);
        for distance in Distance::ALL {
            let mut rng = StdRng::seed_from_u64(7);
            let mut data = random_vectors(&mut rng, n, dim);
            let mut queries = random_vectors(&mut rng, 20, dim);
            if distance == Distance::Cosine {
                normalize_all(&mut data, dim);
                normalize_all(&mut queries, dim);
            }
            let pq = Product::train(&config(4), dim, distance, &data).unwrap();
            assert_eq!(pq.code_len(), 8);
            assert!(pq.centroids().iter().all(|x| x.is_finite()));
            let codes = encode_all(&pq, &data);
            for q in queries.chunks_exact(dim) {
                let prepared = pq.prepare(q);
                // The rounded table moves the partial-score sum by at most
                // half a step per sub-space.
                let bound = pq.code_len() as f32 * prepared.delta() / 2.0;
                assert!(prepared.delta() > 0.0);
                for code in codes.chunks_exact(pq.code_len()).take(200) {
                    let decoded = pq.decode(code);
                    assert_eq!(decoded.len(), dim);
                    let got = pq.score(&prepared, code);
                    // The partial-score sums behind the two scores.
                    let (want_sum, got_sum) = match distance {
                        Distance::Cosine | Distance::Dot => {
                            (vecseg_traits::distance::dot_f32(q, &decoded), got)
                        }
                        Distance::Euclid => {
                            (vecseg_traits::distance::l2_sq_f32(q, &decoded), got * got)
                        }
                        Distance::Manhattan => (-distance.score_f32(q, &decoded), -got),
                    };
                    assert!(
                        (got_sum - want_sum).abs() <= bound + 1e-4 * (1.0 + want_sum.abs()),
                        "{distance:?}: code sum {got_sum}, decoded sum {want_sum}, bound {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn reconstruction_error_is_far_below_random_codes() {
        let (dim, n) = (32, 2_000);
        let mut rng = StdRng::seed_from_u64(11);
        let data = random_vectors(&mut rng, n, dim);
        let pq = Product::train(&config(4), dim, Distance::Euclid, &data).unwrap();
        let codes = encode_all(&pq, &data);
        let rel = |v: &[f32], code: &[u8]| {
            let d = pq.decode(code);
            vecseg_traits::distance::l2_sq_f32(v, &d) / vecseg_traits::distance::dot_f32(v, v)
        };
        let mut trained = 0.0f64;
        let mut random = 0.0f64;
        let mut random_code = vec![0u8; pq.code_len()];
        for (v, code) in data
            .chunks_exact(dim)
            .zip(codes.chunks_exact(pq.code_len()))
        {
            trained += f64::from(rel(v, code));
            random_code.iter_mut().for_each(|c| *c = rng.gen());
            random += f64::from(rel(v, &random_code));
        }
        trained /= n as f64;
        random /= n as f64;
        // 256 centroids over ~8 points each in a 4-d cube: a small error;
        // a random centroid is about as far as another random point (≈ 2).
        assert!(trained < 0.1, "mean relative error {trained}");
        assert!(random > 1.0, "random codes' mean relative error {random}");
        assert!(
            trained < 0.05 * random,
            "trained {trained} vs random {random}"
        );
    }

    #[test]
    fn rescoring_everything_gives_the_exact_top_10() {
        let (dim, n) = (32, 2_000);
        let (data, queries) = clustered(3, n, 10, dim, 20);
        let pq = Product::train(&config(4), dim, Distance::Euclid, &data).unwrap();
        let codes = encode_all(&pq, &data);
        for q in queries.chunks_exact(dim) {
            let prepared = pq.prepare(q);
            let approx: Vec<(usize, f32)> = codes
                .chunks_exact(pq.code_len())
                .enumerate()
                .map(|(i, c)| (i, pq.score(&prepared, c)))
                .collect();
            let candidates = top(&approx, n);
            let rescored: Vec<(usize, f32)> = candidates
                .iter()
                .map(|&i| {
                    (
                        i,
                        Distance::Euclid.score_f32(q, &data[i * dim..(i + 1) * dim]),
                    )
                })
                .collect();
            let exact: Vec<(usize, f32)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| (i, Distance::Euclid.score_f32(q, v)))
                .collect();
            assert_eq!(top(&rescored, 10), top(&exact, 10));
        }
    }

    #[test]
    fn oversampled_rescoring_recalls_90_percent_at_10() {
        let (dim, n, k, oversample) = (32, 2_000, 10, 10);
        for distance in Distance::ALL {
            let (mut data, mut queries) = clustered(5, n, 50, dim, 20);
            if distance == Distance::Cosine {
                normalize_all(&mut data, dim);
                normalize_all(&mut queries, dim);
            }
            let pq = Product::train(&config(4), dim, distance, &data).unwrap();
            let codes = encode_all(&pq, &data);
            let (mut found, mut wanted) = (0usize, 0usize);
            for q in queries.chunks_exact(dim) {
                let prepared = pq.prepare(q);
                let approx: Vec<(usize, f32)> = codes
                    .chunks_exact(pq.code_len())
                    .enumerate()
                    .map(|(i, c)| (i, pq.score(&prepared, c)))
                    .collect();
                let rescored: Vec<(usize, f32)> = top(&approx, k * oversample)
                    .into_iter()
                    .map(|i| (i, distance.score_f32(q, &data[i * dim..(i + 1) * dim])))
                    .collect();
                let exact: Vec<(usize, f32)> = data
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, v)| (i, distance.score_f32(q, v)))
                    .collect();
                let truth = top(&exact, k);
                found += top(&rescored, k)
                    .iter()
                    .filter(|i| truth.contains(i))
                    .count();
                wanted += k;
            }
            let recall = found as f64 / wanted as f64;
            assert!(recall >= 0.9, "{distance:?}: recall@10 {recall}");
        }
    }

    /// The bounds only skip work: a converged training is a Lloyd fixed
    /// point, every centroid the mean of the points nearest to it.
    #[test]
    fn converged_training_is_a_lloyd_fixed_point() {
        let (dim, n) = (8, 3_000);
        let (data, _) = clustered(21, n, 0, dim, 12);
        let cfg = ProductConfig {
            iterations: MAX_ITERATIONS,
            ..config(4)
        };
        let pq = Product::train(&cfg, dim, Distance::Euclid, &data).unwrap();
        let codes = encode_all(&pq, &data);
        for j in 0..pq.sub_quantizers() {
            let mut sums = vec![0.0f64; CENTROIDS * 4];
            let mut counts = vec![0usize; CENTROIDS];
            for (v, code) in data
                .chunks_exact(dim)
                .zip(codes.chunks_exact(pq.code_len()))
            {
                let k = usize::from(code[j]);
                counts[k] += 1;
                for d in 0..4 {
                    sums[k * 4 + d] += f64::from(v[j * 4 + d]);
                }
            }
            assert!(
                counts.iter().filter(|&&c| c > 0).count() > 200,
                "{counts:?}"
            );
            for k in (0..CENTROIDS).filter(|&k| counts[k] > 0) {
                for d in 0..4 {
                    let mean = (sums[k * 4 + d] / counts[k] as f64) as f32;
                    let c = pq.centroids()[(j * CENTROIDS + k) * 4 + d];
                    assert!(
                        (mean - c).abs() <= 1e-5,
                        "sub-space {j}, centroid {k}: {c} vs mean {mean}"
                    );
                }
            }
        }
    }

    #[test]
    fn huge_and_zero_iterations_do_not_break_training() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(17);
        let huge: Vec<f32> = random_vectors(&mut rng, 500, dim)
            .iter()
            .map(|x| x * 1e30)
            .collect();
        let pq = Product::train(&config(4), dim, Distance::Euclid, &huge).unwrap();
        assert!(pq.centroids().iter().all(|x| x.is_finite()));
        let mut code = vec![0u8; 2];
        pq.encode(&huge[..dim], &mut code);
        let none = ProductConfig {
            iterations: 0,
            ..config(4)
        };
        let data = random_vectors(&mut rng, 500, dim);
        let pq = Product::train(&none, dim, Distance::Dot, &data).unwrap();
        // Without Lloyd iterations the centroids are k-means++ picks: sample points.
        for c in pq.centroids()[..CENTROIDS * 4].chunks_exact(4) {
            assert!(data.chunks_exact(dim).any(|v| v[..4] == *c));
        }
        pq.encode(&[f32::NAN; 8], &mut code);
    }

    #[test]
    fn bad_training_input_is_an_error() {
        let mut rng = StdRng::seed_from_u64(1);
        let data = random_vectors(&mut rng, 100, 10);
        let err = Product::train(&config(4), 10, Distance::Dot, &data).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err:?}");
        assert!(msg.contains("10") && msg.contains("sub_dim 4"), "{msg}");
        assert!(matches!(
            Product::train(&config(0), 10, Distance::Dot, &data),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            Product::train(&config(20), 10, Distance::Dot, &data),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            Product::train(&config(5), 10, Distance::Dot, &[]),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            Product::train(&config(5), 10, Distance::Dot, &data[..15]),
            Err(StorageError::InvalidArgument(_))
        ));
        assert!(matches!(
            Product::train(&config(5), 0, Distance::Dot, &data),
            Err(StorageError::InvalidArgument(_))
        ));
        let zero_sample = ProductConfig {
            sample: 0,
            ..config(5)
        };
        assert!(matches!(
            Product::train(&zero_sample, 10, Distance::Dot, &data),
            Err(StorageError::InvalidArgument(_))
        ));
        let mut nan = data.clone();
        nan[37] = f32::NAN;
        assert!(matches!(
            Product::train(&config(5), 10, Distance::Dot, &nan),
            Err(StorageError::NonFiniteComponent { index: 7 })
        ));
        nan[37] = f32::INFINITY;
        assert!(Product::train(&config(5), 10, Distance::Dot, &nan).is_err());
    }

    #[test]
    fn fewer_distinct_vectors_than_centroids_train_finite_and_exact() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(2);
        let distinct = random_vectors(&mut rng, 5, dim);
        // 5 distinct vectors, each repeated: 100 vectors.
        let data: Vec<f32> = (0..100)
            .flat_map(|i| distinct[(i % 5) * dim..(i % 5 + 1) * dim].to_vec())
            .collect();
        for sample in [&data[..dim], &data[..]] {
            let pq = Product::train(&config(2), dim, Distance::Euclid, sample).unwrap();
            assert!(pq.centroids().iter().all(|x| x.is_finite()));
            let mut code = vec![0u8; pq.code_len()];
            for v in sample.chunks_exact(dim) {
                pq.encode(v, &mut code);
                assert_eq!(pq.decode(&code), v, "a training vector decodes exactly");
                let s = pq.score(&pq.prepare(v), &code);
                assert_eq!(s, 0.0);
            }
        }
        // All identical.
        let same = vec![0.5f32; 40 * dim];
        let pq = Product::train(&config(4), dim, Distance::Dot, &same).unwrap();
        assert!(pq.centroids().iter().all(|&x| x == 0.5));
    }

    #[test]
    fn training_is_deterministic_and_caps_apply() {
        let mut rng = StdRng::seed_from_u64(4);
        let data = random_vectors(&mut rng, 600, 16);
        let a = Product::train(&config(4), 16, Distance::Dot, &data).unwrap();
        let b = Product::train(&config(4), 16, Distance::Dot, &data).unwrap();
        assert_eq!(a.params(), b.params());
        let huge = ProductConfig {
            sample: usize::MAX,
            iterations: usize::MAX,
            ..config(4)
        };
        assert_eq!(Product::sample_limit(&huge), MAX_SAMPLE);
        assert_eq!(Product::sample_limit(&ProductConfig::default()), 10_000);
        Product::train(&huge, 16, Distance::Dot, &data).unwrap();
        // Only the first `sample` vectors train.
        let few = ProductConfig {
            sample: 300,
            ..config(4)
        };
        let first = Product::train(&few, 16, Distance::Dot, &data[..300 * 16]).unwrap();
        let capped = Product::train(&few, 16, Distance::Dot, &data).unwrap();
        assert_eq!(first.params(), capped.params());
    }

    #[test]
    fn params_round_trip_bit_identical() {
        let dim = 24;
        let mut rng = StdRng::seed_from_u64(9);
        let data = random_vectors(&mut rng, 500, dim);
        for distance in Distance::ALL {
            let pq = Product::train(&config(3), dim, distance, &data).unwrap();
            let bytes = pq.params();
            assert_eq!(bytes.len(), 8 + 4 * 8 * 256 * 3);
            assert_eq!(&bytes[..8], &[3, 0, 0, 0, 8, 0, 0, 0]);
            let back = Product::from_params(dim, distance, &bytes).unwrap();
            assert_eq!(back.params(), bytes);
            let bits = |p: &Product| {
                p.centroids()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&back), bits(&pq));
            assert_eq!((back.sub_dim(), back.sub_quantizers()), (3, 8));
            let codes = encode_all(&pq, &data);
            assert_eq!(encode_all(&back, &data), codes);
            let q = &data[..dim];
            let (pa, pb) = (pq.prepare(q), back.prepare(q));
            for code in codes.chunks_exact(pq.code_len()) {
                assert_eq!(
                    pq.score(&pa, code).to_bits(),
                    back.score(&pb, code).to_bits()
                );
            }
        }
    }

    #[test]
    fn from_params_rejects_bad_bytes() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(10);
        let data = random_vectors(&mut rng, 300, dim);
        let pq = Product::train(&config(4), dim, Distance::Dot, &data).unwrap();
        let bytes = pq.params();
        let from = |dim: usize, b: &[u8]| Product::from_params(dim, Distance::Dot, b);
        assert!(from(dim, &bytes).is_ok());
        for cut in [0, 3, 4, 7, 8, 9, bytes.len() - 1] {
            assert!(from(dim, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(from(dim, &longer).is_err());
        for wrong in [0, 4, 12, 16] {
            let err = from(wrong, &bytes).unwrap_err();
            assert!(err.contains(&wrong.to_string()), "{err}");
        }
        let mut zero_sub = bytes.clone();
        zero_sub[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(from(dim, &zero_sub).is_err());
        let mut huge_m = bytes.clone();
        huge_m[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(from(dim, &huge_m).is_err());
        let mut nan = bytes.clone();
        nan[8 + 4 * 100..8 + 4 * 101].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(from(dim, &nan).unwrap_err().contains("not finite"));
    }

    #[test]
    fn wrong_lengths_do_not_panic() {
        let dim = 8;
        let mut rng = StdRng::seed_from_u64(12);
        let data = random_vectors(&mut rng, 300, dim);
        let pq = Product::train(&config(4), dim, Distance::Euclid, &data).unwrap();
        let mut code = vec![0u8; 1];
        pq.encode(&data[..dim], &mut code);
        pq.encode(&data[..3], &mut [0u8; 2]);
        let q = pq.prepare(&data[..5]);
        assert_eq!(q.sub_spaces(), 2);
        assert!(pq.score(&q, &[]).is_finite());
        assert!(pq.score(&q, &[1, 2, 3, 4, 5]).is_finite());
        assert_eq!(pq.decode(&[1]).len(), 4);
    }

    /// `cargo test --release -- --ignored` : the spec's size, 10,000 × 384.
    #[test]
    #[ignore = "timing, run in release"]
    fn train_10k_by_384_in_a_few_seconds() {
        let dim = 384;
        let (data, _) = clustered(13, 10_000, 0, dim, 50);
        let start = std::time::Instant::now();
        let pq = Product::train(&ProductConfig::default(), dim, Distance::Cosine, &data).unwrap();
        let trained = start.elapsed();
        let start = std::time::Instant::now();
        let codes = encode_all(&pq, &data);
        let encoded = start.elapsed();
        eprintln!(
            "train {trained:?}, encode 10k {encoded:?}, {} bytes",
            codes.len()
        );
        assert!(trained.as_secs_f64() < 10.0, "training took {trained:?}");
    }
}
