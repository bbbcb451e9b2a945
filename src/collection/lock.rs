//! [`DirLock`]: an exclusive OS file lock on a directory, so two writers
//! (two processes, or two opens in one process) never map the same files
//! writable at once.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on `<dir>/.lock` (through
//! [`std::fs::File::try_lock`]). It belongs to the open file, so it is
//! released when the [`DirLock`] is dropped and by the kernel when the
//! process dies, even by SIGKILL: a crash never leaves a stale lock. The
//! lock file itself stays; its contents mean nothing.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use vecseg_traits::{IoResultExt, Result, StorageError};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Lock `dir` (which must exist); [`StorageError::Locked`] when it is
    /// locked already.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(StorageError::io(&path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(&e, StorageError::Locked { path } if path == first.path()));
        assert!(e.to_string().contains("locked"), "{e}");
        drop(first);
        let again = DirLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(matches!(
            DirLock::acquire(&dir.path().join("missing")),
            Err(StorageError::Io { .. })
        ));
    }
}
