//! The scoring seam: search scores a query against a storage through a
//! [`QueryScorer`] the storage makes ([`VectorStorageRead::scorer`]), so a
//! storage that keeps compressed codes (quantization) scores through its
//! codes while raw storages score their vectors with [`RawScorer`].
//!
//! A scorer says whether its scores are exact. Search over an inexact
//! scorer keeps more candidates than asked for and can rescore them with
//! the raw vectors (`VectorStorageRead::get_batch`), which every storage,
//! quantized or not, still returns.

use crate::access::Sequential;
use crate::distance::Distance;
use crate::element::VectorElement;
use crate::error::Result;
use crate::types::PointOffset;
use crate::vector::VectorStorageRead;

/// Scores of one query against the slots of one storage.
pub trait QueryScorer: Sync {
    /// Whether the scores are the exact ones of the raw vectors.
    fn is_exact(&self) -> bool;

    /// Whether search rescores candidates with the raw vectors when the
    /// caller does not say (never needed when [`is_exact`](Self::is_exact)).
    fn rescore_by_default(&self) -> bool {
        !self.is_exact()
    }

    /// The score of the slot at `offset` (deleted slots too).
    fn score(&self, offset: PointOffset) -> Result<f32>;

    /// `out[i]` = the score of the slot at `offsets[i]` (equal lengths):
    /// the scattered reads of a graph search (one node's neighbours).
    /// Scorers over memory override it to overlap the reads' cache
    /// misses; the default scores one slot at a time.
    fn score_batch(&self, offsets: &[PointOffset], out: &mut [f32]) -> Result<()> {
        for (&o, s) in offsets.iter().zip(out.iter_mut()) {
            *s = self.score(o)?;
        }
        Ok(())
    }

    /// For every live slot of `range` in increasing offset order: ask
    /// `keep(offset)`, and if it says yes, score the slot and call
    /// `f(offset, score)`. The loop of exact search. A scorer that scores
    /// a block of slots at once may compute scores `keep` then discards.
    fn score_live<K, F>(&self, range: std::ops::Range<PointOffset>, keep: K, f: F) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        F: FnMut(PointOffset, f32);

    /// [`score_live`](Self::score_live) for a caller that only wants
    /// scores above a moving bar (a top-k's admission threshold): `f` is
    /// called for every kept live slot whose score is above `bar()`, and
    /// may be skipped for the others. The scorer asks `bar()` at least
    /// once per block of slots it scores together, so `f` may raise the
    /// bar as it goes. The default checks every score against the bar.
    fn score_live_above<K, B, F>(
        &self,
        range: std::ops::Range<PointOffset>,
        keep: K,
        mut bar: B,
        mut f: F,
    ) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        B: FnMut() -> f32,
        F: FnMut(PointOffset, f32),
    {
        self.score_live(range, keep, |offset, s| {
            if s > bar() {
                f(offset, s);
            }
        })
    }
}

/// The scorer of a raw storage: exact scores of its vectors.
#[derive(Debug)]
pub struct RawScorer<'a, S: VectorStorageRead> {
    storage: &'a S,
    query: Vec<S::Element>,
    distance: Distance,
}

impl<'a, S: VectorStorageRead> RawScorer<'a, S> {
    /// A scorer of `query` (already in stored form) against `storage`.
    pub fn new(storage: &'a S, query: &[S::Element]) -> Self {
        RawScorer {
            storage,
            query: query.to_vec(),
            distance: storage.distance(),
        }
    }

    /// Score the live slots of `range` with the kernel of distance `D`
    /// (one monomorphised loop per distance: the kernel is chosen once
    /// per scan, not once per vector).
    #[inline]
    fn scan<K, F>(
        &self,
        range: std::ops::Range<PointOffset>,
        distance: Distance,
        mut keep: K,
        mut f: F,
    ) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        F: FnMut(PointOffset, f32),
    {
        let q = &self.query[..];
        self.storage.scan_live::<Sequential, _>(range, |offset, v| {
            if keep(offset) {
                f(offset, S::Element::score(distance, q, v));
            }
        })
    }
}

impl<S: VectorStorageRead> QueryScorer for RawScorer<'_, S> {
    fn is_exact(&self) -> bool {
        true
    }

    fn score(&self, offset: PointOffset) -> Result<f32> {
        let v = self.storage.get::<crate::access::Random>(offset)?;
        Ok(S::Element::score(self.distance, &self.query, &v))
    }

    /// Scores four slots at a time with the element's interleaved
    /// kernel ([`VectorElement::score4`]), so their cache misses overlap.
    fn score_batch(&self, offsets: &[PointOffset], out: &mut [f32]) -> Result<()> {
        let get = |o: PointOffset| self.storage.get::<crate::access::Random>(o);
        let q = &self.query[..];
        let n = offsets.len().min(out.len());
        let (offsets, out) = (&offsets[..n], &mut out[..n]);
        let mut groups = offsets.chunks_exact(4);
        let mut outs = out.chunks_exact_mut(4);
        for &o in offsets.iter().take(4) {
            self.storage.prefetch(o);
        }
        for (i, (o, s)) in (&mut groups).zip(&mut outs).enumerate() {
            for &next in offsets.iter().skip(4 * i + 4).take(4) {
                self.storage.prefetch(next);
            }
            let v = [get(o[0])?, get(o[1])?, get(o[2])?, get(o[3])?];
            s.copy_from_slice(&S::Element::score4(
                self.distance,
                q,
                [&v[0], &v[1], &v[2], &v[3]],
            ));
        }
        // Two or three left: one more interleaved pass, the last slot
        // repeated (its lines are already being read).
        match (groups.remainder(), outs.into_remainder()) {
            ([], _) => {}
            ([o], [s]) => *s = S::Element::score(self.distance, q, &get(*o)?),
            (o, s) => {
                let (a, b, c) = (get(o[0])?, get(o[1])?, get(o[o.len() - 1])?);
                let four = S::Element::score4(self.distance, q, [&a, &b, &c, &c]);
                s.copy_from_slice(&four[..s.len()]);
            }
        }
        Ok(())
    }

    fn score_live<K, F>(&self, range: std::ops::Range<PointOffset>, keep: K, f: F) -> Result<()>
    where
        K: FnMut(PointOffset) -> bool,
        F: FnMut(PointOffset, f32),
    {
        match self.distance {
            Distance::Cosine => self.scan(range, Distance::Cosine, keep, f),
            Distance::Dot => self.scan(range, Distance::Dot, keep, f),
            Distance::Euclid => self.scan(range, Distance::Euclid, keep, f),
            Distance::Manhattan => self.scan(range, Distance::Manhattan, keep, f),
        }
    }
}
