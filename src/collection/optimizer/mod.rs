//! The optimizer: rebuilds segments of a [`Collection`] into immutable
//! mmap segments — convert the appendable segment once it is large,
//! merge small segments, vacuum dead points, defragment by tenant — while
//! reads and writes go on.
//!
//! | file          | what it holds |
//! |---------------|---------------|
//! | `plan.rs`     | [`OptimizerOptions`] and [`plan`]: which segments to rebuild and why (pure) |
//! | `build.rs`    | [`build_segment`]: points → mmap segment, ordered by tenant, with its [`TenantTable`](crate::segment::TenantTable) |
//! | `steps.rs`    | begin / read / finish / abort on a collection |
//! | `background.rs` | [`OptimizerHandle`]: the optimizer thread of a [`SharedCollection`] |
//!
//! **One optimization** ([`Collection::run_optimization`]):
//!
//! 1. *Begin* (write lock): if the appendable segment is a source it is
//!    sealed where it is and a fresh appendable segment takes new points;
//!    from now on every delete of a copy in a source (a delete, or the
//!    copy-on-write of a change) is recorded.
//! 2. *Read* (read lock, 1,024 points at a time): the newest copy of
//!    every live point of the sources. Writers run between chunks. A
//!    change to a source point goes to the appendable segment by
//!    copy-on-write, as for any sealed segment, and deletes the source copy.
//! 3. *Build* (no lock): [`build_segment`] into an unlisted directory
//!    (with the collection's HNSW index when it asks for one and the
//!    segment has `index_points` points), then the collection's
//!    [`Quantization`](super::Quantization) codes, if it asks for them.
//! 4. *Finish* (write lock): the recorded deletes are applied to the new
//!    segment, its payload indexes brought in line with the collection's,
//!    it is flushed, then the collection is flushed (so the log holds
//!    only later operations: a replay can never meet an operation whose
//!    effect the rebuild dropped, such as a vacuumed point's upsert), then
//!    the manifest switches the sources for the new segment — the commit
//!    point — and the sources' directories are removed.
//!
//! A kill before the manifest switch leaves the sources listed (the new
//! directory is unlisted and removed at the next open); after it, the new
//! segment. Either way the WAL replays what came later. The choice of
//! copy-on-write over re-applying changes is explained in
//! `docs/design-decisions.md`.

mod background;
mod build;
mod plan;
mod steps;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use vecseg_traits::{Result, SegmentEntry};

pub use background::OptimizerHandle;
pub use build::{build_segment, BuildOptions};
pub use plan::{plan, Optimization, OptimizationKind, OptimizerOptions, SegmentStats};
pub use steps::Begun;
pub(crate) use steps::Running;

use super::{Collection, SharedCollection};
use crate::migrate::Progress;

/// Points read from the sources per read-lock hold.
pub const FETCH_CHUNK: usize = 1024;

/// Most optimizations one [`Collection::optimize`] call runs (each plan
/// shrinks the work left; this only guards against a planner bug).
const MAX_RUNS: usize = 256;

/// What one optimization did.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizationReport {
    /// The optimization.
    pub optimization: Optimization,
    /// Name of the new segment (`None` when no source point was live).
    pub target: Option<String>,
    /// Points written to it.
    pub points: usize,
    /// Bytes of their vectors.
    pub vector_bytes: u64,
    /// Wall time from begin to finish.
    pub elapsed: Duration,
}

