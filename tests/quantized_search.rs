//! Search through quantized storages, against exact search on the same
//! points: recall of each codec, rescoring (oversampling to every point
//! gives exactly the exact top-k), filters, the appendable path (points
//! upserted into a segment whose vectors are quantized), and reopening
//! and damaging mmap codes.

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::mmap::{MmapVectorOptions, MmapVectorStorage};
use vecseg::quantized::{
    Binary1, Binary1_5, Binary2, Codec, InRamCodes, MmapCodes, Product, ProductConfig, Quantized,
    ScalarConfig, ScalarU4, ScalarU8,
};
use vecseg::testing::Rng;
use vecseg::{
    Condition, Distance, Filter, Payload, PointId, ScanOptions, Segment, StorageError,
    VectorElement, VectorStorageRead,
};

const DIM: usize = 32;
const N: usize = 2_000;

/// Clustered points (20 centres) with a `tenant` payload, and queries near them.
fn data(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..20).map(|_| rng.vector(DIM)).collect();
    let near = |rng: &mut Rng| {
        let c = &centres[rng.below(centres.len())];
        let noise = rng.vector(DIM);
        c.iter()
            .zip(noise)
            .map(|(a, b)| a + 0.3 * b)
            .collect::<Vec<f32>>()
    };
    let points = (0..N).map(|_| near(&mut rng)).collect();
    let queries = (0..20).map(|_| near(&mut rng)).collect();
    (points, queries)
}

fn payload(i: usize) -> Payload {
    let mut p = Payload::new();
    p.insert("tenant".into(), format!("t{}", i % 4).into());
    p
}

type Exact = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;
type QuantizedSegment<Q> = Segment<
    Quantized<MemoryVectorStorage<f32>, Q, InRamCodes>,
    MemoryPayloadStorage,
    MemoryIdMapper,
>;

