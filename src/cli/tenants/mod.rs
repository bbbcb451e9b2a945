//! `vecseg tenants`: tenant-filtered search throughput of an immutable
//! segment defragmented by tenant against the same segment ordered by id,
//! under a memory limit that forces page-cache misses.
//!
//! The parent process generates `--points` random vectors spread over
//! `--tenants` tenants at random (tenant independent of id, payload
//! `{"tenant": "tenant-<n>"}`), builds the same immutable mmap segment
//! twice with [`build_segment`] — once with the `tenant` keyword index
//! marked as the tenant key (points ordered by tenant, a [`TenantTable`]
//! recorded), once with the same index unmarked (points ordered by id, so
//! every tenant is scattered over the whole vector file) — and prints
//! build times and the locality measure of both
//! ([`Segment::tenant_locality`]).
//!
//! Then, for each hot set (a share of the tenants that queries go to) and
//! each segment, it runs one measurement in a worker process (the same
//! binary with the hidden `--worker-job` flag):
//!
//! 1. the parent drops every file of both segments from the page cache
//!    (`posix_fadvise(DONTNEED)`; pages cached earlier are charged to
//!    another cgroup and would not count against the limit);
//! 2. with a memory limit and a writable cgroup memory controller (v1
//!    `memory.limit_in_bytes` or v2 `memory.max`), the parent creates a
//!    fresh cgroup `vecseg-tenants-<pid>` (inside its own cgroup when it
//!    may, else at the controller's root), starts the worker, moves it
//!    into the cgroup and only then lets it open the segment (the worker
//!    waits for a line on stdin); without one it says so and the limit is
//!    not enforced (eviction before each measurement only);
//! 3. the worker runs tenant-filtered top-k searches (random query vector,
//!    random tenant of the hot set, keyword filter on `tenant`) on
//!    `--threads` threads: first a warm-up until the page cache reached
//!    its steady state for the hot set — the cgroup's memory usage grew
//!    by less than 1% over the last window of at least 1 s and 3
//!    requests (so the hot set is cached, or the cache is full at the
//!    limit), or without a cgroup the requests per second of the last
//!    window are within 10% of the window before — bounded by
//!    `--warmup-min-secs` and `--warmup-max-secs`; then the measurement
//!    proper for `--measure-secs` (and at least 5 requests), and prints
//!    one JSON line;
//! 4. the parent reads the cgroup's peak usage and failure count (the
//!    proof that the limit bound) and removes the cgroup.
//!
//! The results go to stdout as a table and to `report.json` and
//! `report.html` in `--report-dir`.
//!
//! | file        | what it holds |
//! |-------------|---------------|
//! | `mod.rs`    | the arguments ([`TenantsArgs`], [`MemoryLimit`], [`Codes`]), their validation and the scratch directory's checks; [`run`], the parent's driver, and `measure_cell`: one measurement's worker started in its cgroup |
//! | `data.rs`   | data generation, the two builds ([`Layout`]), their locality ([`LocalityReport`], [`summarize`]), page-cache eviction |
//! | `cgroup.rs` | the cgroup memory controller: one memory-limited cgroup per measurement, its figures ([`CgroupStats`]) |
//! | `worker.rs` | the worker process: [`WorkerJob`] in, warm-up and measurement, [`CellResult`] out |
//! | `report.rs` | the results ([`HotSetRow`], [`TenantsReport`]), the [`table`], `report.json` and `report.html` |
//!
//! [`build_segment`]: crate::collection::optimizer::build_segment
//! [`TenantTable`]: crate::segment::TenantTable
//! [`Segment::tenant_locality`]: crate::Segment::tenant_locality

mod cgroup;
mod data;
mod report;
mod worker;

use std::error::Error;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use vecseg_traits::Distance;

