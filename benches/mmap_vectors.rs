//! `MmapVectorStorage` against `MemoryVectorStorage` on 200k × 128 f32
//! (≈100 MB):
//!
//! * `scan_dot`: score every vector against a query (page cache warm,
//!   mapping populated) — throughput in vectors/s;
//! * `random_get_dot`: `get::<Random>` + dot for 4,096 random offsets;
//! * `cold_4096`: the page cache dropped (`clear_cache`) before each batch of
//!   4,096 random offsets, read through io_uring (64 in flight) with the
//!   default read coalescing and with one request per vector, through plain
//!   mmap page faults, and with `pread`;
//! * `cold_coalescing`: the io_uring batch under other coalescing rules
//!   (largest gap read through / largest request), to tune
//!   `ReadCoalescing` for a device.
//!
//! Run: `cargo bench --bench mmap_vectors -- --warm-up-time 1 --measurement-time 3`.
//! Set `VECSEG_BENCH_N` to change the number of vectors.

// criterion_group! expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use vecseg::distance::dot_f32;
use vecseg::memory::MemoryVectorStorage;
use vecseg::{
    AppendableVectorStorage, Distance, PointOffset, Random, Sequential, VectorStorageRead,
};
use vecseg_mmap::{MmapVectorOptions, MmapVectorStorage, ReadBackend, ReadCoalescing};

const DIM: usize = 128;
const BATCH: usize = 4096;

/// SplitMix64, so runs are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn n_vectors() -> usize {
    std::env::var("VECSEG_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn memory_storage(n: usize, rng: &mut Rng) -> MemoryVectorStorage<f32> {
    let mut s = MemoryVectorStorage::new(DIM, Distance::Dot).expect("storage");
    s.reserve(n);
    let mut v = vec![0f32; DIM];
    for o in 0..n {
        v.iter_mut().for_each(|x| *x = rng.unit());
        s.insert(o as PointOffset, &v).expect("insert");
    }
    s
}

fn scan<S: VectorStorageRead<Element = f32>>(s: &S, q: &[f32]) -> f32 {
    let mut best = f32::MIN;
    for o in 0..s.total_count() as PointOffset {
        if let Ok(v) = s.get::<Sequential>(o) {
            best = best.max(dot_f32(&v, q));
        }
    }
    best
}

fn random_gets<S: VectorStorageRead<Element = f32>>(s: &S, ids: &[PointOffset], q: &[f32]) -> f32 {
    let mut sum = 0.0;
    for &o in ids {
        if let Ok(v) = s.get::<Random>(o) {
            sum += dot_f32(&v, q);
        }
    }
    sum
}

fn open(dir: &Path, backend: Option<ReadBackend>, populate: bool) -> MmapVectorStorage<f32> {
    open_coalescing(dir, backend, populate, ReadCoalescing::default())
}

fn open_coalescing(
    dir: &Path,
    backend: Option<ReadBackend>,
    populate: bool,
    read_coalescing: ReadCoalescing,
) -> MmapVectorStorage<f32> {
    let options = MmapVectorOptions {
        populate,
        read_backend: backend,
        read_coalescing,
        ..Default::default()
    };
    MmapVectorStorage::open(dir, options).expect("open mmap storage")
}

