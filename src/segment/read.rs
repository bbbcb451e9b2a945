//! Reads: whole records and ordered scrolling.

use vecseg_traits::{
    Filter, IdMapperRead, PayloadStorageRead, PointId, PointOffset, Random, Record, Result,
    VectorStorageRead, Version,
};

use super::Segment;

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// The whole point `id`, or `None` if it is not in the segment.
    pub fn get(&self, id: PointId) -> Result<Option<Record<V::Element>>> {
        let Some(offset) = self.ids.internal(id)? else {
            return Ok(None);
        };
        Ok(Some(Record {
            id,
            version: self.ids.version(offset)?.unwrap_or(0),
            vector: self.vectors.get::<Random>(offset)?.to_vec(),
            payload: self.payloads.get(offset)?,
        }))
    }

    /// Version of point `id`, if present.
    pub fn point_version(&self, id: PointId) -> Result<Option<Version>> {
        match self.ids.internal(id)? {
            Some(o) => self.ids.version(o),
            None => Ok(None),
        }
    }

    /// Internal offset of point `id`, if present.
    pub fn offset_of(&self, id: PointId) -> Result<Option<PointOffset>> {
        self.ids.internal(id)
    }

    /// Up to `limit` ids in increasing order from `from` (inclusive) that pass `filter`.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<PointId>> {
        let mut out = Vec::new();
        for entry in self.ids.iter_from(from) {
            if out.len() >= limit {
                break;
            }
            let (id, offset) = entry?;
            if self.passes(filter, id, offset)? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Whether the point (`id`, `offset`) passes `filter` (reading the
    /// payload only when the filter needs it).
    pub(crate) fn passes(
        &self,
        filter: Option<&Filter>,
        id: PointId,
        offset: PointOffset,
    ) -> Result<bool> {
        Ok(match filter {
            None => true,
            Some(f) if f.needs_payload() => f.matches(id, &self.payloads.get(offset)?),
            Some(f) => f.matches(id, &Default::default()),
        })
    }
}
