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

    /// Up to `limit` ids in increasing order from `from` (inclusive) that
    /// pass `filter` (through the planner: see [`Segment::plan`]).
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<PointId>> {
        if let Some(f) = filter {
            if let Some(offsets) = self.indexed_matches(f)? {
                let mut ids = Vec::with_capacity(offsets.len());
                for o in offsets {
                    if let Some(id) = self.ids.external(o)? {
                        if from.is_none_or(|from| id >= from) {
                            ids.push(id);
                        }
                    }
                }
                ids.sort_unstable();
                ids.truncate(limit);
                return Ok(ids);
            }
        }
        let mut out = Vec::new();
        for entry in self.ids.iter_from(from) {
            if out.len() >= limit {
                break;
            }
            let (id, offset) = entry?;
            if filter.map_or(Ok(true), |f| self.check(f, offset))? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Number of live points passing `filter` (all live points for
    /// `None`), through the planner like [`Segment::scroll`].
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        let Some(f) = filter else {
            return Ok(self.ids.available_count());
        };
        if let Some(offsets) = self.indexed_matches(f)? {
            return Ok(offsets.len());
        }
        let mut n = 0;
        for entry in self.ids.iter_from(None) {
            let (_, offset) = entry?;
            n += usize::from(self.check(f, offset)?);
        }
        Ok(n)
    }
}
