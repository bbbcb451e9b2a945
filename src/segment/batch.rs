//! Batch writes and reads: [`Segment::upsert_batch`] and
//! [`Segment::get_batch`].
//!
//! A batch upsert is one operation with one version for every point (see
//! [`Segment::upsert_batch`]); a batch read fetches vectors with one
//! `get_batch` call in offset order.

use rayon::prelude::*;
use vecseg_traits::payload::validate_payload;
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapperRead, Payload,
    PayloadStorageRead, PointId, PointOffset, Random, Record, Result, VectorElement,
    VectorStorageRead, Version,
};

use super::Segment;

/// Points per parallel preprocessing task.
const PREPARE_CHUNK: usize = 256;

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
    /// applied; vectors are normalised in parallel. The points are then
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
        let mut stored: Vec<V::Element> = Vec::with_capacity(points.len() * dim);
        for p in points {
            stored.extend_from_slice(p.vector);
        }
        if dim > 0 {
            stored
                .par_chunks_mut(dim * PREPARE_CHUNK)
                .try_for_each(|chunk| {
                    chunk
                        .chunks_exact_mut(dim)
                        .try_for_each(|v| V::Element::preprocess(distance, v))
                })?;
        }
        let mut applied = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            let vector = &stored[i * dim..(i + 1) * dim];
            applied.push(self.upsert_prepared(version, p.id, vector, p.payload)?);
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
        let mut found: Vec<(usize, PointOffset)> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(o) = self.ids.internal(*id)? {
                found.push((i, o));
            }
        }
        found.sort_unstable_by_key(|&(_, o)| o);
        let offsets: Vec<PointOffset> = found.iter().map(|&(_, o)| o).collect();
        let mut vectors: Vec<Vec<V::Element>> = vec![Vec::new(); offsets.len()];
        self.vectors
            .get_batch::<Random>(&offsets, &mut |k, v| vectors[k] = v.to_vec())?;
        let mut out: Vec<Option<Record<V::Element>>> = (0..ids.len()).map(|_| None).collect();
        for ((i, o), vector) in found.into_iter().zip(vectors) {
            out[i] = Some(Record {
                id: ids[i],
                version: self.ids.version(o)?.unwrap_or(0),
                vector,
                payload: self.payloads.get(o)?,
            });
        }
        Ok(out)
    }
}
