//! Searching the graph: the beam search on one level (`search_layer`,
//! shared by build and query), visited sets reused across searches, and
//! the query path (greedy descent, then the level-0 beam of width `ef`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use vecseg_traits::{PointOffset, Result};

use super::graph::GraphLinks;

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
/// generation.
struct Visited {
    stamps: Vec<u16>,
    generation: u16,
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
    fn insert(&mut self, n: PointOffset) -> bool {
        let slot = &mut self.stamps[n as usize];
        let fresh = *slot != self.generation;
        *slot = self.generation;
        fresh
    }
}

/// Visited sets over `nodes` nodes, reused by concurrent searches.
pub(crate) struct VisitedPool {
    nodes: usize,
    free: Mutex<Vec<Visited>>,
}

impl VisitedPool {
    pub(crate) fn new(nodes: usize) -> Self {
        VisitedPool {
            nodes,
            free: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Visited {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        let mut v = reused.unwrap_or_else(|| Visited {
            stamps: vec![0; self.nodes],
            generation: 0,
        });
        v.reset();
        v
    }

    fn give_back(&self, v: Visited) {
        if let Ok(mut f) = self.free.lock() {
            f.push(v);
        }
    }
}

impl std::fmt::Debug for VisitedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitedPool")
            .field("nodes", &self.nodes)
            .finish()
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

/// The `ef` best nodes reachable from `entries` on one level, best first:
/// expand the best unexpanded node until no candidate can improve the
/// results (see [`Rules`] for the nodes skipped).
pub(crate) fn search_layer<'g>(
    pool: &VisitedPool,
    entries: &[Candidate],
    ef: usize,
    links: impl Fn(PointOffset) -> Result<Cow<'g, [PointOffset]>>,
    score: &impl Fn(PointOffset) -> Result<f32>,
    rules: &Rules<'_>,
) -> Result<Vec<Candidate>> {
    let mut visited = pool.take();
    let result = (|| {
        let mut frontier: BinaryHeap<Candidate> = BinaryHeap::new();
        let mut best: BinaryHeap<std::cmp::Reverse<Candidate>> = BinaryHeap::new();
        for &e in entries {
            if visited.insert(e.offset) {
                frontier.push(e);
                if (rules.emit)(e.offset) {
                    best.push(std::cmp::Reverse(e));
                }
            }
        }
        while best.len() > ef {
            best.pop();
        }
        while let Some(c) = frontier.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.score < w.0.score) {
                break;
            }
            for &n in links(c.offset)?.iter() {
                if !visited.insert(n) || !(rules.walk)(n) {
                    continue;
                }
                let s = score(n)?;
                if best.len() < ef || best.peek().is_some_and(|w| s > w.0.score) {
                    let cand = Candidate {
                        offset: n,
                        score: s,
                    };
                    frontier.push(cand);
                    if (rules.emit)(n) {
                        best.push(std::cmp::Reverse(cand));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Candidate> = best.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        Ok(out)
    })();
    pool.give_back(visited);
    result
}

/// From `start`, on each of `levels` in turn, move to the best-scoring
/// walkable neighbour until none is better: the descent through the upper
/// levels that build and query share.
pub(crate) fn greedy_descent<'g>(
    start: Candidate,
    levels: impl Iterator<Item = usize>,
    links: impl Fn(PointOffset, usize) -> Result<Cow<'g, [PointOffset]>>,
    score: &impl Fn(PointOffset) -> Result<f32>,
    accept: &dyn Fn(PointOffset) -> bool,
) -> Result<Candidate> {
    let mut best = start;
    for level in levels {
        loop {
            let mut moved = false;
            for &n in links(best.offset, level)?.iter() {
                if !accept(n) {
                    continue;
                }
                let s = score(n)?;
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
    pool: &VisitedPool,
    k: usize,
    ef: usize,
    score: &impl Fn(PointOffset) -> Result<f32>,
    rules: &Rules<'_>,
    hints: &[PointOffset],
) -> Result<Vec<Candidate>> {
    let accept = rules.walk;
    let mut entries: Vec<Candidate> = Vec::new();
    if let Some((ep, top)) = graph.entry().filter(|(e, _)| accept(*e)) {
        let start = Candidate {
            offset: ep,
            score: score(ep)?,
        };
        let found = greedy_descent(
            start,
            (1..=top).rev(),
            |o, l| Ok(Cow::Borrowed(graph.links(o, l))),
            score,
            accept,
        )?;
        entries.push(found);
    }
    for &h in hints {
        if (h as usize) < graph.nodes() && accept(h) {
            entries.push(Candidate {
                offset: h,
                score: score(h)?,
            });
        }
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = search_layer(
        pool,
        &entries,
        ef.max(k),
        |o| Ok(Cow::Borrowed(graph.links(o, 0))),
        score,
        rules,
    )?;
    found.retain(|c| (rules.emit)(c.offset));
    found.truncate(k);
    Ok(found)
}
