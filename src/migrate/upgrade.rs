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
//!    `migration/chunked/`, batch by batch. The slot hash
//!    ([`Checksum::slot_hash`]) of everything read from the source is
//!    recorded in `migration/slot_hashes.bin` (8 bytes per offset). After
//!    each batch the staging segment is flushed, the batch is read back and
//!    compared with what was read from the source, its slot hashes are
//!    written and synced, and `migration/state.json` (written atomically)
//!    records the next offset and the running source checksum (the fold of
//!    the recorded hashes). A re-run resumes from there.
//! 2. **Build** (mmap target only) the immutable storages from the staging
//!    segment into `migration/mmap/` (files fsynced and renamed). The staging
//!    copy is then no longer needed and is removed in the background.
//! 3. **Place**: rename the three storage directories to `vectors/`,
//!    `payloads/`, `ids/` and fsync the segment directory.
//! 4. **Verify** the placed storages against what was read from the source:
//!    the recorded hashes must fold to the recorded checksum; every slot of
//!    the target is read and its hash compared with the recorded one;
//!    reverse lookups, ordered id iteration and the source's counts are
//!    checked ([`super::verify_hashes`]). With [`UpgradeOptions::paranoid`]
//!    the source is also read a second time and compared slot by slot
//!    ([`super::verify_with`]). On a mismatch everything new is removed and
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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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
use super::rocks_batch::read_rocks_batch;
use super::slots::{read_batch, slot_count};
use super::verify::{verify_hashes, verify_with, VerifyOptions, VerifyReport};
use super::{Checksum, MigrateOptions, MigrationReport, Phase, Progress, DEFAULT_BATCH_SLOTS};
use crate::kinds::{
    create_chunked_segment, detect_kind, open_chunked_storages, open_rocks_segment_unrepaired,
    state_for_kind, RocksSegment, SegmentKind, SegmentLayout,
};
use crate::segment::SegmentState;
use crate::Segment;

/// File name of the upgrade's progress marker inside the staging directory.
pub const MARKER_FILE: &str = "state.json";
/// Format version of the marker (2: slot hashes recorded in
/// [`HASH_FILE`]; the checksum folds them).
pub const MARKER_VERSION: u32 = 2;
/// File of the slot hashes recorded while copying, inside the staging
/// directory: one little-endian `u64` per offset.
pub const HASH_FILE: &str = "slot_hashes.bin";

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
    /// Besides comparing the target with the slot hashes recorded while
    /// copying, read the source a second time and compare both sides slot
    /// by slot (slower; the pre-hash behaviour).
    pub paranoid: bool,
}

impl UpgradeOptions {
    /// These options migrating to `target`.
    pub fn with_target(mut self, target: SegmentKind) -> Self {
        self.target = target;
        self
    }

    /// These options copying `slots` slots per batch.
    pub fn with_batch_slots(mut self, slots: usize) -> Self {
        self.batch_slots = slots;
        self
    }

    /// These options staging and verifying only (no switch).
    pub fn with_verify_only(mut self, on: bool) -> Self {
        self.verify_only = on;
        self
    }

    /// These options also re-reading the source slot by slot.
    pub fn with_paranoid(mut self, on: bool) -> Self {
        self.paranoid = on;
        self
    }

    /// These options opening the source database with `rocks`.
    pub fn with_rocks(mut self, rocks: RocksOptions) -> Self {
        self.rocks = rocks;
        self
    }

    /// These options building mmap vectors with `mmap`.
    pub fn with_mmap(mut self, mmap: MmapVectorOptions) -> Self {
        self.mmap = mmap;
        self
    }
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            target: SegmentKind::Mmap,
            batch_slots: 4 * DEFAULT_BATCH_SLOTS,
            verify_only: false,
            rocks: RocksOptions::default(),
            mmap: MmapVectorOptions::default(),
            paranoid: false,
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
    /// Wall time until the new `segment.json` was durable (the commit), or
    /// until verification for `verify_only`: the upgrade is complete from
    /// here on, a re-run after a kill only removes leftovers.
    pub until_commit: Duration,
    /// Wall time of the clean-up after the commit (removing `rocksdb/` and
    /// the staging area).
    pub cleanup: Duration,
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
        let started = Instant::now();
        let mut report = finish_committed(dir, &state, options, element)?;
        report.cleanup = started.elapsed();
        return Ok(report);
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
        until_commit: Duration::ZERO,
        cleanup: Duration::ZERO,
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
    let mut resumed_from = marker.next;

