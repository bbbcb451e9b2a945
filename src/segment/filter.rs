//! How a segment answers a filter: the planner picks, per filter, between
//! reading the candidates a payload index (or a `HasId` list) names and a
//! full scan; the checker tests one offset, answering indexed conditions
//! from the index and reading the payload (once) only for the rest.
//!
//! The plan is [`PlanKind::Indexed`] when some part of the filter that
//! every match must satisfy (a `must` condition, or all of the `should`
//! conditions together) has an index or id list naming at most
//! [`INDEXED_PLAN_SHARE`] of the segment's offsets. Candidates are a
//! superset of the matches: each is still checked (liveness and the whole
//! filter) before it is scored or returned.

use roaring::RoaringBitmap;
use vecseg_traits::{
    Condition, Filter, IdMapperRead, Payload, PayloadStorageRead, PointId, PointOffset, Result,
    VectorStorageRead,
};

use super::Segment;
use crate::index::payload::{Cardinality, FieldTypeExt, ValueMatch};

/// Largest share of the segment's offsets an index may name for the
/// planner to read candidates instead of scanning.
pub const INDEXED_PLAN_SHARE: f64 = 0.25;

/// Which way a segment evaluates a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// Read the offsets an index names and check each.
    Indexed,
    /// Check every live point.
    FullScan,
}

/// The planner's decision for one filter on one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterPlan {
    /// Indexed or full scan.
    pub kind: PlanKind,
    /// Estimated number of matching offsets.
    pub estimate: Cardinality,
    /// Upper bound of the candidates an indexed plan reads (the offset
    /// count for a full scan).
    pub candidates: usize,
}

/// A filter's per-offset evaluation, with the payload read at most once.
pub(crate) struct Check<'s, 'f, V, P, I> {
    segment: &'s Segment<V, P, I>,
    payload: Option<Payload>,
    /// The condition whose index answer produced the candidates: it holds
    /// for every candidate outside the offsets the index cannot answer
    /// for, so it is not evaluated again there.
    proven: Option<Proven<'f>>,
}