use super::compare::report::MachineInfo;
use super::limits::{MemoryBudget, UsageError, MAX_DIM, MAX_POINTS};
use cgroup::{find_cgroup_parent, Cgroup, LimitMode};
pub use cgroup::{CgroupStats, CgroupVersion};
use data::{build_layout, evict_tree};
pub use data::{
    summarize, BuildReport, Layout, LocalityReport, LocalitySummary, TenantLocalityRow,
};
use report::{evidence, write_report};
pub use report::{table, Cell, HotSetRow, Parameters, TenantsReport};
use worker::run_worker;
pub use worker::{CellResult, WarmupEnd, WorkerJob};

/// The payload key holding each point's tenant.
pub const TENANT_KEY: &str = "tenant";

/// Smallest `--memory-limit`: below it the worker itself does not fit.
pub const MIN_MEMORY_LIMIT: u64 = 32 << 20;

/// Most `--threads`.
pub const MAX_THREADS: usize = 256;

/// Most `--top`.
pub const MAX_TOP: usize = 10_000;

/// Set (to anything) to run without a cgroup, as on a system without a
/// usable memory controller (for tests of that fallback).
pub const NO_CGROUP_ENV: &str = "VECSEG_TENANTS_NO_CGROUP";

/// Default hot sets, percent of the tenants.
const DEFAULT_HOT: &str = "2.5,12.5,25,50,100";

/// A memory limit from the command line: bytes, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit(pub Option<u64>);

/// Parse `256M`, `1.5G`, `600000000` (bytes), `512MiB` or `none`.
pub fn parse_memory_limit(s: &str) -> Result<MemoryLimit, String> {
    let t = s.trim();
    if ["none", "off", "unlimited"].contains(&t.to_ascii_lowercase().as_str()) {
        return Ok(MemoryLimit(None));
    }
    let bad = || {
        format!(
            "expected a size such as 256M, 1.5G, 512MiB or 600000000 (bytes), or `none`; \
             at least {} MiB",
            MIN_MEMORY_LIMIT >> 20
        )
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < MIN_MEMORY_LIMIT as f64 || bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(MemoryLimit(Some(bytes as u64)))
}

/// Vectors the search scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codes {
    /// The raw f32 vectors (every candidate read from the vector file).
    Raw,
    /// 1-bit binary codes (in RAM-sized mmap files), the best
    /// `top × --oversampling` rescored with the raw vectors.
    Bq1,
}

impl Codes {
    fn describe(self, oversampling: f32) -> String {
        match self {
            Codes::Raw => "raw f32 vectors".into(),
            Codes::Bq1 => format!("1-bit binary codes, rescoring {oversampling}× top-k"),
        }
    }
}

/// Arguments of `vecseg tenants`.
#[derive(Debug, Clone, Args)]
pub struct TenantsArgs {
    /// Points to generate (random f32 vectors).
    #[arg(long, default_value_t = 1_000_000)]
    pub points: usize,
    /// Vector dimension (1 to 65,536).
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Tenants the points are spread over at random (1 to --points).
    #[arg(long, default_value_t = 200)]
    pub tenants: usize,
    /// Memory limit of the measuring worker (its cgroup): e.g. 256M, 1G,
    /// or `none`. Choose it below the vector file's size.
    #[arg(long, default_value = "256M", value_parser = parse_memory_limit)]
    pub memory_limit: MemoryLimit,
    /// What the search scores: raw vectors, or 1-bit binary codes with
    /// rescoring.
    #[arg(long, value_enum, default_value_t = Codes::Raw)]
    pub codes: Codes,
    /// With `--codes bq1`: candidates rescored per result.
    #[arg(long, default_value_t = 4.0)]
    pub oversampling: f32,
    /// Neighbours per request.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Searching threads of the worker (each with its own segment handle).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hot sets: comma-separated percentages of the tenants requests go to.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_HOT)]
    pub hot: Vec<f64>,
    /// Seconds each measurement runs after its warm-up.
    #[arg(long, default_value_t = 12.0)]
    pub measure_secs: f64,
    /// Shortest warm-up, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub warmup_min_secs: f64,
    /// Longest warm-up, seconds (it ends earlier once the page cache is steady).
    #[arg(long, default_value_t = 30.0)]
    pub warmup_max_secs: f64,
    /// Directory on the disk to measure; a scratch directory is created in
    /// it (and removed unless --keep). Default: the system temp directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Directory for report.json and report.html.
    #[arg(long, default_value = "vecseg-tenants")]
    pub report_dir: PathBuf,
    /// Keep the scratch directory with both segments.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the vectors, tenants and queries.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Internal: run one measurement described by this JSON and print the result.
    #[arg(long, hide = true)]
    pub worker_job: Option<String>,
}

