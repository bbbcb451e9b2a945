//! The steps of one optimization on a [`Collection`]: begin (under the
//! write lock), read the sources (under the read lock, a chunk at a time),
//! finish or abort (under the write lock). The driver in `mod.rs` runs
//! them; between them writers and readers go on.

use vecseg_traits::{PointId, Record, Result, SegmentEntry, StorageError, Version};

use super::build::BuildOptions;
use super::plan::{plan, Optimization, SegmentStats};
use crate::collection::manifest::SegmentRecord;
use crate::collection::quantization::Quantization;
use crate::collection::{segment_dir, Collection};
use crate::kinds::{create_chunked_segment, SegmentKind};
use crate::mmap::MmapVectorOptions;

/// An optimization between its begin and its finish.
#[derive(Debug)]
pub(crate) struct Running {
    /// The segments being replaced.
    pub(crate) sources: Vec<String>,
    /// Copies deleted from the sources since the build began (a delete or
    /// a copy-on-write), to be deleted from the new segment too.
    pub(crate) deleted: Vec<(PointId, Version)>,
}

/// What the builder needs from the begin step of an optimization.
#[derive(Debug, Clone)]
pub struct Begun {
    /// The optimization (its sources sorted).
    pub optimization: Optimization,
    /// Directory name of the segment to build.
    pub target: String,
    /// Its directory.
    pub target_dir: std::path::PathBuf,
    /// How to build it.
    pub options: BuildOptions,
    /// The codes to write beside it.
    pub quantization: Option<Quantization>,
    /// Fewest points for which it gets the HNSW index.
    pub index_points: usize,
}

impl Collection {
    /// What the planner sees of every segment.
    pub fn segment_stats(&self) -> Vec<SegmentStats> {
        let vector_bytes = (self.manifest.dim * std::mem::size_of::<f32>()) as u64;
        let mut out = vec![SegmentStats {
            name: self.manifest.appendable.clone(),
            appendable: true,
            appendable_kind: true,
            points: self.appendable.point_count(),
            slots: SegmentEntry::slot_count(&self.appendable),
            vector_bytes,
            tenant_key: None,
        }];
        for (name, s) in &self.sealed {
            let kind = self.manifest.segments.iter().find(|r| &r.name == name);
            out.push(SegmentStats {
                name: name.clone(),
                appendable: false,
                appendable_kind: kind.is_some_and(|r| r.kind == SegmentKind::Chunked.name()),
                points: s.point_count(),
                slots: s.slot_count(),
                vector_bytes,
                tenant_key: s.tenant_key(),
            });
        }
        out
    }

    /// The collection's tenant key: the payload index marked as one.
    pub fn tenant_key(&self) -> Option<&str> {
        self.manifest
            .payload_indexes
            .iter()
            .find(|s| s.is_tenant)
            .map(|s| s.key.as_str())
    }

    /// The optimizations due now (see [`plan`]).
    pub fn plan_optimizations(&self) -> Vec<Optimization> {
        plan(
            &self.segment_stats(),
            &self.manifest.optimizer,
            self.tenant_key(),
        )
    }

    /// Start `optimization`: check its sources, rotate the appendable
    /// segment out if it is one (a fresh appendable segment takes new
    /// points; the old one is sealed), and start recording deletes from
    /// the sources.
    pub(crate) fn begin_optimization(&mut self, mut optimization: Optimization) -> Result<Begun> {
        self.check_usable()?;
        if self.optimizing.is_some() {
            return Err(StorageError::InvalidArgument(
                "an optimization is running already".into(),
            ));
        }
        for name in &optimization.sources {
            if !self.manifest.segments.iter().any(|s| &s.name == name) {
                return Err(StorageError::InvalidArgument(format!(
                    "segment {name} is not in the collection"
                )));
            }
        }
        if optimization.sources.contains(&self.manifest.appendable) {
            self.rotate_appendable()?;
        }
        let target = self.manifest.new_segment_name();
        self.optimizing = Some(Running {
            sources: optimization.sources.clone(),
            deleted: Vec::new(),
        });
        optimization.sources.sort();
        Ok(Begun {
            target_dir: segment_dir(&self.dir, &target),
            target,
            optimization,
            options: BuildOptions {
                dim: self.manifest.dim,
                distance: self.manifest.distance,
                indexes: self.manifest.payload_indexes.clone(),
                vector_options: MmapVectorOptions::default(),
                hnsw: self.manifest.hnsw,
            },
            quantization: self.manifest.quantization,
            index_points: self.manifest.optimizer.index_points,
        })
    }

    /// Seal the appendable segment where it is and start a fresh one. The
    /// collection is flushed first, so the log holds nothing the sealed
    /// segment has (a replay could otherwise copy it into the fresh one).
    fn rotate_appendable(&mut self) -> Result<()> {
        self.flush()?;
        let fresh_name = self.manifest.new_segment_name();
        let mut fresh = create_chunked_segment::<f32>(
            &segment_dir(&self.dir, &fresh_name),
            self.manifest.dim,
            self.manifest.distance,
        )?;
        for schema in &self.manifest.payload_indexes {
            fresh.create_field_index(schema.clone())?;
        }
        let mut next = self.manifest.clone();
        next.segments.push(SegmentRecord {
            name: fresh_name.clone(),
            kind: SegmentKind::Chunked.name().to_string(),
            quantization: None,
        });
        let old_name = std::mem::replace(&mut next.appendable, fresh_name);
        next.write(&self.dir)?;
        self.manifest = next;
        let old = std::mem::replace(&mut self.appendable, fresh);
        self.sealed.push((old_name, Box::new(old)));
        Ok(())
    }

