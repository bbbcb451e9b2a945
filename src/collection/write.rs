//! The write API of [`Collection`] and how each [`Operation`] is applied.
//!
//! A write is validated whole, appended to the WAL (which returns its
//! sequence number), then applied with that number as the version. Replay
//! applies logged operations the same way; every step is guarded by the
//! segments' version checks, so applying an operation twice changes
//! nothing the second time.

use vecseg_traits::payload::validate_payload;
use vecseg_traits::{
    AppendableSegmentEntry, Payload, PointId, Result, SegmentEntry, VectorElement, Version,
};

use super::operation::{Operation, PointData};
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
    /// operation's sequence number.
    pub fn upsert_points(&mut self, points: Vec<PointData>) -> Result<u64> {
        let prepared = self.prepare(&points)?;
        let op = Operation::UpsertPoints(points);
        let seq = self.wal.append(&op.encode()?)?;
        if let Operation::UpsertPoints(points) = &op {
            self.upsert_prepared(seq, points, &prepared)?;
        }
        self.last_seq = self.last_seq.max(seq);
        Ok(seq)
    }

    /// Validate every point of a batch and return the stored forms of
    /// their vectors back to back (normalised for cosine).
    fn prepare(&self, points: &[PointData]) -> Result<Vec<f32>> {
        let (dim, distance) = (self.manifest.dim, self.manifest.distance);
        let mut prepared = Vec::with_capacity(points.len() * dim);
        for p in points {
            f32::validate(&p.vector, dim)?;
            let start = prepared.len();
            prepared.extend_from_slice(&p.vector);
            f32::preprocess(distance, &mut prepared[start..])?;
            validate_payload(&p.payload)?;
        }
        Ok(prepared)
    }

    /// Upsert `points` (vectors already in `prepared`) at `version` into
    /// the appendable segment and drop their older sealed copies.
    fn upsert_prepared(
        &mut self,
        version: Version,
        points: &[PointData],
        prepared: &[f32],
    ) -> Result<()> {
        let dim = self.manifest.dim.max(1);
        for (p, stored) in points.iter().zip(prepared.chunks_exact(dim)) {
            self.appendable
                .upsert_prepared(version, p.id, stored, &p.payload)?;
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

    fn log_and_apply(&mut self, op: Operation) -> Result<u64> {
        let seq = self.wal.append(&op.encode()?)?;
        self.apply(seq, &op)?;
        Ok(seq)
    }

    /// Apply `op` at version `seq` (a new write, or a replayed one).
    pub(super) fn apply(&mut self, seq: u64, op: &Operation) -> Result<()> {
        match op {
            Operation::UpsertPoints(points) => {
                let prepared = self.prepare(points)?;
                self.upsert_prepared(seq, points, &prepared)?;
            }
            Operation::DeletePoints(ids) => {
                for id in ids {
                    self.appendable.delete(seq, *id)?;
                    self.delete_sealed_copies(seq, *id)?;
                }
            }
            Operation::SetPayload { ids, payload } => {
                self.change_payloads(seq, ids, PayloadChange::Set(payload))?
            }
            Operation::OverwritePayload { ids, payload } => {
                self.change_payloads(seq, ids, PayloadChange::Overwrite(payload))?
            }
            Operation::DeletePayloadKeys { ids, keys } => {
                self.change_payloads(seq, ids, PayloadChange::DeleteKeys(keys))?
            }
            Operation::ClearPayload(ids) => self.change_payloads(seq, ids, PayloadChange::Clear)?,
        }
        self.last_seq = self.last_seq.max(seq);
        Ok(())
    }

    /// Delete every copy of `id` in a sealed segment older than `version`.
    fn delete_sealed_copies(&mut self, version: Version, id: PointId) -> Result<()> {
        for (_, s) in &mut self.sealed {
            if s.point_version(id)?.is_some_and(|v| v < version) {
                s.delete(version, id)?;
            }
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
