//! In-place upgrade of a RocksDB segment directory to chunked or mmap
//! storages, safe against being killed at any moment and resumable.
//!
//! ## Protocol
//!
//! `segment.json` is the commit point: while it names the RocksDB types,
//! the segment *is* `segment.json` + `rocksdb/`, and nothing the upgrade
//! does touches either (the source is only read). Everything new is
//! written under `migration/` (the staging area) or into `vectors/`,
//! `payloads/`, `ids/`, which a RocksDB segment does not use.
//!
//! 1. **Copy** every slot of the source into a chunked segment under
//!    `migration/chunked/`, batch by batch. After each batch the staging
//!    segment is flushed, the batch is read back and compared with what was
//!    read from the source, and `migration/state.json` (written atomically)
//!    records the next offset and the running source checksum. A re-run
//!    resumes from there.
//! 2. **Build** (mmap target only) the immutable storages from the staging
//!    segment into `migration/mmap/` (files fsynced and renamed).
//! 3. **Place**: rename the three storage directories to `vectors/`,
//!    `payloads/`, `ids/` and fsync the segment directory.
//! 4. **Verify** the placed storages against the source: every slot, ordered
//!    id iteration, reverse lookups, and the checksum recorded while copying.
//!    On a mismatch everything new is removed and
//!    [`StorageError::VerificationFailed`] returned; the source is intact.
//! 5. **Commit**: write the new `segment.json` (temp file, fsync, rename,
//!    directory fsync).
//! 6. **Clean up**: remove `rocksdb/` and `migration/`.
//!
//! A kill before step 5 leaves the RocksDB segment intact (the next run
//! resumes at the recorded step); a kill after it leaves the new segment
//! complete and verified (the next run only finishes the clean-up). The
//! recorded state is tied to a fingerprint of the source (RocksDB sequence
//! number, version, counts); if the source changed in between, the staging
//! area is discarded and the copy starts over.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};
use vecseg_rocksdb::RocksOptions;
use vecseg_traits::fsutil::{fsync_dir, write_atomic};
use vecseg_traits::{
    IdMapperRead, IoResultExt, PayloadStorageRead, Result, StorageError, VectorElement,
    VectorStorageRead,
};

use super::copy::{build_mmap, copy_range, CopyCursor};
use super::layout::{
    create_chunked_segment, detect_kind, open_chunked_storages, open_rocks_segment_unrepaired,
    read_rocks_batch, state_for_kind, RocksSegment, SegmentKind, SegmentLayout,
};
use super::slots::{read_batch, slot_count};
use super::verify::{verify_with, VerifyOptions, VerifyReport};
use super::{Checksum, MigrateOptions, MigrationReport, Phase, Progress, DEFAULT_BATCH_SLOTS};
use crate::segment::SegmentState;
use crate::Segment;

/// File name of the upgrade's progress marker inside the staging directory.
pub const MARKER_FILE: &str = "state.json";
/// Format version of the marker.
pub const MARKER_VERSION: u32 = 1;

/// How [`upgrade_segment_dir`] runs.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Target storages: [`SegmentKind::Mmap`] (default) or [`SegmentKind::Chunked`].
    pub target: SegmentKind,
    /// Slots per batch; a marker is saved after every batch.
    pub batch_slots: usize,
    /// Copy, build and verify, but neither switch nor delete anything: the
    /// segment stays a RocksDB segment (a later run switches without copying).
    pub verify_only: bool,
    /// Options for opening the source database.
    pub rocks: RocksOptions,
    /// Options for the mmap vector storage.
    pub mmap: MmapVectorOptions,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            target: SegmentKind::Mmap,
            batch_slots: 4 * DEFAULT_BATCH_SLOTS,
            verify_only: false,
            rocks: RocksOptions::default(),
            mmap: MmapVectorOptions::default(),
        }
    }
}

/// How an upgrade ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// The directory now holds the target storages.
    Upgraded,
    /// It already did (a previous run committed); leftovers were removed.
    AlreadyUpgraded,
    /// `verify_only`: the staged copy verified; the segment is unchanged.
    VerifiedOnly,
}

