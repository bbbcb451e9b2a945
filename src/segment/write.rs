//! Writes: upsert, delete and payload changes, each guarded by the point's version.

use vecseg_traits::payload::validate_payload;
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
    fn target(&self, version: Version, id: PointId) -> Result<Option<Target>> {
        let Some(offset) = self.ids.internal(id)? else {
            return Ok(None);
        };
        Ok(Some(match self.ids.version(offset)? {
            Some(current) if current > version => Target::Stale,
            _ => Target::Apply(offset),
        }))
    }

    /// Like `target`, but an absent point is `NotFound`.
    fn existing_target(&self, version: Version, id: PointId) -> Result<Target> {
        self.target(version, id)?.ok_or(StorageError::NotFound(id))
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
        let offset = match self.target(version, id)? {
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
                if !self.index.is_empty() {
                    let now = self.payloads.get(o)?;
                    self.index.update(o, &now);
                }
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
    ///
    /// A point whose offset is durable moves to a new offset (the old one
    /// is retired), so a crash before the next flush completes leaves the
    /// old version whole; see the module docs of `segment`.
    pub fn upsert(
        &mut self,
        version: Version,
        id: PointId,
        vector: &[V::Element],
        payload: &Payload,
    ) -> Result<bool> {
        let stored = self.prepare_vector(vector)?;
        validate_payload(payload)?;
        self.upsert_prepared(version, id, &stored, payload)
    }

    /// [`upsert`](Self::upsert) of a vector already validated and
    /// preprocessed, with a validated payload.
    pub(crate) fn upsert_prepared(
        &mut self,
        version: Version,
        id: PointId,
        stored: &[V::Element],
        payload: &Payload,
    ) -> Result<bool> {
        let (offset, retired) = match self.target(version, id)? {
            Some(Target::Stale) => return Ok(false),
            Some(Target::Apply(o)) if o as usize >= self.ids.durable_offsets() => (o, None),
            Some(Target::Apply(o)) => (self.next_offset()?, Some(o)),
            None => (self.next_offset()?, None),
        };
        self.pad_vectors_to(offset)?;
        self.vectors.insert(offset, stored)?;
        self.payloads.overwrite(offset, payload)?;
        self.index.update(offset, payload);
        if self.ids.internal(id)? == Some(offset) {
            self.ids.set_version(offset, version)?;
        } else {
            self.ids.set_link(id, offset, version)?;
        }
        if let Some(old) = retired {
            self.clear_slot(old)?;
        }
        self.version = self.version.max(version);
        Ok(true)
    }

    /// The offset a new point gets: the id mapper's next one. An error once
    /// the segment holds `u32::MAX` offsets (offsets are `u32`; the last
    /// value is never handed out).
    fn next_offset(&self) -> Result<PointOffset> {
        let total = self.ids.total_count();
        PointOffset::try_from(total)
            .ok()
            .filter(|&o| o < PointOffset::MAX)
            .ok_or_else(|| {
                StorageError::InvalidArgument(format!(
                    "segment is full: {total} offsets allocated, offsets are 32-bit"
                ))
            })
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
        validate_payload(payload)?;
        self.change_payload(version, id, |p, o| p.set(o, payload))
    }

    /// Replace point `id`'s payload.
    pub fn overwrite_payload(
        &mut self,
        version: Version,
        id: PointId,
        payload: &Payload,
    ) -> Result<bool> {
        validate_payload(payload)?;
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

#[cfg(test)]
mod tests {
    use vecseg_memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
    use vecseg_traits::{
        Distance, IdMapperRead, PayloadStorageRead, PointId, StorageError, VectorStorageRead,
    };

    use super::*;

    fn segment() -> Segment<MemoryVectorStorage<f32>, MemoryPayloadStorage, MemoryIdMapper> {
        Segment::new(
            MemoryVectorStorage::new(2, Distance::Dot).unwrap(),
            MemoryPayloadStorage::new(),
            MemoryIdMapper::new(),
        )
    }

    fn payload(v: u64) -> Payload {
        serde_json::json!({ "v": v }).as_object().unwrap().clone()
    }

    #[test]
    fn durable_points_move_and_fresh_points_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s =
            crate::kinds::create_chunked_segment::<f32>(dir.path(), 2, Distance::Dot).unwrap();
        let a = PointId::Num(1);
        s.upsert(1, a, &[1.0, 0.0], &payload(1)).unwrap();
        s.upsert(2, a, &[2.0, 0.0], &payload(2)).unwrap();
        assert_eq!(
            s.offset_of(a).unwrap(),
            Some(0),
            "not durable yet: in place"
        );
        s.flush().unwrap();
        s.upsert(3, a, &[3.0, 0.0], &payload(3)).unwrap();
        assert_eq!(s.offset_of(a).unwrap(), Some(1), "durable: moved");
        assert!(s.vectors().is_deleted(0));
        assert_eq!(s.ids().external(0).unwrap(), None);
        let r = s.get(a).unwrap().unwrap();
        assert_eq!(
            (r.vector, r.payload, r.version),
            (vec![3.0, 0.0], payload(3), 3)
        );
        // The retired payload is cleared at the next flush.
        assert_eq!(s.payloads().get(0).unwrap(), payload(2));
        s.flush().unwrap();
        assert!(s.payloads().get(0).unwrap().is_empty());
        assert_eq!(s.point_count(), 1);
    }

    #[test]
    fn memory_segments_overwrite_in_place() {
        let mut s = segment();
        let a = PointId::Num(1);
        s.upsert(1, a, &[1.0, 0.0], &payload(1)).unwrap();
        s.flush().unwrap();
        s.upsert(2, a, &[2.0, 0.0], &payload(2)).unwrap();
        assert_eq!(s.offset_of(a).unwrap(), Some(0));
        assert_eq!(s.vectors().total_count(), 1);
    }

    /// An id mapper that claims every 32-bit offset is taken.
    struct FullIds(MemoryIdMapper);

    impl IdMapperRead for FullIds {
        fn internal(&self, id: PointId) -> Result<Option<PointOffset>> {
            self.0.internal(id)
        }
        fn external(&self, offset: PointOffset) -> Result<Option<PointId>> {
            self.0.external(offset)
        }
        fn version(&self, offset: PointOffset) -> Result<Option<Version>> {
            self.0.version(offset)
        }
        fn total_count(&self) -> usize {
            u32::MAX as usize
        }
        fn available_count(&self) -> usize {
            0
        }
        fn iter_from(
            &self,
            from: Option<PointId>,
        ) -> Box<dyn Iterator<Item = Result<(PointId, PointOffset)>> + '_> {
            self.0.iter_from(from)
        }
    }

    impl IdMapper for FullIds {
        fn drop_id(&mut self, id: PointId) -> Result<Option<PointOffset>> {
            self.0.drop_id(id)
        }
        fn set_version(&mut self, offset: PointOffset, version: Version) -> Result<()> {
            self.0.set_version(offset, version)
        }
        fn flush_mappings(&mut self) -> Result<()> {
            Ok(())
        }
        fn flush_versions(&mut self) -> Result<()> {
            Ok(())
        }
    }

    impl AppendableIdMapper for FullIds {
        fn set_link(&mut self, id: PointId, offset: PointOffset, version: Version) -> Result<()> {
            self.0.set_link(id, offset, version)
        }
    }

    #[test]
    fn payloads_nested_too_deep_are_rejected_before_anything_is_written() {
        let mut s = segment();
        let deep =
            vecseg_traits::payload::nested_payload(vecseg_traits::payload::MAX_PAYLOAD_DEPTH + 1);
        let a = PointId::Num(1);
        assert!(matches!(
            s.upsert(1, a, &[1.0, 0.0], &deep),
            Err(StorageError::InvalidArgument(_))
        ));
        assert_eq!(s.point_count(), 0);
        s.upsert(2, a, &[1.0, 0.0], &payload(2)).unwrap();
        assert!(s.set_payload(3, a, &deep).is_err());
        assert!(s.overwrite_payload(3, a, &deep).is_err());
        assert_eq!(s.get(a).unwrap().unwrap().payload, payload(2));
    }

    #[test]
    fn a_full_segment_refuses_new_points_instead_of_wrapping() {
        let mut s = Segment::new(
            MemoryVectorStorage::new(2, Distance::Dot).unwrap(),
            MemoryPayloadStorage::new(),
            FullIds(MemoryIdMapper::new()),
        );
        let e = s
            .upsert(1, PointId::Num(1), &[1.0, 0.0], &Payload::new())
            .unwrap_err();
        assert!(matches!(e, StorageError::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("segment is full"), "{e}");
        assert_eq!(s.vectors().total_count(), 0, "nothing was written");
    }
}