fn benches(c: &mut Criterion) {
    let n = n_vectors();
    let mut rng = Rng(7);
    let memory = memory_storage(n, &mut rng);
    let query: Vec<f32> = (0..DIM).map(|_| rng.unit()).collect();
    let ids: Vec<PointOffset> = (0..BATCH).map(|_| rng.below(n) as PointOffset).collect();
    // A directory on the real disk (not tmpfs), so dropping the page cache
    // really sends reads to the device.
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::Builder::new()
        .prefix("vecseg-bench-mmap-")
        .tempdir_in(&base)
        .expect("tempdir");
    drop(
        MmapVectorStorage::build(dir.path(), &memory, MmapVectorOptions::default()).expect("build"),
    );

    {
        let mmap = open(dir.path(), None, true);
        let mut g = c.benchmark_group("scan_dot");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("memory", |b| b.iter(|| black_box(scan(&memory, &query))));
        g.bench_function("mmap", |b| b.iter(|| black_box(scan(&mmap, &query))));
        g.finish();

        let mut g = c.benchmark_group("random_get_dot");
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function("memory", |b| {
            b.iter(|| black_box(random_gets(&memory, &ids, &query)))
        });
        g.bench_function("mmap", |b| {
            b.iter(|| black_box(random_gets(&mmap, &ids, &query)))
        });
        g.finish();
        // Dropped here: a populated mapping would keep the pages cached.
    }
    drop(memory);

    let uring = open(dir.path(), None, false);
    let uring_single = open_coalescing(dir.path(), None, false, ReadCoalescing::OFF);
    let pread = open(dir.path(), Some(ReadBackend::Pread), false);
    // The same file mapped with the kernel's default read-ahead (no
    // MADV_RANDOM, single mapping): what a naive mmap reader gets.
    let default_advice = MmapVectorStorage::<f32>::open(
        dir.path(),
        MmapVectorOptions {
            advice: vecseg_mmap::Advice::Normal.into(),
            multi_mmap: false,
            ..Default::default()
        },
    )
    .expect("open mmap storage");
    eprintln!(
        "cold_4096: batched reads use {:?} (io_uring unavailable reason: {:?})",
        uring.io_backend(),
        vecseg_mmap::io_uring_unavailable_reason()
    );
    let clear = || {
        uring.clear_cache().expect("clear cache");
        uring_single.clear_cache().expect("clear cache");
        pread.clear_cache().expect("clear cache");
        default_advice.clear_cache().expect("clear cache");
    };
    let mut g = c.benchmark_group("cold_4096");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("io_uring", |b| {
        b.iter_batched(
            clear,
            |()| black_box(cold_batch(&uring, &ids, &query)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("io_uring_one_request_per_vector", |b| {
        b.iter_batched(
            clear,
            |()| black_box(cold_batch(&uring_single, &ids, &query)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("mmap_page_faults", |b| {
        b.iter_batched(
            clear,
            |()| black_box(random_gets(&uring, &ids, &query)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("mmap_page_faults_default_readahead", |b| {
        b.iter_batched(
            clear,
            |()| black_box(random_gets(&default_advice, &ids, &query)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("pread", |b| {
        b.iter_batched(
            clear,
            |()| black_box(cold_batch(&pread, &ids, &query)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    for s in [&uring, &uring_single] {
        let c = s.io_counts();
        eprintln!(
            "cold_4096: {} vectors read with {} requests ({:.2} vectors per request)",
            c.io_uring + c.pread,
            c.requests,
            (c.io_uring + c.pread) as f64 / c.requests.max(1) as f64
        );
    }
    drop((uring, uring_single, pread, default_advice));

    let mut g = c.benchmark_group("cold_coalescing");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    for (gap_kib, request_kib) in [(4, 64), (8, 64), (16, 64), (32, 64), (16, 128), (64, 256)] {
        let rules = ReadCoalescing {
            max_gap: gap_kib * 1024,
            max_request: request_kib * 1024,
        };
        let s = open_coalescing(dir.path(), None, false, rules);
        g.bench_function(format!("gap_{gap_kib}k_request_{request_kib}k"), |b| {
            b.iter_batched(
                || s.clear_cache().expect("clear cache"),
                |()| black_box(cold_batch(&s, &ids, &query)),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// One batch through [`MmapVectorStorage::read_batch_uring`].
fn cold_batch(s: &MmapVectorStorage<f32>, ids: &[PointOffset], q: &[f32]) -> f32 {
    let mut sum = 0.0;
    s.read_batch_uring(ids, &mut |_, v| sum += dot_f32(v, q))
        .expect("batch read");
    sum
}

criterion_group!(mmap_vectors, benches);
criterion_main!(mmap_vectors);
