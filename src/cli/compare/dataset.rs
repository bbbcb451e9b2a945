//! The data `vecseg compare` runs on: a seeded clustered dataset by default,
//! or vectors read from a `.fvecs` / `.npy` file, plus generated payloads
//! (tenant, category, price) and queries.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use vecseg_traits::{Distance, IoResultExt, Payload, PointId, Result, StorageError};

/// Points, payloads and queries shared by every configuration.
#[derive(Debug)]
pub struct Dataset {
    /// Vector dimension.
    pub dim: usize,
    /// Distance used by every configuration.
    pub distance: Distance,
    /// Row-major vectors, `len() == n * dim`.
    pub vectors: Vec<f32>,
    /// One payload per point.
    pub payloads: Vec<Payload>,
    /// Query vectors, row-major.
    pub queries: Vec<f32>,
    /// Number of tenants in the payloads.
    pub tenants: usize,
    /// Where the vectors came from.
    pub source: String,
}

/// Dataset description written into the report.
#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    /// Number of points.
    pub points: usize,
    /// Dimension.
    pub dim: usize,
    /// Distance name.
    pub distance: &'static str,
    /// Number of tenants.
    pub tenants: usize,
    /// Number of queries.
    pub queries: usize,
    /// `generated (seed N, C clusters)` or the input file.
    pub source: String,
    /// Bytes of raw vector data.
    pub vector_bytes: u64,
}

