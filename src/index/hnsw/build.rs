//! Building the graph: HNSW insertion (greedy descent, `ef_construct`
//! beam search per level, the neighbour-selection heuristic, reverse
//! links shrunk by the same heuristic), points inserted in parallel with
//! a lock per node; then payload-aware links, one small graph per payload
//! block (e.g. tenant) merged into level 0.

use std::borrow::Cow;
use std::sync::{Mutex, RwLock};

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use vecseg_traits::{Distance, PointOffset, Random, Result, VectorElement, VectorStorageRead};

use super::graph::GraphLinks;
use super::search::{greedy_descent, search_layer, Candidate, ScratchPool, ALL};
use super::HnswConfig;

/// Scores between stored points, by their raw vectors.
pub(crate) struct PairScorer<'a, S: VectorStorageRead> {
    storage: &'a S,
    distance: Distance,
}

impl<'a, S: VectorStorageRead> PairScorer<'a, S> {
    pub(crate) fn new(storage: &'a S) -> Self {
        PairScorer {
            storage,
            distance: storage.distance(),
        }
    }

    fn vector(&self, o: PointOffset) -> Result<S::Vector<'a>> {
        self.storage.get::<Random>(o)
    }

    fn score(&self, a: &[S::Element], b: PointOffset) -> Result<f32> {
        let v = self.storage.get::<Random>(b)?;
        Ok(S::Element::score(self.distance, a, &v))
    }
}

/// Graph under construction: per node, per level, a locked list.
struct Building {
    links: Vec<Vec<RwLock<Vec<PointOffset>>>>,
    entry: Mutex<Option<(PointOffset, usize)>>,
}

/// The level of a new node: `floor(-ln(u) / ln(m))`, capped.
fn random_level(rng: &mut impl Rng, m: usize) -> usize {
    let ml = 1.0 / (m.max(2) as f64).ln();
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    ((-u.ln() * ml) as usize).min(16)
}

