//! [`Segment<V, P, I>`]: points stored across a vector storage `V`, a
//! payload storage `P` and an id mapper `I`, each chosen by type.
//!
//! | file        | what it holds                                                |
//! |-------------|--------------------------------------------------------------|
//! | `mod.rs`    | the struct, constructors, open-time repair, flush             |
//! | `write.rs`  | upsert, delete and payload writes with version checks         |
//! | `read.rs`   | get, scroll                                                   |
//! | `search.rs` | exact top-k search (bounded heap, rayon across chunks)        |
//! | `state.rs`  | `segment.json`: the persisted segment version and backend kinds |
//! | `entry.rs`  | the object-safe [`SegmentEntry`] impls                        |
//!
//! Invariant: an offset is live exactly when its vector is not flagged
//! deleted and the id mapper maps it; every write keeps both in step, and
//! [`Segment::open`] repairs what a crash between two flushes can leave.

mod entry;
mod read;
mod search;
mod state;
mod write;

use std::path::{Path, PathBuf};

pub use search::ScanOptions;
pub use state::{short_type_name, BackendNames, SegmentState, STATE_FILE};

use vecseg_traits::{
    Distance, IdMapper, IdMapperRead, PayloadStorage, PayloadStorageRead, PointOffset, Result,
    StorageError, VectorStorage, VectorStorageRead, Version,
};

/// A segment: vectors `V`, payloads `P`, id map `I`.
///
/// Which operations exist depends on the storages: reads and search need the
/// read halves; delete and flush the write halves; upsert and payload writes
/// need all three appendable (see the `AppendableSegmentEntry` impl).
#[derive(Debug)]
pub struct Segment<V, P, I> {
    pub(crate) vectors: V,
    pub(crate) payloads: P,
    pub(crate) ids: I,
    pub(crate) version: Version,
    pub(crate) persisted_version: Version,
    pub(crate) dir: Option<PathBuf>,
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// An in-memory segment over fresh storages (nothing is persisted by
    /// flush beyond what the storages themselves do).
    pub fn new(vectors: V, payloads: P, ids: I) -> Self {
        Segment {
            vectors,
            payloads,
            ids,
            version: 0,
            persisted_version: 0,
            dir: None,
        }
    }

    /// The vector storage.
    pub fn vectors(&self) -> &V {
        &self.vectors
    }

    /// The payload storage.
    pub fn payloads(&self) -> &P {
        &self.payloads
    }

    /// The id mapper.
    pub fn ids(&self) -> &I {
        &self.ids
    }

    /// Take the segment apart.
    pub fn into_parts(self) -> (V, P, I) {
        (self.vectors, self.payloads, self.ids)
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.vectors.dim()
    }

    /// Distance of the vectors.
    pub fn distance(&self) -> Distance {
        self.vectors.distance()
    }

    /// Largest applied operation version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Number of live points.
    pub fn point_count(&self) -> usize {
        self.ids.available_count()
    }

    /// The directory holding `segment.json`, for persistent segments.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

impl<V: VectorStorage, P: PayloadStorage, I: IdMapper> Segment<V, P, I> {
    /// A new persistent segment in `dir` over freshly created storages;
    /// writes `segment.json` at once.
    pub fn create(dir: &Path, vectors: V, payloads: P, ids: I) -> Result<Self> {
        let mut segment = Segment::new(vectors, payloads, ids);
        segment.dir = Some(dir.to_path_buf());
        segment.write_state()?;
        Ok(segment)
    }

    /// Open a persistent segment whose storages were opened from `dir`.
    ///
    /// Reads the persisted version from `segment.json`, then repairs what an
    /// interrupted flush can leave behind: a point with a mapping but no
    /// version is dropped, and a vector with no mapping is flagged deleted.
    pub fn open(dir: &Path, vectors: V, payloads: P, ids: I) -> Result<Self> {
        let state = SegmentState::read(dir)?;
        let state_path = dir.join(STATE_FILE);
        let expected = state::BackendNames::of::<V, P, I>();
        if state.backends != expected {
            return Err(StorageError::InvalidArgument(format!(
                "{} holds {} / {} / {}, but was opened as {} / {} / {}",
                dir.display(),
                state.backends.vectors,
                state.backends.payloads,
                state.backends.ids,
                expected.vectors,
                expected.payloads,
                expected.ids
            )));
        }
        if state.dim != vectors.dim() || state.distance != vectors.distance() {
            return Err(StorageError::corrupted(
                &state_path,
                format!(
                    "segment is {} dims / {}, but its vector storage is {} dims / {}",
                    state.dim,
                    state.distance.name(),
                    vectors.dim(),
                    vectors.distance().name()
                ),
            ));
        }
        let mut segment = Segment {
            vectors,
            payloads,
            ids,
            version: state.version,
            persisted_version: state.version,
            dir: Some(dir.to_path_buf()),
        };
        segment.repair()?;
        Ok(segment)
    }

    fn repair(&mut self) -> Result<()> {
        let unversioned: Vec<_> = self
            .ids
            .iter_from(None)
            .filter(|(_, o)| self.ids.version(*o).is_none())
            .map(|(id, _)| id)
            .collect();
        for id in unversioned {
            if let Some(o) = self.ids.drop_id(id)? {
                self.clear_slot(o)?;
            }
        }
        let total = self.vectors.total_count() as PointOffset;
        for o in 0..total {
            if !self.vectors.is_deleted(o) && self.ids.external(o).is_none() {
                self.vectors.delete(o)?;
            }
        }
        Ok(())
    }

    /// Flag the vector deleted and drop the payload of a slot whose mapping is gone.
    pub(crate) fn clear_slot(&mut self, o: PointOffset) -> Result<()> {
        if (o as usize) < self.vectors.total_count() {
            self.vectors.delete(o)?;
        }
        self.payloads.clear(o)?;
        Ok(())
    }

    /// Persist everything in crash-safe order: id mappings, vectors,
    /// payloads, versions, then the segment version in `segment.json`.
    /// Returns the persisted version.
    pub fn flush(&mut self) -> Result<Version> {
        let version = self.version;
        self.ids.flush_mappings()?;
        self.vectors.flush()?;
        self.payloads.flush()?;
        self.ids.flush_versions()?;
        if self.dir.is_some() {
            self.write_state_with(version)?;
        }
        self.persisted_version = version;
        Ok(version)
    }

    fn write_state(&self) -> Result<()> {
        self.write_state_with(self.version)
    }

    fn write_state_with(&self, version: Version) -> Result<()> {
        if let Some(dir) = &self.dir {
            SegmentState {
                format_version: state::FORMAT_VERSION,
                version,
                dim: self.vectors.dim(),
                distance: self.vectors.distance(),
                backends: state::BackendNames::of::<V, P, I>(),
            }
            .write(dir)?;
        }
        Ok(())
    }
}
