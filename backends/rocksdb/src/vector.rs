//! [`RocksVectorStorage`]: vectors in the `vectors` column family, one key
//! per offset, deleted flags in the `deleted` column family.
//!
//! Cached in RAM: the deleted flags (one bit per slot, rebuilt from the
//! `deleted` family on open), the slot count and the configuration. Every
//! vector read goes to RocksDB (its block cache, then the OS page cache,
//! then disk) and is copied into an owned `Vec<T>`.

use std::marker::PhantomData;
use std::sync::Arc;

use bitvec::vec::BitVec;
use rocksdb::{ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use vecseg_traits::bitvec::slice::BitSlice;
use vecseg_traits::{
    AccessPattern, AppendableVectorStorage, Distance, PointOffset, RawScorer, Result, StorageError,
    VectorElement, VectorStorage, VectorStorageRead,
};

use crate::db::{backend_err, decode_offset, offset_key, RocksDb, CF_DELETED, CF_META, CF_VECTORS};

/// Meta key of the vector storage configuration.
pub const META_VECTORS: &[u8] = b"vectors.config";

/// Persisted configuration of a vector storage (JSON in the `meta` family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VectorConfig {
    element: String,
    dim: usize,
    distance: Distance,
}

/// Appendable vector storage over a shared [`RocksDb`].
pub struct RocksVectorStorage<T = f32> {
    db: Arc<RocksDb>,
    dim: usize,
    distance: Distance,
    total: usize,
    deleted: BitVec<u64>,
    deleted_count: usize,
    _element: PhantomData<T>,
}

impl<T> std::fmt::Debug for RocksVectorStorage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksVectorStorage")
            .field("path", &self.db.path())
            .field("dim", &self.dim)
            .field("distance", &self.distance)
            .field("total", &self.total)
            .field("deleted", &self.deleted_count)
            .finish()
    }
}

impl<T: VectorElement> RocksVectorStorage<T> {
    /// Initialise an empty vector storage in `db`. Fails if the database
    /// already holds one.
    pub fn create(db: Arc<RocksDb>, dim: usize, distance: Distance) -> Result<Self> {
        if dim == 0 {
            return Err(StorageError::InvalidArgument(
                "dimension must be at least 1".into(),
            ));
        }
        if db.get_meta(META_VECTORS)?.is_some() {
            return Err(StorageError::InvalidArgument(format!(
                "{} already holds a vector storage",
                db.path().display()
            )));
        }
        let config = VectorConfig {
            element: T::NAME.to_string(),
            dim,
            distance,
        };
        let bytes = serde_json::to_vec(&config).map_err(|e| StorageError::Codec(Box::new(e)))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(db.cf(CF_META)?, META_VECTORS, bytes);
        db.write(batch)?;
        db.sync()?;
        Ok(RocksVectorStorage {
            db,
            dim,
            distance,
            total: 0,
            deleted: BitVec::new(),
            deleted_count: 0,
            _element: PhantomData,
        })
    }

