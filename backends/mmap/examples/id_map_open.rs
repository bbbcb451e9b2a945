//! What opening an `MmapIdMapper` costs now that open checks the CRC-32C of
//! every write-once table, against reading the same files once with
//! `fs::read` in the same run (the floor for any check that reads them).
//!
//! ```sh
//! cargo run --release -p vecseg-mmap --example id_map_open -- 10000000
//! ```

use std::time::Instant;

use vecseg_memory::MemoryIdMapper;
use vecseg_mmap::MmapIdMapper;
use vecseg_traits::{AppendableIdMapper, IdMapperRead, PointId, PointOffset};

fn main() -> vecseg_traits::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut source = MemoryIdMapper::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for o in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        source.set_link(PointId::Num(x), o as PointOffset, 1)?;
    }
    let dir = tempfile::tempdir().map_err(|e| vecseg_traits::StorageError::io("tempdir", e))?;
    let started = Instant::now();
    let built = MmapIdMapper::build(dir.path(), &source)?;
    let build = started.elapsed();
    drop(built);

    let mut opens = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let m = MmapIdMapper::open(dir.path())?;
        opens.push(t.elapsed().as_secs_f64());
        assert_eq!(m.available_count(), n);
        drop(m);
        let t = Instant::now();
        let mut bytes = 0usize;
        for e in std::fs::read_dir(dir.path())
            .map_err(|e| vecseg_traits::StorageError::io(dir.path(), e))?
        {
            let path = e
                .map_err(|e| vecseg_traits::StorageError::io(dir.path(), e))?
                .path();
            bytes += std::fs::read(&path)
                .map_err(|e| vecseg_traits::StorageError::io(&path, e))?
                .len();
        }
        std::hint::black_box(bytes);
        reads.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (open, read) = (median(&mut opens), median(&mut reads));
    println!(
        "{n} ids: build {:.3} s; open (warm, checksums) {:.1} ms = {:.2}x one fs::read of all id files ({:.1} ms), {:.3}x the build",
        build.as_secs_f64(),
        open * 1e3,
        open / read,
        read * 1e3,
        open / build.as_secs_f64()
    );
    Ok(())
}
