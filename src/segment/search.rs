//! Search: score every live point through the vector storage's
//! [`QueryScorer`], keep the best candidates in a bounded heap, split the
//! offset range into chunks scored in parallel by rayon. Over raw storages
//! the scores are exact; over a quantized storage they come from codes,
//! and the search keeps `k × oversampling` candidates and (by default for
//! codecs that need it) rescores them with the raw vectors, fetched with
//! one `get_batch` call.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use vecseg_traits::{
    Filter, IdMapperRead, PayloadStorageRead, PointOffset, QueryScorer, Random, Result,
    ScoredPoint, VectorElement, VectorStorageRead,
};

use super::Segment;

/// Offsets scored per rayon task.
const CHUNK: usize = 16 * 1024;

/// Tuning for a search.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Split the scan across rayon's pool (otherwise one thread).
    pub parallel: bool,
    /// With approximate scores (quantized storages): keep
    /// `ceil(k × oversampling)` candidates for rescoring; values at or
    /// below 1.0 keep `k`. Ignored for exact storages.
    pub oversampling: f32,
    /// With approximate scores: rescore the candidates with the raw
    /// vectors (`None`: the storage's default, see
    /// [`QueryScorer::rescore_by_default`]).
    pub rescore: Option<bool>,
    /// Score every candidate even when the segment has an HNSW index
    /// (otherwise the graph answers unfiltered and non-selective
    /// filtered searches).
    pub exact: bool,
    /// Beam width of a graph search (`None`: the index's `ef_construct`;
    /// never below `k`).
    pub hnsw_ef: Option<usize>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            parallel: true,
            oversampling: 1.0,
            rescore: None,
            exact: false,
            hnsw_ef: None,
        }
    }
}

impl ScanOptions {
    /// One thread, otherwise the defaults.
    pub fn single_thread() -> Self {
        ScanOptions {
            parallel: false,
            ..Default::default()
        }
    }

    /// These options with `oversampling`.
    pub fn with_oversampling(mut self, oversampling: f32) -> Self {
        self.oversampling = oversampling;
        self
    }

    /// These options scoring every candidate, never the HNSW graph.
    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// These options with graph beam width `ef`.
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.hnsw_ef = Some(ef);
        self
    }

    /// These options with rescoring on or off.
    pub fn with_rescore(mut self, rescore: bool) -> Self {
        self.rescore = Some(rescore);
        self
    }
}

/// A scored offset ordered so the *worst* is at the top of a max-heap.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    offset: PointOffset,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse on score: the heap top is the lowest score (ties: highest offset).
        other
            .score
            .total_cmp(&self.score)
            .then(self.offset.cmp(&other.offset))
    }
}

