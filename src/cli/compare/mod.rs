//! `vecseg compare`: the same workload on every configuration, one table.
//!
//! | file          | role                                                         |
//! |---------------|--------------------------------------------------------------|
//! | `mod.rs`      | arguments, orchestration (one worker process per config)     |
//! | `dataset.rs`  | generated clustered data or `.fvecs` / `.npy` input           |
//! | `configs.rs`  | the configurations: concrete `Segment<V, P, I>` types         |
//! | `measure.rs`  | the measurements, generic over a configuration                |
//! | `collection.rs` | the `collection` configuration (WAL + segments), its own load path |
//! | `report.rs`   | table, `report.json`, `report.html`                           |
//!
//! The parent process runs itself once per configuration with the hidden
//! `--worker NAME` flag; a worker loads the data into a fresh directory,
//! measures, and prints its [`ConfigReport`] as one JSON line on stdout.

pub mod collection;
pub mod configs;
pub mod dataset;
pub mod measure;
pub mod report;

use std::error::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;
use indicatif::ProgressBar;
use vecseg_traits::Distance;

use crate::cli::limits::{self, CompareSizes, MemoryBudget, VectorSource};
use dataset::Dataset;
use measure::{ConfigReport, Workload};
use report::{MachineInfo, Report};

/// Arguments of `vecseg compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Number of points to generate (or to read at most from --data); at
    /// most 4,294,967,295, and the run must fit in the available memory.
    #[arg(long, default_value_t = 100_000)]
    pub points: usize,
    /// Vector dimension of generated data (1 to 65,536).
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Distance: cosine, dot, euclid or manhattan.
    #[arg(long, default_value = "cosine", value_parser = parse_distance)]
    pub distance: Distance,
    /// Number of distinct tenants in the payloads (1 to the number of points).
    #[arg(long, default_value_t = 16)]
    pub tenants: usize,
    /// Number of search queries (1 to 1,000,000).
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Neighbours per query (1 to the number of points).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Comma-separated configurations to run (default: all).
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Read vectors from a .fvecs or .npy file instead of generating them.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Read the queries from a .fvecs or .npy file (at most --queries of
    /// them) instead of perturbing data points.
    #[arg(long)]
    pub query_data: Option<PathBuf>,
    /// Exact neighbours of the --query-data queries (.ivecs: per query the
    /// 0-based indices of the best points), used instead of brute force.
    #[arg(long, requires = "query_data")]
    pub ground_truth: Option<PathBuf>,
    /// Directory for report.json, report.html and the segments.
    #[arg(long, default_value = "vecseg-compare")]
    pub out: PathBuf,
    /// Seed of the generated data and random choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the segment directories after the run.
    #[arg(long)]
    pub keep: bool,
    /// Internal: run one configuration and print its report as JSON.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}

fn parse_distance(s: &str) -> Result<Distance, String> {
    Distance::from_name(s)
        .ok_or_else(|| format!("unknown distance {s:?} (cosine, dot, euclid, manhattan)"))
}

impl CompareArgs {
    /// Check every size against the limits of [`crate::cli::limits`] and
    /// `budget`, reading only the header of `--data`: a
    /// [`UsageError`](crate::cli::limits::UsageError) naming the flag or
    /// file and the limit, before anything big is allocated.
    pub fn check_sizes(&self, budget: &MemoryBudget) -> Result<(), Box<dyn Error>> {
        let source = match &self.data {
            Some(path) => VectorSource::File {
                path,
                shape: dataset::file_shape(path)?,
                points: self.points,
            },
            None => VectorSource::Generated {
                points: self.points,
                dim: self.dim,
            },
        };
        let sizes = CompareSizes {
            source,
            tenants: self.tenants,
            queries: self.queries,
            top: self.top,
        };
        limits::check_compare(&sizes, budget)?;
        Ok(())
    }

    /// The dataset, after [`Self::check_sizes`] against `budget`.
    fn dataset(&self, budget: &MemoryBudget) -> Result<Dataset, Box<dyn Error>> {
        self.check_sizes(budget)?;
        let mut data = self.points_and_generated_queries()?;
        if let Some(path) = &self.query_data {
            data.load_queries(path, self.queries)?;
            data.source
                .push_str(&format!("; queries from {}", path.display()));
        }
        Ok(data)
    }

    /// The exact top-`--top` of every query: from --ground-truth, or by
    /// brute force.
    fn ground_truth(
        &self,
        data: &Dataset,
    ) -> Result<Vec<Vec<vecseg_traits::PointId>>, Box<dyn Error>> {
        Ok(match &self.ground_truth {
            Some(path) => data.load_ground_truth(path, self.top)?,
            None => measure::ground_truth(data, self.top),
        })
    }

    fn points_and_generated_queries(&self) -> Result<Dataset, Box<dyn Error>> {
        Ok(match &self.data {
            Some(path) => Dataset::load(
                path,
                Some(self.points),
                self.distance,
                self.tenants,
                self.queries,
                self.seed,
            )?,
            None => Dataset::generate(
                self.points,
                self.dim,
                self.distance,
                self.tenants,
                self.queries,
                self.seed,
            )?,
        })
    }

    fn selected(&self) -> Result<Vec<String>, Box<dyn Error>> {
        let names: Vec<String> = match &self.configs {
            Some(list) => list
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            // By default every configuration that can run this distance.
            None => configs::ALL
                .iter()
                .filter(|n| configs::supports(n, self.distance))
                .map(|s| s.to_string())
                .collect(),
        };
        for n in &names {
            if let Some((_, feature)) = configs::NEED_FEATURE.iter().find(|(c, _)| c == n) {
                return Err(format!(
                    "configuration {n:?} needs the `{feature}` cargo feature of vecseg, \
                     which this build was compiled without"
                )
                .into());
            }
            if !configs::supports(n, self.distance) {
                return Err(format!(
                    "configuration {n:?} cannot approximate {} distance",
                    self.distance.name()
                )
                .into());
            }
            if !configs::ALL.contains(&n.as_str()) {
                return Err(format!(
                    "unknown configuration {n:?}; available: {}",
                    configs::ALL.join(", ")
                )
                .into());
            }
        }
        if names.is_empty() {
            return Err("--configs selected no configuration".into());
        }
        Ok(names)
    }
}

/// Run `vecseg compare`.
pub fn run(args: &CompareArgs, quiet: bool) -> Result<(), Box<dyn Error>> {
    if let Some(name) = &args.worker {
        return run_worker(args, name, quiet);
    }
    let names = args.selected()?;
    let data = args.dataset(&MemoryBudget::detect())?;
    if args.ground_truth.is_some() {
        // Read once here so a bad file fails before any worker runs.
        args.ground_truth(&data)?;
    }
    std::fs::create_dir_all(&args.out)?;
    let exe = std::env::current_exe()?;
    let mut reports = Vec::new();
    for name in &names {
        if !quiet {
            eprintln!("== {name}");
        }
        let mut cmd = Command::new(&exe);
        cmd.args(worker_args(args, name, quiet))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!("configuration {name} failed ({})", out.status).into());
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let report: ConfigReport = serde_json::from_str(line.trim())
            .map_err(|e| format!("configuration {name}: unreadable worker output: {e}"))?;
        reports.push(report);
    }
    // Workers delete their own segment directories unless --keep; drop the
    // then empty parent too (fails harmlessly when something is left).
    let _ = std::fs::remove_dir(args.out.join("segments"));
    print!("{}", report::table(&reports));
    let sweep = report::sweep_table(&reports);
    if !sweep.is_empty() {
        print!("\n{sweep}");
    }
    for (config, feature) in configs::NEED_FEATURE {
        println!("(not in this build: {config}, which needs the `{feature}` cargo feature)");
    }
    let report = Report {
        dataset: data.info(),
        machine: MachineInfo::current(),
        top_k: args.top,
        configs: reports,
    };
    report::write(&args.out, &report)?;
    if !quiet {
        eprintln!(
            "wrote {} and {}",
            args.out.join("report.json").display(),
            args.out.join("report.html").display()
        );
    }
    Ok(())
}

