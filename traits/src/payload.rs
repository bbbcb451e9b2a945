//! Payload storage traits: a read half, a write half (clear, flush) and an
//! appendable half (set, overwrite, delete keys).

use crate::error::Result;
use crate::types::{Payload, PointOffset};

/// Reading payloads by offset.
pub trait PayloadStorageRead: Send + Sync {
    /// The payload at `offset`; an empty object when none is stored.
    fn get(&self, offset: PointOffset) -> Result<Payload>;

    /// Call `f` for every offset holding a non-empty payload, in increasing
    /// offset order; stop early when `f` returns `Ok(false)`.
    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()>;

    /// Number of offsets holding a non-empty payload.
    fn count(&self) -> usize;

    /// Bytes this storage occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
    }
}

/// Clearing and persisting; what immutable storages support.
pub trait PayloadStorage: PayloadStorageRead {
    /// Remove the whole payload of `offset`; returns what was there.
    fn clear(&mut self, offset: PointOffset) -> Result<Payload>;
    /// Make every change durable.
    fn flush(&mut self) -> Result<()>;
}

/// Storages whose payloads can be written.
pub trait AppendablePayloadStorage: PayloadStorage {
    /// Merge `payload`'s keys into the stored payload (keys in `payload` win).
    fn set(&mut self, offset: PointOffset, payload: &Payload) -> Result<()> {
        let mut current = self.get(offset)?;
        for (k, v) in payload {
            current.insert(k.clone(), v.clone());
        }
        self.overwrite(offset, &current)
    }

    /// Replace the stored payload with `payload`.
    fn overwrite(&mut self, offset: PointOffset, payload: &Payload) -> Result<()>;

    /// Remove `keys` from the stored payload; returns the removed values.
    fn delete_keys(&mut self, offset: PointOffset, keys: &[&str]) -> Result<Payload> {
        let mut current = self.get(offset)?;
        let mut removed = Payload::new();
        for key in keys {
            if let Some(v) = current.remove(*key) {
                removed.insert((*key).to_string(), v);
            }
        }
        if !removed.is_empty() {
            self.overwrite(offset, &current)?;
        }
        Ok(removed)
    }
}
