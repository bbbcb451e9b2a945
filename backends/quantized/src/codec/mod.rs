//! Codecs: how a vector becomes a short code and how a query scores codes.
//!
//! | file         | codec |
//! |--------------|-------|
//! | `scalar.rs`  | [`ScalarU8`]: one byte per component over a trained range |
//! | `scalar4.rs` | [`ScalarU4`]: four bits per component over its own trained range, scored with fast-scan tables |
//! | `binary.rs`  | [`Binary`]: 1, 1.5 or 2 bits per component around the trained mean |
//! | `bit_planes.rs` | the query rounded to 5-bit weights per dimension, as bit planes (popcounts) and fast-scan tables |
//! | `block_source.rs` | 32 codes as rows or a column group, read by the scan kernels as byte columns |
//! | `fast_scan.rs` | per-byte tables of nibble values and the kernels that sum them over 32 codes at once (FAISS's fast scan) |
//! | `product.rs` | [`Product`]: one byte per sub-vector, the index of its nearest of 256 trained centroids |
//! | `columns.rs` | the column layout: 32 codes stored byte position by byte position, for scan kernels |
//!
//! A codec is trained once on a sample of stored-form vectors (normalised
//! for cosine), then encodes any vector with those parameters (clipping
//! values outside the trained range), so a quantized storage over an
//! appendable raw storage stays appendable.

pub mod binary;
pub mod bit_planes;
pub mod block_source;
pub mod columns;
pub mod fast_scan;
pub mod product;
pub mod scalar;
pub mod scalar4;

pub use binary::{Binary, Binary1, Binary1_5, Binary2, BinaryConfig, BitsPerDim, Frac};
pub use product::{Product, ProductConfig};
pub use scalar::{ScalarConfig, ScalarU8};
pub use scalar4::ScalarU4;

#[cfg(target_arch = "x86_64")]
use vecseg_mmap::raw::byte_permute::Vbmi;
use vecseg_traits::{Distance, Result};

/// A trained quantization codec (see the [module docs](self)).
pub trait Codec: Sized + Send + Sync + 'static {
    /// Stable name, written in the meta file.
    const NAME: &'static str;
    /// Training settings.
    type Config: Clone + std::fmt::Debug + Default + Send + Sync;
    /// A query in the form the codec scores codes with.
    type Query: Send + Sync;

    /// Most vectors training looks at (the builder samples this many).
    fn sample_limit(config: &Self::Config) -> usize;

    /// Whether the codec can approximate `distance` (training refuses the
    /// others with [`vecseg_traits::StorageError::Unsupported`]).
    fn supports(distance: Distance) -> bool {
        let _ = distance;
        true
    }

    /// Train on `sample`: `n × dim` stored-form components back to back.
    /// An empty sample, non-finite values or a distance the codec cannot
    /// score are errors.
    fn train(config: &Self::Config, dim: usize, distance: Distance, sample: &[f32])
        -> Result<Self>;

    /// Components per vector.
    fn dim(&self) -> usize;
    /// Distance the scores approximate.
    fn distance(&self) -> Distance;
    /// Bytes of one code.
    fn code_len(&self) -> usize;
    /// Write the code of `v` (`dim` stored-form components) into `code`
    /// (`code_len` bytes).
    fn encode(&self, v: &[f32], code: &mut [u8]);
    /// Prepare `query` (stored form) for scoring.
    fn prepare(&self, query: &[f32]) -> Self::Query;
    /// Approximate score of `query` against `code` (higher is better, on
    /// the scale of [`Distance`]'s exact scores).
    fn score(&self, query: &Self::Query, code: &[u8]) -> f32;
    /// Scores of `query` against `codes` (whole codes of
    /// [`code_len`](Self::code_len) bytes, back to back) into `out`, one
    /// per code. Codecs whose kernels use CPU features checked at run time
    /// override it to check once per batch instead of once per code.
    fn score_batch(&self, query: &Self::Query, codes: &[u8], out: &mut [f32]) {
        for (code, o) in codes.chunks_exact(self.code_len()).zip(out) {
            *o = self.score(query, code);
        }
    }
    /// The first meta format version ([`crate::meta`]) whose codes have
    /// this codec's current layout: files written before are refused
    /// rather than misread.
    const LAYOUT_VERSION: u16 = 1;
    /// Whether scans are faster over codes stored as column groups
    /// ([`columns`]): built (immutable) code storages then store them so.
    const COLUMNS: bool = false;
    /// Scores of `query` against the codes of whole column groups
    /// ([`columns::GROUP`] codes, `GROUP · code_len` bytes each) into
    /// `out`, in code order, equal bit for bit to
    /// [`score_batch`](Self::score_batch) over the same codes as rows.
    /// The default turns them back into rows.
    fn score_columns(&self, query: &Self::Query, columns: &[u8], out: &mut [f32]) {
        score_columns_as_rows(self, query, columns, out);
    }
    /// Whether search rescores with raw vectors by default.
    fn rescore_by_default(&self) -> bool;

    /// The trained parameters, little-endian (the meta file's body).
    fn params(&self) -> Vec<u8>;
    /// Parameters read back from [`params`](Self::params); an error
    /// message (the caller names the file) when they do not fit `dim`.
    fn from_params(
        dim: usize,
        distance: Distance,
        bytes: &[u8],
    ) -> std::result::Result<Self, String>;
}