    if marker.step == Step::Copying {
        resumed_from = copy_to_staging(&layout, &source, &mut marker, total, options, progress)?;
    }
    // Once built, the chunked staging copy of an mmap upgrade is dead
    // weight (a re-run resumes from `migration/mmap/`): remove it while the
    // rest runs, out of the critical path.
    let background = (options.target == SegmentKind::Mmap).then(|| remove_in_background(&staging));
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
        let result = verify_placed::<T>(&layout, &source, &marker, total, options, progress);
        match result {
            Ok(report) => verify_report = Some(report),
            Err(e) => {
                // Never leave a copy that does not match: drop everything new.
                join_background(background)?;
                discard(&layout)?;
                return Err(e);
            }
        }
        marker.step = Step::Verified;
        marker.save(&staging)?;
    }
    join_background(background)?;
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
        until_commit: Duration::ZERO,
        cleanup: Duration::ZERO,
    };
    if options.verify_only {
        report.copy.elapsed = started.elapsed();
        report.until_commit = report.copy.elapsed;
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
    report.until_commit = started.elapsed();
    progress(&Progress {
        phase: Phase::Switch,
        done: 1,
        total: 1,
        bytes: 0,
    });
    drop(source);
    let cleanup_started = Instant::now();
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
    report.cleanup = cleanup_started.elapsed();
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
    let hashes = staging.join(HASH_FILE);
    fs::File::create(&hashes).at(&hashes)?;
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

/// Copy (or resume copying) into the staging segment and build; returns
/// the offset the copy started from in this run.
fn copy_to_staging<T: VectorElement>(
    layout: &SegmentLayout,
    source: &RocksSegment<T>,
    marker: &mut Marker,
    total: usize,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64> {
    let staging = layout.staging();
    let chunked = staging.join("chunked");
    let (v, p, i, mut hashes) = match open_chunked_storages::<T>(&chunked)
        .and_then(|(v, p, i)| Ok((v, p, i, open_hash_file(&staging, marker.next)?)))
    {
        Ok(parts) => parts,
        Err(e) => {
            // A staging copy that does not open, or whose recorded hashes
            // do not cover the copied part, is worth nothing: restart.
            log::warn!("staging area unusable ({e}); copying from the start");
            *marker = start_fresh(layout, source, marker.source.clone(), options)?;
            let (v, p, i) = open_chunked_storages::<T>(&chunked)?;
            (v, p, i, open_hash_file(&staging, 0)?)
        }
    };
    // No `Segment::open` here: the staging segment has no segment.json and
    // must not be "repaired"; offsets past the marker are overwritten.
    let mut target = Segment::new(v, p, i);
    let fresh_from = slot_count(&target);
    let mut cursor = marker.cursor();
    let resumed_from = cursor.next;
    let copy_options = MigrateOptions {
        batch_slots: options.batch_slots,
        verify: true,
    };
    // The slot hashes and the marker of a flushed, read-back batch are
    // persisted (fsyncs) on a third thread while the next batch is written:
    // in batch order, each batch's hashes before the marker that counts
    // them, and a marker only ever names batches already flushed. A kill
    // leaves the marker at most a batch or two behind the staging copy,
    // whose extra slots a re-run overwrites.
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u64>, CopyCursor)>(1);
        let persist_marker = &mut *marker;
        let persist_hashes = &mut hashes;
        let staging = &staging;
        let persister = scope.spawn(move || -> Result<()> {
            for (start, slot_hashes, c) in rx {
                persist_hashes.record(start, &slot_hashes)?;
                persist_marker.set_cursor(&c);
                persist_marker.save(staging)?;
            }
            Ok(())
        });
        let copied = copy_range(
            source,
            &|r| read_rocks_batch(source, r),
            &mut target,
            &mut cursor,
            total,
            fresh_from,
            &copy_options,
            progress,
            &mut |t, batch, slot_hashes, c| {
                t.flush()?;
                let end = batch.start as usize + batch.len();
                let back = read_batch(t, batch.start as usize..end)?;
                if let Some(diff) = batch.diff(&back) {
                    return Err(StorageError::VerificationFailed(format!(
                        "staging copy reads back differently: {diff}"
                    )));
                }
                tx.send((batch.start as u64, slot_hashes.to_vec(), *c))
                    .map_err(|_| StorageError::InvalidArgument("the marker writer stopped".into()))
            },
        );
        drop(tx);
        let persisted = persister.join().unwrap_or_else(|_| {
            Err(StorageError::InvalidArgument(
                "the marker writer panicked".into(),
            ))
        });
        // The persister's own error explains a "stopped" copy error.
        persisted.and(copied)
    })?;
    target.version = source.version;
    target.flush()?;
    drop(hashes);
    if options.target == SegmentKind::Mmap {
        let out = staging.join("mmap");
        remove_dir_if_exists(&out)?;
        let built = build_mmap(&target, &out, &options.mmap, progress)?;
        drop(built);
        fsync_dir(&staging)?;
    }
    marker.step = Step::Built;
    marker.save(&staging)?;
    Ok(resumed_from)
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
    total: usize,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport> {
    let hashes = load_hashes(&layout.staging(), total)?;
    match options.target {
        SegmentKind::Mmap => {
            let mut target = Segment::new(
                MmapVectorStorage::<T>::open(&layout.vectors(), options.mmap.clone())?,
                MmapPayloadStorage::open(&layout.payloads())?,
                MmapIdMapper::open(&layout.ids())?,
            );
            // The version lives in segment.json, carried over from the source.
            target.version = source.version;
            verify_target(source, &target, &hashes, marker, options, progress)
        }
        _ => {
            let (v, p, i) = open_chunked_storages::<T>(layout.dir())?;
            let mut target = Segment::new(v, p, i);
            // The version lives in segment.json, carried over from the source.
            target.version = source.version;
            verify_target(source, &target, &hashes, marker, options, progress)
        }
    }
}

