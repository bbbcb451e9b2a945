//! Data and builds: the generated points, the two builds of the same
//! segment (ordered by id and by tenant), their locality, and evicting
//! their files from the page cache.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vecseg_mmap::MmapVectorOptions;
use vecseg_quantized::{Binary1, BinaryConfig};
use vecseg_traits::{Distance, FieldSchema, FieldType, Payload, PointId, Record};

use super::{Codes, TenantsArgs, TENANT_KEY};
use crate::collection::optimizer::{build_segment, BuildOptions};
use crate::kinds;
use crate::segment::{TenantLocality, TenantTable};

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
    /// Both, in the order they are built.
    pub(super) const BOTH: [Layout; 2] = [Layout::NotDefragmented, Layout::Defragmented];

    /// The name in tables and messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Layout::NotDefragmented => "not defragmented",
            Layout::Defragmented => "defragmented",
        }
    }

    /// The segment's directory name in the scratch directory.
    pub(super) fn dir_name(self) -> &'static str {
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
pub(super) fn vector_options() -> MmapVectorOptions {
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
pub(super) fn build_layout(
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
pub(super) fn evict_tree(dir: &Path) -> Result<(), Box<dyn Error>> {
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
