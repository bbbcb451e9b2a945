//! File headers and checked casts of mapped bytes.
//!
//! Every binary file vecseg maps starts with a [`FilePrefix`]: an 8-byte
//! magic, a little-endian `u32` format version and the `u32` byte length of
//! the full header. A file's own header is a `#[repr(C)]` `Pod` struct whose
//! first field is the prefix. [`read_header`] validates magic, version and
//! length before anything else of the file is looked at.

use std::path::Path;

use bytemuck::{Pod, Zeroable};
use vecseg_traits::{Result, StorageError};

/// The common first 16 bytes of every vecseg binary file.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct FilePrefix {
    /// File-kind magic, e.g. `*b"VSMATRIX"`.
    pub magic: [u8; 8],
    /// Format version of this file kind.
    pub format_version: u32,
    /// Byte length of the whole header struct.
    pub header_len: u32,
}

impl FilePrefix {
    /// The prefix for a header of type `H`.
    pub fn new<H: Pod>(magic: [u8; 8], format_version: u32) -> Self {
        FilePrefix {
            magic,
            format_version,
            header_len: std::mem::size_of::<H>() as u32,
        }
    }
}

/// Read and validate a header of type `H` (which must start with a
/// [`FilePrefix`]) from the start of `bytes`.
pub fn read_header<H: Pod>(path: &Path, bytes: &[u8], magic: [u8; 8], version: u32) -> Result<H> {
    let size = std::mem::size_of::<H>();
    if bytes.len() < std::mem::size_of::<FilePrefix>() {
        return Err(StorageError::corrupted(
            path,
            format!("file is {} bytes, too short for a header", bytes.len()),
        ));
    }
    let prefix: FilePrefix =
        bytemuck::pod_read_unaligned(&bytes[..std::mem::size_of::<FilePrefix>()]);
    if prefix.magic != magic {
        return Err(StorageError::corrupted(
            path,
            format!(
                "wrong magic {:?}, expected {:?}",
                String::from_utf8_lossy(&prefix.magic),
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    if prefix.format_version != version {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: prefix.format_version,
            supported: version,
        });
    }
    if prefix.header_len as usize != size {
        return Err(StorageError::corrupted(
            path,
            format!("header length {} (expected {size})", prefix.header_len),
        ));
    }
    if bytes.len() < size {
        return Err(StorageError::corrupted(
            path,
            "file truncated inside its header",
        ));
    }
    Ok(bytemuck::pod_read_unaligned(&bytes[..size]))
}

/// A 32-byte header that carries one `u64` value and a CRC-32C of itself:
/// prefix (16 bytes), `value` (u64 at 16), `crc` (u32 at 24: CRC-32C of
/// bytes 0..24), 4 reserved zero bytes. Used where a small header vouches
/// for the rest of its file (a committed length, a count). Write it with
/// one `pwrite` so a kill never leaves half of it behind.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct CheckedHeader {
    /// Magic, format version, header length (32).
    pub prefix: FilePrefix,
    /// The value the header carries.
    pub value: u64,
    /// CRC-32C of the 24 bytes before it.
    pub crc: u32,
    /// Zero.
    pub reserved: u32,
}

impl CheckedHeader {
    /// A header of `magic` / `version` carrying `value`.
    pub fn new(magic: [u8; 8], version: u32, value: u64) -> Self {
        let mut h = CheckedHeader {
            prefix: FilePrefix::new::<CheckedHeader>(magic, version),
            value,
            crc: 0,
            reserved: 0,
        };
        h.crc = crc32c::crc32c(&bytemuck::bytes_of(&h)[..24]);
        h
    }

    /// Read and check the header at the start of `bytes`; returns its
    /// value. With `legacy_zero`, a header whose CRC and reserved word are
    /// both 0 (written by a build that had no CRC there) passes unchecked.
    pub fn read(
        path: &Path,
        bytes: &[u8],
        magic: [u8; 8],
        version: u32,
        legacy_zero: bool,
    ) -> Result<u64> {
        let h: CheckedHeader = read_header(path, bytes, magic, version)?;
        let legacy = legacy_zero && h.crc == 0 && h.reserved == 0;
        if !legacy && crc32c::crc32c(&bytes[..24]) != h.crc {
            return Err(StorageError::corrupted(path, "header checksum mismatch"));
        }
        Ok(h.value)
    }
}

/// View `bytes` as `&[T]`, checking length and alignment.
pub fn cast_slice<'a, T: Pod>(path: &Path, bytes: &'a [u8]) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        StorageError::corrupted(
            path,
            format!("cannot view data as {}: {e}", std::any::type_name::<T>()),
        )
    })
}

/// View `bytes` as `&mut [T]`, checking length and alignment.
pub fn cast_slice_mut<'a, T: Pod>(path: &Path, bytes: &'a mut [u8]) -> Result<&'a mut [T]> {
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
        StorageError::corrupted(
            path,
            format!("cannot view data as {}: {e}", std::any::type_name::<T>()),
        )
    })
}

/// Round `n` up to a multiple of `align` (a power of two).
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
    struct TestHeader {
        prefix: FilePrefix,
        count: u64,
    }

    #[test]
    fn header_checks_magic_version_and_length() {
        let p = Path::new("x.dat");
        let h = TestHeader {
            prefix: FilePrefix::new::<TestHeader>(*b"TESTFILE", 3),
            count: 9,
        };
        let bytes = bytemuck::bytes_of(&h).to_vec();
        assert_eq!(
            read_header::<TestHeader>(p, &bytes, *b"TESTFILE", 3).unwrap(),
            h
        );
        assert!(matches!(
            read_header::<TestHeader>(p, &bytes, *b"OTHERMAG", 3),
            Err(StorageError::Corrupted { .. })
        ));
        assert!(matches!(
            read_header::<TestHeader>(p, &bytes, *b"TESTFILE", 4),
            Err(StorageError::UnsupportedVersion { found: 3, .. })
        ));
        assert!(matches!(
            read_header::<TestHeader>(p, &bytes[..20], *b"TESTFILE", 3),
            Err(StorageError::Corrupted { .. })
        ));
        assert!(matches!(
            read_header::<TestHeader>(p, &bytes[..5], *b"TESTFILE", 3),
            Err(StorageError::Corrupted { .. })
        ));
    }

    #[test]
    fn casts_check_alignment_and_length() {
        let words = [0u64; 4];
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        assert_eq!(cast_slice::<f32>(Path::new("a"), bytes).unwrap().len(), 8);
        assert!(cast_slice::<f32>(Path::new("a"), &bytes[1..5]).is_err());
        assert!(cast_slice::<f32>(Path::new("a"), &bytes[..6]).is_err());
        assert_eq!(align_up(13, 8), 16);
    }
}
