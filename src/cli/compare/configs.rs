//! The configurations `vecseg compare` runs: each is a concrete
//! `Segment<V, P, I>` type plus how to fill and reopen it. Measurement code
//! (`measure.rs`) is generic over [`Config`], so adding a backend here is
//! all it takes to see it in the table.

use std::path::Path;

use indicatif::ProgressBar;
use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};
use vecseg_memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};
use vecseg_quantized::{
    Binary1, Binary1_5, Binary2, BinaryConfig, ChunkedCodes, Codec, EncodesWithoutRetraining,
    MmapCodes, Product, ProductConfig, Quantized, ScalarConfig, ScalarU4, ScalarU8,
};
#[cfg(feature = "rocksdb")]
use vecseg_rocksdb::{RocksIdMapper, RocksOptions, RocksPayloadStorage, RocksVectorStorage};
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, IdMapper,
    PayloadStorage, Result, VectorStorage,
};

use super::dataset::Dataset;
use crate::index::hnsw::HnswConfig;
use crate::kinds::{self, SegmentLayout};
use crate::Segment;

/// One column of the comparison: a segment type and how to build it.
pub trait Config {
    /// Stable name used by `--configs` and in the reports.
    const NAME: &'static str;
    /// One-line description of the storages.
    const DESCRIPTION: &'static str;
    /// Whether the segment lives on disk (and so can be reopened and measured cold).
    const PERSISTENT: bool;
    /// Whether the report gives the tenant key's locality in the vector
    /// file (immutable mmap segments, whose point order a build chooses).
    const TENANT_LOCALITY: bool = false;
    /// Whether the segment has an HNSW index (searches go through the
    /// graph; the report sweeps `ef`).
    const HNSW: bool = false;
    /// Vector storage.
    type V: VectorStorage<Element = f32>;
    /// Payload storage.
    type P: PayloadStorage;
    /// Id mapper.
    type I: IdMapper;

    /// A segment in `dir` holding every point of `data` (not yet flushed).
    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>>;

    /// Close `segment` and open it again from `dir` (in-memory
    /// configurations return it unchanged).
    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>>;

    /// Bytes of quantized codes search reads (`None` for raw storages).
    fn code_bytes(segment: &Segment<Self::V, Self::P, Self::I>) -> Option<u64> {
        let _ = segment;
        None
    }
}

/// Upsert every point of `data` into an appendable segment (version = index + 1).
pub fn fill<V, P, I>(
    segment: &mut Segment<V, P, I>,
    data: &Dataset,
    progress: &ProgressBar,
) -> Result<()>
where
    V: AppendableVectorStorage<Element = f32>,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    progress.set_length(data.len() as u64);
    for i in 0..data.len() {
        segment.upsert(i as u64 + 1, data.id(i), data.vector(i), &data.payloads[i])?;
        if i % 4096 == 0 {
            progress.set_position(i as u64);
        }
    }
    progress.set_position(data.len() as u64);
    Ok(())
}

/// Everything in RAM: `Vec`s and a `BTreeMap`.
pub struct Memory;

impl Config for Memory {
    const NAME: &'static str = "memory";
    const DESCRIPTION: &'static str = "MemoryVectorStorage / MemoryPayloadStorage / MemoryIdMapper";
    const PERSISTENT: bool = false;
    type V = MemoryVectorStorage<f32>;
    type P = MemoryPayloadStorage;
    type I = MemoryIdMapper;

    fn load(
        _: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let mut vectors = MemoryVectorStorage::new(data.dim, data.distance)?;
        vectors.reserve(data.len());
        let mut s = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
        fill(&mut s, data, progress)?;
        Ok(s)
    }

    fn reopen(
        _: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        Ok(segment)
    }
}

/// Appendable chunked mmap storages; `IN_RAM` selects `InRam` mode (the
/// same files, populated at open) over leaving pages to the kernel.
pub struct Chunked<const IN_RAM: bool>;

/// Chunked storages with pages left to the kernel.
pub type ChunkedOnDisk = Chunked<false>;
/// Chunked storages in `InRam` mode.
pub type ChunkedInRam = Chunked<true>;

impl<const IN_RAM: bool> Config for Chunked<IN_RAM> {
    const NAME: &'static str = if IN_RAM { "chunked-inram" } else { "chunked" };
    const DESCRIPTION: &'static str = if IN_RAM {
        "Chunked storages in InRam mode (populated at open)"
    } else {
        "ChunkedVectorStorage / ChunkedPayloadStorage / ChunkedIdMapper"
    };
    const PERSISTENT: bool = true;
    type V = ChunkedVectorStorage<f32>;
    type P = ChunkedPayloadStorage;
    type I = ChunkedIdMapper;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let (vectors, payloads) = if IN_RAM {
            (
                ChunkedVectorOptions::in_ram(),
                ChunkedPayloadOptions::in_ram(),
            )
        } else {
            (
                ChunkedVectorOptions::default(),
                ChunkedPayloadOptions::default(),
            )
        };
        load_chunked(dir, data, progress, vectors, payloads)
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        drop(segment);
        kinds::open_chunked_segment(dir)
    }
}

