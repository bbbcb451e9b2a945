//! Payload indexes: per-key field indexes that let a filtered search,
//! scroll or count read the matching offsets instead of decoding every
//! payload.
//!
//! | file           | what it holds                                                    |
//! |----------------|------------------------------------------------------------------|
//! | `value.rs`     | field types and schemas, typed values, what a condition asks     |
//! | `field.rs`     | [`FieldIndexRead`], the interface both forms implement            |
//! | `mutable.rs`   | [`MutableFieldIndex`]: value → roaring bitmap, updated in place   |
//! | `immutable.rs` | [`ImmutableFieldIndex`]: sorted values, bit-packed postings, mmap |
//! | `planner.rs`   | cardinality estimates and how conditions combine                 |
//!
//! A segment owns one [`PayloadIndex`] (empty: no index). Appendable
//! segments hold the mutable form, rebuilt from the payloads at open;
//! immutable segments (mmap payloads) hold the immutable form in
//! `payload_index/*.idx`, written once by `build_mmap` or
//! `create_field_index`. How a segment uses them is in
//! `src/segment/filter.rs`.

mod field;
mod immutable;
mod mutable;
mod planner;
mod value;

use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use vecseg_traits::{Payload, PayloadStorageRead, PointOffset, Result};

pub use field::{FieldIndexRead, FieldIndexStats};
pub use immutable::ImmutableFieldIndex;
pub use mutable::MutableFieldIndex;
pub use planner::Cardinality;
pub use value::{float_span, integer_span, values_at, FieldTypeExt, IndexedValue, ValueMatch};
pub use vecseg_traits::{FieldSchema, FieldType};

/// Subdirectory of a segment directory holding immutable index files.
pub const PAYLOAD_INDEX_DIR: &str = "payload_index";

/// One field index in either form.
#[derive(Debug)]
pub enum FieldIndex {
    /// In RAM, updated by writes.
    Mutable(MutableFieldIndex),
    /// In an mmap file, never rewritten.
    Immutable(ImmutableFieldIndex),
}

impl FieldIndex {
    /// The index as its read interface.
    pub fn read(&self) -> &dyn FieldIndexRead {
        match self {
            FieldIndex::Mutable(m) => m,
            FieldIndex::Immutable(i) => i,
        }
    }
}

/// What `segment.json` records about a segment's payload index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PayloadIndexState {
    /// The indexed keys.
    pub fields: Vec<FieldSchema>,
    /// Offsets whose payload changed after the immutable index files were
    /// written: conditions on them are checked against the payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<PointOffset>,
}

/// The field indexes of one segment (none by default).
#[derive(Debug, Default)]
pub struct PayloadIndex {
    fields: Vec<FieldIndex>,
    /// See [`PayloadIndexState::stale`].
    stale: RoaringBitmap,
}

/// Name of the immutable index file of `schema` inside
/// [`PAYLOAD_INDEX_DIR`]: a CRC-32C of the key (keys may hold any
/// character) and the type; the file itself records the full key.
pub fn index_file_name(schema: &FieldSchema) -> String {
    format!(
        "{:08x}-{}.idx",
        crc32c::crc32c(schema.key.as_bytes()),
        schema.field_type.name()
    )
}

impl PayloadIndex {
    /// Whether no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The indexes, in creation order.
    pub fn fields(&self) -> impl Iterator<Item = &dyn FieldIndexRead> {
        self.fields.iter().map(FieldIndex::read)
    }

    /// The index of `key`, if any.
    pub fn field(&self, key: &str) -> Option<&dyn FieldIndexRead> {
        self.fields().find(|f| f.schema().key == key)
    }

    /// The schemas of the indexed keys.
    pub fn schemas(&self) -> Vec<FieldSchema> {
        self.fields().map(|f| f.schema().clone()).collect()
    }

    /// What `segment.json` records.
    pub fn state(&self) -> PayloadIndexState {
        PayloadIndexState {
            fields: self.schemas(),
            stale: self.stale.iter().collect(),
        }
    }

    /// Offsets whose conditions on `field` must be checked against the
    /// payload: the index skipped a value of another type there, or the
    /// payload changed after an immutable index was written.
    pub fn unchecked(&self, field: &dyn FieldIndexRead) -> RoaringBitmap {
        field.skipped() | &self.stale
    }

    /// How many offsets [`PayloadIndex::unchecked`] holds, without
    /// building the set.
    pub fn unchecked_count(&self, field: &dyn FieldIndexRead) -> usize {
        field.skipped().union_len(&self.stale) as usize
    }

