//! Segment directory layout and the concrete segment types migration
//! knows how to open: RocksDB, chunked and mmap.
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
    ChunkedConfig, ChunkedIdMapper, ChunkedPayloadStorage, ChunkedVectorStorage, PayloadOptions,
};
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};
use vecseg_rocksdb::{RocksIdMapper, RocksOptions, RocksPayloadStorage, RocksVectorStorage};
use vecseg_traits::{Distance, Result, StorageError, VectorElement};

use super::copy::MmapSegment;
use crate::segment::SegmentState;
use crate::Segment;

/// A segment over the three RocksDB storages sharing one database.
pub type RocksSegment<T = f32> = Segment<RocksVectorStorage<T>, RocksPayloadStorage, RocksIdMapper>;
/// A segment over the three appendable chunked (mmap-backed) storages.
pub type ChunkedSegment<T = f32> =
    Segment<ChunkedVectorStorage<T>, ChunkedPayloadStorage, ChunkedIdMapper>;

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
        self.dir.join(vecseg_rocksdb::DB_DIR)
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

    /// Type names `segment.json` records for this kind with element `T`.
    pub fn backend_names<T: VectorElement>(self) -> [String; 3] {
        match self {
            SegmentKind::Rocks => {
                names::<RocksVectorStorage<T>, RocksPayloadStorage, RocksIdMapper>()
            }
            SegmentKind::Chunked => {
                names::<ChunkedVectorStorage<T>, ChunkedPayloadStorage, ChunkedIdMapper>()
            }
            SegmentKind::Mmap => names::<MmapVectorStorage<T>, MmapPayloadStorage, MmapIdMapper>(),
        }
    }
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
pub fn state_for_kind<T: VectorElement>(
    base: &SegmentState,
    kind: SegmentKind,
) -> Result<SegmentState> {
    let codec = |e: serde_json::Error| StorageError::Codec(Box::new(e));
    let mut value = serde_json::to_value(base).map_err(codec)?;
    let [vectors, payloads, ids] = kind.backend_names::<T>();
    value["backends"] = serde_json::json!({ "vectors": vectors, "payloads": payloads, "ids": ids });
    serde_json::from_value(value).map_err(codec)
}

/// Create an empty RocksDB segment in `dir`.
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
pub fn open_rocks_segment<T: VectorElement>(
    dir: &Path,
    options: &RocksOptions,
) -> Result<RocksSegment<T>> {
    let (v, p, i) = vecseg_rocksdb::open_storages(dir, options)?;
    Segment::open(dir, v, p, i)
}

/// Open the RocksDB segment in `dir` without `Segment::open`'s repair
/// (which may write): the source of an upgrade is only ever read.
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
    let v = ChunkedVectorStorage::create(&l.vectors(), dim, distance, ChunkedConfig::default())?;
    let p = ChunkedPayloadStorage::create(&l.payloads(), PayloadOptions::default())?;
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

/// [`read_batch`](super::read_batch) for a RocksDB segment through one
/// forward iterator per column family instead of point lookups per offset
/// (returns exactly what `read_batch` returns; a test checks it).
pub fn read_rocks_batch<T: VectorElement>(
    s: &RocksSegment<T>,
    range: std::ops::Range<usize>,
) -> Result<super::SlotBatch<T>> {
    use vecseg_traits::{IdMapperRead, PointOffset, Sequential, VectorStorageRead};
    let dim = s.vectors.dim();
    let clamp = |x: usize| x.min(u32::MAX as usize) as PointOffset;
    let vec_end = range.end.min(s.vectors.total_count()).max(range.start);
    let offsets: Vec<PointOffset> = (range.start..vec_end).map(|o| o as PointOffset).collect();
    let mut vectors = vec![T::default(); offsets.len() * dim];
    s.vectors.get_batch::<Sequential>(&offsets, &mut |i, v| {
        if v.len() == dim {
            vectors[i * dim..(i + 1) * dim].copy_from_slice(v);
        }
    })?;
    let deleted = offsets.iter().map(|&o| s.vectors.is_deleted(o)).collect();
    let len = range.len();
    let start = range.start;
    let mut payloads = vec![vecseg_traits::Payload::new(); len];
    s.payloads
        .scan_range(clamp(range.start)..clamp(range.end), &mut |o, p| {
            payloads[o as usize - start] = p;
        })?;
    let id_end = range.end.min(s.ids.total_count()).max(range.start);
    let mut mappings = vec![None; id_end - start];
    let id_range = clamp(start)..clamp(id_end);
    s.ids.scan_external(id_range.clone(), &mut |o, id| {
        mappings[o as usize - start] = Some((id, None));
    })?;
    s.ids.scan_versions(id_range, &mut |o, v| {
        if let Some(Some((_, version))) = mappings.get_mut(o as usize - start) {
            *version = Some(v);
        }
    })?;
    Ok(super::SlotBatch {
        start: start as PointOffset,
        dim,
        vector_slots: offsets.len(),
        vectors,
        deleted,
        payloads,
        mappings,
    })
}
