//! The conformance suite every backend must pass (feature `testing`).
//!
//! A backend implements the factory traits below for its storages and calls
//! [`conformance_suite!`](crate::conformance_suite) once; the macro expands to
//! one `#[test]` per check. The checks themselves are the generic functions
//! in [`vectors`], [`payloads`], [`id_map`] and [`segment`], so every backend
//! runs exactly the same code.
//!
//! Factories receive a fresh temporary directory; in-memory backends ignore it.
//! "Build" means: produce a storage holding the given data in whatever way the
//! backend normally gets data (appending for appendable storages, a bulk
//! build for immutable ones). "Reopen" means: flush, drop, open again from
//! disk (in-memory backends return the storage unchanged).

pub mod id_map;
pub mod model;
pub mod payloads;
pub mod segment;
pub mod vectors;

use std::path::Path;

pub use model::{ModelPoint, Rng, VectorData};

use crate::error::Result;
use crate::id_map::{AppendableIdMapper, IdMapper};
use crate::payload::{AppendablePayloadStorage, PayloadStorage};
use crate::segment::{AppendableSegmentEntry, SegmentEntry};
use crate::types::{Payload, PointId, PointOffset, Version};
use crate::vector::{AppendableVectorStorage, VectorStorage};
use crate::Distance;

/// Makes vector storages of one backend for the suite.
pub trait VectorFactory {
    /// The storage under test.
    type Storage: VectorStorage<Element = f32>;
    /// A storage holding `data` (vectors already in stored form, deleted flags applied).
    fn build(&self, dir: &Path, data: &VectorData) -> Result<Self::Storage>;
    /// Flush, close and reopen `storage` from `dir`.
    fn reopen(&self, dir: &Path, storage: Self::Storage) -> Result<Self::Storage>;
}

/// Makes empty appendable vector storages.
pub trait AppendableVectorFactory: VectorFactory<Storage: AppendableVectorStorage> {
    /// An empty storage.
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Storage>;
}

/// Makes payload storages of one backend for the suite.
pub trait PayloadFactory {
    /// The storage under test.
    type Storage: PayloadStorage;
    /// A storage where `entries[i].0` holds `entries[i].1` and offsets up to
    /// `total` exist (the rest empty).
    fn build(
        &self,
        dir: &Path,
        entries: &[(PointOffset, Payload)],
        total: usize,
    ) -> Result<Self::Storage>;
    /// Flush, close and reopen.
    fn reopen(&self, dir: &Path, storage: Self::Storage) -> Result<Self::Storage>;
}

/// Makes empty appendable payload storages.
pub trait AppendablePayloadFactory: PayloadFactory<Storage: AppendablePayloadStorage> {
    /// An empty storage.
    fn create(&self, dir: &Path) -> Result<Self::Storage>;
}

/// Makes id mappers of one backend for the suite.
pub trait IdMapperFactory {
    /// The mapper under test.
    type Mapper: IdMapper;
    /// A mapper holding `links` (id, offset, version) with `total` offsets allocated.
    fn build(
        &self,
        dir: &Path,
        links: &[(PointId, PointOffset, Version)],
        total: usize,
    ) -> Result<Self::Mapper>;
    /// Flush, close and reopen.
    fn reopen(&self, dir: &Path, mapper: Self::Mapper) -> Result<Self::Mapper>;
}

/// Makes empty appendable id mappers.
pub trait AppendableIdMapperFactory: IdMapperFactory<Mapper: AppendableIdMapper> {
    /// An empty mapper.
    fn create(&self, dir: &Path) -> Result<Self::Mapper>;
}

/// Makes appendable segments.
pub trait SegmentFactory {
    /// The segment under test.
    type Segment: AppendableSegmentEntry<f32>;
    /// An empty segment.
    fn create(&self, dir: &Path, dim: usize, distance: Distance) -> Result<Self::Segment>;
    /// Flush, close and reopen.
    fn reopen(&self, dir: &Path, segment: Self::Segment) -> Result<Self::Segment>;
}

