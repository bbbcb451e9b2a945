//! External → internal id lookup at scale: `MmapIdMapper::internal`
//! (perfect hash + check against the stored id) vs `std::collections::HashMap::get`
//! vs binary search over a sorted `(id, offset)` array, on the same random
//! u64 ids probed in the same random order (all hits, warm caches). The
//! mapper is built twice: over offsets in random order (the `Records`
//! layout, as a migrated segment keeps its source's offsets) and over
//! offsets laid out by a `NumSlotPlan` (the `SlotOrdered` layout the
//! optimizer builds without a tenant key).
//!
//! Also prints, once per process, build time of the mapper at 1M and at the
//! benchmark size, bits per key of the hash function and bytes per point of
//! the whole two-way mapping; and **cold** lookups: pages of the tables a
//! lookup faults in after the page cache is dropped (counted with
//! `mincore`) and its latency, against one random 4 KiB `pread` of the same
//! file after the same eviction, on the same disk, in the same run.
//!
//! The number of ids defaults to 10M; `VECSEG_ID_BENCH_N` overrides it.
//! Heavy fixtures: run with short measurement, e.g.
//! `cargo bench --bench id_lookup -- --warm-up-time 1 --measurement-time 3`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use vecseg::{IdMapperRead, PointId, PointOffset, Version};
use vecseg_mmap::file::evict_file_from_page_cache;
use vecseg_mmap::id_map::{MmapIdMapper, NumSlotPlan, IDS_EXTERNAL_FILE};

/// splitmix64: a fast, well-mixed generator for the fixtures.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A minimal id-mapper source over a sorted `(id, offset)` array, so the
/// mmap build reads from something no bigger than the baseline itself.
struct SortedSource<'a> {
    sorted: &'a [(u64, PointOffset)],
}

impl IdMapperRead for SortedSource<'_> {
    fn internal(&self, id: PointId) -> vecseg::Result<Option<PointOffset>> {
        let PointId::Num(n) = id else { return Ok(None) };
        Ok(self
            .sorted
            .binary_search_by_key(&n, |p| p.0)
            .ok()
            .map(|i| self.sorted[i].1))
    }
    fn external(&self, _: PointOffset) -> vecseg::Result<Option<PointId>> {
        Ok(None)
    }
    fn version(&self, _: PointOffset) -> vecseg::Result<Option<Version>> {
        Ok(Some(1))
    }
    fn total_count(&self) -> usize {
        self.sorted.len()
    }
    fn available_count(&self) -> usize {
        self.sorted.len()
    }
    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = vecseg::Result<(PointId, PointOffset)>> + '_> {
        let start = match from {
            Some(PointId::Num(n)) => self.sorted.partition_point(|p| p.0 < n),
            Some(PointId::Uuid(_)) => self.sorted.len(),
            None => 0,
        };
        Box::new(
            self.sorted[start..]
                .iter()
                .map(|&(id, o)| Ok((PointId::Num(id), o))),
        )
    }
}

struct Fixture {
    /// Offset `i` holds `ids[i]`.
    ids: Vec<u64>,
    sorted: Vec<(u64, PointOffset)>,
}

fn fixture(n: usize, seed: u64) -> Fixture {
    let mut rng = SplitMix(seed);
    let mut ids: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    let mut sorted: Vec<(u64, PointOffset)> = ids
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o as PointOffset))
        .collect();
    sorted.sort_unstable_by_key(|p| p.0);
    let before = sorted.len();
    sorted.dedup_by_key(|p| p.0);
    if sorted.len() != before {
        // Astronomically rare; keep ids and offsets consistent anyway.
        ids.clear();
        ids.resize(sorted.len(), 0);
        for (o, p) in sorted.iter_mut().enumerate() {
            p.1 = o as PointOffset;
            ids[o] = p.0;
        }
    }
    Fixture { ids, sorted }
}

/// The ids of `f` moved to the offsets a plan over them gives (the
/// slot-ordered layout), with the plan.
fn slot_ordered(f: &Fixture) -> (Fixture, NumSlotPlan, Duration) {
    let started = Instant::now();
    let plan = NumSlotPlan::build(f.ids.clone());
    let plan_time = started.elapsed();
    let mut ids = vec![0u64; f.ids.len()];
    for &id in &f.ids {
        ids[plan.slot(id)] = id;
    }
    let sorted = f
        .sorted
        .iter()
        .map(|&(id, _)| (id, plan.slot(id) as PointOffset))
        .collect();
    (Fixture { ids, sorted }, plan, plan_time)
}

/// Build the mapper of `f` in `dir` (with `plan`, built in `plan_time`
/// beforehand), printing its build time and sizes.
fn build(
    dir: &std::path::Path,
    f: &Fixture,
    plan: Option<NumSlotPlan>,
    plan_time: Duration,
) -> MmapIdMapper {
    let source = SortedSource { sorted: &f.sorted };
    let started = Instant::now();
    let (m, stats) =
        MmapIdMapper::build_planned_with_stats(dir, &source, plan).expect("build id map");
    let sizes = m.sizes();
    eprintln!(
        "id_lookup: {:?} build of {} ids took {:.2} s (+ plan {:.2} s) (read source {:.2} s, \
         perfect hash {:.2} s, fill {:.2} s, write {:.2} s, open {:.2} s); \
         hash function {:.3} bits/key; two-way mapping {:.2} B/point \
         (+ order index {:.1} B, versions {:.1} B); files {:.1} MB",
        sizes.num_layout,
        stats.ids,
        started.elapsed().as_secs_f64(),
        plan_time.as_secs_f64(),
        stats.collect_time.as_secs_f64(),
        stats.phf_time.as_secs_f64(),
        stats.fill_time.as_secs_f64(),
        stats.write_time.as_secs_f64(),
        stats.open_time.as_secs_f64(),
        sizes.phf_bits_per_key,
        sizes.mapping_bytes_per_id,
        sizes.order_bytes as f64 / sizes.ids.max(1) as f64,
        sizes.versions_bytes as f64 / sizes.ids.max(1) as f64,
        m.disk_bytes() as f64 / 1e6,
    );
    m
}

