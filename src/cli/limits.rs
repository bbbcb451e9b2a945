//! Size limits of the `vecseg` subcommands that allocate from their
//! arguments (`compare`, `cold-reads`).
//!
//! Every size is checked here, before anything big is allocated, so a typo
//! such as `--points 1000000000000` is a usage error (exit code 2) instead
//! of an allocation failure or a panic. The fixed limits:
//!
//! | limit               | value           | why |
//! |---------------------|-----------------|-----|
//! | [`MAX_POINTS`]      | 4,294,967,295   | internal offsets are 32-bit |
//! | [`MAX_DIM`]         | 65,536          | far above any embedding model; keeps one vector ≤ 256 KiB |
//! | [`MAX_QUERIES`]     | 1,000,000       | each query is a full exact scan; the queries and their ground truth are held in memory |
//! | [`MAX_BATCH`]       | 16,777,216      | `cold-reads` batch; vectors read with replacement, so it may exceed `--points` |
//! | [`MAX_ROUNDS`]      | 100,000         | `cold-reads` rounds, timed and kept per method |
//! | [`MAX_COALESCE_KIB`]| 1,048,576 (1 GiB) | `cold-reads` `--max-gap-kib` / `--max-request-kib` |
//!
//! Besides, `--top` and `--tenants` may not exceed the number of points,
//! and the memory a run needs ([`compare_memory_bytes`],
//! [`cold_reads_memory_bytes`]) must fit in the [`MemoryBudget`]: the
//! `MemAvailable` figure of `/proc/meminfo`, or [`FALLBACK_BUDGET`] where
//! that cannot be read.

use std::fmt;
use std::path::Path;

use vecseg_traits::PointId;

/// Most points a segment holds: internal offsets are `u32`.
pub const MAX_POINTS: usize = u32::MAX as usize;
/// Largest vector dimension accepted.
pub const MAX_DIM: usize = 65_536;
/// Most queries `compare` runs.
pub const MAX_QUERIES: usize = 1_000_000;
/// Largest `cold-reads` batch.
pub const MAX_BATCH: usize = 1 << 24;
/// Most `cold-reads` rounds.
pub const MAX_ROUNDS: usize = 100_000;
/// Largest `cold-reads` coalescing gap or request, KiB.
pub const MAX_COALESCE_KIB: usize = 1 << 20;
/// Memory budget when `/proc/meminfo` cannot be read: 4 GiB.
pub const FALLBACK_BUDGET: u64 = 4 << 30;

/// Heap bytes of one generated payload (a 4-key JSON object) as held by a
/// `serde_json::Map`, rounded up (measured: about 860 bytes).
const PAYLOAD_BYTES: u128 = 1024;
/// Id map and version bytes per point of the in-memory configuration, rounded up.
const ID_BYTES: u128 = 64;

/// A bad command-line value: printed with a hint to `--help`, exit code 2
/// (like the argument parser's own errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage<T>(message: String) -> Result<T, UsageError> {
    Err(UsageError(message))
}

/// How much memory a run may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from (for messages).
    pub source: &'static str,
}

impl MemoryBudget {
    /// No memory limit (the fixed limits still apply).
    pub const UNLIMITED: MemoryBudget = MemoryBudget {
        bytes: u64::MAX,
        source: "unlimited",
    };

