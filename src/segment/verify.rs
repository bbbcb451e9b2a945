//! [`Segment::verify`]: a full read pass that checks everything a segment
//! can check about itself (`vecseg inspect --verify`).
//!
//! Opening a segment already validates every header, the sealed JSON
//! files, the record checksums of the id mapping log and the flushed
//! lengths. `verify` then reads every point: its mapping both ways, its
//! version, its vector (the dimension, finite components) and its payload
//! (decoded, which for RocksDB also checks the block checksums of every
//! block read), and checks that the live vectors are exactly the mapped
//! offsets. Vector and payload bytes of the chunked and mmap backends carry
//! no checksum, so a flipped bit inside them can pass (see
//! `docs/file-formats.md`).

use vecseg_traits::{
    IdMapperRead, PayloadStorageRead, PointOffset, Random, Result, StorageError, VectorStorageRead,
};

use super::Segment;

/// What [`Segment::verify`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Mapped points checked.
    pub points: usize,
    /// Vector slots checked (live and deleted).
    pub slots: usize,
    /// Non-empty payloads decoded.
    pub payloads: usize,
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// Read every point and check the segment's invariants; the first
    /// violation is an error naming the segment directory.
    pub fn verify(&self) -> Result<VerifyReport> {
        let here = || {
            self.dir
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("<in-memory segment>"))
        };
        let bad = |reason: String| StorageError::corrupted(here(), reason);
        let mut report = VerifyReport::default();
        let total = self.vectors.total_count();
        for entry in self.ids.iter_from(None) {
            let (id, o) = entry?;
            if self.ids.internal(id)? != Some(o) || self.ids.external(o)? != Some(id) {
                return Err(bad(format!(
                    "point {id} at offset {o}: the two directions disagree"
                )));
            }
            if self.ids.version(o)?.is_none() {
                return Err(bad(format!("point {id} has no version")));
            }
            if o as usize >= total || self.vectors.is_deleted(o) {
                return Err(bad(format!(
                    "point {id} maps to offset {o}, which holds no live vector"
                )));
            }
            let v = self.vectors.get::<Random>(o)?;
            if v.len() != self.vectors.dim() {
                return Err(bad(format!(
                    "vector of point {id} has {} components",
                    v.len()
                )));
            }
            vecseg_traits::VectorElement::validate(&v, self.vectors.dim())
                .map_err(|e| bad(format!("vector of point {id}: {e}")))?;
            self.payloads.get(o)?;
            report.points += 1;
        }
        if report.points != self.ids.available_count() {
            return Err(bad(format!(
                "the id mapper counts {} points but iterates {}",
                self.ids.available_count(),
                report.points
            )));
        }
        for o in 0..total as PointOffset {
            if !self.vectors.is_deleted(o) && self.ids.external(o)?.is_none() {
                return Err(bad(format!("offset {o} holds a live vector but no point")));
            }
            report.slots += 1;
        }
        self.payloads.for_each(&mut |_, _| {
            report.payloads += 1;
            Ok(true)
        })?;
        Ok(report)
    }
}
