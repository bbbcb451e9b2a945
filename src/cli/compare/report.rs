//! Output of `vecseg compare`: the aligned table on stdout, `report.json`
//! and a self-contained `report.html` with one SVG bar chart per metric.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use vecseg_traits::{IoResultExt, Result, StorageError};

use super::dataset::DatasetInfo;
use super::measure::ConfigReport;

/// The machine the comparison ran on.
#[derive(Debug, Serialize)]
pub struct MachineInfo {
    /// Logical CPUs available.
    pub cores: usize,
    /// Total memory in bytes (from `/proc/meminfo`).
    pub memory_bytes: u64,
    /// Kernel release (from `/proc/sys/kernel/osrelease`).
    pub kernel: String,
}

impl MachineInfo {
    /// Read the current machine's description.
    pub fn current() -> Self {
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        MachineInfo {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

/// The whole report as written to `report.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was measured on.
    pub dataset: DatasetInfo,
    /// Where it ran.
    pub machine: MachineInfo,
    /// Neighbours per query.
    pub top_k: usize,
    /// One entry per configuration, in run order.
    pub configs: Vec<ConfigReport>,
}

/// A table column: header (with unit) and how to format a report's value.
struct Column {
    header: &'static str,
    key: &'static str,
    /// Whether a higher value is better (for the chart captions).
    higher_is_better: bool,
    value: fn(&ConfigReport) -> Option<f64>,
    decimals: usize,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "load pts/s",
        key: "load_points_per_sec",
        higher_is_better: true,
        value: |r| Some(r.load_points_per_sec),
        decimals: 0,
    },
    Column {
        header: "flush ms",
        key: "flush_ms",
        higher_is_better: false,
        value: |r| Some(r.flush_ms),
        decimals: 1,
    },
    Column {
        header: "open ms",
        key: "open_ms",
        higher_is_better: false,
        value: |r| r.open_ms,
        decimals: 1,
    },
    Column {
        header: "disk MB",
        key: "disk_bytes",
        higher_is_better: false,
        value: |r| Some(r.disk_bytes as f64 / 1e6),
        decimals: 1,
    },
    Column {
        header: "RSS MB",
        key: "resident_mb",
        higher_is_better: false,
        value: |r| Some(r.resident_mb),
        decimals: 1,
    },
    Column {
        header: "codes MB",
        key: "code_bytes",
        higher_is_better: false,
        value: |r| r.code_bytes.map(|b| b as f64 / 1e6),
        decimals: 2,
    },
    Column {
        header: "get µs",
        key: "random_get_us",
        higher_is_better: false,
        value: |r| Some(r.random_get_us),
        decimals: 2,
    },
    Column {
        header: "scan GB/s",
        key: "scan_gb_per_sec",
        higher_is_better: true,
        value: |r| r.scan_gb_per_sec,
        decimals: 2,
    },
    Column {
        header: "search QPS",
        key: "search_qps",
        higher_is_better: true,
        value: |r| Some(r.search_qps),
        decimals: 1,
    },
    Column {
        header: "p50 ms",
        key: "search_p50_ms",
        higher_is_better: false,
        value: |r| Some(r.search_p50_ms),
        decimals: 2,
    },
    Column {
        header: "p99 ms",
        key: "search_p99_ms",
        higher_is_better: false,
        value: |r| Some(r.search_p99_ms),
        decimals: 2,
    },
    Column {
        header: "tenant QPS",
        key: "filtered_search_qps",
        higher_is_better: true,
        value: |r| Some(r.filtered_search_qps),
        decimals: 1,
    },
    Column {
        header: "tenant idx QPS",
        key: "indexed_filtered_search_qps",
        higher_is_better: true,
        value: |r| r.indexed_filtered_search_qps,
        decimals: 1,
    },
    Column {
        header: "tenant idx p50 ms",
        key: "indexed_filtered_p50_ms",
        higher_is_better: false,
        value: |r| r.indexed_filtered_p50_ms,
        decimals: 3,
    },
    Column {
        header: "tenant pages/min",
        key: "tenant_pages_ratio",
        higher_is_better: false,
        value: |r| r.tenant_pages_ratio,
        decimals: 2,
    },
    Column {
        header: "index KiB",
        key: "index_bytes",
        higher_is_better: false,
        value: |r| r.index_bytes.map(|b| b as f64 / 1024.0),
        decimals: 0,
    },
    Column {
        header: "posting B/pair",
        key: "posting_bytes_per_pair",
        higher_is_better: false,
        value: |r| r.posting_bytes_per_pair,
        decimals: 2,
    },
    Column {
        header: "id ns",
        key: "id_lookup_ns",
        higher_is_better: false,
        value: |r| r.id_lookup_ns,
        decimals: 1,
    },
    Column {
        header: "cold get µs",
        key: "cold_random_get_us",
        higher_is_better: false,
        value: |r| r.cold_random_get_us,
        decimals: 1,
    },
    Column {
        header: "cold batch µs",
        key: "cold_batch_get_us",
        higher_is_better: false,
        value: |r| r.cold_batch_get_us,
        decimals: 1,
    },
    Column {
        header: "recall",
        key: "recall_at_k",
        higher_is_better: true,
        value: |r| Some(r.recall_at_k),
        decimals: 3,
    },
];

fn cell(c: &Column, r: &ConfigReport) -> String {
    match (c.value)(r) {
        Some(v) => format!("{v:.*}", c.decimals),
        None => "n/a".into(),
    }
}

/// The aligned text table, one row per configuration.
pub fn table(configs: &[ConfigReport]) -> String {
    let mut rows: Vec<Vec<String>> = vec![std::iter::once("config".to_string())
        .chain(COLUMNS.iter().map(|c| c.header.to_string()))
        .collect()];
    for r in configs {
        rows.push(
            std::iter::once(r.name.clone())
                .chain(COLUMNS.iter().map(|c| cell(c, r)))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            let pad = widths[i] - v.chars().count();
            if i == 0 {
                let _ = write!(out, "{v}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{v}", " ".repeat(pad));
            }
        }
        out.push('\n');
        if n == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

/// One recall–QPS curve: a configuration's sweep of one knob
/// (oversampling of codes, or a graph's `ef`), each point (knob, recall, QPS).
struct Curve<'a> {
    name: &'a str,
    points: Vec<(String, f64, f64)>,
}

/// The sweeps of every configuration that has one.
fn curves(configs: &[ConfigReport]) -> Vec<Curve<'_>> {
    let mut out = Vec::new();
    for r in configs {
        if !r.oversampling.is_empty() {
            out.push(Curve {
                name: &r.name,
                points: r
                    .oversampling
                    .iter()
                    .map(|p| (format!("{}x", p.oversampling), p.recall_at_k, p.qps))
                    .collect(),
            });
        }
        if !r.ef_sweep.is_empty() {
            out.push(Curve {
                name: &r.name,
                points: r
                    .ef_sweep
                    .iter()
                    .map(|p| (format!("ef {}", p.ef), p.recall_at_k, p.qps))
                    .collect(),
            });
        }
    }
    out
}

/// Recall and QPS at each point of every sweep: the oversampling factors
/// of configurations that score through codes, the `ef` values of those
/// with an HNSW index (empty when none has a sweep).
pub fn sweep_table(configs: &[ConfigReport]) -> String {
    let mut out = String::new();
    for c in curves(configs) {
        if out.is_empty() {
            out.push_str("config          setting  recall@k       QPS\n");
        }
        for (knob, recall, qps) in &c.points {
            let _ = writeln!(
                out,
                "{:<15} {:>7}  {:>8.3}  {:>8.1}",
                c.name, knob, recall, qps
            );
        }
    }
    out
}

/// Recall against QPS, one line per sweep (a point per oversampling
/// factor or `ef`), as an SVG.
fn recall_qps_chart(configs: &[ConfigReport]) -> String {
    let with = curves(configs);
    if with.is_empty() {
        return String::new();
    }
    let (w, h, m) = (480.0, 300.0, 40.0);
    let max_qps = with
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.2))
        .fold(1.0f64, f64::max);
    let x = |qps: f64| m + (w - 2.0 * m) * qps / max_qps;
    let y = |recall: f64| h - m - (h - 2.0 * m) * recall.clamp(0.0, 1.0);
    let mut out = format!(
        "<div class=\"chart\"><h3>recall@k vs QPS (codes: oversampling 1, 2, 4, 8 with rescoring; HNSW: ef 16 to 256)</h3>\
         <svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{m}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"{r}\" y=\"{t}\" text-anchor=\"end\" font-size=\"11\">QPS (max {max_qps:.0})</text>\
         <text x=\"4\" y=\"{m}\" font-size=\"11\">recall 1.0</text>",
        b = h - m,
        r = w - m,
        t = h - m + 16.0,
    );
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    ];
    for (i, c) in with.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = c
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.2), y(p.1)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" points=\"{}\"/>",
            points.join(" ")
        );
        for (knob, recall, qps) in &c.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {}, recall {:.3}, {:.0} QPS</title></circle>",
                x(*qps),
                y(*recall),
                escape(c.name),
                knob,
                recall,
                qps
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            w - m - 90.0,
            m + 14.0 * i as f64,
            escape(c.name)
        );
    }
    out.push_str("</svg></div>");
    out
}