/// [`Codec::score_columns`] by turning the group back into rows and
/// scoring them with [`Codec::score_batch`].
pub fn score_columns_as_rows<Q: Codec>(
    codec: &Q,
    query: &Q::Query,
    columns: &[u8],
    out: &mut [f32],
) {
    let group = columns::GROUP * codec.code_len();
    let mut rows = vec![0u8; group];
    for (columns, out) in columns
        .chunks_exact(group)
        .zip(out.chunks_mut(columns::GROUP))
    {
        columns::columns_to_rows(columns, codec.code_len(), &mut rows);
        codec.score_batch(query, &rows, out);
    }
}

/// Codecs with an AVX2 kernel for [`Codec::score_batch`], run by
/// [`try_batch_avx2`] (and for [`Codec::score_columns`], run by
/// [`try_columns_avx2`]).
#[cfg(target_arch = "x86_64")]
pub(crate) trait BatchAvx2: Codec {
    /// Scores of `query` against `codes` into `out` (as many as there are
    /// whole codes), AVX2 enabled (default: one code at a time with
    /// [`Codec::score`]). Implementations are `#[inline(always)]`.
    #[inline(always)]
    fn batch_avx2(&self, simd: pulp::x86::V3, query: &Self::Query, codes: &[u8], out: &mut [f32]) {
        let _ = simd;
        for (code, o) in codes.chunks_exact(self.code_len().max(1)).zip(out) {
            *o = self.score(query, code);
        }
    }

    /// Scores of whole column groups, AVX2 enabled (default: as rows).
    #[inline(always)]
    fn columns_avx2(
        &self,
        simd: pulp::x86::V3,
        query: &Self::Query,
        columns: &[u8],
        out: &mut [f32],
    ) {
        let _ = simd;
        score_columns_as_rows(self, query, columns, out);
    }

    /// Scores of whole column groups, AVX-512 enabled, and VBMI too when
    /// `vbmi` is given (default: the AVX2 kernel).
    #[inline(always)]
    fn columns_avx512(
        &self,
        simd: pulp::x86::V4,
        vbmi: Option<Vbmi>,
        query: &Self::Query,
        columns: &[u8],
        out: &mut [f32],
    ) {
        let _ = vbmi;
        self.columns_avx2(*simd, query, columns, out);
    }
}

/// Run `codec`'s AVX2 kernel for rows (or, with `columns`, for whole
/// column groups) if the CPU has AVX2 (checked once by `pulp`, which
/// holds the `unsafe` of enabling the features); `false` when it has not,
/// and the caller scores another way. On AVX-512 machines the same kernel
/// is compiled for x86-64-v4 (with VBMI where the CPU has it), otherwise
/// for x86-64-v3 ([`Level`]).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn try_batch_avx2<Q: BatchAvx2>(
    codec: &Q,
    query: &Q::Query,
    codes: &[u8],
    columns: bool,
    out: &mut [f32],
) -> bool {
    run_on(level(), codec, query, codes, columns, out)
}

/// Off x86-64 there are no kernels: every codec qualifies and scores
/// portably.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait BatchAvx2: Codec {}
#[cfg(not(target_arch = "x86_64"))]
impl<Q: Codec> BatchAvx2 for Q {}

