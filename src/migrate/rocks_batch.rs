//! Fast batched reads of a RocksDB segment for migration.

use vecseg_traits::{Result, VectorElement};

use crate::kinds::RocksSegment;

/// [`read_batch`](super::read_batch) for a RocksDB segment through one
/// forward iterator per column family instead of point lookups per offset
/// (returns exactly what `read_batch` returns; a test checks it).
pub fn read_rocks_batch<T: VectorElement>(
    s: &RocksSegment<T>,
    range: std::ops::Range<usize>,
) -> Result<super::SlotBatch<T>> {
    use vecseg_traits::{IdMapperRead, PointOffset, Sequential, VectorStorageRead};
    let dim = s.vectors.dim();
    let clamp = |x: usize| x.min(u32::MAX as usize) as PointOffset;
    let vec_end = range.end.min(s.vectors.total_count()).max(range.start);
    let offsets: Vec<PointOffset> = (range.start..vec_end).map(|o| o as PointOffset).collect();
    let mut vectors = vec![T::default(); offsets.len() * dim];
    s.vectors.get_batch::<Sequential>(&offsets, &mut |i, v| {
        if v.len() == dim {
            vectors[i * dim..(i + 1) * dim].copy_from_slice(v);
        }
    })?;
    let deleted = offsets.iter().map(|&o| s.vectors.is_deleted(o)).collect();
    let len = range.len();
    let start = range.start;
    let mut payloads = vec![vecseg_traits::Payload::new(); len];
    s.payloads
        .scan_range(clamp(range.start)..clamp(range.end), &mut |o, p| {
            payloads[o as usize - start] = p;
        })?;
    let id_end = range.end.min(s.ids.total_count()).max(range.start);
    let mut mappings = vec![None; id_end - start];
    let id_range = clamp(start)..clamp(id_end);
    s.ids.scan_external(id_range.clone(), &mut |o, id| {
        mappings[o as usize - start] = Some((id, None));
    })?;
    s.ids.scan_versions(id_range, &mut |o, v| {
        if let Some(Some((_, version))) = mappings.get_mut(o as usize - start) {
            *version = Some(v);
        }
    })?;
    Ok(super::SlotBatch {
        start: start as PointOffset,
        dim,
        vector_slots: offsets.len(),
        vectors,
        deleted,
        payloads,
        mappings,
    })
}
