//! The two queues of a beam search, over candidates packed into one
//! `u64` each so every heap comparison is a single integer compare.
//!
//! A key orders exactly like [`Candidate`]'s `Ord` (score by
//! `f32::total_cmp`, then the lower offset first): the high half is the
//! score's bits mapped to an unsigned integer of the same total order, the
//! low half the complemented offset.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use vecseg_traits::PointOffset;

use super::search::Candidate;

/// `bits` of an f32 mapped so that unsigned order is `total_cmp` order
/// (and back: the map is its own inverse on the sign-adjusted value).
#[inline]
fn ordered(bits: u32) -> u32 {
    // Negative numbers: flip every bit but the sign (as `total_cmp`
    // does), then the sign bit moves signed order to unsigned order.
    (bits ^ ((((bits as i32) >> 31) as u32) >> 1)) ^ 0x8000_0000
}

/// Inverse of [`ordered`].
#[inline]
fn unordered(key: u32) -> u32 {
    let signed = key ^ 0x8000_0000;
    signed ^ ((((signed as i32) >> 31) as u32) >> 1)
}

/// The packed key of `c`.
#[inline]
pub(crate) fn pack(score: f32, offset: PointOffset) -> u64 {
    (u64::from(ordered(score.to_bits())) << 32) | u64::from(!offset)
}

/// The candidate a key packs.
#[inline]
pub(crate) fn unpack(key: u64) -> Candidate {
    Candidate {
        offset: !(key as u32),
        score: f32::from_bits(unordered((key >> 32) as u32)),
    }
}

/// Candidates still to expand, best first.
#[derive(Default)]
pub(crate) struct Frontier(BinaryHeap<u64>);

impl Frontier {
    /// Empty it, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Add a candidate.
    #[inline]
    pub(crate) fn push(&mut self, score: f32, offset: PointOffset) {
        self.0.push(pack(score, offset));
    }

    /// Take the best candidate.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Candidate> {
        self.0.pop().map(unpack)
    }
}

/// The best candidates found so far, at most `ef`, worst on top.
#[derive(Default)]
pub(crate) struct Best(BinaryHeap<Reverse<u64>>);

impl Best {
    /// Empty it, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// How many it holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Add a candidate.
    #[inline]
    pub(crate) fn push(&mut self, score: f32, offset: PointOffset) {
        self.0.push(Reverse(pack(score, offset)));
    }

    /// Drop the worst candidate.
    #[inline]
    pub(crate) fn pop_worst(&mut self) {
        self.0.pop();
    }

    /// The worst score held (`None` when empty).
    #[inline]
    pub(crate) fn worst_score(&self) -> Option<f32> {
        self.0.peek().map(|r| unpack(r.0).score)
    }

    /// The candidates, best first, leaving it empty.
    pub(crate) fn drain_sorted(&mut self, out: &mut Vec<Candidate>) {
        out.clear();
        out.extend(self.0.drain().map(|r| unpack(r.0)));
        out.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_candidates() {
        let scores = [
            f32::NEG_INFINITY,
            -3.5,
            -1.0,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-30,
            0.25,
            0.9,
            7.0,
            f32::INFINITY,
        ];
        let mut all = Vec::new();
        for &s in &scores {
            for o in [0, 1, 7, u32::MAX - 1, u32::MAX] {
                all.push(Candidate {
                    offset: o,
                    score: s,
                });
            }
        }
        for a in &all {
            let back = unpack(pack(a.score, a.offset));
            assert_eq!(back.offset, a.offset);
            assert_eq!(back.score.to_bits(), a.score.to_bits());
            for b in &all {
                assert_eq!(
                    pack(a.score, a.offset).cmp(&pack(b.score, b.offset)),
                    a.cmp(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn best_keeps_the_worst_on_top_and_drains_best_first() {
        let mut best = Best::default();
        for (o, s) in [(3, 0.5), (1, 0.9), (2, 0.1), (4, 0.5)] {
            best.push(s, o);
        }
        assert_eq!(best.worst_score(), Some(0.1));
        best.pop_worst();
        assert_eq!(best.worst_score(), Some(0.5));
        let mut out = Vec::new();
        best.drain_sorted(&mut out);
        let offsets: Vec<u32> = out.iter().map(|c| c.offset).collect();
        assert_eq!(offsets, [1, 3, 4]);
        assert_eq!(best.len(), 0);
    }
}
