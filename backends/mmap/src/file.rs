//! Safe handles over mapped files: [`MmapFile`] (read-only) and
//! [`MmapFileMut`] (read-write, resizable). They own the `File` and the
//! mapping and expose plain byte slices; typed views go through
//! [`crate::header::cast_slice`].

use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{IoResultExt, Result};

use crate::advice::{self, Advice};
use crate::raw;

/// Evict `path` from the OS page cache (`posix_fadvise(DONTNEED)`), for
/// cold-read measurements of storages that do not map their files.
pub fn evict_file_from_page_cache(path: &Path) -> Result<()> {
    let file = File::open(path).at(path)?;
    raw::advice::evict_file_cache(&file, path)
}

/// Create `path` durably: write `path` + `.tmp` through `fill`, fsync it,
/// rename it over `path` and fsync the directory. A crash leaves either no
/// file or the complete one.
pub(crate) fn write_new_file(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let file = File::create(&tmp).at(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w).at(&tmp)?;
        let file = w.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
        file.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// A read-only mapping of a whole file.
#[derive(Debug)]
pub struct MmapFile {
    path: PathBuf,
    file: File,
    map: Mmap,
}

impl MmapFile {
    /// Map `path` read-only with `advice` (callers resolve an
    /// [`AdviceSetting`](crate::advice::AdviceSetting) first).
    pub fn open(path: &Path, advice: Advice) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let map = raw::map::map_read(&file, path)?;
        let f = MmapFile {
            path: path.to_path_buf(),
            file,
            map,
        };
        f.advise(advice);
        Ok(f)
    }

    /// The mapped bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Apply `madvise` (failures are logged).
    pub fn advise(&self, advice: Advice) {
        advice::apply(&self.map, advice, &self.path);
    }

    /// Fault every page in. Huge pages are asked for first where the kernel maps file pages
    /// that way (see `advice::populate_huge`).
    pub fn populate(&self) {
        advice::populate_huge(&self.map, &self.map, &self.path);
    }

    /// Drop this mapping's pages and evict the file from the page cache, so
    /// the next read comes from disk (one page per fault: huge pages asked
    /// for by [`populate`](Self::populate) are turned off first).
    pub fn clear_cache(&self) -> Result<()> {
        advice::small_pages(&self.map, &self.path);
        raw::advice::drop_mapped_pages(&self.map, &self.path)?;
        raw::advice::evict_file_cache(&self.file, &self.path)
    }

    /// The open file (for positioned reads such as io_uring).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether the page holding byte `at` is in memory (`mincore`).
    pub fn is_resident(&self, at: usize) -> bool {
        raw::advice::page_is_resident(&self.map, at)
    }

    /// How many of the file's pages are in memory (`mincore`).
    pub fn resident_pages(&self) -> usize {
        raw::advice::resident_page_count(&self.map)
    }
}

/// A read-write shared mapping of a whole file that can grow.
#[derive(Debug)]
pub struct MmapFileMut {
    path: PathBuf,
    file: File,
    map: MmapMut,
}

impl MmapFileMut {
    /// Map an existing file read-write.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .at(path)?;
        let map = raw::map::map_write(&file, path)?;
        Ok(MmapFileMut {
            path: path.to_path_buf(),
            file,
            map,
        })
    }

    /// Create `path` with `len` zero bytes followed by nothing else, durably:
    /// write `path.tmp`, set its length, fsync, rename, fsync the directory.
    /// `init` may fill the start of the file (e.g. a header) before the rename.
    pub fn create(path: &Path, len: u64, init: &[u8]) -> Result<Self> {
        let tmp = path.with_extension("tmp");
        {
            let f = File::create(&tmp).at(&tmp)?;
            f.set_len(len.max(init.len() as u64)).at(&tmp)?;
            use std::os::unix::fs::FileExt;
            f.write_all_at(init, 0).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, path).at(path)?;
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
        Self::open(path)
    }

    /// The mapped bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped bytes, writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Write dirty pages back and wait for them (`msync`).
    pub fn flush(&self) -> Result<()> {
        self.map.flush().at(&self.path)
    }

    /// `msync` just `range` of bytes.
    pub fn flush_range(&self, offset: usize, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(offset, len).at(&self.path)
    }

    /// Grow (or shrink) the file to `len` bytes and remap it. Flushes first.
    pub fn resize(&mut self, len: u64) -> Result<()> {
        self.flush()?;
        self.file.set_len(len).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        self.map = raw::map::map_write(&self.file, &self.path)?;
        Ok(())
    }

    /// Apply `madvise` (failures are logged).
    pub fn advise(&self, advice: Advice) {
        advice::apply(&self.map, advice, &self.path);
    }

    /// Fault every page in.
    pub fn populate(&self) {
        advice::populate(&self.map, &self.map, &self.path);
    }

    /// Write dirty pages back, drop this mapping's pages and evict the file
    /// from the page cache, so the next read comes from disk.
    pub fn clear_cache(&self) -> Result<()> {
        self.flush()?;
        raw::advice::drop_mapped_pages_mut(&self.map, &self.path)?;
        raw::advice::evict_file_cache(&self.file, &self.path)
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}
