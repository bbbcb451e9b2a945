//! The data `vecseg compare` runs on: a seeded clustered dataset by default,
//! or vectors read from a `.fvecs` / `.npy` file, plus generated payloads
//! (tenant, category, price) and queries.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use vecseg_traits::{Distance, IoResultExt, Payload, PointId, Result, StorageError};

use crate::cli::limits::FileShape;

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
    ///
    /// `points` and `dim` must be at least 1; sizes whose memory cannot be
    /// reserved are an [`StorageError::InvalidArgument`] (the CLI checks
    /// them against its limits first, see [`crate::cli::limits`]).
    pub fn generate(
        points: usize,
        dim: usize,
        distance: Distance,
        tenants: usize,
        queries: usize,
        seed: u64,
    ) -> Result<Self> {
        if points == 0 || dim == 0 {
            return Err(StorageError::InvalidArgument(format!(
                "cannot generate {points} vectors of dimension {dim}: both must be at least 1"
            )));
        }
        let mut vectors = reserve_floats(points, dim, || format!("{points} generated vectors"))?;
        reserve_floats(queries, dim, || format!("{queries} queries"))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let clusters = (points / 500).clamp(8, 4096);
        let centres: Vec<f32> = (0..clusters * dim)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
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
        Ok(data)
    }

    /// Vectors from a `.fvecs` or `.npy` (float32, 2-D) file, at most
    /// `limit` of them, with generated payloads and queries. Only the
    /// header and the rows used are read. A file without vectors, or with
    /// vectors of dimension 0, is an [`StorageError::InvalidArgument`].
    pub fn load(
        path: &Path,
        limit: Option<usize>,
        distance: Distance,
        tenants: usize,
        queries: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut file = File::open(path).at(path)?;
        let layout = VectorFile::read_layout(path, &mut file)?;
        let FileShape { rows, dim } = layout.shape;
        if rows == 0 {
            return Err(StorageError::InvalidArgument(format!(
                "{} holds no vectors",
                path.display()
            )));
        }
        if dim == 0 {
            return Err(StorageError::InvalidArgument(format!(
                "{} holds vectors of dimension 0",
                path.display()
            )));
        }
        let n = limit.map_or(rows, |l| l.min(rows));
        if n == 0 {
            return Err(StorageError::InvalidArgument(format!(
                "no vector of {} requested (limit 0)",
                path.display()
            )));
        }
        let vectors = layout.read_rows(path, &mut file, n)?;
        reserve_floats(queries, dim, || format!("{queries} queries"))?;
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

    /// Replace the generated queries by the first `limit` rows of `path`
    /// (`.fvecs` or `.npy`), which must have the dataset's dimension.
    pub fn load_queries(&mut self, path: &Path, limit: usize) -> Result<()> {
        let mut file = File::open(path).at(path)?;
        let layout = VectorFile::read_layout(path, &mut file)?;
        let FileShape { rows, dim } = layout.shape;
        if dim != self.dim {
            return Err(StorageError::InvalidArgument(format!(
                "{}: queries of dimension {dim}, the points have {}",
                path.display(),
                self.dim
            )));
        }
        let n = rows.min(limit);
        if n == 0 {
            return Err(StorageError::InvalidArgument(format!(
                "{} holds no queries",
                path.display()
            )));
        }
        self.queries = layout.read_rows(path, &mut file, n)?;
        Ok(())
    }

    /// The exact top-`k` of each query from an `.ivecs` file (per query a
    /// little-endian i32 count, then that many 0-based point indices, best
    /// first), for data whose queries came from [`Self::load_queries`].
    pub fn load_ground_truth(&self, path: &Path, k: usize) -> Result<Vec<Vec<PointId>>> {
        let bytes = std::fs::read(path).at(path)?;
        let bad = |reason: String| StorageError::corrupted(path, reason);
        let mut truth = Vec::with_capacity(self.query_count());
        let mut at = 0usize;
        while truth.len() < self.query_count() {
            let count = bytes
                .get(at..at + 4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| {
                    bad(format!(
                        "holds {} rows, the run has {} queries",
                        truth.len(),
                        self.query_count()
                    ))
                })?;
            let count = usize::try_from(count)
                .map_err(|_| bad(format!("row {} has a negative length", truth.len())))?;
            let row = bytes
                .get(at + 4..at + 4 + 4 * count)
                .ok_or_else(|| bad(format!("row {} is cut short", truth.len())))?;
            if count < k {
                return Err(StorageError::InvalidArgument(format!(
                    "{}: row {} holds {count} neighbours, --top asks for {k}",
                    path.display(),
                    truth.len()
                )));
            }
            let mut ids = Vec::with_capacity(k);
            for c in row.chunks_exact(4).take(k) {
                let index = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                match usize::try_from(index) {
                    Ok(i) if i < self.len() => ids.push(self.id(i)),
                    _ => {
                        return Err(StorageError::InvalidArgument(format!(
                            "{}: row {} names point {index}, the run has {} points",
                            path.display(),
                            truth.len(),
                            self.len()
                        )))
                    }
                }
            }
            truth.push(ids);
            at += 4 + 4 * count;
        }
        Ok(truth)
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

/// An empty `Vec<f32>` with room for `rows × dim` floats, or an
/// [`StorageError::InvalidArgument`] naming `what` when that much memory
/// cannot be had (instead of a capacity-overflow panic or an abort).
fn reserve_floats(rows: usize, dim: usize, what: impl Fn() -> String) -> Result<Vec<f32>> {
    let too_big = || {
        StorageError::InvalidArgument(format!(
            "{}: {rows} × {dim} floats do not fit in memory",
            what()
        ))
    };
    let len = rows.checked_mul(dim).ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_big())?;
    Ok(v)
}

/// Largest `.npy` header accepted (real ones are a few hundred bytes).
const MAX_NPY_HEADER: usize = 1 << 20;

/// Rows and dimension of a `.fvecs` or `.npy` (float32, 2-D) file, read
/// from its header and length without reading the vectors; a file of any
/// other kind, or whose header and length disagree, is an error.
pub fn file_shape(path: &Path) -> Result<FileShape> {
    let mut file = File::open(path).at(path)?;
    Ok(VectorFile::read_layout(path, &mut file)?.shape)
}

/// The two vector file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Per vector a little-endian i32 dimension, then that many f32s.
    Fvecs,
    /// `.npy` version 1/2/3, a C-order little-endian float32 2-D array.
    Npy,
}