/// The best `k` candidates seen so far.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
    /// Score of the worst kept candidate once the heap is full (else -inf).
    threshold: f32,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
            threshold: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, score: f32, offset: PointOffset) {
        if score <= self.threshold {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Candidate { score, offset });
        } else if let Some(mut worst) = self.heap.peek_mut() {
            *worst = Candidate { score, offset };
        }
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |c| c.score);
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for c in other.heap {
            self.push(c.score, c.offset);
        }
        self
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<(f32, PointOffset)> {
        let mut v: Vec<_> = self.heap.into_iter().map(|c| (c.score, c.offset)).collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v
    }
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// Top-`k` search among live points passing `filter`, best first:
    /// exact, unless the segment has an HNSW index (see
    /// [`Segment::build_hnsw`]), which then answers unfiltered searches and
    /// filters too broad for the payload indexes' candidates.
    pub fn search(
        &self,
        query: &[V::Element],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_with(query, k, filter, ScanOptions::default())
    }

    /// [`Segment::search`] with explicit [`ScanOptions`].
    pub fn search_with(
        &self,
        query: &[V::Element],
        k: usize,
        filter: Option<&Filter>,
        options: ScanOptions,
    ) -> Result<Vec<ScoredPoint>> {
        V::Element::validate(query, self.vectors.dim())?;
        if let Some(f) = filter {
            f.validate()?;
        }
        let mut q = query.to_vec();
        V::Element::preprocess(self.vectors.distance(), &mut q)?;
        let total = self.vectors.total_count().min(self.ids.total_count());
        // At most `total` points can be returned: clamp `k` before it sizes
        // anything, so a huge `k` (even `usize::MAX`) just means "all".
        let k = k.min(total);
        if k == 0 {
            return Ok(Vec::new());
        }
        let candidates = filter
            .map(|f| self.indexed_matches(f))
            .transpose()?
            .flatten();
        if let (None, false, Some(h)) = (&candidates, options.exact, &self.hnsw) {
            // Unfiltered, or a filter too broad for its index: the graph.
            let sorted = self.search_graph(h, &q, k, filter, &options, total)?;
            return self.scored_points(sorted);
        }
        let scorer = self.vectors.scorer(&q)?;
        let exact = scorer.is_exact();
        if exact {
            if let Some(offsets) = &candidates {
                let sorted = self.score_exactly(&q, offsets, k)?;
                return self.scored_points(sorted);
            }
        }
        let rescore = !exact
            && options
                .rescore
                .unwrap_or_else(|| scorer.rescore_by_default());
        let want = if exact || options.oversampling <= 1.0 {
            k
        } else {
            ((k as f64 * f64::from(options.oversampling)).ceil() as usize).min(total)
        };
        if let Some(offsets) = &candidates {
            // Codes: score the candidates through them (the raw vectors
            // may be cold on disk), then rescore like the scan does.
            let mut top = TopK::new(want);
            for &o in offsets {
                top.push(scorer.score(o)?, o);
            }
            let mut sorted = top.into_sorted();
            if rescore {
                sorted = self.rescore(&q, &sorted)?;
            }
            sorted.truncate(k);
            return self.scored_points(sorted);
        }
        let chunks = total.div_ceil(CHUNK);
        let scan = |c: usize| {
            let range = (c * CHUNK) as PointOffset..((c + 1) * CHUNK).min(total) as PointOffset;
            self.scan_range(&scorer, want, filter, range)
        };
        let top = if options.parallel && chunks > 1 {
            (0..chunks)
                .into_par_iter()
                .map(scan)
                .try_reduce(|| TopK::new(want), |a, b| Ok(a.merge(b)))?
        } else {
            (0..chunks).try_fold(TopK::new(want), |acc, c| {
                Ok::<_, vecseg_traits::StorageError>(acc.merge(scan(c)?))
            })?
        };
        let mut sorted = top.into_sorted();
        if rescore {
            sorted = self.rescore(&q, &sorted)?;
        }
        sorted.truncate(k);
        self.scored_points(sorted)
    }

    /// The exact top `k` of `offsets` (increasing), scored on the raw
    /// vectors read with one `get_batch`: how an indexed plan searches a
    /// raw storage.
    fn score_exactly(
        &self,
        query: &[V::Element],
        offsets: &[PointOffset],
        k: usize,
    ) -> Result<Vec<(f32, PointOffset)>> {
        let distance = self.vectors.distance();
        let mut top = TopK::new(k);
        self.vectors.get_batch::<Random>(offsets, &mut |i, v| {
            top.push(V::Element::score(distance, query, v), offsets[i]);
        })?;
        Ok(top.into_sorted())
    }

    /// Results with ids and versions, best first.
    fn scored_points(&self, sorted: Vec<(f32, PointOffset)>) -> Result<Vec<ScoredPoint>> {
        let mut out = Vec::with_capacity(sorted.len());
        for (score, offset) in sorted {
            if let Some(id) = self.ids.external(offset)? {
                out.push(ScoredPoint {
                    id,
                    version: self.ids.version(offset)?.unwrap_or(0),
                    score,
                });
            }
        }
        Ok(out)
    }

    pub(crate) fn scan_range<S: QueryScorer>(
        &self,
        scorer: &S,
        k: usize,
        filter: Option<&Filter>,
        range: std::ops::Range<PointOffset>,
    ) -> Result<TopK> {
        let mut top = TopK::new(k);
        match filter {
            None => {
                // A local copy of the admission threshold (the scorer's
                // bar) stays out of the heap; the heap is only touched when
                // a score beats it.
                let threshold = Cell::new(top.threshold);
                scorer.score_live_above(
                    range,
                    |_| true,
                    || threshold.get(),
                    |offset, s| {
                        if s > threshold.get() {
                            top.push(s, offset);
                            threshold.set(top.threshold);
                        }
                    },
                )?;
            }
            Some(f) => {
                // Score first, check the filter only for a point that would
                // enter the heap: with a top-k of a few points, most
                // points never beat the threshold, so most payloads are
                // never read (the check is the expensive part).
                let mut failed = None;
                let threshold = Cell::new(top.threshold);
                scorer.score_live_above(
                    range,
                    |_| true,
                    || threshold.get(),
                    |offset, s| {
                        if s <= top.threshold || failed.is_some() {
                            return;
                        }
                        match self
                            .is_mapped(offset)
                            .and_then(|mapped| Ok(mapped && self.check(f, offset)?))
                        {
                            Ok(true) => {
                                top.push(s, offset);
                                threshold.set(top.threshold);
                            }
                            Ok(false) => {}
                            Err(e) => {
                                failed = Some(e);
                                // Nothing more is wanted.
                                threshold.set(f32::INFINITY);
                            }
                        }
                    },
                )?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(top)
    }

    /// Exact scores of `candidates` from the raw vectors (one `get_batch`
    /// in offset order), best first.
    pub(crate) fn rescore(
        &self,
        query: &[V::Element],
        candidates: &[(f32, PointOffset)],
    ) -> Result<Vec<(f32, PointOffset)>> {
        let distance = self.vectors.distance();
        let mut offsets: Vec<PointOffset> = candidates.iter().map(|&(_, o)| o).collect();
        offsets.sort_unstable();
        let mut rescored = Vec::with_capacity(offsets.len());
        self.vectors.get_batch::<Random>(&offsets, &mut |i, v| {
            rescored.push((V::Element::score(distance, query, v), offsets[i]));
        })?;
        rescored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(rescored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
    use vecseg_traits::{Condition, Distance, PointId};

    type MemorySegment = Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper>;

    /// Points 1..=6 at distance `i` from the origin (point 3 deleted), so a
    /// query at the origin ranks them 1, 2, 4, 5, 6; even ids are tagged.
    fn line_segment() -> MemorySegment {
        let vectors = MemoryVectorStorage::<f32>::new(2, Distance::Euclid).unwrap();
        let mut s = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
        for i in 1..=6u64 {
            let payload = serde_json::json!({ "even": if i % 2 == 0 { "yes" } else { "no" } });
            let payload = payload.as_object().unwrap().clone();
            s.upsert(i, PointId::Num(i), &[i as f32, 0.0], &payload)
                .unwrap();
        }
        assert!(s.delete(10, PointId::Num(3)).unwrap());
        s
    }

    fn ids(hits: &[ScoredPoint]) -> Vec<PointId> {
        hits.iter().map(|h| h.id).collect()
    }

    #[test]
    fn huge_k_returns_every_live_point_best_first() {
        let s = line_segment();
        let all: Vec<PointId> = [1, 2, 4, 5, 6].map(PointId::Num).to_vec();
        let even = Filter::must(Condition::keyword("even", "yes"));
        for k in [usize::MAX, 1_000_000_000_000, 1 << 40, 7, 6, 5] {
            for parallel in [true, false] {
                let options = ScanOptions {
                    parallel,
                    ..Default::default()
                };
                let hits = s.search_with(&[0.0, 0.0], k, None, options).unwrap();
                assert_eq!(ids(&hits), all, "k = {k}");
                let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
                assert_eq!(scores, [-1.0, -2.0, -4.0, -5.0, -6.0], "k = {k}");
                assert!(hits.iter().all(|h| h.id == PointId::Num(h.version)));
                let hits = s.search_with(&[0.0, 0.0], k, Some(&even), options).unwrap();
                assert_eq!(ids(&hits), [2, 4, 6].map(PointId::Num), "k = {k}");
            }
        }
        assert_eq!(ids(&s.search(&[0.0, 0.0], 2, None).unwrap()), all[..2]);
        assert!(s.search(&[0.0, 0.0], 0, None).unwrap().is_empty());
        // The query is still validated whatever k is.
        assert!(s.search(&[0.0], usize::MAX, None).is_err());
        assert!(s.search(&[0.0], 0, None).is_err());
    }

    #[test]
    fn huge_k_on_an_empty_segment_is_empty() {
        let vectors = MemoryVectorStorage::<f32>::new(2, Distance::Dot).unwrap();
        let s: MemorySegment =
            Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
        for k in [usize::MAX, 1_000_000_000_000, 0] {
            assert!(s.search(&[1.0, 0.0], k, None).unwrap().is_empty());
        }
    }

    #[test]
    fn topk_keeps_the_best_and_breaks_ties_by_offset() {
        let mut t = TopK::new(3);
        for (i, s) in [0.5, 0.9, 0.1, 0.9, 0.7, -1.0].into_iter().enumerate() {
            t.push(s, i as PointOffset);
        }
        assert_eq!(t.into_sorted(), vec![(0.9, 1), (0.9, 3), (0.7, 4)]);
        let a = {
            let mut t = TopK::new(2);
            t.push(1.0, 1);
            t
        };
        let b = {
            let mut t = TopK::new(2);
            t.push(3.0, 3);
            t.push(2.0, 2);
            t
        };
        assert_eq!(a.merge(b).into_sorted(), vec![(3.0, 3), (2.0, 2)]);
    }
}