/// Compare `target` with the slot hashes recorded from the source and, when
/// `paranoid`, with a second full read of the source.
fn verify_target<T, TV, TP, TI>(
    source: &RocksSegment<T>,
    target: &Segment<TV, TP, TI>,
    hashes: &[u64],
    marker: &Marker,
    options: &UpgradeOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport>
where
    T: VectorElement,
    TV: VectorStorageRead<Element = T>,
    TP: PayloadStorageRead,
    TI: IdMapperRead,
{
    let report = verify_hashes(
        source,
        hashes,
        marker.checksum,
        target,
        options.batch_slots,
        progress,
    )?;
    if options.paranoid {
        let verify_options = VerifyOptions {
            expected_checksum: Some(marker.checksum),
            batch_slots: options.batch_slots,
        };
        verify_with(
            source,
            &|r| read_rocks_batch(source, r),
            target,
            &verify_options,
            progress,
        )?;
    }
    Ok(report)
}

/// The slot-hash file of the staging area, open for recording.
struct HashFile {
    file: fs::File,
    path: PathBuf,
}

impl HashFile {
    /// Write the hashes of the slots from offset `start` and make them durable.
    fn record(&mut self, start: u64, hashes: &[u64]) -> Result<()> {
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
        self.file.write_all_at(&bytes, start * 8).at(&self.path)?;
        self.file.sync_data().at(&self.path)
    }
}

/// Open the staging area's hash file for resuming at offset `next`: it must
/// hold the hashes of `0..next`; anything a killed run wrote past them is cut.
fn open_hash_file(staging: &Path, next: u64) -> Result<HashFile> {
    let path = staging.join(HASH_FILE);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .at(&path)?;
    let len = file.metadata().at(&path)?.len();
    if len < next * 8 {
        return Err(StorageError::corrupted(
            &path,
            format!("holds {len} bytes, the copy recorded {next} slots"),
        ));
    }
    file.set_len(next * 8).at(&path)?;
    Ok(HashFile { file, path })
}

/// The recorded slot hashes (all of them; [`verify_hashes`] checks that they
/// cover `total` slots and fold to the recorded checksum).
fn load_hashes(staging: &Path, total: usize) -> Result<Vec<u64>> {
    let path = staging.join(HASH_FILE);
    let bytes = fs::read(&path).at(&path)?;
    if bytes.len() % 8 != 0 {
        return Err(StorageError::VerificationFailed(format!(
            "{} holds {} bytes, not whole slot hashes ({total} expected)",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// Move the chunked staging copy (no longer needed once the mmap storages
/// are built) out of the way and delete it on another thread. A kill in
/// between leaves `migration/discarded`, which goes with `migration/`.
fn remove_in_background(staging: &Path) -> Option<std::thread::JoinHandle<Result<()>>> {
    let from = staging.join("chunked");
    let to = staging.join("discarded");
    if from.exists() && fs::rename(&from, &to).is_err() {
        return None;
    }
    to.exists()
        .then(|| std::thread::spawn(move || remove_dir_if_exists(&to)))
}

fn join_background(handle: Option<Option<std::thread::JoinHandle<Result<()>>>>) -> Result<()> {
    match handle.flatten() {
        Some(h) => h
            .join()
            .map_err(|_| StorageError::InvalidArgument("clean-up thread panicked".into()))?,
        None => Ok(()),
    }
}