/// Write `report.json` and `report.html` into `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| StorageError::Codec(Box::new(e)))?;
    let path = dir.join("report.json");
    std::fs::write(&path, json).at(&path)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html(report)).at(&path)?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page: the table plus one SVG bar chart per metric.
fn html(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vecseg compare</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}\
         td:first-child,th:first-child{text-align:left}.chart{display:inline-block;margin:1em}</style>\
         </head><body><h1>vecseg compare</h1>",
    );
    let d = &report.dataset;
    let _ = write!(
        out,
        "<p>{} points × {} dims, {}, {} tenants, {} queries, top-{}; source: {}. Machine: {} cores, {:.1} GiB, kernel {}.</p>",
        d.points, d.dim, d.distance, d.tenants, d.queries, report.top_k, escape(&d.source),
        report.machine.cores, report.machine.memory_bytes as f64 / (1u64 << 30) as f64, escape(&report.machine.kernel)
    );
    out.push_str("<table><tr><th>config</th>");
    for c in COLUMNS {
        let _ = write!(out, "<th>{}</th>", escape(c.header));
    }
    out.push_str("</tr>");
    for r in &report.configs {
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td>",
            escape(&r.description),
            escape(&r.name)
        );
        for c in COLUMNS {
            let _ = write!(out, "<td>{}</td>", cell(c, r));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out.push_str(&memory_speed_scatter(&report.configs));
    let sweep = sweep_table(&report.configs);
    if !sweep.is_empty() {
        let _ = write!(out, "<pre>{}</pre>", escape(&sweep));
        out.push_str(&recall_qps_chart(&report.configs));
    }
    for c in COLUMNS {
        out.push_str(&bar_chart(c, &report.configs));
    }
    out.push_str("</body></html>\n");
    out
}