fn load_chunked(
    dir: &Path,
    data: &Dataset,
    progress: &ProgressBar,
    vectors: ChunkedVectorOptions,
    payloads: ChunkedPayloadOptions,
) -> Result<Segment<ChunkedVectorStorage<f32>, ChunkedPayloadStorage, ChunkedIdMapper>> {
    let l = SegmentLayout::new(dir);
    let mut s = Segment::create(
        dir,
        ChunkedVectorStorage::create(&l.vectors(), data.dim, data.distance, vectors)?,
        ChunkedPayloadStorage::create(&l.payloads(), payloads)?,
        ChunkedIdMapper::create(&l.ids())?,
    )?;
    fill(&mut s, data, progress)?;
    Ok(s)
}

/// Immutable mmap storages (perfect-hash id map) built from a chunked
/// segment, as the optimizer does.
pub struct Mmap;

/// Vector options of the `mmap` configuration: scattered `get_batch` calls
/// read through io_uring, as for a segment expected to be cold on disk.
fn mmap_vector_options() -> MmapVectorOptions {
    MmapVectorOptions {
        batch_reads_via_uring: true,
        ..Default::default()
    }
}

impl Config for Mmap {
    const NAME: &'static str = "mmap";
    const DESCRIPTION: &'static str =
        "MmapVectorStorage / MmapPayloadStorage / MmapIdMapper (built from chunked; batches via io_uring)";
    const PERSISTENT: bool = true;
    const TENANT_LOCALITY: bool = true;
    type V = MmapVectorStorage<f32>;
    type P = MmapPayloadStorage;
    type I = MmapIdMapper;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let staging = dir.with_extension("staging");
        let source = ChunkedOnDisk::load(&staging, data, progress)?;
        let built = crate::migrate::build_mmap(&source, dir, &mmap_vector_options(), &mut |_| {})?;
        drop(source);
        std::fs::remove_dir_all(&staging)
            .map_err(|e| vecseg_traits::StorageError::io(&staging, e))?;
        Ok(built)
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        drop(segment);
        kinds::open_mmap_segment(dir, &mmap_vector_options())
    }
}

/// RocksDB storages sharing one database.
#[cfg(feature = "rocksdb")]
pub struct Rocks;

#[cfg(feature = "rocksdb")]
impl Config for Rocks {
    const NAME: &'static str = "rocksdb";
    const DESCRIPTION: &'static str =
        "RocksVectorStorage / RocksPayloadStorage / RocksIdMapper (one DB)";
    const PERSISTENT: bool = true;
    type V = RocksVectorStorage<f32>;
    type P = RocksPayloadStorage;
    type I = RocksIdMapper;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let mut s =
            kinds::create_rocks_segment(dir, data.dim, data.distance, &RocksOptions::default())?;
        fill(&mut s, data, progress)?;
        Ok(s)
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        drop(segment);
        kinds::open_rocks_segment(dir, &RocksOptions::default())
    }
}

/// A codec and its settings, as a quantized configuration uses them.
pub trait Flavor {
    /// The codec.
    type Q: EncodesWithoutRetraining;
    /// Short name in configuration names (`sq8`, `bq1`, ...).
    const SHORT: &'static str;
    /// Training settings for vectors of `dim` components.
    fn config(dim: usize) -> <Self::Q as Codec>::Config;
}

/// Scalar int8 codes.
pub struct Sq8;
impl Flavor for Sq8 {
    type Q = ScalarU8;
    const SHORT: &'static str = "sq8";
    fn config(_: usize) -> ScalarConfig {
        ScalarConfig::default()
    }
}

/// Scalar int4 codes (a range per component).
pub struct Sq4;
impl Flavor for Sq4 {
    type Q = ScalarU4;
    const SHORT: &'static str = "sq4";
    fn config(_: usize) -> ScalarConfig {
        ScalarConfig::default()
    }
}

/// 1-bit binary codes.
pub struct Bq1;
impl Flavor for Bq1 {
    type Q = Binary1;
    const SHORT: &'static str = "bq1";
    fn config(_: usize) -> BinaryConfig {
        BinaryConfig::default()
    }
}

/// 1.5-bit binary codes (a sign per component, a magnitude bit per pair).
pub struct Bq1_5;
impl Flavor for Bq1_5 {
    type Q = Binary1_5;
    const SHORT: &'static str = "bq1.5";
    fn config(_: usize) -> BinaryConfig {
        BinaryConfig::default()
    }
}

