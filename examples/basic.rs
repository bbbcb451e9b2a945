//! Build an in-memory segment, search it with and without a filter, and
//! print the results: the smallest end-to-end use of vecseg.

use vecseg::memory::{MemoryIdMapper, MemoryPayloadStorage, MemoryVectorStorage};
use vecseg::{Condition, Distance, Filter, PointId, Segment, StorageError};

fn main() -> Result<(), StorageError> {
    let vectors = MemoryVectorStorage::<f32>::new(3, Distance::Cosine)?;
    let mut segment = Segment::new(vectors, MemoryPayloadStorage::new(), MemoryIdMapper::new());
    let points = [
        (1, [1.0, 0.0, 0.0], "acme"),
        (2, [0.9, 0.1, 0.0], "globex"),
        (3, [0.0, 1.0, 0.0], "acme"),
        (4, [0.0, 0.0, 1.0], "globex"),
    ];
    for (version, (id, vector, tenant)) in points.iter().enumerate() {
        let payload = serde_json::json!({ "tenant": tenant })
            .as_object()
            .cloned()
            .unwrap_or_default();
        segment.upsert(version as u64 + 1, PointId::Num(*id), vector, &payload)?;
    }
    let query = [1.0, 0.2, 0.0];
    println!("top 3 for {query:?}:");
    for hit in segment.search(&query, 3, None)? {
        println!("  id {:>2}  score {:.4}", hit.id, hit.score);
    }
    let acme = Filter::must(Condition::keyword("tenant", "acme"));
    println!("top 3 with tenant = acme:");
    for hit in segment.search(&query, 3, Some(&acme))? {
        println!("  id {:>2}  score {:.4}", hit.id, hit.score);
    }
    Ok(())
}
