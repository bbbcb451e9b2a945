//! Reads of [`Collection`], merged over its segments. A point stored in
//! more than one segment (a crash between the two steps of a copy) is read
//! from the copy with the highest version; the others are invisible.

use rayon::prelude::*;
use vecseg_traits::{
    Filter, PointId, Record, Result, ScoredPoint, SegmentEntry, StorageError, VectorElement,
    Version,
};

use super::Collection;

impl Collection {
    /// Every segment, the appendable one first.
    fn all_segments(&self) -> Vec<&dyn SegmentEntry<f32>> {
        let mut v: Vec<&dyn SegmentEntry<f32>> = vec![&self.appendable];
        v.extend(self.sealed.iter().map(|(_, s)| s.as_ref()));
        v
    }

    /// The segment holding the newest copy of `id`, with its version.
    fn owner(&self, id: PointId) -> Result<Option<(usize, Version)>> {
        let mut best: Option<(usize, Version)> = None;
        for (i, s) in self.all_segments().into_iter().enumerate() {
            if let Some(v) = s.point_version(id)? {
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
        }
        Ok(best)
    }

    /// The whole point `id`, if present.
    pub fn get(&self, id: PointId) -> Result<Option<Record<f32>>> {
        match self.owner(id)? {
            Some((i, _)) => self.all_segments()[i].get(id),
            None => Ok(None),
        }
    }

    /// Up to `limit` ids in increasing order from `from` (inclusive) whose
    /// newest copy passes `filter`.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<PointId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let segments = self.all_segments();
        let mut out = Vec::new();
        let mut cursor = from;
        let page = limit.clamp(1, 4096);
        loop {
            // A page from every segment; ids past the smallest last id of
            // a full page may be incomplete and wait for the next round.
            let mut candidates: Vec<(PointId, usize)> = Vec::new();
            let mut horizon: Option<PointId> = None;
            for (i, s) in segments.iter().enumerate() {
                let ids = s.scroll(cursor, page, filter)?;
                if let (true, Some(&last)) = (ids.len() == page, ids.last()) {
                    horizon = Some(horizon.map_or(last, |h| h.min(last)));
                }
                candidates.extend(ids.into_iter().map(|id| (id, i)));
            }
            candidates.sort_unstable();
            for group in candidates.chunk_by(|a, b| a.0 == b.0) {
                let id = group[0].0;
                if horizon.is_some_and(|h| id > h) {
                    break;
                }
                // Listed only if the newest copy is one that passed.
                let owner = self.owner(id)?.map(|(o, _)| o);
                if group.iter().any(|c| Some(c.1) == owner) {
                    out.push(id);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            match horizon {
                Some(h) if next_id(h) != h => cursor = Some(next_id(h)),
                _ => return Ok(out),
            }
        }
    }

    /// Live points (each counted once).
    pub fn count(&self) -> Result<usize> {
        self.count_filtered(None)
    }

    /// Live points whose newest copy passes `filter` (each counted once);
    /// each segment answers through its payload indexes when the filter
    /// is selective (see [`Segment::plan`](crate::Segment::plan)).
    pub fn count_filtered(&self, filter: Option<&Filter>) -> Result<usize> {
        let mut n = 0;
        let mut cursor = None;
        loop {
            let ids = self.scroll(cursor, 4096, filter)?;
            n += ids.len();
            match ids.last() {
                Some(last) if ids.len() == 4096 => cursor = Some(next_id(*last)),
                _ => return Ok(n),
            }
        }
    }

    /// Exact top-`k` among live points whose newest copy passes `filter`,
    /// best first; the segments are searched in parallel.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        f32::validate(query, self.manifest.dim)?;
        let segments = self.all_segments();
        let mut want = k;
        loop {
            let per_segment: Vec<Result<Vec<ScoredPoint>>> = segments
                .par_iter()
                .map(|s| s.search(query, want, filter))
                .collect();
            let mut hits = Vec::new();
            let mut complete = true;
            for r in per_segment {
                let r = r?;
                complete &= r.len() < want;
                hits.extend(r);
            }
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            let mut out: Vec<ScoredPoint> = Vec::with_capacity(k);
            let mut dropped = false;
            for h in hits {
                if out.iter().any(|o| o.id == h.id) {
                    continue;
                }
                if self.owner(h.id)?.is_some_and(|(_, v)| v == h.version) {
                    out.push(h);
                    if out.len() == k {
                        break;
                    }
                } else {
                    dropped = true;
                }
            }
            // Stale copies took places: ask for more, unless every segment
            // already returned all it has.
            if out.len() == k || !dropped || complete {
                return Ok(out);
            }
            want = want.saturating_mul(2);
            if want > self.total_points_bound() {
                return Err(StorageError::InvalidArgument(
                    "search could not fill k with current copies".into(),
                ));
            }
        }
    }

    /// Points across segments, duplicates included.
    fn total_points_bound(&self) -> usize {
        self.all_segments()
            .iter()
            .map(|s| s.point_count())
            .sum::<usize>()
            .saturating_mul(2)
            .max(1)
    }
}

/// The smallest id after `id` (ids order numbers before UUIDs).
pub(crate) fn next_id(id: PointId) -> PointId {
    match id {
        PointId::Num(u64::MAX) => PointId::Uuid(uuid::Uuid::nil()),
        PointId::Num(n) => PointId::Num(n + 1),
        PointId::Uuid(u) => PointId::Uuid(uuid::Uuid::from_u128(u.as_u128().saturating_add(1))),
    }
}
