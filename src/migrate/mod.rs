//! Migration: copy any segment into another backend, verify it, and
//! upgrade a segment directory in place (RocksDB -> mmap or chunked).
//!
//! | file          | what it holds                                                       |
//! |---------------|---------------------------------------------------------------------|
//! | `copy.rs`     | [`migrate`] (any segment -> any appendable segment), [`copy_range`], [`build_mmap`], [`build_mmap_planned`] |
//! | `verify.rs`   | [`verify`]: both sides read and compared slot by slot plus a checksum |
//! | `slots.rs`    | [`SlotBatch`]: a run of offsets read through the read traits          |
//! | `checksum.rs` | [`Checksum`]: the order-dependent digest both sides compute           |
//! | `upgrade.rs`  | `upgrade_segment_dir`: the crash-safe, resumable in-place upgrade   |
//! | `rocks_batch.rs` | `read_rocks_batch`: a RocksDB segment read by forward iterators |
//!
//! Segment kinds, their directory layout and create / open helpers are in
//! [`crate::kinds`].
//!
//! Copies preserve offsets: slot `o` of the target holds exactly what slot
//! `o` of the source holds (vector, deleted flag, payload, external id,
//! version; dropped offsets stay allocated and unmapped), so the target is
//! the same segment on another backend, and verification can compare the
//! two slot by slot. The crash-safety protocol of the in-place upgrade is
//! described in `docs/migration.md` and in `upgrade` (cargo feature
//! `rocksdb`: the upgrade's source is a RocksDB segment).

mod checksum;
mod copy;
#[cfg(feature = "rocksdb")]
mod rocks_batch;
mod slots;
#[cfg(feature = "rocksdb")]
pub mod upgrade;
mod verify;

use std::time::Duration;

pub use checksum::Checksum;
pub use copy::{
    build_mmap, build_mmap_planned, copy_range, migrate, AfterBatch, BatchReader, CopyCursor,
};
#[cfg(feature = "rocksdb")]
pub use rocks_batch::read_rocks_batch;
pub use slots::{read_batch, slot_count, write_batch, SlotBatch};
#[cfg(feature = "rocksdb")]
pub use upgrade::{upgrade_segment_dir, UpgradeOptions, UpgradeOutcome, UpgradeReport};
pub use verify::{verify, verify_hashes, verify_with, VerifyOptions, VerifyReport};

/// Slots per batch when none is configured.
pub const DEFAULT_BATCH_SLOTS: usize = 8192;

/// How [`migrate`] copies.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Slots read and written per batch (the next batch is read while the
    /// current one is written).
    pub batch_slots: usize,
    /// Verify both sides after the copy (default true).
    pub verify: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            batch_slots: DEFAULT_BATCH_SLOTS,
            verify: true,
        }
    }
}

/// Stage of a migration, as reported to progress callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Copying slots (`done`/`total` are offsets).
    Copy,
    /// Building immutable storages (`done`/`total` are storages, 3 in all).
    Build,
    /// Comparing both sides (`done`/`total` are offsets).
    Verify,
    /// Switching the segment directory over to the new storages.
    Switch,
    /// Removing the old storages and the staging area.
    Cleanup,
}

impl Phase {
    /// Short lowercase label for progress bars.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Copy => "copy",
            Phase::Build => "build",
            Phase::Verify => "verify",
            Phase::Switch => "switch",
            Phase::Cleanup => "cleanup",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Current stage.
    pub phase: Phase,
    /// Units done in this stage.
    pub done: u64,
    /// Units in this stage.
    pub total: u64,
    /// Bytes (vectors + payload JSON) handled in this stage so far.
    pub bytes: u64,
}

/// Summary of a finished copy.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    /// Offsets copied (deleted and unmapped ones included).
    pub slots: u64,
    /// Mapped points copied.
    pub points: u64,
    /// Bytes of vector data copied.
    pub vector_bytes: u64,
    /// Bytes of payload (as JSON) copied.
    pub payload_bytes: u64,
    /// Wall time of the whole operation (copy, build, verify, switch).
    pub elapsed: Duration,
    /// The source digest both sides matched.
    pub checksum: u64,
    /// Whether both sides were read back and compared.
    pub verified: bool,
    /// Offset a resumed copy started from (0 for a fresh one).
    pub resumed_from: u64,
}

impl MigrationReport {
    fn from_cursor(cursor: &CopyCursor, slots: u64, resumed_from: u64) -> Self {
        MigrationReport {
            slots,
            points: cursor.points,
            vector_bytes: cursor.vector_bytes,
            payload_bytes: cursor.payload_bytes,
            elapsed: Duration::ZERO,
            checksum: cursor.checksum,
            verified: false,
            resumed_from,
        }
    }

    /// Vector plus payload bytes.
    pub fn bytes(&self) -> u64 {
        self.vector_bytes + self.payload_bytes
    }

    /// Vector data per second of wall time, in MB (10^6 bytes).
    pub fn vector_mb_per_s(&self) -> f64 {
        mb_per_s(self.vector_bytes, self.elapsed)
    }

    /// All data (vectors + payloads) per second of wall time, in MB.
    pub fn mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes(), self.elapsed)
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}
