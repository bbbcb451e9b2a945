//! Measurements, generic over a [`Config`]: the same code times every
//! configuration. Each configuration runs in its own worker process so
//! resident memory and the page cache of one do not leak into the next.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use vecseg_traits::{
    Condition, FieldSchema, FieldType, Filter, IdMapper, IdMapperRead, PayloadStorage,
    PayloadStorageRead, PointId, PointOffset, Random, Record, Result, ScoredPoint, Sequential,
    VectorStorage, VectorStorageRead,
};

use super::configs::Config;
use super::dataset::Dataset;
use crate::{ScanOptions, Segment};

/// Figures measured for one configuration. Keys are stable (snake_case) and
/// carry their unit; `None` means "not applicable" (e.g. open time of an
/// in-memory segment).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigReport {
    /// Configuration name.
    pub name: String,
    /// Storage types.
    pub description: String,
    /// Points per second while loading (upserts or build).
    pub load_points_per_sec: f64,
    /// Vector megabytes per second while loading.
    pub load_mb_per_sec: f64,
    /// Time of the first flush after loading.
    pub flush_ms: f64,
    /// Time to open the segment from disk.
    pub open_ms: Option<f64>,
    /// Bytes on disk after flush.
    pub disk_bytes: u64,
    /// Bytes of quantized codes search reads (`None` without codes).
    #[serde(default)]
    pub code_bytes: Option<u64>,
    /// Growth of the worker's resident set from before loading to after the
    /// reopened segment was scanned once (mapped pages count).
    pub resident_mb: f64,
    /// Mean latency of a random whole-point `get` (vector + payload), warm.
    pub random_get_us: f64,
    /// Scan of every live vector through `scan_live` (the path search
    /// uses), GB of vector data per second (`None` for a collection).
    pub scan_gb_per_sec: Option<f64>,
    /// Exact search queries per second (one query at a time, rayon inside).
    pub search_qps: f64,
    /// Median search latency.
    pub search_p50_ms: f64,
    /// 99th percentile search latency.
    pub search_p99_ms: f64,
    /// Tenant-filtered search queries per second, no payload index.
    pub filtered_search_qps: f64,
    /// Tenant-filtered search queries per second with a keyword index on
    /// the tenant key.
    #[serde(default)]
    pub indexed_filtered_search_qps: Option<f64>,
    /// Median latency of the indexed tenant-filtered search.
    #[serde(default)]
    pub indexed_filtered_p50_ms: Option<f64>,
    /// Bytes the tenant index holds in RAM (heap) and in files.
    #[serde(default)]
    pub index_bytes: Option<u64>,
    /// Bytes of the tenant index's posting lists per (point, value) pair.
    #[serde(default)]
    pub posting_bytes_per_pair: Option<f64>,
    /// Mean external → internal id lookup latency (`None` for a collection).
    pub id_lookup_ns: Option<f64>,
    /// Mean random vector read latency right after the storage dropped its
    /// pages from the page cache (`None` when the storage is not file-backed).
    pub cold_random_get_us: Option<f64>,
    /// Mean time per vector of one `get_batch::<Random>` of the same
    /// vectors after dropping the pages again (`None` when not file-backed).
    pub cold_batch_get_us: Option<f64>,
    /// Fraction of the exact top-k found (1.0 for exact configurations).
    pub recall_at_k: f64,
    /// Locality of the tenant key in the vector file (immutable mmap
    /// configurations): the median over tenants of the distinct 4 KiB
    /// pages their vectors occupy / the fewest they could
    /// ([`Segment::tenant_locality`]); 1.0 is a segment defragmented by
    /// tenant. `None` for the other configurations.
    #[serde(default)]
    pub tenant_pages_ratio: Option<f64>,
    /// For storages that score through codes: recall and QPS of search
    /// with rescoring at several oversampling factors (empty otherwise).
    #[serde(default)]
    pub oversampling: Vec<OversamplingPoint>,
    /// For configurations with an HNSW index: recall and QPS of search at
    /// several beam widths `ef` (empty otherwise).
    #[serde(default)]
    pub ef_sweep: Vec<EfPoint>,
}

