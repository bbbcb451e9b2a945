//! The links file (`hnsw.links`): a [`GraphLinks`] on disk, mapped with
//! random-access advice and validated whole at open. Layout (all
//! little-endian; `docs/file-formats.md`):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `VSHNSW01` |
//! | 8  | 4 | format version (1) |
//! | 12 | 4 | flags (bit 0: packed neighbour lists; other bits 0) |
//! | 16 | 4 | `m` |
//! | 20 | 4 | `m0` |
//! | 24 | 4 | `ef_construct` |
//! | 28 | 4 | `payload_m` |
//! | 32 | 8 | nodes `N` |
//! | 40 | 4 | entry point (`u32::MAX`: none) |
//! | 44 | 4 | entry point's top level |
//! | 48 | 8 | lists `L` (sum of every node's levels) |
//! | 56 | 8 | neighbour entries `E` (packed: bytes of the lists) |
//! | 64 | 8 | seed |
//! | 72 | 4 | CRC-32C of the body |
//! | 76 | 4 | CRC-32C of bytes 0..76 |
//! | 80 | N, padded to 4 | `levels` (u8 per node) |
//! | … | 4(N+1) | `node_start` (u32: where each node's lists begin in `neighbors`; packed: byte position) |
//! | … | L, padded to 4 | `list_len` (u8 per list, a node's lists in level order) |
//! | … | 4E (packed: E) | `neighbors` (u32; packed: each list as `packed_lists.rs` encodes it) |
//!
//! The body (everything after the 80-byte header) is covered by its CRC,
//! so a damaged byte is `Corrupted` at open, never a wrong link.

use std::path::Path;

use vecseg_mmap::{Advice, MmapFile};
use vecseg_traits::fsutil::write_atomic;
use vecseg_traits::{Result, StorageError};

use super::graph::GraphLinks;
use super::{packed_lists, HnswConfig};

/// Name of the links file inside an index directory.
pub const LINKS_FILE: &str = "hnsw.links";
const MAGIC: [u8; 8] = *b"VSHNSW01";
/// Format version of the links file (1: u64 tables, never released).
pub const LINKS_FORMAT_VERSION: u32 = 2;
const HEADER: usize = 80;
/// Flags bit: the lists are packed.
const FLAG_PACKED: u32 = 1;

