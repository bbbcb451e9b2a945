//! Helpers shared by the chunked storages: JSON config files, directory
//! setup and header checks.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vecseg_traits::fsutil::{read_sealed, write_sealed};
use vecseg_traits::{IoResultExt, Result, StorageError};

/// Read a sealed JSON file (see `vecseg_traits::fsutil::seal`) and parse
/// it; a checksum mismatch or bad JSON is `Corrupted` naming the file.
pub(crate) fn read_json<C: DeserializeOwned>(path: &Path) -> Result<C> {
    let bytes = read_sealed(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StorageError::corrupted(path, format!("invalid JSON: {e}")))
}

/// Write a sealed JSON file atomically.
pub(crate) fn write_json<C: Serialize>(path: &Path, value: &C) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Codec(Box::new(e)))?;
    write_sealed(path, &bytes)
}

/// `UnsupportedVersion` unless `found == supported`.
pub(crate) fn check_version(path: &Path, found: u32, supported: u32) -> Result<()> {
    if found == supported {
        Ok(())
    } else {
        Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported,
        })
    }
}

/// Create `dir` (and parents) for a new storage; refuse when `marker`, the
/// storage's first file, already exists there.
pub(crate) fn prepare_new_dir(dir: &Path, marker: &str) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let m = dir.join(marker);
    if m.exists() {
        return Err(StorageError::InvalidArgument(format!(
            "{} already holds a storage ({} exists)",
            dir.display(),
            m.display()
        )));
    }
    Ok(())
}

/// Read a little-endian `u64` at `at` of `bytes` (`None` when out of range).
#[inline]
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// Read a little-endian `u32` at `at` of `bytes` (`None` when out of range).
#[inline]
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Some(u32::from_le_bytes(a))
}
