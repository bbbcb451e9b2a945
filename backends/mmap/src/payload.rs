//! [`MmapPayloadStorage`]: immutable, memory-mapped payloads.
//!
//! Built once (typically by the optimizer) from any [`PayloadStorageRead`]:
//! every payload is encoded as **MessagePack** (`rmp-serde`; about 25–40 %
//! smaller than JSON text and faster to decode) and the encodings are packed
//! back to back in `payload_data.dat`. `payload_offsets.dat` holds `total + 1`
//! little-endian `u64` byte offsets, so the payload of offset `o` is
//! `data[offsets[o]..offsets[o + 1]]`; an empty payload takes zero bytes.
//! Clearing a payload sets a bit of the cleared bitmap, held in RAM and made
//! durable by [`PayloadStorage::flush`] in `payload_cleared.dat` (a
//! [`CheckedBitmap`]: two checksummed copies); nothing else is ever written
//! after the build. A format-1 `payload_cleared.dat` (plain bitmap) is
//! converted at open.
//!
//! A random read touches at most two pages: one of the offsets array and
//! the data page(s) of the value itself.
//!
//! Every file is validated when opened (magic, version, header length, file
//! length against the header, first and last offsets, the cleared bitmap's
//! checksums). Offsets read from the file are checked against the data length on
//! every read, so a damaged offsets array yields
//! [`StorageError::Corrupted`], never a panic or an out-of-bounds read.
//! Byte layouts are in `docs/file-formats.md`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use vecseg_traits::{
    IoResultExt, Payload, PayloadStorage, PayloadStorageRead, PointOffset, Result, StorageError,
};

use crate::advice::{Advice, AdviceSetting};
use crate::checked_bitmap::{bitmap_words, has_bits_past, CheckedBitmap};
use crate::file::{write_new_file, MmapFile};
use crate::header::{cast_slice, read_header, FilePrefix};

/// File name of the packed MessagePack values.
pub const PAYLOAD_DATA_FILE: &str = "payload_data.dat";
/// File name of the `u64` offsets array.
pub const PAYLOAD_OFFSETS_FILE: &str = "payload_offsets.dat";
/// File name of the cleared-payload bitmap.
pub const PAYLOAD_CLEARED_FILE: &str = "payload_cleared.dat";

const DATA_MAGIC: [u8; 8] = *b"VSPLDATA";
const OFFSETS_MAGIC: [u8; 8] = *b"VSPLOFFS";
/// Magic of a format-1 `payload_cleared.dat` (now a [`CheckedBitmap`]).
const CLEARED_V1_MAGIC: [u8; 8] = *b"VSPLCLRD";
/// Format version of `payload_data.dat` and `payload_offsets.dat`.
pub const PAYLOAD_FORMAT_VERSION: u32 = 1;

/// Header of `payload_data.dat` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct DataHeader {
    prefix: FilePrefix,
    /// Bytes of packed values following the header.
    data_len: u64,
}

/// Header of `payload_offsets.dat` (40 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct OffsetsHeader {
    prefix: FilePrefix,
    /// Number of point offsets (the array holds `total + 1` entries).
    total: u64,
    /// Must equal the data file's `data_len`.
    data_len: u64,
    /// Offsets holding a non-empty value at build time.
    non_empty: u64,
}

/// Header of a format-1 `payload_cleared.dat` (24 bytes): a plain bitmap,
/// converted to a [`CheckedBitmap`] at open.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct ClearedHeaderV1 {
    prefix: FilePrefix,
    /// Number of point offsets covered by the bitmap.
    total: u64,
}

/// Convert a format-1 `payload_cleared.dat` (a plain bitmap) into a
/// [`CheckedBitmap`] holding the same bits; a file in the current format is
/// left alone. The new file replaces the old one by rename, so a kill
/// leaves one or the other.
fn convert_cleared_v1(path: &Path) -> Result<()> {
    let bytes = fs::read(path).at(path)?;
    if bytes.get(..8) != Some(&CLEARED_V1_MAGIC[..]) {
        return Ok(());
    }
    let h: ClearedHeaderV1 = read_header(path, &bytes, CLEARED_V1_MAGIC, 1)?;
    let total = usize::try_from(h.total)
        .ok()
        .filter(|t| *t as u64 <= u32::MAX as u64 + 1)
        .ok_or_else(|| StorageError::corrupted(path, format!("total {} out of range", h.total)))?;
    let body = &bytes[std::mem::size_of::<ClearedHeaderV1>()..];
    if body.len() != bitmap_words(total) * 8 {
        return Err(StorageError::corrupted(
            path,
            format!(
                "bitmap is {} bytes, expected {}",
                body.len(),
                bitmap_words(total) * 8
            ),
        ));
    }
    let words: Vec<u64> = body
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    if has_bits_past(&words, total) {
        return Err(StorageError::corrupted(
            path,
            "bits set past the last offset",
        ));
    }
    CheckedBitmap::create(path, total, &words).map(drop)
}

