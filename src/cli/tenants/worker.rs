//! The worker: the process (`--worker-job`) that opens one segment,
//! warms the page cache up for a hot set, measures tenant-filtered
//! searches and prints a [`CellResult`] as one JSON line.

use std::error::Error;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use vecseg_quantized::Binary1;
use vecseg_traits::{Condition, Filter, IdMapperRead, PayloadStorageRead, VectorStorageRead};

use super::cgroup::{read_key, read_u64, CgroupVersion};
use super::data::vector_options;
use super::{Codes, TENANT_KEY};
use crate::kinds;
use crate::{PlanKind, ScanOptions, Segment};

/// Requests of a warm-up window and of the measurement, at least.
const MIN_WINDOW_REQUESTS: u64 = 3;
const MIN_MEASURED_REQUESTS: u64 = 5;
/// The measurement stops after this many times `--measure-secs` even if
/// it has fewer than [`MIN_MEASURED_REQUESTS`] requests.
const MEASURE_CAP_FACTOR: f64 = 4.0;

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
pub(super) fn run_worker(job_json: &str) -> Result<(), Box<dyn Error>> {
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
