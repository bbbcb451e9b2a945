//! Where a 32-code scan kernel reads its codes from, and the kernel over
//! codes whose bytes index two nibble tables as they are.
//!
//! A block of [`BLOCK`] codes is stored either as rows ([`Rows`]: the
//! appendable tail of a storage, batches of single codes), transposed in
//! registers 16 byte positions at a time, or as a column group
//! ([`Columns`], [`super::columns`]), loaded as it is; [`BlockSource`]
//! gives the kernels either as the same byte columns. [`plain_sums`]
//! sums [`NibbleTables<2>`] over such a block (1-bit signs, 2-bit codes).
#![cfg(target_arch = "x86_64")]

use super::f32_at;
use super::fast_scan::{
    block_sums_avx2, bytes_at, nibbles, transpose_rows, words_of_columns, BlockSums, NibbleTables,
    BLOCK, CHUNK,
};

/// `step · Σ k` for eight codes, the operation of `QueryPlanes::weight`.
#[inline(always)]
pub fn block_weight(simd: pulp::x86::V3, step: pulp::f32x8, weighted: [f32; 8]) -> pulp::f32x8 {
    use pulp::Simd;
    simd.mul_f32s(step, pulp::cast(weighted))
}

/// The sums of 32 codes whose byte vector (its first `tables.len()`
/// bytes) is looked up as it is: the signs of 1-bit codes, the two
/// dimensions per nibble of 2-bit codes.
#[inline(always)]
pub fn plain_sums(
    simd: pulp::x86::V3,
    tables: &NibbleTables<2>,
    src: &impl BlockSource,
) -> BlockSums {
    block_sums_avx2(
        simd,
        tables,
        #[inline(always)]
        |c| src.chunk(CHUNK * c, tables.len()),
        #[inline(always)]
        |chunk, j| nibbles(simd, src.column(chunk, j)),
    )
}

/// Scores of `codes` (rows of `len` bytes) into `out`: `block` for each
/// whole block of [`BLOCK`] rows, `one` for the rest.
#[inline(always)]
pub fn score_rows(
    simd: pulp::x86::V3,
    codes: &[u8],
    len: usize,
    out: &mut [f32],
    block: impl Fn(&Rows<'_>, &mut [f32]),
    one: impl Fn(&[u8]) -> f32,
) {
    let mut blocks = codes.chunks_exact(BLOCK * len);
    let mut outs = out.chunks_exact_mut(BLOCK);
    for (rows, o) in (&mut blocks).zip(&mut outs) {
        block(
            &Rows {
                simd,
                block: rows,
                len,
            },
            o,
        );
    }
    let (codes, out) = (blocks.remainder(), outs.into_remainder());
    for (code, o) in codes.chunks_exact(len).zip(out) {
        *o = one(code);
    }
}

/// Scores of whole column groups of codes of `len` bytes into `out`:
/// `block` for each group.
#[inline(always)]
pub fn score_groups(
    simd: pulp::x86::V3,
    columns: &[u8],
    len: usize,
    out: &mut [f32],
    block: impl Fn(&Columns<'_>, &mut [f32]),
) {
    let groups = columns.chunks_exact(BLOCK * len);
    for (group, out) in groups.zip(out.chunks_exact_mut(BLOCK)) {
        block(&Columns { simd, group }, out);
    }
}

/// Where a 32-code kernel reads its codes from: rows
/// ([`Rows`], transposed in registers 16 byte positions at a time) or a
/// column group ([`Columns`], loaded as they are).
pub trait BlockSource {
    /// What [`column`](Self::column) reads byte positions `start ..
    /// start + 16` from.
    type Chunk;
    /// Prepare byte positions `start .. start + 16`, zero at and past
    /// byte `end`.
    fn chunk(&self, start: usize, end: usize) -> Self::Chunk;
    /// Byte position `start + j` of the 32 codes: codes 0..16 in the low
    /// lane, 16..32 in the high lane.
    fn column(&self, chunk: &Self::Chunk, j: usize) -> core::arch::x86_64::__m256i;
    /// The f32 LE at byte `at` of each code, eight codes per group, in
    /// code order.
    fn f32s(&self, at: usize) -> [[f32; 8]; 4];
}

/// 32 codes of `len` bytes, row after row.
pub struct Rows<'a> {
    /// The AVX2 token the transposes run with.
    pub simd: pulp::x86::V3,
    /// 32 codes, row after row.
    pub block: &'a [u8],
    /// Bytes per code.
    pub len: usize,
}

impl BlockSource for Rows<'_> {
    type Chunk = [core::arch::x86_64::__m256i; CHUNK];

    #[inline(always)]
    fn chunk(&self, start: usize, end: usize) -> Self::Chunk {
        let len = self.len;
        transpose_rows(
            self.simd,
            #[inline(always)]
            |i| bytes_at(&self.block[i * len..i * len + end], start),
        )
    }

    #[inline(always)]
    fn column(&self, chunk: &Self::Chunk, j: usize) -> core::arch::x86_64::__m256i {
        chunk[j]
    }

    #[inline(always)]
    fn f32s(&self, at: usize) -> [[f32; 8]; 4] {
        let mut out = [[0.0f32; 8]; 4];
        for (i, code) in self.block.chunks_exact(self.len).take(BLOCK).enumerate() {
            out[i / 8][i % 8] = f32_at(code, at);
        }
        out
    }
}

/// One column group of 32 codes ([`super::columns`]).
pub struct Columns<'a> {
    /// The AVX2 token the loads run with.
    pub simd: pulp::x86::V3,
    /// One column group.
    pub group: &'a [u8],
}

impl Columns<'_> {
    /// Byte column `j` (byte `j` of every code).
    #[inline(always)]
    fn load(&self, j: usize) -> core::arch::x86_64::__m256i {
        let (bytes, _) = self.group[j * BLOCK..]
            .split_first_chunk::<BLOCK>()
            .expect("a whole column");
        pulp::cast(*bytes)
    }
}

impl BlockSource for Columns<'_> {
    /// `(start, end)`: the columns are loaded when asked for.
    type Chunk = (usize, usize);

    #[inline(always)]
    fn chunk(&self, start: usize, end: usize) -> Self::Chunk {
        (start, end)
    }

    #[inline(always)]
    fn column(&self, &(start, end): &Self::Chunk, j: usize) -> core::arch::x86_64::__m256i {
        if start + j < end {
            self.load(start + j)
        } else {
            self.simd.avx._mm256_setzero_si256()
        }
    }

    #[inline(always)]
    fn f32s(&self, at: usize) -> [[f32; 8]; 4] {
        // Written out: `array::map` may stay out of line, compiled
        // without AVX2.
        let t = [
            self.load(at),
            self.load(at + 1),
            self.load(at + 2),
            self.load(at + 3),
        ];
        let w = words_of_columns(self.simd, t);
        [
            pulp::cast(w[0]),
            pulp::cast(w[1]),
            pulp::cast(w[2]),
            pulp::cast(w[3]),
        ]
    }
}