    fn sources<'a>(
        &'a self,
        names: &'a [String],
    ) -> impl Iterator<Item = &'a dyn SegmentEntry<f32>> {
        self.sealed
            .iter()
            .filter(move |(n, _)| names.contains(n))
            .map(|(_, s)| s.as_ref())
    }

    /// Every live id of the segments `names`, ascending, each once.
    pub(crate) fn source_ids(&self, names: &[String]) -> Result<Vec<PointId>> {
        let mut ids = Vec::new();
        for s in self.sources(names) {
            let mut from = None;
            loop {
                let page = s.scroll(from, 8192, None)?;
                let Some(&last) = page.last() else { break };
                ids.extend_from_slice(&page);
                if page.len() < 8192 {
                    break;
                }
                from = Some(crate::collection::read::next_id(last));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The newest copy in segments `names` of each of `ids` that is live
    /// there and not superseded by a newer copy elsewhere.
    pub(crate) fn fetch_newest(
        &self,
        names: &[String],
        ids: &[PointId],
    ) -> Result<Vec<Record<f32>>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut best: Option<(&dyn SegmentEntry<f32>, Version)> = None;
            let mut newest_elsewhere: Option<Version> = self.appendable.point_version(id)?;
            for (name, s) in &self.sealed {
                let Some(v) = s.point_version(id)? else {
                    continue;
                };
                if names.contains(name) {
                    if best.is_none_or(|(_, b)| v > b) {
                        best = Some((s.as_ref(), v));
                    }
                } else {
                    newest_elsewhere = newest_elsewhere.max(Some(v));
                }
            }
            let Some((segment, v)) = best else { continue };
            if newest_elsewhere.is_some_and(|e| e > v) {
                continue;
            }
            if let Some(record) = segment.get(id)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Record that `id` was deleted at `version` from sealed segment `name`
    /// (called by every delete of a sealed copy).
    pub(crate) fn note_sealed_delete(&mut self, name: &str, id: PointId, version: Version) {
        if let Some(r) = &mut self.optimizing {
            if r.sources.iter().any(|s| s == name) {
                r.deleted.push((id, version));
            }
        }
    }

    /// Switch the sources for `built` (`None`: nothing was live): apply
    /// the deletes recorded since the build began, bring its payload
    /// indexes in line with the collection's, flush it and the collection
    /// (the log then holds only later operations), switch the manifest
    /// (the commit point), then remove the sources' directories.
    pub(crate) fn finish_optimization(
        &mut self,
        begun: &Begun,
        built: Option<Box<dyn SegmentEntry<f32>>>,
    ) -> Result<()> {
        let running = self
            .optimizing
            .take()
            .ok_or_else(|| StorageError::InvalidArgument("no optimization is running".into()))?;
        let result = self.switch(begun, running, built);
        if result.is_err() {
            remove_dir_logged(&begun.target_dir);
        }
        result
    }

    fn switch(
        &mut self,
        begun: &Begun,
        running: Running,
        built: Option<Box<dyn SegmentEntry<f32>>>,
    ) -> Result<()> {
        let mut built = built;
        if let Some(b) = &mut built {
            for (id, version) in running.deleted {
                if b.point_version(id)?.is_some_and(|v| v < version) {
                    b.delete(version, id)?;
                }
            }
            let wanted = &self.manifest.payload_indexes;
            for schema in b.field_indexes() {
                if !wanted.contains(&schema) {
                    b.drop_field_index(&schema.key)?;
                }
            }
            for schema in wanted {
                if !b.field_indexes().contains(schema) {
                    b.create_field_index(schema.clone())?;
                }
            }
            b.flush()?;
        }
        self.flush()?;
        let sources = &running.sources;
        let mut next = self.manifest.clone();
        next.segments.retain(|s| !sources.contains(&s.name));
        if built.is_some() {
            next.segments.push(SegmentRecord {
                name: begun.target.clone(),
                kind: SegmentKind::Mmap.name().to_string(),
                quantization: begun.quantization,
            });
        }
        next.write(&self.dir)?;
        self.manifest = next;
        self.sealed.retain(|(n, _)| !sources.contains(n));
        match built {
            Some(b) => self.sealed.push((begun.target.clone(), b)),
            None => remove_dir_logged(&begun.target_dir),
        }
        for name in sources {
            remove_dir_logged(&segment_dir(&self.dir, name));
        }
        Ok(())
    }

    /// Give up a begun optimization: the sources stay, the partial build
    /// is removed.
    pub(crate) fn abort_optimization(&mut self, begun: &Begun) {
        self.optimizing = None;
        remove_dir_logged(&begun.target_dir);
    }
}

/// Remove a directory the manifest no longer (or never) listed; a failure
/// is logged, and the next open removes what is left.
fn remove_dir_logged(dir: &std::path::Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            log::warn!(
                "could not remove {}: {e}; the next open removes it",
                dir.display()
            );
        }
    }
}
