//! The results: one [`HotSetRow`] per hot set, the table `vecseg tenants`
//! prints, and `report.json` / `report.html`.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::cgroup::CgroupStats;
use super::data::{BuildReport, Layout, LocalityReport};
use super::worker::{CellResult, WarmupEnd};
use super::{human, Codes};
use crate::cli::compare::report::MachineInfo;

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
pub(super) fn evidence(rows: &[HotSetRow]) -> String {
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

/// `s` with `&`, `<` and `>` escaped for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Write `report.json` and `report.html` into `dir`.
pub(super) fn write_report(dir: &Path, report: &TenantsReport) -> Result<(), Box<dyn Error>> {
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