fn worker_args(args: &CompareArgs, name: &str, quiet: bool) -> Vec<String> {
    let mut v = vec![
        "compare".to_string(),
        "--worker".into(),
        name.into(),
        "--points".into(),
        args.points.to_string(),
        "--dim".into(),
        args.dim.to_string(),
        "--distance".into(),
        args.distance.name().into(),
        "--tenants".into(),
        args.tenants.to_string(),
        "--queries".into(),
        args.queries.to_string(),
        "--top".into(),
        args.top.to_string(),
        "--out".into(),
        args.out.display().to_string(),
        "--seed".into(),
        args.seed.to_string(),
    ];
    for (flag, path) in [
        ("--data", &args.data),
        ("--query-data", &args.query_data),
        ("--ground-truth", &args.ground_truth),
    ] {
        if let Some(p) = path {
            v.push(flag.into());
            v.push(p.display().to_string());
        }
    }
    if args.keep {
        v.push("--keep".into());
    }
    if quiet {
        v.push("--quiet".into());
    }
    v
}

fn run_worker(args: &CompareArgs, name: &str, quiet: bool) -> Result<(), Box<dyn Error>> {
    let progress =
        crate::cli::progress::bar(quiet, "{spinner} {msg:<32} [{bar:30}] {pos}/{len} ({eta})")?;
    progress.set_message(format!("{name}: data"));
    // The parent checked the memory budget (counting this worker's share);
    // what is available now is less by the parent's own copy of the data.
    let data = args.dataset(&MemoryBudget::UNLIMITED)?;
    progress.set_message(format!("{name}: exact ground truth"));
    let truth = args.ground_truth(&data)?;
    let dir = args.out.join("segments").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let work = Workload {
        top: args.top,
        gets: 10_000,
        seed: args.seed ^ 0x5eed,
    };
    let job = MeasureJob {
        dir: &dir,
        data: &data,
        truth: &truth,
        work,
        progress: &progress,
    };
    let report = if name == collection::NAME {
        collection::measure(&dir, &data, &truth, work, &progress)?
    } else {
        configs::dispatch(name, job).ok_or_else(|| format!("unknown configuration {name:?}"))??
    };
    progress.finish_and_clear();
    if !args.keep {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One worker's measurement, run with the configuration as a type parameter.
struct MeasureJob<'a> {
    dir: &'a std::path::Path,
    data: &'a Dataset,
    truth: &'a [Vec<vecseg_traits::PointId>],
    work: Workload,
    progress: &'a ProgressBar,
}

impl configs::ConfigVisitor for MeasureJob<'_> {
    type Output = vecseg_traits::Result<ConfigReport>;

    fn visit<C: configs::Config>(self) -> Self::Output {
        measure::measure::<C>(self.dir, self.data, self.truth, self.work, self.progress)
    }
}
