//! `quantized.meta`: which codec made the codes next to it, for which
//! vectors, with which trained parameters.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "VQMT"
//! 4       2     format version u16 LE (3)
//! 6       2     codec name length n u16 LE
//! 8       n     codec name, UTF-8 (Codec::NAME)
//! 8+n     4     dim u32 LE
//! 12+n    1     distance name length d
//! 13+n    d     distance name ("cosine", "dot", "euclid", "manhattan")
//! 13+n+d  4     code length in bytes u32 LE
//! 17+n+d  4     parameter length p u32 LE
//! 21+n+d  p     parameters (Codec::params, little-endian)
//! 21+n+d+p 8    (version ≥ 2) column end u64 LE: slots 0..end are stored as
//!               column groups of 32 codes (a multiple of 32; 0 = all rows;
//!               see `codec::columns`)
//! 29+n+d+p 4    CRC-32C of every byte before it, u32 LE
//! ```
//!
//! Version 1 (no column end; every code a row) and 2 are still read,
//! except for codecs whose code layout changed since
//! ([`Codec::LAYOUT_VERSION`]: binary-2 codes before version 3 kept signs
//! and magnitudes in separate bit vectors), which are refused with an
//! error naming the file rather than misread.
//! Written with `write_atomic` (temp file, fsync, rename, directory fsync).

use std::path::Path;

use vecseg_traits::fsutil::write_atomic;
use vecseg_traits::{Distance, IoResultExt, Result, StorageError};

use crate::codec::{Codec, ParamReader};

/// File name of the meta file inside a quantized storage's directory.
pub const META_FILE: &str = "quantized.meta";
/// Magic bytes.
pub const MAGIC: [u8; 4] = *b"VQMT";
/// Format version this build writes (it reads 1 to 3).
pub const FORMAT_VERSION: u16 = 3;

/// Write the meta file of `codec` into `dir`, whose codes are column
/// groups for the slots `0..columns_end`.
pub fn write<Q: Codec>(dir: &Path, codec: &Q, columns_end: u64) -> Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(Q::NAME.len() as u16).to_le_bytes());
    out.extend_from_slice(Q::NAME.as_bytes());
    out.extend_from_slice(&(codec.dim() as u32).to_le_bytes());
    let distance = codec.distance().name();
    out.push(distance.len() as u8);
    out.extend_from_slice(distance.as_bytes());
    out.extend_from_slice(&(codec.code_len() as u32).to_le_bytes());
    let params = codec.params();
    out.extend_from_slice(&(params.len() as u32).to_le_bytes());
    out.extend_from_slice(&params);
    out.extend_from_slice(&columns_end.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    write_atomic(&dir.join(META_FILE), &out)
}

/// What a meta file says, without the codec's parameters decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSummary {
    /// Format version of the file.
    pub version: u16,
    /// Codec name (`Codec::NAME`).
    pub codec: String,
    /// Vector dimension.
    pub dim: usize,
    /// Distance name.
    pub distance: String,
    /// Bytes per code.
    pub code_len: usize,
    /// Bytes of the codec's parameters.
    pub params_len: usize,
    /// Slots `0..columns_end` are stored as column groups.
    pub columns_end: u64,
}

/// Check magic, checksum and version of the meta file bytes read from
/// `path`; return its summary and the parameter bytes.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(MetaSummary, &'a [u8])> {
    let bad = |what: String| StorageError::corrupted(path, what);
    if bytes.len() < 12 || bytes[..4] != MAGIC {
        return Err(bad("not a vecseg quantization meta file (bad magic)".into()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(bad("checksum mismatch (truncated or damaged)".into()));
    }
    let version = u16::from_le_bytes([body[4], body[5]]);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    let mut r = ParamReader::new(&body[6..]);
    let parsed = (|| -> std::result::Result<(MetaSummary, &'a [u8]), String> {
        let name_len = r.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
        let codec = String::from_utf8_lossy(r.take(name_len as usize)?).into_owned();
        let dim = r.u32()? as usize;
        let d_len = r.take(1)?[0] as usize;
        let distance = String::from_utf8_lossy(r.take(d_len)?).into_owned();
        let code_len = r.u32()? as usize;
        let params_len = r.u32()? as usize;
        let params = r.take(params_len)?;
        let columns_end = if version >= 2 {
            u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))
        } else {
            0
        };
        r.finish()?;
        if !columns_end.is_multiple_of(crate::codec::columns::GROUP as u64) {
            return Err(format!(
                "column end {columns_end} is not a multiple of {}",
                crate::codec::columns::GROUP
            ));
        }
        let summary = MetaSummary {
            version,
            codec,
            dim,
            distance,
            code_len,
            params_len,
            columns_end,
        };
        Ok((summary, params))
    })();
    parsed.map_err(bad)
}

/// The summary of the meta file in `dir` (for `vecseg inspect`).
pub fn summary(dir: &Path) -> Result<MetaSummary> {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).at(&path)?;
    Ok(parse(&path, &bytes)?.0)
}

/// Read the meta file in `dir` as codec `Q` for vectors of `dim` and
/// `distance`, with the end of the column groups: every mismatch (another
/// codec, dim or distance, damaged bytes) is an error naming the file.
pub fn read<Q: Codec>(dir: &Path, dim: usize, distance: Distance) -> Result<(Q, u64)> {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).at(&path)?;
    let (summary, params) = parse(&path, &bytes)?;
    let checked = (|| -> std::result::Result<(Q, u64), String> {
        if summary.codec != Q::NAME {
            return Err(format!(
                "holds {:?} codes, expected {:?}",
                summary.codec,
                Q::NAME
            ));
        }
        if summary.version < Q::LAYOUT_VERSION {
            return Err(format!(
                "{} codes of format version {} have an older layout than this build \
                 reads (version {} or later); rebuild the quantized storage",
                Q::NAME,
                summary.version,
                Q::LAYOUT_VERSION
            ));
        }
        if summary.dim != dim {
            return Err(format!(
                "codes of dimension {}, the vectors have {dim}",
                summary.dim
            ));
        }
        if Distance::from_name(&summary.distance) != Some(distance) {
            return Err(format!(
                "codes for distance {:?}, the vectors use {:?}",
                summary.distance,
                distance.name()
            ));
        }
        let codec = Q::from_params(dim, distance, params)?;
        if codec.code_len() != summary.code_len {
            return Err(format!(
                "code length {} does not match the parameters' {}",
                summary.code_len,
                codec.code_len()
            ));
        }
        Ok((codec, summary.columns_end))
    })();
    checked.map_err(|what| StorageError::corrupted(&path, what))
}
