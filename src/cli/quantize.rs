//! `vecseg quantize <segment-dir> --codec sq8|sq4|bq1|bq1.5|bq2|pq`: train a
//! codec on an mmap segment's vectors and write its quantized layer
//! (`<segment>/quantized/`, see `docs/file-formats.md`), with a progress
//! bar and a summary. The segment stays an mmap segment; search through
//! the codes with `kinds::open_quantized_mmap_segment`. An existing layer
//! is replaced; if building the new one fails, the old one is put back.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecseg_mmap::MmapVectorOptions;
use vecseg_quantized::{
    Binary1, Binary1_5, Binary2, Codec, Product, ProductConfig, ScalarConfig, ScalarU4, ScalarU8,
};
use vecseg_traits::VectorStorageRead;

use crate::kinds::{self, SegmentKind};
use crate::segment::SegmentState;

/// Codecs `vecseg quantize` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecChoice {
    /// Scalar: one byte per component.
    Sq8,
    /// Scalar: four bits per component, each over its own range.
    Sq4,
    /// Binary: 1 bit per component.
    Bq1,
    /// Binary: 1.5 bits per component.
    #[value(name = "bq1.5")]
    Bq1_5,
    /// Binary: 2 bits per component.
    Bq2,
    /// Product: one byte per sub-vector of --sub-dim components.
    Pq,
}

/// Arguments of `vecseg quantize`.
#[derive(Debug, Clone, Args)]
pub struct QuantizeArgs {
    /// The mmap segment directory (holding `segment.json`).
    pub segment_dir: PathBuf,
    /// The codec.
    #[arg(long, value_enum)]
    pub codec: CodecChoice,
    /// Scalar codec: the central share of values the range covers (e.g.
    /// 0.99); the whole range when absent.
    #[arg(long)]
    pub quantile: Option<f32>,
    /// Product codec: components per sub-vector (must divide the dimension).
    #[arg(long, default_value_t = 8)]
    pub sub_dim: usize,
}

/// Run `vecseg quantize`.
pub fn run(args: &QuantizeArgs, quiet: bool) -> Result<(), Box<dyn Error>> {
    let dir = &args.segment_dir;
    let state = SegmentState::read(dir)?;
    match kinds::detect_kind(&state) {
        Some((SegmentKind::Mmap, "f32")) => {}
        _ => {
            return Err(format!(
                "{} is not an mmap segment of f32 vectors; build one first \
                 (`vecseg migrate --to mmap` for RocksDB segments)",
                dir.display()
            )
            .into())
        }
    }
    let summary = match args.codec {
        CodecChoice::Sq8 => {
            let config = ScalarConfig {
                quantile: args.quantile,
                ..Default::default()
            };
            build::<ScalarU8>(args, &config, quiet)?
        }
        CodecChoice::Sq4 => {
            let config = ScalarConfig {
                quantile: args.quantile,
                ..Default::default()
            };
            build::<ScalarU4>(args, &config, quiet)?
        }
        CodecChoice::Bq1 => build::<Binary1>(args, &Default::default(), quiet)?,
        CodecChoice::Bq1_5 => build::<Binary1_5>(args, &Default::default(), quiet)?,
        CodecChoice::Bq2 => build::<Binary2>(args, &Default::default(), quiet)?,
        CodecChoice::Pq => {
            let config = ProductConfig {
                sub_dim: args.sub_dim,
                ..Default::default()
            };
            build::<Product>(args, &config, quiet)?
        }
    };
    println!("{summary}");
    Ok(())
}

fn build<Q: Codec>(
    args: &QuantizeArgs,
    config: &Q::Config,
    quiet: bool,
) -> Result<String, Box<dyn Error>> {
    let options = MmapVectorOptions::default();
    let segment = kinds::open_mmap_segment::<f32>(&args.segment_dir, &options)?;
    let total = segment.vectors().total_count();
    let dim = segment.dim();
    let layer = args.segment_dir.join(kinds::QUANTIZED_DIR);
    // An existing layer is set aside, and put back if the new one fails.
    let previous = args.segment_dir.join("quantized.previous");
    if previous.exists() {
        std::fs::remove_dir_all(&previous)?;
    }
    if layer.exists() {
        std::fs::rename(&layer, &previous)?;
    }
    let bar = crate::cli::progress::bar(quiet, "{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")?;
    bar.set_message(format!("training {} and encoding", Q::NAME));
    bar.set_length(total as u64);
    let t = Instant::now();
    let built = kinds::quantize_mmap_segment::<Q>(segment, config, &options, &mut |i| {
        bar.set_position(i as u64)
    });
    bar.finish_and_clear();
    let q = match built {
        Ok(q) => q,
        Err(e) => {
            if previous.exists() {
                if layer.exists() {
                    std::fs::remove_dir_all(&layer)?;
                }
                std::fs::rename(&previous, &layer)?;
            }
            return Err(e.into());
        }
    };
    if previous.exists() {
        std::fs::remove_dir_all(&previous)?;
    }
    let code_bytes = q.vectors().code_bytes();
    let raw = total * dim * 4;
    Ok(format!(
        "quantized {} vectors of {dim} with {} in {:.1} s: {} B of codes ({:.3}x of the raw {} B), in {}",
        total,
        Q::NAME,
        t.elapsed().as_secs_f64(),
        code_bytes,
        code_bytes as f64 / raw.max(1) as f64,
        raw,
        layer.display()
    ))
}