/// Makes immutable segments from points.
pub trait ImmutableSegmentFactory {
    /// The segment under test.
    type Segment: SegmentEntry<f32>;
    /// A segment holding exactly `points` (raw vectors, not yet normalised).
    fn build(
        &self,
        dir: &Path,
        dim: usize,
        distance: Distance,
        points: &[ModelPoint],
    ) -> Result<Self::Segment>;
    /// Flush, close and reopen.
    fn reopen(&self, dir: &Path, segment: Self::Segment) -> Result<Self::Segment>;
}

/// A fresh temporary directory for one check.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vecseg-conformance-")
        .tempdir()
        .expect("create temporary directory")
}

/// Expands to the whole conformance suite for a backend: one `#[test]` per
/// check, grouped in a module per concern.
///
/// Each entry is `concern(kind): factory_expression`, where concern is
/// `vectors`, `payloads`, `id_map` or `segment`, and kind is `appendable` or
/// `immutable` (immutable runs the read, delete and reopen checks;
/// appendable adds the insert checks and, for segments, the model-based
/// property test).
///
/// ```ignore
/// vecseg_traits::conformance_suite! {
///     vectors(appendable): MyVectorFactory,
///     payloads(appendable): MyPayloadFactory,
///     id_map(appendable): MyIdMapperFactory,
///     segment(appendable): MySegmentFactory,
/// }
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($($concern:ident($kind:ident): $factory:expr),* $(,)?) => {
        $( $crate::__conformance_concern!($concern $kind $factory); )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_concern {
    (vectors immutable $f:expr) => {
        mod vectors_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                vectors,
                [
                    reads_match_data,
                    get_batch_matches_get,
                    scan_live_matches_get,
                    scan_blocks_match_get,
                    out_of_range_is_an_error,
                    delete_flags_and_persists,
                    empty_storage_works
                ]
            );
        }
    };
    (vectors appendable $f:expr) => {
        mod vectors_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                vectors,
                [
                    reads_match_data,
                    get_batch_matches_get,
                    scan_live_matches_get,
                    scan_blocks_match_get,
                    out_of_range_is_an_error,
                    delete_flags_and_persists,
                    empty_storage_works,
                    append_overwrite_and_reopen,
                    insert_rejects_bad_offsets_and_dims,
                    many_appends_survive_reopen
                ]
            );
        }
    };
    (payloads immutable $f:expr) => {
        mod payloads_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                payloads,
                [reads_match_data, clear_removes_and_persists]
            );
        }
    };
    (payloads appendable $f:expr) => {
        mod payloads_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                payloads,
                [
                    reads_match_data,
                    clear_removes_and_persists,
                    set_merges_overwrite_replaces,
                    large_and_odd_payloads_round_trip,
                    random_operations_match_model
                ]
            );
        }
    };
    (id_map immutable $f:expr) => {
        mod id_map_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                id_map,
                [
                    lookups_match_data,
                    unknown_ids_are_absent,
                    drop_and_versions_persist
                ]
            );
        }
    };
    (id_map appendable $f:expr) => {
        mod id_map_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                id_map,
                [
                    lookups_match_data,
                    unknown_ids_are_absent,
                    drop_and_versions_persist,
                    links_relinks_and_reopen
                ]
            );
        }
    };
    (segment immutable $f:expr) => {
        mod segment_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                segment,
                [
                    immutable_reads_match_points,
                    immutable_delete_and_clear_persist
                ]
            );
        }
    };
    (segment appendable $f:expr) => {
        mod segment_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(
                $f,
                segment,
                [
                    upsert_get_search_scroll,
                    versions_make_replay_idempotent,
                    payload_operations,
                    bad_input_is_an_error,
                    reopen_keeps_everything,
                    matches_model_under_random_operations
                ]
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($f:expr, $module:ident, [$($name:ident),* $(,)?]) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::$module::$name(&$f);
            }
        )*
    };
}
