//! The write API of [`Collection`] and how each [`Operation`] is applied.
//!
//! A write is validated whole, appended to the WAL (which returns its
//! sequence number), then applied with that number as the version. Replay
//! applies logged operations the same way; every step is guarded by the
//! segments' version checks, so applying an operation twice changes
//! nothing the second time.

use std::sync::Arc;

use vecseg_traits::payload::validate_payload;
use vecseg_traits::{
    AppendableSegmentEntry, FieldSchema, Payload, PointId, Result, SegmentEntry, StorageError,
    VectorElement, Version,
};

use super::operation::{Operation, PointData};
use super::wal::Durability;
use super::Collection;

/// A payload change of a point, applied in place or to a copy.
enum PayloadChange<'a> {
    Set(&'a Payload),
    Overwrite(&'a Payload),
    DeleteKeys(&'a [String]),
    Clear,
}

impl PayloadChange<'_> {
    fn apply_to(&self, payload: &mut Payload) {
        match self {
            PayloadChange::Set(p) => {
                for (k, v) in p.iter() {
                    payload.insert(k.clone(), v.clone());
                }
            }
            PayloadChange::Overwrite(p) => *payload = (*p).clone(),
            PayloadChange::DeleteKeys(keys) => {
                for k in keys.iter() {
                    payload.remove(k);
                }
            }
            PayloadChange::Clear => payload.clear(),
        }
    }
}

impl Collection {
    /// Insert or replace `points` as one operation (one sequence number,
    /// one version for all). The batch is validated whole first: a bad
    /// vector or payload rejects it before anything is logged. Returns the
    /// operation's sequence number once the operation is durable (per the
    /// WAL's [`Durability`]) and applied.
    pub fn upsert_points(&mut self, mut points: Vec<PointData>) -> Result<u64> {
        for p in &points {
            f32::validate(&p.vector, self.manifest.dim)?;
            validate_payload(&p.payload)?;
        }
        // The log keeps the vectors as given; the segments get their
        // stored form (a zero vector under cosine fails here, unlogged).
        let entry = Operation::encode_upsert(&points)?;
        self.to_stored_form(&mut points)?;
        self.log_and_apply_with(&entry, |c, seq| c.upsert_stored(seq, &points))
    }

    /// Turn the vectors of `points` into their stored form in place
    /// (normalised for cosine).
    fn to_stored_form(&self, points: &mut [PointData]) -> Result<()> {
        for p in points {
            f32::preprocess(self.manifest.distance, &mut p.vector)?;
        }
        Ok(())
    }

    /// Upsert `points` (vectors in stored form) at `version` into the
    /// appendable segment and drop their older sealed copies.
    fn upsert_stored(&mut self, version: Version, points: &[PointData]) -> Result<()> {
        for p in points {
            self.appendable
                .upsert_prepared(version, p.id, &p.vector, &p.payload)?;
            self.delete_sealed_copies(version, p.id)?;
        }
        Ok(())
    }

    /// Delete `ids` (absent ones are ignored). Returns the sequence number.
    pub fn delete_points(&mut self, ids: Vec<PointId>) -> Result<u64> {
        self.log_and_apply(Operation::DeletePoints(ids))
    }

    /// Merge `payload` into the payloads of `ids` (absent ids are ignored).
    pub fn set_payload(&mut self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        validate_payload(&payload)?;
        self.log_and_apply(Operation::SetPayload { ids, payload })
    }

    /// Replace the payloads of `ids` with `payload`.
    pub fn overwrite_payload(&mut self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        validate_payload(&payload)?;
        self.log_and_apply(Operation::OverwritePayload { ids, payload })
    }

    /// Remove `keys` from the payloads of `ids`.
    pub fn delete_payload_keys(&mut self, ids: Vec<PointId>, keys: Vec<String>) -> Result<u64> {
        self.log_and_apply(Operation::DeletePayloadKeys { ids, keys })
    }

    /// Remove the whole payloads of `ids`.
    pub fn clear_payload(&mut self, ids: Vec<PointId>) -> Result<u64> {
        self.log_and_apply(Operation::ClearPayload(ids))
    }

    /// Index payload key `schema.key` in every segment, and in every
    /// segment created later (a logged operation, like the writes).
    /// Filtered searches, scrolls and counts then read the index's
    /// candidates when the filter is selective (see
    /// [`Segment::plan`](crate::Segment::plan)).
    pub fn create_field_index(&mut self, schema: FieldSchema) -> Result<u64> {
        if schema.key.is_empty() {
            return Err(StorageError::InvalidArgument(
                "a payload index needs a non-empty key".into(),
            ));
        }
        self.log_and_apply(Operation::CreateFieldIndex(schema))
    }

    /// Drop the index of payload key `key` everywhere.
    pub fn drop_field_index(&mut self, key: &str) -> Result<u64> {
        self.log_and_apply(Operation::DropFieldIndex(key.to_string()))
    }

    /// The indexed payload keys.
    pub fn field_indexes(&self) -> &[FieldSchema] {
        &self.manifest.payload_indexes
    }

    fn log_and_apply(&mut self, op: Operation) -> Result<u64> {
        let entry = op.encode()?;
        self.log_and_apply_with(&entry, |c, seq| c.apply(seq, op))
    }

    /// Write `entry` to the WAL, then run `apply` at its sequence number
    /// while the WAL makes the entry durable on another thread; return
    /// the sequence number once both are done.
    ///
    /// Applying before the entry is durable is safe: what `apply` changes
    /// stays in RAM until [`Collection::flush`], which syncs the WAL first,
    /// so no segment can persist an operation the log might lose. The
    /// caller is only answered after the sync, so nothing unlogged is
    /// acknowledged. The overlap hides the `fdatasync` behind the work of
    /// applying a batch.
    fn log_and_apply_with(
        &mut self,
        entry: &[u8],
        apply: impl FnOnce(&mut Self, u64) -> Result<()>,
    ) -> Result<u64> {
        self.check_usable()?;
        let seq = self.wal.write(entry)?;
        let result = if self.wal.durability() == Durability::None || self.defer_durability {
            apply(self, seq)
        } else {
            let wal = Arc::clone(&self.wal);
            std::thread::scope(|scope| {
                let sync = scope.spawn(move || wal.wait_durable(seq));
                let applied = apply(self, seq);
                let synced = sync.join().unwrap_or_else(|_| {
                    Err(StorageError::InvalidArgument(
                        "the WAL sync thread panicked".into(),
                    ))
                });
                applied.and(synced)
            })
        };
        if let Err(e) = &result {
            // The operation is logged (maybe durably) but not wholly
            // applied: only a reopen (replay) can bring RAM and the
            // segments back in line with the log.
            self.unusable = Some(e.to_string());
        }
        result?;
        self.last_seq = self.last_seq.max(seq);
        Ok(seq)
    }

    /// An error if an earlier write failed half-way.
    pub(super) fn check_usable(&self) -> Result<()> {
        match &self.unusable {
            None => Ok(()),
            Some(reason) => Err(StorageError::io(
                &self.dir,
                std::io::Error::other(format!(
                    "the collection refuses writes after an earlier failure ({reason}); reopen it"
                )),
            )),
        }
    }

    /// Apply `op` at version `seq` (a new write, or a replayed one).
    pub(super) fn apply(&mut self, seq: u64, op: Operation) -> Result<()> {
        match op {
            Operation::UpsertPoints(mut points) => {
                self.to_stored_form(&mut points)?;
                self.upsert_stored(seq, &points)?;
            }
            Operation::DeletePoints(ids) => {
                for id in ids {
                    self.appendable.delete(seq, id)?;
                    self.delete_sealed_copies(seq, id)?;
                }
            }
            Operation::SetPayload { ids, payload } => {
                self.change_payloads(seq, &ids, PayloadChange::Set(&payload))?
            }
            Operation::OverwritePayload { ids, payload } => {
                self.change_payloads(seq, &ids, PayloadChange::Overwrite(&payload))?
            }
            Operation::DeletePayloadKeys { ids, keys } => {
                self.change_payloads(seq, &ids, PayloadChange::DeleteKeys(&keys))?
            }
            Operation::ClearPayload(ids) => {
                self.change_payloads(seq, &ids, PayloadChange::Clear)?
            }
            Operation::CreateFieldIndex(schema) => self.change_indexes(
                |segment| segment.create_field_index(schema.clone()),
                |list| {
                    list.retain(|s| s.key != schema.key);
                    list.push(schema.clone());
                },
            )?,
            Operation::DropFieldIndex(key) => self.change_indexes(
                |segment| segment.drop_field_index(&key).map(drop),
                |list| list.retain(|s| s.key != key),
            )?,
        }
        self.last_seq = self.last_seq.max(seq);
        Ok(())
    }

    /// Run `change` on every segment and `record` on the manifest's list
    /// of indexes. Segments flush to record an index, so the WAL is synced
    /// first: a segment must never persist an operation the log could
    /// still lose (see [`Collection::flush`]). The manifest is written
    /// last; a crash before it is repaired by the replay of this entry.
    fn change_indexes(
        &mut self,
        mut change: impl FnMut(&mut dyn SegmentEntry<f32>) -> Result<()>,
        record: impl FnOnce(&mut Vec<FieldSchema>),
    ) -> Result<()> {
        self.wal.sync()?;
        change(&mut self.appendable)?;
        for (_, s) in &mut self.sealed {
            change(s.as_mut())?;
        }
        let mut next = self.manifest.clone();
        record(&mut next.payload_indexes);
        if next != self.manifest {
            next.write(&self.dir)?;
            self.manifest = next;
        }
        Ok(())
    }

    /// Delete every copy of `id` in a sealed segment older than `version`.
    /// A running optimization whose source it is hears of it.
    fn delete_sealed_copies(&mut self, version: Version, id: PointId) -> Result<()> {
        let mut deleted_from = Vec::new();
        for (name, s) in &mut self.sealed {
            if s.point_version(id)?.is_some_and(|v| v < version) {
                s.delete(version, id)?;
                deleted_from.push(name.clone());
            }
        }
        for name in deleted_from {
            self.note_sealed_delete(&name, id, version);
        }
        Ok(())
    }

    fn change_payloads(
        &mut self,
        version: Version,
        ids: &[PointId],
        change: PayloadChange<'_>,
    ) -> Result<()> {
        for &id in ids {
            let in_appendable = self.appendable.point_version(id)?;
            let mut newest_sealed: Option<(usize, Version)> = None;
            for (i, (_, s)) in self.sealed.iter().enumerate() {
                if let Some(v) = s.point_version(id)? {
                    if newest_sealed.is_none_or(|(_, best)| v > best) {
                        newest_sealed = Some((i, v));
                    }
                }
            }
            let appendable_is_newest = match (in_appendable, newest_sealed) {
                (None, None) => continue,
                (Some(_), None) => true,
                (Some(a), Some((_, v))) => a >= v,
                (None, Some(_)) => false,
            };
            if appendable_is_newest {
                // Change the appendable copy in place.
                let a = &mut self.appendable;
                match &change {
                    PayloadChange::Set(p) => a.set_payload(version, id, p)?,
                    PayloadChange::Overwrite(p) => a.overwrite_payload(version, id, p)?,
                    PayloadChange::DeleteKeys(k) => {
                        AppendableSegmentEntry::delete_payload_keys(a, version, id, k)?
                    }
                    PayloadChange::Clear => SegmentEntry::clear_payload(a, version, id)?,
                };
                self.delete_sealed_copies(version, id)?;
            } else if let Some((i, v)) = newest_sealed {
                // The newest copy is sealed: copy it into the appendable
                // segment with the change, then delete the sealed copies.
                if v > version {
                    continue; // stale operation
                }
                let Some(record) = self.sealed[i].1.get(id)? else {
                    continue;
                };
                let mut payload = record.payload;
                change.apply_to(&mut payload);
                self.appendable
                    .upsert(version, id, &record.vector, &payload)?;
                self.delete_sealed_copies(version, id)?;
            }
        }
        Ok(())
    }
}
