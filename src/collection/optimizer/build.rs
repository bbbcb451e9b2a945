//! The optimizer's builder: an immutable mmap segment from a set of
//! points (the newest copy of each live point of the source segments),
//! ordered by the tenant key when there is one.
//!
//! The points are staged in an in-memory segment in their final order
//! (offset `i` is the `i`-th point), which [`build_mmap`] then writes as
//! exact-size mmap files with a perfect-hash id map. Staging holds the
//! points being built in RAM once; the optimizer bounds what one build
//! takes (see [`super::OptimizerOptions`]).

use std::path::Path;

use serde_json::Value;
use vecseg_memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg_traits::{Distance, FieldSchema, PointOffset, Record, Result, StorageError};

use crate::index::hnsw::HnswConfig;
use crate::index::payload::{values_at, IndexedValue};
use crate::kinds::MmapSegment;
use crate::migrate::{build_mmap, Progress};
use crate::mmap::MmapVectorOptions;
use crate::segment::{TenantRange, TenantTable};
use crate::Segment;

/// What a build writes besides the points.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Vector dimension.
    pub dim: usize,
    /// Distance (vectors are taken as stored: normalised for cosine).
    pub distance: Distance,
    /// Payload indexes of the new segment. The one marked
    /// [`FieldSchema::is_tenant`] orders the points (defragmentation).
    pub indexes: Vec<FieldSchema>,
    /// Options of the mmap vector storage.
    pub vector_options: MmapVectorOptions,
    /// An HNSW index to build over the new segment (payload links only
    /// with a tenant key among `indexes`; dropped otherwise).
    pub hnsw: Option<HnswConfig>,
}

impl BuildOptions {
    /// The tenant key's schema, if one index is marked as the tenant key.
    pub fn tenant(&self) -> Option<&FieldSchema> {
        self.indexes.iter().find(|s| s.is_tenant)
    }
}

/// The tenant a point is ordered by: the first value of the tenant key
/// of the index's type (`None`: no such value; such points come last).
fn tenant_of(record: &Record<f32>, tenant: &FieldSchema) -> Option<IndexedValue> {
    values_at(&record.payload, &tenant.key, tenant.field_type)
        .0
        .into_iter()
        .next()
}

fn to_json(v: &IndexedValue) -> Value {
    match v {
        IndexedValue::Keyword(s) => Value::String(s.clone()),
        IndexedValue::Integer(i) => Value::from(*i),
        IndexedValue::Float(f) => Value::from(*f),
        IndexedValue::Bool(b) => Value::Bool(*b),
    }
}

/// Put `points` in build order: by tenant (when `tenant` is set), then
/// by id; of two copies of one id the newer is kept. Returns the tenant
/// runs (offset = position in the returned order).
fn order(
    points: Vec<Record<f32>>,
    tenant: Option<&FieldSchema>,
) -> (Vec<Record<f32>>, Option<TenantTable>) {
    let mut points = points;
    points.sort_by(|a, b| {
        (a.id, std::cmp::Reverse(a.version)).cmp(&(b.id, std::cmp::Reverse(b.version)))
    });
    points.dedup_by(|later, earlier| later.id == earlier.id);
    let mut keyed: Vec<(Option<IndexedValue>, Record<f32>)> = points
        .into_iter()
        .map(|r| (tenant.and_then(|t| tenant_of(&r, t)), r))
        .collect();
    // Points with a tenant first (`None` sorts first, hence `is_none`);
    // the sort is stable, so ids stay ascending within a tenant.
    keyed.sort_by(|(ta, _), (tb, _)| (ta.is_none(), ta).cmp(&(tb.is_none(), tb)));
    let table = tenant.map(|t| {
        let mut ranges: Vec<TenantRange> = Vec::new();
        for (i, (value, _)) in keyed.iter().enumerate() {
            let Some(value) = value else { break };
            let offset = i as PointOffset;
            let json = to_json(value);
            match ranges.last_mut() {
                Some(last) if last.value == json => last.end = offset + 1,
                _ => ranges.push(TenantRange {
                    value: json,
                    start: offset,
                    end: offset + 1,
                }),
            }
        }
        TenantTable {
            key: t.key.clone(),
            ranges,
        }
    });
    (keyed.into_iter().map(|(_, r)| r).collect(), table)
}

/// Build an immutable mmap segment in `dir` (which must not hold a
/// segment) from `points`: live points with their versions, vectors in
/// stored form, at most one copy per id (else the newest is kept). They
/// are written ordered by the tenant key's value then by id when
/// `options` marks a tenant key — each tenant one contiguous run of
/// offsets and of vector file pages, recorded in the segment's
/// [`TenantTable`] — and by id otherwise. Every point keeps its version;
/// the segment's version is the largest of them. With `options.hnsw`,
/// the segment also gets an HNSW index.
pub fn build_segment(
    points: Vec<Record<f32>>,
    dir: &Path,
    options: &BuildOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MmapSegment<f32>> {
    if dir.join(crate::segment::STATE_FILE).exists() {
        return Err(StorageError::InvalidArgument(format!(
            "{} already holds a segment",
            dir.display()
        )));
    }
    let (points, tenants) = order(points, options.tenant());
    let mut staging = Segment::new(
        MemoryVectorStorage::<f32>::new(options.dim, options.distance)?,
        MemoryPayloadStorage::new(),
        MemoryIdMapper::new(),
    );
    for p in points {
        if p.vector.len() != options.dim {
            return Err(StorageError::InvalidArgument(format!(
                "point {} has {} dimensions, the build {}",
                p.id,
                p.vector.len(),
                options.dim
            )));
        }
        staging.upsert_prepared(p.version, p.id, &p.vector, &p.payload)?;
    }
    let mut segment = build_mmap(&staging, dir, &options.vector_options, progress)?;
    drop(staging);
    segment.tenants = tenants;
    for schema in &options.indexes {
        segment.create_field_index(schema.clone())?;
    }
    segment.flush()?;
    if let Some(mut config) = options.hnsw {
        if options.tenant().is_none() {
            config.payload_m = 0;
        }
        if config.m > 0 || config.payload_m > 0 {
            segment.build_hnsw(config)?;
        }
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecseg_traits::{FieldType, Payload, PointId};

    fn record(id: u64, tenant: Option<&str>) -> Record<f32> {
        let mut payload = Payload::new();
        if let Some(t) = tenant {
            payload.insert("t".into(), Value::String(t.into()));
        }
        Record {
            id: PointId::Num(id),
            version: id,
            vector: vec![id as f32],
            payload,
        }
    }

    #[test]
    fn order_groups_tenants_then_ids_and_keeps_the_newest_copy() {
        let mut tenant = FieldSchema::new("t", FieldType::Keyword);
        tenant.is_tenant = true;
        let mut old = record(3, Some("b"));
        old.version = 1;
        let points = vec![
            record(5, Some("b")),
            record(1, None),
            record(3, Some("b")),
            old,
            record(4, Some("a")),
            record(2, Some("b")),
        ];
        let (ordered, table) = order(points, Some(&tenant));
        let ids: Vec<_> = ordered.iter().map(|r| (r.id, r.version)).collect();
        let n = PointId::Num;
        assert_eq!(
            ids,
            vec![(n(4), 4), (n(2), 2), (n(3), 3), (n(5), 5), (n(1), 1)]
        );
        let table = table.unwrap();
        assert_eq!(table.range_of(&Value::from("a")), Some(0..1));
        assert_eq!(table.range_of(&Value::from("b")), Some(1..4));
        assert_eq!(table.ranges.len(), 2);
    }
}
