//! The shared conformance suite for quantized storages: `Quantized` over an
//! immutable mmap raw storage with mmap scalar codes, and over an
//! appendable memory raw storage with scalar codes in RAM (the suite runs
//! every distance; binary codes do not approximate manhattan, and are
//! checked by the recall tests). Vector reads of
//! a quantized storage are the raw vectors, so the suite's read, delete,
//! reopen and append checks apply unchanged. Search through the codes is
//! approximate and is checked against exact search (recall) below.

mod common;

use std::path::Path;

use common::*;
use vecseg::quantized::{Codec, InRamCodes, MmapCodes, Quantized, ScalarConfig, ScalarU8};
use vecseg::testing::*;
use vecseg::{Distance, Result, VectorStorage, VectorStorageRead};
use vecseg_memory::MemoryVectorStorage;
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage};

/// A codec trained on random data of `dim` (for storages built empty, or
/// whose every vector is deleted: a codec trained elsewhere).
fn trained_elsewhere<Q: Codec>(dim: usize, distance: Distance) -> Q {
    let data = VectorData::random(64, dim, distance, 99);
    let flat: Vec<f32> = data.vectors.concat();
    Q::train(&Q::Config::default(), dim, distance, &flat).unwrap()
}

/// Train on `raw` when it has live vectors, else take a codec trained elsewhere.
fn codec_for<Q: Codec, V: VectorStorageRead<Element = f32>>(raw: &V, config: &Q::Config) -> Q {
    vecseg::quantized::storage::train::<V, Q>(raw, config)
        .unwrap_or_else(|_| trained_elsewhere(raw.dim(), raw.distance()))
}

mod over_mmap {
    use super::*;

    pub struct Vectors;
    type Storage = Quantized<MmapVectorStorage<f32>, ScalarU8, MmapCodes>;

    fn raw_dir(dir: &Path) -> std::path::PathBuf {
        dir.join("raw")
    }

    impl VectorFactory for Vectors {
        type Storage = Storage;
        fn build(&self, dir: &Path, data: &VectorData) -> Result<Storage> {
            let raw = MmapVectorStorage::build(
                &raw_dir(dir),
                &memory_vectors(data)?,
                MmapVectorOptions::default(),
            )?;
            let codec = codec_for::<ScalarU8, _>(&raw, &ScalarConfig::default());
            Quantized::with_codec_mmap(
                raw,
                &dir.join("sq8"),
                codec,
                MmapVectorOptions::default(),
                &mut |_| {},
            )
        }
        fn reopen(&self, dir: &Path, mut s: Storage) -> Result<Storage> {
            s.flush()?;
            drop(s);
            let raw = MmapVectorStorage::open(&raw_dir(dir), MmapVectorOptions::default())?;
            Quantized::open_mmap(raw, &dir.join("sq8"), MmapVectorOptions::default())
        }
    }

    vecseg::conformance_suite! {
        vectors(immutable): Vectors,
    }
}

mod over_memory {
    use super::*;

    pub struct Vectors;
    type Storage = Quantized<MemoryVectorStorage<f32>, ScalarU8, InRamCodes>;

    impl VectorFactory for Vectors {
        type Storage = Storage;
        fn build(&self, _: &Path, data: &VectorData) -> Result<Storage> {
            let raw = memory_vectors(data)?;
            let codec = codec_for::<ScalarU8, _>(&raw, &ScalarConfig::default());
            Quantized::with_codec_in_ram(raw, codec)
        }
        fn reopen(&self, _: &Path, s: Storage) -> Result<Storage> {
            Ok(s)
        }
    }

    impl AppendableVectorFactory for Vectors {
        fn create(&self, _: &Path, dim: usize, distance: Distance) -> Result<Storage> {
            let raw = MemoryVectorStorage::new(dim, distance)?;
            Quantized::with_codec_in_ram(raw, trained_elsewhere::<ScalarU8>(dim, distance))
        }
    }

    vecseg::conformance_suite! {
        vectors(appendable): Vectors,
    }
}
