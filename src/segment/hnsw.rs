//! The segment's HNSW index: build (with payload links on the tenant
//! key), load at open, and the graph path of a search.
//!
//! The graph covers the offsets that existed when it was built; offsets
//! added later (an appendable segment's new points, or a point's new copy)
//! are scanned exactly and merged, so a search never misses a point the
//! graph does not know. Deleted points stay in the graph for navigation
//! and are never returned. A links file that fails to open is reported
//! with a warning and the segment searches exactly, as without an index.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use vecseg_traits::{
    Condition, Filter, IdMapper, IdMapperRead, PayloadStorage, PayloadStorageRead, PointOffset,
    QueryScorer, Result, StorageError, VectorStorage, VectorStorageRead,
};

use super::search::{ScanOptions, TopK};
use super::Segment;
use crate::index::hnsw::{HnswConfig, HnswIndex};

/// Subdirectory of a segment holding its links file.
pub const HNSW_DIR: &str = "hnsw";

/// What `segment.json` records of the index (`hnsw`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HnswState {
    /// How it was built.
    pub config: HnswConfig,
    /// The payload key whose values got payload-aware links.
    pub payload_key: Option<String>,
}

/// A segment's index and the key its payload links follow.
#[derive(Debug)]
pub(crate) struct SegmentHnsw {
    pub(crate) index: HnswIndex,
    pub(crate) payload_key: Option<String>,
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// The HNSW index, if one was built.
    pub fn hnsw(&self) -> Option<&HnswIndex> {
        self.hnsw.as_ref().map(|h| &h.index)
    }

    /// Up to `n` live offsets below `limit` passing `filter`, from the
    /// start: starting points of a filtered graph search.
    fn first_matches(&self, filter: &Filter, n: usize, limit: usize) -> Result<Vec<PointOffset>> {
        let mut out = Vec::new();
        for o in 0..limit as PointOffset {
            if out.len() == n {
                break;
            }
            if self.is_live(o) && self.check(filter, o)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Whether `filter` requires a value of the key that has payload
    /// links: then the graph walk may stay inside the matching points.
    fn filter_follows_payload_links(&self, filter: &Filter, key: &str) -> bool {
        filter.must.iter().any(|c| {
            matches!(c,
                Condition::MatchKeyword { key: k, .. }
                | Condition::MatchInteger { key: k, .. }
                | Condition::MatchBool { key: k, .. } if k == key)
        })
    }

    /// Top `k` (score, offset) of the graph search plus an exact scan of
    /// the offsets past the graph; `query` in stored form.
    pub(crate) fn search_graph(
        &self,
        h: &SegmentHnsw,
        query: &[V::Element],
        k: usize,
        filter: Option<&Filter>,
        options: &ScanOptions,
        total: usize,
    ) -> Result<Vec<(f32, PointOffset)>> {
        let index = &h.index;
        let nodes = index.graph().nodes().min(total);
        let failure: RefCell<Option<StorageError>> = RefCell::new(None);
        let passes = |o: PointOffset| match filter {
            None => true,
            Some(f) => self.check(f, o).unwrap_or_else(|e| {
                failure.borrow_mut().get_or_insert(e);
                false
            }),
        };
        // With no deleted slot and every allocated offset mapped, every
        // offset below `total` is live and mapped: a bound check instead
        // of a cache miss on the deleted flags and the id map per node.
        let all_live = self.vectors.deleted_count() == 0
            && self.ids.available_count() == self.ids.total_count();
        let mapped = |o: PointOffset| {
            if all_live {
                (o as usize) < total
            } else {
                self.is_live(o) && self.is_mapped(o).unwrap_or(false)
            }
        };
        // Inside the payload links' key the walk stays among matches;
        // otherwise it walks every point and returns the matches.
        let walk_matches_only = match (filter, &h.payload_key) {
            (Some(f), Some(key)) => self.filter_follows_payload_links(f, key),
            _ => false,
        };
        let emit = |o: PointOffset| mapped(o) && (walk_matches_only || passes(o));
        let hints = match filter {
            Some(f) => self.first_matches(f, 4, nodes)?,
            None => Vec::new(),
        };
        let ef = options
            .hnsw_ef
            .unwrap_or(index.config().ef_construct)
            .max(k);
        let walk: Option<&dyn Fn(PointOffset) -> bool> = if walk_matches_only {
            Some(&passes)
        } else {
            None
        };
        let hits = index.search(&self.vectors, query, k, ef, walk, &emit, &hints)?;
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        let mut top = TopK::new(k);
        for hit in hits {
            top.push(hit.score, hit.offset);
        }
        if total > nodes {
            // Offsets the graph does not know, scored exactly.
            let scorer = self.vectors.scorer(query)?;
            let tail = self.scan_range(
                &scorer,
                k,
                filter,
                nodes as PointOffset..total as PointOffset,
            )?;
            let mut tail = tail.into_sorted();
            if !scorer.is_exact() {
                tail = self.rescore(query, &tail)?;
            }
            for (score, o) in tail {
                top.push(score, o);
            }
        }
        Ok(top.into_sorted())
    }
}

impl<V: VectorStorage, P: PayloadStorage, I: IdMapper> Segment<V, P, I> {
    /// Build an HNSW index over the live points with `config`; with
    /// `config.payload_m > 0`, payload-aware links among the points of
    /// each value of the tenant key (the payload index marked as one, or
    /// an error when there is none). A persistent segment writes it to
    /// `hnsw/hnsw.links` and records it in `segment.json`. Later searches
    /// go through the graph unless [`ScanOptions::exact`] asks otherwise.
    pub fn build_hnsw(&mut self, config: HnswConfig) -> Result<()> {
        let payload_key = if config.payload_m > 0 {
            let tenant = self.field_indexes().into_iter().find(|s| s.is_tenant).ok_or_else(|| {
                StorageError::InvalidArgument(
                    "payload-aware links (payload_m > 0) need a payload index marked as the tenant key".into(),
                )
            })?;
            Some(tenant.key)
        } else {
            None
        };
        let blocks = match &payload_key {
            Some(key) => self.tenant_blocks(key)?,
            None => Vec::new(),
        };
        let index = HnswIndex::build(&self.vectors, |o| self.is_live(o), &blocks, config)?;
        if let Some(dir) = &self.dir {
            index.save(&dir.join(HNSW_DIR))?;
        }
        self.hnsw = Some(SegmentHnsw { index, payload_key });
        self.flush()?;
        Ok(())
    }

    /// Open the index `state` records (at open); a links file that fails
    /// to open is logged and the segment searches exactly.
    pub(crate) fn load_hnsw(&mut self, state: Option<HnswState>) {
        let (Some(state), Some(dir)) = (state, &self.dir) else {
            return;
        };
        match HnswIndex::open(&dir.join(HNSW_DIR)) {
            Ok(index) => {
                self.hnsw = Some(SegmentHnsw {
                    index,
                    payload_key: state.payload_key,
                })
            }
            Err(e) => log::warn!(
                "{}: HNSW index not loaded ({e}); searches are exact",
                dir.display()
            ),
        }
    }
}
