//! Benchmark data shared by the benches: the real e5 embeddings
//! (`../shared/data/e5-dev`, or `VECSEG_E5_DIR`) and generated clustered
//! sets, each with the exact top-10 of its queries.

use std::path::{Path, PathBuf};

use std::time::Instant;

use vecseg::cli::compare::dataset::Dataset;
use vecseg::cli::compare::measure::ground_truth;
use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::{Distance, Payload, PointId, Segment};

/// An in-RAM segment of raw vectors.
pub type MemorySegment = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;

/// Every point of `set` (cosine, empty payloads, id = index) in an in-RAM
/// segment.
pub fn memory_segment(set: &Set) -> MemorySegment {
    let mut s = Segment::new(
        MemoryVectorStorage::new(set.dim, Distance::Cosine).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    let empty = Payload::new();
    for (i, v) in set.points.iter().enumerate() {
        s.upsert(1, PointId::Num(i as u64), v, &empty).unwrap();
    }
    s
}

/// (recall@10, queries per second) of `search` over the set's queries.
pub fn recall_and_qps(set: &Set, mut search: impl FnMut(&[f32]) -> Vec<PointId>) -> (f64, f64) {
    let t = Instant::now();
    let mut found = 0;
    for (q, truth) in set.queries.iter().zip(&set.truth) {
        found += search(q).iter().filter(|id| truth.contains(id)).count();
    }
    let qps = set.queries.len() as f64 / t.elapsed().as_secs_f64();
    (found as f64 / (10 * set.queries.len()) as f64, qps)
}

/// Points, queries and the exact top-10 ids of each query.
pub struct Set {
    pub name: String,
    pub dim: usize,
    pub points: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    pub truth: Vec<Vec<PointId>>,
}

/// Rows of an `.fvecs` (`float = true`) or `.ivecs` file as f32 / i32 bits.
fn read_vecs(path: &Path) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let d = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        rows.push(
            bytes[at..at + 4 * d]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        );
        at += 4 * d;
    }
    rows
}

/// The e5 set, when its files are there.
#[allow(dead_code)]
pub fn e5() -> Option<Set> {
    let dir = std::env::var("VECSEG_E5_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("../shared/data/e5-dev"));
    if !dir.join("base.fvecs").exists() {
        eprintln!("no e5 set at {} (set VECSEG_E5_DIR)", dir.display());
        return None;
    }
    let floats = |name: &str| -> Vec<Vec<f32>> {
        read_vecs(&dir.join(name))
            .into_iter()
            .map(|r| r.into_iter().map(f32::from_bits).collect())
            .collect()
    };
    let points = floats("base.fvecs");
    let queries = floats("queries.fvecs");
    let truth = read_vecs(&dir.join("gt.ivecs"))
        .into_iter()
        .map(|r| {
            r[..10]
                .iter()
                .map(|&i| PointId::Num(u64::from(i)))
                .collect()
        })
        .collect();
    Some(Set {
        name: format!("e5 {} x {}", points.len(), points[0].len()),
        dim: points[0].len(),
        points,
        queries,
        truth,
    })
}

/// `n` generated clustered points × 128 (cosine) with 200 queries.
#[allow(dead_code)]
pub fn generated(n: usize) -> Set {
    let data = Dataset::generate(n, 128, Distance::Cosine, 1, 200, 42).unwrap();
    let truth = ground_truth(&data, 10);
    Set {
        name: format!("generated {n} x 128"),
        dim: 128,
        points: (0..data.len()).map(|i| data.vector(i).to_vec()).collect(),
        queries: (0..data.query_count())
            .map(|q| data.query(q).to_vec())
            .collect(),
        truth,
    }
}

/// Write `set` to `dir` in the e5 layout (`base.fvecs`, `queries.fvecs`,
/// `gt.ivecs`; vectors normalised, as the cosine segments store them), so
/// an outside anchor (e.g. `scripts/hnsw_faiss_anchor.py`) reads the same
/// data.
#[allow(dead_code)]
pub fn dump(set: &Set, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let rows = |name: &str, rows: &mut dyn Iterator<Item = Vec<u32>>| {
        let mut out = Vec::new();
        for row in rows {
            out.extend_from_slice(&(row.len() as u32).to_le_bytes());
            row.iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        std::fs::write(dir.join(name), out).unwrap();
    };
    let unit = |v: &Vec<f32>| {
        let mut v = v.clone();
        vecseg::distance::normalize(&mut v);
        v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
    };
    rows("base.fvecs", &mut set.points.iter().map(unit));
    rows("queries.fvecs", &mut set.queries.iter().map(unit));
    rows(
        "gt.ivecs",
        &mut set.truth.iter().map(|t| {
            t.iter()
                .map(|id| match id {
                    PointId::Num(n) => *n as u32,
                    PointId::Uuid(_) => u32::MAX,
                })
                .collect()
        }),
    );
}
