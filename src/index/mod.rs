//! Indexes a segment keeps beside its storages.
//!
//! | module      | what it holds                                                   |
//! |-------------|-----------------------------------------------------------------|
//! | [`payload`] | payload field indexes (mutable maps; immutable sorted arrays with bit-packed postings) and cardinality estimates |
//!
//! The filter planner that uses them lives with the segment
//! (`src/segment/filter.rs`): it needs the segment's id map, deleted flags
//! and payloads. The HNSW vector index will go in `hnsw/`.

pub mod payload;
