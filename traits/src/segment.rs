//! Object-safe segment interfaces, so a collection can hold segments of
//! different concrete `Segment<V, P, I>` types behind one pointer.
//!
//! [`SegmentEntry`] is what every segment supports (reads, search, delete,
//! clear payload, flush); [`AppendableSegmentEntry`] adds the writes only
//! segments over appendable storages have.
//!
//! Versions: every write carries the operation's version. A write older than
//! the point's stored version is ignored and reported as `Ok(false)`; the
//! segment's version is the largest version of any write it applied.

use crate::distance::Distance;
use crate::element::VectorElement;
use crate::error::Result;
use crate::filter::Filter;
use crate::index_schema::FieldSchema;
use crate::types::{Payload, PointId, Record, ScoredPoint, Version};

/// Operations every segment supports, whatever its backends.
pub trait SegmentEntry<T: VectorElement = f32>: Send + Sync {
    /// Largest version of any applied operation (0 for a fresh segment).
    fn version(&self) -> Version;
    /// Version that is durable on disk (what WAL replay starts after).
    fn persisted_version(&self) -> Version;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Distance of the vectors.
    fn distance(&self) -> Distance;
    /// Number of live points.
    fn point_count(&self) -> usize;
    /// Offsets in use, live or not (`slot_count - point_count` are deleted
    /// or superseded points a rebuild would drop).
    fn slot_count(&self) -> usize;
    /// The payload key the segment's points are ordered by, when it was
    /// built defragmented by tenant.
    fn tenant_key(&self) -> Option<String>;
    /// Version of point `id`, if present.
    fn point_version(&self, id: PointId) -> Result<Option<Version>>;
    /// The whole point `id`, if present.
    fn get(&self, id: PointId) -> Result<Option<Record<T>>>;
    /// Up to `limit` live ids in increasing order, starting at `from`
    /// (inclusive), that pass `filter`.
    fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<PointId>>;
    /// Exact top-`k` search among live points passing `filter`, best first.
    fn search(&self, query: &[T], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredPoint>>;
    /// Number of live points passing `filter` (all of them for `None`).
    fn count(&self, filter: Option<&Filter>) -> Result<usize>;
    /// Index payload key `schema.key` (replacing its index, if any); a
    /// persistent segment records it durably (it flushes).
    fn create_field_index(&mut self, schema: FieldSchema) -> Result<()>;
    /// Drop the index of payload key `key`; whether there was one.
    fn drop_field_index(&mut self, key: &str) -> Result<bool>;
    /// The indexed payload keys.
    fn field_indexes(&self) -> Vec<FieldSchema>;
    /// Delete point `id`; `Ok(false)` if it was absent or the operation is stale.
    fn delete(&mut self, version: Version, id: PointId) -> Result<bool>;
    /// Remove the whole payload of `id`; `Ok(false)` if the operation is stale.
    fn clear_payload(&mut self, version: Version, id: PointId) -> Result<bool>;
    /// Persist everything; returns the persisted version.
    fn flush(&mut self) -> Result<Version>;
    /// Short description of the backends, e.g. `"mmap/mmap/mmap"`.
    fn describe(&self) -> String;
    /// Bytes the segment occupies on disk.
    fn disk_bytes(&self) -> u64;
}

/// Writes available when vectors, payloads and ids are all appendable.
pub trait AppendableSegmentEntry<T: VectorElement = f32>: SegmentEntry<T> {
    /// Insert or replace point `id` (vector and whole payload).
    fn upsert(
        &mut self,
        version: Version,
        id: PointId,
        vector: &[T],
        payload: &Payload,
    ) -> Result<bool>;
    /// Merge `payload` into point `id`'s payload.
    fn set_payload(&mut self, version: Version, id: PointId, payload: &Payload) -> Result<bool>;
    /// Replace point `id`'s payload.
    fn overwrite_payload(
        &mut self,
        version: Version,
        id: PointId,
        payload: &Payload,
    ) -> Result<bool>;
    /// Remove `keys` from point `id`'s payload.
    fn delete_payload_keys(
        &mut self,
        version: Version,
        id: PointId,
        keys: &[String],
    ) -> Result<bool>;
}
