//! Mapping files into memory.
//!
//! vecseg's contract with the files it maps: they live in a directory owned
//! by one vecseg process, are only changed through vecseg, and are never
//! truncated while mapped (storages grow files only before mapping them, and
//! remap after a resize). That contract is what makes the `unsafe` map calls
//! below sound.

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapMut, MmapOptions};
use vecseg_traits::{IoResultExt, Result};

/// Map the whole of `file` read-only.
pub fn map_read(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: the file is owned by this vecseg storage and, per the module
    // contract, not truncated or modified behind our back while mapped; the
    // mapping is read-only so we never create aliasing `&mut`.
    unsafe { MmapOptions::new().map(file) }.at(path)
}

/// Map the whole of `file` read-write (shared, so writes reach the file).
pub fn map_write(file: &File, path: &Path) -> Result<MmapMut> {
    // SAFETY: as for `map_read`; in addition the returned `MmapMut` is the
    // only writable mapping of this file in the process (each storage maps
    // its files once for writing), so `&mut [u8]` views do not alias.
    unsafe { MmapOptions::new().map_mut(file) }.at(path)
}
