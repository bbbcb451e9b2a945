//! [`MmapVectorStorage`]: an immutable vector storage served zero-copy from
//! a memory-mapped `matrix.dat`, with deleted flags in `deleted.dat`.
//!
//! A storage directory holds two files (layouts byte by byte in
//! `docs/file-formats.md`):
//!
//! * `matrix.dat` — a 64-byte [`MatrixHeader`] (magic `VSMATRIX`, format
//!   version, element tag and size, dim, count, data offset, distance), zero
//!   padding, then `count` vectors of `dim` elements packed back to back from
//!   `data_offset` (a multiple of 64; written as 4096, one page).
//! * `deleted.dat` — a [`CheckedBitmap`] with one bit per vector: held in
//!   RAM, persisted as two checksummed copies by
//!   [`VectorStorage::flush_deleted`]; its generation is the storage's
//!   durable sequence. A format-1 `deleted.dat` (a plain mapped
//!   [`MmapBitSlice`], written in place) is converted at open.
//!
//! The storage is built once from any [`VectorStorageRead`]
//! ([`MmapVectorStorage::build`]: one sequential write through a buffer,
//! fsync, rename, then map) and afterwards supports reads and deletes only.
//!
//! `matrix.dat` is mapped twice: one mapping advised `MADV_RANDOM` serves
//! `get::<Random>`, the other advised `MADV_SEQUENTIAL` serves
//! `get::<Sequential>` and clustered batches, so scans get read-ahead
//! without hurting point reads. [`MmapVectorOptions::multi_mmap`] or
//! `VECSEG_NO_MULTI_MMAP=1` keeps a single mapping.
//!
//! For data that is not in the page cache, [`MmapVectorStorage::read_batch_uring`]
//! reads a batch with many io_uring requests in flight instead of taking one
//! page fault at a time (see [`crate::uring`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use bitvec::slice::BitSlice;
use bytemuck::{Pod, Zeroable};
use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{
    AccessPattern, Distance, IoResultExt, PointOffset, RawScorer, Result, StorageError,
    VectorElement, VectorStorage, VectorStorageRead,
};

use crate::advice::{Advice, AdviceSetting};
use crate::bitslice::{MmapBitSlice, BITSLICE_MAGIC};
use crate::checked_bitmap::CheckedBitmap;
use crate::coalesce::ReadCoalescing;
use crate::file::MmapFile;
use crate::header::{cast_slice, read_header, FilePrefix};
use crate::uring::{BatchReader, ReadBackend, ReadCounts, DEFAULT_QUEUE_DEPTH};

/// Name of the vector data file in a storage directory.
pub const MATRIX_FILE: &str = "matrix.dat";
/// Name of the deleted-flags file in a storage directory.
pub const DELETED_FILE: &str = "deleted.dat";
/// Magic of `matrix.dat`.
pub const MATRIX_MAGIC: [u8; 8] = *b"VSMATRIX";
/// Format version of `matrix.dat` this build reads and writes.
pub const MATRIX_VERSION: u32 = 1;
/// Alignment `matrix.dat`'s data offset must have (a cache line).
pub const DATA_ALIGN: usize = 64;
/// Data offset `build` writes: one page, so vectors whose byte size
/// divides 4096 never straddle two pages (one page read per cold vector).
pub const DATA_OFFSET: usize = 4096;
/// Largest dimension accepted when opening a file.
pub const MAX_DIM: usize = 1 << 24;
/// Environment variable that, set to `1`, disables the second (sequential) mapping.
pub const NO_MULTI_MMAP_ENV: &str = "VECSEG_NO_MULTI_MMAP";

/// Header of `matrix.dat` (64 bytes, little-endian).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct MatrixHeader {
    /// Magic `VSMATRIX`, format version, header length (64).
    pub prefix: FilePrefix,
    /// [`VectorElement::TAG`] of the element type (1 = f32, 2 = u8).
    pub element_tag: u32,
    /// Size of one element in bytes.
    pub element_size: u32,
    /// Components per vector.
    pub dim: u64,
    /// Number of vectors.
    pub count: u64,
    /// Byte offset of the first vector (a multiple of [`DATA_ALIGN`]).
    pub data_offset: u64,
    /// Distance code: 0 cosine, 1 dot, 2 euclid, 3 manhattan.
    pub distance: u32,
    /// Zero.
    pub reserved0: u32,
    /// Zero.
    pub reserved1: u64,
}

