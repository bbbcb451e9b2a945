//! [`ChunkedPayloadStorage`]: gridstore-style payload storage. Values are
//! serialised with MessagePack and placed in runs of fixed-size blocks
//! inside memory-mapped page files; a tracker maps each offset to its cell.
//!
//! ## Directory layout
//!
//! ```text
//! <dir>/config.json   block size, blocks per page, blocks per region, populate flag
//! <dir>/page_N.dat    32-byte header + `blocks * block_size` data bytes, preallocated
//! <dir>/tracker.dat   32-byte header + 16 bytes per offset {page, block, len, flags}, mapped
//! <dir>/bitmask.dat   16-byte prefix + one bit per block (1 = used) as little-endian u64 words
//! ```
//!
//! A value of `len` bytes occupies `ceil(len / block_size)` consecutive
//! blocks of one page (its *cell*). A value larger than a standard page
//! gets a page of its own, sized to fit (pages record their block count).
//! Pages are a whole number of *regions*; per region the storage keeps a
//! gap summary in RAM (free blocks at its start, at its end, and the longest
//! free run inside it), so a free run of `k` blocks is found by looking at
//! three numbers per region and scanning the bits of only the region that
//! fits. The summaries are derived from the bitmask at open (one pass over
//! the bitmask words), so they can never disagree with it after a crash.
//!
//! ## Durability
//!
//! Updates never overwrite a cell in place. A write allocates a new cell,
//! copies the bytes into the page mapping and records the new pointer in an
//! in-RAM overlay of the tracker; reads consult the overlay first. `flush`:
//!
//! 1. msync the written page ranges (the new cells are durable);
//! 2. write the changed bitmask words and `fdatasync` (new cells are marked used);
//! 3. copy the overlay into the mapped tracker and msync it (the new pointers
//!    are durable; each 16-byte entry flips from the old cell to the new one);
//! 4. only now free the blocks of the cells the flushed pointers replaced,
//!    and write those bitmask words (made durable by the next flush).
//!
//! The tracker file is only written in step 3, so whatever the kernel
//! writes back on its own, a pointer on disk always names a cell whose
//! bytes are durable and whose blocks are marked used. A crash can leak
//! blocks (allocated but never referenced by a durable pointer, or freed
//! after the last bitmask write) but never corrupts or loses a flushed value.
//! A cell written and replaced between two flushes was never referenced by
//! the tracker on disk and is freed at once.
//!
//! ## In-RAM mode
//!
//! [`ChunkedPayloadOptions::populate`] (see [`ChunkedPayloadOptions::in_ram`]) faults the
//! page and tracker mappings in at open.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};
use vecseg_mmap::header::{read_header, CheckedHeader, FilePrefix};
use vecseg_mmap::MmapFileMut;
use vecseg_traits::fsutil::{dir_size, write_atomic};
use vecseg_traits::{
    AppendablePayloadStorage, IoResultExt, Payload, PayloadStorage, PayloadStorageRead,
    PointOffset, Result, StorageError,
};

use crate::common::{check_version, prepare_new_dir, read_json, read_u32, write_json};

/// File name of the JSON configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the tracker (offset -> cell).
pub const TRACKER_FILE: &str = "tracker.dat";
/// File name of the used-block bitmask.
pub const BITMASK_FILE: &str = "bitmask.dat";
/// Format version of every file of this storage.
pub const FORMAT_VERSION: u32 = 1;

const PAGE_MAGIC: [u8; 8] = *b"VSPLPAGE";
const TRACKER_MAGIC: [u8; 8] = *b"VSPLTRAK";
const BITMASK_MAGIC: [u8; 8] = *b"VSPLBITS";
const PAGE_HEADER_LEN: usize = 32;
const TRACKER_HEADER_LEN: usize = 32;
const BITMASK_HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 16;
const MIN_TRACKER_ENTRIES: usize = 1024;
/// Tracker entry flag: the entry holds a value.
const FLAG_PRESENT: u32 = 1;
/// Bitmask words written per dirty group (512 bytes).
const GROUP_WORDS: usize = 64;

/// Path of page file `index` inside `dir`.
pub fn page_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("page_{index}.dat"))
}

