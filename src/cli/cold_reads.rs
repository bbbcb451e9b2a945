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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use vecseg_memory::MemoryVectorStorage;
use vecseg_mmap::{Advice, MmapVectorOptions, MmapVectorStorage, ReadBackend, ReadCoalescing};
use vecseg_traits::{AppendableVectorStorage, Distance, PointOffset, Random, VectorStorageRead};

use super::compare::dataset::Dataset;
use crate::distance::dot_f32;

/// Arguments of `vecseg cold-reads`.
#[derive(Debug, Clone, Args)]
pub struct ColdReadsArgs {
    /// Vectors in the scratch file (with `--data`: at most this many are used).
    #[arg(long, default_value_t = 200_000)]
    pub points: usize,
    /// Read the vectors from a `.fvecs` or `.npy` (float32, 2-D) file
    /// instead of generating random ones; `--dim` is then the file's.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dimension of the f32 vectors.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Random vectors read per batch.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Rounds; every method reads one batch per round.
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
    /// between two vectors still read with one request. Default: the
    /// library default.
    #[arg(long)]
    pub max_gap_kib: Option<usize>,
    /// Coalescing: largest single request in KiB (0: one request per vector).
    #[arg(long)]
    pub max_request_kib: Option<usize>,
}

impl ColdReadsArgs {
    /// The coalescing rules the `io_uring` and `pread` methods use.
    pub fn coalescing(&self) -> ReadCoalescing {
        let default = ReadCoalescing::default();
        ReadCoalescing {
            max_gap: self.max_gap_kib.map_or(default.max_gap, |k| k * 1024),
            max_request: self
                .max_request_kib
                .map_or(default.max_request, |k| k * 1024),
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

/// The read paths, each over its own handle of the same file.
struct Methods {
    /// io_uring (or its fallback) with the default coalescing.
    coalesced: MmapVectorStorage<f32>,
    /// io_uring with one request per vector.
    single: MmapVectorStorage<f32>,
    /// `pread`, coalesced like the default.
    pread: MmapVectorStorage<f32>,
    /// Mapping advised `MADV_RANDOM`: one page per fault.
    faults: MmapVectorStorage<f32>,
    /// Mapping with the kernel's default read-around.
    faults_readahead: MmapVectorStorage<f32>,
}

const NAMES: [&str; 5] = [
    "io_uring",
    "io_uring_one_request_per_vector",
    "pread",
    "mmap_page_faults",
    "mmap_page_faults_default_readahead",
];
const FAULTS: usize = 3;

impl Methods {
    fn storages(&self) -> [&MmapVectorStorage<f32>; 5] {
        [
            &self.coalesced,
            &self.single,
            &self.pread,
            &self.faults,
            &self.faults_readahead,
        ]
    }

    /// Drop the file's pages from every mapping and from the page cache
    /// (a page still mapped by any handle would stay cached).
    fn clear_cache(&self) -> Result<(), Box<dyn Error>> {
        for s in self.storages() {
            s.clear_cache()?;
        }
        Ok(())
    }

    /// Read `ids` with method `m`; returns a checksum so no read is optimised away.
    fn read(&self, m: usize, ids: &[PointOffset], q: &[f32]) -> Result<f32, Box<dyn Error>> {
        let s = self.storages()[m];
        let mut sum = 0.0;
        if m < FAULTS {
            s.read_batch_uring(ids, &mut |_, v| sum += dot_f32(v, q))?;
        } else {
            for &o in ids {
                sum += dot_f32(s.get::<Random>(o)?, q);
            }
        }
        Ok(sum)
    }
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
    if args.points == 0 || args.dim == 0 || args.batch == 0 || args.rounds == 0 {
        return Err("--points, --dim, --batch and --rounds must be positive".into());
    }
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
    let open = |options: MmapVectorOptions| MmapVectorStorage::<f32>::open(scratch.path(), options);
    let coalescing = args.coalescing();
    let methods = Methods {
        coalesced: open(MmapVectorOptions {
            read_coalescing: coalescing,
            ..Default::default()
        })?,
        single: open(MmapVectorOptions {
            read_coalescing: ReadCoalescing::OFF,
            ..Default::default()
        })?,
        pread: open(MmapVectorOptions {
            read_backend: Some(ReadBackend::Pread),
            read_coalescing: coalescing,
            ..Default::default()
        })?,
        faults: open(MmapVectorOptions {
            advice: Advice::Random,
            multi_mmap: false,
            ..Default::default()
        })?,
        faults_readahead: open(MmapVectorOptions {
            advice: Advice::Normal,
            multi_mmap: false,
            ..Default::default()
        })?,
    };
    let query: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let progress = super::progress::bar(quiet, "{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")?;
    progress.set_message("cold batches");
    progress.set_length((args.rounds * NAMES.len()) as u64);
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.rounds); NAMES.len()];
    let mut checksum = 0.0f32;
    for round in 0..args.rounds {
        let ids: Vec<PointOffset> = (0..args.batch)
            .map(|_| rng.gen_range(0..points) as PointOffset)
            .collect();
        for k in 0..NAMES.len() {
            let m = (round + k) % NAMES.len();
            methods.clear_cache()?;
            let t = Instant::now();
            checksum += methods.read(m, &ids, &query)?;
            times[m].push(t.elapsed());
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    std::hint::black_box(checksum);

    let batched_backend = methods.coalesced.io_backend().name();
    let requests: Vec<Option<f64>> = methods
        .storages()
        .iter()
        .enumerate()
        .map(|(m, s)| (m < FAULTS).then(|| s.io_counts().requests as f64 / args.rounds as f64))
        .collect();
    let methods = (0..NAMES.len())
        .map(|m| {
            let ratios: Vec<f64> = times[FAULTS]
                .iter()
                .zip(&times[m])
                .map(|(f, t)| f.as_secs_f64() / t.as_secs_f64())
                .collect();
            MethodResult {
                method: NAMES[m],
                median_batch_ms: median(times[m].iter().map(|d| d.as_secs_f64() * 1e3)),
                median_speedup_vs_page_faults: median(ratios.into_iter()),
                requests_per_batch: requests[m],
            }
        })
        .collect();
    Ok(ColdReadsReport {
        points,
        dim,
        batch: args.batch,
        rounds: args.rounds,
        batched_backend,
        max_gap_bytes: coalescing.max_gap,
        max_request_bytes: coalescing.max_request,
        methods,
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
