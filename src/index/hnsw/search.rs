//! Searching the graph: the beam search on one level (`search_layer`,
//! shared by build and query), the per-search scratch (visited set,
//! queues, buffers) reused across searches, and the query path (greedy
//! descent, then the level-0 beam of width `ef`).
//!
//! Search is bound by memory latency (every scored neighbour is a vector
//! read from a random place), so the loop keeps several reads in flight:
//! a node's unvisited neighbours are collected first and scored as one
//! batch (the scorer reads them four at a time and prefetches the next
//! four), and on a frozen graph the list of every node queued for
//! expansion is prefetched, as is where the list of every node being
//! scored starts.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Mutex;

use vecseg_traits::{PointOffset, QueryScorer, Result};

use super::graph::{GraphLinks, LinksView};
use super::queue::{Best, Frontier};

/// A node and its score against the query (higher is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The node (an offset, or a local index while building).
    pub offset: PointOffset,
    /// Its score.
    pub score: f32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.offset.cmp(&self.offset))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A visited set: a generation stamp per node, cleared by bumping the
/// generation (one byte per node, so the stamps of a large graph stay
/// in cache; zeroed once every 255 searches).
struct Visited {
    stamps: Vec<u8>,
    generation: u8,
}

impl Visited {
    fn reset(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.fill(0);
            self.generation = 1;
        }
    }

    /// Mark `n`; whether it was unmarked.
    #[inline]
    fn insert(&mut self, n: PointOffset) -> bool {
        let slot = &mut self.stamps[n as usize];
        let fresh = *slot != self.generation;
        *slot = self.generation;
        fresh
    }
}

/// What one search needs besides the graph, kept across searches so
/// queries do not allocate it again: the visited set, both queues and
/// the buffers of one node's neighbours.
struct Scratch {
    visited: Visited,
    frontier: Frontier,
    best: Best,
    /// The unvisited walkable neighbours of the node being expanded.
    batch: Vec<PointOffset>,
    /// Their scores.
    scores: Vec<f32>,
}

/// Search scratch over `nodes` nodes, reused by concurrent searches.
pub(crate) struct ScratchPool {
    nodes: usize,
    free: Mutex<Vec<Scratch>>,
}

impl ScratchPool {
    pub(crate) fn new(nodes: usize) -> Self {
        ScratchPool {
            nodes,
            free: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Scratch {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        let mut s = reused.unwrap_or_else(|| Scratch {
            visited: Visited {
                stamps: vec![0; self.nodes],
                generation: 0,
            },
            frontier: Frontier::default(),
            best: Best::default(),
            batch: Vec::new(),
            scores: Vec::new(),
        });
        s.visited.reset();
        s.frontier.clear();
        s.best.clear();
        s
    }

    fn give_back(&self, s: Scratch) {
        if let Ok(mut f) = self.free.lock() {
            f.push(s);
        }
    }
}

impl std::fmt::Debug for ScratchPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchPool")
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// How a search scores nodes against its query: one at a time, or a
/// node's neighbours together (so a scorer can overlap their reads).
pub(crate) trait Scores {
    /// The score of node `o`.
    fn score(&self, o: PointOffset) -> Result<f32>;

    /// `out[i]` = the score of `offsets[i]` (equal lengths).
    fn score_batch(&self, offsets: &[PointOffset], out: &mut [f32]) -> Result<()> {
        for (&o, s) in offsets.iter().zip(out.iter_mut()) {
            *s = self.score(o)?;
        }
        Ok(())
    }
}

impl<F: Fn(PointOffset) -> Result<f32>> Scores for F {
    #[inline]
    fn score(&self, o: PointOffset) -> Result<f32> {
        self(o)
    }
}

/// A storage's [`QueryScorer`] as [`Scores`] (its batch scoring included).
pub(crate) struct ByScorer<'a, Q>(pub(crate) &'a Q);

impl<Q: QueryScorer> Scores for ByScorer<'_, Q> {
    #[inline]
    fn score(&self, o: PointOffset) -> Result<f32> {
        self.0.score(o)
    }

    #[inline]
    fn score_batch(&self, offsets: &[PointOffset], out: &mut [f32]) -> Result<()> {
        self.0.score_batch(offsets, out)
    }
}