const HEADER_LEN: usize = std::mem::size_of::<MatrixHeader>();
const _: () = assert!(HEADER_LEN == 64 && DATA_OFFSET / DATA_ALIGN * DATA_ALIGN == DATA_OFFSET);

fn distance_code(d: Distance) -> u32 {
    match d {
        Distance::Cosine => 0,
        Distance::Dot => 1,
        Distance::Euclid => 2,
        Distance::Manhattan => 3,
    }
}

fn distance_from_code(c: u32) -> Option<Distance> {
    Some(match c {
        0 => Distance::Cosine,
        1 => Distance::Dot,
        2 => Distance::Euclid,
        3 => Distance::Manhattan,
        _ => return None,
    })
}

/// Convert a format-1 `deleted.dat` (a plain mapped [`MmapBitSlice`]) into a
/// [`CheckedBitmap`] with the same bits; a file in the current format is
/// left alone. The new file replaces the old one by rename.
fn convert_deleted_v1(path: &Path) -> Result<()> {
    let mut magic = [0u8; 8];
    {
        use std::io::Read;
        let mut f = File::open(path).at(path)?;
        if f.read_exact(&mut magic).is_err() || magic != BITSLICE_MAGIC {
            return Ok(());
        }
    }
    let old = MmapBitSlice::open(path)?;
    let bits = old.as_bitslice();
    let mut words = vec![0u64; bits.len().div_ceil(64)];
    for o in bits.iter_ones() {
        words[o / 64] |= 1 << (o % 64);
    }
    let len = old.len();
    drop(old);
    CheckedBitmap::create(path, len, &words).map(drop)
}

/// Options for opening (and building) a [`MmapVectorStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmapVectorOptions {
    /// Map `matrix.dat` a second time advised sequential for scans (default
    /// true). `VECSEG_NO_MULTI_MMAP=1` turns it off regardless.
    pub multi_mmap: bool,
    /// Fault every page of the mappings in at open (`MADV_POPULATE_READ`).
    pub populate: bool,
    /// Advice of the point-read mapping: [`AdviceSetting::Global`] (the
    /// default) follows [`crate::set_global_advice`], else
    /// [`Advice::Random`]; an explicit advice always applies.
    pub advice: AdviceSetting,
    /// Backend of [`MmapVectorStorage::read_batch_uring`]: `None` detects
    /// (io_uring where available), `Some(Pread)` forces the fallback.
    pub read_backend: Option<ReadBackend>,
    /// io_uring requests kept in flight (default 64).
    pub queue_depth: usize,
    /// Serve `get_batch` of scattered offsets through the io_uring reader
    /// instead of the mapping (for storages expected to be cold on disk).
    pub batch_reads_via_uring: bool,
    /// When vectors close together in `matrix.dat` are fetched with one
    /// read request by [`MmapVectorStorage::read_batch_uring`]. The reader
    /// keeps `queue_depth` buffers as long as the longest request it has
    /// issued (at most 64 × 64 KiB = 4 MiB with the defaults).
    pub read_coalescing: ReadCoalescing,
}

impl MmapVectorOptions {
    /// These options with the second, sequential mapping on or off.
    pub fn with_multi_mmap(mut self, on: bool) -> Self {
        self.multi_mmap = on;
        self
    }

    /// These options with every page faulted in at open, or not.
    pub fn with_populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// These options with `advice` for the point-read mapping (an explicit
    /// [`Advice`] wins over the process-wide default).
    pub fn with_advice(mut self, advice: impl Into<AdviceSetting>) -> Self {
        self.advice = advice.into();
        self
    }

    /// These options with batched reads forced to `backend`.
    pub fn with_read_backend(mut self, backend: ReadBackend) -> Self {
        self.read_backend = Some(backend);
        self
    }

