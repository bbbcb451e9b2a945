//! [`GraphLinks`]: the frozen graph — each node's level and its neighbour
//! lists per level, as three flat arrays — over owned memory or a mapped
//! links file, and the read access search needs.

use std::path::Path;

use vecseg_mmap::{cast_slice, MmapFile};
use vecseg_traits::{PointOffset, Result, StorageError};

/// Where the arrays live.
#[derive(Debug)]
enum Backing {
    /// Built in this process.
    Owned {
        node_first: Vec<u64>,
        list_start: Vec<u64>,
        neighbors: Vec<u32>,
    },
    /// A validated links file (see `links_file.rs`): byte ranges of the
    /// three arrays inside the mapping.
    Mapped {
        file: MmapFile,
        node_first: std::ops::Range<usize>,
        list_start: std::ops::Range<usize>,
        neighbors: std::ops::Range<usize>,
    },
}

/// An HNSW graph: node `n` has levels `0..levels(n)`, and on each the
/// neighbour list `links(n, level)` (offsets of other nodes).
///
/// Arrays: `node_first[n]` is the index of node `n`'s level-0 list (its
/// level `l` list is `node_first[n] + l`; `node_first` has `nodes + 1`
/// entries); `list_start[i]..list_start[i + 1]` is list `i`'s range in
/// `neighbors`.
#[derive(Debug)]
pub struct GraphLinks {
    backing: Backing,
    /// Entry point and its top level (`None` for a graph without links
    /// across the whole segment, e.g. `m = 0` with payload links only).
    entry: Option<(PointOffset, usize)>,
}

impl GraphLinks {
    /// A graph from per-node, per-level lists (`lists[n][l]`).
    pub(crate) fn from_lists(
        lists: Vec<Vec<Vec<PointOffset>>>,
        entry: Option<(PointOffset, usize)>,
    ) -> Self {
        let mut node_first = Vec::with_capacity(lists.len() + 1);
        let mut list_start = vec![0u64];
        let mut neighbors = Vec::new();
        let mut first = 0u64;
        for levels in lists {
            node_first.push(first);
            first += levels.len() as u64;
            for l in levels {
                neighbors.extend_from_slice(&l);
                list_start.push(neighbors.len() as u64);
            }
        }
        node_first.push(first);
        GraphLinks {
            backing: Backing::Owned {
                node_first,
                list_start,
                neighbors,
            },
            entry,
        }
    }

    /// A graph over a mapped links file whose arrays lie at these byte
    /// ranges (already validated by the caller).
    pub(crate) fn mapped(
        file: MmapFile,
        node_first: std::ops::Range<usize>,
        list_start: std::ops::Range<usize>,
        neighbors: std::ops::Range<usize>,
        entry: Option<(PointOffset, usize)>,
    ) -> Self {
        GraphLinks {
            backing: Backing::Mapped {
                file,
                node_first,
                list_start,
                neighbors,
            },
            entry,
        }
    }

    /// The three arrays.
    pub(crate) fn arrays(&self) -> (&[u64], &[u64], &[u32]) {
        match &self.backing {
            Backing::Owned {
                node_first,
                list_start,
                neighbors,
            } => (node_first, list_start, neighbors),
            Backing::Mapped {
                file,
                node_first,
                list_start,
                neighbors,
            } => {
                let bytes = file.bytes();
                let path = file.path();
                // Validated at open: lengths and alignment hold.
                let view = |r: &std::ops::Range<usize>| &bytes[r.clone()];
                (
                    cast_u64(path, view(node_first)),
                    cast_u64(path, view(list_start)),
                    cast_slice::<u32>(path, view(neighbors)).unwrap_or(&[]),
                )
            }
        }
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.arrays().0.len().saturating_sub(1)
    }

    /// Entry point and its level.
    pub fn entry(&self) -> Option<(PointOffset, usize)> {
        self.entry
    }

    /// Levels of node `n` (0 for an offset outside the graph).
    pub fn levels(&self, n: PointOffset) -> usize {
        let (first, _, _) = self.arrays();
        let n = n as usize;
        if n + 1 >= first.len() {
            return 0;
        }
        (first[n + 1] - first[n]) as usize
    }

    /// Neighbours of node `n` on `level` (empty past its levels).
    pub fn links(&self, n: PointOffset, level: usize) -> &[PointOffset] {
        let (first, start, neighbors) = self.arrays();
        if level >= self.levels(n) {
            return &[];
        }
        let list = first[n as usize] as usize + level;
        &neighbors[start[list] as usize..start[list + 1] as usize]
    }

    /// Total neighbour entries (all levels).
    pub fn link_count(&self) -> usize {
        self.arrays().2.len()
    }

    /// The mapped file, if the graph lives in one.
    pub fn file(&self) -> Option<&MmapFile> {
        match &self.backing {
            Backing::Mapped { file, .. } => Some(file),
            Backing::Owned { .. } => None,
        }
    }

    /// Check the arrays describe a graph over `nodes` nodes: monotonic
    /// starts within bounds, every neighbour a node. Called on open.
    pub(crate) fn validate(&self, path: &Path) -> Result<()> {
        let (first, start, neighbors) = self.arrays();
        let bad = |why: String| Err(StorageError::corrupted(path, why));
        let nodes = first.len().saturating_sub(1);
        if first.first() != Some(&0) || first.windows(2).any(|w| w[0] > w[1]) {
            return bad("node list table is not ascending from 0".into());
        }
        let lists = *first.last().unwrap_or(&0) as usize;
        if start.len() != lists + 1 || start.first() != Some(&0) {
            return bad(format!("{} list starts for {lists} lists", start.len()));
        }
        if start.windows(2).any(|w| w[0] > w[1])
            || *start.last().unwrap_or(&0) as usize != neighbors.len()
        {
            return bad("neighbour list starts are not ascending to the neighbour count".into());
        }
        if let Some(n) = neighbors.iter().find(|&&n| n as usize >= nodes) {
            return bad(format!("neighbour {n} is not one of the {nodes} nodes"));
        }
        if let Some((e, level)) = self.entry {
            if e as usize >= nodes || level + 1 != self.levels(e) {
                return bad(format!(
                    "entry point {e} at level {level} is not a node with that top level"
                ));
            }
        }
        Ok(())
    }
}

fn cast_u64<'a>(path: &Path, bytes: &'a [u8]) -> &'a [u64] {
    cast_slice::<u64>(path, bytes).unwrap_or(&[])
}
