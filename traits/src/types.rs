//! Shared identifier and record types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Internal, dense offset of a point inside one segment (0, 1, 2, ...).
pub type PointOffset = u32;

/// Per-point (and per-segment) version: the sequence number of the operation
/// that last changed the point.
pub type Version = u64;

/// External point id chosen by the user: an unsigned integer or a UUID.
///
/// Ordering puts every numeric id before every UUID, so "iterate in external
/// id order" is well defined across both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointId {
    /// A 64-bit unsigned id.
    Num(u64),
    /// A UUID.
    Uuid(uuid::Uuid),
}

impl PointId {
    /// The id as a 128-bit key (numeric ids keep their value, UUIDs their
    /// bits); used by hashing id maps. Not unique across kinds on its own:
    /// pair it with [`PointId::is_uuid`].
    pub fn as_u128(&self) -> u128 {
        match self {
            PointId::Num(n) => *n as u128,
            PointId::Uuid(u) => u.as_u128(),
        }
    }

    /// Whether this is a UUID id.
    pub fn is_uuid(&self) -> bool {
        matches!(self, PointId::Uuid(_))
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

impl From<uuid::Uuid> for PointId {
    fn from(u: uuid::Uuid) -> Self {
        PointId::Uuid(u)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

/// A point's JSON payload: an object of named values.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// A whole point as read back from a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// External id.
    pub id: PointId,
    /// Version of the last operation applied to this point.
    pub version: Version,
    /// The stored vector (normalised if the distance is cosine).
    pub vector: Vec<T>,
    /// The payload (empty object when none was set).
    pub payload: Payload,
}

/// One search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPoint {
    /// External id.
    pub id: PointId,
    /// Version of the point when it was scored.
    pub version: Version,
    /// Score: higher is better for every distance (see [`crate::Distance`]).
    pub score: f32,
}
