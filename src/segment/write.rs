//! Writes: upsert, delete and payload changes, each guarded by the point's version.

use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapper, Payload,
    PayloadStorage, PointId, PointOffset, Result, StorageError, VectorElement, VectorStorage,
    Version,
};

use super::Segment;

/// What a version check decided for an existing point.
enum Target {
    /// Apply the operation to this offset.
    Apply(PointOffset),
    /// The operation is older than the point; ignore it.
    Stale,
}

impl<V: VectorStorage, P: PayloadStorage, I: IdMapper> Segment<V, P, I> {
    /// Offset of `id` if present and `version` is not older than the point's.
    fn target(&self, version: Version, id: PointId) -> Option<Target> {
        let offset = self.ids.internal(id)?;
        match self.ids.version(offset) {
            Some(current) if current > version => Some(Target::Stale),
            _ => Some(Target::Apply(offset)),
        }
    }

    /// Like `target`, but an absent point is `NotFound`.
    fn existing_target(&self, version: Version, id: PointId) -> Result<Target> {
        self.target(version, id).ok_or(StorageError::NotFound(id))
    }

    /// Record an applied operation on `offset`.
    fn applied(&mut self, version: Version, offset: PointOffset) -> Result<bool> {
        self.ids.set_version(offset, version)?;
        self.version = self.version.max(version);
        Ok(true)
    }

    /// Delete point `id`. `Ok(false)` when absent or when `version` is older
    /// than the point's.
    pub fn delete(&mut self, version: Version, id: PointId) -> Result<bool> {
        let offset = match self.target(version, id) {
            None | Some(Target::Stale) => return Ok(false),
            Some(Target::Apply(o)) => o,
        };
        self.ids.drop_id(id)?;
        self.clear_slot(offset)?;
        self.version = self.version.max(version);
        Ok(true)
    }

    /// Run `change` on the payload slot of existing point `id` unless the
    /// operation is stale, then record the version.
    fn change_payload(
        &mut self,
        version: Version,
        id: PointId,
        change: impl FnOnce(&mut P, PointOffset) -> Result<()>,
    ) -> Result<bool> {
        match self.existing_target(version, id)? {
            Target::Stale => Ok(false),
            Target::Apply(o) => {
                change(&mut self.payloads, o)?;
                self.applied(version, o)
            }
        }
    }

    /// Remove the whole payload of `id`.
    pub fn clear_payload(&mut self, version: Version, id: PointId) -> Result<bool> {
        self.change_payload(version, id, |p, o| p.clear(o).map(drop))
    }
}

impl<V, P, I> Segment<V, P, I>
where
    V: AppendableVectorStorage,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    /// Insert or replace point `id` with `vector` and `payload`. The vector
    /// is validated (dimension, finite components, non-zero for cosine) and
    /// normalised for cosine. `Ok(false)` when `version` is older than the
    /// point's.
    pub fn upsert(
        &mut self,
        version: Version,
        id: PointId,
        vector: &[V::Element],
        payload: &Payload,
    ) -> Result<bool> {
        let stored = self.prepare_vector(vector)?;
        let offset = match self.target(version, id) {
            Some(Target::Stale) => return Ok(false),
            Some(Target::Apply(o)) => o,
            None => self.ids.total_count() as PointOffset,
        };
        self.pad_vectors_to(offset)?;
        self.vectors.insert(offset, &stored)?;
        self.payloads.overwrite(offset, payload)?;
        if self.ids.internal(id) != Some(offset) {
            self.ids.set_link(id, offset)?;
        }
        self.applied(version, offset)
    }

    /// Validate and preprocess a vector for this segment.
    pub(crate) fn prepare_vector(&self, vector: &[V::Element]) -> Result<Vec<V::Element>> {
        V::Element::validate(vector, self.vectors.dim())?;
        let mut stored = vector.to_vec();
        V::Element::preprocess(self.vectors.distance(), &mut stored)?;
        Ok(stored)
    }

    /// After a crash the id mapper can be ahead of the vector storage; fill
    /// the gap with deleted placeholder slots so offsets stay aligned.
    fn pad_vectors_to(&mut self, offset: PointOffset) -> Result<()> {
        let filler = vec![V::Element::default(); self.vectors.dim()];
        while (self.vectors.total_count() as PointOffset) < offset {
            let o = self.vectors.total_count() as PointOffset;
            self.vectors.insert(o, &filler)?;
            self.vectors.delete(o)?;
        }
        Ok(())
    }

    /// Merge `payload` into point `id`'s payload.
    pub fn set_payload(
        &mut self,
        version: Version,
        id: PointId,
        payload: &Payload,
    ) -> Result<bool> {
        self.change_payload(version, id, |p, o| p.set(o, payload))
    }

    /// Replace point `id`'s payload.
    pub fn overwrite_payload(
        &mut self,
        version: Version,
        id: PointId,
        payload: &Payload,
    ) -> Result<bool> {
        self.change_payload(version, id, |p, o| p.overwrite(o, payload))
    }

    /// Remove `keys` from point `id`'s payload.
    pub fn delete_payload_keys(
        &mut self,
        version: Version,
        id: PointId,
        keys: &[&str],
    ) -> Result<bool> {
        self.change_payload(version, id, |p, o| p.delete_keys(o, keys).map(drop))
    }
}
