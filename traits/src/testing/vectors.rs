//! Checks for vector storages.

use crate::access::{Random, Sequential};
use crate::error::StorageError;
use crate::testing::{temp_dir, AppendableVectorFactory, Rng, VectorData, VectorFactory};
use crate::types::PointOffset;
use crate::vector::{AppendableVectorStorage, VectorStorage, VectorStorageRead};
use crate::Distance;

fn assert_matches_data<S: VectorStorageRead<Element = f32>>(s: &S, data: &VectorData) {
    assert_eq!(s.dim(), data.dim);
    assert_eq!(s.distance(), data.distance);
    assert_eq!(s.total_count(), data.vectors.len());
    let deleted = data.deleted.iter().filter(|d| **d).count();
    assert_eq!(s.deleted_count(), deleted);
    assert_eq!(s.available_count(), data.vectors.len() - deleted);
    for (i, want) in data.vectors.iter().enumerate() {
        let o = i as PointOffset;
        assert_eq!(
            &*s.get::<Random>(o).unwrap(),
            want.as_slice(),
            "random get {i}"
        );
        assert_eq!(
            &*s.get::<Sequential>(o).unwrap(),
            want.as_slice(),
            "sequential get {i}"
        );
        assert_eq!(s.is_deleted(o), data.deleted[i], "deleted flag {i}");
        assert_eq!(s.deleted_bits()[i], data.deleted[i], "deleted bit {i}");
    }
    assert!(!s.is_deleted(data.vectors.len() as PointOffset + 10));
}

/// Every vector, count and deleted flag reads back as built, also after reopen.
pub fn reads_match_data<F: VectorFactory>(f: &F) {
    for distance in Distance::ALL {
        let dir = temp_dir();
        let data = VectorData::random(300, 24, distance, 11);
        let s = f.build(dir.path(), &data).unwrap();
        assert_matches_data(&s, &data);
        let s = f.reopen(dir.path(), s).unwrap();
        assert_matches_data(&s, &data);
    }
}

/// `get_batch` hands back exactly the vectors `get` does, once each, for
/// scattered, clustered and repeated offsets and both access patterns.
pub fn get_batch_matches_get<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let data = VectorData::random(500, 16, Distance::Dot, 12);
    let s = f.build(dir.path(), &data).unwrap();
    let mut rng = Rng::new(5);
    let scattered: Vec<PointOffset> = (0..200).map(|_| rng.below(500) as PointOffset).collect();
    let clustered: Vec<PointOffset> = (100..160).rev().collect();
    let repeated: Vec<PointOffset> = vec![7, 7, 7, 499, 0];
    for offsets in [scattered, clustered, repeated, Vec::new()] {
        for sequential in [false, true] {
            let mut seen = vec![0u32; offsets.len()];
            let mut check = |i: usize, v: &[f32]| {
                seen[i] += 1;
                assert_eq!(v, data.vectors[offsets[i] as usize].as_slice());
            };
            if sequential {
                s.get_batch::<Sequential>(&offsets, &mut check).unwrap();
            } else {
                s.get_batch::<Random>(&offsets, &mut check).unwrap();
            }
            assert!(seen.iter().all(|&n| n == 1), "every index exactly once");
        }
    }
}

/// `scan_live` visits exactly the live slots of a range, in order, with the
/// vectors `get` returns, for ranges that start, end or reach past the end
/// anywhere.
pub fn scan_live_matches_get<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let data = VectorData::random(700, 8, Distance::Dot, 18);
    let s = f.build(dir.path(), &data).unwrap();
    for range in [0..700, 0..0, 3..5, 63..130, 128..700, 650..10_000, 699..700] {
        let mut seen = Vec::new();
        s.scan_live::<Sequential, _>(range.clone(), |o, v| {
            assert_eq!(v, data.vectors[o as usize].as_slice(), "vector {o}");
            seen.push(o);
        })
        .unwrap();
        let want: Vec<PointOffset> = (range.start..range.end.min(700))
            .filter(|o| !data.deleted[*o as usize])
            .collect();
        assert_eq!(seen, want, "range {range:?}");
    }
}

/// `scan_blocks` covers a range in order with blocks of at most
/// [`SCAN_BLOCK`](crate::vector::SCAN_BLOCK) slots holding the vectors
/// `get` returns, the deleted ones flagged in the mask.
pub fn scan_blocks_match_get<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let data = VectorData::random(700, 8, Distance::Dot, 19);
    let s = f.build(dir.path(), &data).unwrap();
    for range in [0..700, 0..0, 3..5, 63..130, 128..700, 650..10_000, 699..700] {
        let mut next = range.start;
        s.scan_blocks::<Sequential, _>(range.clone(), |first, vectors, deleted| {
            assert_eq!(first, next, "blocks follow one another");
            let n = vectors.len() / 8;
            assert!((1..=crate::vector::SCAN_BLOCK).contains(&n), "block of {n}");
            for (i, v) in vectors.chunks_exact(8).enumerate() {
                let o = first as usize + i;
                assert_eq!(deleted >> i & 1 == 1, data.deleted[o], "flag of {o}");
                if !data.deleted[o] {
                    assert_eq!(v, data.vectors[o].as_slice(), "vector {o}");
                }
            }
            assert_eq!(
                deleted.checked_shr(n as u32).unwrap_or(0),
                0,
                "no flags past the block"
            );
            next = first + n as PointOffset;
        })
        .unwrap();
        assert_eq!(next, range.end.min(700).max(range.start), "range {range:?}");
    }
}

