//! Codes stored as column groups (binary codecs, codes built all at once)
//! against the same codes stored as rows: every code, deleted flag, single
//! score and scan over any range — cut groups included — is the same, after
//! any sequence of deletes, overwrites and appends (a property test), and
//! after an mmap build is reopened. A meta file of format version 1 (rows
//! only) still opens; a column end that does not fit is an error naming
//! the meta file.

use proptest::prelude::*;
use vecseg::memory::MemoryVectorStorage;
use vecseg::mmap::{MmapVectorOptions, MmapVectorStorage};
use vecseg::quantized::meta::META_FILE;
use vecseg::quantized::{
    Binary1, Binary1_5, Binary2, Codec, InRamCodes, MmapCodes, Quantized, ScalarConfig, ScalarU4,
    ScalarU8,
};
use vecseg::testing::Rng;
use vecseg::{
    AppendableVectorStorage, Distance, PointOffset, QueryScorer, StorageError, VectorStorage,
    VectorStorageRead,
};

const DIM: usize = 40;

type InRam<Q> = Quantized<MemoryVectorStorage<f32>, Q, InRamCodes>;

fn raw(points: &[Vec<f32>], distance: Distance) -> MemoryVectorStorage<f32> {
    let mut s = MemoryVectorStorage::new(DIM, distance).unwrap();
    for (i, v) in points.iter().enumerate() {
        s.insert(i as PointOffset, v).unwrap();
    }
    s
}

/// The same storage with every code a row (the model).
fn as_rows<Q: Codec + Clone>(points: &[Vec<f32>], distance: Distance, codec: &Q) -> InRam<Q> {
    let mut codes = MemoryVectorStorage::<u8>::new(codec.code_len(), Distance::Dot).unwrap();
    let mut code = vec![0u8; codec.code_len()];
    for (i, v) in points.iter().enumerate() {
        codec.encode(v, &mut code);
        codes.insert(i as PointOffset, &code).unwrap();
    }
    Quantized::checked(raw(points, distance), codes, codec.clone()).unwrap()
}

/// Every code, flag, single score and the scans of `ranges` agree.
fn assert_same<Q, A, B>(
    got: &Quantized<A, Q, B>,
    want: &InRam<Q>,
    query: &[f32],
    ranges: &[(u32, u32)],
) where
    Q: Codec,
    A: VectorStorageRead<Element = f32>,
    B: VectorStorageRead<Element = u8>,
{
    let n = want.total_count() as PointOffset;
    assert_eq!(got.total_count(), want.total_count());
    let (gs, ws) = (got.scorer(query).unwrap(), want.scorer(query).unwrap());
    for o in 0..n {
        assert_eq!(got.code(o).unwrap(), want.code(o).unwrap(), "code of {o}");
        assert_eq!(got.is_deleted(o), want.is_deleted(o), "flag of {o}");
        assert_eq!(
            gs.score(o).unwrap().to_bits(),
            ws.score(o).unwrap().to_bits(),
            "score of {o}"
        );
    }
    for &(a, b) in ranges.iter().chain([&(0, n)]) {
        let (a, b) = (a.min(n), b.min(n));
        let range = a.min(b)..a.max(b);
        let scanned = live_scores(&gs, range.clone());
        assert_eq!(scanned, live_scores(&ws, range.clone()), "scan {range:?}");
        // And the scan is the single scores of the live slots.
        let single: Vec<(u32, u32)> = range
            .clone()
            .filter(|&o| !want.is_deleted(o))
            .map(|o| (o, ws.score(o).unwrap().to_bits()))
            .collect();
        assert_eq!(scanned, single, "scan {range:?} against single scores");
    }
}

/// `(offset, score bits)` of every live slot of `range`, in scan order.
fn live_scores(scorer: &impl QueryScorer, range: std::ops::Range<u32>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    scorer
        .score_live(range, |_| true, |o, s| out.push((o, s.to_bits())))
        .unwrap();
    out
}

