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

use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vecseg_mmap::MmapVectorOptions;
use vecseg_quantized::{Binary1, BinaryConfig};
use vecseg_traits::{
    Condition, Distance, FieldSchema, FieldType, Filter, IdMapperRead, Payload, PayloadStorageRead,
    PointId, Record, VectorStorageRead,
};

use super::compare::report::MachineInfo;
use super::limits::{MemoryBudget, UsageError, MAX_DIM, MAX_POINTS};
use crate::collection::optimizer::{build_segment, BuildOptions};
use crate::kinds;
use crate::segment::{TenantLocality, TenantTable};
use crate::{PlanKind, ScanOptions, Segment};

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

/// Requests of a warm-up window and of the measurement, at least.
const MIN_WINDOW_REQUESTS: u64 = 3;
const MIN_MEASURED_REQUESTS: u64 = 5;
/// The measurement stops after this many times `--measure-secs` even if
/// it has fewer than [`MIN_MEASURED_REQUESTS`] requests.
const MEASURE_CAP_FACTOR: f64 = 4.0;

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

// ---------------------------------------------------------------------
// Data and builds
// ---------------------------------------------------------------------

/// The two layouts measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Ordered by id: tenants scattered.
    NotDefragmented,
    /// Ordered by tenant (the tenant key marked in the build).
    Defragmented,
}

impl Layout {
    const BOTH: [Layout; 2] = [Layout::NotDefragmented, Layout::Defragmented];

    fn name(self) -> &'static str {
        match self {
            Layout::NotDefragmented => "not defragmented",
            Layout::Defragmented => "defragmented",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Layout::NotDefragmented => "by-id",
            Layout::Defragmented => "by-tenant",
        }
    }
}

/// The generated points, the same for every call with the same arguments:
/// ids 0.., version 1, components uniform in [-1, 1), tenant of point `i`
/// from a seeded random permutation (independent of the id).
fn generate(args: &TenantsArgs, bar: &ProgressBar) -> Vec<Record<f32>> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut tenant: Vec<u32> = (0..args.points)
        .map(|i| (i % args.tenants) as u32)
        .collect();
    tenant.shuffle(&mut rng);
    bar.set_length(args.points as u64);
    bar.set_position(0);
    let mut points = Vec::with_capacity(args.points);
    for (i, t) in tenant.into_iter().enumerate() {
        let vector: Vec<f32> = (0..args.dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut payload = Payload::new();
        payload.insert(TENANT_KEY.into(), Value::String(format!("tenant-{t}")));
        points.push(Record {
            id: PointId::Num(i as u64),
            version: 1,
            vector,
            payload,
        });
        if i % 16_384 == 0 {
            bar.set_position(i as u64);
        }
    }
    bar.set_position(args.points as u64);
    points
}

/// Vector options of both segments: scattered `get_batch` calls read
/// through io_uring, as for a segment expected to be cold on disk.
fn vector_options() -> MmapVectorOptions {
    MmapVectorOptions {
        batch_reads_via_uring: true,
        ..Default::default()
    }
}

/// How one build went.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Which layout.
    pub layout: Layout,
    /// Seconds of [`build_segment`] (ordering, staging, writing, index, flush).
    pub build_secs: f64,
    /// Vector megabytes (10^6 B) per second of the build.
    pub build_mb_per_sec: f64,
    /// Seconds spent training and writing the binary codes (`--codes bq1`).
    pub codes_secs: Option<f64>,
    /// Bytes of the segment directory.
    pub disk_bytes: u64,
    /// Tenant runs recorded in `segment.json` (defragmented only).
    pub tenant_runs: Option<usize>,
}

/// The locality measure of one segment, over all tenants.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityReport {
    /// Which layout.
    pub layout: Layout,
    /// Median over tenants of pages / min pages.
    pub median_ratio: f64,
    /// Largest pages / min pages.
    pub max_ratio: f64,
    /// Distinct 4 KiB pages of vector data, summed over tenants.
    pub pages: u64,
    /// The fewest those tenants could occupy, summed.
    pub min_pages: u64,
    /// Per tenant.
    pub tenants: Vec<TenantLocalityRow>,
}

/// One tenant's locality.
#[derive(Debug, Clone, Serialize)]
pub struct TenantLocalityRow {
    /// The tenant key's value.
    pub value: Value,
    /// Live points.
    pub points: usize,
    /// Distinct 4 KiB pages their vectors occupy.
    pub pages: u64,
    /// `ceil(points × vector bytes / 4096)`.
    pub min_pages: u64,
    /// `pages / min_pages`.
    pub ratio: f64,
}