impl OptimizationReport {
    /// Vector bytes per second of wall time, in MB (10^6 bytes).
    pub fn vector_mb_per_s(&self) -> f64 {
        self.vector_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How the optimizer reaches a collection: a read lock and a write lock
/// (a plain `&mut Collection` behind a `RefCell`, or a
/// [`SharedCollection`]'s `RwLock`).
pub(crate) trait CollectionAccess {
    /// Run `f` with read access.
    fn read<R>(&self, f: impl FnOnce(&Collection) -> Result<R>) -> Result<R>;
    /// Run `f` with write access.
    fn write<R>(&self, f: impl FnOnce(&mut Collection) -> Result<R>) -> Result<R>;
}

impl CollectionAccess for RefCell<&mut Collection> {
    fn read<R>(&self, f: impl FnOnce(&Collection) -> Result<R>) -> Result<R> {
        f(&self.borrow())
    }

    fn write<R>(&self, f: impl FnOnce(&mut Collection) -> Result<R>) -> Result<R> {
        f(&mut self.borrow_mut())
    }
}

impl CollectionAccess for SharedCollection {
    fn read<R>(&self, f: impl FnOnce(&Collection) -> Result<R>) -> Result<R> {
        f(&*SharedCollection::read(self)?)
    }

    fn write<R>(&self, f: impl FnOnce(&mut Collection) -> Result<R>) -> Result<R> {
        f(&mut *self.write_lock()?)
    }
}

/// Run `optimization` through `access` (see the [module docs](self)).
pub(crate) fn run_optimization(
    access: &impl CollectionAccess,
    optimization: Optimization,
    progress: &mut dyn FnMut(&Progress),
) -> Result<OptimizationReport> {
    let started = Instant::now();
    let begun = access.write(|c| c.begin_optimization(optimization))?;
    let result = build_and_switch(access, &begun, progress);
    if result.is_err() {
        // The sources stay; only the partial build goes.
        let _ = access.write(|c| {
            c.abort_optimization(&begun);
            Ok(())
        });
    }
    let (points, vector_bytes) = result?;
    Ok(OptimizationReport {
        target: (points > 0).then(|| begun.target.clone()),
        optimization: begun.optimization,
        points,
        vector_bytes,
        elapsed: started.elapsed(),
    })
}

fn build_and_switch(
    access: &impl CollectionAccess,
    begun: &Begun,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(usize, u64)> {
    let names = &begun.optimization.sources;
    let ids = access.read(|c| c.source_ids(names))?;
    let mut points = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(FETCH_CHUNK) {
        points.extend(access.read(|c| c.fetch_newest(names, chunk))?);
    }
    let n = points.len();
    let vector_bytes = (n * begun.options.dim * std::mem::size_of::<f32>()) as u64;
    let built: Option<Box<dyn SegmentEntry<f32>>> = if points.is_empty() {
        None
    } else {
        let mut options = begun.options.clone();
        if n < begun.index_points {
            options.hnsw = None;
        }
        let segment = build_segment(points, &begun.target_dir, &options, progress)?;
        Some(match begun.quantization {
            Some(q) => q.quantize(segment)?,
            None => Box::new(segment),
        })
    };
    access.write(|c| c.finish_optimization(begun, built))?;
    Ok((n, vector_bytes))
}

/// Run plans through `access` until none is due; the reports in order.
pub(crate) fn optimize_all(access: &impl CollectionAccess) -> Result<Vec<OptimizationReport>> {
    let mut reports = Vec::new();
    for _ in 0..MAX_RUNS {
        let Some(next) = access
            .read(|c| Ok(c.plan_optimizations()))?
            .into_iter()
            .next()
        else {
            break;
        };
        reports.push(run_optimization(access, next, &mut |_| {})?);
    }
    Ok(reports)
}

impl Collection {
    /// Run every due optimization to completion (see the
    /// [module docs](self)); the reports, in the order they ran.
    pub fn optimize(&mut self) -> Result<Vec<OptimizationReport>> {
        optimize_all(&RefCell::new(self))
    }

    /// Run `optimization` now, whether or not it is due (e.g. a convert
    /// of a small appendable segment).
    pub fn run_optimization(&mut self, optimization: Optimization) -> Result<OptimizationReport> {
        run_optimization(&RefCell::new(self), optimization, &mut |_| {})
    }

    /// The optimizer's settings.
    pub fn optimizer_options(&self) -> &OptimizerOptions {
        &self.manifest.optimizer
    }

    /// Change the optimizer's settings (recorded in the manifest).
    pub fn set_optimizer_options(&mut self, options: OptimizerOptions) -> Result<()> {
        let mut next = self.manifest.clone();
        next.optimizer = options;
        next.write(&self.dir)?;
        self.manifest = next;
        Ok(())
    }
}