/// Immutable payload storage: MessagePack values packed back to back in a
/// mapped file, an offsets array, and a mapped bitmap of cleared payloads.
///
/// ```no_run
/// # fn demo(source: &vecseg_memory::MemoryPayloadStorage) -> vecseg_traits::Result<()> {
/// use vecseg_mmap::payload::MmapPayloadStorage;
/// use vecseg_traits::PayloadStorageRead;
/// let dir = std::path::Path::new("/tmp/payloads");
/// let storage = MmapPayloadStorage::build(dir, source, 1000)?;
/// let payload = storage.get(7)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MmapPayloadStorage {
    dir: PathBuf,
    data: MmapFile,
    offsets: MmapFile,
    cleared: CheckedBitmap,
    total: usize,
    live: usize,
}

const DATA_START: usize = std::mem::size_of::<DataHeader>();
const OFFSETS_START: usize = std::mem::size_of::<OffsetsHeader>();

impl MmapPayloadStorage {
    /// Build a storage in `dir` (created if missing; existing payload files
    /// are replaced) holding every payload of `source` for offsets
    /// `0..total`, then open it.
    ///
    /// Fails with [`StorageError::InvalidArgument`] when `source` holds a
    /// payload at an offset `>= total` or `total` exceeds `u32::MAX + 1`.
    pub fn build(dir: &Path, source: &impl PayloadStorageRead, total: usize) -> Result<Self> {
        if total as u64 > u32::MAX as u64 + 1 {
            return Err(StorageError::InvalidArgument(format!(
                "{total} payload offsets exceed the u32 offset range"
            )));
        }
        fs::create_dir_all(dir).at(dir)?;
        let data_path = dir.join(PAYLOAD_DATA_FILE);
        let offsets_path = dir.join(PAYLOAD_OFFSETS_FILE);
        let cleared_path = dir.join(PAYLOAD_CLEARED_FILE);

        let mut offsets: Vec<u64> = Vec::with_capacity(total + 1);
        offsets.push(0);
        let mut non_empty = 0u64;
        let mut data_len = 0u64;
        let mut failure: Option<StorageError> = None;
        write_new_file(&data_path, |w| {
            w.write_all(bytemuck::bytes_of(&DataHeader::zeroed()))?;
            let mut buf = Vec::new();
            let mut next: usize = 0;
            let res = source.for_each(&mut |o, p| {
                let o = o as usize;
                if o >= total || o < next {
                    return Err(StorageError::InvalidArgument(format!(
                        "source payload at offset {o} is out of order or past total {total}"
                    )));
                }
                // Offsets without a payload get an empty range.
                offsets.resize(o + 1, data_len);
                buf.clear();
                if !p.is_empty() {
                    rmp_serde::encode::write(&mut buf, &p)
                        .map_err(|e| StorageError::Codec(Box::new(e)))?;
                    non_empty += 1;
                }
                w.write_all(&buf).at(&data_path)?;
                data_len += buf.len() as u64;
                offsets.push(data_len);
                next = o + 1;
                Ok(true)
            });
            if let Err(e) = res {
                failure = Some(e);
                return Err(std::io::Error::other("payload source failed"));
            }
            offsets.resize(total + 1, data_len);
            // Patch the header now that the length is known.
            let header = DataHeader {
                prefix: FilePrefix::new::<DataHeader>(DATA_MAGIC, PAYLOAD_FORMAT_VERSION),
                data_len,
            };
            w.flush()?;
            use std::os::unix::fs::FileExt;
            w.get_ref().write_all_at(bytemuck::bytes_of(&header), 0)
        })
        .map_err(|e| failure.take().unwrap_or(e))?;

        let header = OffsetsHeader {
            prefix: FilePrefix::new::<OffsetsHeader>(OFFSETS_MAGIC, PAYLOAD_FORMAT_VERSION),
            total: total as u64,
            data_len,
            non_empty,
        };
        write_new_file(&offsets_path, |w| {
            w.write_all(bytemuck::bytes_of(&header))?;
            w.write_all(bytemuck::cast_slice(&offsets))
        })?;
        drop(offsets);

        CheckedBitmap::create(&cleared_path, total, &vec![0; bitmap_words(total)])?;
        Self::open(dir)
    }