/// [`Codec::score_columns`] for codecs with column kernels: the kernel
/// when the CPU runs it, else the groups turned back into rows.
#[inline]
pub(crate) fn score_columns_with_kernel<Q: BatchAvx2>(
    codec: &Q,
    query: &Q::Query,
    columns: &[u8],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if try_batch_avx2(codec, query, columns, true, out) {
        return;
    }
    score_columns_as_rows(codec, query, columns, out);
}

/// The widest x86-64 level this CPU runs, checked once per process:
/// `pulp`'s `try_new` tests a dozen feature flags, which cost as much
/// as scoring a few codes when paid per batch of 64.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    /// x86-64-v4, with AVX-512 VBMI if the CPU has it.
    V4(pulp::x86::V4, Option<Vbmi>),
    V3(pulp::x86::V3),
    Portable,
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if let Some(v4) = pulp::x86::V4::try_new() {
            Level::V4(v4, Vbmi::try_new())
        } else if let Some(v3) = pulp::x86::V3::try_new() {
            Level::V3(v3)
        } else {
            Level::Portable
        }
    })
}

/// Every x86-64 build of the kernels this CPU runs, named, for tests
/// that compare them: x86-64-v3; v4, the AVX2 kernels EVEX-encoded with
/// 32 vector registers instead of 16 (and the codecs' AVX-512 column
/// kernels); v4 with VBMI. The 32-code kernels hold 16 transposed rows at
/// once, which spill to the stack with 16 registers (1-bit codes: 3.1 →
/// 2.1 ns per code at 128 dimensions, 2-bit: 6.9 → 4.1;
/// `docs/design-decisions.md`).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn test_levels() -> Vec<(&'static str, Level)> {
    let mut levels = Vec::new();
    if let Some(v3) = pulp::x86::V3::try_new() {
        levels.push(("v3", Level::V3(v3)));
    }
    if let Some(v4) = pulp::x86::V4::try_new() {
        levels.push(("v4", Level::V4(v4, None)));
    }
    if let Some(vbmi) = Vbmi::try_new() {
        levels.push(("v4 + VBMI", Level::V4(vbmi.v4(), Some(vbmi))));
    }
    levels
}

/// Run the kernels inside `level`'s target features (`false` for
/// [`Level::Portable`]: nothing ran).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn run_on<Q: BatchAvx2>(
    level: Level,
    codec: &Q,
    query: &Q::Query,
    codes: &[u8],
    columns: bool,
    out: &mut [f32],
) -> bool {
    let (v4, vbmi, simd) = match level {
        Level::V4(v4, vbmi) => (Some(v4), vbmi, *v4),
        Level::V3(v3) => (None, None, v3),
        Level::Portable => return false,
    };
    let batch = Avx2Batch {
        v4,
        vbmi,
        simd,
        codec,
        query,
        codes,
        columns,
        out,
    };
    match (vbmi, v4) {
        (Some(vbmi), _) => vbmi.vectorize(batch),
        (None, Some(v4)) => v4.vectorize(batch),
        (None, None) => simd.vectorize(batch),
    }
    true
}

/// The body [`try_batch_avx2`] hands to `pulp`: a named
/// [`pulp::NullaryFnOnce`], not a closure, so the kernel is inlined into
/// pulp's AVX2-enabled function (a closure's `call_once` shim was once
/// left out of line, compiled without AVX2, calling every intrinsic as a
/// function; see `docs/design-decisions.md`).
#[cfg(target_arch = "x86_64")]
struct Avx2Batch<'a, Q: Codec> {
    /// Set when running the x86-64-v4 build.
    v4: Option<pulp::x86::V4>,
    /// Set when VBMI is enabled too.
    vbmi: Option<Vbmi>,
    simd: pulp::x86::V3,
    codec: &'a Q,
    query: &'a Q::Query,
    codes: &'a [u8],
    /// `codes` is one column group, not rows.
    columns: bool,
    out: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl<Q: BatchAvx2> pulp::NullaryFnOnce for Avx2Batch<'_, Q> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        if self.columns {
            match self.v4 {
                Some(v4) => self
                    .codec
                    .columns_avx512(v4, self.vbmi, self.query, self.codes, self.out),
                None => self
                    .codec
                    .columns_avx2(self.simd, self.query, self.codes, self.out),
            }
        } else {
            self.codec
                .batch_avx2(self.simd, self.query, self.codes, self.out);
        }
    }
}