/// Which nodes a search walks and which it may return.
pub(crate) struct Rules<'a> {
    /// Nodes refused here are neither scored nor traversed (a filtered
    /// search walks only matching points; payload-aware links keep them
    /// connected).
    pub(crate) walk: &'a dyn Fn(PointOffset) -> bool,
    /// Nodes refused here are walked but never returned (deleted points
    /// still carry links).
    pub(crate) emit: &'a dyn Fn(PointOffset) -> bool,
}

/// Every node walked and returned.
pub(crate) const ALL: Rules<'static> = Rules {
    walk: &|_| true,
    emit: &|_| true,
};

/// How a beam search reads the lists of the level it walks, with hints
/// that let a stored graph start loading them before they are read.
pub(crate) trait Level<'g> {
    /// The neighbours of `o`.
    fn links(&self, o: PointOffset) -> Result<Cow<'g, [PointOffset]>>;

    /// `o` is being scored and may be queued: start loading where its
    /// list is recorded.
    fn prefetch_entry(&self, o: PointOffset) {
        let _ = o;
    }

    /// `o` is queued for expansion: start loading its list, so it is
    /// cached when (if) its turn comes.
    fn prefetch_list(&self, o: PointOffset) {
        let _ = o;
    }
}

impl<'g, F: Fn(PointOffset) -> Result<Cow<'g, [PointOffset]>>> Level<'g> for F {
    #[inline]
    fn links(&self, o: PointOffset) -> Result<Cow<'g, [PointOffset]>> {
        self(o)
    }
}

/// Level 0 of a frozen graph, with prefetch hints.
struct Level0<'g>(LinksView<'g>);

impl<'g> Level<'g> for Level0<'g> {
    #[inline]
    fn links(&self, o: PointOffset) -> Result<Cow<'g, [PointOffset]>> {
        Ok(self.0.links0(o))
    }

    #[inline]
    fn prefetch_entry(&self, o: PointOffset) {
        self.0.prefetch_entry0(o);
    }

    #[inline]
    fn prefetch_list(&self, o: PointOffset) {
        self.0.prefetch_list0(o);
    }
}

/// The `ef` best nodes reachable from `entries` on one level, best first:
/// expand the best unexpanded node until no candidate can improve the
/// results (see [`Rules`] for the nodes skipped). A node's unvisited
/// walkable neighbours are scored together, then admitted in list order.
pub(crate) fn search_layer<'g>(
    pool: &ScratchPool,
    entries: &[Candidate],
    ef: usize,
    level: &impl Level<'g>,
    score: &impl Scores,
    rules: &Rules<'_>,
) -> Result<Vec<Candidate>> {
    let mut scratch = pool.take();
    let mut out = Vec::new();
    let result = expand(&mut scratch, entries, ef, level, score, rules);
    if result.is_ok() {
        scratch.best.drain_sorted(&mut out);
    }
    pool.give_back(scratch);
    result.map(|()| out)
}

/// The loop of [`search_layer`], leaving the results in `scratch.best`.
fn expand<'g>(
    scratch: &mut Scratch,
    entries: &[Candidate],
    ef: usize,
    level: &impl Level<'g>,
    score: &impl Scores,
    rules: &Rules<'_>,
) -> Result<()> {
    if ef == 0 {
        return Ok(());
    }
    let Scratch {
        visited,
        frontier,
        best,
        batch,
        scores,
    } = scratch;
    for &e in entries {
        if visited.insert(e.offset) {
            frontier.push(e.score, e.offset);
            if (rules.emit)(e.offset) {
                best.push(e.score, e.offset);
            }
        }
    }
    while best.len() > ef {
        best.pop_worst();
    }
    // The worst score held once `best` is full: what a candidate must beat.
    let mut bar = if best.len() >= ef {
        best.worst_score()
    } else {
        None
    };
    while let Some(c) = frontier.pop() {
        if bar.is_some_and(|w| c.score < w) {
            break;
        }
        batch.clear();
        for &n in level.links(c.offset)?.iter() {
            if visited.insert(n) && (rules.walk)(n) {
                level.prefetch_entry(n);
                batch.push(n);
            }
        }
        if batch.is_empty() {
            continue;
        }
        scores.resize(batch.len(), 0.0);
        score.score_batch(batch, scores)?;
        for (&n, &s) in batch.iter().zip(scores.iter()) {
            if bar.is_none_or(|w| s > w) {
                frontier.push(s, n);
                level.prefetch_list(n);
                if (rules.emit)(n) {
                    best.push(s, n);
                    if best.len() > ef {
                        best.pop_worst();
                    }
                    if best.len() >= ef {
                        bar = best.worst_score();
                    }
                }
            }
        }
    }
    Ok(())
}

