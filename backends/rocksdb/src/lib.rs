//! # vecseg-rocksdb
//!
//! RocksDB-backed, appendable implementations of every vecseg storage trait:
//! [`RocksVectorStorage`], [`RocksPayloadStorage`] and [`RocksIdMapper`].
//! The three storages of a segment share one [`RocksDb`] (one database
//! directory, `<segment>/rocksdb/`, one write-ahead log) through an
//! [`Arc`](std::sync::Arc), each using its own column families (see
//! [`db`] for the table of families, keys and values).
//!
//! ## What is in RAM
//!
//! These storages are meant as a fair comparison point for the mmap
//! backends, so they keep no hidden copy of the data:
//!
//! * vectors: the deleted flags (one bit per slot) and the slot count;
//! * payloads: the number of non-empty payloads;
//! * ids: the number of allocated offsets and of mapped ids.
//!
//! Every vector, payload, id lookup and version read is a RocksDB read,
//! served from RocksDB's shared LRU block cache (64 MiB by default, see
//! [`RocksOptions`]), the OS page cache or disk. Vector reads return an
//! owned `Vec<T>`.
//!
//! ## Durability
//!
//! Every change is one atomic `WriteBatch` through the WAL. `flush` (of any
//! of the three) fsyncs the WAL, which makes every earlier write of the
//! segment durable; a process killed without a flush still keeps every
//! completed write (RocksDB hands the WAL record to the OS before
//! returning). Because the three storages share one WAL, a crash always
//! leaves a prefix of the segment's writes.
//!
//! ```
//! use vecseg_rocksdb::{RocksDb, RocksVectorStorage};
//! use vecseg_traits::{AppendableVectorStorage, Distance, Random, VectorStorageRead};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = RocksDb::open(&dir.path().join("rocksdb")).unwrap();
//! let mut vectors = RocksVectorStorage::<f32>::create(db, 2, Distance::Dot).unwrap();
//! vectors.insert(0, &[1.0, 2.0]).unwrap();
//! assert_eq!(&*vectors.get::<Random>(0).unwrap(), &[1.0, 2.0]);
//! ```
#![forbid(unsafe_code)]

pub mod db;
mod id_map;
mod payload;
mod vector;

use std::path::Path;

pub use db::{RocksDb, RocksOptions};
pub use id_map::{decode_point_id, encode_point_id, RocksIdMapper};
pub use payload::RocksPayloadStorage;
pub use vector::RocksVectorStorage;

use vecseg_traits::{Distance, Result, VectorElement};

/// Directory of the shared database inside a segment directory.
pub const DB_DIR: &str = "rocksdb";

/// The three storages of a RocksDB segment.
pub type RocksStorages<T> = (RocksVectorStorage<T>, RocksPayloadStorage, RocksIdMapper);

/// Create the database at `<segment_dir>/rocksdb/` and three empty storages
/// sharing it.
pub fn create_storages<T: VectorElement>(
    segment_dir: &Path,
    dim: usize,
    distance: Distance,
    options: &RocksOptions,
) -> Result<RocksStorages<T>> {
    let db = RocksDb::open_with(&segment_dir.join(DB_DIR), options)?;
    let vectors = RocksVectorStorage::create(db.clone(), dim, distance)?;
    let payloads = RocksPayloadStorage::open(db.clone())?;
    let ids = RocksIdMapper::open(db)?;
    Ok((vectors, payloads, ids))
}

/// Open the three storages of the database at `<segment_dir>/rocksdb/`.
pub fn open_storages<T: VectorElement>(
    segment_dir: &Path,
    options: &RocksOptions,
) -> Result<RocksStorages<T>> {
    let path = segment_dir.join(DB_DIR);
    if !path.is_dir() {
        return Err(vecseg_traits::StorageError::corrupted(
            &path,
            "RocksDB directory is missing",
        ));
    }
    let db = RocksDb::open_with(&path, options)?;
    let vectors = RocksVectorStorage::open(db.clone())?;
    let payloads = RocksPayloadStorage::open(db.clone())?;
    let ids = RocksIdMapper::open(db)?;
    Ok((vectors, payloads, ids))
}