    /// These options with `depth` io_uring requests in flight.
    pub fn with_queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// These options with scattered `get_batch` reads served by io_uring.
    pub fn with_batch_reads_via_uring(mut self, on: bool) -> Self {
        self.batch_reads_via_uring = on;
        self
    }

    /// These options with `coalescing` for batched reads.
    pub fn with_read_coalescing(mut self, coalescing: ReadCoalescing) -> Self {
        self.read_coalescing = coalescing;
        self
    }
}

impl Default for MmapVectorOptions {
    fn default() -> Self {
        MmapVectorOptions {
            multi_mmap: true,
            populate: false,
            advice: AdviceSetting::Global,
            read_backend: None,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            batch_reads_via_uring: false,
            read_coalescing: ReadCoalescing::default(),
        }
    }
}

/// A batch reader configured by `options` (backend, queue depth, coalescing).
fn batch_reader(options: &MmapVectorOptions) -> BatchReader {
    let backend = options
        .read_backend
        .unwrap_or_else(crate::uring::detected_backend);
    let mut reader = BatchReader::with_backend(backend, options.queue_depth);
    reader.set_coalescing(options.read_coalescing);
    reader
}

fn multi_mmap_disabled_by_env() -> bool {
    std::env::var(NO_MULTI_MMAP_ENV).is_ok_and(|v| v == "1")
}

/// An immutable, memory-mapped vector storage (read + delete).
///
/// `T` is the element type (`f32`, `u8`); it is checked against the file's
/// element tag on open.
#[derive(Debug)]
pub struct MmapVectorStorage<T: VectorElement = f32> {
    dir: PathBuf,
    dim: usize,
    count: usize,
    distance: Distance,
    data_offset: usize,
    vector_bytes: usize,
    random: MmapFile,
    sequential: Option<MmapFile>,
    /// A separate descriptor of `matrix.dat` advised `POSIX_FADV_RANDOM`
    /// for batched reads (the mappings keep their own advice).
    reader_file: File,
    deleted: CheckedBitmap,
    deleted_count: usize,
    options: MmapVectorOptions,
    reader: Mutex<BatchReader>,
    /// Whether the shared reader uses io_uring (kept outside the mutex so
    /// `io_backend` never blocks, even from inside a batch callback).
    reader_uses_uring: AtomicBool,
    uring_reads: AtomicU64,
    pread_reads: AtomicU64,
    read_requests: AtomicU64,
    _element: PhantomData<fn() -> T>,
}

