//! [`MemoryIdMapper`]: a `BTreeMap` for external -> internal (ordered
//! iteration for free) and vectors for internal -> external and versions.

use std::collections::BTreeMap;

use vecseg_traits::{
    AppendableIdMapper, IdMapper, IdMapperRead, PointId, PointOffset, Result, StorageError, Version,
};

/// Id mapping and versions held in RAM.
#[derive(Debug, Clone, Default)]
pub struct MemoryIdMapper {
    by_external: BTreeMap<PointId, PointOffset>,
    by_internal: Vec<Option<PointId>>,
    versions: Vec<Option<Version>>,
}

impl MemoryIdMapper {
    /// An empty mapper.
    pub fn new() -> Self {
        Self::default()
    }
}

impl IdMapperRead for MemoryIdMapper {
    fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
        Ok(self.by_external.get(&id).copied())
    }

    fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
        Ok(self.by_internal.get(offset as usize).copied().flatten())
    }

    fn version(&self, offset: PointOffset) -> Result<Option<Version>> {
        Ok(self.versions.get(offset as usize).copied().flatten())
    }

    fn total_count(&self) -> usize {
        self.by_internal.len()
    }

    fn available_count(&self) -> usize {
        self.by_external.len()
    }

    /// Nothing is ever on disk.
    fn durable_offsets(&self) -> usize {
        0
    }

    fn iter_from(
        &self,
        from: Option<PointId>,
    ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_> {
        match from {
            Some(start) => Box::new(self.by_external.range(start..).map(|(k, v)| Ok((*k, *v)))),
            None => Box::new(self.by_external.iter().map(|(k, v)| Ok((*k, *v)))),
        }
    }
}

impl IdMapper for MemoryIdMapper {
    fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
        let offset = self.by_external.remove(&id);
        if let Some(o) = offset {
            self.by_internal[o as usize] = None;
        }
        Ok(offset)
    }

    fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()> {
        let slot =
            self.versions
                .get_mut(offset as usize)
                .ok_or(StorageError::OffsetOutOfRange {
                    offset,
                    len: self.by_internal.len(),
                })?;
        *slot = Some(version);
        Ok(())
    }

    fn flush_mappings(&mut self) -> Result<()> {
        Ok(())
    }

    fn flush_versions(&mut self) -> Result<()> {
        Ok(())
    }
}

impl AppendableIdMapper for MemoryIdMapper {
    fn set_link(&mut self, id: PointId, offset: PointOffset, version: Version) -> Result<()> {
        let index = offset as usize;
        let total = self.by_internal.len();
        if index > total {
            return Err(StorageError::OffsetOutOfRange { offset, len: total });
        }
        if index == total {
            self.by_internal.push(None);
            self.versions.push(None);
        }
        if let Some(old_id) = self.by_internal[index] {
            self.by_external.remove(&old_id);
        }
        if let Some(old) = self.by_external.insert(id, offset) {
            if old != offset {
                self.by_internal[old as usize] = None;
            }
        }
        self.by_internal[index] = Some(id);
        self.versions[index] = Some(version);
        Ok(())
    }
}
