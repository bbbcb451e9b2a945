//! [`Collection`]: the database around segments. Every change goes to the
//! write-ahead log first, gets its sequence number there, and is then
//! applied, at that number as its version, to the segments; recovery
//! replays the log.
//!
//! ```text
//! <dir>/collection.json   manifest: segments, their kinds, the appendable one (manifest.rs)
//! <dir>/.lock             exclusive OS lock while open (lock.rs)
//! <dir>/wal/              the write-ahead log (wal/)
//! <dir>/segments/<name>/  one segment directory each (see crate::kinds)
//! ```
//!
//! | path           | what it holds |
//! |----------------|---------------|
//! | `mod.rs`       | [`Collection`]: create, open and recovery, flush, sealing the appendable segment |
//! | `write.rs`     | the write API and how each [`Operation`] is applied, copy-on-write included |
//! | `read.rs`      | reads merged over segments by version: get, scroll, count, search |
//! | `shared.rs`    | [`SharedCollection`]: many writer and reader threads, durability waits outside the lock |
//! | `operation.rs` | [`Operation`]: the changes a collection logs, and their encoding in a WAL entry |
//! | `manifest.rs`  | `collection.json` |
//! | `lock.rs`      | [`DirLock`] |
//! | `wal/`         | [`Wal`]: log files with per-entry CRC-32C, durability modes, torn-tail repair, prefix truncation |
//!
//! **Segments.** One appendable chunked segment takes new points; any
//! number of sealed segments (immutable mmap, built by
//! [`Collection::seal_appendable`]) hold older ones. Changing a point that
//! lives in a sealed segment copies it: the changed point is upserted into
//! the appendable segment and the sealed copy deleted, both at the
//! operation's version. A point present in two segments (a crash between
//! those two steps) is read from the copy with the higher version.
//!
//! **Recovery.** Open takes the lock, reads the manifest (segment
//! directories it does not list are leftovers of an interrupted seal and
//! are removed), opens and repairs every segment, then replays every WAL
//! entry the log still holds; the segments' version checks make replay
//! idempotent. This rests on the segment invariant (a version on disk
//! implies that version's data is on disk, `docs/ARCHITECTURE.md`).
//!
//! **Flush** flushes the appendable segment first, then the sealed ones
//! (a copy's new version must be durable before the old copy's deletion),
//! then truncates the log before the next sequence number.
//!
//! The collection holds `f32` vectors.

mod lock;
pub mod manifest;
pub mod operation;
pub mod optimizer;
mod quantization;
mod read;
mod shared;
pub mod wal;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vecseg_traits::{Distance, IoResultExt, Result, SegmentEntry, StorageError};

use crate::index::hnsw::HnswConfig;
use crate::kinds::{
    create_chunked_segment, open_chunked_segment, open_mmap_segment, ChunkedSegment, SegmentKind,
};
use crate::mmap::MmapVectorOptions;
pub use lock::{DirLock, LOCK_FILE};
use manifest::{Manifest, SegmentRecord, MANIFEST_FILE, MANIFEST_FORMAT_VERSION};
pub use operation::{Operation, PointData};
pub use optimizer::{OptimizationKind, OptimizationReport, OptimizerHandle, OptimizerOptions};
pub use quantization::Quantization;
pub use shared::SharedCollection;
pub use wal::{Durability, Wal, WalOptions};

/// Subdirectory of the segment directories.
pub const SEGMENTS_DIR: &str = "segments";
/// Subdirectory of the write-ahead log.
pub const WAL_DIR: &str = "wal";

/// Settings of a new collection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectionOptions {
    /// Vector dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// The write-ahead log's file size and durability.
    pub wal: WalOptions,
    /// When the optimizer rebuilds segments.
    pub optimizer: OptimizerOptions,
    /// Codes the optimizer writes beside every segment it builds.
    pub quantization: Option<Quantization>,
    /// The HNSW index the optimizer builds over every segment it builds
    /// with at least [`OptimizerOptions::index_points`] points.
    pub hnsw: Option<HnswConfig>,
}

impl CollectionOptions {
    /// Options for vectors of `dim` components compared by `distance`,
    /// with the default WAL (32 MiB files, fsync per write).
    pub fn new(dim: usize, distance: Distance) -> Self {
        CollectionOptions {
            dim,
            distance,
            wal: WalOptions::default(),
            optimizer: OptimizerOptions::default(),
            quantization: None,
            hnsw: None,
        }
    }

    /// These options with `wal`.
    pub fn with_wal(mut self, wal: WalOptions) -> Self {
        self.wal = wal;
        self
    }