impl<T: VectorElement> MmapVectorStorage<T> {
    /// Write every vector and deleted flag of `source` into `dir` (created
    /// if missing) and open the result.
    ///
    /// `matrix.dat` is written sequentially through a `BufWriter` to
    /// `matrix.dat.tmp`, fsynced and renamed; `deleted.dat` likewise; then
    /// the directory is fsynced. Existing files are replaced. Build into a
    /// fresh directory when a crash must not leave a half-built storage
    /// where a complete one is expected.
    pub fn build<S>(dir: &Path, source: &S, options: MmapVectorOptions) -> Result<Self>
    where
        S: VectorStorageRead<Element = T> + ?Sized,
    {
        let dim = source.dim();
        if dim == 0 || dim > MAX_DIM {
            return Err(StorageError::InvalidArgument(format!(
                "dimension must be in 1..={MAX_DIM}, got {dim}"
            )));
        }
        let count = source.total_count();
        if count > PointOffset::MAX as usize + 1 {
            return Err(StorageError::InvalidArgument(format!(
                "{count} vectors do not fit in 32-bit offsets"
            )));
        }
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(MATRIX_FILE);
        let tmp = dir.join(format!("{MATRIX_FILE}.tmp"));
        let header = MatrixHeader {
            prefix: FilePrefix::new::<MatrixHeader>(MATRIX_MAGIC, MATRIX_VERSION),
            element_tag: T::TAG,
            element_size: std::mem::size_of::<T>() as u32,
            dim: dim as u64,
            count: count as u64,
            data_offset: DATA_OFFSET as u64,
            distance: distance_code(source.distance()),
            reserved0: 0,
            reserved1: 0,
        };
        {
            let file = File::create(&tmp).at(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            w.write_all(bytemuck::bytes_of(&header)).at(&tmp)?;
            w.write_all(&[0u8; DATA_OFFSET][..DATA_OFFSET - HEADER_LEN])
                .at(&tmp)?;
            for o in 0..count {
                let v = source.get::<vecseg_traits::Sequential>(o as PointOffset)?;
                if v.len() != dim {
                    return Err(StorageError::DimensionMismatch {
                        expected: dim,
                        got: v.len(),
                    });
                }
                w.write_all(bytemuck::cast_slice(&v)).at(&tmp)?;
            }
            let file = w
                .into_inner()
                .map_err(|e| StorageError::io(&tmp, e.into_error()))?;
            file.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &path).at(&path)?;
        let mut deleted = vec![0u64; count.div_ceil(64)];
        for o in 0..count {
            if source.is_deleted(o as PointOffset) {
                deleted[o / 64] |= 1 << (o % 64);
            }
        }
        CheckedBitmap::create(&dir.join(DELETED_FILE), count, &deleted)?;
        fsync_dir(dir)?;
        Self::open(dir, options)
    }

    /// Open the storage in `dir`, validating both files.
    ///
    /// Wrong magic, element type, size, alignment or dimension, a truncated
    /// file, or a deleted-flags file of the wrong length give
    /// [`StorageError::Corrupted`] naming the file; a format version this
    /// build does not read gives [`StorageError::UnsupportedVersion`].
    pub fn open(dir: &Path, options: MmapVectorOptions) -> Result<Self> {
        let path = dir.join(MATRIX_FILE);
        let random = MmapFile::open(&path, options.advice.resolve(Advice::Random))?;
        let header: MatrixHeader =
            read_header(&path, random.bytes(), MATRIX_MAGIC, MATRIX_VERSION)?;
        let bad = |reason: String| Err(StorageError::corrupted(&path, reason));
        if header.element_tag != T::TAG || header.element_size as usize != std::mem::size_of::<T>()
        {
            return bad(format!(
                "element tag {} of size {} in file, but opened as {} (tag {}, size {})",
                header.element_tag,
                header.element_size,
                T::NAME,
                T::TAG,
                std::mem::size_of::<T>()
            ));
        }
        let Some(distance) = distance_from_code(header.distance) else {
            return bad(format!("unknown distance code {}", header.distance));
        };
        let dim = match usize::try_from(header.dim) {
            Ok(d) if (1..=MAX_DIM).contains(&d) => d,
            _ => return bad(format!("dimension {} not in 1..={MAX_DIM}", header.dim)),
        };
        let count = match usize::try_from(header.count) {
            Ok(c) if c <= PointOffset::MAX as usize + 1 => c,
            _ => return bad(format!("vector count {} too large", header.count)),
        };
        let data_offset = match usize::try_from(header.data_offset) {
            Ok(o) if o >= HEADER_LEN && o % DATA_ALIGN == 0 => o,
            _ => {
                return bad(format!(
                    "data offset {} is not a multiple of {DATA_ALIGN} past the header",
                    header.data_offset
                ))
            }
        };
        let vector_bytes = dim * std::mem::size_of::<T>();
        let expected = count
            .checked_mul(vector_bytes)
            .and_then(|b| b.checked_add(data_offset));
        if expected != Some(random.len()) {
            return bad(format!(
                "file is {} bytes, but {count} vectors of dim {dim} ({}) need {}",
                random.len(),
                T::NAME,
                expected.map_or_else(|| "more than addressable".to_string(), |e| e.to_string())
            ));
        }

        let multi_mmap = options.multi_mmap && !multi_mmap_disabled_by_env();
        let sequential = if multi_mmap {
            let seq = MmapFile::open(&path, Advice::Sequential)?;
            // The process-wide default applies to point reads only; scans
            // always want read-ahead.
            seq.advise(Advice::Sequential);
            Some(seq)
        } else {
            None
        };

        let deleted_path = dir.join(DELETED_FILE);
        convert_deleted_v1(&deleted_path)?;
        let deleted = CheckedBitmap::open(&deleted_path)?;
        if deleted.len() != count {
            return Err(StorageError::corrupted(
                &deleted_path,
                format!(
                    "holds {} flags but {} holds {count} vectors",
                    deleted.len(),
                    path.display()
                ),
            ));
        }
        let deleted_count = deleted.count_ones();
        let reader_file = File::open(&path).at(&path)?;
        if let Err(e) = crate::raw::uring::advise_random_reads(&reader_file) {
            log::warn!(
                "posix_fadvise(RANDOM) failed on {}: {e}; batched reads may read ahead",
                path.display()
            );
        }
        let reader = batch_reader(&options);
        let reader_uses_uring = AtomicBool::new(reader.backend() == ReadBackend::IoUring);
        let storage = MmapVectorStorage {
            dir: dir.to_path_buf(),
            dim,
            count,
            distance,
            data_offset,
            vector_bytes,
            random,
            sequential,
            reader_file,
            deleted,
            deleted_count,
            options,
            reader: Mutex::new(reader),
            reader_uses_uring,
            uring_reads: AtomicU64::new(0),
            pread_reads: AtomicU64::new(0),
            read_requests: AtomicU64::new(0),
            _element: PhantomData,
        };
        // Size and alignment of the data as `[T]`, checked once up front.
        storage.data(&storage.random)?;
        if let Some(seq) = &storage.sequential {
            storage.data(seq)?;
        }
        if storage.options.populate {
            storage.populate();
        }
        Ok(storage)
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `matrix.dat`.
    pub fn matrix_path(&self) -> &Path {
        self.random.path()
    }

    /// The options the storage was opened with.
    pub fn options(&self) -> &MmapVectorOptions {
        &self.options
    }

    /// Whether a second, sequentially advised mapping is in use.
    pub fn has_sequential_mapping(&self) -> bool {
        self.sequential.is_some()
    }

    /// All vectors (deleted ones included) as one flat slice, from the
    /// sequential mapping when there is one.
    pub fn as_flat(&self) -> Result<&[T]> {
        self.data(self.sequential.as_ref().unwrap_or(&self.random))
    }

    /// Fault every page of `matrix.dat` into the mapping(s).
    pub fn populate(&self) {
        self.random.populate();
        if let Some(seq) = &self.sequential {
            seq.populate();
        }
    }

    /// Drop the mappings' pages and evict `matrix.dat` from the page cache,
    /// so the next reads come from disk (for cold-cache measurements).
    pub fn clear_cache(&self) -> Result<()> {
        if let Some(seq) = &self.sequential {
            seq.clear_cache()?;
        }
        self.random.clear_cache()
    }

    /// The backend [`MmapVectorStorage::read_batch_uring`] uses now
    /// ([`ReadBackend::Pread`] when io_uring is unavailable, was disabled,
    /// or failed).
    pub fn io_backend(&self) -> ReadBackend {
        if self.reader_uses_uring.load(Ordering::Relaxed) {
            ReadBackend::IoUring
        } else {
            ReadBackend::Pread
        }
    }

    /// Vectors read by [`MmapVectorStorage::read_batch_uring`] so far, per backend.
    pub fn io_counts(&self) -> ReadCounts {
        ReadCounts {
            io_uring: self.uring_reads.load(Ordering::Relaxed),
            pread: self.pread_reads.load(Ordering::Relaxed),
            requests: self.read_requests.load(Ordering::Relaxed),
        }
    }

    /// Read the vectors at `offsets` from the file (not through the
    /// mapping) with many io_uring requests in flight, calling `f(i, v)`
    /// once for `offsets[i]`, in completion order. Falls back to `pread`
    /// where io_uring is unavailable (see [`MmapVectorStorage::io_backend`]).
    ///
    /// Meant for data that is not in the page cache: one batch costs about
    /// one disk round trip per `queue_depth` requests instead of one per
    /// vector, and vectors close together in the file share a request
    /// ([`MmapVectorOptions::read_coalescing`]).
    pub fn read_batch_uring(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[T]),
    ) -> Result<()> {
        self.check_offsets(offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let positions: Vec<u64> = offsets
            .iter()
            .map(|&o| (self.data_offset + o as usize * self.vector_bytes) as u64)
            .collect();
        let mut temp;
        let mut guard: MutexGuard<'_, BatchReader>;
        let mut shared = true;
        let reader: &mut BatchReader = match self.reader.try_lock() {
            Ok(g) => {
                guard = g;
                &mut guard
            }
            // A callback panicked in an earlier batch; the reader waits for
            // that batch's leftovers itself.
            Err(TryLockError::Poisoned(p)) => {
                guard = p.into_inner();
                &mut guard
            }
            Err(TryLockError::WouldBlock) => {
                // Another thread is reading: use a reader of our own
                // rather than wait.
                shared = false;
                temp = batch_reader(&self.options);
                &mut temp
            }
        };
        let path = self.random.path();
        let mut cast_error = None;
        let counts = reader.read(
            &self.reader_file,
            path,
            &positions,
            self.vector_bytes,
            &mut |i, bytes| match bytemuck::try_cast_slice::<u8, T>(bytes) {
                Ok(v) if cast_error.is_none() => f(i, v),
                Ok(_) => {}
                Err(e) => cast_error = Some(e),
            },
        );
        if shared {
            self.reader_uses_uring
                .store(reader.backend() == ReadBackend::IoUring, Ordering::Relaxed);
        }
        let counts = counts?;
        self.uring_reads
            .fetch_add(counts.io_uring, Ordering::Relaxed);
        self.pread_reads.fetch_add(counts.pread, Ordering::Relaxed);
        self.read_requests
            .fetch_add(counts.requests, Ordering::Relaxed);
        match cast_error {
            Some(e) => Err(StorageError::corrupted(
                path,
                format!("read buffer cannot be viewed as {}: {e}", T::NAME),
            )),
            None => Ok(()),
        }
    }

    fn check_offsets(&self, offsets: &[PointOffset]) -> Result<()> {
        match offsets.iter().find(|&&o| o as usize >= self.count) {
            Some(&offset) => Err(StorageError::OffsetOutOfRange {
                offset,
                len: self.count,
            }),
            None => Ok(()),
        }
    }

    /// The data region of `map` as `[T]` (checked cast: size and alignment).
    #[inline]
    fn data<'a>(&self, map: &'a MmapFile) -> Result<&'a [T]> {
        let bytes = map
            .bytes()
            .get(self.data_offset..)
            .ok_or_else(|| StorageError::corrupted(map.path(), "file shorter than its header"))?;
        cast_slice(map.path(), bytes)
    }

