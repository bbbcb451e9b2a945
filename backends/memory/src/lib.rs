//! # vecseg-memory
//!
//! In-memory, appendable implementations of every vecseg storage trait:
//! [`MemoryVectorStorage`], [`MemoryPayloadStorage`] and [`MemoryIdMapper`].
//! Nothing is persisted (`flush` is a no-op); they are the reference the
//! other backends are compared against, the fastest configuration for
//! small collections, and the source from which immutable storages are
//! built in tests.
#![forbid(unsafe_code)]

mod id_map;
mod payload;
mod vector;

pub use id_map::MemoryIdMapper;
pub use payload::MemoryPayloadStorage;
pub use vector::MemoryVectorStorage;