/// Bytes the parent needs per point while building: the generated records
/// and the in-memory staging segment, each with the vector and a payload
/// (about 400 B as a `serde_json::Map`, rounded up).
fn build_memory_bytes(points: usize, dim: usize) -> u128 {
    points as u128 * (2 * dim as u128 * 4 + 1024)
}

/// Bytes both segments take on disk (vectors, payloads, ids, index),
/// rounded up; with codes, their files too.
fn disk_bytes_needed(points: usize, dim: usize, codes: Codes) -> u128 {
    let code = match codes {
        Codes::Raw => 0,
        Codes::Bq1 => dim.div_ceil(8) as u128 + 8,
    };
    2 * points as u128 * (dim as u128 * 4 + 128 + code)
}

/// `bytes` in MiB, or in GiB from 1 GiB up.
fn human(bytes: u128) -> String {
    let mb = bytes as f64 / (1u64 << 20) as f64;
    if mb >= 1024.0 {
        format!("{:.1} GiB", mb / 1024.0)
    } else {
        format!("{mb:.1} MiB")
    }
}

impl TenantsArgs {
    /// Check every value before anything is allocated or written: a
    /// [`UsageError`] (exit code 2) naming the flag.
    pub fn validate(&self, budget: &MemoryBudget) -> Result<(), UsageError> {
        let fail = |m: String| Err(UsageError(m));
        if self.points == 0 || self.points > MAX_POINTS {
            return fail(format!(
                "--points {} must be between 1 and {MAX_POINTS}",
                self.points
            ));
        }
        if self.dim == 0 || self.dim > MAX_DIM {
            return fail(format!(
                "--dim {} must be between 1 and {MAX_DIM}",
                self.dim
            ));
        }
        if self.tenants == 0 || self.tenants > self.points {
            return fail(format!(
                "--tenants {} must be between 1 and the number of points ({})",
                self.tenants, self.points
            ));
        }
        if self.top == 0 || self.top > MAX_TOP {
            return fail(format!(
                "--top {} must be between 1 and {MAX_TOP}",
                self.top
            ));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return fail(format!(
                "--threads {} must be between 1 and {MAX_THREADS}",
                self.threads
            ));
        }
        if self.hot.is_empty() {
            return fail("--hot needs at least one percentage".into());
        }
        if let Some(h) = self
            .hot
            .iter()
            .find(|h| !(h.is_finite() && **h > 0.0 && **h <= 100.0))
        {
            return fail(format!(
                "--hot {h}: every hot set must be a percentage above 0 and at most 100"
            ));
        }
        if !(self.oversampling.is_finite() && (1.0..=1000.0).contains(&self.oversampling)) {
            return fail(format!(
                "--oversampling {} must be between 1 and 1000",
                self.oversampling
            ));
        }
        for (flag, v, min) in [
            ("--measure-secs", self.measure_secs, 0.01),
            ("--warmup-min-secs", self.warmup_min_secs, 0.0),
            ("--warmup-max-secs", self.warmup_max_secs, 0.0),
        ] {
            if !(v.is_finite() && v >= min && v <= 3600.0) {
                return fail(format!("{flag} {v} must be between {min} and 3600"));
            }
        }
        if self.warmup_max_secs < self.warmup_min_secs {
            return fail(format!(
                "--warmup-max-secs {} is below --warmup-min-secs {}",
                self.warmup_max_secs, self.warmup_min_secs
            ));
        }
        let needed = build_memory_bytes(self.points, self.dim);
        if needed > u128::from(budget.bytes) {
            return fail(format!(
                "--points {} × --dim {} needs about {} of memory to build, more than the {} available ({}); \
                 use fewer points or a smaller dimension",
                self.points,
                self.dim,
                human(needed),
                human(budget.bytes.into()),
                budget.source
            ));
        }
        Ok(())
    }

