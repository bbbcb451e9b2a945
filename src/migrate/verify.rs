//! Verification: read both sides of a migration and compare everything.

use std::time::{Duration, Instant};

use vecseg_traits::{
    IdMapperRead, PayloadStorageRead, PointId, Result, StorageError, VectorStorageRead,
};

use super::checksum::Checksum;
use super::copy::BatchReader;
use super::slots::{read_batch, slot_count};
use super::{Phase, Progress};
use crate::Segment;

/// What [`verify`] checks beyond the two segments themselves.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Digest the source had while it was copied; both sides must match it.
    pub expected_checksum: Option<u64>,
    /// Slots read per batch (0 = default).
    pub batch_slots: usize,
}

/// Outcome of a successful verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Slots compared (offsets, deleted and unmapped ones included).
    pub slots: u64,
    /// Mapped points compared.
    pub points: u64,
    /// The digest both sides produced.
    pub checksum: u64,
    /// Vector bytes read on each side.
    pub vector_bytes: u64,
    /// Payload bytes (JSON) compared.
    pub payload_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

fn batch_len(batch_slots: usize) -> usize {
    if batch_slots == 0 {
        super::DEFAULT_BATCH_SLOTS
    } else {
        batch_slots
    }
}

/// Dimension, distance, counts and segment version (the source's from its
/// metadata; no slot is read).
fn compare_shape<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    target: &Segment<TV, TP, TI>,
) -> Result<()>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: VectorStorageRead<Element = SV::Element>,
    TP: PayloadStorageRead,
    TI: IdMapperRead,
{
    let (sv, tv) = (&source.vectors, &target.vectors);
    same("dimension", sv.dim(), tv.dim())?;
    same("distance", sv.distance(), tv.distance())?;
    same("vector slots", sv.total_count(), tv.total_count())?;
    same("deleted vectors", sv.deleted_count(), tv.deleted_count())?;
    same(
        "id slots",
        source.ids.total_count(),
        target.ids.total_count(),
    )?;
    same(
        "mapped ids",
        source.ids.available_count(),
        target.ids.available_count(),
    )?;
    same(
        "non-empty payloads",
        source.payloads.count(),
        target.payloads.count(),
    )?;
    same("segment version", source.version, target.version)
}

/// Every mapped slot of `batch` (read from `target`) must be found again
/// by a reverse lookup of its external id.
fn check_reverse<T: vecseg_traits::VectorElement, I: IdMapperRead>(
    batch: &super::SlotBatch<T>,
    ids: &I,
) -> Result<()> {
    for (i, m) in batch.mappings.iter().enumerate() {
        if let Some((id, _)) = m {
            let o = batch.start + i as u32;
            let got = ids.internal(*id)?;
            if got != Some(o) {
                return Err(fail(format!(
                    "target does not map {id} to offset {o} (got {got:?})"
                )));
            }
        }
    }
    Ok(())
}

fn fail(msg: impl Into<String>) -> StorageError {
    StorageError::VerificationFailed(msg.into())
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, a: T, b: T) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(fail(format!("{what}: source {a:?}, target {b:?}")))
    }
}

/// Compare `source` and `target` completely: dimension, distance, counts,
/// segment version; then, slot by slot in offset order (both sides read in
/// parallel), every vector (bitwise), deleted flag, payload, external id
/// and version; every mapped id's reverse lookup in `target`; ordered id
/// iteration in lockstep; and a digest computed independently from each
/// side's reads (and equal to `options.expected_checksum` when given).
///
/// Returns [`StorageError::VerificationFailed`] naming the first difference.
pub fn verify<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    target: &Segment<TV, TP, TI>,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: VectorStorageRead<Element = SV::Element>,
    TP: PayloadStorageRead,
    TI: IdMapperRead,
{
    verify_with(
        source,
        &|r| read_batch(source, r),
        target,
        options,
        progress,
    )
}