/// Options of a [`ChunkedPayloadStorage`] chosen at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedPayloadOptions {
    /// Bytes per block (the allocation unit); default 128.
    pub block_size: usize,
    /// Data bytes of a standard page file; default 32 MiB. Rounded down to
    /// a whole number of regions (at least one).
    pub page_size: usize,
    /// Blocks per region of the gap summary, a multiple of 64; default 8192.
    pub region_blocks: usize,
    /// In-RAM mode: populate the page and tracker mappings at open.
    pub populate: bool,
}

impl Default for ChunkedPayloadOptions {
    fn default() -> Self {
        ChunkedPayloadOptions {
            block_size: 128,
            page_size: 32 << 20,
            region_blocks: 8192,
            populate: false,
        }
    }
}

impl ChunkedPayloadOptions {
    /// Default geometry, mappings populated at open (`InRam` mode).
    pub fn in_ram() -> Self {
        ChunkedPayloadOptions {
            populate: true,
            ..Self::default()
        }
    }

    /// These options with blocks of `bytes` bytes.
    pub fn with_block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes;
        self
    }

    /// These options with page files of `bytes` data bytes.
    pub fn with_page_size(mut self, bytes: usize) -> Self {
        self.page_size = bytes;
        self
    }

    /// These options with `blocks` blocks per gap-summary region.
    pub fn with_region_blocks(mut self, blocks: usize) -> Self {
        self.region_blocks = blocks;
        self
    }

    /// These options with the populate (`InRam`) flag set to `populate`.
    pub fn with_populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Small pages and regions, so tests cross page and region boundaries.
    pub fn small_for_tests() -> Self {
        ChunkedPayloadOptions {
            block_size: 32,
            page_size: 16 << 10,
            region_blocks: 64,
            populate: false,
        }
    }
}

/// Contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConfigFile {
    format_version: u32,
    block_size: usize,
    page_blocks: usize,
    region_blocks: usize,
    compression: String,
    populate: bool,
}

/// Header of `page_N.dat` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct PageHeader {
    prefix: FilePrefix,
    page_index: u32,
    block_size: u32,
    blocks: u32,
    reserved: u32,
}

/// Header of `tracker.dat`: a [`CheckedHeader`] whose value is the number
/// of entries the flushed pointers cover (CRC 0 in files of older builds:
/// unchecked).
fn tracker_header(entries: u64) -> CheckedHeader {
    CheckedHeader::new(TRACKER_MAGIC, FORMAT_VERSION, entries)
}

/// Where a value lives: `len` bytes from block `block` of page `page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pointer {
    page: u32,
    block: u32,
    len: u32,
}

/// Free-run summary of one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Gap {
    /// Free blocks at the start of the region.
    leading: u32,
    /// Free blocks at the end of the region.
    trailing: u32,
    /// Longest free run inside the region.
    max: u32,
}

#[derive(Debug)]
struct Page {
    file: MmapFileMut,
    /// Global index of the page's first block.
    base: usize,
    blocks: usize,
    /// Byte range written since the last flush.
    dirty: Option<(usize, usize)>,
}

/// Gridstore-style payload storage; see the module documentation.
#[derive(Debug)]
pub struct ChunkedPayloadStorage {
    dir: PathBuf,
    block_size: usize,
    page_blocks: usize,
    region_blocks: usize,
    populate: bool,
    pages: Vec<Page>,
    tracker: MmapFileMut,
    /// Tracker changes not yet written to `tracker.dat` (`None` = cleared).
    pending: HashMap<PointOffset, Option<Pointer>>,
    /// Cells referenced by `tracker.dat` whose replacement is pending:
    /// freed after the next tracker flush, as (first global block, blocks).
    pending_frees: Vec<(usize, usize)>,
    /// One bit per block of every page, 1 = used.
    used: Vec<u64>,
    gaps: Vec<Gap>,
    bitmask_file: File,
    bitmask_path: PathBuf,
    /// Groups of `GROUP_WORDS` bitmask words changed since they were written.
    bitmask_dirty: BTreeSet<usize>,
    count: usize,
}

