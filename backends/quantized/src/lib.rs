//! # vecseg-quantized
//!
//! Quantized vector storages: [`Quantized<V, Q, C>`] wraps any raw vector
//! storage `V` (memory, mmap, chunked, RocksDB) with a short code per slot
//! made by codec `Q`, kept in a byte storage `C` (RAM, immutable mmap or
//! appendable chunked files). Vector reads return the raw vectors; search
//! scores through the codes and can rescore its candidates with the raw
//! vectors (`vecseg::ScanOptions::oversampling` / `rescore`).
//!
//! | file         | what it holds |
//! |--------------|---------------|
//! | `codec/`     | the [`Codec`] trait and the codecs: scalar int8 and int4, binary 1/1.5/2 bit, product |
//! | `storage.rs` | [`Quantized`], its scorer, training and encoding |
//! | `meta.rs`    | `quantized.meta`: codec name, dim, distance, trained parameters |
//!
//! A quantized storage over an appendable raw storage with appendable
//! codes is appendable when the codec can encode without retraining
//! ([`EncodesWithoutRetraining`]; every codec here can): the compiler
//! checks it, as it does for `Segment::upsert`.
#![forbid(unsafe_code)]

pub mod codec;
pub mod meta;
pub mod storage;

pub use codec::{
    Binary, Binary1, Binary1_5, Binary2, BinaryConfig, BitsPerDim, Codec, Frac, Product,
    ProductConfig, ScalarConfig, ScalarU4, ScalarU8,
};
pub use storage::{
    ChunkedCodes, EncodesWithoutRetraining, InRamCodes, MmapCodes, Quantized, QuantizedScorer,
};