/// Where the rows of a vector file are.
#[derive(Debug, Clone, Copy)]
struct VectorFile {
    format: Format,
    shape: FileShape,
    /// Byte offset of the first row.
    start: u64,
    /// Bytes per row (for `.fvecs` including its dimension field).
    record: u64,
}

impl VectorFile {
    /// Read the header of `file` (at `path`) and check it against the file's length.
    fn read_layout(path: &Path, file: &mut File) -> Result<Self> {
        let len = file.metadata().at(path)?.len();
        match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "fvecs" => fvecs_layout(path, file, len),
            "npy" => npy_layout(path, file, len),
            _ => Err(StorageError::InvalidArgument(format!(
                "{}: expected a .fvecs or .npy file",
                path.display()
            ))),
        }
    }

    /// The first `n` rows (`n` ≤ the file's rows), row-major.
    fn read_rows(&self, path: &Path, file: &mut File, n: usize) -> Result<Vec<f32>> {
        let bad = |reason: String| StorageError::corrupted(path, reason);
        let dim = self.shape.dim;
        let bytes_len = (n as u64)
            .checked_mul(self.record)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| bad(format!("{n} rows of {} bytes overflow", self.record)))?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(bytes_len).map_err(|_| {
            StorageError::InvalidArgument(format!(
                "{}: {n} vectors ({bytes_len} bytes) do not fit in memory",
                path.display()
            ))
        })?;
        file.seek(SeekFrom::Start(self.start)).at(path)?;
        file.by_ref()
            .take(bytes_len as u64)
            .read_to_end(&mut bytes)
            .at(path)?;
        if bytes.len() != bytes_len {
            return Err(bad(format!(
                "file ended after {} of {bytes_len} bytes of vectors",
                bytes.len()
            )));
        }
        let mut out = reserve_floats(n, dim, || path.display().to_string())?;
        let floats = |b: &[u8]| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        };
        match self.format {
            Format::Npy => out.extend(floats(&bytes)),
            Format::Fvecs => {
                for (i, rec) in bytes.chunks_exact(self.record as usize).enumerate() {
                    let d = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                    if usize::try_from(d).ok() != Some(dim) {
                        return Err(bad(format!("vector {i} has dimension {d}, expected {dim}")));
                    }
                    out.extend(
                        rec[4..]
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
            }
        }
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "vector {} has a non-finite component",
                i / dim
            )));
        }
        Ok(out)
    }
}