impl ChunkedPayloadStorage {
    /// Create an empty storage in `dir` (created if missing; an existing
    /// storage there is an error).
    pub fn create(dir: &Path, options: ChunkedPayloadOptions) -> Result<Self> {
        let o = options;
        if o.block_size == 0 || o.block_size > (1 << 20) {
            return Err(StorageError::InvalidArgument(format!(
                "block size {} not in 1..=1 MiB",
                o.block_size
            )));
        }
        if o.region_blocks == 0
            || !o.region_blocks.is_multiple_of(64)
            || o.region_blocks > (1 << 24)
        {
            return Err(StorageError::InvalidArgument(format!(
                "region_blocks {} must be a positive multiple of 64 (at most 2^24)",
                o.region_blocks
            )));
        }
        let page_blocks = ((o.page_size / o.block_size) / o.region_blocks).max(1) * o.region_blocks;
        if page_blocks > u32::MAX as usize {
            return Err(StorageError::InvalidArgument("page too large".into()));
        }
        prepare_new_dir(dir, CONFIG_FILE)?;
        let header = tracker_header(0);
        MmapFileMut::create(
            &dir.join(TRACKER_FILE),
            (TRACKER_HEADER_LEN + MIN_TRACKER_ENTRIES * ENTRY_LEN) as u64,
            bytemuck::bytes_of(&header),
        )?;
        let prefix = FilePrefix::new::<FilePrefix>(BITMASK_MAGIC, FORMAT_VERSION);
        write_atomic(&dir.join(BITMASK_FILE), bytemuck::bytes_of(&prefix))?;
        write_json(
            &dir.join(CONFIG_FILE),
            &ConfigFile {
                format_version: FORMAT_VERSION,
                block_size: o.block_size,
                page_blocks,
                region_blocks: o.region_blocks,
                compression: "none".into(),
                populate: o.populate,
            },
        )?;
        Self::open(dir)
    }