/// The trade-off a backend is chosen for: one dot per configuration,
/// resident MB (x, lower is better) against search QPS (y, higher is
/// better), axes from zero.
fn memory_speed_scatter(configs: &[ConfigReport]) -> String {
    let (w, h, left, bottom, top, right) = (560.0, 360.0, 60.0, 40.0, 30.0, 120.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let max_x = configs
        .iter()
        .map(|r| r.resident_mb)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let max_y = configs
        .iter()
        .map(|r| r.search_qps)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut svg = format!(
        "<div class=\"chart\"><svg id=\"chart-memory-speed\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
         <text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"bold\">memory vs speed (up and to the left is better)</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#444\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">resident MB (0 – {max_x:.0})</text>\
         <text x=\"14\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">search QPS (0 – {max_y:.0})</text>",
        top + ph,
        left + pw,
        top + ph,
        top + ph,
        left + pw / 2.0,
        h - 8.0,
        top + ph / 2.0,
        top + ph / 2.0,
    );
    for r in configs {
        let x = left + pw * (r.resident_mb / max_x).max(0.0);
        let y = top + ph * (1.0 - (r.search_qps / max_y).max(0.0));
        let _ = write!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"#4878d0\"><title>{}: {:.1} MB, {:.1} QPS</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            escape(&r.name),
            r.resident_mb,
            r.search_qps,
            x + 8.0,
            y + 4.0,
            escape(&r.name)
        );
    }
    svg.push_str("</svg></div>");
    svg
}

