//! `vecseg migrate <segment-dir> [--to mmap|chunked] [--verify-only]`: the
//! in-place upgrade of a RocksDB segment directory (see
//! `crate::migrate::upgrade` for the crash-safety protocol), with a
//! progress bar and a summary. Needs the `rocksdb` cargo feature; without
//! it the command explains that.

use std::error::Error;
use std::path::PathBuf;

use clap::Args;

use crate::kinds::SegmentKind;
#[cfg(feature = "rocksdb")]
use crate::migrate::{
    upgrade_segment_dir, Progress, UpgradeOptions, UpgradeOutcome, UpgradeReport,
};

/// Target storages of `vecseg migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateTarget {
    /// Immutable mmap storages (perfect-hash id map): the fastest reads.
    Mmap,
    /// Appendable chunked mmap storages.
    Chunked,
}

impl MigrateTarget {
    /// The segment kind this target produces.
    pub fn kind(self) -> SegmentKind {
        match self {
            MigrateTarget::Mmap => SegmentKind::Mmap,
            MigrateTarget::Chunked => SegmentKind::Chunked,
        }
    }
}

/// Arguments of `vecseg migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The segment directory (holding `segment.json` and `rocksdb/`).
    pub segment_dir: PathBuf,
    /// Storages to migrate to.
    #[arg(long = "to", value_enum, default_value_t = MigrateTarget::Mmap)]
    pub to: MigrateTarget,
    /// Copy and verify into the staging area, but do not switch the segment
    /// over nor delete anything (a later run switches without copying again).
    #[arg(long)]
    pub verify_only: bool,
    /// Besides checking the target against the hashes recorded while
    /// copying, read the source a second time and compare slot by slot.
    #[arg(long)]
    pub paranoid: bool,
    /// Slots copied per batch (a resume marker is saved after each).
    #[arg(long, default_value_t = 32_768, hide = true)]
    pub batch: usize,
}

fn check_segment_dir(args: &MigrateArgs) -> Result<(), Box<dyn Error>> {
    if !args.segment_dir.join(crate::segment::STATE_FILE).is_file() {
        return Err(format!(
            "{} is not a segment directory (no {})",
            args.segment_dir.display(),
            crate::segment::STATE_FILE
        )
        .into());
    }
    Ok(())
}

/// Without the `rocksdb` cargo feature there is no RocksDB segment to
/// upgrade from: an error that says so.
#[cfg(not(feature = "rocksdb"))]
pub fn run(args: &MigrateArgs, _quiet: bool) -> Result<(), Box<dyn Error>> {
    check_segment_dir(args)?;
    SegmentKind::Rocks.require_available("`vecseg migrate` (its source is a RocksDB segment)")?;
    Ok(())
}

/// Run `vecseg migrate`: progress bar on stderr (unless `quiet`), summary on
/// stdout. Any problem is returned as an error (the caller prints it and
/// exits non-zero); the segment is then either untouched or, if the switch
/// had already happened, fully migrated.
#[cfg(feature = "rocksdb")]
pub fn run(args: &MigrateArgs, quiet: bool) -> Result<(), Box<dyn Error>> {
    check_segment_dir(args)?;
    let options = UpgradeOptions {
        target: args.to.kind(),
        batch_slots: args.batch.max(1),
        verify_only: args.verify_only,
        paranoid: args.paranoid,
        ..UpgradeOptions::default()
    };
    let bar = super::progress::bar(
        quiet,
        "{spinner} {msg:<8} [{bar:30}] {pos}/{len} {per_sec} ({eta})",
    )?;
    let mut phase = None;
    let mut on_progress = |p: &Progress| {
        if phase != Some(p.phase) {
            phase = Some(p.phase);
            bar.reset();
            bar.set_message(p.phase.label());
            bar.set_length(p.total);
        }
        bar.set_position(p.done);
    };
    let result = upgrade_segment_dir(&args.segment_dir, &options, &mut on_progress);
    bar.finish_and_clear();
    let report = result.map_err(|e| {
        format!(
            "migrating {} to {} failed: {e}",
            args.segment_dir.display(),
            options.target.name()
        )
    })?;
    println!("{}", summary(&args.segment_dir, &report));
    Ok(())
}

/// The summary lines printed after a migration.
#[cfg(feature = "rocksdb")]
pub fn summary(dir: &std::path::Path, r: &UpgradeReport) -> String {
    let what = match r.outcome {
        UpgradeOutcome::Upgraded => format!("migrated {} to {}", dir.display(), r.target.name()),
        UpgradeOutcome::AlreadyUpgraded => {
            return format!(
                "{} is already a {} segment; nothing to do",
                dir.display(),
                r.target.name()
            )
        }
        UpgradeOutcome::VerifiedOnly => format!(
            "verified a staged {} copy of {} (segment not switched)",
            r.target.name(),
            dir.display()
        ),
    };
    let c = &r.copy;
    let mut out = format!(
        "{what}\n  points    {} ({} slots)\n  vectors   {:.1} MB\n  payloads  {:.1} MB\n  time      {:.2} s\n  throughput {:.1} MB/s of vectors, {:.1} MB/s in all\n  checksum  {:016x}",
        c.points,
        c.slots,
        c.vector_bytes as f64 / 1e6,
        c.payload_bytes as f64 / 1e6,
        c.elapsed.as_secs_f64(),
        c.vector_mb_per_s(),
        c.mb_per_s(),
        c.checksum
    );
    if c.resumed_from > 0 {
        out.push_str(&format!("\n  resumed   from offset {}", c.resumed_from));
    }
    if let Some(v) = &r.verify {
        out.push_str(&format!(
            "\n  verified  {} points, {} slots in {:.2} s",
            v.points,
            v.slots,
            v.elapsed.as_secs_f64()
        ));
    }
    out
}