/// [`verify`], reading the source's slots through `source_reader` (a
/// backend's bulk path; it must return what [`read_batch`] would).
pub fn verify_with<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    source_reader: BatchReader<'_, SV::Element>,
    target: &Segment<TV, TP, TI>,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: VectorStorageRead<Element = SV::Element>,
    TP: PayloadStorageRead,
    TI: IdMapperRead,
{
    let started = Instant::now();
    compare_shape(source, target)?;
    let total = slot_count(source);
    let batch_len = batch_len(options.batch_slots);
    let (mut cs, mut ct) = (Checksum::default(), Checksum::default());
    let mut report = VerifyReport {
        slots: total as u64,
        points: 0,
        checksum: 0,
        vector_bytes: 0,
        payload_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let elem = std::mem::size_of::<SV::Element>() as u64;
    let mut start = 0;
    while start < total {
        let range = start..start.saturating_add(batch_len).min(total);
        let (a, b) = rayon::join(
            || source_reader(range.clone()),
            || read_batch(target, range.clone()),
        );
        let (a, b) = (a?, b?);
        if let Some(diff) = a.diff(&b) {
            return Err(fail(diff));
        }
        check_reverse(&b, &target.ids)?;
        report.payload_bytes += a.checksum_into(&mut cs);
        b.checksum_into(&mut ct);
        report.points += a.mapped() as u64;
        report.vector_bytes += (a.vector_slots * a.dim) as u64 * elem;
        start = range.end;
        progress(&Progress {
            phase: Phase::Verify,
            done: start as u64,
            total: total as u64,
            bytes: report.vector_bytes + report.payload_bytes,
        });
    }
    let mut si = source.ids.iter_from(None);
    let mut ti = target.ids.iter_from(None);
    let mut n = 0usize;
    loop {
        match (si.next().transpose()?, ti.next().transpose()?) {
            (None, None) => break,
            (a, b) if a == b => n += 1,
            (a, b) => {
                return Err(fail(format!(
                    "ordered id iteration differs at position {n}: {a:?} vs {b:?}"
                )))
            }
        }
    }
    same("ids iterated", source.ids.available_count(), n)?;

    same("checksum", cs.value(), ct.value())?;
    if let Some(expected) = options.expected_checksum {
        same("checksum recorded while copying", expected, cs.value())?;
    }
    report.checksum = cs.value();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Verify `target` against slot hashes recorded while the source was read
/// (the in-place upgrade's default; see `docs/migration.md`).
///
/// `source_hashes[o]` is the [`Checksum::slot_hash`] of what was read from
/// offset `o` of the source and `recorded_checksum` the digest folded while
/// copying. Checks, in order: the source's shape against the target's
/// (dimension, distance, counts, version: metadata only); that the recorded
/// hashes cover every slot and fold to `recorded_checksum` (a damaged hash
/// file fails here); then reads every slot of `target` (the next batch read
/// while the current one is hashed) and compares its hash with the
/// recorded one, checks every mapped id's reverse lookup, and the target's
/// digest against `recorded_checksum`; finally, that the target's ordered
/// id iteration is strictly increasing, agrees with its slots and has the
/// source's number of mapped ids.
///
/// Returns [`StorageError::VerificationFailed`] naming the first difference.
pub fn verify_hashes<SV, SP, SI, TV, TP, TI>(
    source: &Segment<SV, SP, SI>,
    source_hashes: &[u64],
    recorded_checksum: u64,
    target: &Segment<TV, TP, TI>,
    batch_slots: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<VerifyReport>
where
    SV: VectorStorageRead,
    SP: PayloadStorageRead,
    SI: IdMapperRead,
    TV: VectorStorageRead<Element = SV::Element>,
    TP: PayloadStorageRead,
    TI: IdMapperRead,
{
    let started = Instant::now();
    compare_shape(source, target)?;
    let total = slot_count(source);
    same("slot hashes recorded", total, source_hashes.len())?;
    let mut recorded = Checksum::default();
    source_hashes.iter().for_each(|&h| recorded.mix(h));
    if recorded.value() != recorded_checksum {
        return Err(fail(format!(
            "the recorded slot hashes fold to {:016x}, but {:016x} was recorded while copying \
             (damaged hash file)",
            recorded.value(),
            recorded_checksum
        )));
    }

    let batch_len = batch_len(batch_slots);
    let elem = std::mem::size_of::<SV::Element>() as u64;
    let mut ct = Checksum::default();
    let mut report = VerifyReport {
        slots: total as u64,
        points: 0,
        checksum: 0,
        vector_bytes: 0,
        payload_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let read = |start: usize| {
        (start < total)
            .then(|| read_batch(target, start..start.saturating_add(batch_len).min(total)))
            .transpose()
    };
    let mut pending = read(0)?;
    while let Some(b) = pending.take() {
        let start = b.start as usize;
        let end = start + b.len();
        let (next, checked) = rayon::join(
            || read(end),
            || -> Result<(Vec<u64>, u64)> {
                check_reverse(&b, &target.ids)?;
                let (hashes, payload_bytes) = b.slot_hashes();
                for (i, (h, want)) in hashes.iter().zip(&source_hashes[start..end]).enumerate() {
                    if h != want {
                        return Err(fail(format!(
                            "offset {} of the target differs from what was read from the \
                             source (slot hash {h:016x}, source {want:016x})",
                            start + i
                        )));
                    }
                }
                Ok((hashes, payload_bytes))
            },
        );
        let (hashes, payload_bytes) = checked?;
        hashes.iter().for_each(|&h| ct.mix(h));
        report.payload_bytes += payload_bytes;
        report.points += b.mapped() as u64;
        report.vector_bytes += (b.vector_slots * b.dim) as u64 * elem;
        progress(&Progress {
            phase: Phase::Verify,
            done: end as u64,
            total: total as u64,
            bytes: report.vector_bytes + report.payload_bytes,
        });
        pending = next?;
    }
    same(
        "checksum recorded while copying",
        recorded_checksum,
        ct.value(),
    )?;

    // Ordered iteration: strictly increasing ids, each at the offset its
    // (already verified) slot names, as many as the source maps. The source's
    // iteration yields exactly its mapped ids in increasing order, so this is
    // the lockstep comparison without reading the source's ids again.
    let mut n = 0usize;
    let mut prev: Option<PointId> = None;
    for entry in target.ids.iter_from(None) {
        let (id, o) = entry?;
        if prev.is_some_and(|p| p >= id) {
            return Err(fail(format!(
                "ordered id iteration of the target is not increasing at position {n}: \
                 {prev:?} then {id}"
            )));
        }
        let held = target.ids.external(o)?;
        if held != Some(id) {
            return Err(fail(format!(
                "ordered id iteration yields {id} at offset {o}, whose slot holds {held:?}"
            )));
        }
        prev = Some(id);
        n += 1;
    }
    same("ids iterated", source.ids.available_count(), n)?;

    report.checksum = ct.value();
    report.elapsed = started.elapsed();
    Ok(report)
}