    /// Open a storage built by [`MmapPayloadStorage::build`]; the mappings
    /// follow the process-wide advice, else [`Advice::Random`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_advice(dir, AdviceSetting::Global)
    }

    /// Open with an advice for the data and offsets mappings: an explicit
    /// [`Advice`] always applies; [`AdviceSetting::Global`] follows
    /// [`set_global_advice`](crate::set_global_advice), else
    /// [`Advice::Random`].
    pub fn open_with_advice(dir: &Path, advice: impl Into<AdviceSetting>) -> Result<Self> {
        let advice = advice.into().resolve(Advice::Random);
        let data = MmapFile::open(&dir.join(PAYLOAD_DATA_FILE), advice)?;
        let offsets = MmapFile::open(&dir.join(PAYLOAD_OFFSETS_FILE), advice)?;
        let cleared_path = dir.join(PAYLOAD_CLEARED_FILE);
        convert_cleared_v1(&cleared_path)?;
        let cleared = CheckedBitmap::open(&cleared_path)?;

        let dh: DataHeader = read_header(
            data.path(),
            data.bytes(),
            DATA_MAGIC,
            PAYLOAD_FORMAT_VERSION,
        )?;
        if (data.len() - DATA_START) as u64 != dh.data_len {
            return Err(StorageError::corrupted(
                data.path(),
                format!(
                    "file holds {} data bytes, header says {}",
                    data.len() - DATA_START,
                    dh.data_len
                ),
            ));
        }

        let oh: OffsetsHeader = read_header(
            offsets.path(),
            offsets.bytes(),
            OFFSETS_MAGIC,
            PAYLOAD_FORMAT_VERSION,
        )?;
        if oh.data_len != dh.data_len {
            return Err(StorageError::corrupted(
                offsets.path(),
                format!(
                    "data length {} does not match {} ({})",
                    oh.data_len, PAYLOAD_DATA_FILE, dh.data_len
                ),
            ));
        }
        let total = usize::try_from(oh.total)
            .ok()
            .filter(|t| *t as u64 <= u32::MAX as u64 + 1)
            .ok_or_else(|| {
                StorageError::corrupted(offsets.path(), format!("total {} out of range", oh.total))
            })?;
        let want = (total as u64 + 1) * 8;
        if (offsets.len() - OFFSETS_START) as u64 != want {
            return Err(StorageError::corrupted(
                offsets.path(),
                format!(
                    "file holds {} offset bytes, expected {want} for {total} offsets",
                    offsets.len() - OFFSETS_START
                ),
            ));
        }
        let offs: &[u64] = cast_slice(offsets.path(), &offsets.bytes()[OFFSETS_START..])?;
        if offs[0] != 0 || offs[total] != dh.data_len {
            return Err(StorageError::corrupted(
                offsets.path(),
                format!(
                    "offsets must run from 0 to {}, found {}..{}",
                    dh.data_len, offs[0], offs[total]
                ),
            ));
        }
        if oh.non_empty > oh.total {
            return Err(StorageError::corrupted(
                offsets.path(),
                format!(
                    "{} non-empty payloads among {} offsets",
                    oh.non_empty, oh.total
                ),
            ));
        }

        if cleared.len() != total {
            return Err(StorageError::corrupted(
                cleared.path(),
                format!("covers {} offsets, offsets file has {total}", cleared.len()),
            ));
        }
        let words = cleared.words();
        // Live payloads = non-empty at build minus the non-empty ones cleared since.
        let mut cleared_non_empty = 0u64;
        for (wi, &w) in words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let o = wi * 64 + w.trailing_zeros() as usize;
                w &= w - 1;
                if offs[o + 1] != offs[o] {
                    cleared_non_empty += 1;
                }
            }
        }
        let live = oh.non_empty.checked_sub(cleared_non_empty).ok_or_else(|| {
            StorageError::corrupted(offsets.path(), "more cleared payloads than non-empty ones")
        })? as usize;

        Ok(MmapPayloadStorage {
            dir: dir.to_path_buf(),
            data,
            offsets,
            cleared,
            total,
            live,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of offsets covered (`total` given to [`build`](Self::build)).
    pub fn total(&self) -> usize {
        self.total
    }

    fn offsets(&self) -> &[u64] {
        // Length and alignment were checked at open; an empty slice would
        // only make every read a miss.
        cast_slice(self.offsets.path(), &self.offsets.bytes()[OFFSETS_START..]).unwrap_or(&[])
    }

    /// Whether the payload of `offset` was cleared.
    pub fn is_cleared(&self, offset: PointOffset) -> bool {
        self.cleared.get(offset as usize)
    }

    /// The stored MessagePack bytes of `offset`: empty when the offset has no
    /// payload, was cleared or is past the end.
    pub fn get_raw(&self, offset: PointOffset) -> Result<&[u8]> {
        let o = offset as usize;
        if o >= self.total || self.is_cleared(offset) {
            return Ok(&[]);
        }
        self.stored_bytes(o)
    }

    fn stored_bytes(&self, o: usize) -> Result<&[u8]> {
        let offs = self.offsets();
        let (Some(&start), Some(&end)) = (offs.get(o), offs.get(o + 1)) else {
            return Ok(&[]);
        };
        let data = &self.data.bytes()[DATA_START..];
        if start > end || end > data.len() as u64 {
            return Err(StorageError::corrupted(
                self.offsets.path(),
                format!(
                    "payload {o} spans bytes {start}..{end} of {} data bytes",
                    data.len()
                ),
            ));
        }
        Ok(&data[start as usize..end as usize])
    }

    /// Decode stored bytes (empty = empty payload).
    pub fn decode(&self, offset: PointOffset, bytes: &[u8]) -> Result<Payload> {
        if bytes.is_empty() {
            return Ok(Payload::new());
        }
        rmp_serde::from_slice(bytes).map_err(|e| {
            StorageError::corrupted(
                self.data.path(),
                format!("payload of offset {offset} does not decode: {e}"),
            )
        })
    }

    /// Fault every page of the data and offsets into memory.
    pub fn populate(&self) {
        self.offsets.populate();
        self.data.populate();
    }

    /// Evict the data and offsets from the page cache (cold-read benchmarks).
    pub fn clear_cache(&self) -> Result<()> {
        self.offsets.clear_cache()?;
        self.data.clear_cache()
    }
}

impl PayloadStorageRead for MmapPayloadStorage {
    fn get(&self, offset: PointOffset) -> Result<Payload> {
        let bytes = self.get_raw(offset)?;
        self.decode(offset, bytes)
    }

    fn for_each(&self, f: &mut dyn FnMut(PointOffset, Payload) -> Result<bool>) -> Result<()> {
        for o in 0..self.total {
            if self.cleared.get(o) {
                continue;
            }
            let bytes = self.stored_bytes(o)?;
            if bytes.is_empty() {
                continue;
            }
            let offset = o as PointOffset;
            if !f(offset, self.decode(offset, bytes)?)? {
                break;
            }
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.live
    }

    /// The cleared bitmap's generation (+1 per flush that cleared payloads).
    fn durable_sequence(&self) -> Option<u64> {
        Some(self.cleared.generation())
    }

    fn is_immutable(&self) -> bool {
        true
    }

    fn disk_bytes(&self) -> u64 {
        (self.data.len() + self.offsets.len()) as u64 + self.cleared.file_len()
    }
}

impl PayloadStorage for MmapPayloadStorage {
    fn clear(&mut self, offset: PointOffset) -> Result<Payload> {
        let o = offset as usize;
        if o >= self.total || self.is_cleared(offset) {
            return Ok(Payload::new());
        }
        let bytes = self.stored_bytes(o)?;
        let old = self.decode(offset, bytes)?;
        let non_empty = !bytes.is_empty();
        self.cleared.set(offset)?;
        if non_empty {
            self.live -= 1;
        }
        Ok(old)
    }

    /// Persist the cleared bits (both copies of the checked bitmap).
    fn flush(&mut self) -> Result<()> {
        self.cleared.flush()
    }
}
