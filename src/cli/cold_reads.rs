//! `vecseg cold-reads`: how fast this machine's disk serves random vector
//! reads that miss the page cache, by each read path of
//! [`MmapVectorStorage`].
//!
//! The command builds a `matrix.dat` of random vectors in a scratch
//! directory on the disk under test, then runs `--rounds` rounds. Each round
//! draws a fresh batch of random offsets and reads it once per method, in an
//! order rotated from round to round, dropping the file's pages from the
//! page cache before every read. Disks in virtual machines drift by tens of
//! percent from one second to the next, so methods are compared by the
//! median of their per-round ratios against page faults, which were
//! measured seconds apart, never by times from separate runs.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use vecseg_memory::MemoryVectorStorage;
use vecseg_mmap::{Advice, MmapVectorOptions, MmapVectorStorage, ReadBackend, ReadCoalescing};
use vecseg_traits::{AppendableVectorStorage, Distance, PointOffset, Random, VectorStorageRead};

use super::compare::dataset::{file_shape, Dataset};
use super::limits::{self, ColdReadsSizes, MemoryBudget, VectorSource};
use crate::distance::dot_f32;

/// Arguments of `vecseg cold-reads`.
#[derive(Debug, Clone, Args)]
pub struct ColdReadsArgs {
    /// Vectors in the scratch file (with `--data`: at most this many are
    /// used); twice their size must fit in the available memory.
    #[arg(long, default_value_t = 200_000)]
    pub points: usize,
    /// Read the vectors from a `.fvecs` or `.npy` (float32, 2-D) file
    /// instead of generating random ones; `--dim` is then the file's.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dimension of the f32 vectors (1 to 65,536).
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Random vectors read per batch (1 to 16,777,216).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Rounds; every method reads one batch per round (1 to 100,000).
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// Directory on the disk to measure (a scratch directory is created
    /// in it and removed afterwards). Default: the system temp directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seed of the vectors and offsets.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Coalescing of the `io_uring` and `pread` methods: largest gap (KiB)
    /// between two vectors still read with one request (at most 1 GiB).
    /// Default: the library default.
    #[arg(long)]
    pub max_gap_kib: Option<usize>,
    /// Coalescing: largest single request in KiB (0: one request per
    /// vector; at most 1 GiB).
    #[arg(long)]
    pub max_request_kib: Option<usize>,
}

impl ColdReadsArgs {
    /// Check every size against the limits of [`crate::cli::limits`] and
    /// `budget`, reading only the header of `--data`: a
    /// [`UsageError`](crate::cli::limits::UsageError) naming the flag or
    /// file and the limit, before anything big is allocated.
    pub fn check_sizes(&self, budget: &MemoryBudget) -> Result<(), Box<dyn Error>> {
        let source = match &self.data {
            Some(path) => VectorSource::File {
                path,
                shape: file_shape(path)?,
                points: self.points,
            },
            None => VectorSource::Generated {
                points: self.points,
                dim: self.dim,
            },
        };
        let sizes = ColdReadsSizes {
            source,
            batch: self.batch,
            rounds: self.rounds,
            max_gap_kib: self.max_gap_kib,
            max_request_kib: self.max_request_kib,
        };
        limits::check_cold_reads(&sizes, budget)?;
        Ok(())
    }

    /// The coalescing rules the `io_uring` and `pread` methods use.
    pub fn coalescing(&self) -> ReadCoalescing {
        let default = ReadCoalescing::default();
        ReadCoalescing {
            max_gap: self
                .max_gap_kib
                .map_or(default.max_gap, |k| k.saturating_mul(1024)),
            max_request: self
                .max_request_kib
                .map_or(default.max_request, |k| k.saturating_mul(1024)),
        }
    }
}

/// One read path, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    /// Stable name (`io_uring`, `mmap_page_faults`, ...).
    pub method: &'static str,
    /// Median time of one batch, milliseconds.
    pub median_batch_ms: f64,
    /// Median over rounds of (page-fault time / this method's time) in the
    /// same round: above 1 means faster than page faults.
    pub median_speedup_vs_page_faults: f64,
    /// Read requests per batch (only for the batched readers).
    pub requests_per_batch: Option<f64>,
}