fn exact_segment(points: &[Vec<f32>], distance: Distance) -> Exact {
    let dim = points.first().map_or(DIM, Vec::len);
    let mut s = Segment::new(
        MemoryVectorStorage::new(dim, distance).unwrap(),
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    for (i, v) in points.iter().enumerate() {
        s.upsert(1, PointId::Num(i as u64), v, &payload(i)).unwrap();
    }
    s
}

/// A segment whose vectors are quantized with a codec trained on the
/// points' stored forms, filled by upserts (the appendable path).
fn quantized_segment<Q: Codec + vecseg::quantized::EncodesWithoutRetraining>(
    points: &[Vec<f32>],
    distance: Distance,
    config: &Q::Config,
) -> QuantizedSegment<Q> {
    let mut sample = Vec::new();
    for v in points {
        let mut v = v.clone();
        f32::preprocess(distance, &mut v).unwrap();
        sample.extend(v);
    }
    let codec = Q::train(config, DIM, distance, &sample).unwrap();
    let raw = MemoryVectorStorage::new(DIM, distance).unwrap();
    let vectors = Quantized::with_codec_in_ram(raw, codec).unwrap();
    let mut s = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
    for (i, v) in points.iter().enumerate() {
        s.upsert(1, PointId::Num(i as u64), v, &payload(i)).unwrap();
    }
    s
}

fn recall<Q: Codec>(
    exact: &Exact,
    quantized: &QuantizedSegment<Q>,
    queries: &[Vec<f32>],
    options: ScanOptions,
    filter: Option<&Filter>,
) -> f64 {
    let mut found = 0;
    let mut wanted = 0;
    for q in queries {
        let truth = exact.search(q, 10, filter).unwrap();
        let got = quantized.search_with(q, 10, filter, options).unwrap();
        wanted += truth.len();
        found += got
            .iter()
            .filter(|h| truth.iter().any(|t| t.id == h.id))
            .count();
        if let Some(f) = filter {
            for h in &got {
                let rec = quantized.get(h.id).unwrap().unwrap();
                assert!(f.matches(h.id, &rec.payload), "a hit fails the filter");
            }
        }
    }
    found as f64 / wanted as f64
}

/// Checks every codec runs: recall@10 with 4× oversampling (and
/// rescoring) at least `floor`, with 10× at least 0.95, filtered search
/// likewise, and oversampling to every point with rescoring equal to exact
/// search (ids and scores).
fn check_codec<Q: Codec + vecseg::quantized::EncodesWithoutRetraining>(
    distance: Distance,
    config: &Q::Config,
    floor: f64,
) {
    let (points, queries) = data(7);
    let exact = exact_segment(&points, distance);
    let quantized = quantized_segment::<Q>(&points, distance, config);
    let four = ScanOptions::default()
        .with_oversampling(4.0)
        .with_rescore(true);
    let r = recall(&exact, &quantized, &queries, four, None);
    let ten = four.with_oversampling(10.0);
    let r10 = recall(&exact, &quantized, &queries, ten, None);
    assert!(
        r10 >= 0.95,
        "{}: recall@10 {r10} with 10x oversampling",
        Q::NAME
    );
    assert!(
        r >= floor,
        "{}: recall@10 {r} with 4x oversampling",
        Q::NAME
    );
    let tenant = Filter::must(Condition::keyword("tenant", "t1"));
    let r = recall(&exact, &quantized, &queries, four, Some(&tenant));
    assert!(r >= floor, "{}: filtered recall@10 {r}", Q::NAME);
    let all = ScanOptions::default()
        .with_oversampling(N as f32)
        .with_rescore(true);
    for q in &queries {
        let truth = exact.search(q, 10, None).unwrap();
        let got = quantized.search_with(q, 10, None, all).unwrap();
        assert_eq!(
            got.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>(),
            truth.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>(),
            "{}: rescoring every point is exact search",
            Q::NAME
        );
    }
}

#[test]
fn scalar_recall_rescoring_and_filters() {
    for distance in [Distance::Cosine, Distance::Euclid, Distance::Manhattan] {
        check_codec::<ScalarU8>(distance, &ScalarConfig::default(), 0.95);
    }
    // Without rescoring, SQ8 alone already ranks well.
    let (points, queries) = data(3);
    let exact = exact_segment(&points, Distance::Dot);
    let q = quantized_segment::<ScalarU8>(&points, Distance::Dot, &ScalarConfig::default());
    let r = recall(&exact, &q, &queries, ScanOptions::default(), None);
    assert!(r >= 0.85, "SQ8 without rescoring: {r}");
}

#[test]
fn scalar_int4_recall_rescoring_and_filters() {
    for distance in [
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ] {
        check_codec::<ScalarU4>(distance, &ScalarConfig::default(), 0.8);
    }
}

#[test]
fn binary_recall_rescoring_and_filters() {
    // 32 dimensions are few for bits; the floors guard against
    // regressions, the e5 figures come from `benches/quantized.rs`.
    check_codec::<Binary1>(Distance::Cosine, &Default::default(), 0.5);
    check_codec::<Binary1_5>(Distance::Cosine, &Default::default(), 0.45);
    check_codec::<Binary2>(Distance::Cosine, &Default::default(), 0.45);
    check_codec::<Binary2>(Distance::Euclid, &Default::default(), 0.45);
}

#[test]
fn product_recall_rescoring_and_filters() {
    let config = ProductConfig {
        sub_dim: 4,
        ..Default::default()
    };
    check_codec::<Product>(Distance::Cosine, &config, 0.6);
    check_codec::<Product>(Distance::Euclid, &config, 0.6);
}

#[test]
fn deleted_points_are_never_returned() {
    let (points, queries) = data(11);
    let mut q = quantized_segment::<Binary1>(&points, Distance::Dot, &Default::default());
    for i in (0..N).step_by(3) {
        q.delete(2, PointId::Num(i as u64)).unwrap();
    }
    for query in &queries {
        let all = ScanOptions::default().with_oversampling(N as f32);
        for h in q.search_with(query, 50, None, all).unwrap() {
            let PointId::Num(i) = h.id else { panic!() };
            assert_ne!(i % 3, 0, "deleted point {i} returned");
        }
    }
}

/// `score_live_above` hands `f` exactly the live slots `score_live` does
/// whose score is above the bar, in offset order, and sees a bar raised
/// by `f` (quantized scorer with deleted slots, and the default of the
/// raw scorer).
#[test]
fn score_live_above_keeps_the_live_slots_above_the_bar() {
    use std::cell::Cell;
    use vecseg::{AppendableVectorStorage, QueryScorer, VectorStorage};
    fn check(scorer: &impl QueryScorer, n: u32) {
        let mut all = Vec::new();
        scorer
            .score_live(0..n, |o| o % 5 != 1, |o, s| all.push((o, s)))
            .unwrap();
        let mut sorted: Vec<f32> = all.iter().map(|p| p.1).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // A fixed bar: the slots above it, in order.
        let bar = sorted[sorted.len() / 3];
        let mut above = Vec::new();
        scorer
            .score_live_above(0..n, |o| o % 5 != 1, || bar, |o, s| above.push((o, s)))
            .unwrap();
        let want: Vec<(u32, f32)> = all.iter().copied().filter(|p| p.1 > bar).collect();
        assert_eq!(above, want);
        // A rising bar (the running best): every running best is seen.
        let mut every = Vec::new();
        scorer
            .score_live(0..n, |_| true, |o, s| every.push((o, s)))
            .unwrap();
        let mut running = f32::NEG_INFINITY;
        let mut want_seen = Vec::new();
        for &(o, s) in &every {
            if s > running {
                running = s;
                want_seen.push(o);
            }
        }
        let best = Cell::new(f32::NEG_INFINITY);
        let mut seen = Vec::new();
        scorer
            .score_live_above(
                0..n,
                |_| true,
                || best.get(),
                |o, s| {
                    if s > best.get() {
                        best.set(s);
                        seen.push(o);
                    }
                },
            )
            .unwrap();
        assert_eq!(best.get(), running);
        assert_eq!(seen, want_seen);
    }
    let (points, _) = data(12);
    let mut raw = MemoryVectorStorage::<f32>::new(DIM, Distance::Dot).unwrap();
    for (i, p) in points.iter().enumerate() {
        raw.insert(i as u32, p).unwrap();
    }
    for i in (0..N as u32).step_by(7) {
        raw.delete(i).unwrap();
    }
    check(&raw.scorer(&points[3]).unwrap(), N as u32);
    let q = Quantized::<_, Binary2, InRamCodes>::build_in_ram(raw, &Default::default()).unwrap();
    check(&q.scorer(&points[3]).unwrap(), N as u32);
}

#[test]
fn mmap_codes_reopen_bit_for_bit_and_damage_is_an_error() {
    let (points, _) = data(5);
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryVectorStorage::new(DIM, Distance::Dot).unwrap();
    for (i, v) in points.iter().enumerate() {
        vecseg::AppendableVectorStorage::insert(&mut mem, i as u32, v).unwrap();
    }
    let raw = MmapVectorStorage::build(&dir.path().join("raw"), &mem, MmapVectorOptions::default())
        .unwrap();
    let qdir = dir.path().join("sq8");
    let built: Quantized<_, ScalarU8, MmapCodes> = Quantized::build_mmap(
        raw,
        &qdir,
        &ScalarConfig::default(),
        MmapVectorOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let codes_before = built.codes().as_flat().unwrap().to_vec();
    let codec_before = built.codec().clone();
    drop(built);
    let open = || {
        let raw =
            MmapVectorStorage::open(&dir.path().join("raw"), MmapVectorOptions::default()).unwrap();
        Quantized::<_, ScalarU8, MmapCodes>::open_mmap(raw, &qdir, MmapVectorOptions::default())
    };
    let reopened = open().unwrap();
    assert_eq!(reopened.codes().as_flat().unwrap(), &codes_before[..]);
    assert_eq!(reopened.codec(), &codec_before);
    assert_eq!(reopened.total_count(), N);
    drop(reopened);

    // The meta file: a flipped byte, a truncation, another codec.
    let meta = qdir.join(vecseg::quantized::meta::META_FILE);
    let good = std::fs::read(&meta).unwrap();
    for damaged in [
        {
            let mut b = good.clone();
            b[20] ^= 0x10;
            b
        },
        good[..good.len() - 3].to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&meta, &damaged).unwrap();
        match open() {
            Err(StorageError::Corrupted { path, .. }) => assert_eq!(path, meta),
            other => panic!("expected Corrupted naming the meta file, got {other:?}"),
        }
    }
    std::fs::write(&meta, &good).unwrap();
    let raw =
        MmapVectorStorage::open(&dir.path().join("raw"), MmapVectorOptions::default()).unwrap();
    let wrong =
        Quantized::<_, Binary1, MmapCodes>::open_mmap(raw, &qdir, MmapVectorOptions::default());
    assert!(
        matches!(&wrong, Err(StorageError::Corrupted { .. }))
            && format!("{wrong:?}").contains("scalar-u8"),
        "{wrong:?}"
    );
    // A truncated code file.
    let codes_dir = qdir.join(vecseg::quantized::storage::CODES_DIR);
    let file = std::fs::read_dir(&codes_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert!(open().is_err(), "truncated codes must not open");
}

#[test]
fn training_on_nothing_or_bad_shapes_is_an_error() {
    let empty = MemoryVectorStorage::<f32>::new(DIM, Distance::Dot).unwrap();
    assert!(matches!(
        Quantized::<_, ScalarU8, InRamCodes>::build_in_ram(empty, &ScalarConfig::default()),
        Err(StorageError::InvalidArgument(_))
    ));
    let mut one = MemoryVectorStorage::<f32>::new(6, Distance::Dot).unwrap();
    vecseg::AppendableVectorStorage::insert(&mut one, 0, &[1.0; 6]).unwrap();
    let config = ProductConfig {
        sub_dim: 4,
        ..Default::default()
    };
    assert!(Quantized::<_, Product, InRamCodes>::build_in_ram(one, &config).is_err());
}

#[test]
fn chunked_codes_append_reopen_and_catch_up_with_the_raw_vectors() {
    use vecseg::chunked::{ChunkedVectorOptions, ChunkedVectorStorage};
    use vecseg::quantized::ChunkedCodes;
    use vecseg::{AppendableVectorStorage, VectorStorage};

    let (points, queries) = data(13);
    let dir = tempfile::tempdir().unwrap();
    let (raw_dir, q_dir) = (dir.path().join("raw"), dir.path().join("bq"));
    let sample: Vec<f32> = points[..200].concat();
    let codec = Binary1::train(&Default::default(), DIM, Distance::Dot, &sample).unwrap();
    let raw = ChunkedVectorStorage::<f32>::create(
        &raw_dir,
        DIM,
        Distance::Dot,
        ChunkedVectorOptions::default(),
    )
    .unwrap();
    let mut q: Quantized<_, Binary1, ChunkedCodes> =
        Quantized::with_codec_chunked(raw, &q_dir, codec).unwrap();
    for (i, v) in points[..100].iter().enumerate() {
        q.insert(i as u32, v).unwrap();
    }
    q.flush().unwrap();
    drop(q);
    let open = || {
        let raw = ChunkedVectorStorage::<f32>::open(&raw_dir).unwrap();
        Quantized::<_, Binary1, ChunkedCodes>::open_chunked(raw, &q_dir).unwrap()
    };
    let q = open();
    assert_eq!(q.total_count(), 100);
    assert_eq!(q.codes().total_count(), 100);
    // A crash between the raw flush and the codes' flush: the raw storage
    // has ten more vectors than the codes.
    let (mut raw, codes, _) = q.into_parts();
    for (i, v) in points[100..110].iter().enumerate() {
        raw.insert(100 + i as u32, v).unwrap();
    }
    raw.delete(5).unwrap(); // and a delete the codes never saw
    raw.flush().unwrap();
    drop((raw, codes));
    let q = open();
    assert_eq!(
        q.codes().total_count(),
        110,
        "missing codes re-encoded at open"
    );
    assert!(q.codes().is_deleted(5), "deleted flags mirrored at open");
    let scorer = q.scorer(&queries[0]).unwrap();
    let mut scored = Vec::new();
    vecseg::QueryScorer::score_live(&scorer, 0..110, |_| true, |o, _| scored.push(o)).unwrap();
    assert_eq!(scored.len(), 109);
    assert!(!scored.contains(&5));
}

#[test]
fn a_quantized_mmap_segment_reopens_and_inspect_names_its_codes() {
    use vecseg::kinds::{
        create_chunked_segment, open_quantized_mmap_segment, quantize_mmap_segment,
    };
    let (points, queries) = data(17);
    let dir = tempfile::tempdir().unwrap();
    let mut chunked =
        create_chunked_segment::<f32>(&dir.path().join("src"), DIM, Distance::Cosine).unwrap();
    for (i, v) in points.iter().enumerate() {
        chunked
            .upsert(1, PointId::Num(i as u64), v, &payload(i))
            .unwrap();
    }
    let opts = MmapVectorOptions::default();
    let seg_dir = dir.path().join("seg");
    let mmap = vecseg::migrate::build_mmap(&chunked, &seg_dir, &opts, &mut |_| {}).unwrap();
    let mut progress = 0;
    let q =
        quantize_mmap_segment::<Binary2>(mmap, &Default::default(), &opts, &mut |i| progress = i)
            .unwrap();
    assert_eq!(progress, N, "progress reaches every slot");
    let all = ScanOptions::default().with_oversampling(N as f32);
    let before = q.search_with(&queries[0], 10, None, all).unwrap();
    drop(q);
    let q = open_quantized_mmap_segment::<Binary2>(&seg_dir, &opts).unwrap();
    assert_eq!(q.search_with(&queries[0], 10, None, all).unwrap(), before);
    assert_eq!(q.get(PointId::Num(3)).unwrap().unwrap().payload, payload(3));
    drop(q);
    // The directory is still a plain mmap segment to everything else.
    assert!(vecseg::kinds::open_mmap_segment::<f32>(&seg_dir, &opts).is_ok());
    let report = vecseg::cli::inspect::inspect(&seg_dir, false).unwrap();
    assert!(report.contains("quantized   binary-2 codes"), "{report}");
}

mod rescoring {
    use super::*;
    use proptest::prelude::*;

    fn points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = vecseg::testing::Rng::new(seed);
        (0..n).map(|_| rng.vector(dim)).collect()
    }

    fn top(hits: &[vecseg::ScoredPoint]) -> Vec<(PointId, f32)> {
        hits.iter().map(|h| (h.id, h.score)).collect()
    }

    fn exact_top(points: &[Vec<f32>], q: &[f32], k: usize, d: Distance) -> Vec<(PointId, f32)> {
        top(&exact_segment(points, d).search(q, k, None).unwrap())
    }

    fn quantized_top<Q: Codec>(
        points: &[Vec<f32>],
        q: &[f32],
        k: usize,
        d: Distance,
    ) -> Vec<(PointId, f32)> {
        let s = exact_segment(points, d)
            .map_vectors(|v| Quantized::<_, Q, InRamCodes>::build_in_ram(v, &Default::default()))
            .unwrap();
        let all = ScanOptions::default()
            .with_oversampling(points.len() as f32)
            .with_rescore(true);
        top(&s.search_with(q, k, None, all).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Oversampling to every point and rescoring is exact search,
        /// for every codec, whatever the data.
        #[test]
        fn rescoring_every_point_is_exact(n in 1usize..120, dim in 1usize..20, k in 1usize..12, seed in 0u64..1000) {
            let pts = points(n, dim, seed);
            let q = points(1, dim, seed + 7).remove(0);
            let distance = Distance::Euclid;
            let exact = exact_top(&pts, &q, k, distance);
            prop_assert_eq!(&quantized_top::<ScalarU8>(&pts, &q, k, distance), &exact);
            prop_assert_eq!(&quantized_top::<ScalarU4>(&pts, &q, k, distance), &exact);
            prop_assert_eq!(&quantized_top::<Binary1>(&pts, &q, k, distance), &exact);
            prop_assert_eq!(&quantized_top::<Binary1_5>(&pts, &q, k, distance), &exact);
            prop_assert_eq!(&quantized_top::<Binary2>(&pts, &q, k, distance), &exact);
            if dim.is_multiple_of(4) {
                prop_assert_eq!(&quantized_top::<Product>(&pts, &q, k, distance), &exact);
            }
        }
    }
}