/// Keep at most `m` of `candidates` (best first): a candidate is kept
/// when it is closer to the new point than to every one kept so far
/// (the HNSW paper's heuristic), so links spread in all directions.
fn select<S: VectorStorageRead>(
    pairs: &PairScorer<'_, S>,
    points: &[PointOffset],
    candidates: &[Candidate],
    m: usize,
) -> Result<Vec<u32>> {
    let mut kept: Vec<(u32, S::Vector<'_>)> = Vec::with_capacity(m);
    for c in candidates {
        if kept.len() == m {
            break;
        }
        let vc = pairs.vector(points[c.offset as usize])?;
        let mut diverse = true;
        for (_, vk) in &kept {
            if S::Element::score(pairs.distance, &vc, vk) > c.score {
                diverse = false;
                break;
            }
        }
        if diverse {
            kept.push((c.offset, vc));
        }
    }
    Ok(kept.into_iter().map(|(o, _)| o).collect())
}

/// Per local node, per level, local neighbours.
type LocalLists = Vec<Vec<Vec<u32>>>;

/// Insert `points` (offsets of `storage`) into a graph with `m` links per
/// upper level and `m0` on level 0 (levels capped at `max_level`).
/// Works in local indexes (`i` stands for `points[i]`); returns per local
/// node, per level, the local neighbours, and the local entry.
#[allow(clippy::too_many_arguments)]
fn build_graph<S: VectorStorageRead>(
    storage: &S,
    points: &[PointOffset],
    m: usize,
    m0: usize,
    ef_construct: usize,
    seed: u64,
    max_level: Option<usize>,
) -> Result<(LocalLists, Option<(u32, usize)>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let levels: Vec<usize> = points
        .iter()
        .map(|_| {
            let l = random_level(&mut rng, m);
            max_level.map_or(l, |cap| l.min(cap)) + 1
        })
        .collect();
    let building = Building {
        links: levels
            .iter()
            .map(|&n| (0..n).map(|_| RwLock::new(Vec::new())).collect())
            .collect(),
        entry: Mutex::new(None),
    };
    let pairs = PairScorer::new(storage);
    let visited = ScratchPool::new(points.len());
    let links_of = |local: u32, level: usize| -> Result<Cow<'static, [u32]>> {
        match building.links[local as usize].get(level) {
            Some(l) => Ok(Cow::Owned(l.read().map_err(poisoned)?.clone())),
            None => Ok(Cow::Borrowed(&[])),
        }
    };
    let insert = |p: u32| -> Result<()> {
        let top = levels[p as usize] - 1;
        let query = pairs.vector(points[p as usize])?;
        let score = |o: u32| pairs.score(&query, points[o as usize]);
        let entry = *building.entry.lock().map_err(poisoned)?;
        let Some((ep, entry_top)) = entry else {
            // The first point (inserted alone) becomes the entry.
            *building.entry.lock().map_err(poisoned)? = Some((p, top));
            return Ok(());
        };
        // Greedy descent through the levels above the new node's top.
        let start = Candidate {
            offset: ep,
            score: score(ep)?,
        };
        let mut entries = vec![greedy_descent(
            start,
            (top + 1..=entry_top).rev(),
            links_of,
            &score,
            &|_| true,
        )?];
        for level in (0..=top.min(entry_top)).rev() {
            let found = search_layer(
                &visited,
                &entries,
                ef_construct,
                &|o| links_of(o, level),
                &score,
                &ALL,
            )?;
            let cap = if level == 0 { m0 } else { m };
            let chosen = select(&pairs, points, &found, cap)?;
            *building.links[p as usize][level]
                .write()
                .map_err(poisoned)? = chosen.clone();
            for &n in &chosen {
                let mut list = building.links[n as usize][level]
                    .write()
                    .map_err(poisoned)?;
                if list.contains(&p) {
                    continue;
                }
                list.push(p);
                if list.len() > cap {
                    // Shrink by the same heuristic, seen from `n`.
                    let vn = pairs.vector(points[n as usize])?;
                    let mut scored = list
                        .iter()
                        .map(|&o| {
                            Ok(Candidate {
                                offset: o,
                                score: pairs.score(&vn, points[o as usize])?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
                    *list = select(&pairs, points, &scored, cap)?;
                }
            }
            entries = found;
        }
        if top > entry_top {
            let mut e = building.entry.lock().map_err(poisoned)?;
            if e.is_none_or(|(_, t)| top > t) {
                *e = Some((p, top));
            }
        }
        Ok(())
    };
    // Highest levels first (as FAISS does): the upper levels and the
    // entry point are complete before the many level-0-only points go in,
    // so those descend through a finished hierarchy. The first point
    // alone (the entry) and a small head sequentially, so parallel
    // inserts find a graph; then each level's points in parallel.
    let mut order: Vec<u32> = (0..points.len() as u32).collect();
    order.sort_by_key(|&p| std::cmp::Reverse(levels[p as usize]));
    let head = order.len().min(64);
    for &p in &order[..head] {
        insert(p)?;
    }
    let rest = &order[head..];
    let mut start = 0;
    while start < rest.len() {
        let level = levels[rest[start] as usize];
        let end = start + rest[start..].partition_point(|&p| levels[p as usize] == level);
        rest[start..end].par_iter().try_for_each(|&p| insert(p))?;
        start = end;
    }
    let entry = *building.entry.lock().map_err(poisoned)?;
    let lists = building
        .links
        .into_iter()
        .map(|levels| {
            levels
                .into_iter()
                .map(|l| l.into_inner().map_err(poisoned))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((lists, entry))
}

/// The graph of `config` over the live `points` of `storage` (offsets
/// below `nodes`), plus for each of `blocks` (e.g. the offsets of one
/// tenant) a level-0 graph of `payload_m` links among its points, merged
/// into level 0. With `m = 0` only the block graphs exist.
pub(crate) fn build<S: VectorStorageRead>(
    storage: &S,
    nodes: usize,
    points: &[PointOffset],
    blocks: &[Vec<PointOffset>],
    config: &HnswConfig,
) -> Result<GraphLinks> {
    let mut lists: Vec<Vec<Vec<PointOffset>>> = vec![Vec::new(); nodes];
    let to_global = |local: &[u32], points: &[PointOffset]| -> Vec<PointOffset> {
        local.iter().map(|&l| points[l as usize]).collect()
    };
    let mut entry = None;
    if config.m > 0 && !points.is_empty() {
        let (local, local_entry) = build_graph(
            storage,
            points,
            config.m,
            config.m0(),
            config.ef_construct,
            config.seed,
            None,
        )?;
        for (i, levels) in local.into_iter().enumerate() {
            lists[points[i] as usize] = levels.iter().map(|l| to_global(l, points)).collect();
        }
        entry = local_entry.map(|(l, top)| (points[l as usize], top));
    }
    if config.payload_m > 0 {
        let block_graphs: Vec<Vec<(PointOffset, Vec<PointOffset>)>> = blocks
            .par_iter()
            .enumerate()
            .filter(|(_, b)| b.len() > 1)
            .map(|(i, block)| {
                let (local, _) = build_graph(
                    storage,
                    block,
                    config.payload_m,
                    config.payload_m * 2,
                    config.ef_construct,
                    config.seed ^ (i as u64 + 1),
                    Some(0),
                )?;
                Ok(local
                    .iter()
                    .enumerate()
                    .map(|(l, levels)| (block[l], to_global(&levels[0], block)))
                    .collect())
            })
            .collect::<Result<_>>()?;
        for graph in block_graphs {
            for (p, extra) in graph {
                let levels = &mut lists[p as usize];
                if levels.is_empty() {
                    levels.push(Vec::new());
                }
                for n in extra {
                    if !levels[0].contains(&n) {
                        levels[0].push(n);
                    }
                }
            }
        }
    }
    GraphLinks::from_lists(lists, entry)
}

fn poisoned<T>(_: T) -> vecseg_traits::StorageError {
    vecseg_traits::StorageError::InvalidArgument("a graph-building thread panicked".into())
}
