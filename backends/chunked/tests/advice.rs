//! The `madvise` advice of chunk mappings, read back from the kernel
//! (`VmFlags` in `/proc/self/smaps`: `rr` = random, `sr` = sequential).
//!
//! This binary holds a single test because it sets the process-wide default
//! advice, which would leak into tests running beside it.

use std::path::Path;

use vecseg_chunked::{ChunkedVectorOptions, ChunkedVectorStorage};
use vecseg_mmap::{set_global_advice, Advice};
use vecseg_traits::testing::temp_dir;
use vecseg_traits::{
    AppendableVectorStorage, Distance, PointOffset, Random, VectorStorage, VectorStorageRead,
};

/// `VmFlags` of every mapping of `path` in this process.
fn vm_flags(path: &Path) -> Vec<Vec<String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let path = path.canonicalize().expect("canonical path");
    let target = path.to_str().expect("utf-8 path");
    let mut out = Vec::new();
    let mut in_target = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            in_target = line.ends_with(target);
        } else if in_target {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                out.push(flags.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    out
}

/// Whether every chunk mapping of `s` carries the flag (`rr`/`sr`), or none does.
fn chunk_flag(s: &ChunkedVectorStorage<f32>, flag: &str) -> Option<bool> {
    let mut all = Vec::new();
    for i in 0..s.chunk_count() {
        let path = vecseg_chunked::vector::chunk_path(s.dir(), i);
        let maps = vm_flags(&path);
        assert_eq!(maps.len(), 1, "one mapping of {}", path.display());
        all.push(maps[0].iter().any(|f| f == flag));
    }
    if all.iter().all(|&b| b) {
        Some(true)
    } else if all.iter().all(|&b| !b) {
        Some(false)
    } else {
        None
    }
}

#[test]
fn chunk_mappings_follow_the_storage_then_the_process_advice() {
    let dir = temp_dir();
    let config = ChunkedVectorOptions::default().with_chunk_size(4 * 16);
    let mut s = ChunkedVectorStorage::<f32>::create(dir.path(), 4, Distance::Dot, config).unwrap();
    let vector = |o: usize| [o as f32 + 1.0, 2.0, 3.0, 4.0];
    for o in 0..10 {
        s.insert(o as PointOffset, &vector(o)).unwrap();
    }
    assert!(s.chunk_count() >= 3);
    assert_eq!(s.advice(), Advice::Normal);
    assert_eq!(chunk_flag(&s, "rr"), Some(false));

    s.set_advice(Advice::Random);
    assert_eq!(s.advice(), Advice::Random);
    assert_eq!(chunk_flag(&s, "rr"), Some(true));
    // Chunks created later get the storage's advice too.
    for o in 10..20 {
        s.insert(o as PointOffset, &vector(o)).unwrap();
    }
    assert_eq!(chunk_flag(&s, "rr"), Some(true));
    s.set_advice(Advice::Sequential);
    assert_eq!(chunk_flag(&s, "sr"), Some(true));
    assert_eq!(chunk_flag(&s, "rr"), Some(false));
    for o in 0..20 {
        assert_eq!(s.get::<Random>(o as PointOffset).unwrap(), &vector(o));
    }
    s.flush().unwrap();
    drop(s);

    // Advice is not stored: a reopened storage starts from the default...
    let s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.advice(), Advice::Normal);
    assert_eq!(chunk_flag(&s, "sr"), Some(false));
    drop(s);

    // ...or the process-wide default when one is set; an explicit advice
    // given to the storage wins over it.
    set_global_advice(Advice::Random);
    let mut s = ChunkedVectorStorage::<f32>::open(dir.path()).unwrap();
    assert_eq!(s.advice(), Advice::Random);
    assert_eq!(chunk_flag(&s, "rr"), Some(true));
    s.set_advice(Advice::Sequential);
    assert_eq!(s.advice(), Advice::Sequential);
    assert_eq!(chunk_flag(&s, "sr"), Some(true));
    assert_eq!(chunk_flag(&s, "rr"), Some(false));
    for o in 0..20 {
        assert_eq!(s.get::<Random>(o as PointOffset).unwrap(), &vector(o));
    }
}
