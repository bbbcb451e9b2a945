//! # vecseg-mmap
//!
//! Memory-mapped storage for vecseg: the typed mmap primitives (the only
//! `unsafe` code of the workspace lives in [`raw`]) and the immutable
//! storages built by the optimizer.
//!
//! | module      | what it owns                                                    |
//! |-------------|-----------------------------------------------------------------|
//! | `raw/`      | `unsafe`: creating mappings, dropping pages, io_uring submission |
//! | `file.rs`   | [`MmapFile`] / [`MmapFileMut`]: safe handles over mapped files    |
//! | `header.rs` | [`FilePrefix`], header validation, checked `bytemuck` casts       |
//! | `advice.rs` | [`Advice`], process-wide default, populate                        |
//! | `bitslice.rs` | `MmapBitSlice`: a mapped, growable bit slice (format 1 of `deleted.dat`, read to convert it) |
//! | `checked_bitmap.rs` | [`CheckedBitmap`]: fixed bitmap in RAM, two checksummed copies on disk (dropped ids, cleared payloads) |
//! | `coalesce.rs` | [`ReadCoalescing`]: merging close records into one read request |
//! | `uring.rs`  | io_uring batch reader with a visible `pread` fallback              |
//! | `vector.rs` | [`MmapVectorStorage`] (`matrix.dat`, `deleted.dat`)               |
//! | `payload.rs`| `MmapPayloadStorage` (packed payloads + offsets)                  |
//! | `id_map/`   | `MmapIdMapper` (perfect-hash id map; `format_v1.rs` upgrades format 1) |
//!
//! File layouts are documented byte by byte in `docs/file-formats.md`.
#![deny(unsafe_code)]

pub mod advice;
pub mod bitslice;
pub mod checked_bitmap;
pub mod coalesce;
pub mod file;
pub mod header;
pub mod id_map;
pub mod payload;
pub mod raw;
pub mod uring;
pub mod vector;

pub use advice::{set_global_advice, Advice, AdviceSetting};
pub use bitslice::MmapBitSlice;
pub use checked_bitmap::CheckedBitmap;
pub use coalesce::ReadCoalescing;
pub use file::{MmapFile, MmapFileMut};
pub use header::{cast_slice, cast_slice_mut, read_header, FilePrefix};
pub use id_map::MmapIdMapper;
pub use payload::MmapPayloadStorage;
pub use raw::prefetch::prefetch;
pub use uring::{
    detected_backend, io_uring_unavailable_reason, BatchReader, ReadBackend, ReadCounts,
};
pub use vector::{MmapVectorOptions, MmapVectorStorage};
