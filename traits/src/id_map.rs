//! Id mapper traits: external [`PointId`] <-> internal [`PointOffset`], plus
//! per-point versions.
//!
//! Offsets are allocated densely by the segment: a new point gets
//! `total_count()`. Dropping a point removes both directions of its mapping;
//! its offset is never reused.

use crate::error::Result;
use crate::types::{PointId, PointOffset, Version};

/// Reading the mapping and versions.
pub trait IdMapperRead: Send + Sync {
    /// Internal offset of a mapped external id.
    fn internal(&self, id: PointId) -> Option<PointOffset>;
    /// External id of a mapped offset.
    fn external(&self, offset: PointOffset) -> Option<PointId>;
    /// Version of the point at `offset`, if one was set.
    fn version(&self, offset: PointOffset) -> Option<Version>;
    /// Number of offsets ever allocated (mapped or dropped): the next offset.
    fn total_count(&self) -> usize;
    /// Number of mapped points.
    fn available_count(&self) -> usize;
    /// Mapped points in increasing external-id order, starting at `from`
    /// (inclusive) when given.
    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = (PointId, PointOffset)> + '_>;
    /// Bytes this mapper occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
    }
}

/// Dropping points, setting versions and persisting; what immutable mappers support.
pub trait IdMapper: IdMapperRead {
    /// Remove the mapping of `id`; returns the offset it had.
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>>;
    /// Record the version of the point at `offset`.
    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()>;
    /// Make mapping changes durable (first step of a segment flush).
    fn flush_mappings(&mut self) -> Result<()>;
    /// Make version changes durable (after vectors and payloads are flushed).
    fn flush_versions(&mut self) -> Result<()>;
}

/// Mappers that accept new points.
pub trait AppendableIdMapper: IdMapper {
    /// Map `id` to `offset` (replacing any earlier mapping of `id`). `offset`
    /// must be `<= total_count()`.
    fn set_link(&mut self, id: PointId, offset: PointOffset) -> Result<()>;
}