    /// `MemAvailable` of `/proc/meminfo`, else [`FALLBACK_BUDGET`].
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| mem_available(&s))
            .map_or(
                MemoryBudget {
                    bytes: FALLBACK_BUDGET,
                    source: "fallback budget, /proc/meminfo unreadable",
                },
                |bytes| MemoryBudget {
                    bytes,
                    source: "MemAvailable in /proc/meminfo",
                },
            )
    }

    fn check(&self, needed: u128, what: impl FnOnce() -> String) -> Result<(), UsageError> {
        if needed <= u128::from(self.bytes) {
            return Ok(());
        }
        usage(format!(
            "{} needs about {} of memory, more than the {} available ({}); use fewer points or a smaller dimension",
            what(),
            human(needed),
            human(self.bytes.into()),
            self.source
        ))
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn human(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Rows and dimension of a `.fvecs` / `.npy` file, read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileShape {
    /// Vectors in the file.
    pub rows: usize,
    /// Their dimension (0 when the file holds none to tell).
    pub dim: usize,
}

/// Where the vectors come from.
#[derive(Debug, Clone, Copy)]
pub enum VectorSource<'a> {
    /// Generated: `--points` × `--dim`.
    Generated {
        /// `--points`.
        points: usize,
        /// `--dim`.
        dim: usize,
    },
    /// Read from `--data`: at most `points` (`--points`) of the file's rows.
    File {
        /// The `--data` file.
        path: &'a Path,
        /// Its shape.
        shape: FileShape,
        /// `--points`.
        points: usize,
    },
}

impl VectorSource<'_> {
    /// Check the vectors' shape; returns the number of points used, the
    /// dimension, and how to name that number of points in messages.
    fn check(&self) -> Result<(usize, usize, String), UsageError> {
        match *self {
            VectorSource::Generated { points, dim } => {
                if !(1..=MAX_POINTS).contains(&points) {
                    return usage(format!(
                        "--points {points} is out of range: it must be between 1 and {MAX_POINTS} (internal offsets are 32-bit)"
                    ));
                }
                if !(1..=MAX_DIM).contains(&dim) {
                    return usage(format!(
                        "--dim {dim} is out of range: it must be between 1 and {MAX_DIM}"
                    ));
                }
                Ok((points, dim, format!("--points {points}")))
            }
            VectorSource::File {
                path,
                shape,
                points,
            } => {
                let file = path.display();
                if points == 0 {
                    return usage("--points must be at least 1".into());
                }
                if shape.rows == 0 {
                    return usage(format!(
                        "--data {file} holds no vectors; it needs at least 1"
                    ));
                }
                if !(1..=MAX_DIM).contains(&shape.dim) {
                    return usage(format!(
                        "--data {file} has vectors of dimension {}; it must be between 1 and {MAX_DIM}",
                        shape.dim
                    ));
                }
                let used = shape.rows.min(points);
                if used > MAX_POINTS {
                    return usage(format!(
                        "--data {file} holds {} vectors, more than the {MAX_POINTS} a segment holds; pass --points {MAX_POINTS} or less",
                        shape.rows
                    ));
                }
                Ok((
                    used,
                    shape.dim,
                    format!("the {used} points read from {file}"),
                ))
            }
        }
    }
}

/// The sizes of a `vecseg compare` run.
#[derive(Debug, Clone, Copy)]
pub struct CompareSizes<'a> {
    /// The vectors.
    pub source: VectorSource<'a>,
    /// `--tenants`.
    pub tenants: usize,
    /// `--queries`.
    pub queries: usize,
    /// `--top`.
    pub top: usize,
}

/// Check every size of a `vecseg compare` run against the limits of this
/// module and `budget`; the error names the flag (or file) and the limit.
pub fn check_compare(sizes: &CompareSizes<'_>, budget: &MemoryBudget) -> Result<(), UsageError> {
    let (points, dim, points_name) = sizes.source.check()?;
    let CompareSizes {
        tenants,
        queries,
        top,
        ..
    } = *sizes;
    if !(1..=MAX_QUERIES).contains(&queries) {
        return usage(format!(
            "--queries {queries} is out of range: it must be between 1 and {MAX_QUERIES}"
        ));
    }
    if top == 0 {
        return usage("--top must be at least 1".into());
    }
    if top > points {
        return usage(format!(
            "--top {top} exceeds {points_name}: a search cannot return more points than the segment holds"
        ));
    }
    if tenants == 0 {
        return usage("--tenants must be at least 1".into());
    }
    if tenants > points {
        return usage(format!(
            "--tenants {tenants} exceeds {points_name}: every tenant needs a point"
        ));
    }
    budget.check(compare_memory_bytes(points, dim, queries, top), || {
        format!("compare with {points} points × {dim} dimensions, {queries} queries, --top {top}")
    })
}

/// Peak memory of a `vecseg compare` run, estimated generously: the parent
/// and the worker each hold the dataset (vectors and payloads), the worker
/// also a normalised copy of the vectors for the ground truth and the
/// `memory` configuration's segment (vectors, payloads, ids); plus the
/// queries and the ground-truth ids.
/// Saturates instead of overflowing, whatever the arguments.
pub fn compare_memory_bytes(points: usize, dim: usize, queries: usize, top: usize) -> u128 {
    let id = std::mem::size_of::<PointId>();
    sum(&[
        product(&[4, points as u128, dim as u128, 4]),
        product(&[points as u128, 3 * PAYLOAD_BYTES + ID_BYTES]),
        product(&[queries as u128, dim as u128, 4]),
        product(&[queries as u128, top as u128, id as u128]),
    ])
}

fn product(factors: &[u128]) -> u128 {
    factors.iter().fold(1, |a, &b| a.saturating_mul(b))
}

fn sum(terms: &[u128]) -> u128 {
    terms.iter().fold(0, |a, &b| a.saturating_add(b))
}

/// The sizes of a `vecseg cold-reads` run.
#[derive(Debug, Clone, Copy)]
pub struct ColdReadsSizes<'a> {
    /// The vectors.
    pub source: VectorSource<'a>,
    /// `--batch`.
    pub batch: usize,
    /// `--rounds`.
    pub rounds: usize,
    /// `--max-gap-kib`.
    pub max_gap_kib: Option<usize>,
    /// `--max-request-kib`.
    pub max_request_kib: Option<usize>,
}

