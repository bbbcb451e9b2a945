//! The `collection` configuration: the same data loaded through a
//! [`Collection`] (write-ahead log synced per batch, one appendable chunked
//! segment), so the table shows what durability costs next to `chunked`,
//! which holds the same storages without the log.
//!
//! It is not a `Segment<V, P, I>` type, so it has its own load path here;
//! the query measurements are shared ([`measure_queries`]). A collection
//! does not expose one storage to scan or one id map to time, so
//! `scan_gb_per_sec`, `id_lookup_ns` and the cold-read columns are `None`.

use std::path::Path;
use std::time::Instant;

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vecseg_traits::{Filter, PointId, Record, Result, ScoredPoint};

use super::dataset::Dataset;
use super::measure::{
    measure_queries, resident_bytes, tenant_index, tenant_searches, ConfigReport, QueryTarget,
    Workload,
};
use crate::collection::{Collection, CollectionOptions, PointData};

/// Name of the configuration.
pub const NAME: &str = "collection";
/// Its description in the reports.
pub const DESCRIPTION: &str =
    "Collection: WAL (fsync per batch of 1,000) + chunked appendable segment";
/// Points per `upsert_points` call while loading.
pub const BATCH: usize = 1_000;

impl QueryTarget for Collection {
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

/// Load `data` into a new collection in `dir` in batches of [`BATCH`]
/// (the WAL's default durability: `fdatasync` per batch), flush, reopen,
/// and run the query measurements.
pub fn measure(
    dir: &Path,
    data: &Dataset,
    truth: &[Vec<PointId>],
    work: Workload,
    progress: &ProgressBar,
) -> Result<ConfigReport> {
    let mut r = ConfigReport {
        name: NAME.to_string(),
        description: DESCRIPTION.to_string(),
        ..Default::default()
    };
    let rss_before = resident_bytes();
    progress.set_message(format!("{NAME}: load"));
    progress.set_length(data.len() as u64);
    let t = Instant::now();
    let mut c = Collection::create(dir, CollectionOptions::new(data.dim, data.distance))?;
    for start in (0..data.len()).step_by(BATCH) {
        let end = (start + BATCH).min(data.len());
        let batch = (start..end)
            .map(|i| PointData {
                id: data.id(i),
                vector: data.vector(i).to_vec(),
                payload: data.payloads[i].clone(),
            })
            .collect();
        c.upsert_points(batch)?;
        progress.set_position(end as u64);
    }
    let load = t.elapsed().as_secs_f64();
    r.load_points_per_sec = data.len() as f64 / load;
    r.load_mb_per_sec = (data.vectors.len() * 4) as f64 / 1e6 / load;

    progress.set_message(format!("{NAME}: flush + reopen"));
    let t = Instant::now();
    c.flush()?;
    r.flush_ms = t.elapsed().as_secs_f64() * 1e3;
    r.disk_bytes = vecseg_traits::fsutil::dir_size(dir);
    drop(c);
    let t = Instant::now();
    let mut c = Collection::open(dir)?;
    r.open_ms = Some(t.elapsed().as_secs_f64() * 1e3);

    let mut rng = StdRng::seed_from_u64(work.seed);
    measure_queries(&mut r, &c, data, truth, work, &mut rng, progress)?;
    progress.set_message(format!("{NAME}: tenant index"));
    c.create_field_index(tenant_index())?;
    let (qps, p50) = tenant_searches(&c, data, work)?;
    r.indexed_filtered_search_qps = Some(qps);
    r.indexed_filtered_p50_ms = Some(p50);
    // After the searches touched every vector, as the segment
    // configurations measure after their scan.
    r.resident_mb = resident_bytes().saturating_sub(rss_before) as f64 / 1e6;
    Ok(r)
}
