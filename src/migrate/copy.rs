//! The generic copy: any segment into any appendable segment, and a build
//! path into the immutable mmap storages.

use std::path::Path;
use std::time::Instant;

use vecseg_mmap::id_map::NumSlotPlan;
use vecseg_mmap::{MmapIdMapper, MmapPayloadStorage, MmapVectorOptions, MmapVectorStorage};
use vecseg_traits::{
    AppendableIdMapper, AppendablePayloadStorage, AppendableVectorStorage, IdMapperRead,
    PayloadStorageRead, Result, StorageError, VectorElement, VectorStorageRead,
};

use super::checksum::Checksum;
use super::slots::{placeholder_id, read_batch, slot_count, write_batch};
use super::verify::{verify, VerifyOptions};
use super::{MigrateOptions, MigrationReport, Phase, Progress};
use crate::kinds::MmapSegment;
use crate::Segment;

/// Running state of a copy: where it is and what it has seen so far. Saved
/// by the in-place upgrade after every flushed batch so a re-run resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyCursor {
    /// Next offset to copy.
    pub next: u64,
    /// Digest of the source slots `0..next`.
    pub checksum: u64,
    /// Mapped points copied so far.
    pub points: u64,
    /// Vector bytes copied so far.
    pub vector_bytes: u64,
    /// Payload bytes (JSON) copied so far.
    pub payload_bytes: u64,
}

impl CopyCursor {
    /// A cursor at offset 0.
    pub fn new() -> Self {
        CopyCursor {
            checksum: Checksum::default().value(),
            ..Default::default()
        }
    }
}

/// Check that `target` can receive `source`'s vectors.
fn check_compatible<SV: VectorStorageRead, TV: VectorStorageRead>(
    source: &SV,
    target: &TV,
) -> Result<()> {
    if source.dim() != target.dim() || source.distance() != target.distance() {
        return Err(StorageError::InvalidArgument(format!(
            "target is {}-dimensional {:?}, source {}-dimensional {:?}",
            target.dim(),
            target.distance(),
            source.dim(),
            source.distance()
        )));
    }
    Ok(())
}

/// Reads a run of source offsets; [`read_batch`] for any segment, or a
/// backend's bulk path (see [`super::read_rocks_batch`]).
pub type BatchReader<'a, T> =
    &'a (dyn Fn(std::ops::Range<usize>) -> Result<super::SlotBatch<T>> + Sync);

/// Hook run after each written batch: `(target, source batch, slot hashes
/// of the source batch, cursor past the batch)`. It runs on the writing
/// side of the pipeline, while the next batch is read.
pub type AfterBatch<'a, S, T> =
    &'a mut (dyn FnMut(&mut S, &super::SlotBatch<T>, &[u64], &CopyCursor) -> Result<()> + Send);

/// A source batch with its slot hashes and JSON payload bytes.
type Hashed<T> = (super::SlotBatch<T>, Vec<u64>, u64);

/// Copy source offsets from `cursor.next` up to `end` into `target`, batch by
/// batch through `reader`, advancing `cursor`. Two stages overlap: one
/// thread reads batch `k + 1` and computes its slot hashes
/// ([`super::Checksum::slot_hash`]) while the other writes batch `k` and
/// runs `after_batch` with the batch's source contents and hashes (the
/// in-place upgrade flushes, reads back, records the hashes and saves its
/// marker there). Slots at or above `fresh_from` are known to be empty in
/// `target`.
#[allow(clippy::too_many_arguments)]
pub fn copy_range<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    reader: BatchReader<'_, SV::Element>,
    target: &mut Segment<TV, TP, TI>,
    cursor: &mut CopyCursor,
    end: usize,
    fresh_from: usize,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
    after_batch: AfterBatch<'_, Segment<TV, TP, TI>, SV::Element>,
) -> Result<()>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: AppendableVectorStorage<Element = SV::Element>,
    TP: AppendablePayloadStorage,
    TI: AppendableIdMapper,
{
    check_compatible(&source.vectors, &target.vectors)?;
    let batch_len = options.batch_slots.max(1);
    let placeholder = placeholder_id(source)?;
    let elem = std::mem::size_of::<SV::Element>() as u64;
    let read_hashed = |start: usize| -> Result<Option<Hashed<SV::Element>>> {
        if start >= end {
            return Ok(None);
        }
        let batch = reader(start..start.saturating_add(batch_len).min(end))?;
        let (hashes, payload_bytes) = batch.slot_hashes();
        Ok(Some((batch, hashes, payload_bytes)))
    };
    let mut pending = read_hashed(cursor.next as usize)?;
    while let Some((batch, hashes, payload_bytes)) = pending.take() {
        let next_start = batch.start as usize + batch.len();
        let mut checksum = Checksum::from_value(cursor.checksum);
        hashes.iter().for_each(|&h| checksum.mix(h));
        cursor.checksum = checksum.value();
        cursor.payload_bytes += payload_bytes;
        cursor.points += batch.mapped() as u64;
        cursor.vector_bytes += (batch.vector_slots * batch.dim) as u64 * elem;
        cursor.next = next_start as u64;
        let after = *cursor;
        let (read, written) = rayon::join(
            || read_hashed(next_start),
            || {
                write_batch(target, &batch, placeholder, fresh_from)?;
                after_batch(target, &batch, &hashes, &after)
            },
        );
        written?;
        progress(&Progress {
            phase: Phase::Copy,
            done: cursor.next,
            total: end as u64,
            bytes: cursor.vector_bytes + cursor.payload_bytes,
        });
        pending = read?;
    }
    Ok(())
}

