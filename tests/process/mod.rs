//! Helpers for the tests that damage segment directories or kill child
//! processes: copying a directory tree, and the path that re-executes the
//! running test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Copy the directory tree `from` to `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The running test binary, for re-executing it as a child. `/proc/self/exe`
/// still executes this binary if a concurrent build replaced the file on
/// disk (then `current_exe` names a deleted path).
pub fn self_exe() -> PathBuf {
    if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap()
    }
}
