//! `collection.json`: which segment directories belong to a collection,
//! the kind of each (a stable name, see [`SegmentKind::name`]), which one
//! takes new points, and the collection's fixed settings. Written sealed
//! and atomically (temp, fsync, rename, directory fsync), so a crash leaves
//! the old list or the new one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vecseg_traits::fsutil::{read_sealed, write_sealed};
use vecseg_traits::{Distance, FieldSchema, Result, StorageError};

use super::optimizer::OptimizerOptions;
use super::quantization::Quantization;
use super::wal::Durability;
use crate::index::hnsw::HnswConfig;
use crate::kinds::SegmentKind;

/// Name of the manifest file in a collection directory.
pub const MANIFEST_FILE: &str = "collection.json";
/// Format version of the manifest.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// One segment of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Directory name under `segments/`.
    pub name: String,
    /// Stable kind name (`chunked`, `mmap`, `rocksdb`).
    pub kind: String,
    /// The codes the segment carries beside its vectors (mmap segments
    /// built while the collection asked for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
}

impl SegmentRecord {
    /// The recorded kind, or `Corrupted` naming the manifest.
    pub fn kind(&self, manifest: &Path) -> Result<SegmentKind> {
        SegmentKind::from_name(&self.kind).ok_or_else(|| {
            StorageError::corrupted(
                manifest,
                format!("segment {} has unknown kind {:?}", self.name, self.kind),
            )
        })
    }
}

/// Contents of `collection.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// Vector dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// WAL file capacity in bytes.
    pub wal_file_capacity: u64,
    /// WAL durability.
    pub wal_durability: Durability,
    /// Every segment, the appendable one included.
    pub segments: Vec<SegmentRecord>,
    /// Name of the segment new points go to (one of `segments`).
    pub appendable: String,
    /// Number used for the next segment directory name.
    pub next_segment: u64,
    /// Indexed payload keys: every segment, and every segment created
    /// later, indexes them (absent in manifests of older builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload_indexes: Vec<FieldSchema>,
    /// When the optimizer rebuilds segments (defaults in manifests of
    /// older builds).
    #[serde(default)]
    pub optimizer: OptimizerOptions,
    /// Codes the optimizer writes beside every segment it builds (none
    /// when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// The HNSW index the optimizer builds over every segment it builds
    /// that is large enough (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<HnswConfig>,
}

impl Manifest {
    /// Read and check `dir/collection.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_sealed(&path)?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::corrupted(&path, format!("invalid JSON: {e}")))?;
        if m.format_version != MANIFEST_FORMAT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path,
                found: m.format_version,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        if !m.segments.iter().any(|s| s.name == m.appendable) {
            return Err(StorageError::corrupted(
                &path,
                format!("appendable segment {} is not listed", m.appendable),
            ));
        }
        for s in &m.segments {
            s.kind(&path)?;
        }
        Ok(m)
    }

    /// Write `dir/collection.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StorageError::Codec(Box::new(e)))?;
        write_sealed(&dir.join(MANIFEST_FILE), &bytes)
    }

    /// A fresh segment directory name (`seg-000001`, ...), advancing the
    /// counter.
    pub fn new_segment_name(&mut self) -> String {
        self.next_segment += 1;
        format!("seg-{:06}", self.next_segment)
    }
}
