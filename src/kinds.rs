//! The segment kinds registry: the directory layout of a persistent
//! segment, the concrete segment types (chunked, mmap, RocksDB), and the
//! helpers that create and open each kind. The CLI, migration and the
//! collection all go through here, so a new kind is added in one place.
//!
//! ```no_run
//! use vecseg::kinds::{create_chunked_segment, open_chunked_segment};
//! use vecseg::prelude::*;
//!
//! let dir = std::path::Path::new("/tmp/my-segment");
//! let mut segment = create_chunked_segment::<f32>(dir, 3, Distance::Cosine)?;
//! segment.upsert(1, PointId::Num(7), &[1.0, 0.0, 0.0], &Payload::new())?;
//! segment.flush()?;
//! drop(segment);
//! let segment = open_chunked_segment::<f32>(dir)?;
//! assert_eq!(segment.point_count(), 1);
//! # Ok::<(), vecseg::StorageError>(())
//! ```
//!
//! ```text
//! <segment>/segment.json   which backends the directory holds (the commit point)
//! <segment>/rocksdb/       RocksDB segments: one DB for all three storages
//! <segment>/vectors/       other backends: one directory per storage
//! <segment>/payloads/
//! <segment>/ids/
//! <segment>/migration/     in-place upgrade staging (see `docs/migration.md`)
//! ```

use std::path::{Path, PathBuf};

use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};
use vecseg_quantized::{Codec, MmapCodes, Quantized};
#[cfg(feature = "rocksdb")]
use vecseg_rocksdb::{RocksIdMapper, RocksOptions, RocksPayloadStorage, RocksVectorStorage};
use vecseg_traits::{Distance, Result, StorageError, VectorElement};

use crate::segment::SegmentState;
use crate::Segment;

/// A segment over the three immutable mmap storages (built by
/// [`build_mmap`](crate::migrate::build_mmap) or a migration).
pub type MmapSegment<T = f32> = Segment<MmapVectorStorage<T>, MmapPayloadStorage, MmapIdMapper>;
/// A segment over the three RocksDB storages sharing one database.
#[cfg(feature = "rocksdb")]
pub type RocksSegment<T = f32> = Segment<RocksVectorStorage<T>, RocksPayloadStorage, RocksIdMapper>;
/// A segment over the three appendable chunked (mmap-backed) storages.
pub type ChunkedSegment<T = f32> =
    Segment<ChunkedVectorStorage<T>, ChunkedPayloadStorage, ChunkedIdMapper>;

/// Subdirectory of a RocksDB segment holding its database
/// (`vecseg_rocksdb::DB_DIR`).
pub const ROCKSDB_DIR: &str = "rocksdb";

/// The error for `what` in a build without the `rocksdb` cargo feature.
pub fn rocksdb_feature_missing(what: &str) -> StorageError {
    StorageError::Unsupported(format!(
        "{what} needs the `rocksdb` cargo feature of vecseg, which this build was compiled without"
    ))
}

/// Paths inside one segment directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLayout {
    dir: PathBuf,
}

impl SegmentLayout {
    /// The layout of segment directory `dir`.
    pub fn new(dir: &Path) -> Self {
        SegmentLayout {
            dir: dir.to_path_buf(),
        }
    }

    /// The segment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<segment>/vectors`.
    pub fn vectors(&self) -> PathBuf {
        self.dir.join("vectors")
    }

    /// `<segment>/payloads`.
    pub fn payloads(&self) -> PathBuf {
        self.dir.join("payloads")
    }

    /// `<segment>/ids`.
    pub fn ids(&self) -> PathBuf {
        self.dir.join("ids")
    }

    /// `<segment>/rocksdb`.
    pub fn rocksdb(&self) -> PathBuf {
        self.dir.join(ROCKSDB_DIR)
    }

    /// `<segment>/migration`: the in-place upgrade's staging area.
    pub fn staging(&self) -> PathBuf {
        self.dir.join("migration")
    }

    /// The three storage directories, in order vectors, payloads, ids.
    pub fn storage_dirs(&self) -> [PathBuf; 3] {
        [self.vectors(), self.payloads(), self.ids()]
    }
}