/// Offsets past the end give `OffsetOutOfRange`, never a panic.
pub fn out_of_range_is_an_error<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let data = VectorData::random(10, 8, Distance::Euclid, 13);
    let mut s = f.build(dir.path(), &data).unwrap();
    for bad in [10, 11, u32::MAX] {
        assert!(matches!(
            s.get::<Random>(bad),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            s.get::<Sequential>(bad),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(s.get_batch::<Random>(&[1, bad], &mut |_, _| {}).is_err());
        assert!(matches!(
            s.delete(bad),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }
    assert_eq!(
        s.deleted_count(),
        data.deleted.iter().filter(|d| **d).count()
    );
}

/// Delete reports whether the slot was live, keeps the bytes readable and
/// survives reopen.
pub fn delete_flags_and_persists<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let mut data = VectorData::random(200, 12, Distance::Cosine, 14);
    let mut s = f.build(dir.path(), &data).unwrap();
    for o in [0usize, 3, 50, 199] {
        let was_live = !data.deleted[o];
        assert_eq!(s.delete(o as PointOffset).unwrap(), was_live, "delete {o}");
        assert!(!s.delete(o as PointOffset).unwrap(), "second delete {o}");
        data.deleted[o] = true;
    }
    assert_matches_data(&s, &data);
    s.flush().unwrap();
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches_data(&s, &data);
}

/// A storage with no vectors works and reopens.
pub fn empty_storage_works<F: VectorFactory>(f: &F) {
    let dir = temp_dir();
    let data = VectorData::random(0, 4, Distance::Dot, 15);
    let s = f.build(dir.path(), &data).unwrap();
    assert_matches_data(&s, &data);
    assert!(s.get::<Random>(0).is_err());
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches_data(&s, &data);
}

/// Appending, overwriting (which clears the deleted flag) and reopen.
pub fn append_overwrite_and_reopen<F: AppendableVectorFactory>(f: &F) {
    let dir = temp_dir();
    let mut data = VectorData::random(100, 8, Distance::Dot, 16);
    let mut s = f.create(dir.path(), 8, Distance::Dot).unwrap();
    for (i, v) in data.vectors.iter().enumerate() {
        s.insert(i as PointOffset, v).unwrap();
    }
    for (i, d) in data.deleted.iter().enumerate() {
        if *d {
            assert!(s.delete(i as PointOffset).unwrap());
        }
    }
    assert_matches_data(&s, &data);
    // Overwrite a live and a deleted slot.
    for o in [5usize, 3] {
        let v: Vec<f32> = (0..8).map(|k| (o * 10 + k) as f32).collect();
        s.insert(o as PointOffset, &v).unwrap();
        data.vectors[o] = v;
        data.deleted[o] = false;
    }
    assert_matches_data(&s, &data);
    s.flush().unwrap();
    let mut s = f.reopen(dir.path(), s).unwrap();
    assert_matches_data(&s, &data);
    // Keep appending after reopen.
    let extra = vec![9.0f32; 8];
    s.insert(100, &extra).unwrap();
    data.vectors.push(extra);
    data.deleted.push(false);
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches_data(&s, &data);
}

/// Inserting past the end or with the wrong dimension is an error and changes nothing.
pub fn insert_rejects_bad_offsets_and_dims<F: AppendableVectorFactory>(f: &F) {
    let dir = temp_dir();
    let mut s = f.create(dir.path(), 4, Distance::Euclid).unwrap();
    s.insert(0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert!(matches!(
        s.insert(2, &[1.0; 4]),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        s.insert(1, &[1.0; 3]),
        Err(StorageError::DimensionMismatch {
            expected: 4,
            got: 3
        })
    ));
    assert!(matches!(
        s.insert(0, &[1.0; 5]),
        Err(StorageError::DimensionMismatch {
            expected: 4,
            got: 5
        })
    ));
    assert_eq!(s.total_count(), 1);
    assert_eq!(&*s.get::<Random>(0).unwrap(), &[1.0, 2.0, 3.0, 4.0]);
}

/// Thousands of appends (enough to cross chunk boundaries in test
/// configurations) survive reopen.
pub fn many_appends_survive_reopen<F: AppendableVectorFactory>(f: &F) {
    let dir = temp_dir();
    let mut data = VectorData::random(5000, 20, Distance::Manhattan, 17);
    data.deleted.iter_mut().for_each(|d| *d = false);
    let mut s = f.create(dir.path(), 20, Distance::Manhattan).unwrap();
    for (i, v) in data.vectors.iter().enumerate() {
        s.insert(i as PointOffset, v).unwrap();
    }
    for o in (0..5000).step_by(97) {
        s.delete(o as PointOffset).unwrap();
        data.deleted[o] = true;
    }
    let s = f.reopen(dir.path(), s).unwrap();
    assert_matches_data(&s, &data);
}