    /// Open the vector storage held in `db`: read the configuration, count
    /// the slots (last key + 1) and load the deleted flags.
    pub fn open(db: Arc<RocksDb>) -> Result<Self> {
        let path = db.path().to_path_buf();
        let bytes = db
            .get_meta(META_VECTORS)?
            .ok_or_else(|| StorageError::corrupted(&path, "no vector storage in this database"))?;
        let config: VectorConfig = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::corrupted(&path, format!("bad vector config: {e}")))?;
        if config.element != T::NAME {
            return Err(StorageError::InvalidArgument(format!(
                "{} stores {} vectors, not {}",
                path.display(),
                config.element,
                T::NAME
            )));
        }
        if config.dim == 0 {
            return Err(StorageError::corrupted(&path, "vector dimension is 0"));
        }
        let total = {
            let mut it = db.inner().raw_iterator_cf(db.cf(CF_VECTORS)?);
            it.seek_to_last();
            it.status()
                .map_err(|e| backend_err(db.path(), "scan vectors column family", e))?;
            match it.key() {
                Some(k) => decode_offset(&path, k)? as usize + 1,
                None => 0,
            }
        };
        let mut deleted = BitVec::repeat(false, total);
        let mut deleted_count = 0;
        {
            let mut it = db.inner().raw_iterator_cf(db.cf(CF_DELETED)?);
            it.seek_to_first();
            while let Some(k) = it.key() {
                let o = decode_offset(&path, k)? as usize;
                if o >= total {
                    return Err(StorageError::corrupted(
                        &path,
                        format!("deleted flag for offset {o} past the last vector ({total})"),
                    ));
                }
                if !deleted.replace(o, true) {
                    deleted_count += 1;
                }
                it.next();
            }
            it.status()
                .map_err(|e| backend_err(db.path(), "scan deleted column family", e))?;
        }
        Ok(RocksVectorStorage {
            db,
            dim: config.dim,
            distance: config.distance,
            total,
            deleted,
            deleted_count,
            _element: PhantomData,
        })
    }

    /// The shared database.
    pub fn db(&self) -> &Arc<RocksDb> {
        &self.db
    }

    /// Append `vectors` (a flat slice of whole vectors) after the last slot
    /// in one write batch: the bulk-load path.
    pub fn append_many(&mut self, vectors: &[T]) -> Result<()> {
        let rest = vectors.chunks_exact(self.dim).remainder().len();
        if rest != 0 {
            return Err(StorageError::DimensionMismatch {
                expected: self.dim,
                got: rest,
            });
        }
        let n = vectors.len() / self.dim;
        if self.total + n > u32::MAX as usize {
            return Err(StorageError::InvalidArgument(
                "too many vectors for u32 offsets".into(),
            ));
        }
        let cf = self.db.cf(CF_VECTORS)?;
        let mut batch = WriteBatch::default();
        for (i, v) in vectors.chunks_exact(self.dim).enumerate() {
            let o = (self.total + i) as u32;
            batch.put_cf(cf, offset_key(o), bytemuck::cast_slice::<T, u8>(v));
        }
        self.db.write(batch)?;
        self.total += n;
        self.deleted.resize(self.total, false);
        Ok(())
    }

    fn decode(&self, offset: PointOffset, bytes: &[u8]) -> Result<Vec<T>> {
        let want = self.dim * std::mem::size_of::<T>();
        if bytes.len() != want {
            return Err(StorageError::corrupted(
                self.db.path(),
                format!("vector {offset} has {} bytes, expected {want}", bytes.len()),
            ));
        }
        let mut out = vec![T::zeroed(); self.dim];
        bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
        Ok(out)
    }

    fn missing(&self, offset: PointOffset) -> StorageError {
        StorageError::corrupted(
            self.db.path(),
            format!("vector {offset} is missing below the slot count"),
        )
    }

    /// Sequential batch: walk one iterator forward instead of point lookups.
    fn get_batch_sequential(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[T]),
    ) -> Result<()> {
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Ok(());
        };
        for &o in offsets {
            self.check_offset(o)?;
        }
        let mut opts = ReadOptions::default();
        opts.set_readahead_size(2 << 20);
        // Keys are 4 bytes, so `last` followed by a zero byte is the first key past it.
        let mut upper = offset_key(last).to_vec();
        upper.push(0);
        opts.set_iterate_upper_bound(upper);
        let mut it = self
            .db
            .inner()
            .raw_iterator_cf_opt(self.db.cf(CF_VECTORS)?, opts);
        it.seek(offset_key(first));
        let mut current: Option<(PointOffset, Vec<T>)> = None;
        for (i, &o) in offsets.iter().enumerate() {
            if let Some((co, v)) = &current {
                if *co == o {
                    f(i, v);
                    continue;
                }
                if o == co + 1 {
                    it.next();
                } else {
                    it.seek(offset_key(o));
                }
            }
            it.status()
                .map_err(|e| backend_err(self.db.path(), "iterate vectors column family", e))?;
            let (k, bytes) = it.item().ok_or_else(|| self.missing(o))?;
            if decode_offset(self.db.path(), k)? != o {
                return Err(self.missing(o));
            }
            let v = self.decode(o, bytes)?;
            f(i, &v);
            current = Some((o, v));
        }
        Ok(())
    }
}