/// The storage families a segment directory can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Rocks{Vector,Payload}Storage + RocksIdMapper in `rocksdb/`.
    Rocks,
    /// Chunked{Vector,Payload}Storage + ChunkedIdMapper.
    Chunked,
    /// Mmap{Vector,Payload}Storage + MmapIdMapper (immutable).
    Mmap,
}

impl SegmentKind {
    /// Lowercase name (`rocksdb`, `chunked`, `mmap`).
    pub fn name(self) -> &'static str {
        match self {
            SegmentKind::Rocks => "rocksdb",
            SegmentKind::Chunked => "chunked",
            SegmentKind::Mmap => "mmap",
        }
    }

    /// Parse [`SegmentKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [SegmentKind::Rocks, SegmentKind::Chunked, SegmentKind::Mmap]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Whether this build can open segments of this kind (RocksDB needs
    /// the `rocksdb` cargo feature).
    pub fn is_available(self) -> bool {
        self != SegmentKind::Rocks || cfg!(feature = "rocksdb")
    }

    /// `Ok` when [`is_available`](Self::is_available), else an error that
    /// says which cargo feature `what` needs.
    pub fn require_available(self, what: &str) -> Result<()> {
        if self.is_available() {
            Ok(())
        } else {
            Err(rocksdb_feature_missing(what))
        }
    }

    /// Type names `segment.json` records for this kind with element `T`.
    pub fn backend_names<T: VectorElement>(self) -> [String; 3] {
        match self {
            #[cfg(feature = "rocksdb")]
            SegmentKind::Rocks => {
                names::<RocksVectorStorage<T>, RocksPayloadStorage, RocksIdMapper>()
            }
            #[cfg(not(feature = "rocksdb"))]
            SegmentKind::Rocks => rocks_names_spelled_out::<T>(),
            SegmentKind::Chunked => {
                names::<ChunkedVectorStorage<T>, ChunkedPayloadStorage, ChunkedIdMapper>()
            }
            SegmentKind::Mmap => names::<MmapVectorStorage<T>, MmapPayloadStorage, MmapIdMapper>(),
        }
    }
}

/// The names [`SegmentKind::backend_names`] gives the RocksDB kind, spelled
/// out so a build without the `rocksdb` feature still recognises (and
/// names) a RocksDB segment; a test checks them against the types. The
/// vector storage's element parameter defaults to `f32`, which
/// `type_name` leaves out.
#[cfg_attr(feature = "rocksdb", allow(dead_code))]
fn rocks_names_spelled_out<T: VectorElement>() -> [String; 3] {
    let vectors = if T::NAME == f32::NAME {
        "RocksVectorStorage".to_string()
    } else {
        format!("RocksVectorStorage<{}>", T::NAME)
    };
    [
        vectors,
        "RocksPayloadStorage".to_string(),
        "RocksIdMapper".to_string(),
    ]
}

fn names<V, P, I>() -> [String; 3] {
    [
        short_type_name::<V>(),
        short_type_name::<P>(),
        short_type_name::<I>(),
    ]
}

pub use crate::segment::short_type_name;

/// Which kind of segment `state` describes, and its element type name
/// (`f32`, `u8`), or `None` for combinations migration does not handle.
pub fn detect_kind(state: &SegmentState) -> Option<(SegmentKind, &'static str)> {
    // The stable names a newer `segment.json` records come first.
    if let (Some(kind), Some(element)) = (&state.kind, &state.element) {
        let element = [f32::NAME, u8::NAME].into_iter().find(|e| e == element);
        if let (Some(kind), Some(element)) = (SegmentKind::from_name(kind), element) {
            return Some((kind, element));
        }
    }
    let have = [
        state.backends.vectors.as_str(),
        state.backends.payloads.as_str(),
        state.backends.ids.as_str(),
    ];
    for kind in [SegmentKind::Rocks, SegmentKind::Chunked, SegmentKind::Mmap] {
        for (element, want) in [
            (f32::NAME, kind.backend_names::<f32>()),
            (u8::NAME, kind.backend_names::<u8>()),
        ] {
            if have == [want[0].as_str(), want[1].as_str(), want[2].as_str()] {
                return Some((kind, element));
            }
        }
    }
    None
}

