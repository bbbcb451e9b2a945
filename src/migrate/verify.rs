//! Verification: read both sides of a migration and compare everything.

use std::time::{Duration, Instant};

use vecseg_traits::{IdMapperRead, PayloadStorageRead, Result, StorageError, VectorStorageRead};

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
    same("segment version", source.version, target.version)?;

    let total = slot_count(source);
    let batch_len = if options.batch_slots == 0 {
        super::DEFAULT_BATCH_SLOTS
    } else {
        options.batch_slots
    };
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
        let range = start..(start + batch_len).min(total);
        let (a, b) = rayon::join(
            || source_reader(range.clone()),
            || read_batch(target, range.clone()),
        );
        let (a, b) = (a?, b?);
        if let Some(diff) = a.diff(&b) {
            return Err(fail(diff));
        }
        for (i, m) in a.mappings.iter().enumerate() {
            if let Some((id, _)) = m {
                let o = range.start as u32 + i as u32;
                if target.ids.internal(*id) != Some(o) {
                    return Err(fail(format!(
                        "target does not map {id} to offset {o} (got {:?})",
                        target.ids.internal(*id)
                    )));
                }
            }
        }
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
    same(
        "non-empty payloads",
        source.payloads.count(),
        target.payloads.count(),
    )?;

    let mut si = source.ids.iter_from(None);
    let mut ti = target.ids.iter_from(None);
    let mut n = 0usize;
    loop {
        match (si.next(), ti.next()) {
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