    #[inline]
    fn map_for<P: AccessPattern>(&self) -> &MmapFile {
        match &self.sequential {
            Some(seq) if P::IS_SEQUENTIAL => seq,
            _ => &self.random,
        }
    }

    #[inline]
    /// Whether a batch is probably in the page cache: the pages of a few
    /// of its vectors, spread over the batch, are all resident. A warm
    /// batch reads faster through the mapping than through io_uring (a
    /// 1%-filtered search on 200k × 128: 4 ms through io_uring, 0.2 ms
    /// through the mapping); a cold one the other way round.
    fn looks_resident(&self, offsets: &[PointOffset]) -> bool {
        const PROBES: usize = 8;
        let vector_bytes = self.dim * std::mem::size_of::<T>();
        let step = (offsets.len() / PROBES).max(1);
        offsets.iter().step_by(step).take(PROBES).all(|&o| {
            self.random
                .is_resident(self.data_offset + o as usize * vector_bytes)
        })
    }

    fn vector_in<'a>(&self, data: &'a [T], offset: PointOffset) -> Result<&'a [T]> {
        let out_of_range = StorageError::OffsetOutOfRange {
            offset,
            len: self.count,
        };
        if offset as usize >= self.count {
            return Err(out_of_range);
        }
        let start = offset as usize * self.dim;
        data.get(start..start + self.dim).ok_or(out_of_range)
    }
}

