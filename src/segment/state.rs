//! `segment.json`: the small state file of a persistent segment.
//!
//! It holds the segment's persisted version (the last step of every flush),
//! the dimension and distance, and the names of the three storage types so
//! `vecseg inspect` and migration know what the directory contains. It also
//! records how many offsets the id mapper and the vector storage held at
//! that flush: offsets are never reused, so a storage that opens with fewer
//! lost flushed data (e.g. a RocksDB `MANIFEST` cut back to an older state)
//! and the segment refuses to open. It is replaced atomically (temp file,
//! rename, directory fsync) and sealed with a CRC-32C line
//! ([`vecseg_traits::fsutil::seal`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use vecseg_traits::fsutil::{read_sealed, write_sealed};
use vecseg_traits::VectorStorageRead;

use super::hnsw::HnswState;
use super::tenants::TenantTable;
use crate::index::payload::PayloadIndexState;
use vecseg_traits::{Distance, Result, StorageError, Version};

/// File name of the state file inside a segment directory.
pub const STATE_FILE: &str = "segment.json";
/// Format version of `segment.json` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Names of the storage types a segment directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendNames {
    /// Vector storage type, e.g. `ChunkedVectorStorage<f32>`.
    pub vectors: String,
    /// Payload storage type.
    pub payloads: String,
    /// Id mapper type.
    pub ids: String,
}

impl BackendNames {
    /// Names of `V`, `P`, `I` without module paths.
    pub fn of<V, P, I>() -> Self {
        BackendNames {
            vectors: short_type_name::<V>(),
            payloads: short_type_name::<P>(),
            ids: short_type_name::<I>(),
        }
    }

    /// Names of a segment's storages as its directory records them: the
    /// vector storage by [`VectorStorageRead::layout_type_name`] (a
    /// quantized layer records the raw storage underneath).
    pub fn of_storages<V: VectorStorageRead, P, I>() -> Self {
        BackendNames {
            vectors: shorten_type_name(V::layout_type_name()),
            payloads: short_type_name::<P>(),
            ids: short_type_name::<I>(),
        }
    }
}

/// `std::any::type_name` with every module path removed.
pub fn short_type_name<T: ?Sized>() -> String {
    shorten_type_name(std::any::type_name::<T>())
}

/// A type name with every module path removed.
pub fn shorten_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut token = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            out.push_str(token.rsplit("::").next().unwrap_or(&token));
            token.clear();
            out.push(c);
        }
    }
    out.push_str(token.rsplit("::").next().unwrap_or(&token));
    out
}

/// Contents of `segment.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentState {
    /// Format version of this file.
    pub format_version: u32,
    /// Persisted segment version.
    pub version: Version,
    /// Vector dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// Storage types.
    pub backends: BackendNames,
    /// Offsets the id mapper held at the last flush (0 in files of older builds).
    #[serde(default)]
    pub id_total: u64,
    /// Slots the vector storage held at the last flush (0 in older files).
    #[serde(default)]
    pub vector_total: u64,
    /// The storages' durable sequence numbers at the last flush (vectors,
    /// payloads, ids; `None` for backends without one). Stored as
    /// `storage_sequences`: files of earlier builds named it
    /// `durable_sequences` and could carry a RocksDB sequence into a
    /// migrated segment, so that key is ignored.
    #[serde(default, rename = "storage_sequences")]
    pub durable_sequences: [Option<u64>; 3],
    /// Stable name of the segment kind (`chunked`, `mmap`, `rocksdb`; see
    /// [`crate::kinds::SegmentKind::name`]), when the backends form one.
    /// Unlike the type names above it does not depend on the compiler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Element type name of the vectors (`f32`, `u8`), with `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// The payload indexes: indexed keys, and offsets whose payload
    /// changed after the immutable index files were written. Absent when
    /// no key is indexed (and in files of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_index: Option<PayloadIndexState>,
    /// Tenant runs of a segment built ordered by the tenant key (absent
    /// otherwise, and in files of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<TenantTable>,
    /// The HNSW index in `hnsw/` (absent when none was built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw: Option<HnswState>,
}

impl SegmentState {
    /// Read and validate `dir/segment.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let bytes = read_sealed(&path)?;
        let state: SegmentState = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::corrupted(&path, format!("invalid JSON: {e}")))?;
        if state.format_version != FORMAT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path,
                found: state.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(state)
    }

    /// Write `dir/segment.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StorageError::Codec(Box::new(e)))?;
        write_sealed(&dir.join(STATE_FILE), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_paths() {
        assert_eq!(short_type_name::<Vec<std::string::String>>(), "Vec<String>");
        assert_eq!(
            short_type_name::<std::collections::HashMap<u32, Vec<u8>>>(),
            "HashMap<u32, Vec<u8>>"
        );
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let state = SegmentState {
            format_version: FORMAT_VERSION,
            version: 42,
            dim: 8,
            distance: Distance::Cosine,
            backends: BackendNames::of::<u8, u16, u32>(),
            id_total: 3,
            vector_total: 4,
            durable_sequences: [None, Some(7), None],
            kind: Some("chunked".into()),
            element: Some("f32".into()),
            payload_index: None,
            tenants: None,
            hnsw: None,
        };
        state.write(dir.path()).unwrap();
        assert_eq!(SegmentState::read(dir.path()).unwrap(), state);
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(
            SegmentState::read(dir.path()),
            Err(StorageError::Corrupted { .. })
        ));
        let mut future = state.clone();
        future.format_version = 99;
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&future).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            SegmentState::read(dir.path()),
            Err(StorageError::UnsupportedVersion { found: 99, .. })
        ));
    }
}