/// From `start`, on each of `levels` in turn, move to the best-scoring
/// walkable neighbour until none is better: the descent through the upper
/// levels that build and query share.
pub(crate) fn greedy_descent<'g>(
    start: Candidate,
    levels: impl Iterator<Item = usize>,
    links: impl Fn(PointOffset, usize) -> Result<Cow<'g, [PointOffset]>>,
    score: &impl Scores,
    accept: &dyn Fn(PointOffset) -> bool,
) -> Result<Candidate> {
    let mut best = start;
    let mut batch: Vec<PointOffset> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    for level in levels {
        loop {
            batch.clear();
            batch.extend(links(best.offset, level)?.iter().filter(|&&n| accept(n)));
            scores.resize(batch.len(), 0.0);
            score.score_batch(&batch, &mut scores)?;
            let mut moved = false;
            for (&n, &s) in batch.iter().zip(scores.iter()) {
                if s > best.score {
                    best = Candidate {
                        offset: n,
                        score: s,
                    };
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }
    Ok(best)
}

/// The query path over a frozen graph: start at the entry point (when
/// the rules let it be walked) and at the walkable `hints`, descend
/// greedily through the upper levels, then beam-search level 0 with width
/// `max(ef, k)`; the best `k`, best first.
pub(crate) fn search_graph(
    graph: &GraphLinks,
    pool: &ScratchPool,
    k: usize,
    ef: usize,
    score: &impl Scores,
    rules: &Rules<'_>,
    hints: &[PointOffset],
) -> Result<Vec<Candidate>> {
    let accept = rules.walk;
    let view = graph.view();
    let mut entries: Vec<Candidate> = Vec::new();
    if let Some((ep, top)) = graph.entry().filter(|(e, _)| accept(*e)) {
        let start = Candidate {
            offset: ep,
            score: score.score(ep)?,
        };
        let found = greedy_descent(
            start,
            (1..=top).rev(),
            |o, l| Ok(view.links(o, l)),
            score,
            accept,
        )?;
        entries.push(found);
    }
    for &h in hints {
        if (h as usize) < graph.nodes() && accept(h) {
            entries.push(Candidate {
                offset: h,
                score: score.score(h)?,
            });
        }
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    // Only nodes `rules.emit` accepts enter the results.
    let mut found = search_layer(pool, &entries, ef.max(k), &Level0(view), score, rules)?;
    found.truncate(k);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use vecseg_memory::MemoryVectorStorage;
    use vecseg_traits::{AppendableVectorStorage, Distance, QueryScorer, VectorStorageRead};

    #[test]
    fn batch_scores_equal_single_scores_bit_for_bit() {
        for distance in Distance::ALL {
            let dim = 37;
            let mut storage = MemoryVectorStorage::<f32>::new(dim, distance).unwrap();
            for o in 0..20u32 {
                let v: Vec<f32> = (0..dim)
                    .map(|i| ((o as usize * 31 + i) as f32 * 0.07).sin())
                    .collect();
                storage.insert(o, &v).unwrap();
            }
            let query: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.13).cos()).collect();
            let scorer = storage.scorer(&query).unwrap();
            for len in 0..12 {
                let offsets: Vec<u32> = (0..len).map(|i| (i * 7 % 20) as u32).collect();
                let mut out = vec![f32::NAN; len];
                scorer.score_batch(&offsets, &mut out).unwrap();
                for (&o, s) in offsets.iter().zip(&out) {
                    let want = scorer.score(o).unwrap();
                    assert_eq!(s.to_bits(), want.to_bits(), "{distance:?} batch of {len}");
                }
            }
        }
    }
}
