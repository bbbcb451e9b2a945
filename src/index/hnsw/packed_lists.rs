//! Compressed neighbour lists: sorted, delta-encoded, bit-packed.
//!
//! One list of `len` neighbours (the length is stored elsewhere, in the
//! graph's list-length array) is encoded as
//!
//! ```text
//! byte 0        bits: width of every delta, 0..=32
//! bytes 1..5    first (smallest) neighbour, u32 little-endian
//! bytes 5..     len - 1 deltas (each neighbour minus the previous one),
//!               `bits` bits each, packed least-significant bit first,
//!               ⌈(len - 1) · bits / 8⌉ bytes
//! ```
//!
//! An empty list takes no bytes at all. Neighbours of one node are
//! distinct, so every delta is at least 1; sorting loses nothing a search
//! needs (it visits every neighbour of a node it expands). Decoding checks
//! every length against the bytes it is given, so a damaged list is an
//! error, never a panic or a read past the buffer.

/// Bytes of an encoded list of `len` neighbours with deltas of `bits`
/// bits.
pub(crate) fn encoded_len(len: usize, bits: u32) -> usize {
    if len == 0 {
        return 0;
    }
    5 + ((len - 1) * bits as usize).div_ceil(8)
}

/// Append the encoding of `list` (any order, distinct values) to `out`.
pub(crate) fn encode(list: &[u32], out: &mut Vec<u8>) {
    if list.is_empty() {
        return;
    }
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    let max_delta = sorted.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let bits = 32 - max_delta.leading_zeros();
    out.push(bits as u8);
    out.extend_from_slice(&sorted[0].to_le_bytes());
    let (mut acc, mut filled) = (0u64, 0u32);
    for w in sorted.windows(2) {
        acc |= u64::from(w[1] - w[0]) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// Decode a list of `len` neighbours from the start of `bytes` into `out`
/// (cleared first). Returns the bytes read, or `None` when `bytes` is too
/// short, the width is above 32 or a value overflows `u32`.
pub(crate) fn decode(bytes: &[u8], len: usize, out: &mut Vec<u32>) -> Option<usize> {
    out.clear();
    if len == 0 {
        return Some(0);
    }
    let bits = u32::from(*bytes.first()?);
    if bits > 32 {
        return None;
    }
    let used = encoded_len(len, bits);
    let body = bytes.get(5..used)?;
    let mut value = u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?);
    out.push(value);
    let mask = if bits == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << bits) - 1
    };
    let (mut acc, mut filled, mut next) = (0u64, 0u32, 0usize);
    for _ in 1..len {
        while filled < bits {
            acc |= u64::from(*body.get(next)?) << filled;
            next += 1;
            filled += 8;
        }
        value = value.checked_add((acc & mask) as u32)?;
        out.push(value);
        acc >>= bits;
        filled -= bits;
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecseg_traits::testing::Rng;

    fn round_trip(list: &[u32]) {
        let mut bytes = Vec::new();
        encode(list, &mut bytes);
        let mut sorted = list.to_vec();
        sorted.sort_unstable();
        let bits = sorted
            .windows(2)
            .map(|w| 32 - (w[1] - w[0]).leading_zeros())
            .max()
            .unwrap_or(0);
        assert_eq!(bytes.len(), encoded_len(list.len(), bits));
        bytes.extend_from_slice(&[0xAB; 7]); // the next list's bytes
        let mut out = Vec::new();
        assert_eq!(
            decode(&bytes, list.len(), &mut out),
            Some(encoded_len(list.len(), bits))
        );
        assert_eq!(out, sorted);
    }

    #[test]
    fn lists_round_trip_sorted() {
        round_trip(&[]);
        round_trip(&[7]);
        round_trip(&[u32::MAX, 0]);
        round_trip(&[5, 6, 7, 8]);
        round_trip(&[0, u32::MAX / 2, u32::MAX]);
        let mut rng = Rng::new(9);
        for _ in 0..2_000 {
            let len = rng.below(64);
            let range = [64u64, 1 << 16, 1 << 31, 1 << 32][rng.below(4)];
            let mut set = std::collections::BTreeSet::new();
            while set.len() < len.min(range as usize) {
                set.insert((rng.next_u64() % range) as u32);
            }
            let mut list: Vec<u32> = set.into_iter().collect();
            list.reverse();
            round_trip(&list);
        }
    }

    #[test]
    fn damaged_lists_are_errors_not_panics() {
        let mut bytes = Vec::new();
        encode(&[3, 900, 70_000, 1_000_000], &mut bytes);
        let mut out = Vec::new();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 4, &mut out), None, "cut at {cut}");
        }
        let mut wide = bytes.clone();
        wide[0] = 33;
        assert_eq!(decode(&wide, 4, &mut out), None);
        // Deltas that overflow u32.
        let mut over = vec![32u8];
        over.extend_from_slice(&u32::MAX.to_le_bytes());
        over.extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(decode(&over, 2, &mut out), None);
        // Any byte flipped: decodes to something or fails, never panics.
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                let _ = decode(&b, 4, &mut out);
            }
        }
        assert_eq!(decode(&bytes, 4, &mut out), Some(bytes.len()));
        assert_eq!(out, [3, 900, 70_000, 1_000_000]);
    }
}
