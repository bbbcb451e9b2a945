//! [`FieldIndexRead`]: what the planner and the filter checks ask of one
//! field index, whichever form ([mutable](super::MutableFieldIndex) or
//! [immutable](super::ImmutableFieldIndex)) holds it.

use roaring::RoaringBitmap;
use vecseg_traits::PointOffset;

use super::value::ValueMatch;
use vecseg_traits::FieldSchema;

/// Sizes of one field index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldIndexStats {
    /// Distinct values.
    pub values: usize,
    /// Offsets holding at least one indexed value.
    pub points: usize,
    /// (offset, value) pairs: the total length of the posting lists.
    pub pairs: usize,
    /// Offsets whose key also holds values of another type (answered from
    /// the payload).
    pub skipped: usize,
    /// Bytes of the posting lists alone (as stored: compressed for the
    /// immutable form, the bitmaps' serialized size for the mutable one).
    pub posting_bytes: u64,
    /// Bytes held in RAM (heap) by the index.
    pub ram_bytes: u64,
    /// Bytes of the index's files on disk (0 for the mutable form).
    pub disk_bytes: u64,
}

/// Read access to one field index.
///
/// Offsets are the segment's: an index lists every offset whose payload
/// held the value when it was written, live or not; callers mask dead
/// offsets with the segment's deleted flags and id map.
pub trait FieldIndexRead: Send + Sync + std::fmt::Debug {
    /// The key and type indexed.
    fn schema(&self) -> &FieldSchema;

    /// Length of the posting lists of the values satisfying `m`: an upper
    /// bound of the offsets [`add_matching`](Self::add_matching) adds
    /// (exact when one value matches). 0 when the type does not answer `m`.
    fn estimate(&self, m: &ValueMatch<'_>) -> usize;

    /// Add to `out` every offset holding a value that satisfies `m`.
    fn add_matching(&self, m: &ValueMatch<'_>, out: &mut RoaringBitmap);

    /// Whether `offset` holds a value that satisfies `m`.
    fn offset_matches(&self, offset: PointOffset, m: &ValueMatch<'_>) -> bool;

    /// Offsets whose key also holds values the index's type cannot store;
    /// conditions on them are checked against the payload.
    fn skipped(&self) -> &RoaringBitmap;

    /// Sizes, for reports.
    fn stats(&self) -> FieldIndexStats;
}