/// Copy every slot of `source` into the empty appendable `target`: each
/// point's vector, payload, external id, version and deleted state, at the
/// same offsets, in increasing offset order; then set the segment version,
/// flush `target` and (unless `options.verify` is off) verify both sides
/// point by point and by checksum.
///
/// Returns [`StorageError::VerificationFailed`] when the copy does not read
/// back identical.
pub fn migrate<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    target: &mut Segment<TV, TP, TI>,
    options: &MigrateOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationReport>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: AppendableVectorStorage<Element = SV::Element>,
    TP: AppendablePayloadStorage,
    TI: AppendableIdMapper,
{
    let started = Instant::now();
    if slot_count(target) != 0 || target.payloads.count() != 0 {
        return Err(StorageError::InvalidArgument(
            "migration target must be an empty segment".into(),
        ));
    }
    let mut cursor = CopyCursor::new();
    let total = slot_count(source);
    copy_range(
        source,
        &|r| read_batch(source, r),
        target,
        &mut cursor,
        total,
        0,
        options,
        progress,
        &mut |_, _, _, _| Ok(()),
    )?;
    target.version = target.version.max(source.version);
    target.flush()?;
    let mut report = MigrationReport::from_cursor(&cursor, total as u64, 0);
    if options.verify {
        let v = verify(
            source,
            target,
            &VerifyOptions {
                expected_checksum: Some(cursor.checksum),
                batch_slots: options.batch_slots,
            },
            progress,
        )?;
        report.verified = true;
        report.checksum = v.checksum;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Build an immutable mmap segment in `dir` (`vectors/`, `payloads/`,
/// `ids/`, `segment.json`) from any `source` segment: the buildable-target
/// path. Each storage is built from the source's storage of the same
/// concern (sequential reads; the vector storage in parallel with the other
/// two), its files written to temporaries, fsynced and renamed; `segment.json` is written last,
/// and again after each of the source's indexed payload keys got its
/// immutable index file (`payload_index/`). Verify the result with
/// [`verify`] before trusting it.
pub fn build_mmap<SV, SP, SI>(
    source: &Segment<SV, SP, SI>,
    dir: &Path,
    options: &MmapVectorOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MmapSegment<SV::Element>>
where
    SV: VectorStorageRead,
    SV::Element: VectorElement,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
{
    build_mmap_planned(source, dir, options, None, progress)
}

/// [`build_mmap`] with the id map's numeric-id function taken from `plan`
/// ([`MmapIdMapper::build_planned`]): a source whose points sit at their
/// ids' slots (laid out by the plan) gets the compact
/// [`NumLayout::SlotOrdered`](vecseg_mmap::id_map::NumLayout) id map.
pub fn build_mmap_planned<SV, SP, SI>(
    source: &Segment<SV, SP, SI>,
    dir: &Path,
    options: &MmapVectorOptions,
    plan: Option<NumSlotPlan>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MmapSegment<SV::Element>>
where
    SV: VectorStorageRead,
    SV::Element: VectorElement,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
{
    let total = slot_count(source) as u64;
    let mut report = |done| {
        progress(&Progress {
            phase: Phase::Build,
            done,
            total: 3,
            bytes: 0,
        })
    };
    report(0);
    let layout = crate::kinds::SegmentLayout::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    // The vector file on one thread, payloads then ids on the other: the
    // three builds read and write disjoint files.
    let (vectors, rest) = rayon::join(
        || MmapVectorStorage::build(&layout.vectors(), &source.vectors, options.clone()),
        || -> Result<_> {
            let payloads =
                MmapPayloadStorage::build(&layout.payloads(), &source.payloads, total as usize)?;
            let ids = MmapIdMapper::build_planned(&layout.ids(), &source.ids, plan)?;
            Ok((payloads, ids))
        },
    );
    let vectors = vectors?;
    let (payloads, ids) = rest?;
    report(3);
    // `create` writes `segment.json` naming the mmap types; the flush then
    // records the source's version in it.
    let mut segment = Segment::create(dir, vectors, payloads, ids)?;
    segment.version = source.version;
    segment.flush()?;
    // The source's indexed keys become immutable index files.
    for schema in source.field_indexes() {
        segment.create_field_index(schema)?;
    }
    Ok(segment)
}
