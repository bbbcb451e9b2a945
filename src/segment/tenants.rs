//! Tenants of a segment: the tenant → offset range table a defragmenting
//! build records (`segment.json`, field `tenants`), and the locality
//! measure — how many 4 KiB pages of vector data one tenant's points
//! touch, against the fewest they could.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vecseg_traits::filter::for_each_value;
use vecseg_traits::{IdMapperRead, PayloadStorageRead, PointOffset, Result, VectorStorageRead};

use super::Segment;

/// Page size of the locality measure.
pub const PAGE_BYTES: u64 = 4096;

/// One tenant's run of offsets in a defragmented segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRange {
    /// The tenant key's value (a JSON string or number).
    pub value: Value,
    /// First offset of the run.
    pub start: PointOffset,
    /// One past the last offset of the run.
    pub end: PointOffset,
}

/// Which offsets each tenant occupies in a segment built ordered by the
/// tenant key (points without a value for the key come after every run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantTable {
    /// The tenant key (dotted payload path).
    pub key: String,
    /// One run per tenant, in offset order.
    pub ranges: Vec<TenantRange>,
}

impl TenantTable {
    /// The run of the tenant whose key value is `value`.
    pub fn range_of(&self, value: &Value) -> Option<std::ops::Range<PointOffset>> {
        self.ranges
            .iter()
            .find(|r| &r.value == value)
            .map(|r| r.start..r.end)
    }
}

/// The first value of `key` in `payload` (the value a tenant is named by;
/// a point with several values is ordered and counted by its first).
pub fn tenant_value(payload: &vecseg_traits::Payload, key: &str) -> Option<Value> {
    let mut first = None;
    for_each_value(payload, key, &mut |v| {
        first = Some(v.clone());
        true
    });
    first
}

/// How one tenant's points lie in the vector storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLocality {
    /// The tenant key's value.
    pub value: Value,
    /// Live points of the tenant.
    pub points: usize,
    /// Distinct 4 KiB pages of vector data their vectors occupy.
    pub pages: u64,
    /// The fewest pages that many vectors can occupy:
    /// `ceil(points × vector_bytes / 4096)`.
    pub min_pages: u64,
}

impl TenantLocality {
    /// `pages / min_pages` (1.0 is perfect locality).
    pub fn ratio(&self) -> f64 {
        self.pages as f64 / self.min_pages.max(1) as f64
    }
}

/// Distinct pages touched by vectors of `vector_bytes` bytes at `offsets`
/// (ascending), the vector data starting on a page boundary.
fn pages_touched(offsets: &[PointOffset], vector_bytes: u64) -> u64 {
    let mut pages = 0;
    let mut last: Option<u64> = None;
    for &o in offsets {
        let first = o as u64 * vector_bytes / PAGE_BYTES;
        let end = (o as u64 * vector_bytes + vector_bytes).div_ceil(PAGE_BYTES);
        let from = match last {
            Some(l) if l >= first => l + 1,
            _ => first,
        };
        if end > from {
            pages += end - from;
            last = Some(end - 1);
        }
    }
    pages
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// The tenant → offset range table recorded by a defragmenting build,
    /// if this segment was built that way.
    pub fn tenants(&self) -> Option<&TenantTable> {
        self.tenants.as_ref()
    }

    /// The locality measure for every value of payload key `key`: the
    /// distinct 4 KiB pages of vector data each tenant's live points
    /// occupy, against the minimum. Reads every live point's payload.
    /// Counts pages from the start of the vector data (page-aligned in
    /// the mmap and chunked files).
    pub fn tenant_locality(&self, key: &str) -> Result<Vec<TenantLocality>> {
        let vector_bytes = (self.dim() * std::mem::size_of::<V::Element>()) as u64;
        Ok(self
            .tenant_groups(key)?
            .into_iter()
            .map(|(value, offsets)| TenantLocality {
                value,
                points: offsets.len(),
                pages: pages_touched(&offsets, vector_bytes),
                min_pages: (offsets.len() as u64 * vector_bytes).div_ceil(PAGE_BYTES),
            })
            .collect())
    }

    /// The live offsets of each value of `key` (ascending), e.g. the
    /// blocks that get payload-aware HNSW links.
    pub fn tenant_blocks(&self, key: &str) -> Result<Vec<Vec<PointOffset>>> {
        Ok(self
            .tenant_groups(key)?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// Live offsets grouped by the first value of `key`, ordered by value.
    fn tenant_groups(&self, key: &str) -> Result<Vec<(Value, Vec<PointOffset>)>> {
        let mut by_tenant: BTreeMap<String, (Value, Vec<PointOffset>)> = BTreeMap::new();
        for o in 0..self.vectors.total_count() as PointOffset {
            if !self.is_live(o) {
                continue;
            }
            if let Some(v) = tenant_value(&self.payloads.get(o)?, key) {
                by_tenant
                    .entry(v.to_string())
                    .or_insert_with(|| (v, Vec::new()))
                    .1
                    .push(o);
            }
        }
        Ok(by_tenant.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_shared_and_spanning_pages_once() {
        // 1536-byte vectors: offsets 0,1 share page 0; 2 spans pages 0-1.
        assert_eq!(pages_touched(&[0, 1, 2], 1536), 2);
        assert_eq!(pages_touched(&[0, 8], 1536), 2); // 8 starts at 12288
        assert_eq!(pages_touched(&[], 1536), 0);
        // 512-byte vectors scattered one per page.
        assert_eq!(pages_touched(&[0, 8, 16, 24], 512), 4);
        assert_eq!(pages_touched(&[0, 1, 2, 3], 512), 1);
    }
}