    /// Open the storage in `dir`, validating every file.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_inner(dir, None)
    }

    /// Open the storage in `dir`, overriding the populate (`InRam`) flag
    /// stored in its `config.json`.
    pub fn open_with_populate(dir: &Path, populate: bool) -> Result<Self> {
        Self::open_inner(dir, Some(populate))
    }

    fn open_inner(dir: &Path, populate: Option<bool>) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let c: ConfigFile = read_json(&config_path)?;
        check_version(&config_path, c.format_version, FORMAT_VERSION)?;
        let bad = |r: String| StorageError::corrupted(&config_path, r);
        if c.block_size == 0 || c.block_size > (1 << 20) {
            return Err(bad(format!("invalid block size {}", c.block_size)));
        }
        if c.region_blocks == 0
            || !c.region_blocks.is_multiple_of(64)
            || c.region_blocks > (1 << 24)
        {
            return Err(bad(format!("invalid region_blocks {}", c.region_blocks)));
        }
        if c.page_blocks == 0
            || !c.page_blocks.is_multiple_of(c.region_blocks)
            || c.page_blocks > u32::MAX as usize
        {
            return Err(bad(format!("invalid page_blocks {}", c.page_blocks)));
        }
        if c.compression != "none" {
            return Err(bad(format!("unsupported compression {:?}", c.compression)));
        }
        let populate = populate.unwrap_or(c.populate);

        // Pages.
        let mut pages: Vec<Page> = Vec::new();
        let mut total_blocks = 0usize;
        loop {
            let path = page_path(dir, pages.len());
            if !path.exists() {
                break;
            }
            let file = MmapFileMut::open(&path)?;
            let h: PageHeader = read_header(&path, file.bytes(), PAGE_MAGIC, FORMAT_VERSION)?;
            let pbad = |r: String| Err(StorageError::corrupted(&path, r));
            if h.page_index as usize != pages.len() {
                return pbad(format!(
                    "page index {} in file named {}",
                    h.page_index,
                    pages.len()
                ));
            }
            if h.block_size as usize != c.block_size {
                return pbad(format!(
                    "block size {} (config.json says {})",
                    h.block_size, c.block_size
                ));
            }
            let blocks = h.blocks as usize;
            if blocks == 0 || !blocks.is_multiple_of(c.region_blocks) {
                return pbad(format!("{blocks} blocks is not a whole number of regions"));
            }
            let want = PAGE_HEADER_LEN + blocks * c.block_size;
            if file.len() != want {
                return pbad(format!("file is {} bytes, expected {want}", file.len()));
            }
            if populate {
                file.populate();
            }
            pages.push(Page {
                file,
                base: total_blocks,
                blocks,
                dirty: None,
            });
            total_blocks += blocks;
        }

        // Bitmask.
        let bitmask_path = dir.join(BITMASK_FILE);
        let bytes = std::fs::read(&bitmask_path).at(&bitmask_path)?;
        read_header::<FilePrefix>(&bitmask_path, &bytes, BITMASK_MAGIC, FORMAT_VERSION)?;
        let body = &bytes[BITMASK_HEADER_LEN..];
        if !body.len().is_multiple_of(8) {
            return Err(StorageError::corrupted(
                &bitmask_path,
                format!(
                    "{} bytes of bits is not a whole number of u64 words",
                    body.len()
                ),
            ));
        }
        let mut used: Vec<u64> = body
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
            .collect();
        let words = total_blocks / 64;
        if used.len() > words {
            if used[words..].iter().any(|&w| w != 0) {
                return Err(StorageError::corrupted(
                    &bitmask_path,
                    format!(
                        "marks blocks past the {total_blocks} blocks of the page files ({} is missing?)",
                        page_path(dir, pages.len()).display()
                    ),
                ));
            }
            used.truncate(words);
        }
        // Pages created after the last bitmask write hold no referenced cell.
        used.resize(words, 0);
        let gaps = used
            .chunks_exact(c.region_blocks / 64)
            .map(region_gap)
            .collect();
        let bitmask_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&bitmask_path)
            .at(&bitmask_path)?;

        // Tracker.
        let tracker_path = dir.join(TRACKER_FILE);
        let tracker = MmapFileMut::open(&tracker_path)?;
        let flushed_entries = CheckedHeader::read(
            &tracker_path,
            tracker.bytes(),
            TRACKER_MAGIC,
            FORMAT_VERSION,
            true,
        )?;
        if !(tracker.len() - TRACKER_HEADER_LEN).is_multiple_of(ENTRY_LEN) {
            return Err(StorageError::corrupted(
                &tracker_path,
                format!(
                    "{} bytes of entries is not a whole number of {ENTRY_LEN}-byte entries",
                    tracker.len() - TRACKER_HEADER_LEN
                ),
            ));
        }
        let held = ((tracker.len() - TRACKER_HEADER_LEN) / ENTRY_LEN) as u64;
        if held < flushed_entries {
            return Err(StorageError::corrupted(
                &tracker_path,
                format!(
                    "flushed entries missing: the file holds {held}, its header says {} were flushed",
                    flushed_entries
                ),
            ));
        }
        if populate {
            tracker.populate();
        }
        let count = tracker.bytes()[TRACKER_HEADER_LEN..]
            .chunks_exact(ENTRY_LEN)
            .filter(|e| e[12..16] != [0; 4])
            .count();

        Ok(ChunkedPayloadStorage {
            dir: dir.to_path_buf(),
            block_size: c.block_size,
            page_blocks: c.page_blocks,
            region_blocks: c.region_blocks,
            populate,
            pages,
            tracker,
            pending: HashMap::new(),
            pending_frees: Vec::new(),
            used,
            gaps,
            bitmask_file,
            bitmask_path,
            bitmask_dirty: BTreeSet::new(),
            count,
        })
    }

    /// The storage's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of page files.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Number of blocks in use (including leaked and pending-free ones).
    pub fn used_blocks(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the mappings were populated at open (`InRam` mode).
    pub fn is_populated(&self) -> bool {
        self.populate
    }

    /// Give back blocks a crash leaked: flush, then rebuild the bitmask from
    /// the cells the tracker references and make it durable. Costs one pass
    /// over the tracker; returns the number of blocks reclaimed.
    pub fn reclaim_leaked_blocks(&mut self) -> Result<usize> {
        self.flush()?;
        let before = self.used_blocks();
        let mut used = vec![0u64; self.used.len()];
        for o in 0..self.tracker_entries() {
            if let Some(p) = self.mapped_pointer(o as PointOffset)? {
                let (start, k) = self.global_cell(p).ok_or_else(|| {
                    StorageError::corrupted(
                        self.tracker.path(),
                        format!("entry {o} points outside page {}", p.page),
                    )
                })?;
                for b in start..start + k {
                    used[b / 64] |= 1 << (b % 64);
                }
            }
        }
        self.used = used;
        let rw = self.region_blocks / 64;
        self.gaps = self.used.chunks_exact(rw).map(region_gap).collect();
        self.bitmask_dirty = (0..self.used.len().div_ceil(GROUP_WORDS)).collect();
        self.write_bitmask_groups()?;
        self.bitmask_file.sync_data().at(&self.bitmask_path)?;
        Ok(before - self.used_blocks())
    }

    /// The stored (MessagePack) bytes of the payload at `offset`, zero-copy
    /// from the page mapping; `None` when no payload is stored.
    #[inline]
    pub fn get_raw(&self, offset: PointOffset) -> Result<Option<&[u8]>> {
        let Some(p) = self.pointer(offset)? else {
            return Ok(None);
        };
        let page = self.pages.get(p.page as usize).ok_or_else(|| {
            StorageError::corrupted(
                self.dir.join(TRACKER_FILE),
                format!("offset {offset} points to missing page {}", p.page),
            )
        })?;
        let start = PAGE_HEADER_LEN + p.block as usize * self.block_size;
        page.file
            .bytes()
            .get(start..start + p.len as usize)
            .filter(|_| p.len > 0)
            .map(Some)
            .ok_or_else(|| {
                StorageError::corrupted(
                    self.dir.join(TRACKER_FILE),
                    format!("offset {offset} points outside page {}", p.page),
                )
            })
    }

    /// Decode stored bytes (as returned by [`Self::get_raw`]) into a payload.
    pub fn decode(bytes: &[u8]) -> Result<Payload> {
        rmp_serde::from_slice(bytes).map_err(|e| StorageError::Codec(Box::new(e)))
    }

    /// Encode a payload into the bytes this storage stores.
    pub fn encode(payload: &Payload) -> Result<Vec<u8>> {
        rmp_serde::to_vec(payload).map_err(|e| StorageError::Codec(Box::new(e)))
    }

    fn tracker_entries(&self) -> usize {
        (self.tracker.len() - TRACKER_HEADER_LEN) / ENTRY_LEN
    }

    /// The pointer `tracker.dat` holds for `offset`.
    fn mapped_pointer(&self, offset: PointOffset) -> Result<Option<Pointer>> {
        let at = TRACKER_HEADER_LEN + offset as usize * ENTRY_LEN;
        let bytes = self.tracker.bytes();
        let Some(flags) = read_u32(bytes, at + 12) else {
            return Ok(None); // past the end: never written
        };
        if flags == 0 {
            if bytes[at..at + 12].iter().any(|&b| b != 0) {
                return Err(StorageError::corrupted(
                    self.tracker.path(),
                    format!("entry {offset} has no flags but a pointer"),
                ));
            }
            return Ok(None);
        }
        if flags != FLAG_PRESENT {
            return Err(StorageError::corrupted(
                self.tracker.path(),
                format!("entry {offset} has unknown flags {flags:#x}"),
            ));
        }
        let field = |i: usize| read_u32(bytes, at + 4 * i).unwrap_or(0);
        Ok(Some(Pointer {
            page: field(0),
            block: field(1),
            len: field(2),
        }))
    }

    /// The current pointer of `offset` (overlay first).
    #[inline]
    fn pointer(&self, offset: PointOffset) -> Result<Option<Pointer>> {
        if !self.pending.is_empty() {
            if let Some(p) = self.pending.get(&offset) {
                return Ok(*p);
            }
        }
        self.mapped_pointer(offset)
    }

    fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.block_size)
    }

    fn mark_bits(&mut self, start: usize, len: usize, used: bool) {
        for b in start..start + len {
            let (w, bit) = (b / 64, b % 64);
            if used {
                self.used[w] |= 1 << bit;
            } else {
                self.used[w] &= !(1 << bit);
            }
        }
        let rw = self.region_blocks / 64;
        let (first_r, last_r) = (
            start / self.region_blocks,
            (start + len - 1) / self.region_blocks,
        );
        for r in first_r..=last_r {
            self.gaps[r] = region_gap(&self.used[r * rw..(r + 1) * rw]);
        }
        for g in (start / 64 / GROUP_WORDS)..=((start + len - 1) / 64 / GROUP_WORDS) {
            self.bitmask_dirty.insert(g);
        }
    }

    /// First free run of `k` blocks inside one page, as a global block index.
    fn find_free(&self, k: usize) -> Option<usize> {
        let r_len = self.region_blocks;
        let rw = r_len / 64;
        for page in &self.pages {
            if page.blocks < k {
                continue;
            }
            let (r0, r1) = (page.base / r_len, (page.base + page.blocks) / r_len);
            let mut run_start = page.base;
            let mut run = 0usize;
            for r in r0..r1 {
                let g = self.gaps[r];
                if run + g.leading as usize >= k {
                    return Some(run_start);
                }
                if g.max as usize >= k {
                    return find_run(&self.used[r * rw..(r + 1) * rw], k).map(|s| r * r_len + s);
                }
                if g.leading as usize == r_len {
                    run += r_len;
                } else {
                    run = g.trailing as usize;
                    run_start = (r + 1) * r_len - run;
                }
            }
        }
        None
    }

    fn add_page(&mut self, blocks: usize) -> Result<()> {
        let index = self.pages.len();
        let header = PageHeader {
            prefix: FilePrefix::new::<PageHeader>(PAGE_MAGIC, FORMAT_VERSION),
            page_index: index as u32,
            block_size: self.block_size as u32,
            blocks: blocks as u32,
            reserved: 0,
        };
        let file = MmapFileMut::create(
            &page_path(&self.dir, index),
            (PAGE_HEADER_LEN + blocks * self.block_size) as u64,
            bytemuck::bytes_of(&header),
        )?;
        if self.populate {
            file.populate();
        }
        let base = self.used.len() * 64;
        self.used.resize(self.used.len() + blocks / 64, 0);
        let full = Gap {
            leading: self.region_blocks as u32,
            trailing: self.region_blocks as u32,
            max: self.region_blocks as u32,
        };
        self.gaps
            .resize(self.gaps.len() + blocks / self.region_blocks, full);
        self.pages.push(Page {
            file,
            base,
            blocks,
            dirty: None,
        });
        Ok(())
    }

    /// Allocate a cell for `bytes`, copy them in, return its pointer.
    fn write_cell(&mut self, bytes: &[u8]) -> Result<Pointer> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| StorageError::InvalidArgument("payload larger than 4 GiB".into()))?;
        let k = self.blocks_for(bytes.len());
        let start = match self.find_free(k) {
            Some(s) => s,
            None => {
                let blocks = if k <= self.page_blocks {
                    self.page_blocks
                } else {
                    k.div_ceil(self.region_blocks) * self.region_blocks
                };
                if blocks > u32::MAX as usize {
                    return Err(StorageError::InvalidArgument("payload too large".into()));
                }
                self.add_page(blocks)?;
                self.pages.last().map_or(0, |p| p.base)
            }
        };
        let page_index = self
            .pages
            .iter()
            .rposition(|p| p.base <= start)
            .ok_or_else(|| StorageError::corrupted(&self.dir, "allocation outside every page"))?;
        self.mark_bits(start, k, true);
        let bs = self.block_size;
        let page = &mut self.pages[page_index];
        let block = start - page.base;
        let at = PAGE_HEADER_LEN + block * bs;
        let path = page.file.path().to_path_buf();
        page.file
            .bytes_mut()
            .get_mut(at..at + bytes.len())
            .ok_or_else(|| StorageError::corrupted(&path, "cell outside the page"))?
            .copy_from_slice(bytes);
        page.dirty = Some(match page.dirty {
            None => (at, at + bytes.len()),
            Some((a, b)) => (a.min(at), b.max(at + bytes.len())),
        });
        Ok(Pointer {
            page: page_index as u32,
            block: block as u32,
            len,
        })
    }

    fn global_cell(&self, p: Pointer) -> Option<(usize, usize)> {
        let page = self.pages.get(p.page as usize)?;
        let k = self.blocks_for(p.len as usize);
        (p.block as usize + k <= page.blocks).then_some((page.base + p.block as usize, k))
    }

    /// Point `offset` at `new`, freeing or queueing the old cell.
    fn replace(&mut self, offset: PointOffset, new: Option<Pointer>) -> Result<()> {
        let previous = self.pending.insert(offset, new);
        let old = match previous {
            // Changed since the last flush: the old cell was never on disk.
            Some(old) => {
                if let Some(p) = old {
                    if let Some((s, k)) = self.global_cell(p) {
                        self.mark_bits(s, k, false);
                    }
                }
                old
            }
            // First change since the last flush: free after the tracker flush.
            None => {
                let old = self.mapped_pointer(offset)?;
                if let Some(p) = old {
                    if let Some(cell) = self.global_cell(p) {
                        self.pending_frees.push(cell);
                    }
                }
                old
            }
        };
        self.count = self.count + usize::from(new.is_some()) - usize::from(old.is_some());
        Ok(())
    }

    fn write_bitmask_groups(&mut self) -> Result<()> {
        for &g in &self.bitmask_dirty {
            let from = g * GROUP_WORDS;
            let to = ((g + 1) * GROUP_WORDS).min(self.used.len());
            if from >= to {
                continue;
            }
            let mut buf = Vec::with_capacity((to - from) * 8);
            for w in &self.used[from..to] {
                buf.extend_from_slice(&w.to_le_bytes());
            }
            self.bitmask_file
                .write_all_at(&buf, (BITMASK_HEADER_LEN + from * 8) as u64)
                .at(&self.bitmask_path)?;
        }
        self.bitmask_dirty.clear();
        Ok(())
    }

    fn write_tracker(&mut self) -> Result<()> {
        let Some(&max) = self.pending.keys().max() else {
            return Ok(());
        };
        let needed = max as usize + 1;
        if self.tracker_entries() < needed {
            let mut n = self.tracker_entries().max(MIN_TRACKER_ENTRIES);
            while n < needed {
                n *= 2;
            }
            self.tracker
                .resize((TRACKER_HEADER_LEN + n * ENTRY_LEN) as u64)?;
        }
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        let bytes = self.tracker.bytes_mut();
        for (&o, p) in &self.pending {
            let at = TRACKER_HEADER_LEN + o as usize * ENTRY_LEN;
            let mut entry = [0u8; ENTRY_LEN];
            if let Some(p) = p {
                entry[0..4].copy_from_slice(&p.page.to_le_bytes());
                entry[4..8].copy_from_slice(&p.block.to_le_bytes());
                entry[8..12].copy_from_slice(&p.len.to_le_bytes());
                entry[12..16].copy_from_slice(&FLAG_PRESENT.to_le_bytes());
            }
            bytes[at..at + ENTRY_LEN].copy_from_slice(&entry);
            lo = lo.min(at);
            hi = hi.max(at + ENTRY_LEN);
        }
        self.tracker.flush_range(lo, hi - lo)?;
        self.pending.clear();
        // Then the entry count the flushed pointers cover (a header on disk
        // vouches for the entries it counts). One `pwrite`, so a kill never
        // leaves half a header in the page cache.
        let covered = (self.tracker.len() - TRACKER_HEADER_LEN) / ENTRY_LEN;
        let header = tracker_header(covered as u64);
        let path = self.tracker.path().to_path_buf();
        self.tracker
            .file()
            .write_all_at(bytemuck::bytes_of(&header), 0)
            .at(&path)?;
        self.tracker.flush_range(0, TRACKER_HEADER_LEN)?;
        Ok(())
    }

    /// Offsets that may hold a value are below this bound.
    fn offset_bound(&self) -> usize {
        let pending_max = self.pending.keys().max().map_or(0, |&m| m as usize + 1);
        self.tracker_entries().max(pending_max)
    }
}

