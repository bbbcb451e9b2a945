//! [`SharedCollection`]: a [`Collection`] many threads write and read.
//!
//! A write takes the collection's write lock only to log its operation
//! and apply it; it waits for the WAL to make it durable after releasing
//! the lock. So writers that arrive together overlap their waits, and
//! with [`Durability::GroupCommit`](super::Durability::GroupCommit) share
//! one `fdatasync`. Reads take the read lock.
//!
//! A reader can see an operation before its writer has been answered
//! (applied, not yet durable); if the process then dies, that operation
//! may be gone after recovery, exactly as if it had not been acknowledged
//! (it was not). [`SharedCollection::flush`] syncs the WAL before the
//! segments persist anything, as [`Collection::flush`] does.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use vecseg_traits::{Payload, PointId, Result, StorageError};

use super::operation::PointData;
use super::optimizer::{optimize_all, OptimizationReport, OptimizerHandle};
use super::wal::Wal;
use super::Collection;

/// A [`Collection`] shared between threads. Writes take the write lock
/// to log and apply, and wait for the WAL after releasing it (concurrent
/// writers share `fdatasync`s under group commit); reads take the read
/// lock and may see an applied operation whose writer is still waiting.
///
/// ```
/// use std::sync::Arc;
/// use vecseg::collection::{Durability, SharedCollection, WalOptions};
/// use vecseg::prelude::*;
///
/// let dir = std::env::temp_dir().join(format!("vecseg-doc-shared-{}", std::process::id()));
/// let options = CollectionOptions::new(2, Distance::Dot)
///     .with_wal(WalOptions { durability: Durability::GroupCommit, ..Default::default() });
/// let shared = Arc::new(SharedCollection::new(Collection::create(&dir, options)?));
/// let writers: Vec<_> = (0..4u64)
///     .map(|t| {
///         let shared = Arc::clone(&shared);
///         std::thread::spawn(move || {
///             let p = PointData { id: PointId::Num(t), vector: vec![t as f32, 1.0], payload: Payload::new() };
///             shared.upsert_points(vec![p])
///         })
///     })
///     .collect();
/// for w in writers {
///     w.join().unwrap()?;
/// }
/// assert_eq!(shared.read()?.count()?, 4);
/// # drop(shared);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), vecseg::StorageError>(())
/// ```
#[derive(Debug)]
pub struct SharedCollection {
    inner: RwLock<Collection>,
    wal: Arc<Wal>,
    /// Held by whoever runs optimizations (one at a time).
    optimizer: Mutex<()>,
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::InvalidArgument(
        "a thread panicked while it held the collection; reopen it".into(),
    )
}

impl SharedCollection {
    /// Share `collection` between threads.
    pub fn new(mut collection: Collection) -> Self {
        collection.defer_durability = true;
        let wal = Arc::clone(&collection.wal);
        SharedCollection {
            inner: RwLock::new(collection),
            wal,
            optimizer: Mutex::new(()),
        }
    }

    /// The collection back, for single-threaded use.
    pub fn into_inner(self) -> Result<Collection> {
        let mut c = self.inner.into_inner().map_err(poisoned)?;
        c.defer_durability = false;
        Ok(c)
    }

    /// Read access: `get`, `scroll`, `count`, `search`, ...
    pub fn read(&self) -> Result<RwLockReadGuard<'_, Collection>> {
        self.inner.read().map_err(poisoned)
    }

    pub(crate) fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Collection>> {
        self.inner.write().map_err(poisoned)
    }

    /// Log and apply with `op` under the write lock, then wait for the
    /// WAL outside it.
    fn write(&self, op: impl FnOnce(&mut Collection) -> Result<u64>) -> Result<u64> {
        let seq = op(&mut *self.write_lock()?)?;
        self.wal.wait_durable(seq)?;
        Ok(seq)
    }

    /// [`Collection::upsert_points`].
    pub fn upsert_points(&self, points: Vec<PointData>) -> Result<u64> {
        self.write(|c| c.upsert_points(points))
    }

    /// [`Collection::delete_points`].
    pub fn delete_points(&self, ids: Vec<PointId>) -> Result<u64> {
        self.write(|c| c.delete_points(ids))
    }

    /// [`Collection::set_payload`].
    pub fn set_payload(&self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        self.write(|c| c.set_payload(ids, payload))
    }

    /// [`Collection::overwrite_payload`].
    pub fn overwrite_payload(&self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        self.write(|c| c.overwrite_payload(ids, payload))
    }

    /// [`Collection::delete_payload_keys`].
    pub fn delete_payload_keys(&self, ids: Vec<PointId>, keys: Vec<String>) -> Result<u64> {
        self.write(|c| c.delete_payload_keys(ids, keys))
    }

    /// [`Collection::clear_payload`].
    pub fn clear_payload(&self, ids: Vec<PointId>) -> Result<u64> {
        self.write(|c| c.clear_payload(ids))
    }

    /// [`Collection::flush`] (under the write lock).
    pub fn flush(&self) -> Result<u64> {
        self.write_lock()?.flush()
    }

    /// Run every due optimization to completion while other threads read
    /// and write (see [`super::optimizer`]): the write lock is taken only
    /// to begin and to switch, the read lock a chunk of points at a time.
    pub fn optimize(&self) -> Result<Vec<OptimizationReport>> {
        let _one_at_a_time = self.optimizer.lock().map_err(poisoned)?;
        optimize_all(self)
    }

    /// [`Collection::seal_appendable`], under the write lock throughout.
    pub fn seal_appendable(&self) -> Result<OptimizationReport> {
        let _one_at_a_time = self.optimizer.lock().map_err(poisoned)?;
        self.write_lock()?.seal_appendable()
    }

    /// Start a thread that runs due optimizations, checking every
    /// `interval`; it stops when the handle is stopped or dropped.
    pub fn start_optimizer(self: &Arc<Self>, interval: Duration) -> Result<OptimizerHandle> {
        OptimizerHandle::start(Arc::clone(self), interval)
    }
}
