//! Id mapper traits: external [`PointId`] <-> internal [`PointOffset`], plus
//! per-point versions.
//!
//! Offsets are allocated densely by the segment: a new point gets
//! `total_count()`. Dropping a point removes both directions of its mapping;
//! its offset is never reused.
//!
//! ## Reads never swallow errors
//!
//! Lookups return `Result<Option<_>>`: `Ok(None)` means "not there", an
//! error means the mapper could not tell (an I/O error, a corrupted record,
//! a RocksDB read failure). A backend must never turn a failed read into
//! `None`.
//!
//! ## Durability: what vouches for what
//!
//! A version on disk vouches that the point's vector and payload of that
//! version are on disk; a mapping on disk vouches that its offset's data and
//! version are. So a mapper buffers both in RAM (reads see them at once) and
//! writes them only in [`IdMapper::flush_versions`] and
//! [`IdMapper::flush_mappings`], which the segment calls in that order,
//! after the vectors and payloads are durable. A mapper whose every write is
//! durable at once (RocksDB) relies on the segment's write order instead:
//! data, then version, then mapping.

use crate::error::Result;
use crate::types::{PointId, PointOffset, Version};

/// Reading the mapping and versions.
pub trait IdMapperRead: Send + Sync {
    /// Internal offset of a mapped external id.
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>>;
    /// External id of a mapped offset.
    fn external(&self, offset: PointOffset) -> Result<Option<PointId>>;
    /// Version of the point at `offset`, if one was set.
    fn version(&self, offset: PointOffset) -> Result<Option<Version>>;
    /// Number of offsets ever allocated (mapped or dropped): the next offset.
    fn total_count(&self) -> usize;
    /// Number of mapped points.
    fn available_count(&self) -> usize;
    /// Offsets below this may be named by a mapping that is already on disk
    /// (so a crash can expose them); the segment never overwrites such an
    /// offset in place. Mappers that buffer mappings until
    /// [`IdMapper::flush_mappings`] return the offset count of their last
    /// flush; mappers that write at once, `total_count()` (the default);
    /// purely in-memory ones, 0.
    fn durable_offsets(&self) -> usize {
        self.total_count()
    }
    /// Mapped points in increasing external-id order, starting at `from`
    /// (inclusive) when given. A read error is yielded as an `Err` item
    /// (after which the iterator ends).
    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_>;
    /// A number that grows with every write the backend makes durable, for
    /// backends that have one (RocksDB's sequence number). The segment
    /// records it at each flush and refuses to open a storage whose number
    /// went backwards: flushed writes were lost (e.g. a damaged RocksDB
    /// `MANIFEST` recovered an older state).
    fn durable_sequence(&self) -> Option<u64> {
        None
    }

    /// Bytes this mapper occupies on disk (0 for purely in-memory ones).
    fn disk_bytes(&self) -> u64 {
        0
    }
}

/// Dropping points, setting versions and persisting; what immutable mappers support.
pub trait IdMapper: IdMapperRead {
    /// Remove the mapping of `id`; returns the offset it had.
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>>;
    /// Record the version of the point at `offset` (buffered until
    /// [`IdMapper::flush_versions`] by mappers that write files).
    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()>;
    /// Make mapping changes durable. The segment calls it after
    /// [`IdMapper::flush_versions`]: a mapping on disk vouches for its
    /// offset's data and version.
    fn flush_mappings(&mut self) -> Result<()>;
    /// Make version changes durable. The segment calls it after the vectors
    /// and payloads are flushed: a version on disk vouches for the data.
    fn flush_versions(&mut self) -> Result<()>;
}

/// Mappers that accept new points.
pub trait AppendableIdMapper: IdMapper {
    /// Map `id` to `offset` (replacing any earlier mapping of `id` and of
    /// `offset`) with the point's `version`, together: a mapping never
    /// becomes durable without its version. `offset` must be `<= total_count()`.
    fn set_link(&mut self, id: PointId, offset: PointOffset, version: Version) -> Result<()>;
}