impl<T: VectorElement> VectorStorageRead for MmapVectorStorage<T> {
    type Element = T;
    type Vector<'a> = &'a [T];
    type Scorer<'a> = RawScorer<'a, Self>;

    fn scorer(&self, query: &[T]) -> Result<Self::Scorer<'_>> {
        Ok(RawScorer::new(self, query))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn distance(&self) -> Distance {
        self.distance
    }

    fn total_count(&self) -> usize {
        self.count
    }

    fn deleted_count(&self) -> usize {
        self.deleted_count
    }

    #[inline]
    fn get<P: AccessPattern>(&self, offset: PointOffset) -> Result<&[T]> {
        let data = self.data(self.map_for::<P>())?;
        self.vector_in(data, offset)
    }

    fn prefetch(&self, offset: PointOffset) {
        if let Ok(data) = self.data(&self.random) {
            if let Ok(v) = self.vector_in(data, offset) {
                crate::prefetch(v);
            }
        }
    }

    /// Reads through the sequential mapping when the offsets are clustered
    /// (`max - min < 2 * len`, so read-ahead pays off) and through the
    /// random one otherwise, whatever `P` says. With
    /// [`MmapVectorOptions::batch_reads_via_uring`], scattered batches are
    /// read with io_uring instead, unless a probe of a few of their pages
    /// finds them in memory.
    fn get_batch<P: AccessPattern>(
        &self,
        offsets: &[PointOffset],
        f: &mut dyn FnMut(usize, &[T]),
    ) -> Result<()> {
        let (Some(&min), Some(&max)) = (offsets.iter().min(), offsets.iter().max()) else {
            return Ok(());
        };
        self.check_offsets(&[max])?;
        let clustered = ((max - min) as usize) < 2 * offsets.len();
        if !clustered && self.options.batch_reads_via_uring && !self.looks_resident(offsets) {
            return self.read_batch_uring(offsets, f);
        }
        let map = match &self.sequential {
            Some(seq) if clustered => seq,
            _ => &self.random,
        };
        let data = self.data(map)?;
        for (i, &o) in offsets.iter().enumerate() {
            // Start the misses of a vector a few reads ahead, so scattered
            // warm reads overlap instead of waiting one by one.
            if let Some(ahead) = offsets.get(i + vecseg_traits::vector::PREFETCH_AHEAD) {
                if let Ok(v) = self.vector_in(data, *ahead) {
                    crate::prefetch(v);
                }
            }
            f(i, self.vector_in(data, o)?);
        }
        Ok(())
    }

