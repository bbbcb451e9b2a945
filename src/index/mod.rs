//! Indexes a segment keeps beside its storages.
//!
//! | module      | what it holds                                                   |
//! |-------------|-----------------------------------------------------------------|
//! | [`payload`] | payload field indexes (mutable maps; immutable sorted arrays with bit-packed postings) and cardinality estimates |
//! | [`hnsw`]    | the HNSW vector index: parallel build, payload-aware links, mmap links file, filtered search |
//!
//! The filter planner that uses them lives with the segment
//! (`src/segment/filter.rs`): it needs the segment's id map, deleted flags
//! and payloads.

pub mod hnsw;
pub mod payload;