/// See [`Check::proven`].
struct Proven<'f> {
    condition: &'f Condition,
    unchecked: RoaringBitmap,
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Segment<V, P, I> {
    /// How this segment would evaluate `filter`.
    pub fn plan(&self, filter: &Filter) -> Result<FilterPlan> {
        let total = self.ids.total_count();
        let estimate = self.estimate_filter(filter, total)?;
        let source = self.source_size(filter, total)?;
        Ok(match source {
            Some(n) if (n as f64) <= total as f64 * INDEXED_PLAN_SHARE => FilterPlan {
                kind: PlanKind::Indexed,
                estimate,
                candidates: n,
            },
            _ => FilterPlan {
                kind: PlanKind::FullScan,
                estimate,
                candidates: total,
            },
        })
    }

    /// The live offsets passing `filter`, in increasing order, when the
    /// plan is indexed; `None` when a full scan is the better way.
    pub(crate) fn indexed_matches(&self, filter: &Filter) -> Result<Option<Vec<PointOffset>>> {
        filter.validate()?;
        if self.plan(filter)?.kind != PlanKind::Indexed {
            return Ok(None);
        }
        let total = self.ids.total_count();
        let Some((candidates, proven)) = self.candidates(filter, total)? else {
            return Ok(None);
        };
        // The common tenant filter: one indexed condition that produced the
        // candidates and answers for all of them. Only liveness is left.
        let whole_filter_proven = proven.as_ref().is_some_and(|p| {
            p.unchecked.is_empty()
                && filter.should.is_empty()
                && filter.must_not.is_empty()
                && matches!(&filter.must[..], [c] if std::ptr::eq(c, p.condition))
        });
        if whole_filter_proven {
            let out = candidates
                .into_iter()
                .filter(|&o| self.is_live(o))
                .collect();
            return Ok(Some(out));
        }
        let mut check = Check {
            segment: self,
            payload: None,
            proven,
        };
        let mut out = Vec::with_capacity(candidates.len() as usize);
        for offset in candidates {
            if self.is_live(offset) {
                check.payload = None;
                if check.filter(filter, offset)? {
                    out.push(offset);
                }
            }
        }
        Ok(Some(out))
    }

    /// Whether `offset` holds a live point: by the segment's invariant
    /// (see the module docs of `segment`), a vector slot not flagged
    /// deleted below the id mapper's count is mapped.
    pub(crate) fn is_live(&self, offset: PointOffset) -> bool {
        (offset as usize) < self.vectors.total_count().min(self.ids.total_count())
            && !self.vectors.is_deleted(offset)
    }

    /// Whether the id mapper maps `offset` (the scan's liveness test next
    /// to the deleted flags it already skips).
    pub(crate) fn is_mapped(&self, offset: PointOffset) -> Result<bool> {
        Ok(self.ids.external(offset)?.is_some())
    }

    /// Whether the point at `offset` passes `filter`.
    pub(crate) fn check(&self, filter: &Filter, offset: PointOffset) -> Result<bool> {
        Check {
            segment: self,
            payload: None,
            proven: None,
        }
        .filter(filter, offset)
    }

    fn estimate_filter(&self, f: &Filter, total: usize) -> Result<Cardinality> {
        let estimate_all = |conds: &[Condition]| -> Result<Vec<Cardinality>> {
            conds
                .iter()
                .map(|c| self.estimate_condition(c, total))
                .collect()
        };
        let must = estimate_all(&f.must)?;
        let mut parts = vec![Cardinality::all(&must, total)];
        if !f.should.is_empty() {
            parts.push(Cardinality::any(&estimate_all(&f.should)?, total));
        }
        for c in estimate_all(&f.must_not)? {
            parts.push(c.negate(total));
        }
        Ok(Cardinality::all(&parts, total))
    }

    fn estimate_condition(&self, c: &Condition, total: usize) -> Result<Cardinality> {
        Ok(match c {
            Condition::Filter(f) => self.estimate_filter(f, total)?,
            _ => match self.condition_source_size(c, total)? {
                Some(n) => Cardinality {
                    min: 0,
                    expected: n,
                    max: n,
                },
                None => Cardinality::unknown(total),
            },
        })
    }

    /// Size of the candidate set [`Segment::candidates`] would build, if
    /// some part of the filter can name one.
    fn source_size(&self, f: &Filter, total: usize) -> Result<Option<usize>> {
        let mut best: Option<usize> = None;
        for c in &f.must {
            if let Some(n) = self.condition_source_size(c, total)? {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
        }
        if let Some(n) = self.should_source_size(f, total)? {
            best = Some(best.map_or(n, |b| b.min(n)));
        }
        Ok(best)
    }

    fn should_source_size(&self, f: &Filter, total: usize) -> Result<Option<usize>> {
        if f.should.is_empty() {
            return Ok(None);
        }
        let mut sum = 0usize;
        for c in &f.should {
            match self.condition_source_size(c, total)? {
                Some(n) => sum += n,
                None => return Ok(None),
            }
        }
        Ok(Some(sum.min(total)))
    }

    fn condition_source_size(&self, c: &Condition, total: usize) -> Result<Option<usize>> {
        Ok(match c {
            Condition::HasId(ids) => Some(ids.len().min(total)),
            Condition::Filter(f) => self.source_size(f, total)?,
            c => {
                ValueMatch::of(c).and_then(|(key, m)| {
                    let field = self.index.field(key)?;
                    field.schema().field_type.answers(&m).then(|| {
                        (field.estimate(&m) + self.index.unchecked_count(field)).min(total)
                    })
                })
            }
        })
    }

    /// A superset of the offsets passing `f`, from the smallest source
    /// (see [`Segment::source_size`]), with the condition it proves when
    /// one indexed `must` condition produced it.
    fn candidates<'f>(
        &self,
        f: &'f Filter,
        total: usize,
    ) -> Result<Option<(RoaringBitmap, Option<Proven<'f>>)>> {
        let mut best: Option<(usize, &Condition)> = None;
        for c in &f.must {
            if let Some(n) = self.condition_source_size(c, total)? {
                if best.is_none_or(|(b, _)| n < b) {
                    best = Some((n, c));
                }
            }
        }
        let should = self.should_source_size(f, total)?;
        match (best, should) {
            (Some((n, c)), s) if s.is_none_or(|s| n <= s) => {
                let proven = ValueMatch::of(c)
                    .and_then(|(key, _)| self.index.field(key))
                    .map(|field| Proven {
                        condition: c,
                        unchecked: self.index.unchecked(field),
                    });
                Ok(self.condition_candidates(c, total)?.map(|b| (b, proven)))
            }
            (_, Some(_)) => {
                let mut out = RoaringBitmap::new();
                for c in &f.should {
                    match self.condition_candidates(c, total)? {
                        Some(b) => out |= b,
                        None => return Ok(None),
                    }
                }
                Ok(Some((out, None)))
            }
            _ => Ok(None),
        }
    }

    fn condition_candidates(&self, c: &Condition, total: usize) -> Result<Option<RoaringBitmap>> {
        Ok(match c {
            Condition::HasId(ids) => {
                let mut out = RoaringBitmap::new();
                for &id in ids {
                    if let Some(o) = self.ids.internal(id)? {
                        out.insert(o);
                    }
                }
                Some(out)
            }
            Condition::Filter(f) => self.candidates(f, total)?.map(|(b, _)| b),
            c => ValueMatch::of(c).and_then(|(key, m)| {
                let field = self.index.field(key)?;
                field.schema().field_type.answers(&m).then(|| {
                    let mut out = self.index.unchecked(field);
                    field.add_matching(&m, &mut out);
                    out
                })
            }),
        })
    }
}

impl<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead> Check<'_, '_, V, P, I> {
    fn filter(&mut self, f: &Filter, offset: PointOffset) -> Result<bool> {
        for c in &f.must {
            if !self.condition(c, offset)? {
                return Ok(false);
            }
        }
        if !f.should.is_empty() {
            let mut any = false;
            for c in &f.should {
                if self.condition(c, offset)? {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(false);
            }
        }
        for c in &f.must_not {
            if self.condition(c, offset)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn condition(&mut self, c: &Condition, offset: PointOffset) -> Result<bool> {
        let s = self.segment;
        if let Some(p) = &self.proven {
            if std::ptr::eq(p.condition, c) && !p.unchecked.contains(offset) {
                return Ok(true);
            }
        }
        match c {
            Condition::HasId(ids) => {
                Ok(s.ids.external(offset)?.is_some_and(|id| ids.contains(&id)))
            }
            Condition::Filter(f) => self.filter(f, offset),
            c => {
                if let Some((key, m)) = ValueMatch::of(c) {
                    if let Some(field) = s.index.field(key) {
                        if field.schema().field_type.answers(&m)
                            && !s.index.is_unchecked(field, offset)
                        {
                            return Ok(field.offset_matches(offset, &m));
                        }
                    }
                }
                let payload = match &self.payload {
                    Some(p) => p,
                    None => self.payload.insert(s.payloads.get(offset)?),
                };
                // Conditions on payload keys never look at the id.
                Ok(c.matches(PointId::Num(0), payload))
            }
        }
    }
}
