//! Page-cache control that needs raw syscalls: dropping a mapping's pages
//! and asking the kernel to evict a file from the page cache.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use memmap2::{Mmap, MmapMut, UncheckedAdvice};
use vecseg_traits::{Result, StorageError};

/// Drop the pages of a read-only mapping from this process's page tables.
/// The next access faults them in again from the page cache (or disk).
pub fn drop_mapped_pages(map: &Mmap, path: &Path) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    // SAFETY: `map` is a shared, read-only, file-backed mapping. For such a
    // mapping MADV_DONTNEED only discards page-table entries; later reads
    // see the file's contents again, so no Rust reference observes changed
    // or zeroed memory.
    unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) }
        .map_err(|e| StorageError::io(path, e))
}

/// Drop the pages of a shared read-write mapping from this process's page
/// tables. Dirty pages are not lost: they live in the page cache (the
/// mapping is `MAP_SHARED`), so later reads see the same bytes.
pub fn drop_mapped_pages_mut(map: &MmapMut, path: &Path) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    // SAFETY: `map` is a shared, file-backed mapping. MADV_DONTNEED on a
    // MAP_SHARED mapping only removes page-table entries; the pages (dirty or
    // not) stay in the page cache and the next access maps the same
    // contents, so no reference ever observes different bytes.
    unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) }
        .map_err(|e| StorageError::io(path, e))
}

/// Ask the kernel to drop `file`'s pages from the page cache
/// (`posix_fadvise(POSIX_FADV_DONTNEED)`). Dirty pages must be flushed first
/// or they stay cached.
pub fn evict_file_cache(file: &File, path: &Path) -> Result<()> {
    // SAFETY: plain syscall on a file descriptor we own for the duration of
    // the call; it does not touch process memory.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(StorageError::io(
            path,
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    Ok(())
}

/// The system page size from `sysconf(_SC_PAGESIZE)` (4096 if it fails).
pub fn system_page_size() -> usize {
    // SAFETY: sysconf takes no pointers and only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

/// Whether the page holding byte `at` of `map` is resident in memory
/// (`mincore`); `false` when `at` lies outside the mapping or the call
/// fails.
pub fn page_is_resident(map: &Mmap, at: usize) -> bool {
    if at >= map.len() {
        return false;
    }
    let page = system_page_size();
    let start = (at / page) * page;
    let mut status = 0u8;
    // SAFETY: `map.as_ptr()` is page-aligned (mappings start on a page),
    // so `start` is a page-aligned address inside the live mapping, and
    // one page from it is within the mapping's last page. mincore writes
    // one byte per page of the range: exactly the one `status` provides.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(start) as *mut libc::c_void,
            1,
            &mut status as *mut u8 as *mut libc::c_uchar,
        )
    };
    rc == 0 && status & 1 == 1
}

/// How many pages of `map` are resident in memory (one `mincore` over the
/// whole mapping); 0 when the mapping is empty or the call fails.
pub fn resident_page_count(map: &Mmap) -> usize {
    if map.is_empty() {
        return 0;
    }
    let pages = map.len().div_ceil(system_page_size());
    let mut status = vec![0u8; pages];
    // SAFETY: `map.as_ptr()` is page-aligned and `map.len()` bytes from it
    // lie inside the live mapping; mincore writes one byte per page of that
    // range, `pages` bytes, exactly the length of `status`.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            status.as_mut_ptr() as *mut libc::c_uchar,
        )
    };
    if rc != 0 {
        return 0;
    }
    status.iter().filter(|s| **s & 1 == 1).count()
}
