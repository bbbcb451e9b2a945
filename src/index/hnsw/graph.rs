//! [`GraphLinks`]: the frozen graph — each node's level count, where its
//! lists start, each list's length, and the neighbours — over owned
//! memory or a mapped links file, and the read access search needs. A
//! mapped file holds its lists plain (`u32` each) or packed (sorted,
//! delta-encoded, bit-packed: `packed_lists.rs`); packed lists are decoded
//! on read.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use vecseg_mmap::{cast_slice, prefetch, MmapFile};
use vecseg_traits::{PointOffset, Result, StorageError};

use super::packed_lists;

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
        /// Lists packed (`node_start` then counts bytes), not plain.
        packed: bool,
    },
}

/// The neighbour lists, back to back.
#[derive(Clone, Copy)]
pub(crate) enum Lists<'a> {
    /// `u32` offsets; `node_start` counts entries.
    Plain(&'a [u32]),
    /// Packed lists (`packed_lists.rs`); `node_start` counts bytes.
    Packed(&'a [u8]),
}

impl Lists<'_> {
    /// Entries (plain) or bytes (packed): what `node_start` counts.
    fn len(&self) -> usize {
        match self {
            Lists::Plain(n) => n.len(),
            Lists::Packed(b) => b.len(),
        }
    }
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
    pub(crate) neighbors: Lists<'a>,
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
    pub(crate) fn links0(&self, n: PointOffset) -> Cow<'a, [PointOffset]> {
        let n = n as usize;
        match (self.level0_len.get(n), self.arrays.node_start.get(n)) {
            (Some(&len), Some(&start)) => self.list_at(start as usize, len as usize),
            _ => Cow::Borrowed(&[]),
        }
    }

    /// The list of `len` neighbours starting at `start` (an index into
    /// plain lists, a byte position in packed ones).
    #[inline]
    fn list_at(&self, start: usize, len: usize) -> Cow<'a, [PointOffset]> {
        match self.arrays.neighbors {
            Lists::Plain(nb) => Cow::Borrowed(nb.get(start..start + len).unwrap_or(&[])),
            Lists::Packed(bytes) => {
                let mut out = Vec::with_capacity(len);
                // Checked at open; a list that fails to decode reads empty.
                if bytes
                    .get(start..)
                    .and_then(|b| packed_lists::decode(b, len, &mut out))
                    .is_none()
                {
                    out.clear();
                }
                Cow::Owned(out)
            }
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

    /// Start loading node `n`'s level-0 list.
    #[inline]
    pub(crate) fn prefetch_list0(&self, n: PointOffset) {
        let n = n as usize;
        let (Some(&len), Some(&start)) = (self.level0_len.get(n), self.arrays.node_start.get(n))
        else {
            return;
        };
        let (start, len) = (start as usize, len as usize);
        match self.arrays.neighbors {
            Lists::Plain(nb) => prefetch(nb.get(start..start + len).unwrap_or(&[])),
            Lists::Packed(b) => {
                let end = (start + packed_lists::encoded_len(len, 32)).min(b.len());
                prefetch(b.get(start..end).unwrap_or(&[]))
            }
        }
    }

    /// Neighbours of node `n` on `level` (empty past its levels).
    #[inline]
    pub(crate) fn links(&self, n: PointOffset, level: usize) -> Cow<'a, [PointOffset]> {
        if level == 0 {
            return self.links0(n);
        }
        let n = n as usize;
        let (Some(&first), Some(&next)) = (self.node_first.get(n), self.node_first.get(n + 1))
        else {
            return Cow::Borrowed(&[]);
        };
        let (first, levels) = (first as usize, (next - first) as usize);
        if level >= levels {
            return Cow::Borrowed(&[]);
        }
        let a = &self.arrays;
        let mut start = a.node_start[n] as usize;
        for &l in &a.list_len[first..first + level] {
            start += match a.neighbors {
                Lists::Plain(_) => l as usize,
                // A packed list's width is its first byte.
                Lists::Packed(b) => {
                    let bits = b.get(start).map_or(0, |&w| u32::from(w));
                    packed_lists::encoded_len(l as usize, bits)
                }
            };
        }
        self.list_at(start, a.list_len[first + level] as usize)
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
        packed: bool,
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
                packed,
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
                neighbors: Lists::Plain(neighbors),
            }),
            Backing::Mapped {
                file,
                levels,
                node_start,
                list_len,
                neighbors,
                packed,
            } => {
                let (b, path) = (file.bytes(), file.path());
                let lists = &b[neighbors.clone()];
                Ok(Arrays {
                    levels: &b[levels.clone()],
                    node_start: cast_slice::<u32>(path, &b[node_start.clone()])?,
                    list_len: &b[list_len.clone()],
                    neighbors: match packed {
                        true => Lists::Packed(lists),
                        false => Lists::Plain(cast_slice::<u32>(path, lists)?),
                    },
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
            neighbors: Lists::Plain(&[]),
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

    /// Neighbours of node `n` on `level` (empty past its levels);
    /// borrowed from plain lists, decoded from packed ones.
    pub fn links(&self, n: PointOffset, level: usize) -> Cow<'_, [PointOffset]> {
        self.view().links(n, level)
    }

    /// Whether the lists are stored packed (a links file written with
    /// [`HnswConfig::packed_links`](super::HnswConfig::packed_links)).
    pub fn is_packed(&self) -> bool {
        matches!(self.checked().neighbors, Lists::Packed(_))
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
        self.checked().list_len.iter().map(|&l| l as usize).sum()
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
            return bad("node starts are not ascending to the lists' end".into());
        }
        let lists = *self.node_first.last().unwrap_or(&0) as usize;
        if a.list_len.len() != lists {
            return bad(format!(
                "{} list lengths for {lists} lists",
                a.list_len.len()
            ));
        }
        let mut decoded = Vec::new();
        for n in 0..nodes {
            let (first, last) = (self.node_first[n] as usize, self.node_first[n + 1] as usize);
            let (start, end) = (a.node_start[n] as usize, a.node_start[n + 1] as usize);
            let lens = &a.list_len[first..last];
            let span = match a.neighbors {
                Lists::Plain(_) => lens.iter().map(|&l| l as usize).sum(),
                Lists::Packed(bytes) => {
                    let mut at = start;
                    for &len in lens {
                        let used = bytes
                            .get(at..end)
                            .and_then(|b| packed_lists::decode(b, len as usize, &mut decoded));
                        let Some(used) = used else {
                            return bad(format!("node {n}: a packed list does not decode"));
                        };
                        if let Some(x) = decoded.iter().find(|&&x| x as usize >= nodes) {
                            return bad(format!("neighbour {x} is not one of the {nodes} nodes"));
                        }
                        at += used;
                    }
                    at - start
                }
            };
            if span != end - start {
                return bad(format!("node {n}: list lengths do not add up to its links"));
            }
        }
        if let Lists::Plain(nb) = a.neighbors {
            if let Some(n) = nb.iter().find(|&&n| n as usize >= nodes) {
                return bad(format!("neighbour {n} is not one of the {nodes} nodes"));
            }
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
