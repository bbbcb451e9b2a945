//! [`SegmentEntry`] / [`AppendableSegmentEntry`] for every `Segment<V, P, I>`
//! whose storages support them.

use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableSegmentEntry, AppendableVectorStorage,
    Distance, FieldSchema, Filter, IdMapper, Payload, PayloadStorage, PointId, Record, Result,
    ScoredPoint, SegmentEntry, VectorStorage, Version,
};

use super::state::BackendNames;
use super::Segment;

impl<V, P, I> SegmentEntry<V::Element> for Segment<V, P, I>
where
    V: VectorStorage,
    P: PayloadStorage,
    I: IdMapper,
{
    fn version(&self) -> Version {
        self.version
    }

    fn persisted_version(&self) -> Version {
        self.persisted_version
    }

    fn dim(&self) -> usize {
        self.vectors.dim()
    }

    fn distance(&self) -> Distance {
        self.vectors.distance()
    }

    fn point_count(&self) -> usize {
        self.ids.available_count()
    }

    fn slot_count(&self) -> usize {
        self.vectors.total_count()
    }

    fn tenant_key(&self) -> Option<String> {
        self.tenants.as_ref().map(|t| t.key.clone())
    }

    fn point_version(&self, id: PointId) -> Result<Option<Version>> {
        Segment::point_version(self, id)
    }

    fn get(&self, id: PointId) -> Result<Option<Record<V::Element>>> {
        Segment::get(self, id)
    }

    fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<PointId>> {
        Segment::scroll(self, from, limit, filter)
    }

    fn search(
        &self,
        query: &[V::Element],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        Segment::search(self, query, k, filter)
    }

    fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        Segment::count(self, filter)
    }

    fn create_field_index(&mut self, schema: FieldSchema) -> Result<()> {
        Segment::create_field_index(self, schema).map(drop)
    }

    fn drop_field_index(&mut self, key: &str) -> Result<bool> {
        Segment::drop_field_index(self, key)
    }

    fn field_indexes(&self) -> Vec<FieldSchema> {
        Segment::field_indexes(self)
    }

    fn delete(&mut self, version: Version, id: PointId) -> Result<bool> {
        Segment::delete(self, version, id)
    }

    fn clear_payload(&mut self, version: Version, id: PointId) -> Result<bool> {
        Segment::clear_payload(self, version, id)
    }

    fn flush(&mut self) -> Result<Version> {
        Segment::flush(self)
    }

    fn describe(&self) -> String {
        let names = BackendNames::of::<V, P, I>();
        format!("{} / {} / {}", names.vectors, names.payloads, names.ids)
    }

    fn disk_bytes(&self) -> u64 {
        self.vectors.disk_bytes() + self.payloads.disk_bytes() + self.ids.disk_bytes()
    }
}

impl<V, P, I> AppendableSegmentEntry<V::Element> for Segment<V, P, I>
where
    V: AppendableVectorStorage,
    P: AppendablePayloadStorage,
    I: AppendableIdMapper,
{
    fn upsert(
        &mut self,
        version: Version,
        id: PointId,
        vector: &[V::Element],
        payload: &Payload,
    ) -> Result<bool> {
        Segment::upsert(self, version, id, vector, payload)
    }

    fn set_payload(&mut self, version: Version, id: PointId, payload: &Payload) -> Result<bool> {
        Segment::set_payload(self, version, id, payload)
    }

    fn overwrite_payload(
        &mut self,
        version: Version,
        id: PointId,
        payload: &Payload,
    ) -> Result<bool> {
        Segment::overwrite_payload(self, version, id, payload)
    }

    fn delete_payload_keys(
        &mut self,
        version: Version,
        id: PointId,
        keys: &[String],
    ) -> Result<bool> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Segment::delete_payload_keys(self, version, id, &keys)
    }
}
