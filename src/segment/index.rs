//! Payload indexes of a segment: create, drop, load at open.
//!
//! The form follows the payload storage: an immutable one (mmap) gets the
//! immutable file form, written once into `payload_index/`; the others get
//! the mutable form in RAM, rebuilt from the payloads at open. Which keys
//! are indexed is recorded in `segment.json`.

use vecseg_traits::{
    IdMapper, IdMapperRead, PayloadStorage, PayloadStorageRead, Result, StorageError,
    VectorStorage, VectorStorageRead,
};

use super::Segment;
use crate::index::payload::{
    build_immutable, build_mutable, build_mutable_all, immutable_path, FieldIndex, FieldIndexStats,
    FieldSchema, ImmutableFieldIndex, PayloadIndex, PayloadIndexState,
};

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// The segment's payload indexes.
    pub fn payload_index(&self) -> &PayloadIndex {
        &self.index
    }

    /// The schemas of the indexed keys.
    pub fn field_indexes(&self) -> Vec<FieldSchema> {
        self.index.schemas()
    }

    /// Build the index of `schema` in the form this segment's payload
    /// storage calls for (see the module docs).
    fn build_field_index(&self, schema: &FieldSchema) -> Result<FieldIndex> {
        match &self.dir {
            Some(dir) if self.payloads.is_immutable() => {
                let total = u32::try_from(self.ids.total_count()).map_err(|_| {
                    StorageError::InvalidArgument("segment has more than u32::MAX offsets".into())
                })?;
                Ok(FieldIndex::Immutable(build_immutable(
                    dir,
                    schema,
                    &self.payloads,
                    total,
                )?))
            }
            _ => Ok(FieldIndex::Mutable(build_mutable(schema, &self.payloads)?)),
        }
    }

    /// Load the indexes `state` names (at open): immutable files are
    /// opened, and rebuilt from the payloads with a warning when missing or
    /// damaged; mutable indexes are rebuilt from the payloads.
    pub(crate) fn load_index(&mut self, state: PayloadIndexState) -> Result<()> {
        let mut index = PayloadIndex::default();
        index.set_stale(state.stale.iter().copied());
        match &self.dir {
            Some(dir) if self.payloads.is_immutable() => {
                for schema in &state.fields {
                    let path = immutable_path(dir, schema);
                    let field = match ImmutableFieldIndex::open(&path, schema) {
                        Ok(i) => FieldIndex::Immutable(i),
                        Err(e) => {
                            log::warn!(
                                "payload index of {:?} unusable ({e}); rebuilding it from the payloads",
                                schema.key
                            );
                            self.rebuilt_or_in_ram(schema)?
                        }
                    };
                    index.insert(field);
                }
            }
            _ => {
                for field in build_mutable_all(&state.fields, &self.payloads)? {
                    index.insert(FieldIndex::Mutable(field));
                }
            }
        }
        self.index = index;
        Ok(())
    }

    /// A rebuilt immutable file, or (when it cannot be written, e.g. a
    /// read-only directory) the same index in RAM.
    fn rebuilt_or_in_ram(&self, schema: &FieldSchema) -> Result<FieldIndex> {
        self.build_field_index(schema).or_else(|e| {
            log::warn!(
                "cannot rewrite the payload index of {:?} ({e}); keeping it in RAM",
                schema.key
            );
            Ok(FieldIndex::Mutable(build_mutable(schema, &self.payloads)?))
        })
    }
}

impl<V: VectorStorage, P: PayloadStorage, I: IdMapper> Segment<V, P, I> {
    /// Index payload key `schema.key` (replacing an index of the same key)
    /// and, for a persistent segment, flush so `segment.json` records it.
    /// Values of another type at the key are not indexed: the returned
    /// stats count the points holding them as `skipped` (conditions on
    /// those points read their payload).
    pub fn create_field_index(&mut self, schema: FieldSchema) -> Result<FieldIndexStats> {
        if schema.key.is_empty() {
            return Err(StorageError::InvalidArgument(
                "a payload index needs a non-empty key".into(),
            ));
        }
        if self.payloads.is_immutable() && self.dir.is_some() {
            // The file is built from the payloads on disk.
            self.flush()?;
        }
        let field = self.build_field_index(&schema)?;
        let stats = field.read().stats();
        self.index.insert(field);
        if self.dir.is_some() {
            self.flush()?;
        }
        Ok(stats)
    }

    /// Drop the index of `key` (its file, if any, is removed after
    /// `segment.json` stops naming it); whether there was one.
    pub fn drop_field_index(&mut self, key: &str) -> Result<bool> {
        let Some(schema) = self.index.field(key).map(|f| f.schema().clone()) else {
            return Ok(false);
        };
        self.index.remove_field(key);
        if let Some(dir) = self.dir.clone() {
            self.flush()?;
            let path = immutable_path(&dir, &schema);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            }
        }
        Ok(true)
    }
}
