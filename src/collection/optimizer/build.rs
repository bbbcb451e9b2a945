//! The optimizer's builder: an immutable mmap segment from a set of
//! points (the newest copy of each live point of the source segments),
//! ordered by the tenant key when there is one, else by the slots of a
//! perfect hash over the numeric ids (the id map then stores no records).
//!
//! The points are staged in an in-memory segment in their final order
//! (offset `i` is the `i`-th point), which [`build_mmap`] then writes as
//! exact-size mmap files with a perfect-hash id map. Staging holds the
//! points being built in RAM once; the optimizer bounds what one build
//! takes (see [`super::OptimizerOptions`]).

use std::path::Path;

use serde_json::Value;
use vecseg_memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg_traits::{Distance, FieldSchema, PointId, PointOffset, Record, Result, StorageError};

use crate::index::hnsw::HnswConfig;
use crate::index::payload::{values_at, IndexedValue};
use crate::kinds::MmapSegment;
use crate::migrate::{build_mmap_planned, Progress};
use crate::mmap::id_map::NumSlotPlan;
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

/// The points of a build and where they go.
struct Ordered {
    /// The points in build order (offset = position).
    points: Vec<Record<f32>>,
    /// The tenant runs, when ordered by a tenant key.
    tenants: Option<TenantTable>,
    /// The numeric ids' perfect hash, when the points sit at its slots.
    plan: Option<NumSlotPlan>,
}

/// Put `points` in build order; of two copies of one id the newer is
/// kept. With a `tenant` key: by tenant, then by id, with the tenant runs
/// (offset = position in the returned order). Without: the numeric ids
/// first, each at the slot of a perfect hash built over them (so the id
/// map needs no records, [`NumSlotPlan`]), then the UUIDs by id.
fn order(points: Vec<Record<f32>>, tenant: Option<&FieldSchema>) -> Ordered {
    let mut points = points;
    points.sort_by(|a, b| {
        (a.id, std::cmp::Reverse(a.version)).cmp(&(b.id, std::cmp::Reverse(b.version)))
    });
    points.dedup_by(|later, earlier| later.id == earlier.id);
    let Some(tenant_key) = tenant else {
        let numeric = |r: &Record<f32>| match r.id {
            PointId::Num(n) => Some(n),
            PointId::Uuid(_) => None,
        };
        let plan = NumSlotPlan::build(points.iter().filter_map(numeric).collect());
        // Stable: the UUIDs (all after the numeric ids) keep their order.
        points.sort_by_cached_key(|r| numeric(r).map_or(usize::MAX, |n| plan.slot(n)));
        return Ordered {
            points,
            tenants: None,
            plan: Some(plan),
        };
    };
    let tenant = Some(tenant_key);
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
    Ordered {
        points: keyed.into_iter().map(|(_, r)| r).collect(),
        tenants: table,
        plan: None,
    }
}

/// Build an immutable mmap segment in `dir` (which must not hold a
/// segment) from `points`: live points with their versions, vectors in
/// stored form, at most one copy per id (else the newest is kept). They
/// are written ordered by the tenant key's value then by id when
/// `options` marks a tenant key — each tenant one contiguous run of
/// offsets and of vector file pages, recorded in the segment's
/// [`TenantTable`] — and otherwise by the slots of a perfect hash over the
/// numeric ids (UUIDs last, by id), which gives the id map its compact
/// [`NumLayout::SlotOrdered`](crate::mmap::id_map::NumLayout) layout. Every point keeps its version;
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
    let Ordered {
        points,
        tenants,
        plan,
    } = order(points, options.tenant());
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
    let mut segment = build_mmap_planned(&staging, dir, &options.vector_options, plan, progress)?;
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
        let Ordered {
            points: ordered,
            tenants: table,
            plan,
        } = order(points, Some(&tenant));
        assert!(plan.is_none());
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

    /// Without a tenant key every numeric id sits at its slot, UUIDs
    /// follow by id, the newest copy is kept; the built segment's id map
    /// is slot-ordered and finds every point, and only those.
    #[test]
    fn without_a_tenant_numeric_ids_sit_at_their_slots() {
        let uuid = |i: u128| PointId::Uuid(uuid::Uuid::from_u128(i * 0x1234_5678_9abc));
        let mut points: Vec<Record<f32>> = (0..2000u64).map(|i| record(i * 7919, None)).collect();
        for i in [9u128, 3, 5] {
            let mut r = record(0, None);
            r.id = uuid(i);
            points.push(r);
        }
        let mut old = record(7919, None);
        old.version = 0;
        old.vector = vec![-1.0];
        points.insert(0, old);
        let Ordered {
            points: ordered,
            tenants,
            plan,
        } = order(points.clone(), None);
        let plan = plan.unwrap();
        assert!(tenants.is_none());
        assert_eq!(plan.len(), 2000);
        assert_eq!(ordered.len(), 2003);
        for (o, r) in ordered.iter().enumerate() {
            match r.id {
                PointId::Num(n) => {
                    assert_eq!(plan.slot(n), o, "id {n}");
                    assert_eq!(r.version, n, "newest copy of {n}");
                }
                PointId::Uuid(_) => assert!(o >= 2000),
            }
        }
        let tail: Vec<PointId> = ordered[2000..].iter().map(|r| r.id).collect();
        assert_eq!(tail, vec![uuid(3), uuid(5), uuid(9)]);

        let dir = tempfile::tempdir().unwrap();
        let options = BuildOptions {
            dim: 1,
            distance: Distance::Dot,
            indexes: Vec::new(),
            vector_options: MmapVectorOptions::default(),
            hnsw: None,
        };
        let segment = build_segment(points, dir.path(), &options, &mut |_| {}).unwrap();
        assert_eq!(
            segment.ids.sizes().num_layout,
            crate::mmap::id_map::NumLayout::SlotOrdered
        );
        for (o, r) in ordered.iter().enumerate() {
            let got = segment.get(r.id).unwrap().unwrap();
            assert_eq!(got.vector, r.vector, "{}", r.id);
            assert_eq!(
                vecseg_traits::IdMapperRead::internal(&segment.ids, r.id).unwrap(),
                Some(o as PointOffset)
            );
        }
        for absent in [1u64, 7918, 2000 * 7919, u64::MAX] {
            assert_eq!(segment.get(PointId::Num(absent)).unwrap(), None, "{absent}");
        }
    }
}
