//! [`SlotBatch`]: everything a segment holds for a run of offsets, read
//! through the read traits only, so any two segments can be copied and
//! compared slot by slot.

use std::ops::Range;

use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapperRead, Payload,
    PayloadStorageRead, PointId, PointOffset, Result, Sequential, StorageError, VectorElement,
    VectorStorageRead, Version,
};

use super::checksum::Checksum;
use crate::Segment;

/// The contents of offsets `start..start + len` of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotBatch<T> {
    /// First offset of the batch.
    pub start: PointOffset,
    /// Vector dimension.
    pub dim: usize,
    /// Vectors of the slots that have one (the first `vector_slots`), flat.
    pub vectors: Vec<T>,
    /// Number of slots with a vector (slots past the vector storage's end have none).
    pub vector_slots: usize,
    /// Deleted flag per slot with a vector.
    pub deleted: Vec<bool>,
    /// Payload per slot (empty when none).
    pub payloads: Vec<Payload>,
    /// External id and version per slot covered by the id mapper
    /// (`None` = allocated but unmapped); shorter than `payloads` when the
    /// id mapper ends inside the batch.
    pub mappings: Vec<Option<(PointId, Option<Version>)>>,
}

impl<T: VectorElement> SlotBatch<T> {
    /// Number of slots in the batch.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether the batch has no slots.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    /// Number of mapped (live or unversioned) points in the batch.
    pub fn mapped(&self) -> usize {
        self.mappings.iter().filter(|m| m.is_some()).count()
    }

    /// The vector of slot `i` of the batch, if it has one.
    pub fn vector(&self, i: usize) -> Option<&[T]> {
        (i < self.vector_slots).then(|| &self.vectors[i * self.dim..(i + 1) * self.dim])
    }

    /// The [`Checksum::slot_hash`] of every slot, in offset order, and the
    /// bytes of JSON payload seen.
    pub fn slot_hashes(&self) -> (Vec<u64>, u64) {
        let mut payload_bytes = 0u64;
        let hashes = (0..self.len())
            .map(|i| {
                let o = self.start + i as PointOffset;
                let vector = self.vector(i);
                let deleted = self.deleted.get(i).copied().unwrap_or(false);
                let mapping = self.mappings.get(i).copied().flatten();
                let (h, json) = Checksum::slot_hash(o, vector, deleted, &self.payloads[i], mapping);
                payload_bytes += json;
                h
            })
            .collect();
        (hashes, payload_bytes)
    }

    /// Mix every slot into `checksum`; returns the bytes of JSON payload seen.
    pub fn checksum_into(&self, checksum: &mut Checksum) -> u64 {
        let (hashes, payload_bytes) = self.slot_hashes();
        hashes.iter().for_each(|&h| checksum.mix(h));
        payload_bytes
    }

    /// First difference to `other`, described for a `VerificationFailed`.
    pub fn diff(&self, other: &SlotBatch<T>) -> Option<String> {
        if self.start != other.start || self.len() != other.len() {
            return Some(format!(
                "batch shape differs: {}+{} vs {}+{}",
                self.start,
                self.len(),
                other.start,
                other.len()
            ));
        }
        if self.vector_slots != other.vector_slots || self.mappings.len() != other.mappings.len() {
            return Some(format!(
                "slot coverage differs at batch {}: {} vs {} vectors, {} vs {} id slots",
                self.start,
                self.vector_slots,
                other.vector_slots,
                self.mappings.len(),
                other.mappings.len()
            ));
        }
        for i in 0..self.len() {
            let o = self.start + i as PointOffset;
            let (a, b) = (self.vector(i), other.vector(i));
            let same_vector = match (a, b) {
                (Some(a), Some(b)) => a
                    .iter()
                    .zip(b)
                    .all(|(x, y)| x.to_f32().to_bits() == y.to_f32().to_bits()),
                (None, None) => true,
                _ => false,
            };
            if !same_vector {
                return Some(format!("vector of offset {o} differs"));
            }
            if self.deleted.get(i) != other.deleted.get(i) {
                return Some(format!("deleted flag of offset {o} differs"));
            }
            if self.payloads[i] != other.payloads[i] {
                return Some(format!("payload of offset {o} differs"));
            }
            if self.mappings.get(i) != other.mappings.get(i) {
                return Some(format!(
                    "id/version of offset {o} differs: {:?} vs {:?}",
                    self.mappings.get(i),
                    other.mappings.get(i)
                ));
            }
        }
        None
    }
}

