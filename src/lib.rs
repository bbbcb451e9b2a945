//! # vecseg
//!
//! The storage layer of a vector database as a Rust framework. Points
//! (external id + vector + JSON payload) live in a [`Segment<V, P, I>`] whose
//! vector storage `V`, payload storage `P` and id mapper `I` are chosen by
//! type from the backend crates re-exported here.
//!
//! ```
//! use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
//! use vecseg::prelude::*;
//!
//! let vectors = MemoryVectorStorage::<f32>::new(3, Distance::Cosine).unwrap();
//! let mut segment = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
//! let payload = serde_json::json!({"tenant": "acme"}).as_object().unwrap().clone();
//! segment.upsert(1, PointId::Num(7), &[1.0, 0.0, 0.0], &payload).unwrap();
//! let hits = segment.search(&[0.9, 0.1, 0.0], 1, None).unwrap();
//! assert_eq!(hits[0].id, PointId::Num(7));
//! ```
//!
//! This crate is the one to depend on: it re-exports the traits and types
//! (`vecseg-traits`) at its root and every backend as a module:
//!
//! | module               | backend crate     | storages                                    |
//! |----------------------|-------------------|---------------------------------------------|
//! | [`memory`]           | `vecseg-memory`   | in-RAM vectors, payloads, id map            |
//! | [`mmap`]             | `vecseg-mmap`     | immutable mmap storages, io_uring reads     |
//! | [`chunked`]          | `vecseg-chunked`  | appendable mmap storages                    |
//! | `rocksdb`            | `vecseg-rocksdb`  | RocksDB storages (cargo feature `rocksdb`, on by default) |
//!
//! [`Collection`] is the database around segments (write-ahead log,
//! several segments, recovery); [`kinds`] creates and opens each kind of
//! persistent segment,
//! [`migrate`] copies, verifies and upgrades segments, and [`prelude`]
//! imports what a program using segments needs. See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod collection;
pub mod index;
pub mod kinds;
pub mod migrate;
pub mod prelude;
pub mod segment;

pub use collection::{Collection, CollectionOptions};
pub use segment::{FilterPlan, PlanKind, PointInput, ScanOptions, Segment};
pub use vecseg_traits::*;

/// Appendable memory-mapped backends (`vecseg-chunked`).
pub use vecseg_chunked as chunked;
/// In-memory backends (`vecseg-memory`).
pub use vecseg_memory as memory;
/// Immutable memory-mapped backends and mmap primitives (`vecseg-mmap`).
pub use vecseg_mmap as mmap;
/// Quantized vector storages: codes over any raw storage (`vecseg-quantized`).
pub use vecseg_quantized as quantized;
/// RocksDB backends (`vecseg-rocksdb`, cargo feature `rocksdb`).
#[cfg(feature = "rocksdb")]
pub use vecseg_rocksdb as rocksdb;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