/// 2-bit binary codes.
pub struct Bq2;
impl Flavor for Bq2 {
    type Q = Binary2;
    const SHORT: &'static str = "bq2";
    fn config(_: usize) -> BinaryConfig {
        BinaryConfig::default()
    }
}

/// Product codes, 8 components per sub-vector (or the largest of 4, 2, 1
/// that divides the dimension).
pub struct Pq;
impl Flavor for Pq {
    type Q = Product;
    const SHORT: &'static str = "pq";
    fn config(dim: usize) -> ProductConfig {
        ProductConfig {
            sub_dim: [8, 4, 2, 1]
                .into_iter()
                .find(|s| dim.is_multiple_of(*s))
                .unwrap_or(1),
            ..Default::default()
        }
    }
}

/// The `mmap` configuration with codes of flavor `F` in an immutable mmap
/// file beside the raw vectors (`<segment>/quantized/`).
pub struct MmapQuantized<F>(std::marker::PhantomData<F>);

impl<F: Flavor> Config for MmapQuantized<F> {
    const NAME: &'static str = match F::SHORT.as_bytes() {
        b"sq8" => "mmap+sq8",
        b"sq4" => "mmap+sq4",
        b"bq1" => "mmap+bq1",
        b"bq1.5" => "mmap+bq1.5",
        b"bq2" => "mmap+bq2",
        _ => "mmap+pq",
    };
    const DESCRIPTION: &'static str =
        "mmap segment, search through quantized codes (mmap file), codec's default rescoring";
    const PERSISTENT: bool = true;
    const TENANT_LOCALITY: bool = true;
    type V = Quantized<MmapVectorStorage<f32>, F::Q, MmapCodes>;
    type P = MmapPayloadStorage;
    type I = MmapIdMapper;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        kinds::quantize_mmap_segment::<F::Q>(
            Mmap::load(dir, data, progress)?,
            &F::config(data.dim),
            &MmapVectorOptions::default(),
            &mut |i| progress.set_position(i as u64),
        )
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        drop(segment);
        kinds::open_quantized_mmap_segment::<F::Q>(dir, &MmapVectorOptions::default())
    }

    fn code_bytes(segment: &Segment<Self::V, Self::P, Self::I>) -> Option<u64> {
        Some(segment.vectors().code_bytes() as u64)
    }
}

/// The `chunked` configuration (appendable) with 1-bit binary codes in
/// appendable chunked files, trained on the first 10,000 points and
/// extended by every upsert.
pub struct ChunkedBq1;

impl Config for ChunkedBq1 {
    const NAME: &'static str = "chunked+bq1";
    const DESCRIPTION: &'static str =
        "chunked segment with appendable 1-bit codes (codec trained on the first 10k points)";
    const PERSISTENT: bool = true;
    type V = Quantized<ChunkedVectorStorage<f32>, Binary1, ChunkedCodes>;
    type P = ChunkedPayloadStorage;
    type I = ChunkedIdMapper;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let l = SegmentLayout::new(dir);
        let mut sample: Vec<f32> = Vec::new();
        for i in 0..data.len().min(10_000) {
            let start = sample.len();
            sample.extend_from_slice(data.vector(i));
            // Train on the stored form (normalised for cosine); a zero
            // vector fails here as it would at upsert.
            <f32 as vecseg_traits::VectorElement>::preprocess(data.distance, &mut sample[start..])?;
        }
        let codec = Binary1::train(&BinaryConfig::default(), data.dim, data.distance, &sample)?;
        let raw = ChunkedVectorStorage::create(
            &l.vectors(),
            data.dim,
            data.distance,
            ChunkedVectorOptions::default(),
        )?;
        let vectors = Quantized::with_codec_chunked(raw, &dir.join(kinds::QUANTIZED_DIR), codec)?;
        let mut s = Segment::create(
            dir,
            vectors,
            ChunkedPayloadStorage::create(&l.payloads(), ChunkedPayloadOptions::default())?,
            ChunkedIdMapper::create(&l.ids())?,
        )?;
        fill(&mut s, data, progress)?;
        Ok(s)
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        drop(segment);
        let codes = dir.join(kinds::QUANTIZED_DIR);
        kinds::open_chunked_segment::<f32>(dir)?.map_vectors(|v| Quantized::open_chunked(v, &codes))
    }

    fn code_bytes(segment: &Segment<Self::V, Self::P, Self::I>) -> Option<u64> {
        Some(segment.vectors().code_bytes() as u64)
    }
}

/// Configuration `C` with an HNSW index (m 16, ef_construct 100) built
/// over its segment after loading (the build counts as loading time).
pub struct WithHnsw<C>(std::marker::PhantomData<C>);