/// Summary figures of a tenant locality list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalitySummary {
    /// Tenants.
    pub tenants: usize,
    /// Points, summed.
    pub points: usize,
    /// Pages, summed.
    pub pages: u64,
    /// Min pages, summed.
    pub min_pages: u64,
    /// Median ratio.
    pub median_ratio: f64,
    /// Largest ratio.
    pub max_ratio: f64,
}

/// Totals, median and maximum of `pages / min_pages` over `rows`.
pub fn summarize(rows: &[TenantLocality]) -> LocalitySummary {
    let mut ratios: Vec<f64> = rows.iter().map(TenantLocality::ratio).collect();
    ratios.sort_by(f64::total_cmp);
    LocalitySummary {
        tenants: rows.len(),
        points: rows.iter().map(|r| r.points).sum(),
        pages: rows.iter().map(|r| r.pages).sum(),
        min_pages: rows.iter().map(|r| r.min_pages).sum(),
        median_ratio: median(&ratios),
        max_ratio: ratios.last().copied().unwrap_or(f64::NAN),
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn locality_report(layout: Layout, rows: Vec<TenantLocality>) -> LocalityReport {
    let s = summarize(&rows);
    LocalityReport {
        layout,
        median_ratio: s.median_ratio,
        max_ratio: s.max_ratio,
        pages: s.pages,
        min_pages: s.min_pages,
        tenants: rows
            .into_iter()
            .map(|r| TenantLocalityRow {
                ratio: r.ratio(),
                value: r.value,
                points: r.points,
                pages: r.pages,
                min_pages: r.min_pages,
            })
            .collect(),
    }
}

/// Build one layout in `dir`: the build, its locality, and the codes.
fn build_layout(
    args: &TenantsArgs,
    layout: Layout,
    dir: &Path,
    bar: &ProgressBar,
) -> Result<(BuildReport, LocalityReport), Box<dyn Error>> {
    bar.set_message(format!("generate ({})", layout.name()));
    let points = generate(args, bar);
    let mut schema = FieldSchema::new(TENANT_KEY, FieldType::Keyword);
    schema.is_tenant = layout == Layout::Defragmented;
    let options = BuildOptions {
        dim: args.dim,
        distance: Distance::Dot,
        indexes: vec![schema],
        vector_options: vector_options(),
        hnsw: None,
    };
    bar.set_message(format!("build {}", layout.name()));
    bar.set_position(0);
    let t = Instant::now();
    let segment = build_segment(points, dir, &options, &mut |p| {
        bar.set_message(format!("build {}: {}", layout.name(), p.phase.label()));
        bar.set_length(p.total.max(1));
        bar.set_position(p.done);
    })?;
    let build_secs = t.elapsed().as_secs_f64();
    let tenant_runs = segment.tenants().map(|t: &TenantTable| t.ranges.len());
    bar.set_message(format!("locality {}", layout.name()));
    let locality = locality_report(layout, segment.tenant_locality(TENANT_KEY)?);
    let codes_secs = match args.codes {
        Codes::Raw => None,
        Codes::Bq1 => {
            bar.set_message(format!("bq1 codes {}", layout.name()));
            bar.set_length(args.points as u64);
            let t = Instant::now();
            drop(kinds::quantize_mmap_segment::<Binary1>(
                segment,
                &BinaryConfig::default(),
                &vector_options(),
                &mut |i| bar.set_position(i as u64),
            )?);
            Some(t.elapsed().as_secs_f64())
        }
    };
    let vector_mb = (args.points * args.dim * 4) as f64 / 1e6;
    Ok((
        BuildReport {
            layout,
            build_secs,
            build_mb_per_sec: vector_mb / build_secs,
            codes_secs,
            disk_bytes: vecseg_traits::fsutil::dir_size(dir),
            tenant_runs,
        },
        locality,
    ))
}

/// Drop every file under `dir` from the page cache (after syncing it, so
/// no dirty page stays behind).
fn evict_tree(dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else {
                std::fs::File::open(&p)?.sync_all()?;
                vecseg_mmap::file::evict_file_from_page_cache(&p)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// cgroups
// ---------------------------------------------------------------------

/// Version of the cgroup memory controller used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// cgroup v1: `memory.limit_in_bytes`.
    V1,
    /// cgroup v2: `memory.max`.
    V2,
}

impl CgroupVersion {
    fn usage_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }

    fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }
}

/// Where measurement cgroups are created.
#[derive(Debug, Clone)]
struct CgroupParent {
    version: CgroupVersion,
    dir: PathBuf,
}

/// The memory controller hierarchies of this system (v1 first), with the
/// directory of this process's own cgroup in each.
fn memory_hierarchies() -> Vec<(CgroupVersion, PathBuf, PathBuf)> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own_path = |v1: bool| -> Option<String> {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if v1 {
                controllers.split(',').any(|c| c == "memory")
            } else {
                controllers.is_empty()
            };
            hit.then(|| path.trim_start_matches('/').to_string())
        })
    };
    let mut out = Vec::new();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [_, mount, kind, opts, ..] = f[..] else {
            continue;
        };
        let mount = PathBuf::from(mount);
        if kind == "cgroup" && opts.split(',').any(|o| o == "memory") {
            if let Some(p) = own_path(true) {
                out.push((CgroupVersion::V1, mount.clone(), mount.join(p)));
            }
        } else if kind == "cgroup2"
            && std::fs::read_to_string(mount.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            if let Some(p) = own_path(false) {
                out.push((CgroupVersion::V2, mount.clone(), mount.join(p)));
            }
        }
    }
    out.sort_by_key(|(v, _, _)| *v == CgroupVersion::V2);
    out
}

