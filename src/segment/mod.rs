//! [`Segment<V, P, I>`]: points stored across a vector storage `V`, a
//! payload storage `P` and an id mapper `I`, each chosen by type.
//!
//! | file        | what it holds                                                |
//! |-------------|--------------------------------------------------------------|
//! | `mod.rs`    | the struct, constructors, open-time repair, flush             |
//! | `write.rs`  | upsert, delete and payload writes with version checks         |
//! | `read.rs`   | get, scroll                                                   |
//! | `search.rs` | exact top-k search (bounded heap, rayon across chunks)        |
//! | `hnsw.rs`   | the HNSW index of a segment: build, load, the graph path of a search |
//! | `filter.rs` | the filter planner (index candidates or full scan) and checks |
//! | `index.rs`  | creating, dropping and loading payload indexes                |
//! | `state.rs`  | `segment.json`: the persisted segment version and backend kinds |
//! | `tenants.rs`| the tenant → offset range table of a defragmented segment, the locality measure |
//! | `entry.rs`  | the object-safe [`crate::SegmentEntry`] impls                      |
//! | `verify.rs` | the full read pass of `vecseg inspect --verify`               |
//!
//! Invariant: an offset is live exactly when its vector is not flagged
//! deleted and the id mapper maps it; every write keeps both in step, and
//! [`Segment::open`] repairs what a crash between two flushes can leave.
//!
//! ## Crash consistency
//!
//! A process can die at any instant, and whatever it wrote into a shared
//! mapping or a file survives. Three rules make a reopened segment equal to
//! its last completed flush plus, per point, nothing or whole later
//! operations:
//!
//! 1. **Durable offsets are never overwritten.** An upsert of a point whose
//!    offset a mapping on disk may name (below
//!    [`IdMapperRead::durable_offsets`]) writes the new version to a fresh
//!    offset and retires the old one (copy-on-write inside the segment);
//!    only a point no mapping on disk names yet is overwritten in place. Payload-only changes stay in place: payload
//!    storages write new bytes elsewhere and switch a pointer at flush.
//! 2. **Vouchers after the data they vouch for.** [`Segment::flush`] makes
//!    durable, in order: vectors (data and count), payloads, versions, id
//!    mappings, deleted flags, then clears the payloads of retired offsets,
//!    then writes `segment.json`. Storages buffer versions, mappings,
//!    counts, tracker pointers and deleted flags in RAM until their step.
//!    A backend whose writes are durable at once (RocksDB) gets the same
//!    order from the write path: data, then mapping and version together
//!    ([`vecseg_traits::AppendableIdMapper::set_link`]), then the retired offset's flag.
//! 3. **Open repairs the leftovers** of a flush that did not complete (see
//!    [`Segment::open`]).
//!
//! So a version on disk implies the point's vector and payload of at least
//! that version are on disk. A kill during a flush can leave a point whose
//! payload change reached disk while its version did not (content of a
//! whole later operation, older version): replaying the WAL from the
//! persisted version re-applies it, and every operation is idempotent.

mod batch;
mod entry;
mod filter;
mod hnsw;
mod index;
mod read;
mod search;
mod state;
mod tenants;
mod verify;
mod write;

use std::path::{Path, PathBuf};

use crate::index::payload::PayloadIndex;