/// What `vecseg cold-reads` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ColdReadsReport {
    /// Vectors in the file.
    pub points: usize,
    /// Vector dimension.
    pub dim: usize,
    /// Vectors per batch.
    pub batch: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// The backend the batched reader used (`io_uring` or `pread`).
    pub batched_backend: &'static str,
    /// Coalescing of the `io_uring` and `pread` methods: largest gap read through, bytes.
    pub max_gap_bytes: usize,
    /// Coalescing: largest request, bytes (0: one request per vector).
    pub max_request_bytes: usize,
    /// One entry per read path.
    pub methods: Vec<MethodResult>,
}

/// How a method reads a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPath {
    /// `read_batch_uring` (io_uring, or `pread` when forced).
    Batched,
    /// One `get::<Random>` per vector through the mapping.
    Faults,
}

/// One read path over its own handle of the scratch file.
struct Method {
    name: &'static str,
    path: ReadPath,
    storage: MmapVectorStorage<f32>,
}

/// Name of the baseline every method is compared with.
const BASELINE: &str = "mmap_page_faults";

impl Method {
    /// Read `ids`; returns a checksum so no read is optimised away.
    fn read(&self, ids: &[PointOffset], q: &[f32]) -> Result<f32, Box<dyn Error>> {
        let mut sum = 0.0;
        match self.path {
            ReadPath::Batched => {
                self.storage
                    .read_batch_uring(ids, &mut |_, v| sum += dot_f32(v, q))?;
            }
            ReadPath::Faults => {
                for &o in ids {
                    sum += dot_f32(self.storage.get::<Random>(o)?, q);
                }
            }
        }
        Ok(sum)
    }
}

/// Open every read path on the storage in `dir`.
fn open_methods(dir: &Path, coalescing: ReadCoalescing) -> Result<Vec<Method>, Box<dyn Error>> {
    let batched = |backend, read_coalescing| MmapVectorOptions {
        read_backend: Some(backend),
        read_coalescing,
        ..Default::default()
    };
    let mapped = |advice: Advice| MmapVectorOptions {
        advice: advice.into(),
        multi_mmap: false,
        ..Default::default()
    };
    // io_uring where this process can use it (else its pread fallback, which
    // the report names).
    let uring = vecseg_mmap::detected_backend();
    [
        ("io_uring", ReadPath::Batched, batched(uring, coalescing)),
        (
            "io_uring_one_request_per_vector",
            ReadPath::Batched,
            batched(uring, ReadCoalescing::OFF),
        ),
        (
            "pread",
            ReadPath::Batched,
            batched(ReadBackend::Pread, coalescing),
        ),
        (BASELINE, ReadPath::Faults, mapped(Advice::Random)),
        (
            "mmap_page_faults_default_readahead",
            ReadPath::Faults,
            mapped(Advice::Normal),
        ),
    ]
    .into_iter()
    .map(|(name, path, options)| {
        Ok(Method {
            name,
            path,
            storage: MmapVectorStorage::open(dir, options)?,
        })
    })
    .collect()
}

