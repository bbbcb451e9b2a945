//! What a program using segments imports: `use vecseg::prelude::*;`.
//!
//! The segment type and its batch input, the storage traits (their methods
//! are how segments and storages are used), and the everyday types. Backend
//! types stay in their modules ([`crate::memory`], [`crate::chunked`], ...).

pub use crate::collection::{Collection, CollectionOptions, PointData};
pub use crate::kinds::{ChunkedSegment, MmapSegment, SegmentKind};
pub use crate::segment::{PointInput, Segment};
pub use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, Filter,
    IdMapper, IdMapperRead, Payload, PayloadStorage, PayloadStorageRead, PointId, PointOffset,
    Record, Result, ScoredPoint, StorageError, VectorStorage, VectorStorageRead, Version,
};