#[derive(Debug, Clone)]
enum Op {
    Delete(u32),
    Overwrite(u32, u64),
    Append(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..200).prop_map(Op::Delete),
        (0u32..200, any::<u64>()).prop_map(|(o, s)| Op::Overwrite(o, s)),
        any::<u64>().prop_map(Op::Append),
    ]
}

fn run_ops<Q: Codec + Clone + vecseg::quantized::EncodesWithoutRetraining>(
    n: usize,
    ops: &[Op],
    ranges: &[(u32, u32)],
    distance: Distance,
) {
    let mut rng = Rng::new(n as u64);
    let points: Vec<Vec<f32>> = (0..n).map(|_| rng.vector(DIM)).collect();
    let mut got = InRam::<Q>::build_in_ram(raw(&points, distance), &Default::default()).unwrap();
    assert_eq!(got.columns_end() as usize, n / 32 * 32, "{}", Q::NAME);
    let mut want = as_rows(&points, distance, got.codec());
    for op in ops {
        let total = want.total_count() as u32;
        match *op {
            Op::Delete(o) if o < total => {
                assert_eq!(got.delete(o).unwrap(), want.delete(o).unwrap());
            }
            Op::Overwrite(o, seed) if o < total => {
                let v = Rng::new(seed).vector(DIM);
                got.insert(o, &v).unwrap();
                want.insert(o, &v).unwrap();
            }
            Op::Append(seed) => {
                let v = Rng::new(seed).vector(DIM);
                got.insert(total, &v).unwrap();
                want.insert(total, &v).unwrap();
            }
            _ => {}
        }
    }
    let query = rng.vector(DIM);
    assert_same(&got, &want, &query, ranges);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn columns_behave_as_rows_under_any_writes(
        n in 0usize..150,
        ops in proptest::collection::vec(op(), 0..40),
        ranges in proptest::collection::vec((0u32..200, 0u32..200), 0..6),
        codec in 0usize..4,
        euclid in any::<bool>(),
    ) {
        let distance = if euclid { Distance::Euclid } else { Distance::Dot };
        match codec {
            0 => run_ops::<Binary1>(n.max(1), &ops, &ranges, distance),
            1 => run_ops::<Binary1_5>(n.max(1), &ops, &ranges, distance),
            2 => run_ops::<Binary2>(n.max(1), &ops, &ranges, distance),
            _ => run_ops::<ScalarU4>(n.max(1), &ops, &ranges, distance),
        }
    }
}

fn mmap_raw(dir: &std::path::Path, points: &[Vec<f32>]) -> MmapVectorStorage<f32> {
    let path = dir.join("raw");
    if !path.exists() {
        MmapVectorStorage::build(
            &path,
            &raw(points, Distance::Cosine),
            MmapVectorOptions::default(),
        )
        .unwrap();
    }
    MmapVectorStorage::open(&path, MmapVectorOptions::default()).unwrap()
}