/// A writable place for a memory-limited cgroup: inside this process's
/// own cgroup if possible (its accounting stays where it was), else at
/// the controller's root. Tested by creating and removing a cgroup with
/// the limit set. `Err` says why none is usable.
fn find_cgroup_parent(name: &str, limit: u64) -> Result<CgroupParent, String> {
    let hierarchies = memory_hierarchies();
    if hierarchies.is_empty() {
        return Err("no cgroup memory controller is mounted".into());
    }
    let mut reasons = Vec::new();
    for (version, root, own) in hierarchies {
        let mut candidates = vec![own.clone()];
        if own != root {
            candidates.push(root);
        }
        for dir in candidates {
            if version == CgroupVersion::V2 {
                // A v2 child only gets the memory controller if its
                // parent delegates it.
                let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
                if !delegated {
                    reasons.push(format!(
                        "{}: memory not in cgroup.subtree_control",
                        dir.display()
                    ));
                    continue;
                }
            }
            let parent = CgroupParent {
                version,
                dir: dir.clone(),
            };
            match Cgroup::create(&parent, name, limit) {
                Ok(probe) => match probe.remove() {
                    Ok(()) => return Ok(parent),
                    Err(e) => reasons.push(format!("{}: {e}", dir.display())),
                },
                Err(e) => reasons.push(format!("{}: {e}", dir.display())),
            }
        }
    }
    Err(reasons.join("; "))
}

/// One memory-limited cgroup, removed when dropped.
#[derive(Debug)]
struct Cgroup {
    version: CgroupVersion,
    dir: PathBuf,
    removed: bool,
}