/// Gap summary of one region's bitmask words.
fn region_gap(words: &[u64]) -> Gap {
    let mut leading: Option<usize> = None;
    let (mut run, mut max) = (0usize, 0usize);
    for &w in words {
        if w == 0 {
            run += 64;
            continue;
        }
        let mut pos = 0usize;
        while pos < 64 {
            let rest = w >> pos;
            if rest == 0 {
                run += 64 - pos;
                break;
            }
            let zeros = rest.trailing_zeros() as usize;
            run += zeros;
            leading.get_or_insert(run);
            max = max.max(run);
            run = 0;
            pos += zeros;
            pos += (!(w >> pos)).trailing_zeros() as usize;
        }
    }
    let total = words.len() * 64;
    max = max.max(run);
    Gap {
        leading: leading.unwrap_or(total) as u32,
        trailing: run as u32,
        max: max as u32,
    }
}

/// Start bit of the first free run of at least `k` bits in `words`.
fn find_run(words: &[u64], k: usize) -> Option<usize> {
    let (mut run, mut start) = (0usize, 0usize);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            run += 64;
            if run >= k {
                return Some(start);
            }
            continue;
        }
        let mut pos = 0usize;
        while pos < 64 {
            let rest = w >> pos;
            if rest == 0 {
                run += 64 - pos;
                break;
            }
            let zeros = rest.trailing_zeros() as usize;
            if run + zeros >= k {
                return Some(start);
            }
            pos += zeros;
            pos += (!(w >> pos)).trailing_zeros() as usize;
            run = 0;
            start = i * 64 + pos;
        }
        if run >= k {
            return Some(start);
        }
    }
    None
}