/// Summary of [`upgrade_segment_dir`].
#[derive(Debug, Clone)]
pub struct UpgradeReport {
    /// How it ended.
    pub outcome: UpgradeOutcome,
    /// The target kind.
    pub target: SegmentKind,
    /// Copy statistics (the whole segment, including a resumed prefix).
    pub copy: MigrationReport,
    /// The final verification, when one ran in this call.
    pub verify: Option<VerifyReport>,
}

/// What the marker ties the staging area to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    sequence: u64,
    version: u64,
    dim: usize,
    vector_slots: usize,
    deleted: usize,
    id_slots: usize,
    mapped: usize,
    payloads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Step {
    Copying,
    Built,
    Placed,
    Verified,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    format_version: u32,
    target: String,
    source: Fingerprint,
    step: Step,
    next: u64,
    checksum: u64,
    points: u64,
    vector_bytes: u64,
    payload_bytes: u64,
}

impl Marker {
    fn cursor(&self) -> CopyCursor {
        CopyCursor {
            next: self.next,
            checksum: self.checksum,
            points: self.points,
            vector_bytes: self.vector_bytes,
            payload_bytes: self.payload_bytes,
        }
    }

    fn set_cursor(&mut self, c: &CopyCursor) {
        self.next = c.next;
        self.checksum = c.checksum;
        self.points = c.points;
        self.vector_bytes = c.vector_bytes;
        self.payload_bytes = c.payload_bytes;
    }