/// Graph search at one beam width.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EfPoint {
    /// Beam width.
    pub ef: usize,
    /// Fraction of the exact top-k found.
    pub recall_at_k: f64,
    /// Queries per second.
    pub qps: f64,
}

/// Beam widths of the HNSW sweep.
pub const EF_SWEEP: [usize; 5] = [16, 32, 64, 128, 256];

/// Search with rescoring at one oversampling factor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OversamplingPoint {
    /// Candidates kept per result before rescoring.
    pub oversampling: f32,
    /// Fraction of the exact top-k found.
    pub recall_at_k: f64,
    /// Queries per second.
    pub qps: f64,
}

/// Oversampling factors of the sweep.
pub const OVERSAMPLING: [f32; 4] = [1.0, 2.0, 4.0, 8.0];

/// Workload knobs shared by every configuration.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Neighbours per query.
    pub top: usize,
    /// Random gets to time.
    pub gets: usize,
    /// Seed for the random choices.
    pub seed: u64,
}

/// Run the whole workload on configuration `C` in `dir`.
pub fn measure<C: Config>(
    dir: &Path,
    data: &Dataset,
    truth: &[Vec<PointId>],
    work: Workload,
    progress: &ProgressBar,
) -> Result<ConfigReport> {
    let mut r = ConfigReport {
        name: C::NAME.to_string(),
        description: C::DESCRIPTION.to_string(),
        ..Default::default()
    };
    let rss_before = resident_bytes();
    progress.set_message(format!("{}: load", C::NAME));
    let t = Instant::now();
    let mut seg = C::load(dir, data, progress)?;
    let load = t.elapsed().as_secs_f64();
    r.load_points_per_sec = data.len() as f64 / load;
    r.load_mb_per_sec = (data.vectors.len() * 4) as f64 / 1e6 / load;

    progress.set_message(format!("{}: flush + reopen", C::NAME));
    let t = Instant::now();
    seg.flush()?;
    r.flush_ms = ms(t.elapsed());
    r.disk_bytes = vecseg_traits::fsutil::dir_size(dir);
    let t = Instant::now();
    let mut seg = C::reopen(dir, seg)?;
    if C::PERSISTENT {
        r.open_ms = Some(ms(t.elapsed()));
    }
    r.code_bytes = C::code_bytes(&seg);

    progress.set_message(format!("{}: scan", C::NAME));
    let v = seg.vectors();
    let total = v.total_count() as PointOffset;
    let t = Instant::now();
    // The path search takes: the storage walks its live vectors.
    let mut checksum = 0.0f32;
    let mut scanned = 0usize;
    v.scan_live::<Sequential, _>(0..total, |_, x| {
        checksum += x[0];
        scanned += 1;
    })?;
    std::hint::black_box(checksum);
    r.scan_gb_per_sec = Some((scanned * data.dim * 4) as f64 / 1e9 / t.elapsed().as_secs_f64());
    r.resident_mb = resident_bytes().saturating_sub(rss_before) as f64 / 1e6;

    let mut rng = StdRng::seed_from_u64(work.seed);
    measure_queries(&mut r, &seg, data, truth, work, &mut rng, progress)?;

    let approximate = data.query_count() > 0
        && !vecseg_traits::QueryScorer::is_exact(&seg.vectors().scorer(data.query(0))?);
    // Recall and QPS of `options` over every query.
    let sweep = |options: ScanOptions| -> Result<(f64, f64)> {
        let t = Instant::now();
        let mut found = 0usize;
        for (q, expected) in truth.iter().enumerate() {
            let hits = seg.search_with(data.query(q), work.top, None, options)?;
            found += hits.iter().filter(|h| expected.contains(&h.id)).count();
        }
        let expected: usize = truth.iter().map(Vec::len).sum::<usize>().max(1);
        Ok((
            found as f64 / expected as f64,
            data.query_count() as f64 / t.elapsed().as_secs_f64(),
        ))
    };
    // (A graph search keeps `ef` candidates, not `k × oversampling`.)
    if approximate && !C::HNSW {
        progress.set_message(format!("{}: oversampling", C::NAME));
        for oversampling in OVERSAMPLING {
            let options = ScanOptions::default()
                .with_oversampling(oversampling)
                .with_rescore(true);
            let (recall_at_k, qps) = sweep(options)?;
            r.oversampling.push(OversamplingPoint {
                oversampling,
                recall_at_k,
                qps,
            });
        }
    }
    if C::HNSW {
        progress.set_message(format!("{}: ef sweep", C::NAME));
        for ef in EF_SWEEP {
            let (recall_at_k, qps) = sweep(ScanOptions::default().with_ef(ef))?;
            r.ef_sweep.push(EfPoint {
                ef,
                recall_at_k,
                qps,
            });
        }
    }

    progress.set_message(format!("{}: id lookup", C::NAME));
    let lookups: Vec<PointId> = (0..100_000)
        .map(|_| data.id(rng.gen_range(0..data.len())))
        .collect();
    let t = Instant::now();
    for id in &lookups {
        std::hint::black_box(seg.ids().internal(*id)?);
    }
    r.id_lookup_ns = Some(t.elapsed().as_secs_f64() * 1e9 / lookups.len() as f64);

    // Before the cold reads, which leave the storage's pages dropped.
    measure_indexed(&mut r, &mut seg, data, work, progress)?;
    let v = seg.vectors();

    progress.set_message(format!("{}: cold reads", C::NAME));
    let offsets: Vec<PointOffset> = (0..1000).map(|_| rng.gen_range(0..total.max(1))).collect();
    if total > 0 && v.drop_page_cache()? {
        let t = Instant::now();
        for &o in &offsets {
            std::hint::black_box(v.get::<Random>(o)?[0]);
        }
        r.cold_random_get_us = Some(t.elapsed().as_secs_f64() * 1e6 / offsets.len() as f64);
        if v.drop_page_cache()? {
            let t = Instant::now();
            let mut sum = 0.0;
            v.get_batch::<Random>(&offsets, &mut |_, x| sum += x[0])?;
            std::hint::black_box(sum);
            r.cold_batch_get_us = Some(t.elapsed().as_secs_f64() * 1e6 / offsets.len() as f64);
        }
    }
    if C::TENANT_LOCALITY {
        // Last: it reads every payload (never a vector), which must not
        // warm anything a timed measurement reads.
        progress.set_message(format!("{}: tenant locality", C::NAME));
        let rows = seg.tenant_locality(TENANT_KEY)?;
        r.tenant_pages_ratio = Some(crate::cli::tenants::summarize(&rows).median_ratio);
    }
    Ok(r)
}

