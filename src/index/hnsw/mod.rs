//! [`HnswIndex`]: a hierarchical navigable small-world graph over any
//! vector storage, with payload-aware links, kept in an mmap-backed
//! links file.
//!
//! | file            | what it holds |
//! |-----------------|---------------|
//! | `graph.rs`      | [`GraphLinks`]: levels and neighbour lists as flat arrays (owned or mapped) |
//! | `build.rs`      | insertion (parallel, a lock per node), the neighbour heuristic, per-block payload links |
//! | `search.rs`     | the level beam search shared by build and query, per-search scratch (visited set, queues) reused across searches, the query path |
//! | `queue.rs`      | the beam search's two queues, candidates packed into one `u64` key each |
//! | `links_file.rs` | `hnsw.links`: the on-disk format, written atomically, validated whole at open |
//! | `packed_lists.rs` | the packed list form (sorted, delta-encoded, bit-packed) a links file may use |
//!
//! **Build** scores pairs of stored points by their raw vectors (a
//! quantized storage returns its originals), with `m` links per upper
//! level, `m0 = 2m` on level 0 and a beam of `ef_construct`; levels are
//! drawn from a seeded generator. **Payload-aware links**
//! (`payload_m > 0`): for each block of points (e.g. one tenant's
//! offsets), a flat graph of `payload_m` links (`2 × payload_m` per node)
//! among the block's points is merged into level 0, so a search walking
//! only that tenant's points stays connected however small its share;
//! with `m = 0` those per-block graphs are the only links (Qdrant's
//! multitenant setup).
//!
//! **Search** scores through the storage's scoring seam
//! ([`VectorStorageRead::scorer`]), so quantized codes are used when the
//! storage has them, then rescores the candidates with the raw vectors
//! when the scorer is not exact. A filtered search walks only points
//! passing the filter, starting at the entry point if it passes and at
//! caller-given hints (e.g. the first candidates of the payload index);
//! deleted points are walked but never returned.

mod build;
mod graph;
mod links_file;
mod packed_lists;
mod queue;
mod search;

use std::path::Path;

use vecseg_traits::{
    PointOffset, QueryScorer, Random, Result, StorageError, VectorElement, VectorStorageRead,
};

pub use graph::GraphLinks;
pub use links_file::{open_links, write_links, LINKS_FILE, LINKS_FORMAT_VERSION};
pub use search::Candidate;
use search::{search_graph, ByScorer, Rules, ScratchPool};

/// How the graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HnswConfig {
    /// Links per node on the upper levels (`2 × m` on level 0); 0 builds
    /// no segment-wide graph (payload links only).
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construct: usize,
    /// Links per node among the points of one payload block (0: none).
    pub payload_m: usize,
    /// Seed of the level draws.
    pub seed: u64,
    /// Store the links file's neighbour lists packed (sorted,
    /// delta-encoded, bit-packed: about half the bytes, decoded on every
    /// read) instead of plain `u32`s. Off by default: plain lists are read
    /// in place.
    #[serde(default)]
    pub packed_links: bool,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construct: 100,
            payload_m: 0,
            seed: 42,
            packed_links: false,
        }
    }
}

impl HnswConfig {
    /// Links per node on level 0.
    pub fn m0(&self) -> usize {
        self.m * 2
    }
}

/// One result of [`HnswIndex::search`].
pub type Hit = Candidate;

/// An HNSW graph over the offsets of one vector storage (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct HnswIndex {
    config: HnswConfig,
    graph: GraphLinks,
    scratch: ScratchPool,
}