/// What a cgroup recorded about a measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupStats {
    /// The cgroup's directory.
    pub path: String,
    /// Controller version (`v1` / `v2`).
    pub version: String,
    /// The limit, bytes.
    pub limit_bytes: u64,
    /// Peak memory usage (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`), bytes.
    pub max_usage_bytes: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` in
    /// `memory.events`).
    pub failcnt: Option<u64>,
    /// Processes the OOM killer killed in it.
    pub oom_kills: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Cgroup {
    fn create(parent: &CgroupParent, name: &str, limit: u64) -> std::io::Result<Cgroup> {
        let dir = parent.dir.join(name);
        if dir.exists() {
            // Left by an earlier run with this pid; empty unless in use.
            std::fs::remove_dir(&dir)?;
        }
        std::fs::create_dir(&dir)?;
        let cgroup = Cgroup {
            version: parent.version,
            dir,
            removed: false,
        };
        std::fs::write(
            cgroup.dir.join(parent.version.limit_file()),
            limit.to_string(),
        )?;
        if parent.version == CgroupVersion::V2 {
            // Without swap a v2 group could swap its anonymous pages out
            // instead of dropping cache; where the file exists, forbid it.
            let _ = std::fs::write(cgroup.dir.join("memory.swap.max"), "0");
        }
        Ok(cgroup)
    }

    /// Move process `pid` into this cgroup.
    fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    fn stats(&self, limit: u64) -> CgroupStats {
        let (max_usage, failcnt, oom_kills) = match self.version {
            CgroupVersion::V1 => (
                read_u64(&self.dir.join("memory.max_usage_in_bytes")),
                read_u64(&self.dir.join("memory.failcnt")),
                read_key(&self.dir.join("memory.oom_control"), "oom_kill"),
            ),
            CgroupVersion::V2 => (
                read_u64(&self.dir.join("memory.peak")),
                read_key(&self.dir.join("memory.events"), "max"),
                read_key(&self.dir.join("memory.events"), "oom_kill"),
            ),
        };
        CgroupStats {
            path: self.dir.display().to_string(),
            version: format!("{:?}", self.version).to_lowercase(),
            limit_bytes: limit,
            max_usage_bytes: max_usage,
            failcnt,
            oom_kills,
        }
    }

    /// Remove the (empty) cgroup; a process that just exited may take a
    /// moment to leave it.
    fn remove(mut self) -> std::io::Result<()> {
        self.removed = true;
        remove_cgroup_dir(&self.dir)
    }
}

fn remove_cgroup_dir(dir: &Path) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cgroup busy")))
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_cgroup_dir(&self.dir);
        }
    }
}

/// How the memory limit is applied.
#[derive(Debug, Clone)]
enum LimitMode {
    /// No limit asked for.
    None,
    /// A cgroup per measurement.
    Cgroup { parent: CgroupParent, limit: u64 },
    /// A limit was asked for but no cgroup can enforce it.
    EvictOnly { limit: u64, reason: String },
}

impl LimitMode {
    fn describe(&self) -> String {
        match self {
            LimitMode::None => "no memory limit (--memory-limit none); the page cache of the segment files is \
                 evicted before each measurement"
                .into(),
            LimitMode::Cgroup { parent, limit } => format!(
                "memory limit {} enforced by a cgroup {} memory controller (a fresh cgroup under {} per \
                 measurement, the worker moved into it before it opens the segment); the page cache \
                 of the segment files is evicted before each measurement",
                human((*limit).into()),
                format!("{:?}", parent.version).to_lowercase(),
                parent.dir.display()
            ),
            LimitMode::EvictOnly { limit, reason } => format!(
                "WARNING: the memory limit {} is NOT enforced: no usable cgroup memory controller ({reason}); \
                 the page cache of the segment files is only evicted before each measurement",
                human((*limit).into())
            ),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            LimitMode::None => "none",
            LimitMode::Cgroup { parent, .. } => match parent.version {
                CgroupVersion::V1 => "cgroup_v1",
                CgroupVersion::V2 => "cgroup_v2",
            },
            LimitMode::EvictOnly { .. } => "evict_only",
        }
    }
}

// ---------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------

/// One measurement, as the parent hands it to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The segment directory.
    pub segment: PathBuf,
    /// Search through the binary codes or the raw vectors.
    pub codes: Codes,
    /// Rescoring factor with codes.
    pub oversampling: f32,
    /// Neighbours per request.
    pub top: usize,
    /// Searching threads.
    pub threads: usize,
    /// Requests go to tenants `tenant-0 .. tenant-(hot-1)`.
    pub hot: usize,
    /// Seed of the queries.
    pub seed: u64,
    /// Measurement seconds.
    pub measure_secs: f64,
    /// Warm-up bounds, seconds.
    pub warmup_min_secs: f64,
    /// Warm-up bounds, seconds.
    pub warmup_max_secs: f64,
    /// The cgroup the parent moves the worker into (its usage ends the
    /// warm-up), if any.
    pub cgroup: Option<(CgroupVersion, PathBuf)>,
}

/// Why a warm-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupEnd {
    /// The cgroup's memory usage stopped growing.
    CacheSteady,
    /// Requests per second stopped changing (no cgroup).
    RpsSteady,
    /// `--warmup-max-secs` reached.
    TimeCap,
}

/// What a worker measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// Requests per second of the measurement.
    pub rps: f64,
    /// Requests measured.
    pub requests: u64,
    /// Seconds measured.
    pub secs: f64,
    /// Median request latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Mean hits per request (top-k, fewer only for tiny tenants).
    pub hits_per_request: f64,
    /// Whether the filter was answered from the index (`indexed`) or by a scan.
    pub plan: String,
    /// Warm-up seconds.
    pub warmup_secs: f64,
    /// Warm-up requests.
    pub warmup_requests: u64,
    /// Why the warm-up ended.
    pub warmup_end: WarmupEnd,
    /// Bytes read from the disk per request during the measurement
    /// (`read_bytes` of `/proc/self/io`).
    pub read_bytes_per_request: Option<f64>,
    /// Major page faults per request during the measurement.
    pub major_faults_per_request: Option<f64>,
    /// The worker's cgroup (from `/proc/self/cgroup`), proof it ran there.
    pub own_cgroup: String,
    /// cgroup memory usage at the end of the warm-up and of the measurement.
    pub cgroup_usage_after_warmup: Option<u64>,
    /// cgroup memory usage at the end of the measurement.
    pub cgroup_usage_after_measure: Option<u64>,
}

/// A tenant-filtered search over one segment handle.
trait TenantSearch {
    /// One request: returns the hits.
    fn request(&self, query: &[f32], filter: &Filter) -> vecseg_traits::Result<usize>;
    /// The filter plan.
    fn plan(&self, filter: &Filter) -> vecseg_traits::Result<PlanKind>;
}

struct Searcher<S> {
    segment: S,
    top: usize,
    options: ScanOptions,
}

impl<V, P, I> TenantSearch for Searcher<Segment<V, P, I>>
where
    V: VectorStorageRead<Element = f32>,
    P: PayloadStorageRead,
    I: IdMapperRead,
{
    fn request(&self, query: &[f32], filter: &Filter) -> vecseg_traits::Result<usize> {
        Ok(self
            .segment
            .search_with(query, self.top, Some(filter), self.options)?
            .len())
    }

    fn plan(&self, filter: &Filter) -> vecseg_traits::Result<PlanKind> {
        Ok(self.segment.plan(filter)?.kind)
    }
}

fn open_searcher(job: &WorkerJob) -> vecseg_traits::Result<Box<dyn TenantSearch>> {
    let options = ScanOptions::single_thread();
    Ok(match job.codes {
        Codes::Raw => Box::new(Searcher {
            segment: kinds::open_mmap_segment::<f32>(&job.segment, &vector_options())?,
            top: job.top,
            options,
        }),
        Codes::Bq1 => Box::new(Searcher {
            segment: kinds::open_quantized_mmap_segment::<Binary1>(
                &job.segment,
                &vector_options(),
            )?,
            top: job.top,
            options: options
                .with_oversampling(job.oversampling)
                .with_rescore(true),
        }),
    })
}

fn tenant_filter(t: usize) -> Filter {
    Filter::must(Condition::keyword(TENANT_KEY, format!("tenant-{t}")))
}

/// Bytes this process (all its threads) had read from storage.
fn proc_io_read_bytes() -> Option<u64> {
    read_key(Path::new("/proc/self/io"), "read_bytes:")
}

fn major_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): state is
    // field 3, majflt field 12.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(9)?.parse().ok()
}

/// Run one measurement (the worker side of `--worker-job`).
fn run_worker(job_json: &str) -> Result<(), Box<dyn Error>> {
    let job: WorkerJob = serde_json::from_str(job_json)?;
    // Wait until the parent has moved this process into its cgroup: no
    // segment file is opened before.
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go)?;
    if go.trim() != "go" {
        return Err("the parent did not start the measurement".into());
    }
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find(|l| match job.cgroup {
            Some((CgroupVersion::V1, _)) => l
                .split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory")),
            _ => l.starts_with("0::"),
        })
        .unwrap_or_default()
        .to_string();
    if let Some((_, dir)) = &job.cgroup {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !own_cgroup.ends_with(name) {
            return Err(format!(
                "the worker is not in its cgroup {} (it is in {own_cgroup:?})",
                dir.display()
            )
            .into());
        }
    }
    let usage = || {
        job.cgroup
            .as_ref()
            .and_then(|(v, d)| read_u64(&d.join(v.usage_file())))
    };

    let dim = crate::segment::SegmentState::read(&job.segment)?.dim;
    let threads = job.threads.max(1);
    let barrier = Barrier::new(threads + 1);
    let stop = [AtomicBool::new(false), AtomicBool::new(false)];
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<String>> = Mutex::new(None);
    let requests = AtomicU64::new(0);
    let hits = AtomicU64::new(0);
    let plan: Mutex<Option<PlanKind>> = Mutex::new(None);
    let fail = |e: String| {
        failed.store(true, Ordering::SeqCst);
        let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    };

    let mut phases: Vec<(u64, Duration)> = Vec::new();
    let mut warmup_end = WarmupEnd::TimeCap;
    let mut usage_after_warmup = None;
    let mut io_before = (None, None);
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, stop, failed, requests, hits, plan, fail) =
                    (&barrier, &stop, &failed, &requests, &hits, &plan, &fail);
                let job = &job;
                scope.spawn(move || {
                    let searcher = open_searcher(job);
                    if let Ok(s) = &searcher {
                        if t == 0 {
                            match s.plan(&tenant_filter(0)) {
                                Ok(k) => *plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(k),
                                Err(e) => fail(e.to_string()),
                            }
                        }
                    }
                    let mut rng = StdRng::seed_from_u64(job.seed ^ ((t as u64 + 1) << 32));
                    let mut latencies = Vec::new();
                    for (phase, stop) in stop.iter().enumerate() {
                        barrier.wait();
                        match &searcher {
                            Err(e) => fail(format!("opening {}: {e}", job.segment.display())),
                            Ok(s) => {
                                while !stop.load(Ordering::Relaxed)
                                    && !failed.load(Ordering::Relaxed)
                                {
                                    let tenant = rng.gen_range(0..job.hot.max(1));
                                    let query: Vec<f32> =
                                        (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
                                    let start = Instant::now();
                                    match s.request(&query, &tenant_filter(tenant)) {
                                        Ok(n) => {
                                            if phase == 1 {
                                                latencies.push(start.elapsed());
                                                hits.fetch_add(n as u64, Ordering::Relaxed);
                                            }
                                            requests.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Err(e) => fail(e.to_string()),
                                    }
                                }
                            }
                        }
                        barrier.wait();
                    }
                    latencies
                })
            })
            .collect();

        // Phase 0: warm-up; phase 1: measurement.
        for (phase, stop_flag) in stop.iter().enumerate() {
            requests.store(0, Ordering::SeqCst);
            if phase == 1 {
                io_before = (proc_io_read_bytes(), major_faults());
            }
            barrier.wait();
            let start = Instant::now();
            let mut window = (Duration::ZERO, 0u64, usage());
            let mut last_rps: Option<f64> = None;
            loop {
                std::thread::sleep(Duration::from_millis(20));
                let elapsed = start.elapsed();
                let n = requests.load(Ordering::Relaxed);
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                if phase == 1 {
                    let secs = elapsed.as_secs_f64();
                    if (secs >= job.measure_secs && n >= MIN_MEASURED_REQUESTS)
                        || (secs >= job.measure_secs * MEASURE_CAP_FACTOR && n >= 1)
                    {
                        break;
                    }
                    continue;
                }
                if elapsed.as_secs_f64() >= job.warmup_max_secs {
                    warmup_end = WarmupEnd::TimeCap;
                    break;
                }
                let (w_start, w_n, w_usage) = window;
                let w_secs = (elapsed - w_start).as_secs_f64();
                if w_secs < 1.0 || n - w_n < MIN_WINDOW_REQUESTS {
                    continue;
                }
                // A window closed: is the page cache steady?
                let now_usage = usage();
                let rps = (n - w_n) as f64 / w_secs;
                let steady = match (w_usage, now_usage) {
                    (Some(before), Some(after)) => {
                        (after.saturating_sub(before) as f64) < 0.01 * before.max(1) as f64
                    }
                    _ => last_rps.is_some_and(|prev| (rps - prev).abs() <= 0.10 * prev),
                };
                if steady && elapsed.as_secs_f64() >= job.warmup_min_secs {
                    warmup_end = if now_usage.is_some() {
                        WarmupEnd::CacheSteady
                    } else {
                        WarmupEnd::RpsSteady
                    };
                    break;
                }
                last_rps = Some(rps);
                window = (elapsed, n, now_usage);
            }
            stop_flag.store(true, Ordering::SeqCst);
            barrier.wait();
            phases.push((requests.load(Ordering::SeqCst), start.elapsed()));
            if phase == 0 {
                usage_after_warmup = usage();
            }
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.into());
    }
    let io_after = (proc_io_read_bytes(), major_faults());
    let (warm_n, warm_t) = phases[0];
    let (n, t) = phases[1];
    let mut sorted = latencies;
    sorted.sort_unstable();
    let pct = |p: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let per_request = |before: Option<u64>, after: Option<u64>| {
        Some(after?.saturating_sub(before?) as f64 / n.max(1) as f64)
    };
    let result = CellResult {
        rps: n as f64 / t.as_secs_f64(),
        requests: n,
        secs: t.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        hits_per_request: hits.load(Ordering::SeqCst) as f64 / n.max(1) as f64,
        plan: match plan.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(PlanKind::Indexed) => "indexed".into(),
            Some(k) => format!("{k:?}").to_lowercase(),
            None => "unknown".into(),
        },
        warmup_secs: warm_t.as_secs_f64(),
        warmup_requests: warm_n,
        warmup_end,
        read_bytes_per_request: per_request(io_before.0, io_after.0),
        major_faults_per_request: per_request(io_before.1, io_after.1),
        own_cgroup,
        cgroup_usage_after_warmup: usage_after_warmup,
        cgroup_usage_after_measure: usage(),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

// ---------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------

/// One row of the table: a hot set on both segments.
#[derive(Debug, Clone, Serialize)]
pub struct HotSetRow {
    /// Percent of the tenants requests go to.
    pub hot_percent: f64,
    /// Tenants in the hot set.
    pub hot_tenants: usize,
    /// Mean points of a hot tenant.
    pub tenant_points: f64,
    /// Vector bytes of the hot tenants.
    pub hot_vector_bytes: u64,
    /// The segment ordered by id.
    pub not_defragmented: Cell,
    /// The segment ordered by tenant.
    pub defragmented: Cell,
    /// RPS defragmented / RPS not defragmented.
    pub ratio: f64,
}

/// One measurement with what its cgroup recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// What the worker measured.
    #[serde(flatten)]
    pub result: CellResult,
    /// The cgroup's figures (`None` without a cgroup).
    pub cgroup: Option<CgroupStats>,
}

/// Parameters of a run, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Points.
    pub points: usize,
    /// Dimension.
    pub dim: usize,
    /// Tenants.
    pub tenants: usize,
    /// Distance.
    pub distance: &'static str,
    /// Bytes of raw vector data (`matrix.dat` payload).
    pub vector_bytes: u64,
    /// Neighbours per request.
    pub top: usize,
    /// `raw` or `bq1`.
    pub codes: Codes,
    /// Rescoring factor with codes.
    pub oversampling: f32,
    /// Searching threads.
    pub threads: usize,
    /// The memory limit asked for, bytes (`None`: none).
    pub memory_limit_bytes: Option<u64>,
    /// How it was applied: `cgroup_v1`, `cgroup_v2`, `evict_only`, `none`.
    pub memory_limit_mode: &'static str,
    /// The same in words.
    pub memory_limit_description: String,
    /// Seconds measured per cell.
    pub measure_secs: f64,
    /// Warm-up bounds.
    pub warmup_min_secs: f64,
    /// Warm-up bounds.
    pub warmup_max_secs: f64,
    /// Seed.
    pub seed: u64,
}

/// Everything `vecseg tenants` writes to `report.json`.
#[derive(Debug, Serialize)]
pub struct TenantsReport {
    /// The run's parameters.
    pub parameters: Parameters,
    /// The machine.
    pub machine: MachineInfo,
    /// Both builds.
    pub builds: Vec<BuildReport>,
    /// Locality of both segments.
    pub locality: Vec<LocalityReport>,
    /// One row per hot set.
    pub rows: Vec<HotSetRow>,
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

/// The aligned table `vecseg tenants` prints.
pub fn table(rows: &[HotSetRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:>7}  {:>11}  {:>14}  {:>12}  {:>7}  {:>14}  {:>12}",
        "hot set",
        "tenants",
        "tenant size",
        "RPS not defrag",
        "RPS defrag",
        "ratio",
        "MB read/req nd",
        "MB read/req d"
    );
    for r in rows {
        let mb = |c: &Cell| {
            c.result
                .read_bytes_per_request
                .map_or_else(|| "n/a".to_string(), |b| format!("{:.2}", b / 1e6))
        };
        let _ = writeln!(
            out,
            "{:>7}%  {:>7}  {:>11.0}  {:>14.1}  {:>12.1}  {:>6.1}x  {:>14}  {:>12}",
            r.hot_percent,
            r.hot_tenants,
            r.tenant_points,
            r.not_defragmented.result.rps,
            r.defragmented.result.rps,
            r.ratio,
            mb(&r.not_defragmented),
            mb(&r.defragmented)
        );
    }
    out
}

/// Per measurement: warm-up and what the cgroup recorded.
fn evidence(rows: &[HotSetRow]) -> String {
    let mut out = String::new();
    for r in rows {
        for (layout, c) in [
            (Layout::NotDefragmented, &r.not_defragmented),
            (Layout::Defragmented, &r.defragmented),
        ] {
            let res = &c.result;
            let _ = write!(
                out,
                "  hot {:>5}% {:<17} {:>6} req in {:>5.1} s (p50 {:.2} ms), warm-up {:>5.1} s / {} req ({})",
                r.hot_percent,
                layout.name(),
                res.requests,
                res.secs,
                res.p50_ms,
                res.warmup_secs,
                res.warmup_requests,
                match res.warmup_end {
                    WarmupEnd::CacheSteady => "cache steady",
                    WarmupEnd::RpsSteady => "rps steady",
                    WarmupEnd::TimeCap => "time cap",
                }
            );
            if let Some(s) = &c.cgroup {
                let _ = write!(
                    out,
                    ", cgroup peak {} of {}, failcnt {}",
                    s.max_usage_bytes
                        .map_or_else(|| "n/a".into(), |b| human(b.into())),
                    human(s.limit_bytes.into()),
                    s.failcnt.map_or_else(|| "n/a".into(), |f| f.to_string())
                );
            }
            out.push('\n');
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Write `report.json` and `report.html` into `dir`.
fn write_report(dir: &Path, report: &TenantsReport) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(dir.join("report.html"), html(report))?;
    Ok(())
}

/// A self-contained page: parameters, builds, locality, the table and a
/// bar chart of requests per second (log scale).
fn html(r: &TenantsReport) -> String {
    let p = &r.parameters;
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vecseg tenants</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}\
         td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}\
         td:first-child,th:first-child{text-align:left}</style></head><body>\
         <h1>vecseg tenants: defragmented vs not</h1>",
    );
    let _ = write!(
        out,
        "<p>{} points × {} f32 ({:.1} MB of vectors), {} tenants, top-{}, {}, {} thread(s), seed {}. \
         Machine: {} cores, {:.1} GiB, kernel {}.</p><p>{}</p>",
        p.points,
        p.dim,
        p.vector_bytes as f64 / 1e6,
        p.tenants,
        p.top,
        escape(&p.codes.describe(p.oversampling)),
        p.threads,
        p.seed,
        r.machine.cores,
        r.machine.memory_bytes as f64 / (1u64 << 30) as f64,
        escape(&r.machine.kernel),
        escape(&p.memory_limit_description)
    );
    out.push_str("<table><tr><th>segment</th><th>build s</th><th>build MB/s</th><th>disk MB</th>\
                  <th>median pages/min</th><th>max pages/min</th><th>pages</th><th>min pages</th></tr>");
    for (b, l) in r.builds.iter().zip(&r.locality) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            b.layout.name(),
            b.build_secs,
            b.build_mb_per_sec,
            b.disk_bytes as f64 / 1e6,
            l.median_ratio,
            l.max_ratio,
            l.pages,
            l.min_pages
        );
    }
    out.push_str(
        "</table><table><tr><th>hot set</th><th>tenants</th><th>tenant size</th>\
                  <th>RPS not defragmented</th><th>RPS defragmented</th><th>ratio</th></tr>",
    );
    for row in &r.rows {
        let _ = write!(
            out,
            "<tr><td>{}%</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}x</td></tr>",
            row.hot_percent,
            row.hot_tenants,
            row.tenant_points,
            row.not_defragmented.result.rps,
            row.defragmented.result.rps,
            row.ratio
        );
    }
    out.push_str("</table>");
    out.push_str(&rps_chart(&r.rows));
    out.push_str("</body></html>\n");
    out
}

/// Grouped bars per hot set, requests per second on a log scale.
fn rps_chart(rows: &[HotSetRow]) -> String {
    let (w, row_h, label_w) = (640.0, 44.0, 90.0);
    let h = 50.0 + row_h * rows.len() as f64;
    let values = rows
        .iter()
        .flat_map(|r| [r.not_defragmented.result.rps, r.defragmented.result.rps]);
    let max = values.clone().fold(1.0f64, f64::max);
    let min = values.fold(max, f64::min).clamp(0.1, 1.0);
    let scale = |v: f64| {
        let span = (max / min).log10().max(1e-9);
        (w - label_w - 80.0) * ((v.max(min) / min).log10() / span).max(0.02)
    };
    let mut svg = format!(
        "<svg id=\"chart-rps\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
         <text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"bold\">requests per second (log scale; \
         grey: not defragmented, blue: defragmented)</text>"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">hot {}%</text>",
            y + 22.0,
            r.hot_percent
        );
        for (j, (v, color)) in [
            (r.not_defragmented.result.rps, "#999"),
            (r.defragmented.result.rps, "#4878d0"),
        ]
        .into_iter()
        .enumerate()
        {
            let by = y + 20.0 * j as f64;
            let len = scale(v);
            let _ = write!(
                svg,
                "<rect x=\"{label_w}\" y=\"{by}\" width=\"{len:.1}\" height=\"16\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v:.1}</text>",
                label_w + len + 4.0,
                by + 12.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
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
