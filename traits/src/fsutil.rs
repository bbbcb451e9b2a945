//! Small filesystem helpers every persistent backend needs: atomic file
//! replacement, directory fsync, and checksummed small files.
//!
//! ## Sealed files
//!
//! Small metadata files (`segment.json`, a storage's `config.json`) are
//! written [`seal`]ed: the content, then one last line
//! `crc32c 0123abcd\n` holding the CRC-32C of every byte before that line
//! (lower-case hex). [`unseal`] checks it, so a flipped byte, a truncation
//! or appended garbage is an error naming the file. A file without the line
//! (written by an older build) is accepted as it is.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoResultExt, Result, StorageError};

/// Write `bytes` to `path` atomically: write `path.tmp`, fsync it, rename it
/// over `path`, fsync the directory. A crash leaves either the old or the new
/// file, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".to_string(),
    });
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Marker that starts the checksum line of a sealed file.
const SEAL_MARK: &[u8] = b"crc32c ";
/// Length of the checksum line: marker, 8 hex digits, newline.
const SEAL_LINE: usize = 7 + 8 + 1;

/// `content` (a JSON object) followed by its checksum line (see the module docs).
pub fn seal(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + SEAL_LINE + 1);
    out.extend_from_slice(content);
    if !content.ends_with(b"\n") {
        out.push(b'\n');
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(format!("crc32c {crc:08x}\n").as_bytes());
    out
}

/// The content of sealed file `path` (read as `bytes`), checked against its
/// checksum line. A file without one is returned whole if it ends like a
/// JSON object (`}`), as files of older builds do; otherwise it is corrupted.
pub fn unseal<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    if let Some(start) = bytes.len().checked_sub(SEAL_LINE) {
        let line = &bytes[start..];
        if line.starts_with(SEAL_MARK) && line.ends_with(b"\n") {
            let hex = std::str::from_utf8(&line[SEAL_MARK.len()..SEAL_LINE - 1]).ok();
            let content = &bytes[..start];
            return match hex.and_then(|h| u32::from_str_radix(h, 16).ok()) {
                Some(crc) if crc == crc32c::crc32c(content) => Ok(content),
                Some(_) => Err(StorageError::corrupted(path, "checksum mismatch")),
                None => Err(StorageError::corrupted(path, "damaged checksum line")),
            };
        }
    }
    if bytes.trim_ascii_end().last() == Some(&b'}') {
        Ok(bytes)
    } else {
        Err(StorageError::corrupted(
            path,
            "missing or damaged checksum line (truncated, or bytes appended)",
        ))
    }
}

/// [`write_atomic`] of [`seal`]`(content)`.
pub fn write_sealed(path: &Path, content: &[u8]) -> Result<()> {
    write_atomic(path, &seal(content))
}

/// Read sealed file `path` and return its checked content.
pub fn read_sealed(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(path).at(path)?;
    let len = unseal(path, &bytes)?.len();
    let mut bytes = bytes;
    bytes.truncate(len);
    Ok(bytes)
}

/// fsync a directory so renames and new files in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Total size in bytes of the regular files under `dir` (recursively).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_tmp() {
        let dir = std::env::temp_dir().join(format!("vecseg-fsutil-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.join("state.json.tmp").exists());
        assert_eq!(dir_size(&dir), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sealed_files_detect_flips_truncation_and_garbage() {
        let p = Path::new("x.json");
        let content = b"{\"a\": 1}\n";
        let sealed = seal(content);
        assert_eq!(unseal(p, &sealed).unwrap(), content);
        // Unsealed (older) content passes as it is.
        assert_eq!(unseal(p, content).unwrap(), content);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x04;
            assert!(unseal(p, &bad).is_err(), "flip at byte {i} not detected");
        }
        for cut in 1..SEAL_LINE {
            let r = unseal(p, &sealed[..sealed.len() - cut]);
            assert!(r.is_err(), "cut of {cut} bytes not detected");
        }
        let mut more = sealed.clone();
        more.extend_from_slice(b"garbage");
        assert!(unseal(p, &more).is_err());
    }
}