fn too_large(path: &Path) -> StorageError {
    StorageError::InvalidArgument(format!(
        "{}: more than u32::MAX list entries for the links format",
        path.display()
    ))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Write `graph`, built with `config`, to `path` (temp file, fsync,
/// rename).
pub fn write_links(path: &Path, graph: &GraphLinks, config: &HnswConfig) -> Result<()> {
    let a = graph.arrays()?;
    let nodes = a.levels.len();
    // Every list in node and level order: plain `u32`s or packed.
    let mut starts = Vec::with_capacity(nodes + 1);
    let mut lists: Vec<u8> = Vec::new();
    for n in 0..nodes as u32 {
        let pos = if config.packed_links {
            lists.len()
        } else {
            lists.len() / 4
        };
        starts.push(u32::try_from(pos).map_err(|_| too_large(path))?);
        for level in 0..graph.levels(n) {
            let list = graph.links(n, level);
            if config.packed_links {
                packed_lists::encode(&list, &mut lists);
            } else {
                list.iter()
                    .for_each(|v| lists.extend_from_slice(&v.to_le_bytes()));
            }
        }
    }
    let entries = if config.packed_links {
        lists.len()
    } else {
        lists.len() / 4
    };
    starts.push(u32::try_from(entries).map_err(|_| too_large(path))?);
    let pad = |body: &mut Vec<u8>| body.resize(body.len().next_multiple_of(4), 0);
    let mut body =
        Vec::with_capacity(nodes + a.list_len.len() + 8 + 4 * starts.len() + lists.len());
    body.extend_from_slice(a.levels);
    pad(&mut body);
    starts
        .iter()
        .for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    body.extend_from_slice(a.list_len);
    pad(&mut body);
    body.extend_from_slice(&lists);
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&LINKS_FORMAT_VERSION.to_le_bytes());
    let flags = if config.packed_links { FLAG_PACKED } else { 0 };
    header.extend_from_slice(&flags.to_le_bytes());
    for v in [config.m, config.m0(), config.ef_construct, config.payload_m] {
        header.extend_from_slice(&(v as u32).to_le_bytes());
    }
    header.extend_from_slice(&(nodes as u64).to_le_bytes());
    let (entry, top) = graph.entry().map_or((u32::MAX, 0), |(e, t)| (e, t as u32));
    header.extend_from_slice(&entry.to_le_bytes());
    header.extend_from_slice(&top.to_le_bytes());
    header.extend_from_slice(&(a.list_len.len() as u64).to_le_bytes());
    header.extend_from_slice(&(entries as u64).to_le_bytes());
    header.extend_from_slice(&config.seed.to_le_bytes());
    header.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let head_crc = crc32c::crc32c(&header);
    header.extend_from_slice(&head_crc.to_le_bytes());
    debug_assert_eq!(header.len(), HEADER);
    header.extend_from_slice(&body);
    write_atomic(path, &header)
}

/// Open and validate the links file at `path`: the config it was built
/// with and the graph, mapped.
pub fn open_links(path: &Path) -> Result<(HnswConfig, GraphLinks)> {
    let file = MmapFile::open(path, Advice::Random)?;
    let b = file.bytes();
    let bad = |why: String| StorageError::corrupted(path, why);
    if b.len() < HEADER {
        return Err(bad(format!("{} bytes, shorter than the header", b.len())));
    }
    if b[..8] != MAGIC {
        return Err(bad("not an HNSW links file (bad magic)".into()));
    }
    if crc32c::crc32c(&b[..76]) != u32_at(b, 76) {
        return Err(bad("header checksum mismatch".into()));
    }
    let version = u32_at(b, 8);
    if version != LINKS_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: LINKS_FORMAT_VERSION,
        });
    }
    let flags = u32_at(b, 12);
    if flags & !FLAG_PACKED != 0 {
        return Err(bad(format!("unknown flags {flags:#x}")));
    }
    let packed = flags & FLAG_PACKED != 0;
    let config = HnswConfig {
        m: u32_at(b, 16) as usize,
        ef_construct: u32_at(b, 24) as usize,
        payload_m: u32_at(b, 28) as usize,
        seed: u64_at(b, 64),
        packed_links: packed,
    };
    if config.m0() != u32_at(b, 20) as usize {
        return Err(bad(format!(
            "m0 {} is not 2 × m {}",
            u32_at(b, 20),
            config.m
        )));
    }
    let (nodes, lists, entries) = (u64_at(b, 32), u64_at(b, 48), u64_at(b, 56));
    let padded = |n: u64| n.checked_next_multiple_of(4);
    let sizes = (
        padded(nodes),
        nodes.checked_add(1).and_then(|n| n.checked_mul(4)),
        padded(lists),
        entries.checked_mul(if packed { 1 } else { 4 }),
    );
    let (Some(levels_len), Some(start_len), Some(lens_len), Some(neighbors_len)) = sizes else {
        return Err(bad("array sizes overflow".into()));
    };
    let expected = [levels_len, start_len, lens_len, neighbors_len]
        .into_iter()
        .try_fold(HEADER as u64, |acc, n| acc.checked_add(n));
    if expected != Some(b.len() as u64) {
        return Err(bad(format!(
            "{} bytes, the header describes {expected:?}",
            b.len()
        )));
    }
    if crc32c::crc32c(&b[HEADER..]) != u32_at(b, 72) {
        return Err(bad("body checksum mismatch".into()));
    }
    let levels = HEADER..HEADER + nodes as usize;
    let node_start = HEADER + levels_len as usize..HEADER + (levels_len + start_len) as usize;
    let list_len = node_start.end..node_start.end + lists as usize;
    let neighbors = node_start.end + lens_len as usize..b.len();
    let entry = match (u32_at(b, 40), u32_at(b, 44)) {
        (u32::MAX, _) => None,
        (e, top) => Some((e, top as usize)),
    };
    let graph = GraphLinks::mapped(
        file,
        [levels, node_start, list_len, neighbors],
        packed,
        entry,
    )?;
    Ok((config, graph))
}