/// Median of `times` in microseconds.
fn median_us(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times[times.len() / 2].as_secs_f64() * 1e6
}

/// Cold lookups against cold random 4 KiB reads of the record table (see
/// the module docs), `rounds` of each, printed.
fn cold_lookups(mapper: &MmapIdMapper, dir: &std::path::Path, ids: &[u64], rounds: usize) {
    let mut rng = SplitMix(1234);
    let mut lookups = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let k = ids[(rng.next() % ids.len() as u64) as usize];
        mapper.clear_cache().expect("evict");
        let t = Instant::now();
        black_box(mapper.internal(PointId::Num(k)).unwrap());
        lookups.push(t.elapsed());
    }
    // Pages in a separate pass: `mincore` over the tables is not free.
    let mut pages = 0usize;
    for _ in 0..rounds / 10 {
        let k = ids[(rng.next() % ids.len() as u64) as usize];
        mapper.clear_cache().expect("evict");
        black_box(mapper.internal(PointId::Num(k)).unwrap());
        pages += mapper.resident_pages();
    }
    let path = dir.join(IDS_EXTERNAL_FILE);
    let file = std::fs::File::open(&path).expect("open external ids");
    let file_pages = file.metadata().expect("stat").len() / 4096;
    let mut buf = vec![0u8; 4096];
    let mut reads = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let page = rng.next() % file_pages;
        evict_file_from_page_cache(&path).expect("evict");
        let t = Instant::now();
        file.read_exact_at(&mut buf, page * 4096).expect("pread");
        reads.push(t.elapsed());
        black_box(&buf);
    }
    let (l, r) = (median_us(&mut lookups), median_us(&mut reads));
    eprintln!(
        "id_lookup: {:?} cold, {rounds} rounds: {:.3} pages faulted in per lookup; \
         lookup median {l:.1} µs vs random 4 KiB pread median {r:.1} µs ({:.2}×)",
        mapper.sizes().num_layout,
        pages as f64 / (rounds / 10) as f64,
        l / r,
    );
}

fn id_lookup(c: &mut Criterion) {
    let n: usize = std::env::var("VECSEG_ID_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);

    // Build time at 1M (when the main size is larger), fixture dropped after.
    if n > 1_000_000 {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = fixture(1_000_000, 7);
        drop(build(dir.path(), &small, None, Duration::ZERO));
        let (small, plan, plan_time) = slot_ordered(&small);
        drop(build(dir.path(), &small, Some(plan), plan_time));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixture(n, 42);
    let mapper = build(dir.path(), &f, None, Duration::ZERO);
    cold_lookups(&mapper, dir.path(), &f.ids, 1000);
    mapper.populate();
    let slotted_dir = tempfile::tempdir().expect("tempdir");
    let (g, plan, plan_time) = slot_ordered(&f);
    let slotted = build(slotted_dir.path(), &g, Some(plan), plan_time);
    cold_lookups(&slotted, slotted_dir.path(), &g.ids, 1000);
    slotted.populate();
    let hash: HashMap<u64, PointOffset> = f
        .ids
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o as PointOffset))
        .collect();

    // Probe order: a random sample of 4M present ids (or all when fewer).
    let mut rng = SplitMix(99);
    let probes: Vec<u64> = (0..f.ids.len().min(1 << 22))
        .map(|_| f.ids[(rng.next() % f.ids.len() as u64) as usize])
        .collect();

    // Sanity: all agree.
    for &k in probes.iter().take(10_000) {
        let want = hash.get(&k).copied();
        assert_eq!(mapper.internal(PointId::Num(k)).unwrap(), want);
        let at = slotted.internal(PointId::Num(k)).unwrap();
        assert_eq!(at.map(|o| g.ids[o as usize]), Some(k));
        let b = f
            .sorted
            .binary_search_by_key(&k, |p| p.0)
            .ok()
            .map(|i| f.sorted[i].1);
        assert_eq!(b, want);
    }

    let mut group = c.benchmark_group(format!("id_lookup_{}", n));
    let mut next = cycling(&probes);
    group.bench_function("mmap_phf_internal", |b| {
        b.iter(|| black_box(mapper.internal(PointId::Num(next())).unwrap()))
    });
    let mut next = cycling(&probes);
    group.bench_function("mmap_phf_internal_slot_ordered", |b| {
        b.iter(|| black_box(slotted.internal(PointId::Num(next())).unwrap()))
    });
    let mut next = cycling(&probes);
    group.bench_function("std_hashmap_get", |b| {
        b.iter(|| black_box(hash.get(&next()).copied()))
    });
    let mut next = cycling(&probes);
    group.bench_function("sorted_binary_search", |b| {
        b.iter(|| {
            let k = next();
            black_box(
                f.sorted
                    .binary_search_by_key(&k, |p| p.0)
                    .ok()
                    .map(|j| f.sorted[j].1),
            )
        })
    });
    group.finish();
}

/// The ids of `probes` in turn (from the first again after the last),
/// each through `black_box` so no lookup is hoisted or folded.
fn cycling(probes: &[u64]) -> impl FnMut() -> u64 + '_ {
    let mut i = 0;
    move || {
        let k = probes[i];
        // A compare, not `%`: a division would cost more than a lookup.
        i += 1;
        if i == probes.len() {
            i = 0;
        }
        black_box(k)
    }
}

criterion_group!(benches, id_lookup);
criterion_main!(benches);
