//! # vecseg
//!
//! The storage layer of a vector database as a Rust framework. Points
//! (external id + vector + JSON payload) live in a [`Segment<V, P, I>`] whose
//! vector storage `V`, payload storage `P` and id mapper `I` are chosen by
//! type from the backend crates re-exported here.
//!
//! ```
//! use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
//! use vecseg::{Distance, PointId, Segment};
//!
//! let vectors = MemoryVectorStorage::<f32>::new(3, Distance::Cosine).unwrap();
//! let mut segment = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
//! let payload = serde_json::json!({"tenant": "acme"}).as_object().unwrap().clone();
//! segment.upsert(1, PointId::Num(7), &[1.0, 0.0, 0.0], &payload).unwrap();
//! let hits = segment.search(&[0.9, 0.1, 0.0], 1, None).unwrap();
//! assert_eq!(hits[0].id, PointId::Num(7));
//! ```
//!
//! Crate map: `vecseg-traits` (contracts, types, conformance suite),
//! `vecseg-memory`, `vecseg-mmap`, `vecseg-chunked`, `vecseg-rocksdb`
//! (backends). See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod migrate;
pub mod segment;

pub use segment::{ScanOptions, Segment};
pub use vecseg_traits::*;

/// In-memory backends.
pub use vecseg_memory as memory;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