    /// The hot sets: (percent, number of tenants), at least one tenant each.
    fn hot_sets(&self) -> Vec<(f64, usize)> {
        self.hot
            .iter()
            .map(|&p| {
                let n = (p / 100.0 * self.tenants as f64).ceil() as usize;
                (p, n.clamp(1, self.tenants))
            })
            .collect()
    }

    /// Points of tenant `t` (tenants are assigned round robin over a
    /// random permutation of the points, so sizes differ by at most one).
    fn tenant_points(&self, t: usize) -> usize {
        self.points / self.tenants + usize::from(t < self.points % self.tenants)
    }
}

/// Which file system holds `dir` (longest mount point prefix in
/// `/proc/mounts`), if that can be told.
fn fs_type(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(mount)
                .then(|| (mount.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// Free bytes of the file system holding `dir` (from `df -Pk`), if known.
fn free_bytes(dir: &Path) -> Option<u128> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u128 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Check the scratch directory's disk: exists, not in RAM, room for both segments.
fn check_scratch_dir(base: &Path, args: &TenantsArgs) -> Result<(), UsageError> {
    if !base.is_dir() {
        return Err(UsageError(format!(
            "--dir {}: not a directory",
            base.display()
        )));
    }
    if let Some(kind) = fs_type(base) {
        if kind == "tmpfs" || kind == "ramfs" {
            return Err(UsageError(format!(
                "--dir {} is on {kind}: its pages live in RAM and cannot be evicted, so a memory \
                 limit would not force page-cache misses; pass --dir on a disk",
                base.display()
            )));
        }
    }
    let needed = disk_bytes_needed(args.points, args.dim, args.codes);
    if let Some(free) = free_bytes(base) {
        if free < needed {
            return Err(UsageError(format!(
                "--dir {}: both segments need about {} on disk, only {} is free",
                base.display(),
                human(needed),
                human(free)
            )));
        }
    }
    Ok(())
}

/// Run `vecseg tenants`.
pub fn run(args: &TenantsArgs, quiet: bool) -> Result<(), Box<dyn Error>> {
    if let Some(job) = &args.worker_job {
        return run_worker(job);
    }
    args.validate(&MemoryBudget::detect())?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    check_scratch_dir(&base, args)?;
    let name = format!("vecseg-tenants-{}", std::process::id());
    let mode = match args.memory_limit.0 {
        None => LimitMode::None,
        Some(limit) if std::env::var_os(NO_CGROUP_ENV).is_some() => LimitMode::EvictOnly {
            limit,
            reason: format!("{NO_CGROUP_ENV} is set"),
        },
        Some(limit) => match find_cgroup_parent(&name, limit) {
            Ok(parent) => LimitMode::Cgroup { parent, limit },
            Err(reason) => LimitMode::EvictOnly { limit, reason },
        },
    };
    let vector_bytes = (args.points * args.dim * 4) as u64;
    let say = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    println!(
        "vecseg tenants: {} points × {} f32 ({:.1} MB of vectors), {} tenants of ~{} points, \
         top-{}, {}, {} thread(s)",
        args.points,
        args.dim,
        vector_bytes as f64 / 1e6,
        args.tenants,
        args.points / args.tenants,
        args.top,
        args.codes.describe(args.oversampling),
        args.threads
    );
    println!("{}", mode.describe());
    if let Some(limit) = args.memory_limit.0 {
        if limit >= vector_bytes {
            println!(
                "note: the limit ({}) is not below the vector data ({}): few page-cache misses are forced",
                human(limit.into()),
                human(vector_bytes.into())
            );
        }
    }

    let scratch = tempfile::Builder::new()
        .prefix("vecseg-tenants-")
        .tempdir_in(&base)?;
    let bar = super::progress::bar(quiet, "{spinner} {msg:<40} [{bar:30}] {pos}/{len} ({eta})")?;
    let mut builds = Vec::new();
    let mut locality = Vec::new();
    let mut dirs = Vec::new();
    for layout in Layout::BOTH {
        let dir = scratch.path().join(layout.dir_name());
        let (b, l) = build_layout(args, layout, &dir, &bar)?;
        builds.push(b);
        locality.push(l);
        dirs.push(dir);
    }
    bar.finish_and_clear();
    for b in &builds {
        println!(
            "build {:<17} {:>8.1} s  {:>8.1} MB/s of vectors  {:>9.1} MB on disk{}",
            b.layout.name(),
            b.build_secs,
            b.build_mb_per_sec,
            b.disk_bytes as f64 / 1e6,
            b.codes_secs
                .map_or_else(String::new, |s| format!("  (+{s:.1} s bq1 codes)"))
        );
    }
    println!("locality: distinct 4 KiB pages of vector data per tenant / the fewest possible");
    for l in &locality {
        println!(
            "  {:<17} median {:>6.2}x  max {:>6.2}x  pages {:>9} (min {})",
            l.layout.name(),
            l.median_ratio,
            l.max_ratio,
            l.pages,
            l.min_pages
        );
    }

    let hot_sets = args.hot_sets();
    let measure = super::progress::bar(
        quiet,
        "{spinner} {msg:<40} [{bar:30}] {pos}/{len} ({elapsed})",
    )?;
    measure.set_length((hot_sets.len() * 2) as u64);
    measure.enable_steady_tick(Duration::from_millis(200));
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for (i, &(percent, hot)) in hot_sets.iter().enumerate() {
        // Alternate which layout goes first, so a drifting disk favours neither.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut cells: [Option<Cell>; 2] = [None, None];
        for k in order {
            let layout = Layout::BOTH[k];
            measure.set_message(format!("hot {percent}%: {}", layout.name()));
            for d in &dirs {
                evict_tree(d)?;
            }
            let job = WorkerJob {
                segment: dirs[k].clone(),
                codes: args.codes,
                oversampling: args.oversampling,
                top: args.top,
                threads: args.threads,
                hot,
                seed: args.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                measure_secs: args.measure_secs,
                warmup_min_secs: args.warmup_min_secs,
                warmup_max_secs: args.warmup_max_secs,
                cgroup: None,
            };
            cells[k] = Some(measure_cell(&exe, &name, &mode, job)?);
            measure.inc(1);
        }
        let [Some(not), Some(defrag)] = cells else {
            return Err("a measurement is missing".into());
        };
        let hot_points: usize = (0..hot).map(|t| args.tenant_points(t)).sum();
        rows.push(HotSetRow {
            hot_percent: percent,
            hot_tenants: hot,
            tenant_points: hot_points as f64 / hot as f64,
            hot_vector_bytes: (hot_points * args.dim * 4) as u64,
            ratio: defrag.result.rps / not.result.rps,
            not_defragmented: not,
            defragmented: defrag,
        });
    }
    measure.finish_and_clear();
    print!("{}", table(&rows));
    print!("{}", evidence(&rows));

    let report = TenantsReport {
        parameters: Parameters {
            points: args.points,
            dim: args.dim,
            tenants: args.tenants,
            distance: Distance::Dot.name(),
            vector_bytes,
            top: args.top,
            codes: args.codes,
            oversampling: args.oversampling,
            threads: args.threads,
            memory_limit_bytes: args.memory_limit.0,
            memory_limit_mode: mode.key(),
            memory_limit_description: mode.describe(),
            measure_secs: args.measure_secs,
            warmup_min_secs: args.warmup_min_secs,
            warmup_max_secs: args.warmup_max_secs,
            seed: args.seed,
        },
        machine: MachineInfo::current(),
        builds,
        locality,
        rows,
    };
    write_report(&args.report_dir, &report)?;
    say(format!(
        "wrote {} and {}",
        args.report_dir.join("report.json").display(),
        args.report_dir.join("report.html").display()
    ));
    if args.keep {
        let kept = scratch.keep();
        println!("segments kept in {}", kept.display());
    }
    Ok(())
}

/// Run one worker: evicted cache, fresh cgroup (if any), result.
fn measure_cell(
    exe: &Path,
    name: &str,
    mode: &LimitMode,
    mut job: WorkerJob,
) -> Result<Cell, Box<dyn Error>> {
    let cgroup = match mode {
        LimitMode::Cgroup { parent, limit } => Some((
            Cgroup::create(parent, name, *limit)
                .map_err(|e| format!("creating cgroup {}: {e}", parent.dir.join(name).display()))?,
            *limit,
        )),
        _ => None,
    };
    job.cgroup = cgroup.as_ref().map(|(c, _)| (c.version, c.dir.clone()));
    let mut child = Command::new(exe)
        .arg("tenants")
        .arg("--worker-job")
        .arg(serde_json::to_string(&job)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    if let Some((c, _)) = &cgroup {
        if let Err(e) = c.add(child.id()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("moving the worker into cgroup {}: {e}", c.dir.display()).into());
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "go")?;
    }
    let out = child.wait_with_output()?;
    let stats = cgroup.as_ref().map(|(c, limit)| c.stats(*limit));
    if let Some((c, _)) = cgroup {
        c.remove()?;
    }
    if !out.status.success() {
        let oom = stats
            .as_ref()
            .and_then(|s| s.oom_kills)
            .is_some_and(|k| k > 0);
        let hint = if oom {
            " — the OOM killer ended it: the memory limit is too low for the worker itself; raise --memory-limit"
        } else {
            ""
        };
        return Err(format!(
            "measuring {} failed ({}){hint}",
            job.segment.display(),
            out.status
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let result: CellResult = serde_json::from_str(line)
        .map_err(|e| format!("unreadable worker output ({e}): {line:?}"))?;
    Ok(Cell {
        result,
        cgroup: stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse() {
        assert_eq!(parse_memory_limit("256M"), Ok(MemoryLimit(Some(256 << 20))));
        assert_eq!(parse_memory_limit("1.5G"), Ok(MemoryLimit(Some(3 << 29))));
        assert_eq!(
            parse_memory_limit("512MiB"),
            Ok(MemoryLimit(Some(512 << 20)))
        );
        assert_eq!(
            parse_memory_limit("600000000"),
            Ok(MemoryLimit(Some(600_000_000)))
        );
        assert_eq!(parse_memory_limit("none"), Ok(MemoryLimit(None)));
        for bad in ["", "12Q", "M", "-5M", "1e3", "1M", "nan"] {
            assert!(parse_memory_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hot_sets_round_up_to_whole_tenants() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["vecseg", "tenants"]);
        let crate::cli::CliCommand::Tenants(mut args) = cli.command else {
            panic!("not the tenants command");
        };
        args.tenants = 30;
        let sets = args.hot_sets();
        assert_eq!(
            sets.iter().map(|s| s.1).collect::<Vec<_>>(),
            [1, 4, 8, 15, 30]
        );
        args.points = 3001;
        assert_eq!(args.tenant_points(0), 101);
        assert_eq!(args.tenant_points(1), 100);
    }
}
