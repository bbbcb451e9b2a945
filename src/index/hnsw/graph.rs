//! [`GraphLinks`]: the frozen graph — each node's level count, where its
//! lists start, each list's length, and the neighbours — over owned
//! memory or a mapped links file, and the read access search needs.

use std::ops::Range;
use std::path::Path;

use vecseg_mmap::{cast_slice, prefetch, MmapFile};
use vecseg_traits::{PointOffset, Result, StorageError};

/// Most links one list may hold (list lengths are stored as one byte).
pub const MAX_LIST_LEN: usize = 255;

/// Where the arrays live.
#[derive(Debug)]
enum Backing {
    /// Built in this process.
    Owned {
        levels: Vec<u8>,
        node_start: Vec<u32>,
        list_len: Vec<u8>,
        neighbors: Vec<u32>,
    },
    /// A links file (see `links_file.rs`): byte ranges of the arrays
    /// inside the mapping.
    Mapped {
        file: MmapFile,
        levels: Range<usize>,
        node_start: Range<usize>,
        list_len: Range<usize>,
        neighbors: Range<usize>,
    },
}

/// The four stored arrays, borrowed.
pub(crate) struct Arrays<'a> {
    /// Level count per node (0: not in the graph).
    pub(crate) levels: &'a [u8],
    /// Per node (and one past the last), the index in `neighbors` where
    /// its lists begin.
    pub(crate) node_start: &'a [u32],
    /// Per list (a node's lists in level order, nodes in order), its length.
    pub(crate) list_len: &'a [u8],
    /// Every list's neighbours, back to back.
    pub(crate) neighbors: &'a [u32],
}

/// A graph's arrays, borrowed for reading lists (see [`GraphLinks::view`]).
pub(crate) struct LinksView<'a> {
    arrays: Arrays<'a>,
    node_first: &'a [u32],
    level0_len: &'a [u8],
}

impl<'a> LinksView<'a> {
    /// Neighbours of node `n` on level 0 (empty outside the graph).
    #[inline]
    pub(crate) fn links0(&self, n: PointOffset) -> &'a [PointOffset] {
        let n = n as usize;
        match (self.level0_len.get(n), self.arrays.node_start.get(n)) {
            (Some(&len), Some(&start)) => {
                let start = start as usize;
                self.arrays
                    .neighbors
                    .get(start..start + len as usize)
                    .unwrap_or(&[])
            }
            _ => &[],
        }
    }

    /// Start loading what [`links0`](Self::links0) reads first for node
    /// `n` (where its list starts, and its length).
    #[inline]
    pub(crate) fn prefetch_entry0(&self, n: PointOffset) {
        let n = n as usize;
        if let Some(start) = self.arrays.node_start.get(n..n + 1) {
            prefetch(start);
        }
        if let Some(len) = self.level0_len.get(n..n + 1) {
            prefetch(len);
        }
    }

    /// Neighbours of node `n` on `level` (empty past its levels).
    #[inline]
    pub(crate) fn links(&self, n: PointOffset, level: usize) -> &'a [PointOffset] {
        if level == 0 {
            return self.links0(n);
        }
        let n = n as usize;
        let (Some(&first), Some(&next)) = (self.node_first.get(n), self.node_first.get(n + 1))
        else {
            return &[];
        };
        let (first, levels) = (first as usize, (next - first) as usize);
        if level >= levels {
            return &[];
        }
        let a = &self.arrays;
        let mut start = a.node_start[n] as usize;
        for l in &a.list_len[first..first + level] {
            start += *l as usize;
        }
        let len = a.list_len[first + level] as usize;
        &a.neighbors[start..start + len]
    }
}

