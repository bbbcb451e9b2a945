//! [`RocksIdMapper`]: external ids, offsets and versions in three column
//! families.
//!
//! * `mapping`: encoded external id -> offset (u32 BE). The id encoding is
//!   `0x00 ++ u64 BE` for numeric ids and `0x01 ++ 16 UUID bytes` for UUIDs,
//!   so RocksDB's byte order is exactly [`PointId`]'s order (every number
//!   before every UUID). Ordered iteration (`iter_from`) is a RocksDB range
//!   scan; nothing is sorted in RAM.
//! * `external`: offset (u32 BE) -> encoded external id.
//! * `versions`: offset (u32 BE) -> version (u64 LE).
//! * `meta`: `ids.total` (offsets ever allocated) and `ids.available`
//!   (mapped ids), u64 LE, written in the same batch as the links.
//!
//! Cached in RAM: the two counters only. `internal`, `external` and
//! `version` are RocksDB point lookups (served from the block cache when
//! warm). A RocksDB read error or a corrupt record is returned as an error
//! (a corruption RocksDB detects is `StorageError::Corrupted` naming the
//! database), never read as absent.

use std::path::PathBuf;
use std::sync::Arc;

use rocksdb::{DBRawIterator, WriteBatch};
use vecseg_traits::{
    AppendableIdMapper, IdMapper, IdMapperRead, PointId, PointOffset, Result, StorageError, Version,
};

use crate::db::{
    backend_err, decode_offset, offset_key, RocksDb, CF_EXTERNAL, CF_MAPPING, CF_META, CF_VERSIONS,
};

/// Meta key of the number of offsets ever allocated.
pub const META_IDS_TOTAL: &[u8] = b"ids.total";
/// Meta key of the number of mapped ids.
pub const META_IDS_AVAILABLE: &[u8] = b"ids.available";

/// Tag byte of a numeric id key.
const TAG_NUM: u8 = 0;
/// Tag byte of a UUID id key.
const TAG_UUID: u8 = 1;

/// Encode an external id so byte order = [`PointId`] order.
pub fn encode_point_id(id: PointId) -> Vec<u8> {
    match id {
        PointId::Num(n) => {
            let mut k = Vec::with_capacity(9);
            k.push(TAG_NUM);
            k.extend_from_slice(&n.to_be_bytes());
            k
        }
        PointId::Uuid(u) => {
            let mut k = Vec::with_capacity(17);
            k.push(TAG_UUID);
            k.extend_from_slice(u.as_bytes());
            k
        }
    }
}