    fn deleted_bits(&self) -> &BitSlice<u64> {
        let bits = BitSlice::from_slice(self.deleted.words());
        bits.get(..self.count).unwrap_or(bits)
    }

    /// One checked cast of the whole matrix, then the shared block scan
    /// (instead of a header check and cast per vector through `get`).
    fn scan_live<P: AccessPattern, F: FnMut(PointOffset, &[T])>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        let data = self.data(self.map_for::<P>())?;
        vecseg_traits::vector::scan_flat(data, self.dim, 0, self.deleted_bits(), range, f);
        Ok(())
    }

    /// The same single cast, lending blocks of the matrix.
    fn scan_blocks<P: AccessPattern, F: FnMut(PointOffset, &[T], u64)>(
        &self,
        range: std::ops::Range<PointOffset>,
        f: F,
    ) -> Result<()> {
        let data = self.data(self.map_for::<P>())?;
        vecseg_traits::vector::scan_flat_blocks(data, self.dim, 0, self.deleted_bits(), range, f);
        Ok(())
    }

    fn contiguous<P: AccessPattern>(&self) -> Result<Option<&[T]>> {
        self.data(self.map_for::<P>()).map(Some)
    }

    fn disk_bytes(&self) -> u64 {
        self.random.len() as u64 + self.deleted.file_len()
    }

    /// The deleted bitmap's generation (+1 per flush that deleted vectors).
    fn durable_sequence(&self) -> Option<u64> {
        Some(self.deleted.generation())
    }

    fn drop_page_cache(&self) -> Result<bool> {
        self.clear_cache()?;
        Ok(true)
    }
}

impl<T: VectorElement> VectorStorage for MmapVectorStorage<T> {
    /// Set the flag in RAM; durable at [`flush_deleted`](Self::flush_deleted).
    fn delete(&mut self, offset: PointOffset) -> Result<bool> {
        self.check_offset(offset)?;
        let was_deleted = self.deleted.set(offset)?;
        if !was_deleted {
            self.deleted_count += 1;
        }
        Ok(!was_deleted)
    }