/// An HNSW graph: node `n` has levels `0..levels(n)`, and on each the
/// neighbour list `links(n, level)` (offsets of other nodes). Node `n`'s
/// first list is list `node_first[n]` (prefix sums of the level counts,
/// computed when the graph is made or opened).
#[derive(Debug)]
pub struct GraphLinks {
    backing: Backing,
    node_first: Vec<u32>,
    /// Per node, the length of its level-0 list (0 outside the graph):
    /// level 0 is read by every search step, and this makes its list one
    /// lookup away (`node_start[n]`, this) instead of a chain through
    /// `node_first` and `list_len`.
    level0_len: Vec<u8>,
    /// Entry point and its top level (`None` for a graph without links
    /// across the whole segment, e.g. `m = 0` with payload links only).
    entry: Option<(PointOffset, usize)>,
}

/// Prefix sums of `levels` (`levels.len() + 1` entries), or `None` past
/// `u32::MAX` lists.
fn prefix(levels: &[u8]) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(levels.len() + 1);
    let mut sum = 0u32;
    out.push(0);
    for &l in levels {
        sum = sum.checked_add(u32::from(l))?;
        out.push(sum);
    }
    Some(out)
}

/// Per node, the length of its level-0 list (`levels`, `node_first` and
/// `list_len` as checked; 0 for a node outside the graph).
fn level0_lengths(levels: &[u8], node_first: &[u32], list_len: &[u8]) -> Vec<u8> {
    levels
        .iter()
        .zip(node_first)
        .map(|(&l, &first)| {
            if l == 0 {
                0
            } else {
                list_len.get(first as usize).copied().unwrap_or(0)
            }
        })
        .collect()
}

fn too_large(what: &str) -> StorageError {
    StorageError::InvalidArgument(format!("HNSW graph too large for the links format: {what}"))
}

impl GraphLinks {
    /// A graph from per-node, per-level lists (`lists[n][l]`).
    pub(crate) fn from_lists(
        lists: Vec<Vec<Vec<PointOffset>>>,
        entry: Option<(PointOffset, usize)>,
    ) -> Result<Self> {
        let mut levels = Vec::with_capacity(lists.len());
        let mut node_start = Vec::with_capacity(lists.len() + 1);
        let mut list_len = Vec::new();
        let mut neighbors: Vec<u32> = Vec::new();
        for node in lists {
            levels.push(u8::try_from(node.len()).map_err(|_| too_large("levels"))?);
            node_start.push(u32::try_from(neighbors.len()).map_err(|_| too_large("links"))?);
            for l in node {
                if l.len() > MAX_LIST_LEN {
                    return Err(too_large("a list longer than 255 links"));
                }
                list_len.push(l.len() as u8);
                neighbors.extend_from_slice(&l);
            }
        }
        node_start.push(u32::try_from(neighbors.len()).map_err(|_| too_large("links"))?);
        let node_first = prefix(&levels).ok_or_else(|| too_large("lists"))?;
        let level0_len = level0_lengths(&levels, &node_first, &list_len);
        Ok(GraphLinks {
            backing: Backing::Owned {
                levels,
                node_start,
                list_len,
                neighbors,
            },
            node_first,
            level0_len,
            entry,
        })
    }

    /// A graph over a mapped links file whose arrays lie at these byte
    /// ranges; checked whole (see [`GraphLinks::validate`]).
    pub(crate) fn mapped(
        file: MmapFile,
        ranges: [Range<usize>; 4],
        entry: Option<(PointOffset, usize)>,
    ) -> Result<Self> {
        let path = file.path().to_path_buf();
        let [levels, node_start, list_len, neighbors] = ranges;
        let mut graph = GraphLinks {
            backing: Backing::Mapped {
                file,
                levels,
                node_start,
                list_len,
                neighbors,
            },
            node_first: Vec::new(),
            level0_len: Vec::new(),
            entry,
        };
        graph.node_first = prefix(graph.arrays()?.levels)
            .ok_or_else(|| StorageError::corrupted(&path, "more than u32::MAX lists"))?;
        graph.validate(&path)?;
        let a = graph.arrays()?;
        graph.level0_len = level0_lengths(a.levels, &graph.node_first, a.list_len);
        Ok(graph)
    }