/// Decode a key written by [`encode_point_id`]; `None` if malformed.
pub fn decode_point_id(bytes: &[u8]) -> Option<PointId> {
    match bytes.split_first()? {
        (&TAG_NUM, rest) => Some(PointId::Num(u64::from_be_bytes(rest.try_into().ok()?))),
        (&TAG_UUID, rest) => Some(PointId::Uuid(uuid::Uuid::from_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

/// Appendable id mapper over a shared [`RocksDb`].
pub struct RocksIdMapper {
    db: Arc<RocksDb>,
    total: usize,
    available: usize,
}

impl std::fmt::Debug for RocksIdMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksIdMapper")
            .field("path", &self.db.path())
            .field("total", &self.total)
            .field("available", &self.available)
            .finish()
    }
}

impl RocksIdMapper {
    /// Open (or initialise, when the database has none yet) the id mapper
    /// held in `db`.
    pub fn open(db: Arc<RocksDb>) -> Result<Self> {
        let total = db.get_counter(META_IDS_TOTAL)?;
        let available = db.get_counter(META_IDS_AVAILABLE)?;
        if total > u32::MAX as u64 + 1 || available > total {
            return Err(StorageError::corrupted(
                db.path(),
                format!("id counters out of range: total {total}, available {available}"),
            ));
        }
        Ok(RocksIdMapper {
            db,
            total: total as usize,
            available: available as usize,
        })
    }

    /// The shared database.
    pub fn db(&self) -> &Arc<RocksDb> {
        &self.db
    }

    fn path(&self) -> PathBuf {
        self.db.path().to_path_buf()
    }

    /// `internal` with errors surfaced.
    pub fn try_internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        match self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_MAPPING)?, encode_point_id(id))
            .map_err(|e| backend_err(self.db.path(), format!("look up point {id}"), e))?
        {
            None => Ok(None),
            Some(v) => Ok(Some(decode_offset(self.db.path(), &v)?)),
        }
    }

    /// `external` with errors surfaced.
    pub fn try_external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        match self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_EXTERNAL)?, offset_key(offset))
            .map_err(|e| backend_err(self.db.path(), format!("look up offset {offset}"), e))?
        {
            None => Ok(None),
            Some(v) => decode_point_id(&v).map(Some).ok_or_else(|| {
                StorageError::corrupted(self.path(), format!("bad external id at offset {offset}"))
            }),
        }
    }

    /// `version` with errors surfaced.
    pub fn try_version(&self, offset: PointOffset) -> Result<Option<Version>> {
        match self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_VERSIONS)?, offset_key(offset))
            .map_err(|e| backend_err(self.db.path(), format!("read version of {offset}"), e))?
        {
            None => Ok(None),
            Some(v) => {
                let arr: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StorageError::corrupted(self.path(), format!("bad version at offset {offset}"))
                })?;
                Ok(Some(u64::from_le_bytes(arr)))
            }
        }
    }

    /// Call `f(offset, id)` for every mapped offset in `range`, in
    /// increasing order, with one forward iterator over `external`.
    pub fn scan_external(
        &self,
        range: std::ops::Range<PointOffset>,
        f: &mut dyn FnMut(PointOffset, PointId),
    ) -> Result<()> {
        let path = self.path();
        self.scan(CF_EXTERNAL, range, &mut |o, v| {
            let id = decode_point_id(v).ok_or_else(|| {
                StorageError::corrupted(&path, format!("bad external id at offset {o}"))
            })?;
            f(o, id);
            Ok(())
        })
    }

    /// Call `f(offset, version)` for every offset in `range` that has a
    /// version, in increasing order, with one forward iterator.
    pub fn scan_versions(
        &self,
        range: std::ops::Range<PointOffset>,
        f: &mut dyn FnMut(PointOffset, Version),
    ) -> Result<()> {
        let path = self.path();
        self.scan(CF_VERSIONS, range, &mut |o, v| {
            let arr: [u8; 8] = v.try_into().map_err(|_| {
                StorageError::corrupted(&path, format!("bad version at offset {o}"))
            })?;
            f(o, u64::from_le_bytes(arr));
            Ok(())
        })
    }

    fn scan(
        &self,
        cf: &str,
        range: std::ops::Range<PointOffset>,
        f: &mut dyn FnMut(PointOffset, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_readahead_size(1 << 20);
        opts.set_iterate_upper_bound(offset_key(range.end).to_vec());
        let mut it = self.db.inner().raw_iterator_cf_opt(self.db.cf(cf)?, opts);
        it.seek(offset_key(range.start));
        while let Some((k, v)) = it.item() {
            f(decode_offset(self.db.path(), k)?, v)?;
            it.next();
        }
        it.status()
            .map_err(|e| backend_err(self.db.path(), format!("iterate {cf} column family"), e))
    }

    fn put_counters(&self, batch: &mut WriteBatch, total: usize, available: usize) -> Result<()> {
        let meta = self.db.cf(CF_META)?;
        batch.put_cf(meta, META_IDS_TOTAL, (total as u64).to_le_bytes());
        batch.put_cf(meta, META_IDS_AVAILABLE, (available as u64).to_le_bytes());
        Ok(())
    }
}

/// Ordered iteration over the `mapping` family; an error ends it after
/// being yielded.
struct MappingIter<'a> {
    it: DBRawIterator<'a>,
    path: PathBuf,
    done: bool,
}

impl Iterator for MappingIter<'_> {
    type Item = Result<(PointId, PointOffset)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some((k, v)) = self.it.item() else {
            self.done = true;
            return match self.it.status() {
                Ok(()) => None,
                Err(e) => Some(Err(backend_err(
                    &self.path,
                    "iterate the mapping column family",
                    e,
                ))),
            };
        };
        let decoded = decode_point_id(k)
            .ok_or_else(|| {
                StorageError::corrupted(&self.path, "bad external id in the mapping column family")
            })
            .and_then(|id| Ok((id, decode_offset(&self.path, v)?)));
        if decoded.is_err() {
            self.done = true;
        } else {
            self.it.next();
        }
        Some(decoded)
    }
}