/// An mmap build stores column groups, says so in its meta file, and
/// reopens to the same codes and scores as rows of the same codec; an
/// older format version of its 2-bit codes is refused.
#[test]
fn mmap_columns_reopen_as_built() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    // Past two scan runs of 1,024 slots.
    let points: Vec<Vec<f32>> = (0..2_500).map(|_| rng.vector(DIM)).collect();
    let qdir = dir.path().join("bq2");
    let mut built: Quantized<_, Binary2, MmapCodes> = Quantized::build_mmap(
        mmap_raw(dir.path(), &points),
        &qdir,
        &Default::default(),
        MmapVectorOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(built.columns_end(), 2_496);
    let summary = vecseg::quantized::meta::summary(&qdir).unwrap();
    assert_eq!(summary.columns_end, 2_496);
    let stored: Vec<Vec<f32>> = (0..2_500)
        .map(|o| built.get::<vecseg::Random>(o).unwrap().to_vec())
        .collect();
    let mut want = as_rows(&stored, Distance::Cosine, built.codec());
    // Deletes around the scan runs' and blocks' edges.
    for o in [0, 63, 64, 1_023, 1_024, 1_025, 2_047, 2_048, 2_499] {
        assert!(built.delete(o).unwrap());
        want.delete(o).unwrap();
    }
    let ranges = [
        (5, 70),
        (31, 33),
        (960, 1_100),
        (1_000, 2_100),
        (2_490, 2_500),
        (64, 128),
    ];
    assert_same(&built, &want, &points[3], &ranges);
    built.flush().unwrap();
    drop(built);
    let reopened = Quantized::<_, Binary2, MmapCodes>::open_mmap(
        mmap_raw(dir.path(), &points),
        &qdir,
        MmapVectorOptions::default(),
    )
    .unwrap();
    assert_eq!(reopened.columns_end(), 2_496);
    assert_same(&reopened, &want, &points[3], &ranges);
    drop(reopened);
    // 2-bit codes of format version 2 had another bit layout (the same
    // length at this dim): refused, not misread.
    rewrite_meta(&qdir, |b| b[4..6].copy_from_slice(&2u16.to_le_bytes()));
    let old = Quantized::<_, Binary2, MmapCodes>::open_mmap(
        mmap_raw(dir.path(), &points),
        &qdir,
        MmapVectorOptions::default(),
    );
    match old {
        Err(StorageError::Corrupted { path, reason }) => {
            assert_eq!(path, qdir.join(META_FILE));
            assert!(reason.contains("older layout"), "{reason}");
        }
        other => panic!("expected Corrupted, got {:?}", other.map(|_| ())),
    }
}

/// Rewrite the meta file in `dir` through `edit` (its body without the
/// CRC), with a fresh CRC.
fn rewrite_meta(dir: &std::path::Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let mut body = bytes[..bytes.len() - 4].to_vec();
    edit(&mut body);
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, body).unwrap();
}

/// Format version 1 (no column end) opens as rows; a column end past the
/// codes or not a multiple of 32 is an error naming the meta file.
#[test]
fn meta_versions_and_bad_column_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(8);
    let points: Vec<Vec<f32>> = (0..100).map(|_| rng.vector(DIM)).collect();
    let sq = dir.path().join("sq8");
    let built: Quantized<_, ScalarU8, MmapCodes> = Quantized::build_mmap(
        mmap_raw(dir.path(), &points),
        &sq,
        &ScalarConfig::default(),
        MmapVectorOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(built.columns_end(), 0, "scalar codes stay rows");
    let codes = built.codes().as_flat().unwrap().to_vec();
    drop(built);
    let open = |dir: &std::path::Path| {
        Quantized::<_, ScalarU8, MmapCodes>::open_mmap(
            mmap_raw(dir.parent().unwrap(), &points),
            dir,
            MmapVectorOptions::default(),
        )
    };
    // Version 1: the same bytes without the column end.
    rewrite_meta(&sq, |b| {
        b[4..6].copy_from_slice(&1u16.to_le_bytes());
        b.truncate(b.len() - 8);
    });
    let v1 = open(&sq).unwrap();
    assert_eq!(v1.columns_end(), 0);
    assert_eq!(v1.codes().as_flat().unwrap(), &codes[..]);
    drop(v1);
    for (end, what) in [(128u64, "the codes hold 100 slots"), (40, "multiple of 32")] {
        rewrite_meta(&sq, |b| {
            b[4..6].copy_from_slice(&2u16.to_le_bytes());
            b.extend_from_slice(&end.to_le_bytes());
        });
        match open(&sq) {
            Err(StorageError::Corrupted { path, reason: w }) => {
                assert_eq!(path, sq.join(META_FILE));
                assert!(w.contains(what), "{w}");
            }
            other => panic!("column end {end}: expected Corrupted, got {other:?}"),
        }
        rewrite_meta(&sq, |b| {
            b[4..6].copy_from_slice(&1u16.to_le_bytes());
            b.truncate(b.len() - 8);
        });
    }
}