pub use batch::PointInput;
pub use filter::{FilterPlan, PlanKind, INDEXED_PLAN_SHARE};
pub use hnsw::{HnswState, HNSW_DIR};
pub use search::ScanOptions;
pub use state::{short_type_name, BackendNames, SegmentState, STATE_FILE};
pub use tenants::{tenant_value, TenantLocality, TenantRange, TenantTable, PAGE_BYTES};
pub use verify::VerifyReport;

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
    /// Offsets unmapped since the last flush whose payloads are cleared
    /// only once the mappings that stopped pointing at them are durable.
    pub(crate) retired: Vec<PointOffset>,
    /// Field indexes over the payloads (empty: filters read payloads).
    pub(crate) index: PayloadIndex,
    /// Tenant runs recorded by a defragmenting build (`None` otherwise).
    pub(crate) tenants: Option<TenantTable>,
    /// The HNSW vector index, once built.
    pub(crate) hnsw: Option<hnsw::SegmentHnsw>,
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
            retired: Vec::new(),
            index: PayloadIndex::default(),
            tenants: None,
            hnsw: None,
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

    /// This segment with its vector storage replaced by `f(vectors)`,
    /// keeping payloads, ids, versions and directory: how a quantized
    /// layer is put over a segment's vectors.
    ///
    /// ```
    /// use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
    /// use vecseg::quantized::{InRamCodes, Quantized, ScalarConfig, ScalarU8};
    /// use vecseg::{Distance, Payload, PointId, Segment};
    ///
    /// let mut s = Segment::new(
    ///     MemoryVectorStorage::<f32>::new(2, Distance::Dot)?,
    ///     MemoryPayloadStorage::new(),
    ///     MemoryIdMapper::new(),
    /// );
    /// for i in 0..10u64 {
    ///     s.upsert(1, PointId::Num(i), &[i as f32, 1.0], &Payload::new())?;
    /// }
    /// let q = s.map_vectors(|v| {
    ///     Quantized::<_, ScalarU8, InRamCodes>::build_in_ram(v, &ScalarConfig::default())
    /// })?;
    /// assert_eq!(q.search(&[1.0, 0.0], 1, None)?[0].id, PointId::Num(9));
    /// # Ok::<(), vecseg::StorageError>(())
    /// ```
    pub fn map_vectors<W, F>(self, f: F) -> Result<Segment<W, P, I>>
    where
        W: VectorStorageRead,
        F: FnOnce(V) -> Result<W>,
    {
        let before = self.vectors.total_count();
        let vectors = f(self.vectors)?;
        if vectors.total_count() != before {
            return Err(StorageError::InvalidArgument(format!(
                "the new vector storage has {} slots, the old one had {before}",
                vectors.total_count()
            )));
        }
        Ok(Segment {
            vectors,
            payloads: self.payloads,
            ids: self.ids,
            version: self.version,
            persisted_version: self.persisted_version,
            dir: self.dir,
            retired: self.retired,
            index: self.index,
            tenants: self.tenants,
            hnsw: self.hnsw,
        })
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
    /// Reads `segment.json` (the persisted version, and the offset counts
    /// of the last flush: a storage holding fewer lost flushed data, an
    /// error), then repairs what a flush that did not complete leaves:
    ///
    /// * a mapping to an offset past the vector count is dropped (its data
    ///   never became durable);
    /// * a live vector without a mapping is flagged deleted and its
    ///   payload cleared (an upsert whose mapping never became durable, or
    ///   an offset retired by a flushed mapping change);
    /// * a mapping to a vector flagged deleted, or without a version,
    ///   cannot come from a crash (flags are written after mappings,
    ///   versions before them): that is corruption, an error.
    ///
    /// Stale versions of unmapped offsets need no repair: a mapping is
    /// always created together with its version.
    pub fn open(dir: &Path, vectors: V, payloads: P, ids: I) -> Result<Self> {
        let state = SegmentState::read(dir)?;
        let state_path = dir.join(STATE_FILE);
        let expected = state::BackendNames::of_storages::<V, P, I>();
        // The recorded kind settles it when the type names changed spelling
        // (another compiler): the same kind opened as the same types.
        let same_kind = state.kind.is_some() && {
            let mut probe = state.clone();
            probe.backends = expected.clone();
            probe.kind = None;
            crate::kinds::detect_kind(&probe).map(|(k, e)| (k.name(), e))
                == state.kind.as_deref().zip(state.element.as_deref())
        };
        if state.backends != expected && !same_kind {
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
        for (what, now, flushed) in [
            ("id mapper", ids.total_count(), state.id_total),
            ("vector storage", vectors.total_count(), state.vector_total),
        ] {
            if (now as u64) < flushed {
                return Err(StorageError::corrupted(
                    dir,
                    format!(
                        "flushed data missing: the {what} holds {now} offsets, the last flush recorded {flushed}"
                    ),
                ));
            }
        }
        let now = [
            vectors.durable_sequence(),
            payloads.durable_sequence(),
            ids.durable_sequence(),
        ];
        for (what, (now, flushed)) in ["vector", "payload", "id"]
            .iter()
            .zip(now.iter().zip(state.durable_sequences))
        {
            if let (Some(now), Some(flushed)) = (now, flushed) {
                if *now < flushed {
                    return Err(StorageError::corrupted(
                        dir,
                        format!(
                            "flushed data missing: the {what} storage is at sequence {now}, the last flush recorded {flushed}"
                        ),
                    ));
                }
            }
        }
        let mut segment = Segment {
            vectors,
            payloads,
            ids,
            version: state.version,
            persisted_version: state.version,
            dir: Some(dir.to_path_buf()),
            retired: Vec::new(),
            index: PayloadIndex::default(),
            tenants: state.tenants.clone(),
            hnsw: None,
        };
        segment.repair()?;
        segment.load_index(state.payload_index.unwrap_or_default())?;
        segment.load_hnsw(state.hnsw);
        Ok(segment)
    }

    fn repair(&mut self) -> Result<()> {
        let vector_total = self.vectors.total_count();
        let mut orphaned = Vec::new();
        for entry in self.ids.iter_from(None) {
            let (id, o) = entry?;
            if o as usize >= vector_total {
                log::warn!("repair: point {id} maps to offset {o} past the {vector_total} vectors; dropped");
                orphaned.push(id);
            } else if self.ids.version(o)?.is_none() {
                return Err(StorageError::corrupted(
                    self.dir.as_deref().unwrap_or(Path::new("")),
                    format!("point {id} at offset {o} has no version (a mapping is always written after its version)"),
                ));
            } else if self.vectors.is_deleted(o) {
                return Err(StorageError::corrupted(
                    self.dir.as_deref().unwrap_or(Path::new("")),
                    format!("point {id} maps to offset {o}, whose vector is flagged deleted"),
                ));
            }
        }
        for id in orphaned {
            if let Some(o) = self.ids.drop_id(id)? {
                self.discard_slot(o)?;
            }
        }
        for o in 0..vector_total as PointOffset {
            if !self.vectors.is_deleted(o) && self.ids.external(o)?.is_none() {
                self.discard_slot(o)?;
            }
        }
        Ok(())
    }

    /// Flag the vector deleted and clear the payload of a slot that no
    /// mapping on disk points at, at once. Repair uses it: such a slot may
    /// be handed out again (it can lie past the id mapper's count), so its
    /// payload must not be cleared later.
    fn discard_slot(&mut self, o: PointOffset) -> Result<()> {
        if (o as usize) < self.vectors.total_count() {
            self.vectors.delete(o)?;
        }
        self.payloads.clear(o)?;
        Ok(())
    }

    /// Flag the vector deleted and, once the next flush has made the
    /// unmapping durable, clear the payload of a slot whose mapping is gone.
    pub(crate) fn clear_slot(&mut self, o: PointOffset) -> Result<()> {
        if (o as usize) < self.vectors.total_count() {
            self.vectors.delete(o)?;
        }
        self.index.remove(o);
        self.retired.push(o);
        Ok(())
    }

    /// Persist everything in crash-safe order (see the module docs):
    /// vectors, payloads, versions, id mappings, deleted flags, payloads of
    /// retired offsets, then `segment.json`. Returns the persisted version.
    pub fn flush(&mut self) -> Result<Version> {
        let version = self.version;
        self.vectors.flush_data()?;
        self.payloads.flush()?;
        self.ids.flush_versions()?;
        self.ids.flush_mappings()?;
        self.vectors.flush_deleted()?;
        if !self.retired.is_empty() {
            for o in std::mem::take(&mut self.retired) {
                self.payloads.clear(o)?;
            }
            self.payloads.flush()?;
        }
        if self.dir.is_some() {
            self.write_state_with(version)?;
        }
        self.persisted_version = version;
        Ok(version)
    }

    fn durable_sequences(&self) -> [Option<u64>; 3] {
        [
            self.vectors.durable_sequence(),
            self.payloads.durable_sequence(),
            self.ids.durable_sequence(),
        ]
    }

    fn write_state(&self) -> Result<()> {
        self.write_state_with(self.version)
    }

    fn write_state_with(&self, version: Version) -> Result<()> {
        if let Some(dir) = &self.dir {
            let mut state = SegmentState {
                format_version: state::FORMAT_VERSION,
                version,
                dim: self.vectors.dim(),
                distance: self.vectors.distance(),
                backends: state::BackendNames::of_storages::<V, P, I>(),
                id_total: self.ids.total_count() as u64,
                vector_total: self.vectors.total_count() as u64,
                durable_sequences: self.durable_sequences(),
                kind: None,
                element: None,
                payload_index: (!self.index.is_empty()).then(|| self.index.state()),
                tenants: self.tenants.clone(),
                hnsw: self.hnsw.as_ref().map(|h| hnsw::HnswState {
                    config: *h.index.config(),
                    payload_key: h.payload_key.clone(),
                }),
            };
            if let Some((kind, element)) = crate::kinds::detect_kind(&state) {
                state.kind = Some(kind.name().to_string());
                state.element = Some(element.to_string());
            }
            state.write(dir)?;
        }
        Ok(())
    }
}
