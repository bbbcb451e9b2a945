//! Batch writes and reads: [`Segment::upsert_batch`] and
//! [`Segment::get_batch`].
//!
//! A batch upsert is one operation with one version for every point (see
//! [`Segment::upsert_batch`]); a batch read fetches vectors with one
//! `get_batch` call in offset order.

use vecseg_traits::payload::validate_payload;
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapperRead, Payload,
    PayloadStorageRead, PointId, PointOffset, Random, Record, Result, VectorElement,
    VectorStorageRead, Version,
};

use super::Segment;

/// One point of [`Segment::upsert_batch`].
#[derive(Debug, Clone, Copy)]
pub struct PointInput<'a, T> {
    /// External id.
    pub id: PointId,
    /// The vector, as given (normalised for cosine by the segment).
    pub vector: &'a [T],
    /// The whole payload (replaces the stored one).
    pub payload: &'a Payload,
}

impl<V, P, I> Segment<V, P, I>
where
    V: AppendableVectorStorage,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    /// Insert or replace every point of `points` at `version`; returns, per
    /// point, whether it was applied (`false`: the stored point is newer).
    ///
    /// One version for every point, as one write-ahead-log record carries
    /// one sequence number. The batch is validated whole (dimensions,
    /// finite components, payload depth) before anything is written, so an
    /// invalid point rejects the batch instead of leaving half of it
    /// applied. The points are then
    /// applied in order exactly as [`upsert`](Self::upsert) would apply
    /// them one by one at `version`: a point whose stored version is newer
    /// is skipped, and an id repeated in the batch ends with its last entry.
    ///
    /// ```
    /// use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
    /// use vecseg::{Distance, Payload, PointId, PointInput, Segment};
    ///
    /// let vectors = MemoryVectorStorage::<f32>::new(2, Distance::Dot).unwrap();
    /// let mut s = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
    /// let empty = Payload::new();
    /// let points: Vec<_> = (0..3u64)
    ///     .map(|i| (PointId::Num(i), [i as f32, 1.0]))
    ///     .collect();
    /// let batch: Vec<_> = points
    ///     .iter()
    ///     .map(|(id, v)| PointInput { id: *id, vector: v, payload: &empty })
    ///     .collect();
    /// assert_eq!(s.upsert_batch(1, &batch).unwrap(), vec![true; 3]);
    /// assert_eq!(s.point_count(), 3);
    /// ```
    pub fn upsert_batch(
        &mut self,
        version: Version,
        points: &[PointInput<'_, V::Element>],
    ) -> Result<Vec<bool>> {
        let dim = self.vectors.dim();
        let distance = self.vectors.distance();
        for p in points {
            V::Element::validate(p.vector, dim)?;
            validate_payload(p.payload)?;
        }
        // Normalised right before its insert, in one reused buffer: the
        // vector is still in cache when the storage copies it.
        let mut stored: Vec<V::Element> = Vec::with_capacity(dim);
        let mut applied = Vec::with_capacity(points.len());
        for p in points {
            stored.clear();
            stored.extend_from_slice(p.vector);
            V::Element::preprocess(distance, &mut stored)?;
            applied.push(self.upsert_prepared(version, p.id, &stored, p.payload)?);
        }
        Ok(applied)
    }
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// The records of `ids`, in the order given (`None` for an absent id).
    /// Vectors are fetched with one [`VectorStorageRead::get_batch`] call in
    /// offset order, so backends that batch reads (io_uring, RocksDB
    /// multi-get) do.
    pub fn get_batch(&self, ids: &[PointId]) -> Result<Vec<Option<Record<V::Element>>>> {
        let mut out: Vec<Option<Record<V::Element>>> = Vec::with_capacity(ids.len());
        let mut found: Vec<(PointOffset, usize)> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            out.push(match self.ids.internal(*id)? {
                Some(o) => {
                    found.push((o, i));
                    Some(Record {
                        id: *id,
                        version: self.ids.version(o)?.unwrap_or(0),
                        vector: Vec::new(),
                        payload: self.payloads.get(o)?,
                    })
                }
                None => None,
            });
        }
        found.sort_unstable();
        let offsets: Vec<PointOffset> = found.iter().map(|&(o, _)| o).collect();
        self.vectors.get_batch::<Random>(&offsets, &mut |k, v| {
            if let Some(Some(r)) = found.get(k).and_then(|&(_, i)| out.get_mut(i)) {
                r.vector = v.to_vec();
            }
        })?;
        Ok(out)
    }
}