    /// These options with `quantization`: the optimizer writes these codes
    /// beside every segment it builds, and their searches score through
    /// them (rescoring the best candidates with the raw vectors).
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = Some(quantization);
        self
    }

    /// These options with an HNSW index over every segment the optimizer
    /// builds (searches then go through the graph; payload-aware links
    /// follow the tenant key, when one is indexed).
    pub fn with_hnsw(mut self, hnsw: HnswConfig) -> Self {
        self.hnsw = Some(hnsw);
        self
    }

    /// These options with `optimizer`.
    pub fn with_optimizer(mut self, optimizer: OptimizerOptions) -> Self {
        self.optimizer = optimizer;
        self
    }
}

/// A collection of segments behind a write-ahead log (see the
/// [module docs](self)).
///
/// ```
/// use vecseg::collection::{Collection, CollectionOptions, PointData};
/// use vecseg::prelude::*;
///
/// let dir = std::env::temp_dir().join(format!("vecseg-doc-collection-{}", std::process::id()));
/// let mut c = Collection::create(&dir, CollectionOptions::new(2, Distance::Dot))?;
/// c.upsert_points(vec![PointData { id: PointId::Num(1), vector: vec![1.0, 0.0], payload: Payload::new() }])?;
/// drop(c); // no flush: the WAL has it
/// let c = Collection::open(&dir)?;
/// assert!(c.get(PointId::Num(1))?.is_some());
/// # drop(c);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), vecseg::StorageError>(())
/// ```
pub struct Collection {
    dir: PathBuf,
    _lock: DirLock,
    manifest: Manifest,
    wal: Arc<Wal>,
    appendable: ChunkedSegment<f32>,
    sealed: Vec<(String, Box<dyn SegmentEntry<f32>>)>,
    /// Sequence number of the last applied operation.
    last_seq: u64,
    /// Why writes are refused: an operation was logged but failed to
    /// apply, or the WAL failed; a reopen replays the log.
    unusable: Option<String>,
    /// Writes return once applied, without waiting for the WAL; the
    /// caller waits ([`SharedCollection`] does, outside its lock).
    defer_durability: bool,
    /// The optimization between its begin and its finish, if any.
    optimizing: Option<optimizer::Running>,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("dir", &self.dir)
            .field("segments", &self.manifest.segments)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

fn segment_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(SEGMENTS_DIR).join(name)
}