/// What the query measurements read: a segment or a collection.
pub trait QueryTarget {
    /// The whole point `id` (vector and payload), if present.
    fn get_point(&self, id: PointId) -> Result<Option<Record<f32>>>;
    /// Top-`k` for `query` among points passing `filter`.
    fn search_points(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>>;
}

impl<V, P, I> QueryTarget for Segment<V, P, I>
where
    V: VectorStorageRead<Element = f32>,
    P: PayloadStorageRead,
    I: IdMapperRead,
{
    fn get_point(&self, id: PointId) -> Result<Option<Record<f32>>> {
        self.get(id)
    }

    fn search_points(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        self.search(query, k, filter)
    }
}

/// Warm random gets, search (latency, recall) and tenant-filtered search
/// on `target`, into `r`.
pub fn measure_queries(
    r: &mut ConfigReport,
    target: &impl QueryTarget,
    data: &Dataset,
    truth: &[Vec<PointId>],
    work: Workload,
    rng: &mut StdRng,
    progress: &ProgressBar,
) -> Result<()> {
    progress.set_message(format!("{}: random get", r.name));
    let ids: Vec<PointId> = (0..work.gets)
        .map(|_| data.id(rng.gen_range(0..data.len())))
        .collect();
    let t = Instant::now();
    for id in &ids {
        std::hint::black_box(target.get_point(*id)?);
    }
    r.random_get_us = t.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;

    progress.set_message(format!("{}: search", r.name));
    let mut latencies = Vec::with_capacity(data.query_count());
    let mut found = 0usize;
    let t = Instant::now();
    for (q, expected) in truth.iter().enumerate() {
        let start = Instant::now();
        let hits = target.search_points(data.query(q), work.top, None)?;
        latencies.push(start.elapsed());
        found += hits.iter().filter(|h| expected.contains(&h.id)).count();
    }
    let elapsed = t.elapsed().as_secs_f64();
    r.search_qps = data.query_count() as f64 / elapsed;
    latencies.sort_unstable();
    r.search_p50_ms = ms(percentile(&latencies, 0.50));
    r.search_p99_ms = ms(percentile(&latencies, 0.99));
    let expected: usize = truth.iter().map(Vec::len).sum();
    r.recall_at_k = if expected == 0 {
        1.0
    } else {
        found as f64 / expected as f64
    };

    progress.set_message(format!("{}: filtered search", r.name));
    r.filtered_search_qps = tenant_searches(target, data, work)?.0;
    Ok(())
}

/// One search per query, each filtered to one tenant (round robin):
/// queries per second and median latency.
pub fn tenant_searches(
    target: &impl QueryTarget,
    data: &Dataset,
    work: Workload,
) -> Result<(f64, f64)> {
    let mut latencies = Vec::with_capacity(data.query_count());
    let t = Instant::now();
    for q in 0..data.query_count() {
        let tenant = format!("tenant-{}", q % data.tenants.max(1));
        let filter = Filter::must(Condition::keyword(TENANT_KEY, tenant));
        let start = Instant::now();
        std::hint::black_box(target.search_points(data.query(q), work.top, Some(&filter))?);
        latencies.push(start.elapsed());
    }
    let qps = data.query_count() as f64 / t.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((qps, ms(percentile(&latencies, 0.50))))
}

/// The payload key holding each point's tenant.
pub const TENANT_KEY: &str = "tenant";

/// The tenant key's index schema.
pub fn tenant_index() -> FieldSchema {
    FieldSchema::new(TENANT_KEY, FieldType::Keyword).tenant()
}

/// Index the tenant key of `seg`, then time tenant-filtered search again.
fn measure_indexed<V, P, I>(
    r: &mut ConfigReport,
    seg: &mut Segment<V, P, I>,
    data: &Dataset,
    work: Workload,
    progress: &ProgressBar,
) -> Result<()>
where
    V: VectorStorage<Element = f32>,
    P: PayloadStorage,
    I: IdMapper,
{
    progress.set_message(format!("{}: tenant index", r.name));
    let stats = seg.create_field_index(tenant_index())?;
    r.index_bytes = Some(stats.ram_bytes + stats.disk_bytes);
    r.posting_bytes_per_pair = Some(stats.posting_bytes as f64 / stats.pairs.max(1) as f64);
    progress.set_message(format!("{}: indexed filtered search", r.name));
    let (qps, p50) = tenant_searches(seg, data, work)?;
    r.indexed_filtered_search_qps = Some(qps);
    r.indexed_filtered_p50_ms = Some(p50);
    Ok(())
}

/// Exact top-`k` ids per query by brute force over the raw data, the
/// reference for recall.
pub fn ground_truth(data: &Dataset, k: usize) -> Vec<Vec<PointId>> {
    use rayon::prelude::*;
    use vecseg_traits::VectorElement;
    let prepare = |v: &[f32]| {
        let mut v = v.to_vec();
        // Data was validated on load, so only a zero vector can fail here; it then scores 0.
        let _ = f32::preprocess(data.distance, &mut v);
        v
    };
    let stored: Vec<f32> = (0..data.len())
        .flat_map(|i| prepare(data.vector(i)))
        .collect();
    (0..data.query_count())
        .into_par_iter()
        .map(|q| {
            let query = prepare(data.query(q));
            let mut scored: Vec<(f32, usize)> = stored
                .chunks_exact(data.dim)
                .enumerate()
                .map(|(i, v)| (f32::score(data.distance, &query, v), i))
                .collect();
            let k = k.min(scored.len());
            if k == 0 {
                return Vec::new();
            }
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            scored[..k].iter().map(|(_, i)| data.id(*i)).collect()
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Resident set size of this process (`/proc/self/statm`), 0 if unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