    fn save(&self, staging: &Path) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StorageError::Codec(Box::new(e)))?;
        write_atomic(&staging.join(MARKER_FILE), &bytes)
    }

    /// The saved marker, or `None` if absent or unreadable (a torn marker
    /// cannot exist, it is replaced atomically, but be lenient: restart).
    fn load(staging: &Path) -> Option<Marker> {
        let bytes = fs::read(staging.join(MARKER_FILE)).ok()?;
        let m: Marker = serde_json::from_slice(&bytes).ok()?;
        (m.format_version == MARKER_VERSION).then_some(m)
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Upgrade the segment in `dir` in place; see the [module docs](self) for
/// the protocol. Safe to re-run after any interruption: it resumes, or
/// finishes the clean-up of a committed upgrade.
pub fn upgrade_segment_dir(
    dir: &Path,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<UpgradeReport> {
    if options.target == SegmentKind::Rocks {
        return Err(StorageError::InvalidArgument(
            "the upgrade target must be mmap or chunked".into(),
        ));
    }
    let state = SegmentState::read(dir)?;
    let (kind, element) = detect_kind(&state).ok_or_else(|| {
        StorageError::Unsupported(format!(
            "segment {} holds {} / {} / {}; only RocksDB, chunked and mmap segments are handled",
            dir.display(),
            state.backends.vectors,
            state.backends.payloads,
            state.backends.ids
        ))
    })?;
    if kind == options.target {
        return finish_committed(dir, &state, options, element);
    }
    if kind != SegmentKind::Rocks {
        return Err(StorageError::Unsupported(format!(
            "segment {} is a {} segment; only RocksDB segments are upgraded",
            dir.display(),
            kind.name()
        )));
    }
    match element {
        "f32" => upgrade_typed::<f32>(dir, &state, options, progress),
        "u8" => upgrade_typed::<u8>(dir, &state, options, progress),
        other => Err(StorageError::Unsupported(format!("element type {other}"))),
    }
}

/// The directory already holds the target: remove what a killed clean-up
/// left behind.
fn finish_committed(
    dir: &Path,
    state: &SegmentState,
    options: &UpgradeOptions,
    element: &str,
) -> Result<UpgradeReport> {
    let layout = SegmentLayout::new(dir);
    if !options.verify_only {
        remove_dir_if_exists(&layout.rocksdb())?;
        remove_dir_if_exists(&layout.staging())?;
        fsync_dir(dir)?;
    }
    let _ = (state, element);
    Ok(UpgradeReport {
        outcome: UpgradeOutcome::AlreadyUpgraded,
        target: options.target,
        copy: MigrationReport {
            slots: 0,
            points: 0,
            vector_bytes: 0,
            payload_bytes: 0,
            elapsed: Duration::ZERO,
            checksum: Checksum::default().value(),
            verified: false,
            resumed_from: 0,
        },
        verify: None,
    })
}

fn fingerprint<T: VectorElement>(s: &RocksSegment<T>) -> Fingerprint {
    Fingerprint {
        sequence: s.vectors.db().latest_sequence_number(),
        version: s.version,
        dim: s.vectors.dim(),
        vector_slots: s.vectors.total_count(),
        deleted: s.vectors.deleted_count(),
        id_slots: s.ids.total_count(),
        mapped: s.ids.available_count(),
        payloads: s.payloads.count(),
    }
}

fn upgrade_typed<T: VectorElement>(
    dir: &Path,
    state: &SegmentState,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<UpgradeReport> {
    let started = Instant::now();
    let layout = SegmentLayout::new(dir);
    let staging = layout.staging();
    // Not `Segment::open`: its repair would write to the source. The copy is
    // slot-exact, so the target repairs the same way when it is opened.
    let source = open_rocks_segment_unrepaired::<T>(dir, state, &options.rocks)?;
    let fp = fingerprint(&source);
    let total = slot_count(&source);

    let mut marker = match Marker::load(&staging) {
        Some(m) if m.source == fp && m.target == options.target.name() => m,
        _ => start_fresh(&layout, &source, fp, options)?,
    };
    let resumed_from = marker.next;

    if marker.step == Step::Copying {
        copy_to_staging(&layout, &source, &mut marker, total, options, progress)?;
    }
    let staged_dir = match options.target {
        SegmentKind::Mmap => staging.join("mmap"),
        _ => staging.join("chunked"),
    };
    if marker.step == Step::Built {
        place(&layout, &staged_dir)?;
        marker.step = Step::Placed;
        marker.save(&staging)?;
    }
    let mut verify_report = None;
    if marker.step == Step::Placed {
        let result = verify_placed::<T>(&layout, &source, &marker, options, progress);
        match result {
            Ok(report) => verify_report = Some(report),
            Err(e) => {
                // Never leave a copy that does not match: drop everything new.
                discard(&layout)?;
                return Err(e);
            }
        }
        marker.step = Step::Verified;
        marker.save(&staging)?;
    }
    let mut report = UpgradeReport {
        outcome: UpgradeOutcome::VerifiedOnly,
        target: options.target,
        copy: MigrationReport {
            slots: total as u64,
            points: marker.points,
            vector_bytes: marker.vector_bytes,
            payload_bytes: marker.payload_bytes,
            elapsed: Duration::ZERO,
            checksum: marker.checksum,
            verified: true,
            resumed_from,
        },
        verify: verify_report,
    };
    if options.verify_only {
        report.copy.elapsed = started.elapsed();
        return Ok(report);
    }

    // Commit: the new segment.json is the switch.
    progress(&Progress {
        phase: Phase::Switch,
        done: 0,
        total: 1,
        bytes: 0,
    });
    let new_state = state_for_kind::<T>(state, options.target)?;
    new_state.write(dir)?;
    progress(&Progress {
        phase: Phase::Switch,
        done: 1,
        total: 1,
        bytes: 0,
    });
    drop(source);
    progress(&Progress {
        phase: Phase::Cleanup,
        done: 0,
        total: 1,
        bytes: 0,
    });
    remove_dir_if_exists(&layout.rocksdb())?;
    remove_dir_if_exists(&staging)?;
    fsync_dir(dir)?;
    progress(&Progress {
        phase: Phase::Cleanup,
        done: 1,
        total: 1,
        bytes: 0,
    });
    report.outcome = UpgradeOutcome::Upgraded;
    report.copy.elapsed = started.elapsed();
    Ok(report)
}

/// Remove the staging area and anything placed, then write a fresh marker
/// and an empty staging segment.
fn start_fresh<T: VectorElement>(
    layout: &SegmentLayout,
    source: &RocksSegment<T>,
    fp: Fingerprint,
    options: &UpgradeOptions,
) -> Result<Marker> {
    discard(layout)?;
    let staging = layout.staging();
    fs::create_dir_all(&staging).at(&staging)?;
    let chunked = staging.join("chunked");
    let seg =
        create_chunked_segment::<T>(&chunked, source.vectors.dim(), source.vectors.distance())?;
    drop(seg);
    let cursor = CopyCursor::new();
    let mut marker = Marker {
        format_version: MARKER_VERSION,
        target: options.target.name().to_string(),
        source: fp,
        step: Step::Copying,
        next: 0,
        checksum: 0,
        points: 0,
        vector_bytes: 0,
        payload_bytes: 0,
    };
    marker.set_cursor(&cursor);
    marker.save(&staging)?;
    Ok(marker)
}

/// Remove the staging area and the storage directories a RocksDB segment
/// does not use.
fn discard(layout: &SegmentLayout) -> Result<()> {
    remove_dir_if_exists(&layout.staging())?;
    for d in layout.storage_dirs() {
        remove_dir_if_exists(&d)?;
    }
    fsync_dir(layout.dir())
}

fn copy_to_staging<T: VectorElement>(
    layout: &SegmentLayout,
    source: &RocksSegment<T>,
    marker: &mut Marker,
    total: usize,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<()> {
    let staging = layout.staging();
    let chunked = staging.join("chunked");
    let (v, p, i) = match open_chunked_storages::<T>(&chunked) {
        Ok(parts) => parts,
        Err(e) => {
            // A staging copy that does not open is worth nothing: restart.
            log::warn!("staging segment unusable ({e}); copying from the start");
            *marker = start_fresh(layout, source, marker.source.clone(), options)?;
            open_chunked_storages::<T>(&chunked)?
        }
    };
    // No `Segment::open` here: the staging segment has no segment.json and
    // must not be "repaired"; offsets past the marker are overwritten.
    let mut target = Segment::new(v, p, i);
    let fresh_from = slot_count(&target);
    let mut cursor = marker.cursor();
    let copy_options = MigrateOptions {
        batch_slots: options.batch_slots,
        verify: true,
    };
    copy_range(
        source,
        &|r| read_rocks_batch(source, r),
        &mut target,
        &mut cursor,
        total,
        fresh_from,
        &copy_options,
        progress,
        &mut |t, batch, c| {
            t.flush()?;
            let end = batch.start as usize + batch.len();
            let back = read_batch(t, batch.start as usize..end)?;
            if let Some(diff) = batch.diff(&back) {
                return Err(StorageError::VerificationFailed(format!(
                    "staging copy reads back differently: {diff}"
                )));
            }
            marker.set_cursor(c);
            marker.save(&staging)
        },
    )?;
    target.version = source.version;
    target.flush()?;
    if options.target == SegmentKind::Mmap {
        let out = staging.join("mmap");
        remove_dir_if_exists(&out)?;
        let built = build_mmap(&target, &out, &options.mmap, progress)?;
        drop(built);
        fsync_dir(&staging)?;
    }
    marker.step = Step::Built;
    marker.save(&staging)
}

/// Move the three storage directories of `staged` into the segment
/// directory (idempotent: a directory already moved is skipped).
fn place(layout: &SegmentLayout, staged: &Path) -> Result<()> {
    let staged = SegmentLayout::new(staged);
    for (from, to) in staged.storage_dirs().into_iter().zip(layout.storage_dirs()) {
        if from.exists() {
            remove_dir_if_exists(&to)?;
            fs::rename(&from, &to).at(&to)?;
        } else if !to.exists() {
            return Err(StorageError::corrupted(
                &from,
                "staged storage is missing and was not placed",
            ));
        }
    }
    fsync_dir(staged.dir())?;
    fsync_dir(layout.dir())
}

fn verify_placed<T: VectorElement>(
    layout: &SegmentLayout,
    source: &RocksSegment<T>,
    marker: &Marker,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport> {
    let verify_options = VerifyOptions {
        expected_checksum: Some(marker.checksum),
        batch_slots: options.batch_slots,
    };
    match options.target {
        SegmentKind::Mmap => {
            let mut target = Segment::new(
                MmapVectorStorage::<T>::open(&layout.vectors(), options.mmap.clone())?,
                MmapPayloadStorage::open(&layout.payloads())?,
                MmapIdMapper::open(&layout.ids())?,
            );
            // The version lives in segment.json, carried over from the source.
            target.version = source.version;
            verify_with(
                source,
                &|r| read_rocks_batch(source, r),
                &target,
                &verify_options,
                progress,
            )
        }
        _ => {
            let (v, p, i) = open_chunked_storages::<T>(layout.dir())?;
            let mut target = Segment::new(v, p, i);
            // The version lives in segment.json, carried over from the source.
            target.version = source.version;
            verify_with(
                source,
                &|r| read_rocks_batch(source, r),
                &target,
                &verify_options,
                progress,
            )
        }
    }
}