/// Number of slots of a segment: the larger of its vector and id totals.
pub fn slot_count<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead>(
    s: &Segment<V, P, I>,
) -> usize {
    s.vectors.total_count().max(s.ids.total_count())
}

/// Read offsets `range` of `s` (vectors in one sequential batch).
pub fn read_batch<V, P, I>(
    s: &Segment<V, P, I>,
    range: Range<usize>,
) -> Result<SlotBatch<V::Element>>
where
    V: VectorStorageRead,
    P: PayloadStorageRead,
    I: IdMapperRead,
{
    let dim = s.vectors.dim();
    let start = range.start as PointOffset;
    let vec_end = range.end.min(s.vectors.total_count()).max(range.start);
    let offsets: Vec<PointOffset> = (range.start..vec_end).map(|o| o as PointOffset).collect();
    let mut vectors = vec![V::Element::default(); offsets.len() * dim];
    let mut bad_len = None;
    s.vectors.get_batch::<Sequential>(&offsets, &mut |i, v| {
        if v.len() == dim {
            vectors[i * dim..(i + 1) * dim].copy_from_slice(v);
        } else {
            bad_len = Some(v.len());
        }
    })?;
    if let Some(got) = bad_len {
        return Err(StorageError::DimensionMismatch { expected: dim, got });
    }
    let deleted = offsets.iter().map(|&o| s.vectors.is_deleted(o)).collect();
    let payloads = range
        .clone()
        .map(|o| s.payloads.get(o as PointOffset))
        .collect::<Result<Vec<_>>>()?;
    let id_end = range.end.min(s.ids.total_count()).max(range.start);
    let mappings = (range.start..id_end)
        .map(|o| {
            let o = o as PointOffset;
            Ok(match s.ids.external(o)? {
                Some(id) => Some((id, s.ids.version(o)?)),
                None => None,
            })
        })
        .collect::<Result<_>>()?;
    Ok(SlotBatch {
        start,
        dim,
        vector_slots: offsets.len(),
        vectors,
        deleted,
        payloads,
        mappings,
    })
}

/// An external id no point of `s` uses, for allocating unmapped offsets
/// (link, then drop at once).
pub fn placeholder_id<V, P, I: IdMapperRead>(s: &Segment<V, P, I>) -> Result<PointId> {
    let mut n = u64::MAX;
    while s.ids.internal(PointId::Num(n))?.is_some() {
        n -= 1;
    }
    Ok(PointId::Num(n))
}

/// Write `batch` into the same offsets of `target`, overwriting whatever a
/// previous (interrupted) run left there. Slots at or above `fresh_from`
/// are known to be empty in `target`, which saves a read per empty payload.
pub fn write_batch<V, P, I>(
    target: &mut Segment<V, P, I>,
    batch: &SlotBatch<V::Element>,
    placeholder: PointId,
    fresh_from: usize,
) -> Result<()>
where
    V: AppendableVectorStorage,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    for i in 0..batch.len() {
        let o = batch.start + i as PointOffset;
        if let Some(v) = batch.vector(i) {
            target.vectors.insert(o, v)?;
            if batch.deleted[i] {
                target.vectors.delete(o)?;
            }
        }
        let payload = &batch.payloads[i];
        if !payload.is_empty() {
            target.payloads.overwrite(o, payload)?;
        } else if o as usize >= fresh_from {
            // Nothing there yet.
        } else if !target.payloads.get(o)?.is_empty() {
            target.payloads.clear(o)?;
        }
        match batch.mappings.get(i) {
            None => {}
            Some(Some((id, version))) => {
                // A mapped source point always has a version (repair drops
                // the ones that lack it); 0 is only a fallback.
                target.ids.set_link(*id, o, version.unwrap_or(0))?;
            }
            Some(None) => {
                if o as usize >= target.ids.total_count() {
                    target.ids.set_link(placeholder, o, 0)?;
                    target.ids.drop_id(placeholder)?;
                } else if let Some(stale) = target.ids.external(o)? {
                    target.ids.drop_id(stale)?;
                }
            }
        }
    }
    Ok(())
}
