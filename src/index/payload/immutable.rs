//! [`ImmutableFieldIndex`]: a field index written once (by the optimizer,
//! when it builds an immutable segment) and served from a memory-mapped,
//! versioned file, `payload_index/<name>.idx`.
//!
//! The file (byte by byte in `docs/file-formats.md`, section "Payload index
//! files") is a 200-byte header, then nine sections, each starting at a
//! multiple of 8 bytes so that they can be viewed as typed slices of the
//! page-aligned mapping:
//!
//! | # | section        | content                                                      |
//! |--:|----------------|--------------------------------------------------------------|
//! | 0 | `key`          | the payload key, UTF-8                                       |
//! | 1 | `values`       | the distinct values, ascending: `i64` / `f64` / `u64` (bool 0/1) each, or for keywords `u64 starts[n+1]` into section 2 |
//! | 2 | `strings`      | the keywords' bytes, concatenated (empty for other types)    |
//! | 3 | `postings`     | per value: first block, posting length (`u32` each)          |
//! | 4 | `blocks`       | per block: byte start in section 5, initial offset, bit width |
//! | 5 | `packed`       | the posting lists: sorted offsets, delta-encoded and bit-packed 128 at a time ([`BitPacker4x`]) |
//! | 6 | `point_starts` | `u32[offset_total + 1]`: where each offset's list starts in section 7 |
//! | 7 | `point_values` | `u32` value ids, ascending per offset                        |
//! | 8 | `skipped`      | `u32` offsets, ascending (also holding values of another type) |
//!
//! Postings answer `estimate` / `add_matching`; the offset → values table
//! answers `offset_matches` in O(values of that offset). The header carries
//! a CRC-32C of itself and one of the body. [`ImmutableFieldIndex::open`]
//! checks both and then validates every structure (it decodes every
//! posting once and finds each (offset, value) pair in the offset → values
//! table), so a damaged or foreign file is a `Corrupted` error at open and
//! the read paths never see inconsistent data. The read paths still use
//! checked slicing only: nothing derived from the file can panic.
//!
//! Typed views use the platform's byte order; the format is little-endian
//! like every vecseg file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};

use bitpacking::{BitPacker, BitPacker4x};
use bytemuck::{Pod, Zeroable};
use roaring::RoaringBitmap;
use vecseg_mmap::advice::{Advice, AdviceSetting};
use vecseg_mmap::header::{align_up, cast_slice, read_header, FilePrefix};
use vecseg_mmap::MmapFile;
use vecseg_traits::fsutil::fsync_dir;
use vecseg_traits::{FieldSchema, FieldType, IoResultExt, PointOffset, Result, StorageError};

use super::field::{FieldIndexRead, FieldIndexStats};
use super::value::{float_span, integer_span, FieldTypeExt, IndexedValue, ValueMatch};

/// Magic of a payload index file.
const MAGIC: [u8; 8] = *b"VSPIDX01";
/// Format version this build writes and reads.
const VERSION: u32 = 1;
/// Offsets per bit-packed block ([`BitPacker4x::BLOCK_LEN`]).
const BLOCK_LEN: usize = BitPacker4x::BLOCK_LEN;
/// Every section starts at a multiple of this many bytes.
const SECTION_ALIGN: usize = 8;
/// Zero bytes for padding sections.
const PADDING: [u8; SECTION_ALIGN] = [0; SECTION_ALIGN];
/// Header length.
const HEADER_LEN: usize = size_of::<IndexHeader>();
/// The header checksum covers the header bytes before `header_crc`.
const HEADER_CRC_SPAN: usize = offset_of!(IndexHeader, header_crc);
/// Offset lists longer than this are searched by value id in
/// `offset_matches`; shorter ones are compared value by value.
const LINEAR_SCAN_MAX: usize = 16;

// Section numbers (index into `IndexHeader::sections`).
const KEY: usize = 0;
const VALUES: usize = 1;
const STRINGS: usize = 2;
const POSTINGS: usize = 3;
const BLOCKS: usize = 4;
const PACKED: usize = 5;
const POINT_STARTS: usize = 6;
const POINT_VALUES: usize = 7;
const SKIPPED: usize = 8;
const SECTION_COUNT: usize = 9;
const SECTION_NAMES: [&str; SECTION_COUNT] = [
    "key",
    "values",
    "strings",
    "postings",
    "blocks",
    "packed",
    "point_starts",
    "point_values",
    "skipped",
];

/// Where one section lies in the file.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Pod, Zeroable)]
struct Section {
    /// Byte offset from the start of the file (a multiple of 8).
    offset: u64,
    /// Byte length.
    len: u64,
}

/// Header of a payload index file (200 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct IndexHeader {
    /// Magic `VSPIDX01`, format version 1, header length 200.
    prefix: FilePrefix,
    /// [`FieldType::code`] of the values.
    field_type: u8,
    /// 1 if the key was the tenant key when the index was built, else 0.
    is_tenant: u8,
    /// Zero.
    reserved0: [u8; 2],
    /// Byte length of the key (section 0).
    key_len: u32,
    /// Number of offsets of the segment: every offset stored is below it.
    offset_total: u32,
    /// Distinct values.
    value_count: u32,
    /// (offset, value) pairs: the total posting length.
    pair_count: u32,
    /// Bit-packed blocks.
    block_count: u32,
    /// Skipped offsets.
    skipped_count: u32,
    /// CRC-32C of every byte after the header.
    body_crc: u32,
    /// The sections, in file order.
    sections: [Section; SECTION_COUNT],
    /// CRC-32C of the header bytes before this field.
    header_crc: u32,
    /// Zero.
    reserved1: u32,
}

const _: () = assert!(HEADER_LEN == 200 && HEADER_LEN.is_multiple_of(SECTION_ALIGN));
const _: () = assert!(HEADER_CRC_SPAN == 192);

/// A value's posting list: its blocks are `first_block..` (one per 128
/// offsets, rounded up) and hold `len` offsets.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct PostingEntry {
    first_block: u32,
    len: u32,
}

/// One bit-packed block of 128 offsets.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
struct BlockEntry {
    /// Byte offset of the block in the `packed` section; the block is
    /// `16 * num_bits` bytes long.
    byte_start: u64,
    /// The offset the first delta is relative to: the last offset of the
    /// previous block of the same list, 0 for a list's first block.
    initial: u32,
    /// Bits per delta (0..=32).
    num_bits: u8,
    /// Zero.
    reserved: [u8; 3],
}

/// Bytes of a packed block with `num_bits` bits per delta.
fn packed_len(num_bits: u8) -> usize {
    usize::from(num_bits) * BLOCK_LEN / 8
}

