//! Helpers shared by the conformance test files: fill any appendable
//! storage with the suite's data, and in-memory storages built that way
//! (used directly by the memory backend and as the build source of the
//! immutable backends).
#![allow(dead_code)]

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::testing::{ModelPoint, VectorData};
use vecseg::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, Distance, Payload,
    PointId, PointOffset, Result, Segment, Version,
};

/// The in-memory segment type.
pub type MemorySegment = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;

/// Append `data` (vectors and deleted flags) to an empty appendable storage.
pub fn fill_vectors<S>(s: &mut S, data: &VectorData) -> Result<()>
where
    S: AppendableVectorStorage<Element = f32>,
{
    for (i, v) in data.vectors.iter().enumerate() {
        s.insert(i as PointOffset, v)?;
        if data.deleted[i] {
            s.delete(i as PointOffset)?;
        }
    }
    Ok(())
}

/// Write `entries` into an appendable payload storage.
pub fn fill_payloads<S: AppendablePayloadStorage>(
    s: &mut S,
    entries: &[(PointOffset, Payload)],
) -> Result<()> {
    for (o, p) in entries {
        s.overwrite(*o, p)?;
    }
    Ok(())
}

/// Allocate `total` offsets in an empty appendable mapper and map `links`.
pub fn fill_ids<M: AppendableIdMapper>(
    m: &mut M,
    links: &[(PointId, PointOffset, Version)],
    total: usize,
) -> Result<()> {
    // Allocate every offset with a placeholder, then drop the placeholders.
    for o in 0..total as PointOffset {
        m.set_link(PointId::Num(u64::MAX - o as u64), o, 0)?;
    }
    for o in 0..total as PointOffset {
        m.drop_id(PointId::Num(u64::MAX - o as u64))?;
    }
    for (id, o, v) in links {
        m.set_link(*id, *o, *v)?;
    }
    Ok(())
}

/// A memory vector storage holding `data`.
pub fn memory_vectors(data: &VectorData) -> Result<MemoryVectorStorage<f32>> {
    let mut s = MemoryVectorStorage::new(data.dim, data.distance)?;
    fill_vectors(&mut s, data)?;
    Ok(s)
}

/// A memory payload storage holding `entries`.
pub fn memory_payloads(entries: &[(PointOffset, Payload)]) -> Result<MemoryPayloadStorage> {
    let mut s = MemoryPayloadStorage::new();
    fill_payloads(&mut s, entries)?;
    Ok(s)
}

/// A memory id mapper with `total` offsets allocated and `links` mapped.
pub fn memory_ids(
    links: &[(PointId, PointOffset, Version)],
    total: usize,
) -> Result<MemoryIdMapper> {
    let mut m = MemoryIdMapper::new();
    fill_ids(&mut m, links, total)?;
    Ok(m)
}

/// An empty in-memory segment.
pub fn memory_segment(dim: usize, distance: Distance) -> Result<MemorySegment> {
    Ok(Segment::new(
        MemoryVectorStorage::new(dim, distance)?,
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    ))
}

/// An in-memory segment holding `points`.
pub fn memory_segment_with(
    dim: usize,
    distance: Distance,
    points: &[ModelPoint],
) -> Result<MemorySegment> {
    let mut s = memory_segment(dim, distance)?;
    for p in points {
        s.upsert(p.version, p.id, &p.vector, &p.payload)?;
    }
    Ok(s)
}