impl HnswIndex {
    /// Build over every offset of `storage` that `live` accepts, with
    /// payload links inside each of `blocks` (sets of offsets, e.g. one
    /// per tenant; ignored when `config.payload_m` is 0).
    pub fn build<S: VectorStorageRead>(
        storage: &S,
        live: impl Fn(PointOffset) -> bool,
        blocks: &[Vec<PointOffset>],
        config: HnswConfig,
    ) -> Result<Self> {
        if config.m == 0 && config.payload_m == 0 {
            return Err(StorageError::InvalidArgument(
                "an HNSW index needs m > 0 or payload_m > 0".into(),
            ));
        }
        if config.m0() + 2 * config.payload_m > graph::MAX_LIST_LEN {
            return Err(StorageError::InvalidArgument(format!(
                "2 × m + 2 × payload_m must be at most {} (links per level-0 list)",
                graph::MAX_LIST_LEN
            )));
        }
        if config.ef_construct == 0 {
            return Err(StorageError::InvalidArgument(
                "ef_construct must be positive".into(),
            ));
        }
        let nodes = storage.total_count();
        let points: Vec<PointOffset> = (0..nodes as PointOffset).filter(|&o| live(o)).collect();
        let blocks: Vec<Vec<PointOffset>> = blocks
            .iter()
            .map(|b| {
                b.iter()
                    .copied()
                    .filter(|&o| live(o) && (o as usize) < nodes)
                    .collect()
            })
            .collect();
        let graph = build::build(storage, nodes, &points, &blocks, &config)?;
        Ok(Self::from_parts(config, graph))
    }

    fn from_parts(config: HnswConfig, graph: GraphLinks) -> Self {
        let scratch = ScratchPool::new(graph.nodes());
        HnswIndex {
            config,
            graph,
            scratch,
        }
    }

    /// Write the links file into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        write_links(&dir.join(LINKS_FILE), &self.graph, &self.config)
    }

    /// Open the links file in `dir`, mapped and validated.
    pub fn open(dir: &Path) -> Result<Self> {
        let (config, graph) = open_links(&dir.join(LINKS_FILE))?;
        Ok(Self::from_parts(config, graph))
    }

    /// The build settings.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    /// The graph.
    pub fn graph(&self) -> &GraphLinks {
        &self.graph
    }

    /// Load the mapped links file into the page cache.
    pub fn populate(&self) {
        if let Some(f) = self.graph.file() {
            f.populate();
        }
    }

    /// Drop the mapped links file from the page cache.
    pub fn clear_cache(&self) -> Result<()> {
        self.graph.file().map_or(Ok(()), |f| f.clear_cache())
    }

    /// The `k` nearest points to `query` (in stored form: normalised for
    /// cosine) among those `filter` accepts (all when `None`) and `live`
    /// accepts, searching with beam width `ef`; `hints` are extra starting
    /// points (a filtered search whose filter refuses the entry point
    /// needs at least one). Scores go through `storage`'s scorer; when it
    /// is not exact (quantized codes), the `max(ef, k)` candidates are
    /// rescored with the raw vectors. Best first, exact scores.
    #[allow(clippy::too_many_arguments)]
    pub fn search<S: VectorStorageRead>(
        &self,
        storage: &S,
        query: &[S::Element],
        k: usize,
        ef: usize,
        filter: Option<&dyn Fn(PointOffset) -> bool>,
        live: &dyn Fn(PointOffset) -> bool,
        hints: &[PointOffset],
    ) -> Result<Vec<Hit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let scorer = storage.scorer(query)?;
        let score = ByScorer(&scorer);
        let walk_all = |_: PointOffset| true;
        let rules = Rules {
            walk: filter.unwrap_or(&walk_all),
            emit: live,
        };
        let exact = scorer.is_exact();
        let want = if exact { k } else { ef.max(k) };
        let mut found = search_graph(&self.graph, &self.scratch, want, ef, &score, &rules, hints)?;
        if !exact {
            let distance = storage.distance();
            for c in &mut found {
                let v = storage.get::<Random>(c.offset)?;
                c.score = S::Element::score(distance, query, &v);
            }
            found.sort_by(|a, b| b.cmp(a));
            found.truncate(k);
        }
        Ok(found)
    }
}