/// The score of a code whose per-component terms (the query's products
/// with, squared or absolute differences from the decoded components)
/// add up to `sum`: the sum for dot and cosine, its negated square root
/// for euclid, its negation for manhattan.
#[inline(always)]
pub fn score_of_terms(distance: Distance, sum: f32) -> f32 {
    match distance {
        Distance::Cosine | Distance::Dot => sum,
        Distance::Euclid => -sum.max(0.0).sqrt(),
        Distance::Manhattan => -sum,
    }
}

/// Little-endian reader of parameter bytes, with errors instead of panics.
#[derive(Debug)]
pub struct ParamReader<'a> {
    bytes: &'a [u8],
}

impl<'a> ParamReader<'a> {
    /// Read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        ParamReader { bytes }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "parameters end early: {n} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next u32.
    pub fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next f32.
    pub fn f32(&mut self) -> std::result::Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }

    /// The next `n` f32s.
    pub fn f32s(&mut self, n: usize) -> std::result::Result<Vec<f32>, String> {
        (0..n).map(|_| self.f32()).collect()
    }

    /// Error unless every byte was read.
    pub fn finish(self) -> std::result::Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after the parameters",
                self.bytes.len()
            ))
        }
    }
}

/// The little-endian f32 at byte `at` of `code` (0.0 past its end).
#[inline]
pub fn f32_at(code: &[u8], at: usize) -> f32 {
    code.get(at..at + 4)
        .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The euclid score (`−|x − q|`) from `|x|²`, `|q|²` and an estimate of
/// `x·q`, clamped at distance 0.
#[inline]
pub fn euclid_from_dot(x_norm_sq: f32, q_norm_sq: f32, dot: f32) -> f32 {
    -(x_norm_sq + q_norm_sq - 2.0 * dot).max(0.0).sqrt()
}

/// Append `v` as little-endian f32s to `out`.
pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Error unless every value of `sample` is finite and it holds at least
/// one whole vector of `dim`.
pub fn check_sample(sample: &[f32], dim: usize) -> Result<usize> {
    use vecseg_traits::StorageError;
    if dim == 0 {
        return Err(StorageError::InvalidArgument(
            "cannot quantize vectors of dimension 0".into(),
        ));
    }
    if sample.is_empty() || !sample.len().is_multiple_of(dim) {
        return Err(StorageError::InvalidArgument(format!(
            "training needs at least one whole vector of {dim} components, got {} values",
            sample.len()
        )));
    }
    if let Some(index) = sample.iter().position(|x| !x.is_finite()) {
        return Err(StorageError::NonFiniteComponent { index: index % dim });
    }
    Ok(sample.len() / dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// `score_batch` gives exactly the scores of `score`, code by code,
    /// for every codec and distance it supports, over batches that are not
    /// a multiple of the kernels' widths.
    fn batch_matches_single<Q: Codec>(config: &Q::Config, dim: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let data: Vec<f32> = (0..300 * dim)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        for distance in [
            Distance::Cosine,
            Distance::Dot,
            Distance::Euclid,
            Distance::Manhattan,
        ] {
            if !Q::supports(distance) {
                continue;
            }
            let codec = Q::train(config, dim, distance, &data).unwrap();
            let len = codec.code_len();
            let mut codes = vec![0u8; 300 * len];
            for (v, c) in data.chunks_exact(dim).zip(codes.chunks_exact_mut(len)) {
                codec.encode(v, c);
            }
            let query = codec.prepare(&data[5 * dim..6 * dim]);
            // Column groups score as their rows do.
            for rows in codes.chunks_exact(columns::GROUP * len) {
                let mut group = vec![0u8; rows.len()];
                columns::rows_to_columns(rows, len, &mut group);
                let mut out = [f32::NAN; columns::GROUP];
                codec.score_columns(&query, &group, &mut out);
                for (i, (code, s)) in rows.chunks_exact(len).zip(&out).enumerate() {
                    assert_eq!(
                        s.to_bits(),
                        codec.score(&query, code).to_bits(),
                        "{} {distance:?} column code {i}",
                        Q::NAME
                    );
                }
            }
            for n in [0usize, 1, 7, 64, 300] {
                let mut out = vec![f32::NAN; n];
                codec.score_batch(&query, &codes[..n * len], &mut out);
                for (i, (code, s)) in codes.chunks_exact(len).zip(&out).enumerate() {
                    assert_eq!(
                        s.to_bits(),
                        codec.score(&query, code).to_bits(),
                        "{} {distance:?} code {i} of {n}",
                        Q::NAME
                    );
                }
            }
        }
    }

    /// Every build of the kernels (x86-64-v3, v4, v4 with VBMI) gives the
    /// scores of `score`, bit for bit (builds the CPU lacks are skipped).
    #[cfg(target_arch = "x86_64")]
    fn both_builds_match_single<Q: BatchAvx2>(config: &Q::Config, dim: usize) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let data: Vec<f32> = (0..100 * dim)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let codec = Q::train(config, dim, Distance::Cosine, &data).unwrap();
        let len = codec.code_len();
        let mut codes = vec![0u8; 100 * len];
        for (v, c) in data.chunks_exact(dim).zip(codes.chunks_exact_mut(len)) {
            codec.encode(v, c);
        }
        let query = codec.prepare(&data[..dim]);
        let single: Vec<u32> = codes
            .chunks_exact(len)
            .map(|c| codec.score(&query, c).to_bits())
            .collect();
        // Three column groups: kernels that take groups in pairs see a
        // pair and a last odd group.
        let group_len = columns::GROUP * len;
        let mut groups = vec![0u8; 3 * group_len];
        for (rows, group) in codes
            .chunks_exact(group_len)
            .zip(groups.chunks_exact_mut(group_len))
        {
            columns::rows_to_columns(rows, len, group);
        }
        for (build, level) in test_levels() {
            let mut out = vec![f32::NAN; 100];
            if run_on(level, &codec, &query, &codes, false, &mut out) {
                let bits: Vec<u32> = out.iter().map(|s| s.to_bits()).collect();
                assert_eq!(bits, single, "{} {build} dim {dim}", Q::NAME);
            }
            for n in 1..=3 {
                let mut out = vec![f32::NAN; n * columns::GROUP];
                if run_on(
                    level,
                    &codec,
                    &query,
                    &groups[..n * group_len],
                    true,
                    &mut out,
                ) {
                    let bits: Vec<u32> = out.iter().map(|s| s.to_bits()).collect();
                    assert_eq!(
                        bits,
                        single[..n * columns::GROUP],
                        "{} {build} {n} column groups dim {dim}",
                        Q::NAME
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_build_of_the_kernels_agrees() {
        for dim in [13usize, 128, 384] {
            both_builds_match_single::<ScalarU8>(&ScalarConfig::default(), dim);
            both_builds_match_single::<ScalarU4>(&ScalarConfig::default(), dim);
            both_builds_match_single::<Binary1>(&BinaryConfig::default(), dim);
            both_builds_match_single::<Binary1_5>(&BinaryConfig::default(), dim);
            both_builds_match_single::<Binary2>(&BinaryConfig::default(), dim);
        }
        // Sub-spaces: 10 (part of a 16-wide step), 32, 48, 300 (more than
        // one u16 sum's 256).
        for (dim, sub_dim) in [(40usize, 4usize), (128, 4), (384, 8), (300, 1)] {
            let config = ProductConfig {
                sub_dim,
                iterations: 3,
                ..Default::default()
            };
            both_builds_match_single::<Product>(&config, dim);
        }
    }

    #[test]
    fn score_batch_matches_score_for_every_codec() {
        for dim in [13usize, 128] {
            batch_matches_single::<ScalarU8>(&ScalarConfig::default(), dim);
            batch_matches_single::<ScalarU4>(&ScalarConfig::default(), dim);
            batch_matches_single::<Binary1>(&BinaryConfig::default(), dim);
            batch_matches_single::<Binary1_5>(&BinaryConfig::default(), dim);
            batch_matches_single::<Binary2>(&BinaryConfig::default(), dim);
        }
        let pq = ProductConfig {
            sub_dim: 4,
            ..Default::default()
        };
        batch_matches_single::<Product>(&pq, 128);
    }
}
