//! Planning: which segments an optimization rebuilds, and why. A pure
//! function of the segments' sizes and the collection's settings, so it
//! is tested without any files.

use serde::{Deserialize, Serialize};

/// When the optimizer rebuilds segments. Stored in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerOptions {
    /// The appendable segment is converted into an immutable mmap segment
    /// once it holds this many live points (Qdrant's
    /// `indexing_threshold`, counted in points)...
    pub convert_points: usize,
    /// ... or this many bytes of live vectors.
    pub convert_bytes: u64,
    /// Sealed segments beyond this number are merged, smallest first.
    pub max_segments: usize,
    /// A sealed segment whose share of dead offsets (deleted or
    /// superseded points) reaches this is vacuumed...
    pub vacuum_ratio: f64,
    /// ... when it has at least this many dead offsets.
    pub vacuum_min_dead: usize,
    /// A built segment gets the collection's HNSW index (if it asks for
    /// one) when it holds at least this many points; smaller ones are
    /// searched exactly.
    pub index_points: usize,
}

impl Default for OptimizerOptions {
    fn default() -> Self {
        OptimizerOptions {
            convert_points: 20_000,
            convert_bytes: 64 << 20,
            max_segments: 8,
            vacuum_ratio: 0.2,
            vacuum_min_dead: 1000,
            index_points: 10_000,
        }
    }
}

/// What an optimization does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizationKind {
    /// The appendable segment (or a sealed appendable-kind one) becomes an
    /// immutable mmap segment.
    Convert,
    /// Several small sealed segments become one.
    Merge,
    /// A sealed segment is rebuilt without its dead offsets.
    Vacuum,
    /// A sealed segment not ordered by the tenant key is rebuilt ordered.
    Defragment,
}

impl OptimizationKind {
    /// Lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            OptimizationKind::Convert => "convert",
            OptimizationKind::Merge => "merge",
            OptimizationKind::Vacuum => "vacuum",
            OptimizationKind::Defragment => "defragment",
        }
    }
}

/// One planned optimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimization {
    /// What it does.
    pub kind: OptimizationKind,
    /// Names of the segments it replaces.
    pub sources: Vec<String>,
    /// Why, for logs and reports.
    pub reason: String,
}

/// What the planner knows of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentStats {
    /// Directory name.
    pub name: String,
    /// Whether new points go to it.
    pub appendable: bool,
    /// Whether it is of an appendable kind (chunked): a sealed one is a
    /// leftover of an interrupted convert and is always converted.
    pub appendable_kind: bool,
    /// Live points.
    pub points: usize,
    /// Offsets in use, live or not.
    pub slots: usize,
    /// Bytes of one vector.
    pub vector_bytes: u64,
    /// The key its points are ordered by, if built defragmented.
    pub tenant_key: Option<String>,
}

impl SegmentStats {
    fn dead(&self) -> usize {
        self.slots.saturating_sub(self.points)
    }
}

