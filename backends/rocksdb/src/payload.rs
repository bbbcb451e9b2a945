//! [`RocksPayloadStorage`]: payloads in the `payload` column family.
//!
//! Key: offset as u32 big-endian. Value: a one-byte codec tag followed by
//! the payload object: `0x02` = MessagePack (what this build writes; exact
//! for every JSON number), `0x01` = JSON text (read only). An empty payload has no
//! key. The number of non-empty payloads is kept in the `meta` family
//! (`payload.count`, u64 LE) and updated in the same write batch as the
//! payload, so it is always consistent.
//!
//! Cached in RAM: that count only. Every read decodes the value from RocksDB.

use std::sync::Arc;

use rocksdb::{ReadOptions, WriteBatch};
use vecseg_traits::{
    AppendablePayloadStorage, Payload, PayloadStorage, PayloadStorageRead, PointOffset, Result,
    StorageError,
};

use crate::db::{backend_err, decode_offset, offset_key, RocksDb, CF_META, CF_PAYLOAD};

/// Meta key of the count of non-empty payloads.
pub const META_PAYLOAD_COUNT: &[u8] = b"payload.count";
/// Codec tag of a JSON-text payload value (read, never written).
pub const CODEC_JSON: u8 = 1;
/// Codec tag of a MessagePack payload value (written by this build).
pub const CODEC_MSGPACK: u8 = 2;

/// Appendable payload storage over a shared [`RocksDb`].
pub struct RocksPayloadStorage {
    db: Arc<RocksDb>,
    count: usize,
}

impl std::fmt::Debug for RocksPayloadStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksPayloadStorage")
            .field("path", &self.db.path())
            .field("count", &self.count)
            .finish()
    }
}

/// Encode a payload value (tag + MessagePack).
pub(crate) fn encode_payload(payload: &Payload) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.push(CODEC_MSGPACK);
    rmp_serde::encode::write(&mut out, payload).map_err(|e| StorageError::Codec(Box::new(e)))?;
    Ok(out)
}

impl RocksPayloadStorage {
    /// Open (or initialise, when the database has none yet) the payload
    /// storage held in `db`.
    pub fn open(db: Arc<RocksDb>) -> Result<Self> {
        let count = db.get_counter(META_PAYLOAD_COUNT)?;
        let count = usize::try_from(count)
            .map_err(|_| StorageError::corrupted(db.path(), "payload count overflows"))?;
        Ok(RocksPayloadStorage { db, count })
    }

    /// The shared database.
    pub fn db(&self) -> &Arc<RocksDb> {
        &self.db
    }

    fn decode(&self, offset: PointOffset, bytes: &[u8]) -> Result<Payload> {
        match bytes.split_first() {
            Some((&CODEC_MSGPACK, bytes)) => rmp_serde::from_slice(bytes).map_err(|e| {
                StorageError::corrupted(
                    self.db.path(),
                    format!("payload {offset} is not a MessagePack object: {e}"),
                )
            }),
            Some((&CODEC_JSON, json)) => serde_json::from_slice(json).map_err(|e| {
                StorageError::corrupted(
                    self.db.path(),
                    format!("payload {offset} is not a JSON object: {e}"),
                )
            }),
            Some((tag, _)) => Err(StorageError::corrupted(
                self.db.path(),
                format!("payload {offset} has unknown codec tag {tag}"),
            )),
            None => Err(StorageError::corrupted(
                self.db.path(),
                format!("payload {offset} is an empty value"),
            )),
        }
    }

    /// Call `f(offset, payload)` for every non-empty payload with an offset
    /// in `range`, in increasing order, with one forward iterator (the bulk
    /// path migration uses instead of one lookup per offset).
    pub fn scan_range(
        &self,
        range: std::ops::Range<PointOffset>,
        f: &mut dyn FnMut(PointOffset, Payload),
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let mut opts = ReadOptions::default();
        opts.set_readahead_size(2 << 20);
        opts.set_iterate_upper_bound(offset_key(range.end).to_vec());
        let mut it = self
            .db
            .inner()
            .raw_iterator_cf_opt(self.db.cf(CF_PAYLOAD)?, opts);
        it.seek(offset_key(range.start));
        while let Some((k, v)) = it.item() {
            let o = decode_offset(self.db.path(), k)?;
            f(o, self.decode(o, v)?);
            it.next();
        }
        it.status()
            .map_err(|e| backend_err(self.db.path(), "iterate payload column family", e))
    }

    fn exists(&self, offset: PointOffset) -> Result<bool> {
        Ok(self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_PAYLOAD)?, offset_key(offset))
            .map_err(|e| backend_err(self.db.path(), format!("read payload {offset}"), e))?
            .is_some())
    }

    fn put_count(&self, batch: &mut WriteBatch, count: usize) -> Result<()> {
        batch.put_cf(
            self.db.cf(CF_META)?,
            META_PAYLOAD_COUNT,
            (count as u64).to_le_bytes(),
        );
        Ok(())
    }
}

impl PayloadStorageRead for RocksPayloadStorage {
    fn get(&self, offset: PointOffset) -> Result<Payload> {
        match self
            .db
            .inner()
            .get_pinned_cf(self.db.cf(CF_PAYLOAD)?, offset_key(offset))
            .map_err(|e| backend_err(self.db.path(), format!("read payload {offset}"), e))?
        {
            Some(bytes) => self.decode(offset, &bytes),
            None => Ok(Payload::new()),
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()> {
        let mut opts = ReadOptions::default();
        opts.set_readahead_size(2 << 20);
        let mut it = self
            .db
            .inner()
            .raw_iterator_cf_opt(self.db.cf(CF_PAYLOAD)?, opts);
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            let o = decode_offset(self.db.path(), k)?;
            let p = self.decode(o, v)?;
            if !f(o, p)? {
                return Ok(());
            }
            it.next();
        }
        it.status()
            .map_err(|e| backend_err(self.db.path(), "iterate payload column family", e))
    }

    fn count(&self) -> usize {
        self.count
    }

    fn durable_sequence(&self) -> Option<u64> {
        Some(self.db.latest_sequence_number())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.sst_bytes(CF_PAYLOAD)
    }
}

impl PayloadStorage for RocksPayloadStorage {
    fn clear(&mut self, offset: PointOffset) -> Result<Payload> {
        let old = self.get(offset)?;
        if old.is_empty() {
            return Ok(old);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.db.cf(CF_PAYLOAD)?, offset_key(offset));
        self.put_count(&mut batch, self.count.saturating_sub(1))?;
        self.db.write(batch)?;
        self.count = self.count.saturating_sub(1);
        Ok(old)
    }

    fn flush(&mut self) -> Result<()> {
        self.db.sync()
    }
}

impl AppendablePayloadStorage for RocksPayloadStorage {
    fn overwrite(&mut self, offset: PointOffset, payload: &Payload) -> Result<()> {
        let existed = self.exists(offset)?;
        let count =
            (self.count + usize::from(!payload.is_empty())).saturating_sub(usize::from(existed));
        let mut batch = WriteBatch::default();
        if payload.is_empty() {
            if !existed {
                return Ok(());
            }
            batch.delete_cf(self.db.cf(CF_PAYLOAD)?, offset_key(offset));
        } else {
            batch.put_cf(
                self.db.cf(CF_PAYLOAD)?,
                offset_key(offset),
                encode_payload(payload)?,
            );
        }
        if count != self.count {
            self.put_count(&mut batch, count)?;
        }
        self.db.write(batch)?;
        self.count = count;
        Ok(())
    }
}
