//! # vecseg-traits
//!
//! The contracts every vecseg backend implements, the types they share, the
//! one error type, and (feature `testing`) the conformance suite.
//!
//! ## How the pieces fit
//!
//! A segment stores points: an external [`PointId`], a vector and a JSON
//! [`Payload`]. It is made of three storages, each chosen by type:
//!
//! | concern  | read half              | write half        | appendable half              |
//! |----------|------------------------|-------------------|------------------------------|
//! | vectors  | [`VectorStorageRead`]  | [`VectorStorage`] | [`AppendableVectorStorage`]  |
//! | payloads | [`PayloadStorageRead`] | [`PayloadStorage`]| [`AppendablePayloadStorage`] |
//! | ids      | [`IdMapperRead`]       | [`IdMapper`]      | [`AppendableIdMapper`]       |
//!
//! The id mapper turns external ids into dense internal offsets
//! ([`PointOffset`]) and keeps each point's [`Version`]; the vector and payload
//! storages are indexed by offset. Immutable backends (built once, e.g. by
//! an optimizer) implement the read and write halves only (delete, flush);
//! appendable ones also accept inserts, so `Segment::upsert` exists only
//! when all three are appendable — the compiler checks it.
//!
//! Reads are generic over an [`AccessPattern`] (`Random` or `Sequential`) so
//! mmap backends can pick a suitably advised mapping, and return a view type
//! chosen by the backend (`&[T]` for memory and mmap, an owned buffer for
//! RocksDB).
//!
//! [`SegmentEntry`] / [`AppendableSegmentEntry`] are object-safe views of a
//! whole segment for code that holds segments of different types.
//!
//! ## Adding a backend
//!
//! 1. Create `backends/<name>/` with `vector.rs`, `payload.rs`, `id_map.rs`
//!    and types named `<Backend>VectorStorage`, `<Backend>PayloadStorage`,
//!    `<Backend>IdMapper`; `#![forbid(unsafe_code)]` unless it is the mmap crate.
//! 2. Implement the read half, then the write half, then (if it can grow)
//!    the appendable half. Validate every file on open and return
//!    [`StorageError::Corrupted`] naming it; never panic on bad input.
//! 3. Implement the factories of `testing` (feature `testing`) and call
//!    `conformance_suite!` once; add reopen and corruption tests.
//!
//! `docs/adding-a-backend.md` walks through it in more detail.
#![forbid(unsafe_code)]

pub mod access;
pub mod distance;
pub mod element;
pub mod error;
pub mod filter;
pub mod fsutil;
pub mod id_map;
pub mod index_schema;
pub mod payload;
pub mod scorer;
pub mod segment;
pub mod types;
pub mod vector;
pub mod version_slot;

#[cfg(feature = "testing")]
pub mod testing;

pub use access::{AccessPattern, Random, Sequential};
pub use bitvec;
pub use distance::Distance;
pub use element::VectorElement;
pub use error::{IoResultExt, Result, StorageError};
pub use filter::{for_each_value, Condition, Filter, Range};
pub use id_map::{AppendableIdMapper, IdMapper, IdMapperRead};
pub use index_schema::{FieldSchema, FieldType};
pub use payload::{
    nested_payload, payload_depth, validate_payload, AppendablePayloadStorage, PayloadStorage,
    PayloadStorageRead, MAX_PAYLOAD_DEPTH,
};
pub use scorer::{QueryScorer, RawScorer};
pub use segment::{AppendableSegmentEntry, SegmentEntry};
pub use types::{Payload, PointId, PointOffset, Record, ScoredPoint, Version};
pub use vector::{AppendableVectorStorage, VectorStorage, VectorStorageRead};