/// `base` with its backend names replaced by those of `kind` for element `T`.
/// The durable sequences are cleared: they are the old storages' own
/// counters (a RocksDB sequence number means nothing to an mmap bitmap);
/// the next flush of the new segment records its own.
pub fn state_for_kind<T: VectorElement>(
    base: &SegmentState,
    kind: SegmentKind,
) -> Result<SegmentState> {
    let codec = |e: serde_json::Error| StorageError::Codec(Box::new(e));
    let mut value = serde_json::to_value(base).map_err(codec)?;
    let [vectors, payloads, ids] = kind.backend_names::<T>();
    value["backends"] = serde_json::json!({ "vectors": vectors, "payloads": payloads, "ids": ids });
    let mut state: SegmentState = serde_json::from_value(value).map_err(codec)?;
    state.durable_sequences = [None; 3];
    state.kind = Some(kind.name().to_string());
    state.element = Some(T::NAME.to_string());
    Ok(state)
}

/// Create an empty RocksDB segment in `dir`.
#[cfg(feature = "rocksdb")]
pub fn create_rocks_segment<T: VectorElement>(
    dir: &Path,
    dim: usize,
    distance: Distance,
    options: &RocksOptions,
) -> Result<RocksSegment<T>> {
    let (v, p, i) = vecseg_rocksdb::create_storages(dir, dim, distance, options)?;
    Segment::create(dir, v, p, i)
}

/// Open the RocksDB segment in `dir`.
#[cfg(feature = "rocksdb")]
pub fn open_rocks_segment<T: VectorElement>(
    dir: &Path,
    options: &RocksOptions,
) -> Result<RocksSegment<T>> {
    let (v, p, i) = vecseg_rocksdb::open_storages(dir, options)?;
    Segment::open(dir, v, p, i)
}

/// Open the RocksDB segment in `dir` without `Segment::open`'s repair
/// (which may write): the source of an upgrade is only ever read.
#[cfg(feature = "rocksdb")]
pub fn open_rocks_segment_unrepaired<T: VectorElement>(
    dir: &Path,
    state: &SegmentState,
    options: &RocksOptions,
) -> Result<RocksSegment<T>> {
    let (v, p, i) = vecseg_rocksdb::open_storages(dir, options)?;
    let mut s = Segment::new(v, p, i);
    s.version = state.version;
    s.persisted_version = state.version;
    s.dir = Some(dir.to_path_buf());
    s.load_index(state.payload_index.clone().unwrap_or_default())?;
    Ok(s)
}

/// Create an empty chunked segment in `dir` with default geometry.
pub fn create_chunked_segment<T: VectorElement>(
    dir: &Path,
    dim: usize,
    distance: Distance,
) -> Result<ChunkedSegment<T>> {
    let l = SegmentLayout::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let v =
        ChunkedVectorStorage::create(&l.vectors(), dim, distance, ChunkedVectorOptions::default())?;
    let p = ChunkedPayloadStorage::create(&l.payloads(), ChunkedPayloadOptions::default())?;
    let i = ChunkedIdMapper::create(&l.ids())?;
    Segment::create(dir, v, p, i)
}

/// Open the three chunked storages of `dir` without reading `segment.json`
/// (for staging segments whose state file is not written yet).
pub fn open_chunked_storages<T: VectorElement>(
    dir: &Path,
) -> Result<(
    ChunkedVectorStorage<T>,
    ChunkedPayloadStorage,
    ChunkedIdMapper,
)> {
    let l = SegmentLayout::new(dir);
    Ok((
        ChunkedVectorStorage::open(&l.vectors())?,
        ChunkedPayloadStorage::open(&l.payloads())?,
        ChunkedIdMapper::open(&l.ids())?,
    ))
}

/// Open the chunked segment in `dir`.
pub fn open_chunked_segment<T: VectorElement>(dir: &Path) -> Result<ChunkedSegment<T>> {
    let (v, p, i) = open_chunked_storages(dir)?;
    Segment::open(dir, v, p, i)
}