/// `.fvecs`: the first record's dimension and the file length give the rows.
fn fvecs_layout(path: &Path, file: &mut File, len: u64) -> Result<VectorFile> {
    let bad = |reason: String| StorageError::corrupted(path, reason);
    let empty = VectorFile {
        format: Format::Fvecs,
        shape: FileShape { rows: 0, dim: 0 },
        start: 0,
        record: 4,
    };
    if len == 0 {
        return Ok(empty);
    }
    if len < 4 {
        return Err(bad("file too short for a .fvecs header".into()));
    }
    let mut head = [0u8; 4];
    file.read_exact(&mut head).at(path)?;
    let dim = i32::from_le_bytes(head);
    let dim = usize::try_from(dim).map_err(|_| bad(format!("dimension {dim}")))?;
    let record = 4 + 4 * dim as u64;
    if !len.is_multiple_of(record) {
        return Err(bad(format!(
            "length {len} is not a multiple of the record size {record}"
        )));
    }
    let rows = usize::try_from(len / record).map_err(|_| bad(format!("length {len}")))?;
    Ok(VectorFile {
        shape: FileShape { rows, dim },
        record,
        ..empty
    })
}

/// `.npy` version 1/2/3 holding a C-order little-endian float32 2-D array.
fn npy_layout(path: &Path, file: &mut File, len: u64) -> Result<VectorFile> {
    let bad = |reason: String| StorageError::corrupted(path, reason);
    let mut head = Vec::with_capacity(12);
    file.by_ref().take(12).read_to_end(&mut head).at(path)?;
    let got = head.len();
    if got < 10 || &head[..6] != b"\x93NUMPY" {
        return Err(bad("missing .npy magic".into()));
    }
    let (header_len, start) = match head[6] {
        1 => (u16::from_le_bytes([head[8], head[9]]) as usize, 10),
        2 | 3 if got >= 12 => (
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    if header_len > MAX_NPY_HEADER {
        return Err(bad(format!(
            ".npy header of {header_len} bytes (at most {MAX_NPY_HEADER} accepted)"
        )));
    }
    let mut header = vec![0u8; header_len];
    file.seek(SeekFrom::Start(start as u64)).at(path)?;
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated .npy header".into()))?;
    let header = String::from_utf8_lossy(&header);
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
    let [rows, dim] = dims[..] else {
        return Err(bad(format!("expected a 2-D array, shape is ({shape})")));
    };
    let start = (start + header_len) as u64;
    let data = len.saturating_sub(start);
    let needed = (rows as u128)
        .checked_mul(dim as u128)
        .and_then(|n| n.checked_mul(4));
    if needed != Some(u128::from(data)) {
        return Err(bad(format!(
            "data is {data} bytes, shape ({rows}, {dim}) needs {}",
            needed.map_or_else(|| "more than 2^128".to_string(), |n| n.to_string())
        )));
    }
    Ok(VectorFile {
        format: Format::Npy,
        shape: FileShape { rows, dim },
        start,
        record: 4 * dim as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = Dataset::generate(100, 8, Distance::Cosine, 3, 5, 7).unwrap();
        let b = Dataset::generate(100, 8, Distance::Cosine, 3, 5, 7).unwrap();
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

    /// An `.npy` v1 file of shape `(rows, dim)` with `data` after the header.
    fn npy(rows: usize, dim: usize, data: &[f32]) -> Vec<u8> {
        let header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        for x in data {
            npy.extend(x.to_le_bytes());
        }
        npy
    }

    #[test]
    fn empty_and_zero_dimension_files_are_invalid_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let load = |p: &Path| Dataset::load(p, Some(100), Distance::Dot, 2, 1, 1);
        let invalid = |p: &Path, needle: &str| match load(p) {
            Err(StorageError::InvalidArgument(msg)) => {
                assert!(
                    msg.contains(needle) && msg.contains(&*p.to_string_lossy()),
                    "{msg}"
                )
            }
            other => panic!("{}: {other:?}", p.display()),
        };
        let p = dir.path().join("empty.npy");
        std::fs::write(&p, npy(0, 16, &[])).unwrap();
        assert_eq!(file_shape(&p).unwrap(), FileShape { rows: 0, dim: 16 });
        invalid(&p, "holds no vectors");
        let p = dir.path().join("flat.npy");
        std::fs::write(&p, npy(5, 0, &[])).unwrap();
        assert_eq!(file_shape(&p).unwrap(), FileShape { rows: 5, dim: 0 });
        invalid(&p, "dimension 0");
        let p = dir.path().join("empty.fvecs");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(file_shape(&p).unwrap(), FileShape { rows: 0, dim: 0 });
        invalid(&p, "holds no vectors");
        let p = dir.path().join("zero.fvecs");
        std::fs::write(&p, [0u8; 12]).unwrap();
        assert_eq!(file_shape(&p).unwrap(), FileShape { rows: 3, dim: 0 });
        invalid(&p, "dimension 0");
        // A shape whose byte count overflows is corrupted, not a panic.
        let p = dir.path().join("huge.npy");
        std::fs::write(&p, npy(usize::MAX, usize::MAX, &[1.0])).unwrap();
        assert!(matches!(
            file_shape(&p),
            Err(StorageError::Corrupted { .. })
        ));
        // A header claiming a 4 GiB .npy header is refused before reading it.
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend(u32::MAX.to_le_bytes());
        std::fs::write(&p, v2).unwrap();
        assert!(matches!(
            file_shape(&p),
            Err(StorageError::Corrupted { .. })
        ));
    }

    #[test]
    fn only_the_rows_used_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        std::fs::write(&p, npy(3, 2, &[1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0])).unwrap();
        assert_eq!(file_shape(&p).unwrap(), FileShape { rows: 3, dim: 2 });
        let d = Dataset::load(&p, Some(2), Distance::Dot, 1, 1, 1).unwrap();
        assert_eq!(d.vectors, [1.0, 2.0, 3.0, 4.0]);
        assert!(matches!(
            Dataset::load(&p, None, Distance::Dot, 1, 1, 1),
            Err(StorageError::Corrupted { .. })
        ));
        let d = Dataset::load(&p, Some(usize::MAX), Distance::Dot, 1, 1, 1);
        assert!(matches!(d, Err(StorageError::Corrupted { .. })));
    }

    #[test]
    fn generate_rejects_sizes_it_cannot_hold() {
        for (points, dim) in [(0, 8), (8, 0), (usize::MAX, 2), (1 << 40, 1 << 20)] {
            assert!(matches!(
                Dataset::generate(points, dim, Distance::Dot, 1, 1, 1),
                Err(StorageError::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            Dataset::generate(10, 8, Distance::Dot, 1, usize::MAX, 1),
            Err(StorageError::InvalidArgument(_))
        ));
    }
}
