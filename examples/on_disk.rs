//! The on-disk life of a segment: fill an appendable chunked segment, build
//! the immutable mmap segment from it (as the optimizer would), search it,
//! then read a batch of vectors that are not in the page cache with io_uring.
//!
//! Run: `cargo run --release --example on_disk [POINTS]` (default 50,000).
//! Files go to a temporary directory on the system's temp disk.

use std::error::Error;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vecseg::kinds;
use vecseg::migrate::build_mmap;
use vecseg::mmap::MmapVectorOptions;
use vecseg::{Condition, Distance, Filter, PointId, PointOffset, Random, VectorStorageRead};

const DIM: usize = 128;

fn main() -> Result<(), Box<dyn Error>> {
    let points: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|e| format!("POINTS {n:?}: {e}"))?,
        None => 50_000,
    };
    let dir = tempfile::tempdir()?;
    let mut rng = StdRng::seed_from_u64(1);

    // 1. An appendable segment: chunked vectors, gridstore-style payloads,
    //    an append-only id log. Every write carries its operation's version.
    let mut chunked =
        kinds::create_chunked_segment::<f32>(&dir.path().join("chunked"), DIM, Distance::Dot)?;
    let t = Instant::now();
    let mut vector = vec![0f32; DIM];
    for i in 0..points {
        vector
            .iter_mut()
            .for_each(|x| *x = rng.gen_range(-1.0..1.0));
        let payload = serde_json::json!({ "tenant": format!("t{}", i % 8) });
        let payload = payload.as_object().cloned().unwrap_or_default();
        chunked.upsert(i as u64 + 1, PointId::Num(i as u64), &vector, &payload)?;
    }
    chunked.flush()?;
    println!(
        "loaded {points} points into the chunked segment in {:.2?}",
        t.elapsed()
    );

    // 2. The immutable mmap segment built from it, with scattered batch
    //    reads served by io_uring.
    let options = MmapVectorOptions {
        batch_reads_via_uring: true,
        ..Default::default()
    };
    let t = Instant::now();
    let mmap = build_mmap(&chunked, &dir.path().join("mmap"), &options, &mut |_| {})?;
    println!("built the mmap segment in {:.2?}", t.elapsed());
    drop(chunked);

    // 3. Exact search, with and without a tenant filter.
    let query: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let t3 = Filter::must(Condition::keyword("tenant", "t3"));
    for (label, filter) in [("all tenants", None), ("tenant t3", Some(&t3))] {
        let hits = mmap.search(&query, 3, filter)?;
        let shown: Vec<String> = hits
            .iter()
            .map(|h| format!("{} ({:.3})", h.id, h.score))
            .collect();
        println!("top 3, {label}: {}", shown.join(", "));
    }

    // 4. Cold reads: drop the file from the page cache, then read 4,096
    //    random vectors one page fault at a time and as one io_uring batch.
    let vectors = mmap.vectors();
    let offsets: Vec<PointOffset> = (0..4096)
        .map(|_| rng.gen_range(0..points) as PointOffset)
        .collect();
    vectors.clear_cache()?;
    let t = Instant::now();
    // An order-independent checksum: the batch completes in any order.
    let mut by_faults = 0u64;
    for &o in &offsets {
        by_faults = by_faults.wrapping_add(checksum(vectors.get::<Random>(o)?));
    }
    let faults = t.elapsed();
    vectors.clear_cache()?;
    let t = Instant::now();
    let mut by_batch = 0u64;
    vectors.get_batch::<Random>(&offsets, &mut |_, v| {
        by_batch = by_batch.wrapping_add(checksum(v))
    })?;
    let batch = t.elapsed();
    assert_eq!(by_faults, by_batch, "both paths read the same vectors");
    let counts = vectors.io_counts();
    println!(
        "cold reads of 4,096 vectors: page faults {faults:.2?}, one batch via {} {batch:.2?} \
         ({} requests; {:.1}× faster)",
        vectors.io_backend().name(),
        counts.requests,
        faults.as_secs_f64() / batch.as_secs_f64()
    );
    Ok(())
}

/// Sum of the bit patterns of a vector's components.
fn checksum(v: &[f32]) -> u64 {
    v.iter().map(|x| u64::from(x.to_bits())).sum()
}