impl PayloadStorageRead for ChunkedPayloadStorage {
    fn get(&self, offset: PointOffset) -> Result<Payload> {
        match self.get_raw(offset)? {
            Some(bytes) => Self::decode(bytes),
            None => Ok(Payload::new()),
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()> {
        let bound = self.offset_bound().min(u32::MAX as usize + 1);
        for o in 0..bound {
            let o = o as PointOffset;
            if let Some(bytes) = self.get_raw(o)? {
                if !f(o, Self::decode(bytes)?)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.count
    }

    fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

impl PayloadStorage for ChunkedPayloadStorage {
    fn clear(&mut self, offset: PointOffset) -> Result<Payload> {
        let old = self.get(offset)?;
        if self.pointer(offset)?.is_some() {
            self.replace(offset, None)?;
        }
        Ok(old)
    }

    /// Pages, then bitmask, then tracker; then the deferred frees.
    fn flush(&mut self) -> Result<()> {
        for page in &mut self.pages {
            if let Some((a, b)) = page.dirty.take() {
                page.file.flush_range(a, b - a)?;
            }
        }
        let bitmask_changed = !self.bitmask_dirty.is_empty();
        self.write_bitmask_groups()?;
        if bitmask_changed {
            self.bitmask_file.sync_data().at(&self.bitmask_path)?;
        }
        self.write_tracker()?;
        // The replaced cells are no longer referenced by anything durable.
        for (s, k) in std::mem::take(&mut self.pending_frees) {
            self.mark_bits(s, k, false);
        }
        // Written now (so a clean shutdown leaks nothing), durable at the
        // next flush's fdatasync at the latest.
        self.write_bitmask_groups()
    }
}

impl AppendablePayloadStorage for ChunkedPayloadStorage {
    fn overwrite(&mut self, offset: PointOffset, payload: &Payload) -> Result<()> {
        if payload.is_empty() {
            self.clear(offset)?;
            return Ok(());
        }
        let bytes = Self::encode(payload)?;
        let p = self.write_cell(&bytes)?;
        self.replace(offset, Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_gap(bits: &[bool]) -> Gap {
        let n = bits.len();
        let leading = bits.iter().position(|&b| b).unwrap_or(n);
        let trailing = bits.iter().rev().position(|&b| b).unwrap_or(n);
        let (mut max, mut run) = (0, 0);
        for &b in bits {
            run = if b { 0 } else { run + 1 };
            max = max.max(run);
        }
        Gap {
            leading: leading as u32,
            trailing: trailing as u32,
            max: max as u32,
        }
    }

    fn naive_find(bits: &[bool], k: usize) -> Option<usize> {
        (0..=bits.len().saturating_sub(k))
            .find(|&s| s + k <= bits.len() && bits[s..s + k].iter().all(|b| !b))
    }

    #[test]
    fn gap_and_run_search_match_naive() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for round in 0..2000 {
            let words: Vec<u64> = (0..3)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match round % 4 {
                        0 => x,
                        1 => x & (x >> 3) & (x >> 5),
                        2 => x | (x >> 1),
                        _ => 0,
                    }
                })
                .collect();
            let bits: Vec<bool> = (0..192)
                .map(|i| words[i / 64] >> (i % 64) & 1 == 1)
                .collect();
            assert_eq!(region_gap(&words), naive_gap(&bits), "round {round}");
            for k in [1, 2, 3, 7, 30, 64, 65, 100, 192, 193] {
                assert_eq!(
                    find_run(&words, k),
                    naive_find(&bits, k),
                    "round {round} k {k}"
                );
            }
        }
    }
}
