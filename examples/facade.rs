//! vecseg through its facade only: every path below starts with `vecseg::`,
//! as in a program whose `Cargo.toml` lists `vecseg` and nothing else.
//! Builds a RocksDB segment, migrates it to a chunked one, builds the
//! immutable mmap segment from that, and searches all three.
//!
//! Run: `cargo run --example facade` (needs the default `rocksdb` feature).

use vecseg::kinds::{create_chunked_segment, create_rocks_segment};
use vecseg::migrate::{build_mmap, migrate, MigrateOptions};
use vecseg::mmap::MmapVectorOptions;
use vecseg::prelude::*;
use vecseg::rocksdb::RocksOptions;

const DIM: usize = 8;
const POINTS: usize = 200;

fn main() -> Result<()> {
    let root = std::env::temp_dir().join(format!("vecseg-facade-{}", std::process::id()));
    let result = run(&root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run(root: &std::path::Path) -> Result<()> {
    // 1. A RocksDB segment, loaded with one batch upsert (one version).
    let mut rocks = create_rocks_segment::<f32>(
        &root.join("rocks"),
        DIM,
        Distance::Cosine,
        &RocksOptions::default(),
    )?;
    let vectors: Vec<Vec<f32>> = (0..POINTS)
        .map(|i| {
            (0..DIM)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 + 0.5)
                .collect()
        })
        .collect();
    let payloads: Vec<Payload> = (0..POINTS)
        .map(|i| {
            let mut p = Payload::new();
            p.insert("tenant".into(), format!("t{}", i % 4).into());
            p
        })
        .collect();
    let batch: Vec<PointInput<'_, f32>> = (0..POINTS)
        .map(|i| PointInput {
            id: PointId::Num(i as u64),
            vector: &vectors[i],
            payload: &payloads[i],
        })
        .collect();
    rocks.upsert_batch(1, &batch)?;
    rocks.flush()?;

    // 2. Migrated to a chunked segment (verified), then frozen into mmap.
    let mut chunked = create_chunked_segment::<f32>(&root.join("chunked"), DIM, Distance::Cosine)?;
    let report = migrate(
        &rocks,
        &mut chunked,
        &MigrateOptions::default(),
        &mut |_| {},
    )?;
    let mmap = build_mmap(
        &chunked,
        &root.join("mmap"),
        &MmapVectorOptions::default(),
        &mut |_| {},
    )?;

    // 3. The same query on all three gives the same answer.
    let query = &vectors[42];
    let top = |hits: Vec<ScoredPoint>| hits.first().map(|h| h.id);
    let answers = [
        top(rocks.search(query, 3, None)?),
        top(chunked.search(query, 3, None)?),
        top(mmap.search(query, 3, None)?),
    ];
    println!(
        "migrated {} points; nearest to point 42 (rocksdb, chunked, mmap): {answers:?}",
        report.points
    );
    let records = mmap.get_batch(&[PointId::Num(7), PointId::Num(1000)])?;
    if answers.iter().any(|a| *a != answers[0])
        || mmap.point_count() != POINTS
        || records[0].is_none()
        || records[1].is_some()
    {
        return Err(StorageError::VerificationFailed(
            "the three segments disagree".into(),
        ));
    }
    Ok(())
}