/// Run `vecseg cold-reads` and print a table.
pub fn run(args: &ColdReadsArgs, quiet: bool) -> Result<(), Box<dyn Error>> {
    let report = measure(args, quiet)?;
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Build the scratch file and measure every read path.
pub fn measure(args: &ColdReadsArgs, quiet: bool) -> Result<ColdReadsReport, Box<dyn Error>> {
    args.check_sizes(&MemoryBudget::detect())?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("vecseg-cold-reads-")
        .tempdir_in(&base)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let (points, dim) = {
        let source = source_vectors(args, &mut rng)?;
        let (points, dim) = (source.total_count(), source.dim());
        if !quiet {
            eprintln!(
                "writing {points} × {dim} f32 vectors to {}",
                scratch.path().display()
            );
        }
        MmapVectorStorage::build(scratch.path(), &source, MmapVectorOptions::default())?;
        (points, dim)
    };
    let coalescing = args.coalescing();
    let methods = open_methods(scratch.path(), coalescing)?;
    let query: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let progress = super::progress::bar(quiet, "{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")?;
    progress.set_message("cold batches");
    progress.set_length((args.rounds * methods.len()) as u64);
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.rounds); methods.len()];
    let mut checksum = 0.0f32;
    for round in 0..args.rounds {
        let ids: Vec<PointOffset> = (0..args.batch)
            .map(|_| rng.gen_range(0..points) as PointOffset)
            .collect();
        for k in 0..methods.len() {
            let m = (round + k) % methods.len();
            // Every handle drops its pages: a page still mapped by any of
            // them would stay in the page cache.
            for other in &methods {
                other.storage.clear_cache()?;
            }
            let t = Instant::now();
            checksum += methods[m].read(&ids, &query)?;
            times[m].push(t.elapsed());
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    std::hint::black_box(checksum);

    let baseline = methods
        .iter()
        .position(|m| m.name == BASELINE)
        .ok_or("the page-fault baseline is missing")?;
    let results = methods
        .iter()
        .zip(&times)
        .map(|(m, t)| {
            let ratios = times[baseline]
                .iter()
                .zip(t)
                .map(|(f, t)| f.as_secs_f64() / t.as_secs_f64());
            MethodResult {
                method: m.name,
                median_batch_ms: median(t.iter().map(|d| d.as_secs_f64() * 1e3)),
                median_speedup_vs_page_faults: median(ratios),
                requests_per_batch: (m.path == ReadPath::Batched)
                    .then(|| m.storage.io_counts().requests as f64 / args.rounds as f64),
            }
        })
        .collect();
    Ok(ColdReadsReport {
        points,
        dim,
        batch: args.batch,
        rounds: args.rounds,
        batched_backend: methods[0].storage.io_backend().name(),
        max_gap_bytes: coalescing.max_gap,
        max_request_bytes: coalescing.max_request,
        methods: results,
    })
}

/// The vectors to write: from `--data`, or `--points` random ones.
fn source_vectors(
    args: &ColdReadsArgs,
    rng: &mut StdRng,
) -> Result<MemoryVectorStorage<f32>, Box<dyn Error>> {
    let (dim, vectors) = match &args.data {
        Some(path) => {
            let data = Dataset::load(path, Some(args.points), Distance::Dot, 1, 0, args.seed)?;
            if data.is_empty() {
                return Err(format!("{} holds no vectors", path.display()).into());
            }
            (data.dim, data.vectors)
        }
        None => {
            let n = args.points * args.dim;
            (args.dim, (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect())
        }
    };
    let mut source = MemoryVectorStorage::<f32>::new(dim, Distance::Dot)?;
    source.reserve(vectors.len() / dim);
    for (o, v) in vectors.chunks_exact(dim).enumerate() {
        source.insert(o as PointOffset, v)?;
    }
    Ok(source)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The aligned table `vecseg cold-reads` prints.
pub fn table(r: &ColdReadsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cold random reads: {} × {} f32, batches of {}, {} rounds, page cache dropped before each batch",
        r.points, r.dim, r.batch, r.rounds
    );
    let _ = writeln!(
        out,
        "batched reader backend: {}; coalescing: gaps up to {} KiB, requests up to {} KiB",
        r.batched_backend,
        r.max_gap_bytes / 1024,
        r.max_request_bytes / 1024
    );
    let _ = writeln!(
        out,
        "{:<36} {:>12} {:>12} {:>18} {:>14}",
        "method", "batch ms", "µs/vector", "× page faults", "requests"
    );
    for m in &r.methods {
        let _ = writeln!(
            out,
            "{:<36} {:>12.2} {:>12.2} {:>18.2} {:>14}",
            m.method,
            m.median_batch_ms,
            m.median_batch_ms * 1e3 / r.batch as f64,
            m.median_speedup_vs_page_faults,
            m.requests_per_batch
                .map_or_else(|| "-".to_string(), |q| format!("{q:.0}"))
        );
    }
    out
}