/// Open the mmap segment in `dir`.
pub fn open_mmap_segment<T: VectorElement>(
    dir: &Path,
    options: &MmapVectorOptions,
) -> Result<MmapSegment<T>> {
    let l = SegmentLayout::new(dir);
    let v = MmapVectorStorage::open(&l.vectors(), options.clone())?;
    let p = MmapPayloadStorage::open(&l.payloads())?;
    let i = MmapIdMapper::open(&l.ids())?;
    Segment::open(dir, v, p, i)
}

/// Subdirectory of a segment directory holding its quantized layer
/// (`quantized.meta` + `codes/`, see `docs/file-formats.md`).
pub const QUANTIZED_DIR: &str = "quantized";

/// An mmap segment whose search scores through codes of codec `Q` in an
/// immutable mmap file (vector reads still return the raw vectors).
pub type QuantizedMmapSegment<Q, T = f32> =
    Segment<Quantized<MmapVectorStorage<T>, Q, MmapCodes>, MmapPayloadStorage, MmapIdMapper>;

/// Put a quantized layer over an mmap segment: train `Q` on its vectors,
/// write the codes to `<dir>/quantized/` and return the segment scoring
/// through them. The segment directory stays an mmap segment (its
/// `segment.json` names the raw layout); open it again with
/// [`open_quantized_mmap_segment`].
pub fn quantize_mmap_segment<Q: Codec>(
    segment: MmapSegment<f32>,
    config: &Q::Config,
    options: &MmapVectorOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<QuantizedMmapSegment<Q>> {
    let dir = segment
        .dir()
        .map(|d| d.join(QUANTIZED_DIR))
        .ok_or_else(|| StorageError::InvalidArgument("the segment has no directory".into()))?;
    segment.map_vectors(|v| Quantized::build_mmap(v, &dir, config, options.clone(), progress))
}

/// Open the mmap segment in `dir` with the quantized layer
/// [`quantize_mmap_segment`] wrote.
pub fn open_quantized_mmap_segment<Q: Codec>(
    dir: &Path,
    options: &MmapVectorOptions,
) -> Result<QuantizedMmapSegment<Q>> {
    let codes = dir.join(QUANTIZED_DIR);
    open_mmap_segment::<f32>(dir, options)?
        .map_vectors(|v| Quantized::open_mmap(v, &codes, options.clone()))
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;

    #[test]
    fn spelled_out_rocksdb_names_match_the_types() {
        fn check<T: VectorElement>() {
            assert_eq!(
                rocks_names_spelled_out::<T>(),
                SegmentKind::Rocks.backend_names::<T>()
            );
        }
        check::<f32>();
        check::<u8>();
        assert_eq!(ROCKSDB_DIR, vecseg_rocksdb::DB_DIR);
    }
}

#[cfg(test)]
mod stable_kind_tests {
    use super::*;

    #[test]
    fn segment_json_records_the_stable_kind_which_outlives_type_names() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join("s");
        let mut s = create_chunked_segment::<f32>(&seg, 2, Distance::Dot).unwrap();
        s.flush().unwrap();
        drop(s);
        let mut state = SegmentState::read(&seg).unwrap();
        assert_eq!(state.kind.as_deref(), Some("chunked"));
        assert_eq!(state.element.as_deref(), Some("f32"));
        assert_eq!(detect_kind(&state), Some((SegmentKind::Chunked, "f32")));
        // Another compiler spells the type names differently: the kind
        // still identifies the segment, and it opens as that kind.
        state.backends.vectors = "vecseg_chunked::vector::ChunkedVectorStorage<f32>".into();
        state.write(&seg).unwrap();
        assert_eq!(
            detect_kind(&SegmentState::read(&seg).unwrap()),
            Some((SegmentKind::Chunked, "f32"))
        );
        open_chunked_segment::<f32>(&seg).unwrap();
        // Without a recorded kind, a spelling mismatch is still refused.
        let mut state = SegmentState::read(&seg).unwrap();
        state.kind = None;
        state.backends.vectors = "SomethingElse".into();
        state.write(&seg).unwrap();
        assert!(open_chunked_segment::<f32>(&seg).is_err());
        assert_eq!(detect_kind(&SegmentState::read(&seg).unwrap()), None);
    }
}