    /// Nothing: the vectors are immutable.
    fn flush_data(&mut self) -> Result<()> {
        Ok(())
    }

    /// Write the deleted flags (both copies of the checked bitmap). The
    /// segment calls this after the id mapper's flush, so a flag on disk
    /// never hides a point whose mapping is on disk.
    fn flush_deleted(&mut self) -> Result<()> {
        self.deleted.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecseg_memory::MemoryVectorStorage;
    use vecseg_traits::{AppendableVectorStorage, Random, Sequential};

    fn source(n: usize, dim: usize) -> MemoryVectorStorage<f32> {
        let mut s = MemoryVectorStorage::new(dim, Distance::Dot).unwrap();
        for i in 0..n {
            let v: Vec<f32> = (0..dim).map(|j| (i * dim + j) as f32).collect();
            s.insert(i as PointOffset, &v).unwrap();
        }
        s
    }

    #[test]
    fn deletes_are_durable_at_flush_and_format_1_flags_are_converted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s =
            MmapVectorStorage::build(dir.path(), &source(70, 2), MmapVectorOptions::default())
                .unwrap();
        let start = s.durable_sequence().unwrap();
        assert!(s.delete(3).unwrap());
        s.flush_deleted().unwrap();
        assert!(s.delete(65).unwrap());
        assert!(s.is_deleted(65));
        drop(s); // 65 not flushed: lost, as after a kill
        let s = MmapVectorStorage::<f32>::open(dir.path(), MmapVectorOptions::default()).unwrap();
        assert!(s.is_deleted(3) && !s.is_deleted(65));
        assert_eq!(s.deleted_count(), 1);
        assert_eq!(s.durable_sequence(), Some(start + 1));
        drop(s);
        // A format-1 file (plain bit slice) with offsets 1 and 69 deleted.
        let path = dir.path().join(DELETED_FILE);
        MmapBitSlice::create_from(&path, (0..70).map(|o| o == 1 || o == 69)).unwrap();
        let s = MmapVectorStorage::<f32>::open(dir.path(), MmapVectorOptions::default()).unwrap();
        let deleted: Vec<usize> = s.deleted_bits().iter_ones().collect();
        assert_eq!(deleted, vec![1, 69]);
        assert_eq!(s.deleted_count(), 2);
        assert_eq!(&std::fs::read(&path).unwrap()[..8], b"VSCKBMAP");
    }

    #[test]
    fn header_is_64_bytes_and_data_is_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(5, 3);
        let s = MmapVectorStorage::build(dir.path(), &src, MmapVectorOptions::default()).unwrap();
        let raw = std::fs::read(dir.path().join(MATRIX_FILE)).unwrap();
        assert_eq!(&raw[..8], b"VSMATRIX");
        assert_eq!(raw.len(), DATA_OFFSET + 5 * 3 * 4);
        assert_eq!(&raw[DATA_OFFSET + 4..DATA_OFFSET + 8], &1f32.to_le_bytes());
        assert_eq!(s.as_flat().unwrap(), src.as_flat());
        assert_eq!(s.as_flat().unwrap().as_ptr() as usize % DATA_OFFSET, 0);
        assert_eq!(s.get::<Random>(4).unwrap(), &[12.0, 13.0, 14.0]);
        assert_eq!(s.get::<Sequential>(1).unwrap(), &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn batches_pick_a_mapping_by_spread_and_uring_matches() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(100, 4);
        let opts = MmapVectorOptions {
            batch_reads_via_uring: true,
            ..Default::default()
        };
        let s = MmapVectorStorage::build(dir.path(), &src, opts).unwrap();
        for offsets in [vec![3u32, 4, 5, 6], vec![0, 99, 50], vec![]] {
            // Cold, so the scattered batch is not served by the mapping.
            s.clear_cache().unwrap();
            let mut got = vec![Vec::new(); offsets.len()];
            s.get_batch::<Random>(&offsets, &mut |i, v| got[i] = v.to_vec())
                .unwrap();
            for (i, &o) in offsets.iter().enumerate() {
                assert_eq!(got[i], src.get::<Random>(o).unwrap());
            }
        }
        assert!(s.io_counts().io_uring + s.io_counts().pread >= 3);
    }
}