impl<C: Config> Config for WithHnsw<C> {
    const NAME: &'static str = match C::NAME.as_bytes() {
        b"mmap" => "mmap+hnsw",
        b"mmap+sq8" => "mmap+sq8+hnsw",
        _ => "hnsw",
    };
    const DESCRIPTION: &'static str =
        "the configuration named before +hnsw, with an HNSW graph (m 16, ef_construct 100) answering searches";
    const PERSISTENT: bool = C::PERSISTENT;
    const TENANT_LOCALITY: bool = C::TENANT_LOCALITY;
    const HNSW: bool = true;
    type V = C::V;
    type P = C::P;
    type I = C::I;

    fn load(
        dir: &Path,
        data: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        let mut s = C::load(dir, data, progress)?;
        progress.set_message(format!("{}: HNSW build", Self::NAME));
        s.build_hnsw(HnswConfig::default())?;
        Ok(s)
    }

    fn reopen(
        dir: &Path,
        segment: Segment<Self::V, Self::P, Self::I>,
    ) -> Result<Segment<Self::V, Self::P, Self::I>> {
        C::reopen(dir, segment)
    }

    fn code_bytes(segment: &Segment<Self::V, Self::P, Self::I>) -> Option<u64> {
        C::code_bytes(segment)
    }
}

/// Whether configuration `name` can run with `distance` (binary codes do
/// not approximate manhattan).
pub fn supports(name: &str, distance: Distance) -> bool {
    match name {
        n if n == MmapQuantized::<Bq1>::NAME
            || n == MmapQuantized::<Bq1_5>::NAME
            || n == MmapQuantized::<Bq2>::NAME
            || n == ChunkedBq1::NAME =>
        {
            Binary1::supports(distance)
        }
        _ => true,
    }
}

/// Names of every configuration, in table order (`collection` is measured
/// by its own code, `super::collection`).
pub const ALL: &[&str] = &[
    Memory::NAME,
    ChunkedOnDisk::NAME,
    ChunkedInRam::NAME,
    super::collection::NAME,
    Mmap::NAME,
    MmapQuantized::<Sq8>::NAME,
    MmapQuantized::<Sq4>::NAME,
    MmapQuantized::<Bq1>::NAME,
    MmapQuantized::<Bq1_5>::NAME,
    MmapQuantized::<Bq2>::NAME,
    MmapQuantized::<Pq>::NAME,
    ChunkedBq1::NAME,
    WithHnsw::<Mmap>::NAME,
    WithHnsw::<MmapQuantized<Sq8>>::NAME,
    #[cfg(feature = "rocksdb")]
    Rocks::NAME,
];

/// Configurations this build leaves out, with the cargo feature each needs.
pub const NEED_FEATURE: &[(&str, &str)] = &[
    #[cfg(not(feature = "rocksdb"))]
    ("rocksdb", "rocksdb"),
];

/// Something to do with a configuration given as a type parameter.
pub trait ConfigVisitor {
    /// What the visit returns.
    type Output;
    /// Do it with configuration `C`.
    fn visit<C: Config>(self) -> Self::Output;
}

/// Call `visitor` with the configuration called `name`; `None` for an unknown name.
pub fn dispatch<F: ConfigVisitor>(name: &str, visitor: F) -> Option<F::Output> {
    match name {
        n if n == Memory::NAME => Some(visitor.visit::<Memory>()),
        n if n == ChunkedOnDisk::NAME => Some(visitor.visit::<ChunkedOnDisk>()),
        n if n == ChunkedInRam::NAME => Some(visitor.visit::<ChunkedInRam>()),
        n if n == Mmap::NAME => Some(visitor.visit::<Mmap>()),
        n if n == MmapQuantized::<Sq8>::NAME => Some(visitor.visit::<MmapQuantized<Sq8>>()),
        n if n == MmapQuantized::<Sq4>::NAME => Some(visitor.visit::<MmapQuantized<Sq4>>()),
        n if n == MmapQuantized::<Bq1>::NAME => Some(visitor.visit::<MmapQuantized<Bq1>>()),
        n if n == MmapQuantized::<Bq1_5>::NAME => Some(visitor.visit::<MmapQuantized<Bq1_5>>()),
        n if n == MmapQuantized::<Bq2>::NAME => Some(visitor.visit::<MmapQuantized<Bq2>>()),
        n if n == MmapQuantized::<Pq>::NAME => Some(visitor.visit::<MmapQuantized<Pq>>()),
        n if n == ChunkedBq1::NAME => Some(visitor.visit::<ChunkedBq1>()),
        n if n == WithHnsw::<Mmap>::NAME => Some(visitor.visit::<WithHnsw<Mmap>>()),
        n if n == WithHnsw::<MmapQuantized<Sq8>>::NAME => {
            Some(visitor.visit::<WithHnsw<MmapQuantized<Sq8>>>())
        }
        #[cfg(feature = "rocksdb")]
        n if n == Rocks::NAME => Some(visitor.visit::<Rocks>()),
        _ => None,
    }
}