fn bar_chart(c: &Column, configs: &[ConfigReport]) -> String {
    let (w, bar_h, label_w) = (460.0, 22.0, 120.0);
    let h = 40.0 + bar_h * configs.len() as f64;
    let max = configs
        .iter()
        .filter_map(|r| (c.value)(r))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = format!(
        "<div class=\"chart\"><svg id=\"chart-{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
         <text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"bold\">{} ({})</text>",
        c.key,
        escape(c.header),
        if c.higher_is_better { "higher is better" } else { "lower is better" }
    );
    for (i, r) in configs.iter().enumerate() {
        let y = 28.0 + bar_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 14.0,
            escape(&r.name)
        );
        match (c.value)(r) {
            Some(v) => {
                let len = (w - label_w - 70.0) * (v / max).max(0.0);
                let _ = write!(
                    svg,
                    "<rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"#4878d0\"/>\
                     <text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
                    bar_h - 6.0,
                    label_w + len + 4.0,
                    y + 14.0,
                    cell(c, r)
                );
            }
            None => {
                let _ = write!(
                    svg,
                    "<text x=\"{label_w}\" y=\"{}\" font-size=\"12\" fill=\"#888\">n/a</text>",
                    y + 14.0
                );
            }
        }
    }
    svg.push_str("</svg></div>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_places_one_dot_per_configuration() {
        let configs = [
            ConfigReport {
                name: "small-fast".into(),
                resident_mb: 10.0,
                search_qps: 1000.0,
                ..Default::default()
            },
            ConfigReport {
                name: "big-slow".into(),
                resident_mb: 100.0,
                search_qps: 10.0,
                ..Default::default()
            },
        ];
        let svg = memory_speed_scatter(&configs);
        assert_eq!(svg.matches("<circle").count(), 2);
        let cx = |name: &str| -> (f64, f64) {
            let at = svg.find(&format!("<title>{name}:")).unwrap();
            let circle = &svg[svg[..at].rfind("<circle").unwrap()..at];
            let attr = |a: &str| {
                let s = &circle[circle.find(&format!("{a}=\"")).unwrap() + a.len() + 2..];
                s[..s.find('"').unwrap()].parse::<f64>().unwrap()
            };
            (attr("cx"), attr("cy"))
        };
        let (small, big) = (cx("small-fast"), cx("big-slow"));
        assert!(small.0 < big.0, "less memory is further left");
        assert!(small.1 < big.1, "more QPS is higher up (smaller y)");
    }

    #[test]
    fn table_aligns_columns_and_marks_missing_values() {
        let a = ConfigReport {
            name: "memory".into(),
            search_qps: 1234.5,
            ..Default::default()
        };
        let b = ConfigReport {
            name: "mmap".into(),
            open_ms: Some(3.25),
            ..Default::default()
        };
        let t = table(&[a, b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("config") && lines[0].contains("search QPS"));
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{t}");
        assert!(lines[2].contains("n/a") && lines[2].contains("1234.5"));
        assert!(lines[3].contains("3.2"));
    }
}