/// Check every size of a `vecseg cold-reads` run against the limits of
/// this module and `budget`; the error names the flag (or file) and the limit.
pub fn check_cold_reads(
    sizes: &ColdReadsSizes<'_>,
    budget: &MemoryBudget,
) -> Result<(), UsageError> {
    let (points, dim, _) = sizes.source.check()?;
    let ColdReadsSizes {
        batch,
        rounds,
        max_gap_kib,
        max_request_kib,
        ..
    } = *sizes;
    if !(1..=MAX_BATCH).contains(&batch) {
        return usage(format!(
            "--batch {batch} is out of range: it must be between 1 and {MAX_BATCH}"
        ));
    }
    if !(1..=MAX_ROUNDS).contains(&rounds) {
        return usage(format!(
            "--rounds {rounds} is out of range: it must be between 1 and {MAX_ROUNDS}"
        ));
    }
    for (flag, kib) in [
        ("--max-gap-kib", max_gap_kib),
        ("--max-request-kib", max_request_kib),
    ] {
        if let Some(kib) = kib.filter(|&k| k > MAX_COALESCE_KIB) {
            return usage(format!(
                "{flag} {kib} is too large: the limit is {MAX_COALESCE_KIB} (1 GiB)"
            ));
        }
    }
    budget.check(cold_reads_memory_bytes(points, dim, batch), || {
        format!("cold-reads with {points} points × {dim} dimensions, --batch {batch}")
    })
}