impl<T: VectorElement> VectorStorageRead for RocksVectorStorage<T> {
    type Element = T;
    type Vector<'a> = Vec<T>;
    type Scorer<'a> = RawScorer<'a, Self>;

    fn scorer(&self, query: &[T]) -> Result<Self::Scorer<'_>> {
        Ok(RawScorer::new(self, query))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn total_count(&self) -> usize {
        self.total
    }

    fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<Vec<T>> {
        self.check_offset(offset)?;
        let slice = self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_VECTORS)?, offset_key(offset))
            .map_err(|e| backend_err(self.db.path(), format!("read vector {offset}"), e))?
            .ok_or_else(|| self.missing(offset))?;
        self.decode(offset, &slice)
    }

    fn get_batch<P: AccessPattern>(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[T]),
    ) -> Result<()> {
        let sorted = offsets.windows(2).all(|w| w[0] <= w[1]);
        if P::IS_SEQUENTIAL && sorted && offsets.len() > 1 {
            return self.get_batch_sequential(offsets, f);
        }
        for &o in offsets {
            self.check_offset(o)?;
        }
        let keys: Vec<[u8; 4]> = offsets.iter().map(|&o| offset_key(o)).collect();
        let results = self
            .db
            .inner()
            .batched_multi_get_cf(self.db.cf(CF_VECTORS)?, &keys, sorted);
        for (i, (res, &o)) in results.into_iter().zip(offsets).enumerate() {
            let slice = res
                .map_err(|e| backend_err(self.db.path(), format!("read vector {o}"), e))?
                .ok_or_else(|| self.missing(o))?;
            f(i, &self.decode(o, &slice)?);
        }
        Ok(())
    }

    fn deleted_bits(&self) -> &BitSlice<u64> {
        &self.deleted
    }

    fn drop_page_cache(&self) -> Result<bool> {
        self.db.drop_caches()?;
        Ok(true)
    }

    fn durable_sequence(&self) -> Option<u64> {
        Some(self.db.latest_sequence_number())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.sst_bytes(CF_VECTORS) + self.db.sst_bytes(CF_DELETED) + self.db.overhead_bytes()
    }
}

impl<T: VectorElement> VectorStorage for RocksVectorStorage<T> {
    fn delete(&mut self, offset: PointOffset) -> Result<bool> {
        self.check_offset(offset)?;
        if self.deleted[offset as usize] {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_DELETED)?, offset_key(offset), []);
        self.db.write(batch)?;
        self.deleted.set(offset as usize, true);
        self.deleted_count += 1;
        Ok(true)
    }

    /// fsync the database's WAL. Every write reached RocksDB when it was
    /// made (in the segment's write order), so this is all a flush needs.
    fn flush_data(&mut self) -> Result<()> {
        self.db.sync()
    }

    /// Nothing beyond [`VectorStorage::flush_data`]: the flags were
    /// written with the deletes.
    fn flush_deleted(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<T: VectorElement> AppendableVectorStorage for RocksVectorStorage<T> {
    fn insert(&mut self, offset: PointOffset, vector: &[T]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(StorageError::DimensionMismatch {
                expected: self.dim,
                got: vector.len(),
            });
        }
        let index = offset as usize;
        if index > self.total {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.total,
            });
        }
        let was_deleted = index < self.total && self.deleted[index];
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_VECTORS)?,
            offset_key(offset),
            bytemuck::cast_slice::<T, u8>(vector),
        );
        if was_deleted {
            batch.delete_cf(self.db.cf(CF_DELETED)?, offset_key(offset));
        }
        self.db.write(batch)?;
        if index == self.total {
            self.total += 1;
            self.deleted.resize(self.total, false);
        } else if was_deleted {
            self.deleted.set(index, false);
            self.deleted_count -= 1;
        }
        Ok(())
    }
}