impl Collection {
    /// Create an empty collection in `dir` (created if missing; an existing
    /// collection there is an error).
    pub fn create(dir: &Path, options: CollectionOptions) -> Result<Self> {
        std::fs::create_dir_all(dir.join(SEGMENTS_DIR)).at(dir)?;
        let lock = DirLock::acquire(dir)?;
        if dir.join(MANIFEST_FILE).exists() {
            return Err(StorageError::InvalidArgument(format!(
                "{} already holds a collection; open it instead",
                dir.display()
            )));
        }
        // Leftovers of a create that died before writing the manifest.
        let segments = dir.join(SEGMENTS_DIR);
        std::fs::remove_dir_all(&segments).at(&segments)?;
        std::fs::create_dir_all(&segments).at(&segments)?;
        let mut manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            dim: options.dim,
            distance: options.distance,
            wal_file_capacity: options.wal.file_capacity,
            wal_durability: options.wal.durability,
            segments: Vec::new(),
            appendable: String::new(),
            next_segment: 0,
            payload_indexes: Vec::new(),
            optimizer: options.optimizer,
            quantization: options.quantization,
            hnsw: options.hnsw,
        };
        let name = manifest.new_segment_name();
        create_chunked_segment::<f32>(&segment_dir(dir, &name), options.dim, options.distance)?;
        manifest.segments.push(SegmentRecord {
            name: name.clone(),
            kind: SegmentKind::Chunked.name().to_string(),
            quantization: None,
        });
        manifest.appendable = name;
        manifest.write(dir)?;
        drop(lock);
        Self::open(dir)
    }

    /// Open the collection in `dir` and recover it (see the
    /// [module docs](self)). [`StorageError::Locked`] when it is open
    /// already.
    pub fn open(dir: &Path) -> Result<Self> {
        let lock = DirLock::acquire(dir)?;
        let manifest = Manifest::read(dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        remove_unlisted_segments(dir, &manifest)?;
        let mut appendable = None;
        let mut sealed: Vec<(String, Box<dyn SegmentEntry<f32>>)> = Vec::new();
        for s in &manifest.segments {
            let path = segment_dir(dir, &s.name);
            let kind = s.kind(&manifest_path)?;
            match (kind, s.name == manifest.appendable) {
                (SegmentKind::Chunked, true) => appendable = Some(open_chunked_segment(&path)?),
                (SegmentKind::Chunked, false) => sealed.push((
                    s.name.clone(),
                    Box::new(open_chunked_segment::<f32>(&path)?),
                )),
                (SegmentKind::Mmap, false) => sealed.push((
                    s.name.clone(),
                    match s.quantization {
                        Some(q) => q.open(&path)?,
                        None => Box::new(open_mmap_segment::<f32>(
                            &path,
                            &MmapVectorOptions::default(),
                        )?),
                    },
                )),
                (kind, _) => {
                    return Err(StorageError::Unsupported(format!(
                        "{}: segment {} of kind {} cannot be {} in a collection",
                        manifest_path.display(),
                        s.name,
                        kind.name(),
                        if s.name == manifest.appendable {
                            "the appendable one"
                        } else {
                            "a sealed one"
                        }
                    )))
                }
            }
        }
        let appendable = appendable.ok_or_else(|| {
            StorageError::corrupted(&manifest_path, "no appendable chunked segment")
        })?;
        let wal_options = WalOptions {
            file_capacity: manifest.wal_file_capacity,
            durability: manifest.wal_durability,
        };
        let (wal, entries) = Wal::open(&dir.join(WAL_DIR), wal_options)?;
        let last_seq = wal.next_seq()? - 1;
        let mut c = Collection {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            wal: Arc::new(wal),
            appendable,
            sealed,
            last_seq,
            unusable: None,
            defer_durability: false,
            optimizing: None,
        };
        let wal_dir = dir.join(WAL_DIR);
        for (seq, bytes) in entries {
            let op = Operation::decode(&bytes, &format!("{} entry {seq}", wal_dir.display()))?;
            c.apply(seq, op)?;
        }
        Ok(c)
    }

    /// The collection directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.manifest.dim
    }

    /// Distance.
    pub fn distance(&self) -> Distance {
        self.manifest.distance
    }

    /// Sequence number of the last applied operation.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The segments: (name, kind, live points), the appendable one first.
    pub fn segments(&self) -> Vec<(String, String, usize)> {
        let mut out = vec![(
            self.manifest.appendable.clone(),
            SegmentKind::Chunked.name().to_string(),
            self.appendable.point_count(),
        )];
        for (name, s) in &self.sealed {
            let kind = self
                .manifest
                .segments
                .iter()
                .find(|r| &r.name == name)
                .map_or_else(String::new, |r| r.kind.clone());
            out.push((name.clone(), kind, s.point_count()));
        }
        out
    }

    /// The write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Make every applied operation durable in the segments: flush the
    /// appendable segment, then the sealed ones, then drop the log's
    /// entries up to the last applied one. Returns that sequence number.
    /// The WAL is synced first, whatever its durability.
    pub fn flush(&mut self) -> Result<u64> {
        self.check_usable()?;
        // Whatever the segments persist must be in the durable log first:
        // otherwise a crash could lose log entries the segments hold and
        // hand their sequence numbers out again.
        self.wal.sync()?;
        self.appendable.flush()?;
        for (_, s) in &mut self.sealed {
            s.flush()?;
        }
        self.wal.truncate_before(self.last_seq + 1)?;
        Ok(self.last_seq)
    }

    /// Convert the appendable segment into an immutable mmap segment now,
    /// whatever its size, and start a new, empty appendable one (the
    /// optimizer's convert, see [`optimizer`]). Crash safe: the manifest
    /// switch is the commit point; directories it does not list are
    /// removed at the next open.
    pub fn seal_appendable(&mut self) -> Result<OptimizationReport> {
        let convert = optimizer::Optimization {
            kind: OptimizationKind::Convert,
            sources: vec![self.manifest.appendable.clone()],
            reason: "requested".into(),
        };
        self.run_optimization(convert)
    }
}

/// Remove directories under `segments/` the manifest does not list
/// (leftovers of an optimization interrupted before or after its manifest
/// switch).
fn remove_unlisted_segments(dir: &Path, manifest: &Manifest) -> Result<()> {
    let segments = dir.join(SEGMENTS_DIR);
    if !segments.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(&segments).at(&segments)? {
        let e = e.at(&segments)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !manifest.segments.iter().any(|s| s.name == name) {
            let path = e.path();
            std::fs::remove_dir_all(&path).at(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