/// The optimizations due for `segments` under `options`, with disjoint
/// sources, in the order they should run: convert, vacuum, defragment,
/// merge. `tenant_key` is the collection's tenant key, if any.
pub fn plan(
    segments: &[SegmentStats],
    options: &OptimizerOptions,
    tenant_key: Option<&str>,
) -> Vec<Optimization> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Optimization>, kind, sources: Vec<&str>, reason: String| {
        out.push(Optimization {
            kind,
            sources: sources.into_iter().map(str::to_string).collect(),
            reason,
        });
    };
    let taken =
        |out: &[Optimization], name: &str| out.iter().any(|o| o.sources.iter().any(|s| s == name));
    for s in segments {
        let bytes = s.points as u64 * s.vector_bytes;
        if s.appendable
            && s.points > 0
            && (s.points >= options.convert_points || bytes >= options.convert_bytes)
        {
            let reason = format!(
                "appendable segment holds {} points ({} bytes of vectors)",
                s.points, bytes
            );
            push(&mut out, OptimizationKind::Convert, vec![&s.name], reason);
        } else if !s.appendable && s.appendable_kind {
            let reason = "sealed appendable-kind segment (an interrupted convert)".to_string();
            push(&mut out, OptimizationKind::Convert, vec![&s.name], reason);
        }
    }
    let sealed = || {
        segments
            .iter()
            .filter(|s| !s.appendable && !s.appendable_kind)
    };
    for s in sealed() {
        let dead = s.dead();
        if dead >= options.vacuum_min_dead.max(1)
            && dead as f64 >= options.vacuum_ratio * s.slots as f64
        {
            let reason = format!("{dead} of {} offsets dead", s.slots);
            push(&mut out, OptimizationKind::Vacuum, vec![&s.name], reason);
        }
    }
    if let Some(key) = tenant_key {
        for s in sealed() {
            if s.points > 1 && s.tenant_key.as_deref() != Some(key) && !taken(&out, &s.name) {
                let reason = format!("points not ordered by tenant key {key:?}");
                push(
                    &mut out,
                    OptimizationKind::Defragment,
                    vec![&s.name],
                    reason,
                );
            }
        }
    }
    // Sealed segments after the above: too many -> merge the smallest.
    let sealed_count = sealed().count()
        + out
            .iter()
            .filter(|o| o.kind == OptimizationKind::Convert)
            .count();
    let max = options.max_segments.max(1);
    if sealed_count > max {
        let mut free: Vec<&SegmentStats> = sealed().filter(|s| !taken(&out, &s.name)).collect();
        free.sort_by_key(|s| (s.points, s.name.clone()));
        let n = (sealed_count - max + 1).min(free.len());
        if n >= 2 {
            let sources: Vec<&str> = free[..n].iter().map(|s| s.name.as_str()).collect();
            let reason = format!("{sealed_count} sealed segments, at most {max} wanted");
            push(&mut out, OptimizationKind::Merge, sources, reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(name: &str, points: usize, slots: usize) -> SegmentStats {
        SegmentStats {
            name: name.into(),
            appendable: false,
            appendable_kind: false,
            points,
            slots,
            vector_bytes: 512,
            tenant_key: None,
        }
    }

    fn kinds(plans: &[Optimization]) -> Vec<(OptimizationKind, Vec<String>)> {
        plans.iter().map(|p| (p.kind, p.sources.clone())).collect()
    }

    #[test]
    fn nothing_to_do_for_small_healthy_segments() {
        let mut a = seg("a", 10, 10);
        a.appendable = true;
        a.appendable_kind = true;
        assert!(plan(&[a, seg("b", 100, 110)], &OptimizerOptions::default(), None).is_empty());
    }

    #[test]
    fn convert_by_points_or_bytes_and_leftover_chunked_segments() {
        let options = OptimizerOptions {
            convert_points: 100,
            convert_bytes: 1 << 20,
            ..Default::default()
        };
        let mut a = seg("a", 100, 100);
        a.appendable = true;
        a.appendable_kind = true;
        let mut leftover = seg("l", 5, 5);
        leftover.appendable_kind = true;
        let plans = plan(&[a.clone(), leftover], &options, None);
        use OptimizationKind::*;
        assert_eq!(
            kinds(&plans),
            vec![(Convert, vec!["a".into()]), (Convert, vec!["l".into()])]
        );
        a.points = 99;
        assert!(plan(&[a.clone()], &options, None).is_empty());
        a.vector_bytes = 1 << 20;
        assert_eq!(plan(&[a], &options, None).len(), 1);
    }

    #[test]
    fn vacuum_needs_both_ratio_and_count() {
        let options = OptimizerOptions {
            vacuum_ratio: 0.2,
            vacuum_min_dead: 10,
            ..Default::default()
        };
        use OptimizationKind::*;
        let plans = plan(
            &[seg("a", 80, 100), seg("b", 10, 19), seg("c", 900, 1000)],
            &options,
            None,
        );
        assert_eq!(kinds(&plans), vec![(Vacuum, vec!["a".into()])]);
    }

    #[test]
    fn defragment_segments_not_ordered_by_the_tenant_key() {
        let mut ordered = seg("o", 50, 50);
        ordered.tenant_key = Some("t".into());
        let plans = plan(
            &[ordered, seg("x", 50, 50), seg("tiny", 1, 1)],
            &OptimizerOptions::default(),
            Some("t"),
        );
        assert_eq!(
            kinds(&plans),
            vec![(OptimizationKind::Defragment, vec!["x".into()])]
        );
        assert!(plan(&[seg("x", 50, 50)], &OptimizerOptions::default(), None).is_empty());
    }

    #[test]
    fn merge_the_smallest_free_segments_down_to_the_bound() {
        let options = OptimizerOptions {
            max_segments: 2,
            ..Default::default()
        };
        let segs = [
            seg("a", 40, 40),
            seg("b", 10, 10),
            seg("c", 30, 30),
            seg("d", 20, 20),
        ];
        let plans = plan(&segs, &options, None);
        // 4 sealed, 2 wanted: merging the 3 smallest leaves 2.
        assert_eq!(
            kinds(&plans),
            vec![(
                OptimizationKind::Merge,
                vec!["b".into(), "d".into(), "c".into()]
            )]
        );
    }
}
