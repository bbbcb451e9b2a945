//! # vecseg-chunked
//!
//! Appendable, memory-mapped storages for vecseg. Each storage owns one
//! directory; every file in it starts with a magic and a format version and
//! is validated on open (a bad file is a [`StorageError::Corrupted`] naming
//! it, never a panic).
//!
//! | module       | type                       | files                                                     |
//! |--------------|----------------------------|-----------------------------------------------------------|
//! | `vector.rs`  | [`ChunkedVectorStorage`]   | `config.json`, `status.dat`, `chunk_N.dat`, `deleted.dat` |
//! | `payload.rs` | [`ChunkedPayloadStorage`]  | `config.json`, `page_N.dat`, `tracker.dat`, `bitmask.dat` |
//! | `id_map.rs`  | [`ChunkedIdMapper`]        | `mappings.log`, `versions.dat`                             |
//!
//! All mapping goes through `vecseg-mmap`'s safe API; this crate has no
//! `unsafe` code. Nothing is made durable before `flush` (`flush_mappings`
//! / `flush_versions` for the id mapper); dropping a storage without
//! flushing behaves like a crash: what was flushed is intact, later changes
//! may or may not be there, and a half-written value is never visible.
//! File layouts are documented byte by byte in `docs/file-formats.md`.
//!
//! [`StorageError::Corrupted`]: vecseg_traits::StorageError::Corrupted
#![forbid(unsafe_code)]

mod common;
pub mod id_map;
pub mod payload;
pub mod vector;

pub use id_map::ChunkedIdMapper;
pub use payload::{ChunkedPayloadOptions, ChunkedPayloadStorage};
pub use vector::{ChunkedVectorOptions, ChunkedVectorStorage};

/// Former name of [`ChunkedVectorOptions`].
#[deprecated(note = "renamed to ChunkedVectorOptions")]
pub type ChunkedConfig = ChunkedVectorOptions;
/// Former name of [`ChunkedPayloadOptions`].
#[deprecated(note = "renamed to ChunkedPayloadOptions")]
pub type PayloadOptions = ChunkedPayloadOptions;