/// The sorted distinct values, typed.
#[derive(Debug, Clone, Copy)]
enum Values<'a> {
    Keyword { starts: &'a [u64], bytes: &'a [u8] },
    Integer(&'a [i64]),
    Float(&'a [f64]),
    Bool(&'a [u64]),
}

/// Typed views of the sections of a mapped index file.
struct View<'a> {
    values: Values<'a>,
    postings: &'a [PostingEntry],
    blocks: &'a [BlockEntry],
    packed: &'a [u8],
    point_starts: &'a [u32],
    point_values: &'a [u32],
    skipped: &'a [u32],
    packer: BitPacker4x,
}

impl<'a> View<'a> {
    /// Cast the sections `ranges` of `bytes` (checked alignment and lengths).
    fn new(
        path: &Path,
        bytes: &'a [u8],
        field_type: FieldType,
        ranges: &[std::ops::Range<usize>; SECTION_COUNT],
    ) -> Result<Self> {
        let raw = |s: usize| -> Result<&'a [u8]> {
            bytes.get(ranges[s].clone()).ok_or_else(|| {
                StorageError::corrupted(
                    path,
                    format!("section {} lies beyond the file", SECTION_NAMES[s]),
                )
            })
        };
        let values = match field_type {
            FieldType::Keyword => Values::Keyword {
                starts: cast_slice(path, raw(VALUES)?)?,
                bytes: raw(STRINGS)?,
            },
            FieldType::Integer => Values::Integer(cast_slice(path, raw(VALUES)?)?),
            FieldType::Float => Values::Float(cast_slice(path, raw(VALUES)?)?),
            FieldType::Bool => Values::Bool(cast_slice(path, raw(VALUES)?)?),
        };
        Ok(View {
            values,
            postings: cast_slice(path, raw(POSTINGS)?)?,
            blocks: cast_slice(path, raw(BLOCKS)?)?,
            packed: raw(PACKED)?,
            point_starts: cast_slice(path, raw(POINT_STARTS)?)?,
            point_values: cast_slice(path, raw(POINT_VALUES)?)?,
            skipped: cast_slice(path, raw(SKIPPED)?)?,
            packer: BitPacker4x::new(),
        })
    }

    /// A view with no values (never used on a validated file; keeps the
    /// read paths panic-free should a cast ever fail).
    fn empty(field_type: FieldType) -> Self {
        let values = match field_type {
            FieldType::Keyword => Values::Keyword {
                starts: &[],
                bytes: &[],
            },
            FieldType::Integer => Values::Integer(&[]),
            FieldType::Float => Values::Float(&[]),
            FieldType::Bool => Values::Bool(&[]),
        };
        View {
            values,
            postings: &[],
            blocks: &[],
            packed: &[],
            point_starts: &[],
            point_values: &[],
            skipped: &[],
            packer: BitPacker4x::new(),
        }
    }

    /// The bytes of keyword `id` (empty if out of bounds).
    fn keyword(&self, id: usize) -> &'a [u8] {
        let Values::Keyword { starts, bytes } = self.values else {
            return &[];
        };
        match (starts.get(id), starts.get(id + 1)) {
            (Some(&s), Some(&e)) => usize::try_from(s)
                .ok()
                .zip(usize::try_from(e).ok())
                .and_then(|(s, e)| bytes.get(s..e))
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Id of the value a single-value match (keyword, integer, bool) asks
    /// for, if the index holds it.
    fn find(&self, m: &ValueMatch<'_>) -> Option<usize> {
        match (self.values, m) {
            (Values::Keyword { starts, .. }, ValueMatch::Keyword(k)) => {
                let key = k.as_bytes();
                let (mut lo, mut hi) = (0, starts.len().saturating_sub(1));
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.keyword(mid).cmp(key) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(mid),
                    }
                }
                None
            }
            (Values::Integer(v), ValueMatch::Integer(i)) => v.binary_search(i).ok(),
            (Values::Bool(v), ValueMatch::Bool(b)) => v.iter().position(|&x| x == u64::from(*b)),
            _ => None,
        }
    }

    /// Ids of the values that may lie in `range` (a superset: callers test
    /// each with [`View::satisfies`]).
    fn range_span(&self, range: &vecseg_traits::Range) -> std::ops::Range<usize> {
        let (start, end) = match self.values {
            Values::Integer(v) => match integer_span(range) {
                Some((lo, hi)) => (
                    v.partition_point(|&x| x < lo),
                    v.partition_point(|&x| x <= hi),
                ),
                None => (0, 0),
            },
            Values::Float(v) => match float_span(range) {
                Some((lo, hi)) => (
                    v.partition_point(|&x| x < lo),
                    v.partition_point(|&x| x <= hi),
                ),
                None => (0, 0),
            },
            Values::Keyword { .. } | Values::Bool(_) => (0, 0),
        };
        start..end.max(start)
    }

    /// Whether value `id` satisfies `m` ([`IndexedValue::satisfies`]).
    fn satisfies(&self, id: usize, m: &ValueMatch<'_>) -> bool {
        match (self.values, m) {
            (Values::Keyword { .. }, ValueMatch::Keyword(k)) => self.keyword(id) == k.as_bytes(),
            (Values::Keyword { .. }, _) => false,
            (Values::Integer(v), _) => v
                .get(id)
                .is_some_and(|&x| IndexedValue::Integer(x).satisfies(m)),
            (Values::Float(v), _) => v
                .get(id)
                .is_some_and(|&x| IndexedValue::Float(x).satisfies(m)),
            (Values::Bool(v), _) => v
                .get(id)
                .is_some_and(|&x| IndexedValue::Bool(x != 0).satisfies(m)),
        }
    }

    /// Ids of the values satisfying `m`, ascending (`m` must be answered
    /// by the index's type).
    fn matching_ids(&self, m: &ValueMatch<'_>) -> impl Iterator<Item = usize> + '_ {
        let (single, span, range) = match m {
            ValueMatch::Range(r) => (None, self.range_span(r), *r),
            _ => (self.find(m), 0..0, vecseg_traits::Range::default()),
        };
        single
            .into_iter()
            .chain(span.filter(move |&id| self.satisfies(id, &ValueMatch::Range(range))))
    }

    /// Length of value `id`'s posting list.
    fn posting_len(&self, id: usize) -> usize {
        self.postings.get(id).map_or(0, |p| p.len as usize)
    }

    /// Decode `block` into `buf` (all 128 entries, padding included);
    /// `false` if the block is malformed.
    fn decode_block(&self, block: &BlockEntry, buf: &mut [u32; BLOCK_LEN]) -> bool {
        if block.num_bits > 32 {
            return false;
        }
        let Ok(start) = usize::try_from(block.byte_start) else {
            return false;
        };
        let Some(bytes) = start
            .checked_add(packed_len(block.num_bits))
            .and_then(|end| self.packed.get(start..end))
        else {
            return false;
        };
        self.packer
            .decompress_sorted(block.initial, bytes, buf, block.num_bits);
        true
    }

    /// Call `f` with value `id`'s offsets, ascending, one block (at most
    /// 128 offsets) at a time.
    fn for_each_block(&self, id: usize, mut f: impl FnMut(&[u32])) {
        let Some(p) = self.postings.get(id) else {
            return;
        };
        let mut remaining = p.len as usize;
        let mut buf = [0u32; BLOCK_LEN];
        let blocks = self.blocks.get(p.first_block as usize..).unwrap_or(&[]);
        for block in blocks {
            if remaining == 0 || !self.decode_block(block, &mut buf) {
                return;
            }
            let n = remaining.min(BLOCK_LEN);
            f(&buf[..n]);
            remaining -= n;
        }
    }

    /// Add the offsets of the values `ids` (ascending) to `out`.
    fn add_postings(&self, ids: &[usize], out: &mut RoaringBitmap, offset_total: u32) {
        let total: u64 = ids.iter().map(|&id| self.posting_len(id) as u64).sum();
        if total == 0 {
            return;
        }
        if let [id] = ids {
            let mut builder = BitmapBuilder::with_capacity(total as usize);
            self.for_each_block(*id, |block| builder.push_sorted(block));
            merge(out, builder.finish());
        } else if total * 128 >= u64::from(offset_total) {
            // Many offsets: a bit per offset (offset_total / 8 bytes),
            // converted to a bitmap container by container.
            let mut bits = vec![0u8; (offset_total as usize).div_ceil(8)];
            for &id in ids {
                self.for_each_block(id, |block| {
                    for &o in block {
                        if let Some(byte) = bits.get_mut(o as usize / 8) {
                            *byte |= 1 << (o % 8);
                        }
                    }
                });
            }
            merge(out, RoaringBitmap::from_lsb0_bytes(0, &bits));
        } else {
            let mut all = Vec::with_capacity(total as usize);
            for &id in ids {
                self.for_each_block(id, |block| all.extend_from_slice(block));
            }
            all.sort_unstable();
            all.dedup();
            let mut builder = BitmapBuilder::with_capacity(all.len());
            builder.push_sorted(&all);
            merge(out, builder.finish());
        }
    }

    /// Value ids of `offset`, ascending.
    fn offset_values(&self, offset: PointOffset) -> &'a [u32] {
        let o = offset as usize;
        match (self.point_starts.get(o), self.point_starts.get(o + 1)) {
            (Some(&s), Some(&e)) => self.point_values.get(s as usize..e as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Builds a [`RoaringBitmap`] from strictly increasing offsets. The
/// offsets are laid out in roaring's portable serialized format
/// (<https://github.com/RoaringBitmap/RoaringFormatSpec>, the variant
/// without run containers) and deserialized, which copies each container
/// in one piece: about 5x faster than inserting them one by one.
#[derive(Default)]
struct BitmapBuilder {
    /// Per container: its key (the high 16 bits) and how many values it holds.
    containers: Vec<(u16, usize)>,
    /// The low 16 bits of every value, in order.
    lows: Vec<u16>,
}

impl BitmapBuilder {
    /// Cookie of the serialized format without run containers.
    const COOKIE: u32 = 12346;
    /// Containers with more values are bitmaps (1024 `u64` words).
    const ARRAY_MAX: usize = 4096;

    /// A builder with room for `n` values.
    fn with_capacity(n: usize) -> Self {
        BitmapBuilder {
            containers: Vec::new(),
            lows: Vec::with_capacity(n),
        }
    }

    /// Add `values`, ascending and above every value added before.
    fn push_sorted(&mut self, values: &[u32]) {
        let (Some(&first), Some(&last)) = (values.first(), values.last()) else {
            return;
        };
        let key = (first >> 16) as u16;
        if key == (last >> 16) as u16 {
            match self.containers.last_mut() {
                Some((k, n)) if *k == key => *n += values.len(),
                _ => self.containers.push((key, values.len())),
            }
            self.lows.extend(values.iter().map(|&v| v as u16));
        } else {
            for &v in values {
                let key = (v >> 16) as u16;
                match self.containers.last_mut() {
                    Some((k, n)) if *k == key => *n += 1,
                    _ => self.containers.push((key, 1)),
                }
                self.lows.push(v as u16);
            }
        }
    }

    /// The bitmap of the values added.
    fn finish(self) -> RoaringBitmap {
        if self.containers.iter().any(|&(_, n)| n > 1 << 16) {
            return self.insert_each();
        }
        let mut bytes = Vec::with_capacity(8 + 8 * self.containers.len() + 2 * self.lows.len());
        bytes.extend_from_slice(&Self::COOKIE.to_le_bytes());
        bytes.extend_from_slice(&(self.containers.len() as u32).to_le_bytes());
        for &(key, n) in &self.containers {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&((n - 1) as u16).to_le_bytes());
        }
        let mut offset = 8 + 8 * self.containers.len();
        for &(_, n) in &self.containers {
            bytes.extend_from_slice(&(offset as u32).to_le_bytes());
            offset += if n <= Self::ARRAY_MAX {
                2 * n
            } else {
                8 * 1024
            };
        }
        let all_arrays = self.containers.iter().all(|&(_, n)| n <= Self::ARRAY_MAX);
        if all_arrays && cfg!(target_endian = "little") {
            // The common case: the values' low halves, as they are.
            bytes.extend_from_slice(bytemuck::cast_slice(&self.lows));
            return RoaringBitmap::deserialize_from(bytes.as_slice())
                .unwrap_or_else(|_| self.insert_each());
        }
        let mut start = 0;
        for &(_, n) in &self.containers {
            let lows = self.lows.get(start..start + n).unwrap_or(&[]);
            start += n;
            if n <= Self::ARRAY_MAX {
                bytes.extend(lows.iter().flat_map(|l| l.to_le_bytes()));
            } else {
                let mut words = [0u64; 1024];
                for &l in lows {
                    words[usize::from(l) / 64] |= 1 << (l % 64);
                }
                bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
            }
        }
        // Deserializing checks each container (sorted, cardinality); should
        // that fail, insert the values one by one.
        RoaringBitmap::deserialize_from(bytes.as_slice()).unwrap_or_else(|_| self.insert_each())
    }

    fn insert_each(&self) -> RoaringBitmap {
        let keys = self
            .containers
            .iter()
            .flat_map(|&(key, n)| std::iter::repeat_n(u32::from(key) << 16, n));
        keys.zip(&self.lows)
            .map(|(high, &low)| high | u32::from(low))
            .collect()
    }
}

/// `out |= other`, moving `other` into an empty `out`.
fn merge(out: &mut RoaringBitmap, other: RoaringBitmap) {
    if out.is_empty() {
        *out = other;
    } else if !other.is_empty() {
        *out |= other;
    }
}

/// An immutable field index served from a memory-mapped file (see the
/// module docs and `docs/file-formats.md`). Built once with
/// [`ImmutableFieldIndex::build`], read through [`FieldIndexRead`].
#[derive(Debug)]
pub struct ImmutableFieldIndex {
    file: MmapFile,
    schema: FieldSchema,
    offset_total: u32,
    value_count: usize,
    pair_count: usize,
    /// Offsets holding at least one value.
    points: usize,
    /// Byte ranges of the sections, validated at open.
    sections: [std::ops::Range<usize>; SECTION_COUNT],
    skipped: RoaringBitmap,
}

impl ImmutableFieldIndex {
    /// Write the index file at `path` atomically (`path.tmp`, fsync,
    /// rename, directory fsync).
    ///
    /// `postings` yields each distinct value once, in strictly increasing
    /// [`IndexedValue`] order, all of `schema.field_type`, with the
    /// (non-empty) set of offsets holding it. `offset_total` is the
    /// segment's number of offsets: every offset in `postings` and
    /// `skipped` must be below it. `skipped` holds the offsets whose key
    /// also holds values of another type. Input breaking these rules
    /// (or a float that is NaN or -0.0) is an `InvalidArgument` error.
    pub fn build<'a>(
        path: &Path,
        schema: &FieldSchema,
        offset_total: u32,
        postings: &mut dyn Iterator<Item = (&'a IndexedValue, &'a RoaringBitmap)>,
        skipped: &RoaringBitmap,
    ) -> Result<()> {
        let invalid = |what: String| {
            StorageError::InvalidArgument(format!("field index {}: {what}", path.display()))
        };
        let entries: Vec<(&IndexedValue, &RoaringBitmap)> = postings.collect();
        let field_type = schema.field_type;

        // Values.
        let mut values: Vec<u64> = Vec::with_capacity(entries.len() + 1);
        let mut strings: Vec<u8> = Vec::new();
        if field_type == FieldType::Keyword {
            values.push(0);
        }
        let mut previous: Option<&IndexedValue> = None;
        for &(value, offsets) in &entries {
            if previous.is_some_and(|p| p >= value) {
                return Err(invalid(format!(
                    "values not strictly increasing: {value:?} after {previous:?}"
                )));
            }
            previous = Some(value);
            match (field_type, value) {
                (FieldType::Keyword, IndexedValue::Keyword(s)) => {
                    strings.extend_from_slice(s.as_bytes());
                    values.push(strings.len() as u64);
                }
                (FieldType::Integer, IndexedValue::Integer(i)) => values.push(*i as u64),
                (FieldType::Float, IndexedValue::Float(x)) => {
                    if x.is_nan() || (*x == 0.0 && x.is_sign_negative()) {
                        return Err(invalid(format!("float value {x:?} cannot be indexed")));
                    }
                    values.push(x.to_bits());
                }
                (FieldType::Bool, IndexedValue::Bool(b)) => values.push(u64::from(*b)),
                _ => {
                    return Err(invalid(format!(
                        "value {value:?} in an index of type {}",
                        field_type.name()
                    )))
                }
            }
            match offsets.max() {
                None => return Err(invalid(format!("value {value:?} holds no offsets"))),
                Some(max) if max >= offset_total => {
                    return Err(invalid(format!(
                        "offset {max} of value {value:?} is not below offset_total {offset_total}"
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(max) = skipped.max().filter(|&m| m >= offset_total) {
            return Err(invalid(format!(
                "skipped offset {max} is not below offset_total {offset_total}"
            )));
        }
        let too_many = |what: &str| invalid(format!("too many {what} for one index file"));
        let key_len = u32::try_from(schema.key.len()).map_err(|_| too_many("key bytes"))?;
        let value_count = u32::try_from(entries.len()).map_err(|_| too_many("values"))?;
        let pair_count = entries.iter().map(|(_, o)| o.len()).sum::<u64>();
        let pair_count = u32::try_from(pair_count).map_err(|_| too_many("pairs"))?;
        let skipped_count = u32::try_from(skipped.len()).map_err(|_| too_many("skipped"))?;

        // Postings.
        let packer = BitPacker4x::new();
        let mut posting_table = Vec::with_capacity(entries.len());
        let mut blocks: Vec<BlockEntry> = Vec::new();
        let mut packed: Vec<u8> = Vec::new();
        let mut buf = [0u32; BLOCK_LEN];
        let mut out = [0u8; 4 * BLOCK_LEN];
        for (_, offsets) in &entries {
            let first_block = u32::try_from(blocks.len()).map_err(|_| too_many("blocks"))?;
            posting_table.push(PostingEntry {
                first_block,
                len: offsets.len() as u32,
            });
            let mut iter = offsets.iter();
            let mut initial = 0;
            loop {
                let mut n = 0;
                for (slot, o) in buf.iter_mut().zip(iter.by_ref()) {
                    *slot = o;
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                // Pad a partial block with its last offset: deltas of 0.
                let last = buf[n - 1];
                buf[n..].fill(last);
                let num_bits = packer.num_bits_sorted(initial, &buf);
                let len = packer.compress_sorted(initial, &buf, &mut out, num_bits);
                blocks.push(BlockEntry {
                    byte_start: packed.len() as u64,
                    initial,
                    num_bits,
                    reserved: [0; 3],
                });
                packed.extend_from_slice(&out[..len]);
                initial = last;
                if n < BLOCK_LEN {
                    break;
                }
            }
        }
        let block_count = u32::try_from(blocks.len()).map_err(|_| too_many("blocks"))?;

        // Offset -> values: count per offset, prefix sums (each offset's
        // end), then fill every list from its end, values in descending id
        // order, which leaves each start in place and each list ascending.
        let total = offset_total as usize;
        let mut point_starts = vec![0u32; total + 1];
        for (_, offsets) in &entries {
            for o in offsets.iter() {
                point_starts[o as usize] += 1;
            }
        }
        let mut sum = 0u32;
        for s in &mut point_starts[..total] {
            sum += *s;
            *s = sum;
        }
        point_starts[total] = pair_count;
        let mut point_values = vec![0u32; pair_count as usize];
        for (id, (_, offsets)) in entries.iter().enumerate().rev() {
            for o in offsets.iter() {
                let s = &mut point_starts[o as usize];
                *s -= 1;
                point_values[*s as usize] = id as u32;
            }
        }
        let skipped_offsets: Vec<u32> = skipped.iter().collect();

        // Layout, checksums, write.
        let parts: [&[u8]; SECTION_COUNT] = [
            schema.key.as_bytes(),
            bytemuck::cast_slice(&values),
            &strings,
            bytemuck::cast_slice(&posting_table),
            bytemuck::cast_slice(&blocks),
            &packed,
            bytemuck::cast_slice(&point_starts),
            bytemuck::cast_slice(&point_values),
            bytemuck::cast_slice(&skipped_offsets),
        ];
        let mut sections = [Section::default(); SECTION_COUNT];
        let mut pos = HEADER_LEN;
        let mut body_crc = 0;
        for (section, part) in sections.iter_mut().zip(parts) {
            *section = Section {
                offset: pos as u64,
                len: part.len() as u64,
            };
            let padding = &PADDING[..align_up(part.len(), SECTION_ALIGN) - part.len()];
            body_crc = crc32c::crc32c_append(body_crc, part);
            body_crc = crc32c::crc32c_append(body_crc, padding);
            pos += part.len() + padding.len();
        }
        let mut header = IndexHeader {
            prefix: FilePrefix::new::<IndexHeader>(MAGIC, VERSION),
            field_type: field_type.code(),
            is_tenant: u8::from(schema.is_tenant),
            reserved0: [0; 2],
            key_len,
            offset_total,
            value_count,
            pair_count,
            block_count,
            skipped_count,
            body_crc,
            sections,
            header_crc: 0,
            reserved1: 0,
        };
        header.header_crc = crc32c::crc32c(&bytemuck::bytes_of(&header)[..HEADER_CRC_SPAN]);
        write_file(path, bytemuck::bytes_of(&header), &parts)
    }

    /// Map and validate the index file at `path`. `schema` is what the
    /// caller expects: a file of another key or type is a `Corrupted` error
    /// naming both. Every checksum and structure of the file is checked
    /// (one sequential read of the whole file); damage or truncation is a
    /// `Corrupted` error, another format version `UnsupportedVersion`.
    /// [`FieldIndexRead::schema`] returns `schema` (its tenant flag may
    /// differ from the one recorded at build).
    pub fn open(path: &Path, schema: &FieldSchema) -> Result<Self> {
        let file = MmapFile::open(path, Advice::Sequential)?;
        let bytes = file.bytes();
        let bad = |what: String| StorageError::corrupted(path, what);
        let h: IndexHeader = read_header(path, bytes, MAGIC, VERSION)?;
        if crc32c::crc32c(&bytes[..HEADER_CRC_SPAN]) != h.header_crc {
            return Err(bad("header checksum mismatch".into()));
        }
        if h.reserved0 != [0; 2] || h.reserved1 != 0 {
            return Err(bad("reserved header bytes are not zero".into()));
        }
        if h.is_tenant > 1 {
            return Err(bad(format!(
                "tenant flag {} is neither 0 nor 1",
                h.is_tenant
            )));
        }
        let field_type = FieldType::from_code(h.field_type)
            .ok_or_else(|| bad(format!("unknown field type code {}", h.field_type)))?;
        if crc32c::crc32c(&bytes[HEADER_LEN..]) != h.body_crc {
            return Err(bad("body checksum mismatch (damaged or truncated)".into()));
        }
        let sections = section_ranges(path, &h, field_type, bytes.len())?;

        let key = std::str::from_utf8(&bytes[sections[KEY].clone()])
            .map_err(|_| bad("key is not UTF-8".into()))?;
        if key != schema.key || field_type != schema.field_type {
            return Err(bad(format!(
                "index of key {key:?} ({}), expected key {:?} ({})",
                field_type.name(),
                schema.key,
                schema.field_type.name()
            )));
        }

        let view = View::new(path, bytes, field_type, &sections)?;
        let points = validate(path, &view, &h)?;
        let skipped = RoaringBitmap::from_sorted_iter(view.skipped.iter().copied())
            .map_err(|_| bad("skipped offsets are not strictly increasing".into()))?;
        file.advise(AdviceSetting::Global.resolve(Advice::Random));
        Ok(ImmutableFieldIndex {
            schema: schema.clone(),
            offset_total: h.offset_total,
            value_count: h.value_count as usize,
            pair_count: h.pair_count as usize,
            points,
            sections,
            skipped,
            file,
        })
    }

    /// The segment's number of offsets when the index was built (every
    /// offset the index holds is below it).
    pub fn offset_total(&self) -> u32 {
        self.offset_total
    }

    /// Fault every page of the file in.
    pub fn populate(&self) {
        self.file.populate();
    }

    /// Drop the file's pages from this mapping and the page cache, so the
    /// next read comes from disk.
    pub fn clear_cache(&self) -> Result<()> {
        self.file.clear_cache()
    }

    /// The index file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn view(&self) -> View<'_> {
        View::new(
            self.file.path(),
            self.file.bytes(),
            self.schema.field_type,
            &self.sections,
        )
        .unwrap_or_else(|_| View::empty(self.schema.field_type))
    }

    fn section_len(&self, s: usize) -> u64 {
        self.sections[s].len() as u64
    }
}

impl FieldIndexRead for ImmutableFieldIndex {
    fn schema(&self) -> &FieldSchema {
        &self.schema
    }

    fn estimate(&self, m: &ValueMatch<'_>) -> usize {
        if !self.schema.field_type.answers(m) {
            return 0;
        }
        let view = self.view();
        view.matching_ids(m).map(|id| view.posting_len(id)).sum()
    }

    fn add_matching(&self, m: &ValueMatch<'_>, out: &mut RoaringBitmap) {
        if !self.schema.field_type.answers(m) {
            return;
        }
        let view = self.view();
        let ids: Vec<usize> = view.matching_ids(m).collect();
        view.add_postings(&ids, out, self.offset_total);
    }

    fn offset_matches(&self, offset: PointOffset, m: &ValueMatch<'_>) -> bool {
        if offset >= self.offset_total || !self.schema.field_type.answers(m) {
            return false;
        }
        let view = self.view();
        let ids = view.offset_values(offset);
        if matches!(m, ValueMatch::Range(_)) || ids.len() <= LINEAR_SCAN_MAX {
            ids.iter().any(|&id| view.satisfies(id as usize, m))
        } else {
            view.find(m)
                .is_some_and(|id| ids.binary_search(&(id as u32)).is_ok())
        }
    }

    fn skipped(&self) -> &RoaringBitmap {
        &self.skipped
    }

    fn stats(&self) -> FieldIndexStats {
        FieldIndexStats {
            values: self.value_count,
            points: self.points,
            pairs: self.pair_count,
            skipped: self.skipped.len() as usize,
            posting_bytes: self.section_len(POSTINGS)
                + self.section_len(BLOCKS)
                + self.section_len(PACKED),
            ram_bytes: (self.skipped.serialized_size() + self.schema.key.len() + size_of::<Self>())
                as u64,
            disk_bytes: self.file.len() as u64,
        }
    }
}

/// Write `header` then `parts` (each padded to a multiple of 8 bytes) to
/// `path` durably: `path.tmp`, fsync, rename, directory fsync.
fn write_file(path: &Path, header: &[u8], parts: &[&[u8]]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(header)?;
        for part in parts {
            w.write_all(part)?;
            w.write_all(&PADDING[..align_up(part.len(), SECTION_ALIGN) - part.len()])?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::io(&tmp, e));
    }
    fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The byte ranges of the sections of `h`: in file order, 8-aligned, not
/// overlapping, of the lengths the header's counts imply, ending where the
/// file ends (after padding to 8 bytes).
fn section_ranges(
    path: &Path,
    h: &IndexHeader,
    field_type: FieldType,
    file_len: usize,
) -> Result<[std::ops::Range<usize>; SECTION_COUNT]> {
    let bad = |what: String| StorageError::corrupted(path, what);
    let n = u64::from(h.value_count);
    let keyword = field_type == FieldType::Keyword;
    // Expected lengths; `None` for the sections whose length is checked
    // against their content (strings of keywords, packed blocks).
    let expected: [Option<u64>; SECTION_COUNT] = [
        Some(u64::from(h.key_len)),
        Some(8 * (n + u64::from(keyword))),
        if keyword { None } else { Some(0) },
        Some(8 * n),
        Some(size_of::<BlockEntry>() as u64 * u64::from(h.block_count)),
        None,
        Some(4 * (u64::from(h.offset_total) + 1)),
        Some(4 * u64::from(h.pair_count)),
        Some(4 * u64::from(h.skipped_count)),
    ];
    let mut ranges: [std::ops::Range<usize>; SECTION_COUNT] = Default::default();
    let mut end = HEADER_LEN as u64;
    for (s, section) in h.sections.iter().enumerate() {
        let name = SECTION_NAMES[s];
        if expected[s].is_some_and(|len| len != section.len) {
            return Err(bad(format!(
                "section {name} is {} bytes, the header's counts imply {}",
                section.len,
                expected[s].unwrap_or_default()
            )));
        }
        let start = section.offset;
        let section_end = start.saturating_add(section.len);
        if !start.is_multiple_of(SECTION_ALIGN as u64)
            || start < end
            || section_end > file_len as u64
        {
            return Err(bad(format!(
                "section {name} at {start}..{section_end} is misaligned, overlaps the one \
                 before or lies beyond the file's {file_len} bytes"
            )));
        }
        // Both fit in usize: they are at most `file_len`.
        ranges[s] = start as usize..section_end as usize;
        end = section_end;
    }
    if align_up(end as usize, SECTION_ALIGN) != file_len {
        return Err(bad(format!(
            "file is {file_len} bytes, its sections end at {end}"
        )));
    }
    Ok(ranges)
}

/// Check every structure of a mapped index (see the module docs); returns
/// the number of offsets holding at least one value.
fn validate(path: &Path, view: &View<'_>, h: &IndexHeader) -> Result<usize> {
    let bad = |what: String| StorageError::corrupted(path, what);
    let value_count = h.value_count as usize;
    let offset_total = h.offset_total;

    // Values: strictly increasing (keywords: valid UTF-8, by bytes).
    let increasing = match view.values {
        Values::Keyword { starts, bytes } => {
            if starts.first() != Some(&0) || starts.last() != Some(&(bytes.len() as u64)) {
                return Err(bad("keyword starts do not span the strings section".into()));
            }
            if starts.windows(2).any(|w| w[0] > w[1]) {
                return Err(bad("keyword starts are not monotone".into()));
            }
            if (0..value_count).any(|id| std::str::from_utf8(view.keyword(id)).is_err()) {
                return Err(bad("a keyword is not UTF-8".into()));
            }
            (1..value_count).all(|id| view.keyword(id - 1) < view.keyword(id))
        }
        Values::Integer(v) => v.windows(2).all(|w| w[0] < w[1]),
        Values::Float(v) => {
            if v.iter()
                .any(|x| x.is_nan() || (*x == 0.0 && x.is_sign_negative()))
            {
                return Err(bad("a float value is NaN or -0.0".into()));
            }
            v.windows(2).all(|w| w[0] < w[1])
        }
        Values::Bool(v) => v.iter().all(|&b| b <= 1) && v.windows(2).all(|w| w[0] < w[1]),
    };
    if !increasing {
        return Err(bad("values are not strictly increasing".into()));
    }

    // Offset -> values: monotone starts covering every pair; each list
    // strictly increasing, ids below value_count.
    let starts = view.point_starts;
    if starts.first() != Some(&0) || starts.last() != Some(&h.pair_count) {
        return Err(bad("offset table starts do not span the value ids".into()));
    }
    let mut points = 0;
    for w in starts.windows(2) {
        let list = view
            .point_values
            .get(w[0] as usize..w[1] as usize)
            .ok_or_else(|| bad("offset table starts are not monotone".into()))?;
        if list.windows(2).any(|p| p[0] >= p[1])
            || list.last().is_some_and(|&id| id as usize >= value_count)
        {
            return Err(bad(
                "an offset's value ids are unsorted or out of range".into()
            ));
        }
        points += usize::from(!list.is_empty());
    }

    // Postings: consecutive blocks and bytes, bit widths <= 32, every list
    // strictly increasing below offset_total, every (offset, value) pair
    // also in the offset table. With pair counts equal, the two tables
    // then hold exactly the same pairs.
    let mut next_block = 0usize;
    let mut next_byte = 0u64;
    let mut pairs = 0u64;
    let mut buf = [0u32; BLOCK_LEN];
    for (id, p) in view.postings.iter().enumerate() {
        if p.len == 0 || p.first_block as usize != next_block {
            return Err(bad(format!(
                "posting of value {id} is empty or does not start at block {next_block}"
            )));
        }
        pairs += u64::from(p.len);
        let block_count = (p.len as usize).div_ceil(BLOCK_LEN);
        let blocks = view
            .blocks
            .get(next_block..next_block + block_count)
            .ok_or_else(|| bad(format!("posting of value {id} runs past the block table")))?;
        next_block += block_count;
        let mut remaining = p.len as usize;
        let mut previous: Option<u32> = None;
        for block in blocks {
            if block.byte_start != next_byte
                || block.num_bits > 32
                || block.reserved != [0; 3]
                || block.initial != previous.unwrap_or(0)
                || !view.decode_block(block, &mut buf)
            {
                return Err(bad(format!("a block of value {id} is malformed")));
            }
            next_byte += packed_len(block.num_bits) as u64;
            let n = remaining.min(BLOCK_LEN);
            remaining -= n;
            for &o in &buf[..n] {
                if previous.is_some_and(|p| o <= p) || o >= offset_total {
                    return Err(bad(format!(
                        "posting of value {id} is unsorted or holds offsets past {offset_total}"
                    )));
                }
                if view.offset_values(o).binary_search(&(id as u32)).is_err() {
                    return Err(bad(format!(
                        "offset {o} is in the posting of value {id} but not in the offset table"
                    )));
                }
                previous = Some(o);
            }
            if buf[n..].iter().any(|&x| Some(x) != previous) {
                return Err(bad(format!("a block of value {id} has bad padding")));
            }
        }
    }
    if next_block != view.blocks.len() || next_byte != view.packed.len() as u64 {
        return Err(bad(
            "block table or packed bytes not covered by the postings".into(),
        ));
    }
    if pairs != u64::from(h.pair_count) {
        return Err(bad(format!(
            "postings hold {pairs} pairs, the header says {}",
            h.pair_count
        )));
    }

    if view.skipped.last().is_some_and(|&o| o >= offset_total) {
        return Err(bad(format!("a skipped offset is not below {offset_total}")));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use vecseg_traits::Range;

    use super::*;

    const TYPES: [FieldType; 4] = [
        FieldType::Keyword,
        FieldType::Integer,
        FieldType::Float,
        FieldType::Bool,
    ];

    /// What an index holds, as a test builds it.
    #[derive(Debug, Clone)]
    struct Model {
        schema: FieldSchema,
        offset_total: u32,
        postings: BTreeMap<IndexedValue, RoaringBitmap>,
        skipped: RoaringBitmap,
    }

    impl Model {
        fn empty(field_type: FieldType, offset_total: u32) -> Model {
            Model {
                schema: FieldSchema::new("meta.field", field_type),
                offset_total,
                postings: BTreeMap::new(),
                skipped: RoaringBitmap::new(),
            }
        }

        fn build(&self, path: &Path) -> Result<()> {
            ImmutableFieldIndex::build(
                path,
                &self.schema,
                self.offset_total,
                &mut self.postings.iter(),
                &self.skipped,
            )
        }

        fn write_and_open(&self, dir: &Path) -> ImmutableFieldIndex {
            let path = dir.join("field.idx");
            self.build(&path).unwrap();
            ImmutableFieldIndex::open(&path, &self.schema).unwrap()
        }

        /// The offsets matching `m` and the pairs of the matching values.
        fn expected(&self, m: &ValueMatch<'_>) -> (RoaringBitmap, usize) {
            let mut out = RoaringBitmap::new();
            let mut pairs = 0;
            if self.schema.field_type.answers(m) {
                for (v, offsets) in &self.postings {
                    if v.satisfies(m) {
                        out |= offsets;
                        pairs += offsets.len() as usize;
                    }
                }
            }
            (out, pairs)
        }

        fn values_per_offset(&self) -> Vec<Vec<&IndexedValue>> {
            let mut per = vec![Vec::new(); self.offset_total as usize];
            for (v, offsets) in &self.postings {
                for o in offsets {
                    per[o as usize].push(v);
                }
            }
            per
        }
    }

    fn random_value(field_type: FieldType, rng: &mut StdRng) -> IndexedValue {
        match field_type {
            FieldType::Keyword => {
                const ALPHABET: [char; 8] = ['a', 'b', 'c', 'é', 'z', 'ü', '/', ' '];
                let len = rng.gen_range(0..6);
                IndexedValue::Keyword((0..len).map(|_| ALPHABET[rng.gen_range(0..8)]).collect())
            }
            FieldType::Integer => IndexedValue::Integer(match rng.gen_range(0..8) {
                0 => [
                    i64::MIN,
                    i64::MAX,
                    1 << 53,
                    (1 << 53) + 1,
                    -(1 << 53) - 1,
                    0,
                ][rng.gen_range(0..6)],
                1 => rng.gen(),
                _ => rng.gen_range(-100..100),
            }),
            FieldType::Float => IndexedValue::Float(match rng.gen_range(0..8) {
                0 => [
                    0.0,
                    1e300,
                    -1e300,
                    f64::MIN_POSITIVE,
                    9_007_199_254_740_993.0,
                    2.5,
                ][rng.gen_range(0..6)],
                1 => rng.gen_range(-1e6..1e6),
                _ => f64::from(rng.gen_range(-400..400)) / 4.0,
            }),
            FieldType::Bool => IndexedValue::Bool(rng.gen()),
        }
    }

    /// A model with up to `value_count` values: the first ones hold 1,
    /// 127, 128, 129 and 1000 offsets (as far as `offset_total` allows),
    /// the others a few; some value holds `offset_total - 1`.
    fn random_model(
        field_type: FieldType,
        seed: u64,
        offset_total: u32,
        value_count: usize,
    ) -> Model {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::empty(field_type, offset_total);
        if offset_total == 0 {
            return model;
        }
        let values: BTreeSet<IndexedValue> = (0..value_count)
            .map(|_| random_value(field_type, &mut rng))
            .collect();
        let mut values: Vec<IndexedValue> = values.into_iter().collect();
        // Give the special sizes to values spread over the order.
        for i in (1..values.len()).rev() {
            values.swap(i, rng.gen_range(0..=i));
        }
        const SIZES: [usize; 5] = [1, 127, 128, 129, 1000];
        for (i, v) in values.into_iter().enumerate() {
            let size = SIZES
                .get(i)
                .copied()
                .unwrap_or_else(|| rng.gen_range(1..40))
                .min(offset_total as usize);
            let offsets = rand::seq::index::sample(&mut rng, offset_total as usize, size);
            model
                .postings
                .insert(v, offsets.iter().map(|o| o as u32).collect());
        }
        if let Some((_, offsets)) = model.postings.iter_mut().next_back() {
            offsets.insert(offset_total - 1);
        }
        model.skipped = (0..offset_total).filter(|_| rng.gen_bool(0.05)).collect();
        model
    }

    /// Keywords to ask for: every stored one and some absent ones.
    fn keywords(model: &Model) -> Vec<String> {
        let mut k: Vec<String> = model
            .postings
            .keys()
            .filter_map(|v| match v {
                IndexedValue::Keyword(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        k.extend(["", "absent", "zzzz", "a"].map(String::from));
        k
    }

    fn random_range(model: &Model, rng: &mut StdRng) -> Range {
        let numbers: Vec<f64> = model
            .postings
            .keys()
            .filter_map(|v| match v {
                IndexedValue::Integer(i) => Some(*i as f64),
                IndexedValue::Float(x) => Some(*x),
                _ => None,
            })
            .collect();
        let bound = |rng: &mut StdRng| -> Option<f64> {
            match rng.gen_range(0..10) {
                0..=3 => None,
                4..=6 if !numbers.is_empty() => Some(numbers[rng.gen_range(0..numbers.len())]),
                7 => Some(f64::from(rng.gen_range(-100..100)) + 0.5),
                8 => Some([f64::NAN, f64::INFINITY, -0.0, 1e19, -1e19][rng.gen_range(0..5)]),
                _ => Some(f64::from(rng.gen_range(-100..100))),
            }
        };
        Range {
            gt: bound(rng),
            gte: bound(rng),
            lt: bound(rng),
            lte: bound(rng),
        }
    }

    /// Every kind of match: stored and absent values, of the index's type
    /// and of others, and random ranges.
    fn matches<'k>(model: &Model, keywords: &'k [String], seed: u64) -> Vec<ValueMatch<'k>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out: Vec<ValueMatch<'k>> =
            keywords.iter().map(|k| ValueMatch::Keyword(k)).collect();
        out.extend([ValueMatch::Bool(true), ValueMatch::Bool(false)]);
        out.extend([ValueMatch::Integer(7), ValueMatch::Integer(i64::MIN)]);
        for v in model.postings.keys() {
            if let IndexedValue::Integer(i) = v {
                out.push(ValueMatch::Integer(*i));
            }
        }
        out.push(ValueMatch::Range(Range::default()));
        out.extend((0..40).map(|_| ValueMatch::Range(random_range(model, &mut rng))));
        out
    }

    /// `index` answers every match of `ms` as `model` does.
    fn check(index: &ImmutableFieldIndex, model: &Model, ms: &[ValueMatch<'_>]) {
        let per_offset = model.values_per_offset();
        let answers = |m: &ValueMatch<'_>| model.schema.field_type.answers(m);
        for m in ms {
            let (want, pairs) = model.expected(m);
            let mut got = RoaringBitmap::new();
            index.add_matching(m, &mut got);
            assert_eq!(got, want, "add_matching {m:?}");
            // Into a bitmap that already holds offsets (the merge path).
            let before: RoaringBitmap = [0, model.offset_total / 2, model.offset_total + 5]
                .into_iter()
                .collect();
            let mut got = before.clone();
            index.add_matching(m, &mut got);
            assert_eq!(got, &before | &want, "add_matching into non-empty {m:?}");
            assert_eq!(index.estimate(m), pairs, "estimate {m:?}");
            for (o, values) in per_offset.iter().enumerate() {
                let want = answers(m) && values.iter().any(|v| v.satisfies(m));
                assert_eq!(index.offset_matches(o as u32, m), want, "offset {o} {m:?}");
            }
            assert!(!index.offset_matches(model.offset_total, m));
            assert!(!index.offset_matches(u32::MAX, m));
        }
        assert_eq!(index.skipped(), &model.skipped);
        let stats = index.stats();
        let pairs: u64 = model.postings.values().map(|o| o.len()).sum();
        assert_eq!(stats.values, model.postings.len());
        assert_eq!(stats.pairs as u64, pairs);
        assert_eq!(
            stats.points,
            per_offset.iter().filter(|v| !v.is_empty()).count()
        );
        assert_eq!(stats.skipped as u64, model.skipped.len());
        assert_eq!(stats.disk_bytes, fs::metadata(index.path()).unwrap().len());
        assert!(stats.posting_bytes > 0 || pairs == 0);
        assert!(stats.posting_bytes < stats.disk_bytes);
        assert!(stats.ram_bytes > 0);
        assert_eq!(index.offset_total(), model.offset_total);
        assert_eq!(index.schema(), &model.schema);
    }

    fn round_trip(model: &Model, seed: u64) {
        let dir = tempfile::tempdir().unwrap();
        let index = model.write_and_open(dir.path());
        let keywords = keywords(model);
        check(&index, model, &matches(model, &keywords, seed));
    }

    #[test]
    fn round_trip_every_type() {
        for (i, field_type) in TYPES.into_iter().enumerate() {
            for (seed, offset_total, values) in [(1, 3000, 40), (2, 2500, 12), (3, 130, 6)] {
                let model = random_model(field_type, seed + 10 * i as u64, offset_total, values);
                round_trip(&model, seed);
            }
        }
    }

    #[test]
    fn empty_indexes_round_trip() {
        for field_type in TYPES {
            for offset_total in [0, 1, 50] {
                let mut model = Model::empty(field_type, offset_total);
                if offset_total > 0 {
                    model.skipped.insert(offset_total - 1);
                }
                round_trip(&model, 9);
            }
        }
    }

    #[test]
    fn reopened_file_and_cache_calls_work() {
        let dir = tempfile::tempdir().unwrap();
        let model = random_model(FieldType::Integer, 4, 500, 8);
        let index = model.write_and_open(dir.path());
        index.populate();
        index.clear_cache().unwrap();
        assert_eq!(index.path(), dir.path().join("field.idx"));
        let again = ImmutableFieldIndex::open(index.path(), &model.schema).unwrap();
        assert_eq!(again.stats(), index.stats());
        // Rebuilding over an existing file replaces it, leaves no temp file.
        model.build(index.path()).unwrap();
        assert!(!dir.path().join("field.idx.tmp").exists());
    }

    #[test]
    fn tenant_flag_follows_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = random_model(FieldType::Keyword, 5, 200, 5);
        model.schema = model.schema.clone().tenant();
        let index = model.write_and_open(dir.path());
        assert!(index.schema().is_tenant);
        let plain = FieldSchema::new(model.schema.key.clone(), FieldType::Keyword);
        let index = ImmutableFieldIndex::open(index.path(), &plain).unwrap();
        assert!(!index.schema().is_tenant);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Random models of every type, with random sizes.
        #[test]
        fn prop_round_trip(ty in 0usize..4, offset_total in 0u32..700, values in 0usize..30, seed in any::<u64>()) {
            round_trip(&random_model(TYPES[ty], seed, offset_total, values), seed);
        }

        /// Integer indexes against generated data and ranges, with open and
        /// closed bounds between and on the values.
        #[test]
        fn prop_integer_ranges(
            postings in prop::collection::btree_map(-30i64..30, prop::collection::btree_set(0u32..300, 1..80), 0..10),
            bounds in prop::collection::vec(prop::array::uniform4(prop::option::of((-64i32..64).prop_map(|b| f64::from(b) / 2.0))), 1..12),
        ) {
            let mut model = Model::empty(FieldType::Integer, 300);
            model.postings = postings
                .into_iter()
                .map(|(v, o)| (IndexedValue::Integer(v), o.into_iter().collect()))
                .collect();
            let ms: Vec<ValueMatch<'_>> = bounds
                .iter()
                .map(|b| ValueMatch::Range(Range { gt: b[0], gte: b[1], lt: b[2], lte: b[3] }))
                .chain((-31..31).map(ValueMatch::Integer))
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let index = model.write_and_open(dir.path());
            check(&index, &model, &ms);
        }
    }

    #[test]
    fn invalid_input_is_rejected_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.idx");
        let schema = FieldSchema::new("k", FieldType::Integer);
        let some: RoaringBitmap = [1, 2].into_iter().collect();
        let none = RoaringBitmap::new();
        let late: RoaringBitmap = [10].into_iter().collect();
        let (one, two) = (IndexedValue::Integer(1), IndexedValue::Integer(2));
        let word = IndexedValue::Keyword("x".into());
        let cases: Vec<(Vec<(&IndexedValue, &RoaringBitmap)>, &RoaringBitmap)> = vec![
            (vec![(&two, &some), (&one, &some)], &none),
            (vec![(&one, &some), (&one, &some)], &none),
            (vec![(&word, &some)], &none),
            (vec![(&one, &none)], &none),
            (vec![(&one, &late)], &none),
            (vec![(&one, &some)], &late),
        ];
        for (postings, skipped) in cases {
            let r =
                ImmutableFieldIndex::build(&path, &schema, 10, &mut postings.into_iter(), skipped);
            assert!(matches!(r, Err(StorageError::InvalidArgument(_))), "{r:?}");
        }
        let float = FieldSchema::new("k", FieldType::Float);
        for x in [-0.0, f64::NAN] {
            let v = IndexedValue::Float(x);
            let r = ImmutableFieldIndex::build(
                &path,
                &float,
                10,
                &mut [(&v, &some)].into_iter(),
                &none,
            );
            assert!(matches!(r, Err(StorageError::InvalidArgument(_))), "{x}");
        }
        assert!(!path.exists());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    /// A small file of `field_type` whose every section is non-empty (but
    /// `strings` for non-keywords), and its path.
    fn small_file(dir: &Path, field_type: FieldType) -> (Model, PathBuf) {
        let mut model = random_model(field_type, 77, 300, 10);
        model.skipped.insert(3);
        let path = dir.join("small.idx");
        model.build(&path).unwrap();
        (model, path)
    }

    fn header_of(bytes: &[u8]) -> IndexHeader {
        bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN])
    }

    /// Recompute both checksums, so that a change reaches the structural
    /// checks.
    fn reseal(bytes: &mut [u8]) {
        let mut h = header_of(bytes);
        h.body_crc = crc32c::crc32c(&bytes[HEADER_LEN..]);
        h.header_crc = crc32c::crc32c(&bytemuck::bytes_of(&h)[..HEADER_CRC_SPAN]);
        bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
    }

    /// Make `path` hold `bytes` and open it. Rewrites the file in place:
    /// creating or truncating a file to zero costs milliseconds on ext4.
    fn open_bytes(path: &Path, bytes: &[u8], schema: &FieldSchema) -> Result<ImmutableFieldIndex> {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        f.set_len(bytes.len() as u64).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        ImmutableFieldIndex::open(path, schema)
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_an_error() {
        for field_type in TYPES {
            let dir = tempfile::tempdir().unwrap();
            let (model, path) = small_file(dir.path(), field_type);
            let bytes = fs::read(&path).unwrap();
            let bad = dir.path().join("bad.idx");
            for i in 0..bytes.len() {
                for mask in [0x01, 0x80] {
                    let mut b = bytes.clone();
                    b[i] ^= mask;
                    let r = open_bytes(&bad, &b, &model.schema);
                    assert!(
                        r.is_err(),
                        "{field_type:?}: flip {mask:#x} at byte {i} not detected"
                    );
                }
            }
            for len in 0..bytes.len() {
                let r = open_bytes(&bad, &bytes[..len], &model.schema);
                assert!(
                    r.is_err(),
                    "{field_type:?}: truncation to {len} bytes not detected"
                );
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 8]);
            assert!(open_bytes(&bad, &longer, &model.schema).is_err());
            assert!(open_bytes(&bad, &bytes, &model.schema).is_ok());
        }
    }

    #[test]
    fn other_version_key_or_type_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (model, path) = small_file(dir.path(), FieldType::Keyword);
        let mut bytes = fs::read(&path).unwrap();
        let bad = dir.path().join("bad.idx");

        let other_key = FieldSchema::new("other.key", FieldType::Keyword);
        let err = ImmutableFieldIndex::open(&path, &other_key)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("meta.field") && err.contains("other.key"),
            "{err}"
        );
        let other_type = FieldSchema::new("meta.field", FieldType::Integer);
        let err = ImmutableFieldIndex::open(&path, &other_type)
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyword") && err.contains("integer"), "{err}");

        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let r = open_bytes(&bad, &bytes, &model.schema);
        assert!(
            matches!(r, Err(StorageError::UnsupportedVersion { found: 2, .. })),
            "{r:?}"
        );
        bytes[0] = b'X';
        let r = open_bytes(&bad, &bytes, &model.schema);
        assert!(matches!(r, Err(StorageError::Corrupted { .. })), "{r:?}");
    }

    /// Damage that keeps the checksums valid is caught by the structural
    /// checks.
    #[test]
    fn structural_damage_behind_valid_checksums_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.idx");
        type Damage = fn(&mut Vec<u8>, &IndexHeader);
        let damages: Vec<(&str, FieldType, Damage)> = vec![
            ("values out of order", FieldType::Integer, |b, h| {
                let v = h.sections[VALUES].offset as usize;
                let (x, y) = (b[v..v + 8].to_vec(), b[v + 8..v + 16].to_vec());
                b[v..v + 8].copy_from_slice(&y);
                b[v + 8..v + 16].copy_from_slice(&x);
            }),
            ("float NaN", FieldType::Float, |b, h| {
                let v = h.sections[VALUES].offset as usize;
                b[v..v + 8].copy_from_slice(&f64::NAN.to_le_bytes());
            }),
            ("bool 2", FieldType::Bool, |b, h| {
                let v = h.sections[VALUES].offset as usize;
                b[v] = 2;
            }),
            ("keyword not UTF-8", FieldType::Keyword, |b, h| {
                let s = h.sections[STRINGS].offset as usize;
                b[s] = 0xff;
            }),
            ("keyword start past strings", FieldType::Keyword, |b, h| {
                let v = h.sections[VALUES].offset as usize;
                b[v + 8..v + 16].copy_from_slice(&u64::MAX.to_le_bytes());
            }),
            ("bit width 33", FieldType::Integer, |b, h| {
                let s = h.sections[BLOCKS].offset as usize;
                b[s + 12] = 33;
            }),
            ("block byte start", FieldType::Integer, |b, h| {
                let s = h.sections[BLOCKS].offset as usize + size_of::<BlockEntry>();
                b[s] ^= 16;
            }),
            ("block initial", FieldType::Integer, |b, h| {
                let s = h.sections[BLOCKS].offset as usize;
                b[s + 8] ^= 1;
            }),
            ("posting length", FieldType::Integer, |b, h| {
                let s = h.sections[POSTINGS].offset as usize;
                b[s + 4] ^= 1;
            }),
            ("packed delta", FieldType::Keyword, |b, h| {
                let s = h.sections[PACKED].offset as usize;
                b[s] ^= 0xff;
            }),
            ("value id out of range", FieldType::Integer, |b, h| {
                let s = h.sections[POINT_VALUES].offset as usize;
                b[s..s + 4].copy_from_slice(&h.value_count.to_le_bytes());
            }),
            ("offset starts not monotone", FieldType::Integer, |b, h| {
                let s = h.sections[POINT_STARTS].offset as usize + 4 * 150;
                b[s..s + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }),
            ("skipped past offset_total", FieldType::Bool, |b, h| {
                let s = h.sections[SKIPPED].offset as usize + 4 * (h.skipped_count as usize - 1);
                b[s..s + 4].copy_from_slice(&h.offset_total.to_le_bytes());
            }),
            ("misaligned section", FieldType::Integer, |b, _| {
                let mut h = header_of(b);
                h.sections[SKIPPED].offset += 4;
                b[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
            }),
            ("unknown type code", FieldType::Integer, |b, _| b[16] = 9),
            ("tenant flag 2", FieldType::Integer, |b, _| b[17] = 2),
            ("counts", FieldType::Integer, |b, _| {
                let mut h = header_of(b);
                h.pair_count += 1;
                b[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&h));
            }),
        ];
        for (name, field_type, damage) in damages {
            let (model, path) = small_file(dir.path(), field_type);
            let mut bytes = fs::read(&path).unwrap();
            let h = header_of(&bytes);
            damage(&mut bytes, &h);
            reseal(&mut bytes);
            let r = open_bytes(&bad, &bytes, &model.schema);
            assert!(
                matches!(r, Err(StorageError::Corrupted { .. })),
                "{name}: {r:?}"
            );
        }
    }

    /// Random damage behind valid checksums never panics: open fails, or
    /// the index it opens answers without panicking.
    #[test]
    fn random_damage_behind_valid_checksums_never_panics() {
        let mut rng = StdRng::seed_from_u64(11);
        for field_type in TYPES {
            let dir = tempfile::tempdir().unwrap();
            let (model, path) = small_file(dir.path(), field_type);
            let bytes = fs::read(&path).unwrap();
            let bad = dir.path().join("bad.idx");
            let keywords = keywords(&model);
            let ms = matches(&model, &keywords, 3);
            let mut opened = 0;
            for _ in 0..1000 {
                let mut b = bytes.clone();
                for _ in 0..rng.gen_range(1..4) {
                    // Half of the damage in the header's fields.
                    let i = if rng.gen_bool(0.5) {
                        rng.gen_range(16..HEADER_CRC_SPAN)
                    } else {
                        rng.gen_range(HEADER_LEN..b.len())
                    };
                    b[i] = rng.gen();
                }
                reseal(&mut b);
                if let Ok(index) = open_bytes(&bad, &b, &model.schema) {
                    opened += 1;
                    for m in &ms {
                        let mut out = RoaringBitmap::new();
                        index.add_matching(m, &mut out);
                        index.estimate(m);
                        (0..model.offset_total).for_each(|o| {
                            index.offset_matches(o, m);
                        });
                    }
                    index.stats();
                }
            }
            // Only harmless changes (padding, values that stay sorted) pass.
            assert!(
                opened < 100,
                "{field_type:?}: {opened} damaged files opened"
            );
        }
    }

    #[test]
    fn bitmap_builder_matches_roaring() {
        let mut rng = StdRng::seed_from_u64(8);
        for density in [0.0001, 0.01, 0.2, 0.9] {
            let values: Vec<u32> = (0..300_000u32)
                .filter(|_| rng.gen_bool(density))
                .chain([u32::MAX - 1, u32::MAX])
                .collect();
            let want = RoaringBitmap::from_sorted_iter(values.iter().copied()).unwrap();
            let mut builder = BitmapBuilder::default();
            for chunk in values.chunks(128) {
                builder.push_sorted(chunk);
            }
            assert_eq!(builder.insert_each(), want);
            assert_eq!(builder.finish(), want, "density {density}");
        }
        assert!(BitmapBuilder::default().finish().is_empty());
    }

    /// Each way `add_matching` builds its result: one value (array and
    /// bitmap containers), a few small values (sorted), many (dense).
    #[test]
    fn add_matching_paths_agree_with_the_model() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut model = Model::empty(FieldType::Integer, 100_000);
        for v in 0..50 {
            let offsets = rand::seq::index::sample(&mut rng, 100_000, 3);
            model.postings.insert(
                IndexedValue::Integer(v),
                offsets.iter().map(|o| o as u32).collect(),
            );
        }
        model.postings.insert(
            IndexedValue::Integer(1000),
            (0..100_000).step_by(2).collect(),
        );
        let ms = [
            ValueMatch::Integer(7),
            ValueMatch::Integer(1000),
            ValueMatch::Range(Range {
                gte: Some(0.0),
                lte: Some(3.0),
                ..Default::default()
            }),
            ValueMatch::Range(Range {
                lt: Some(50.0),
                ..Default::default()
            }),
            ValueMatch::Range(Range::default()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let index = model.write_and_open(dir.path());
        check(&index, &model, &ms);
    }

    /// One value holding 1% of 200,000 offsets, at random positions.
    #[test]
    fn postings_take_at_most_one_and_a_half_bytes_per_pair() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut model = Model::empty(FieldType::Keyword, 200_000);
        let offsets = rand::seq::index::sample(&mut rng, 200_000, 2000);
        model.postings.insert(
            IndexedValue::Keyword("tenant-1".into()),
            offsets.iter().map(|o| o as u32).collect(),
        );
        let dir = tempfile::tempdir().unwrap();
        let index = model.write_and_open(dir.path());
        let stats = index.stats();
        let per_pair = stats.posting_bytes as f64 / 2000.0;
        println!(
            "posting bytes: {} for 2000 pairs = {per_pair:.3} B/pair (file {} bytes)",
            stats.posting_bytes, stats.disk_bytes
        );
        assert!(per_pair <= 1.5, "{per_pair} bytes per pair");
        let mut out = RoaringBitmap::new();
        index.add_matching(&ValueMatch::Keyword("tenant-1"), &mut out);
        assert_eq!(
            &out,
            &model.postings[&IndexedValue::Keyword("tenant-1".into())]
        );
    }

    /// Timings (run with `--release --ignored --nocapture`).
    #[test]
    #[ignore]
    fn timings() {
        use std::time::Instant;
        let mut rng = StdRng::seed_from_u64(42);
        let mut model = Model::empty(FieldType::Integer, 200_000);
        for v in 0..100 {
            let offsets = rand::seq::index::sample(&mut rng, 200_000, 2000);
            model.postings.insert(
                IndexedValue::Integer(v),
                offsets.iter().map(|o| o as u32).collect(),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.idx");
        let t = Instant::now();
        model.build(&path).unwrap();
        println!("build: {:?}", t.elapsed());
        let t = Instant::now();
        let index = ImmutableFieldIndex::open(&path, &model.schema).unwrap();
        println!("open (200k pairs): {:?}", t.elapsed());
        let rounds = 20_000;
        let t = Instant::now();
        let mut n = 0;
        for i in 0..rounds {
            let mut out = RoaringBitmap::new();
            index.add_matching(&ValueMatch::Integer(i % 100), &mut out);
            n += out.len();
        }
        println!(
            "add_matching, 2000 offsets into empty: {:?}",
            t.elapsed() / rounds as u32
        );
        let before: RoaringBitmap = (0..200_000).step_by(97).collect();
        let t = Instant::now();
        for i in 0..rounds {
            let mut out = before.clone();
            index.add_matching(&ValueMatch::Integer(i % 100), &mut out);
            n += out.len();
        }
        println!(
            "add_matching, 2000 offsets into 2062 (incl. clone): {:?}",
            t.elapsed() / rounds as u32
        );
        let range = ValueMatch::Range(Range {
            gte: Some(10.0),
            lt: Some(20.0),
            ..Default::default()
        });
        let t = Instant::now();
        for _ in 0..1000 {
            let mut out = RoaringBitmap::new();
            index.add_matching(&range, &mut out);
            n += out.len();
        }
        println!(
            "add_matching, range of 10 values (20k pairs): {:?}",
            t.elapsed() / 1000
        );
        let t = Instant::now();
        let mut hits = 0;
        for o in 0..200_000u32 {
            hits += usize::from(index.offset_matches(o, &ValueMatch::Integer(5)));
            hits += usize::from(index.offset_matches(o, &range));
        }
        println!("offset_matches: {:?}", t.elapsed() / 400_000);
        assert!(n > 0 && hits > 0);
    }
}
