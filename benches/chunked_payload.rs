//! Chunked storages against the memory (and RocksDB) backends, same run.
//!
//! * `payload_fetch`: 4,096 random fetches of the stored bytes of ~200-byte
//!   payloads (100k stored): `ChunkedPayloadStorage::get_raw` (zero-copy
//!   MessagePack bytes), a RocksDB pinned point get of the same offsets'
//!   stored bytes, and `MemoryPayloadStorage::get_ref` (its stored form is
//!   the parsed object). Decoding is reported separately (`decode_*`), and
//!   full `get` (fetch + decode) for each backend.
//! * `vector_scan`: dot product of a query with all 200k × 128 f32 vectors,
//!   `get::<Sequential>` per offset, memory vs chunked (populated); plus
//!   the chunked whole-chunk path (`chunk_slice`).
//!
//! Run: `cargo bench --bench chunked_payload -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use vecseg::memory::{MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::Rng;
use vecseg::{
    AppendablePayloadStorage, AppendableVectorStorage, Distance, Payload, PayloadStorage,
    PayloadStorageRead, PointOffset, Sequential, VectorStorage, VectorStorageRead,
};
use vecseg_chunked::{
    ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions, ChunkedVectorStorage,
};

const PAYLOADS: usize = 100_000;
const FETCHES: usize = 4096;
const VECTORS: usize = 200_000;
const DIM: usize = 128;

fn payload(rng: &mut Rng, i: usize) -> Payload {
    json!({
        "tenant": format!("tenant-{}", rng.below(100)),
        "id": i,
        "price": rng.unit() as f64 * 1000.0,
        "tags": ["red", "green", format!("t{}", rng.below(1000))],
        "title": "x".repeat(60 + rng.below(40)),
        "in_stock": rng.below(2) == 0,
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn payload_fetch(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut chunked =
        ChunkedPayloadStorage::create(&dir.path().join("chunked"), ChunkedPayloadOptions::in_ram())
            .unwrap();
    let mut memory = MemoryPayloadStorage::new();
    let rocks_db = vecseg_rocksdb::RocksDb::open(&dir.path().join("rocks")).unwrap();
    let mut rocks = vecseg_rocksdb::RocksPayloadStorage::open(rocks_db.clone()).unwrap();
    let mut rng = Rng::new(1);
    let mut stored_bytes = 0usize;
    for i in 0..PAYLOADS {
        let p = payload(&mut rng, i);
        stored_bytes += ChunkedPayloadStorage::encode(&p).unwrap().len();
        chunked.overwrite(i as PointOffset, &p).unwrap();
        memory.overwrite(i as PointOffset, &p).unwrap();
        rocks.overwrite(i as PointOffset, &p).unwrap();
    }
    chunked.flush().unwrap();
    rocks.flush().unwrap();
    rocks_db.flush_memtables().unwrap();
    eprintln!(
        "payload_fetch: mean stored (MessagePack) size {} bytes",
        stored_bytes / PAYLOADS
    );
    let ids: Vec<PointOffset> = (0..FETCHES)
        .map(|_| rng.below(PAYLOADS) as PointOffset)
        .collect();
    let cf = rocks_db
        .inner()
        .cf_handle(vecseg_rocksdb::db::CF_PAYLOAD)
        .unwrap();
    // Warm both.
    for &o in &ids {
        black_box(chunked.get_raw(o).unwrap());
        black_box(rocks_db.inner().get_pinned_cf(cf, o.to_be_bytes()).unwrap());
    }

    let mut g = c.benchmark_group("payload_fetch");
    g.throughput(Throughput::Elements(FETCHES as u64));
    g.bench_function("chunked_get_raw", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &o in &ids {
                n += chunked.get_raw(o).unwrap().map_or(0, |v| v.len());
            }
            n
        })
    });
    g.bench_function("rocksdb_get_pinned_raw", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &o in &ids {
                n += rocks_db
                    .inner()
                    .get_pinned_cf(cf, o.to_be_bytes())
                    .unwrap()
                    .map_or(0, |v| v.len());
            }
            n
        })
    });
    g.bench_function("memory_get_ref", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &o in &ids {
                n += memory.get_ref(o).map_or(0, |p| p.len());
            }
            n
        })
    });
    let raw: Vec<Vec<u8>> = ids
        .iter()
        .map(|&o| chunked.get_raw(o).unwrap().unwrap().to_vec())
        .collect();
    g.bench_function("decode_msgpack_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for bytes in &raw {
                n += ChunkedPayloadStorage::decode(bytes).unwrap().len();
            }
            n
        })
    });
    let json_raw: Vec<Vec<u8>> = ids
        .iter()
        .map(|&o| serde_json::to_vec(memory.get_ref(o).unwrap()).unwrap())
        .collect();
    g.bench_function("decode_json_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for bytes in &json_raw {
                n += serde_json::from_slice::<Payload>(bytes).unwrap().len();
            }
            n
        })
    });
    g.bench_function("chunked_get_decoded", |b| {
        b.iter(|| {
            ids.iter()
                .map(|&o| chunked.get(o).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("rocksdb_get_decoded", |b| {
        b.iter(|| {
            ids.iter()
                .map(|&o| rocks.get(o).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("memory_get_cloned", |b| {
        b.iter(|| {
            ids.iter()
                .map(|&o| memory.get(o).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    Distance::Dot.score_f32(a, b)
}

fn vector_scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2);
    let mut memory = MemoryVectorStorage::<f32>::new(DIM, Distance::Dot).unwrap();
    let mut chunked = ChunkedVectorStorage::<f32>::create(
        dir.path(),
        DIM,
        Distance::Dot,
        ChunkedVectorOptions::in_ram(),
    )
    .unwrap();
    for i in 0..VECTORS {
        let v = rng.vector(DIM);
        memory.insert(i as PointOffset, &v).unwrap();
        chunked.insert(i as PointOffset, &v).unwrap();
    }
    chunked.flush().unwrap();
    drop(chunked);
    let chunked = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    let query = rng.vector(DIM);

    let mut g = c.benchmark_group("vector_scan");
    g.throughput(Throughput::Elements(VECTORS as u64));
    g.bench_function("memory_get_sequential", |b| {
        b.iter(|| {
            let mut s = 0.0f32;
            for o in 0..VECTORS as PointOffset {
                s += dot(&query, memory.get::<Sequential>(o).unwrap());
            }
            s
        })
    });
    g.bench_function("chunked_get_sequential", |b| {
        b.iter(|| {
            let mut s = 0.0f32;
            for o in 0..VECTORS as PointOffset {
                s += dot(&query, chunked.get::<Sequential>(o).unwrap());
            }
            s
        })
    });
    g.bench_function("chunked_chunk_slices", |b| {
        b.iter(|| {
            let mut s = 0.0f32;
            for c in 0..chunked.chunk_count() {
                for v in chunked.chunk_slice(c).unwrap().chunks_exact(DIM) {
                    s += dot(&query, v);
                }
            }
            s
        })
    });
    g.finish();
    let _ = memory.flush();
}

criterion_group!(benches, payload_fetch, vector_scan);
criterion_main!(benches);
