//! Read coalescing: turning a batch of record reads into fewer, larger
//! device requests.
//!
//! A cold random read costs the device a fixed amount per request plus a
//! little per byte. When two wanted records lie close together in the file,
//! one request covering both (and the gap between them) is cheaper than two
//! requests. [`plan_requests`] walks the records in file order and grows a
//! request while the next record starts at most [`ReadCoalescing::max_gap`]
//! bytes after the request's end and the request stays within
//! [`ReadCoalescing::max_request`] bytes.
//!
//! A record always starts at an 8-byte multiple from its request's start
//! (records that would not are put in a new request), so a record inside a
//! request buffer keeps the alignment the buffer has.

/// When neighbouring records are read with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCoalescing {
    /// Largest gap in bytes between the end of a request and the next
    /// record that is still read through (and thrown away) to save a request.
    pub max_gap: usize,
    /// Largest request in bytes; a record longer than this is read alone.
    /// `0` turns coalescing off: one request per record.
    pub max_request: usize,
}

impl ReadCoalescing {
    /// One request per record.
    pub const OFF: ReadCoalescing = ReadCoalescing {
        max_gap: 0,
        max_request: 0,
    };

    /// Whether any two records may share a request.
    pub fn is_off(&self) -> bool {
        self.max_request == 0
    }
}

impl Default for ReadCoalescing {
    /// Read through gaps of up to 16 KiB, in requests of up to 64 KiB.
    ///
    /// On the virtio disk of the development machines a 4 KiB random read
    /// costs as much device time as streaming about 20 KiB, so reading
    /// through a gap shorter than that is cheaper than a second request; on
    /// fast NVMe drives the break-even gap is smaller, and the default
    /// still never reads more than 16 KiB that nobody asked for per record.
    /// `benches/mmap_vectors` sweeps these values.
    fn default() -> Self {
        ReadCoalescing {
            max_gap: 16 * 1024,
            max_request: 64 * 1024,
        }
    }
}

/// One device request covering the records `first..end` (indices into the
/// sorted positions handed to [`plan_requests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRequest {
    /// File position of the first byte read.
    pub pos: u64,
    /// Bytes read.
    pub len: usize,
    /// Index of the first record served by this request.
    pub first: usize,
    /// One past the index of the last record served by this request.
    pub end: usize,
}

/// Group records of `len` bytes at the ascending file positions `sorted`
/// into requests, following `rules`. Every record falls in exactly one
/// request, requests are in file order, and record `i` of request `r`
/// starts at byte `sorted[i] - r.pos` of it, an 8-byte multiple.
pub fn plan_requests(sorted: &[u64], len: usize, rules: ReadCoalescing) -> Vec<PlannedRequest> {
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    let mut out: Vec<PlannedRequest> = Vec::new();
    for (i, &pos) in sorted.iter().enumerate() {
        if let Some(cur) = out.last_mut() {
            let cur_end = cur.pos + cur.len as u64;
            let new_end = cur_end.max(pos + len as u64);
            let fits = !rules.is_off()
                && pos <= cur_end + rules.max_gap as u64
                && (pos - cur.pos) % 8 == 0
                && new_end - cur.pos <= rules.max_request as u64;
            if fits {
                cur.len = (new_end - cur.pos) as usize;
                cur.end = i + 1;
                continue;
            }
        }
        out.push(PlannedRequest {
            pos,
            len,
            first: i,
            end: i + 1,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_close_records_and_splits_far_ones() {
        let rules = ReadCoalescing {
            max_gap: 100,
            max_request: 1000,
        };
        let sorted = [0, 64, 64, 264, 512, 2000, 2040];
        let plan = plan_requests(&sorted, 64, rules);
        // 0, 64 and its duplicate share 0..128; 264 is 136 bytes past that
        // (> 100) and 512 is 184 past 328, so both start new requests;
        // 2040 overlaps 2000..2064 and merges.
        let spans: Vec<(u64, usize, usize, usize)> = plan
            .iter()
            .map(|r| (r.pos, r.len, r.first, r.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 128, 0, 3),
                (264, 64, 3, 4),
                (512, 64, 4, 5),
                (2000, 104, 5, 7)
            ]
        );
        // Misaligned neighbour (2044 - 2000 = 44) starts a new request.
        let plan = plan_requests(&[2000, 2044], 8, rules);
        assert_eq!(plan.len(), 2);
        // Off: one request per record, even for identical positions.
        let plan = plan_requests(&sorted, 64, ReadCoalescing::OFF);
        assert_eq!(plan.len(), sorted.len());
    }

    #[test]
    fn respects_the_request_cap() {
        let rules = ReadCoalescing {
            max_gap: 1 << 20,
            max_request: 256,
        };
        let sorted: Vec<u64> = (0..10).map(|i| i * 64).collect();
        let plan = plan_requests(&sorted, 64, rules);
        assert_eq!(plan.len(), 3);
        assert!(plan.iter().all(|r| r.len <= 256));
        // A record longer than the cap is read alone, whole.
        let plan = plan_requests(&[0, 8], 512, rules);
        assert_eq!(plan.iter().map(|r| r.len).collect::<Vec<_>>(), [512, 512]);
    }

    proptest! {
        #[test]
        fn every_record_is_covered_once(
            mut positions in prop::collection::vec(0u64..20_000, 0..200),
            len in 1usize..300,
            max_gap in 0usize..3000,
            max_request in 0usize..5000,
        ) {
            positions.sort_unstable();
            let rules = ReadCoalescing { max_gap, max_request };
            let plan = plan_requests(&positions, len, rules);
            let mut next = 0;
            for r in &plan {
                prop_assert_eq!(r.first, next);
                prop_assert!(r.end > r.first);
                next = r.end;
                prop_assert!(r.len <= max_request.max(len));
                for &p in &positions[r.first..r.end] {
                    prop_assert!(p >= r.pos);
                    prop_assert_eq!((p - r.pos) % 8, 0);
                    prop_assert!(p + len as u64 <= r.pos + r.len as u64);
                }
            }
            prop_assert_eq!(next, positions.len());
            prop_assert!(plan.windows(2).all(|w| w[0].pos <= w[1].pos));
        }
    }
}