    /// Whether the index of `field` cannot answer for `offset` (see
    /// [`PayloadIndex::unchecked`]).
    pub fn is_unchecked(&self, field: &dyn FieldIndexRead, offset: PointOffset) -> bool {
        field.skipped().contains(offset) || self.stale.contains(offset)
    }

    /// Add (or replace, for the same key) an index.
    pub fn insert(&mut self, index: FieldIndex) {
        let key = index.read().schema().key.clone();
        self.remove_field(&key);
        self.fields.push(index);
    }

    /// Drop the index of `key`; whether there was one.
    pub fn remove_field(&mut self, key: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|f| f.read().schema().key != key);
        before != self.fields.len()
    }

    /// Record `payload` as the new content of `offset`.
    pub fn update(&mut self, offset: PointOffset, payload: &Payload) {
        for f in &mut self.fields {
            match f {
                FieldIndex::Mutable(m) => m.update(offset, payload),
                FieldIndex::Immutable(_) => {
                    self.stale.insert(offset);
                }
            }
        }
    }

    /// Forget the content of a dead `offset` (immutable indexes need not:
    /// dead offsets are masked by the segment).
    pub fn remove(&mut self, offset: PointOffset) {
        for f in &mut self.fields {
            if let FieldIndex::Mutable(m) = f {
                m.remove(offset);
            }
        }
    }

    /// Set the offsets recorded as stale (from `segment.json`).
    pub fn set_stale(&mut self, stale: impl IntoIterator<Item = PointOffset>) {
        self.stale = stale.into_iter().collect();
    }

    /// Populate the immutable index files' pages.
    pub fn populate(&self) {
        for f in &self.fields {
            if let FieldIndex::Immutable(i) = f {
                i.populate();
            }
        }
    }

    /// Drop the immutable index files' pages from the page cache.
    pub fn clear_cache(&self) -> Result<()> {
        for f in &self.fields {
            if let FieldIndex::Immutable(i) = f {
                i.clear_cache()?;
            }
        }
        Ok(())
    }

    /// Bytes of the index files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.fields().map(|f| f.stats().disk_bytes).sum()
    }
}

/// A mutable index of `schema` over every payload of `payloads`.
pub fn build_mutable(
    schema: &FieldSchema,
    payloads: &dyn PayloadStorageRead,
) -> Result<MutableFieldIndex> {
    let mut built = build_mutable_all(std::slice::from_ref(schema), payloads)?;
    Ok(built
        .pop()
        .unwrap_or_else(|| MutableFieldIndex::new(schema.clone())))
}

/// Mutable indexes of every one of `schemas`, in one pass over the
/// payloads (decoding them is most of the cost).
pub fn build_mutable_all(
    schemas: &[FieldSchema],
    payloads: &dyn PayloadStorageRead,
) -> Result<Vec<MutableFieldIndex>> {
    let mut indexes: Vec<MutableFieldIndex> = schemas
        .iter()
        .cloned()
        .map(MutableFieldIndex::new)
        .collect();
    if !indexes.is_empty() {
        payloads.for_each(&mut |offset, payload| {
            for index in &mut indexes {
                index.update(offset, &payload);
            }
            Ok(true)
        })?;
    }
    Ok(indexes)
}

/// Write the immutable index file of `schema` in `segment_dir` from
/// `payloads` (covering `offset_total` offsets) and open it.
pub fn build_immutable(
    segment_dir: &Path,
    schema: &FieldSchema,
    payloads: &dyn PayloadStorageRead,
    offset_total: u32,
) -> Result<ImmutableFieldIndex> {
    let mutable = build_mutable(schema, payloads)?;
    let path = immutable_path(segment_dir, schema);
    std::fs::create_dir_all(path.parent().unwrap_or(segment_dir))
        .map_err(|e| vecseg_traits::StorageError::io(&path, e))?;
    ImmutableFieldIndex::build(
        &path,
        schema,
        offset_total,
        &mut mutable.postings(),
        mutable.skipped(),
    )?;
    ImmutableFieldIndex::open(&path, schema)
}

/// Path of the immutable index file of `schema` in `segment_dir`.
pub fn immutable_path(segment_dir: &Path, schema: &FieldSchema) -> PathBuf {
    segment_dir
        .join(PAYLOAD_INDEX_DIR)
        .join(index_file_name(schema))
}