/// Peak memory of a `vecseg cold-reads` run: the vectors twice (as read or
/// generated, and in the in-memory storage the file is built from), plus a
/// batch of offsets and, at most, its vectors.
/// Saturates instead of overflowing.
pub fn cold_reads_memory_bytes(points: usize, dim: usize, batch: usize) -> u128 {
    let (points, dim, batch) = (points as u128, dim as u128, batch as u128);
    sum(&[
        product(&[2, points, dim, 4]),
        product(&[batch, product(&[dim, 4]).saturating_add(8)]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn budget(bytes: u64) -> MemoryBudget {
        MemoryBudget {
            bytes,
            source: "test",
        }
    }

    fn generated(points: usize, dim: usize) -> VectorSource<'static> {
        VectorSource::Generated { points, dim }
    }

    fn compare(
        source: VectorSource<'_>,
        tenants: usize,
        queries: usize,
        top: usize,
    ) -> CompareSizes<'_> {
        CompareSizes {
            source,
            tenants,
            queries,
            top,
        }
    }

    /// The error message, asserting there is one.
    fn err(r: Result<(), UsageError>) -> String {
        r.expect_err("should be rejected").0
    }

    #[test]
    fn defaults_and_small_runs_pass() {
        let b = budget(4 * GIB);
        check_compare(&compare(generated(100_000, 128), 16, 100, 10), &b).unwrap();
        check_compare(&compare(generated(1, 1), 1, 1, 1), &b).unwrap();
        check_compare(&compare(generated(400, 8), 16, 6, 400), &b).unwrap();
        check_compare(&compare(generated(10, MAX_DIM), 10, 1, 10), &b).unwrap();
    }

    #[test]
    fn compare_rejects_each_size_naming_the_flag_and_the_limit() {
        let b = budget(64 * GIB);
        let cases: [(CompareSizes<'_>, &[&str]); 14] = [
            (
                compare(generated(100_000, 128), 16, 100, 1_000_000_000),
                &["--top 1000000000", "--points 100000"],
            ),
            (
                compare(generated(100_000, 128), 16, 100, 0),
                &["--top", "at least 1"],
            ),
            (
                compare(generated(1, 1_000_000_000), 1, 1, 1),
                &["--dim 1000000000", "65536"],
            ),
            (
                compare(generated(100, 0), 1, 1, 1),
                &["--dim 0", "between 1 and 65536"],
            ),
            (
                compare(generated(1_000_000_000_000, 128), 16, 100, 10),
                &["--points 1000000000000", "4294967295"],
            ),
            (
                compare(generated(0, 128), 1, 1, 1),
                &["--points 0", "between 1"],
            ),
            (
                compare(generated(usize::MAX, usize::MAX), 1, 1, 1),
                &["--points", "4294967295"],
            ),
            (
                compare(generated(100, 8), 0, 10, 10),
                &["--tenants", "at least 1"],
            ),
            (
                compare(generated(100, 8), 101, 10, 10),
                &["--tenants 101", "--points 100"],
            ),
            (
                compare(generated(100, 8), 16, 0, 10),
                &["--queries 0", "between 1 and 1000000"],
            ),
            (
                compare(generated(100, 8), 16, MAX_QUERIES + 1, 10),
                &["--queries 1000001", "1000000"],
            ),
            (
                compare(generated(100, 8), 16, usize::MAX, usize::MAX),
                &["--queries"],
            ),
            // Within the fixed limits, but not in 64 GiB.
            (
                compare(generated(MAX_POINTS, 4096), 16, 100, 10),
                &["needs about", "64.0 GiB", "test"],
            ),
            (
                compare(generated(1_000_000, 8), 16, MAX_QUERIES, 1_000_000),
                &["needs about", "--top 1000000"],
            ),
        ];
        for (sizes, needles) in cases {
            let msg = err(check_compare(&sizes, &b));
            for needle in needles {
                assert!(msg.contains(needle), "{sizes:?}: {msg:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn file_sources_are_checked_by_their_shape() {
        let b = budget(4 * GIB);
        let path = Path::new("data/v.npy");
        let file = |rows, dim, points| VectorSource::File {
            path,
            shape: FileShape { rows, dim },
            points,
        };
        // --points only caps the rows read; --top is checked against what is read.
        check_compare(&compare(file(50, 4, 100_000), 16, 3, 50), &b).unwrap();
        let msg = err(check_compare(&compare(file(50, 4, 100_000), 16, 3, 51), &b));
        assert!(
            msg.contains("--top 51") && msg.contains("50 points read from data/v.npy"),
            "{msg}"
        );
        let msg = err(check_compare(&compare(file(0, 16, 100_000), 1, 1, 1), &b));
        assert!(msg.contains("data/v.npy holds no vectors"), "{msg}");
        let msg = err(check_compare(&compare(file(0, 0, 100_000), 1, 1, 1), &b));
        assert!(msg.contains("holds no vectors"), "{msg}");
        let msg = err(check_compare(&compare(file(10, 0, 100_000), 1, 1, 1), &b));
        assert!(
            msg.contains("dimension 0") && msg.contains("65536"),
            "{msg}"
        );
        let msg = err(check_compare(&compare(file(10, 4, 0), 1, 1, 1), &b));
        assert!(msg.contains("--points"), "{msg}");
        // A huge file with a sane --points is fine.
        check_compare(&compare(file(usize::MAX, 4, 1000), 1, 1, 1), &b).unwrap();
        let msg = err(check_compare(
            &compare(file(usize::MAX, 4, usize::MAX), 1, 1, 1),
            &b,
        ));
        assert!(msg.contains("--points 4294967295 or less"), "{msg}");
    }

    #[test]
    fn cold_reads_sizes_are_bounded() {
        let b = budget(4 * GIB);
        let sizes = |points, dim, batch, rounds| ColdReadsSizes {
            source: generated(points, dim),
            batch,
            rounds,
            max_gap_kib: None,
            max_request_kib: None,
        };
        check_cold_reads(&sizes(200_000, 128, 4096, 15), &b).unwrap();
        check_cold_reads(&sizes(10, 4, 1000, 1), &b).unwrap();
        for (s, needle) in [
            (sizes(0, 128, 4096, 15), "--points 0"),
            (
                sizes(1_000_000_000_000, 128, 4096, 15),
                "--points 1000000000000",
            ),
            (sizes(1, 1_000_000_000, 4096, 15), "--dim 1000000000"),
            (sizes(100, 8, 0, 15), "--batch 0"),
            (sizes(100, 8, usize::MAX, 15), "--batch"),
            (sizes(100, 8, 10, 0), "--rounds 0"),
            (sizes(100, 8, 10, usize::MAX), "--rounds"),
            (sizes(100_000_000, 4096, 10, 1), "needs about"),
        ] {
            let msg = err(check_cold_reads(&s, &b));
            assert!(msg.contains(needle), "{s:?}: {msg}");
        }
        let mut s = sizes(100, 8, 10, 1);
        s.max_gap_kib = Some(usize::MAX);
        assert!(err(check_cold_reads(&s, &b)).contains("--max-gap-kib"));
        s.max_gap_kib = Some(MAX_COALESCE_KIB);
        s.max_request_kib = Some(MAX_COALESCE_KIB + 1);
        assert!(err(check_cold_reads(&s, &b)).contains("--max-request-kib"));
    }

    #[test]
    fn the_budget_comes_from_mem_available() {
        let text = "MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   23429320 kB\n";
        assert_eq!(mem_available(text), Some(23_429_320 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
        let b = MemoryBudget::detect();
        assert!(b.bytes > 0);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn estimates_do_not_overflow() {
        assert!(compare_memory_bytes(usize::MAX, usize::MAX, usize::MAX, usize::MAX) > 0);
        assert!(cold_reads_memory_bytes(usize::MAX, usize::MAX, usize::MAX) > 0);
        // The default compare run: about 0.5 GB.
        let default = compare_memory_bytes(100_000, 128, 100, 10);
        assert!((200 << 20..1 << 30).contains(&default), "{default}");
    }
}