    /// The stored arrays (a mapped file's views are checked for length
    /// and alignment).
    pub(crate) fn arrays(&self) -> Result<Arrays<'_>> {
        match &self.backing {
            Backing::Owned {
                levels,
                node_start,
                list_len,
                neighbors,
            } => Ok(Arrays {
                levels,
                node_start,
                list_len,
                neighbors,
            }),
            Backing::Mapped {
                file,
                levels,
                node_start,
                list_len,
                neighbors,
            } => {
                let (b, path) = (file.bytes(), file.path());
                Ok(Arrays {
                    levels: &b[levels.clone()],
                    node_start: cast_slice::<u32>(path, &b[node_start.clone()])?,
                    list_len: &b[list_len.clone()],
                    neighbors: cast_slice::<u32>(path, &b[neighbors.clone()])?,
                })
            }
        }
    }

    /// The arrays of a graph that was checked when made or opened.
    fn checked(&self) -> Arrays<'_> {
        self.arrays().unwrap_or(Arrays {
            levels: &[],
            node_start: &[],
            list_len: &[],
            neighbors: &[],
        })
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.node_first.len().saturating_sub(1)
    }

    /// Entry point and its level.
    pub fn entry(&self) -> Option<(PointOffset, usize)> {
        self.entry
    }

    /// Levels of node `n` (0 for an offset outside the graph).
    pub fn levels(&self, n: PointOffset) -> usize {
        let n = n as usize;
        if n + 1 >= self.node_first.len() {
            return 0;
        }
        (self.node_first[n + 1] - self.node_first[n]) as usize
    }

    /// Neighbours of node `n` on `level` (empty past its levels).
    pub fn links(&self, n: PointOffset, level: usize) -> &[PointOffset] {
        self.view().links(n, level)
    }

    /// The arrays resolved once, for a search's many list reads (a mapped
    /// file's views are not re-checked per list).
    pub(crate) fn view(&self) -> LinksView<'_> {
        LinksView {
            arrays: self.checked(),
            node_first: &self.node_first,
            level0_len: &self.level0_len,
        }
    }

    /// Total neighbour entries (all levels).
    pub fn link_count(&self) -> usize {
        self.checked().neighbors.len()
    }

    /// The mapped file, if the graph lives in one.
    pub fn file(&self) -> Option<&MmapFile> {
        match &self.backing {
            Backing::Mapped { file, .. } => Some(file),
            Backing::Owned { .. } => None,
        }
    }

    /// Check the arrays describe a graph: one start per node plus one,
    /// ascending from 0 to the neighbour count; one length per list, each
    /// node's lengths adding up to its span; every neighbour a node; the
    /// entry point a node with the recorded top level.
    fn validate(&self, path: &Path) -> Result<()> {
        let a = self.arrays()?;
        let bad = |why: String| Err(StorageError::corrupted(path, why));
        let nodes = a.levels.len();
        if a.node_start.len() != nodes + 1 || a.node_start.first() != Some(&0) {
            return bad(format!(
                "{} list starts for {nodes} nodes",
                a.node_start.len()
            ));
        }
        if a.node_start.windows(2).any(|w| w[0] > w[1])
            || *a.node_start.last().unwrap_or(&0) as usize != a.neighbors.len()
        {
            return bad("node starts are not ascending to the neighbour count".into());
        }
        let lists = *self.node_first.last().unwrap_or(&0) as usize;
        if a.list_len.len() != lists {
            return bad(format!(
                "{} list lengths for {lists} lists",
                a.list_len.len()
            ));
        }
        for n in 0..nodes {
            let (first, last) = (self.node_first[n] as usize, self.node_first[n + 1] as usize);
            let span: usize = a.list_len[first..last].iter().map(|&l| l as usize).sum();
            if span != (a.node_start[n + 1] - a.node_start[n]) as usize {
                return bad(format!("node {n}: list lengths do not add up to its links"));
            }
        }
        if let Some(n) = a.neighbors.iter().find(|&&n| n as usize >= nodes) {
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