impl Dataset {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Vector of point `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// External id of point `i`.
    pub fn id(&self, i: usize) -> PointId {
        PointId::Num(i as u64)
    }

    /// Query `q`.
    pub fn query(&self, q: usize) -> &[f32] {
        &self.queries[q * self.dim..(q + 1) * self.dim]
    }

    /// Number of queries.
    pub fn query_count(&self) -> usize {
        self.queries.len() / self.dim
    }

    /// Description for the report.
    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            points: self.len(),
            dim: self.dim,
            distance: self.distance.name(),
            tenants: self.tenants,
            queries: self.query_count(),
            source: self.source.clone(),
            vector_bytes: (self.vectors.len() * 4) as u64,
        }
    }

    /// A clustered dataset: `points` vectors around `points / 500` (at least
    /// 8) random centres, payloads with `tenants` tenants, `queries` queries
    /// near random points. Deterministic for a given `seed`.
    pub fn generate(
        points: usize,
        dim: usize,
        distance: Distance,
        tenants: usize,
        queries: usize,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let clusters = (points / 500).clamp(8, 4096);
        let centres: Vec<f32> = (0..clusters * dim)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let mut vectors = Vec::with_capacity(points * dim);
        for _ in 0..points {
            let c = rng.gen_range(0..clusters);
            for k in 0..dim {
                vectors.push(centres[c * dim + k] + 0.15 * gaussian(&mut rng));
            }
        }
        let mut data = Dataset {
            dim,
            distance,
            payloads: Vec::new(),
            queries: Vec::new(),
            vectors,
            tenants,
            source: format!("generated (seed {seed}, {clusters} clusters)"),
        };
        data.fill_payloads_and_queries(queries, &mut rng);
        data
    }

    /// Vectors from a `.fvecs` or `.npy` (float32, 2-D) file, with generated
    /// payloads and queries.
    pub fn load(
        path: &Path,
        limit: Option<usize>,
        distance: Distance,
        tenants: usize,
        queries: usize,
        seed: u64,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let (dim, mut vectors) = match ext {
            "fvecs" => parse_fvecs(path, &bytes)?,
            "npy" => parse_npy(path, &bytes)?,
            _ => {
                return Err(StorageError::InvalidArgument(format!(
                    "{}: expected a .fvecs or .npy file",
                    path.display()
                )))
            }
        };
        if let Some(n) = limit {
            vectors.truncate(n * dim);
        }
        if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
            return Err(StorageError::corrupted(
                path,
                format!("vector {} has a non-finite component", i / dim),
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Dataset {
            dim,
            distance,
            vectors,
            payloads: Vec::new(),
            queries: Vec::new(),
            tenants,
            source: path.display().to_string(),
        };
        data.fill_payloads_and_queries(queries, &mut rng);
        Ok(data)
    }

    fn fill_payloads_and_queries(&mut self, queries: usize, rng: &mut StdRng) {
        const CATEGORIES: [&str; 4] = ["books", "music", "tools", "garden"];
        let n = self.len();
        self.payloads = (0..n)
            .map(|i| {
                let tenant = rng.gen_range(0..self.tenants.max(1));
                let v = json!({
                    "tenant": format!("tenant-{tenant}"),
                    "category": CATEGORIES[i % CATEGORIES.len()],
                    "price": rng.gen_range(0..10_000),
                    "rating": rng.gen_range(0.0..5.0),
                });
                v.as_object().cloned().unwrap_or_default()
            })
            .collect();
        self.queries = Vec::with_capacity(queries * self.dim);
        for _ in 0..queries {
            let base = if n > 0 { rng.gen_range(0..n) } else { 0 };
            for k in 0..self.dim {
                let x = if n > 0 {
                    self.vectors[base * self.dim + k]
                } else {
                    0.0
                };
                self.queries.push(x + 0.1 * gaussian(rng) + 1e-3);
            }
        }
    }
}

/// Standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `.fvecs`: per vector a little-endian i32 dimension then that many f32s.
fn parse_fvecs(path: &Path, bytes: &[u8]) -> Result<(usize, Vec<f32>)> {
    let bad = |reason: String| StorageError::corrupted(path, reason);
    if bytes.len() < 4 {
        return Err(bad("file too short for a .fvecs header".into()));
    }
    let dim = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if dim <= 0 {
        return Err(bad(format!("dimension {dim}")));
    }
    let dim = dim as usize;
    let record = 4 + dim * 4;
    if bytes.len() % record != 0 {
        return Err(bad(format!(
            "length {} is not a multiple of the record size {record}",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(bytes.len() / record * dim);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let d = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if d as usize != dim {
            return Err(bad(format!("vector {i} has dimension {d}, expected {dim}")));
        }
        out.extend(
            rec[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok((dim, out))
}

/// `.npy` version 1/2/3 holding a C-order little-endian float32 2-D array.
fn parse_npy(path: &Path, bytes: &[u8]) -> Result<(usize, Vec<f32>)> {
    let bad = |reason: String| StorageError::corrupted(path, reason);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing .npy magic".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let header = String::from_utf8_lossy(header);
    if !header.contains("'descr': '<f4'") {
        return Err(bad(format!(
            "only little-endian float32 arrays are supported: {header}"
        )));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in .npy header".into()))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("bad shape {shape}"))))
        .collect::<Result<_>>()?;
    let [n, dim] = dims[..] else {
        return Err(bad(format!("expected a 2-D array, shape is ({shape})")));
    };
    let data = &bytes[start + header_len..];
    if dim == 0 || data.len() != n * dim * 4 {
        return Err(bad(format!(
            "data is {} bytes, shape ({n}, {dim}) needs {}",
            data.len(),
            n * dim * 4
        )));
    }
    Ok((
        dim,
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = Dataset::generate(100, 8, Distance::Cosine, 3, 5, 7);
        let b = Dataset::generate(100, 8, Distance::Cosine, 3, 5, 7);
        assert_eq!(a.vectors, b.vectors);
        assert_eq!(a.payloads, b.payloads);
        assert_eq!((a.len(), a.query_count(), a.payloads.len()), (100, 5, 100));
        assert!(a
            .payloads
            .iter()
            .all(|p| p["tenant"].as_str().unwrap().starts_with("tenant-")));
    }

    #[test]
    fn fvecs_and_npy_parse_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let mut fvecs = Vec::new();
        for i in 0..3 {
            fvecs.extend(2i32.to_le_bytes());
            fvecs.extend((i as f32).to_le_bytes());
            fvecs.extend(1.5f32.to_le_bytes());
        }
        let p = dir.path().join("v.fvecs");
        std::fs::write(&p, &fvecs).unwrap();
        let d = Dataset::load(&p, None, Distance::Dot, 2, 1, 1).unwrap();
        assert_eq!((d.dim, d.len()), (2, 3));
        assert_eq!(d.vector(2), &[2.0, 1.5]);
        std::fs::write(&p, &fvecs[..fvecs.len() - 1]).unwrap();
        assert!(matches!(
            Dataset::load(&p, None, Distance::Dot, 2, 1, 1),
            Err(StorageError::Corrupted { .. })
        ));

        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        for x in 0..6 {
            npy.extend((x as f32).to_le_bytes());
        }
        let p = dir.path().join("v.npy");
        std::fs::write(&p, &npy).unwrap();
        let d = Dataset::load(&p, Some(1), Distance::Dot, 2, 1, 1).unwrap();
        assert_eq!((d.dim, d.len(), d.vector(0)), (3, 1, &[0.0, 1.0, 2.0][..]));
        std::fs::write(&p, b"\x93NUMPY garbage").unwrap();
        assert!(Dataset::load(&p, None, Distance::Dot, 2, 1, 1).is_err());
    }
}
