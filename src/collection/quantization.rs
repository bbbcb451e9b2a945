//! [`Quantization`]: the codes a collection asks the optimizer to write
//! beside every immutable segment it builds, and how such a segment is
//! quantized and reopened as one of the
//! [`QuantizedMmapSegment`](crate::kinds::QuantizedMmapSegment) types.

use std::path::Path;

use serde::{Deserialize, Serialize};
use vecseg_quantized::{
    Binary1, Binary1_5, Binary2, Codec, Product, ProductConfig, ScalarConfig, ScalarU4, ScalarU8,
};
use vecseg_traits::{Result, SegmentEntry};

use crate::kinds::{open_quantized_mmap_segment, quantize_mmap_segment, MmapSegment};
use crate::mmap::MmapVectorOptions;

/// A codec and its settings (see `vecseg_quantized`); searches of a
/// quantized segment score through the codes and rescore the best
/// candidates with the raw vectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "codec", rename_all = "snake_case")]
pub enum Quantization {
    /// Scalar, one byte per component; `quantile` as in [`ScalarConfig`].
    Sq8 {
        /// Central share of values the range covers (`None`: all).
        quantile: Option<f32>,
    },
    /// Scalar, four bits per component over its own range; `quantile` as
    /// in [`ScalarConfig`].
    Sq4 {
        /// Central share of each component's values its range covers
        /// (`None`: all).
        quantile: Option<f32>,
    },
    /// Binary, 1 bit per component.
    Bq1,
    /// Binary, 1.5 bits per component.
    #[serde(rename = "bq1.5")]
    Bq1_5,
    /// Binary, 2 bits per component.
    Bq2,
    /// Product, one byte per sub-vector of `sub_dim` components.
    Pq {
        /// Components per sub-vector (must divide the dimension).
        sub_dim: usize,
    },
}

impl Quantization {
    /// Short name (`sq8`, `sq4`, `bq1`, `bq1.5`, `bq2`, `pq`).
    pub fn name(self) -> &'static str {
        match self {
            Quantization::Sq8 { .. } => "sq8",
            Quantization::Sq4 { .. } => "sq4",
            Quantization::Bq1 => "bq1",
            Quantization::Bq1_5 => "bq1.5",
            Quantization::Bq2 => "bq2",
            Quantization::Pq { .. } => "pq",
        }
    }

    /// Train the codec on `segment`'s vectors, write the codes into its
    /// directory, and return the segment scoring through them.
    pub fn quantize(self, segment: MmapSegment<f32>) -> Result<Box<dyn SegmentEntry<f32>>> {
        fn build<Q: Codec>(
            segment: MmapSegment<f32>,
            config: &Q::Config,
        ) -> Result<Box<dyn SegmentEntry<f32>>> {
            let options = MmapVectorOptions::default();
            Ok(Box::new(quantize_mmap_segment::<Q>(
                segment,
                config,
                &options,
                &mut |_| {},
            )?))
        }
        match self {
            Quantization::Sq8 { quantile } => build::<ScalarU8>(
                segment,
                &ScalarConfig {
                    quantile,
                    ..Default::default()
                },
            ),
            Quantization::Sq4 { quantile } => build::<ScalarU4>(
                segment,
                &ScalarConfig {
                    quantile,
                    ..Default::default()
                },
            ),
            Quantization::Bq1 => build::<Binary1>(segment, &Default::default()),
            Quantization::Bq1_5 => build::<Binary1_5>(segment, &Default::default()),
            Quantization::Bq2 => build::<Binary2>(segment, &Default::default()),
            Quantization::Pq { sub_dim } => build::<Product>(
                segment,
                &ProductConfig {
                    sub_dim,
                    ..Default::default()
                },
            ),
        }
    }

    /// Open the mmap segment in `dir` with the codes [`Self::quantize`]
    /// wrote there.
    pub fn open(self, dir: &Path) -> Result<Box<dyn SegmentEntry<f32>>> {
        fn open<Q: Codec>(dir: &Path) -> Result<Box<dyn SegmentEntry<f32>>> {
            Ok(Box::new(open_quantized_mmap_segment::<Q>(
                dir,
                &MmapVectorOptions::default(),
            )?))
        }
        match self {
            Quantization::Sq8 { .. } => open::<ScalarU8>(dir),
            Quantization::Sq4 { .. } => open::<ScalarU4>(dir),
            Quantization::Bq1 => open::<Binary1>(dir),
            Quantization::Bq1_5 => open::<Binary1_5>(dir),
            Quantization::Bq2 => open::<Binary2>(dir),
            Quantization::Pq { .. } => open::<Product>(dir),
        }
    }
}