impl IdMapperRead for RocksIdMapper {
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        self.try_internal(id)
    }

    fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        if offset as usize >= self.total {
            return Ok(None);
        }
        self.try_external(offset)
    }

    fn version(&self, offset: PointOffset) -> Result<Option<Version>> {
        if offset as usize >= self.total {
            return Ok(None);
        }
        self.try_version(offset)
    }

    fn total_count(&self) -> usize {
        self.total
    }

    fn available_count(&self) -> usize {
        self.available
    }

    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_> {
        let cf = match self.db.cf(CF_MAPPING) {
            Ok(cf) => cf,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut it = self.db.inner().raw_iterator_cf(cf);
        match from {
            Some(id) => it.seek(encode_point_id(id)),
            None => it.seek_to_first(),
        }
        Box::new(MappingIter {
            it,
            path: self.path(),
            done: false,
        })
    }

    fn durable_sequence(&self) -> Option<u64> {
        Some(self.db.latest_sequence_number())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.sst_bytes(CF_MAPPING)
            + self.db.sst_bytes(CF_EXTERNAL)
            + self.db.sst_bytes(CF_VERSIONS)
            + self.db.sst_bytes(CF_META)
    }
}

impl IdMapper for RocksIdMapper {
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
        let Some(offset) = self.try_internal(id)? else {
            return Ok(None);
        };
        let available = self.available.saturating_sub(1);
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.db.cf(CF_MAPPING)?, encode_point_id(id));
        if self.try_external(offset)? == Some(id) {
            batch.delete_cf(self.db.cf(CF_EXTERNAL)?, offset_key(offset));
        }
        self.put_counters(&mut batch, self.total, available)?;
        self.db.write(batch)?;
        self.available = available;
        Ok(Some(offset))
    }

    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()> {
        if offset as usize >= self.total {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.total,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_VERSIONS)?,
            offset_key(offset),
            version.to_le_bytes(),
        );
        self.db.write(batch)
    }

    fn flush_mappings(&mut self) -> Result<()> {
        self.db.sync()
    }

    fn flush_versions(&mut self) -> Result<()> {
        self.db.sync()
    }
}

impl AppendableIdMapper for RocksIdMapper {
    /// Link and version in one `WriteBatch`: a mapping is never durable
    /// without its version.
    fn set_link(&mut self, id: PointId, offset: PointOffset, version: Version) -> Result<()> {
        let index = offset as usize;
        if index > self.total {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.total,
            });
        }
        let mapping = self.db.cf(CF_MAPPING)?;
        let external = self.db.cf(CF_EXTERNAL)?;
        let mut available = self.available;
        let mut batch = WriteBatch::default();
        // The id previously at `offset` loses its mapping.
        let old_id = if index < self.total {
            self.try_external(offset)?
        } else {
            None
        };
        batch.put_cf(
            self.db.cf(CF_VERSIONS)?,
            offset_key(offset),
            version.to_le_bytes(),
        );
        if let Some(old_id) = old_id {
            if old_id == id {
                return self.db.write(batch);
            }
            batch.delete_cf(mapping, encode_point_id(old_id));
            available = available.saturating_sub(1);
        }
        // `id`'s previous offset loses its reverse mapping.
        match self.try_internal(id)? {
            Some(old_offset) => {
                if old_offset != offset {
                    batch.delete_cf(external, offset_key(old_offset));
                }
            }
            None => available += 1,
        }
        batch.put_cf(mapping, encode_point_id(id), offset_key(offset));
        batch.put_cf(external, offset_key(offset), encode_point_id(id));
        let total = self.total.max(index + 1);
        self.put_counters(&mut batch, total, available)?;
        self.db.write(batch)?;
        self.total = total;
        self.available = available;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_encoding_preserves_order() {
        let mut ids = vec![
            PointId::Num(0),
            PointId::Num(1),
            PointId::Num(255),
            PointId::Num(256),
            PointId::Num(u64::MAX),
            PointId::Uuid(uuid::Uuid::from_u128(0)),
            PointId::Uuid(uuid::Uuid::from_u128(1)),
            PointId::Uuid(uuid::Uuid::from_u128(u128::MAX)),
        ];
        ids.reverse();
        let mut by_key = ids.clone();
        by_key.sort_by_key(|id| encode_point_id(*id));
        ids.sort();
        assert_eq!(by_key, ids);
        for id in ids {
            assert_eq!(decode_point_id(&encode_point_id(id)), Some(id));
        }
        assert_eq!(decode_point_id(&[]), None);
        assert_eq!(decode_point_id(&[0, 1, 2]), None);
        assert_eq!(decode_point_id(&[9; 9]), None);
    }
}
