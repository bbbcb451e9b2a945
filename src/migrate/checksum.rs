//! [`Checksum`]: a fast, order-dependent 64-bit digest of a segment's slots.
//!
//! Both sides of a migration compute it from their own reads, slot by slot
//! in offset order, over: the offset, the vector bytes (when the slot has a
//! vector), the deleted flag, the payload as canonical JSON (keys sorted;
//! nothing for an empty payload), the external id and the version (for
//! mapped slots). It guards against accidental corruption, not adversaries;
//! verification also compares every value directly.

use vecseg_traits::{Payload, PointId, PointOffset, VectorElement, Version};

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// Streaming 64-bit digest (multiply-xorshift over 8-byte words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(0x5EC5_E6D1_6E57_0001)
    }
}

impl Checksum {
    /// Resume a digest from a saved [`Checksum::value`].
    pub fn from_value(value: u64) -> Self {
        Checksum(value)
    }

    /// The current digest.
    pub fn value(&self) -> u64 {
        self.0
    }

    #[inline]
    fn word(&mut self, w: u64) {
        let h = (self.0 ^ w).wrapping_mul(K1);
        self.0 = h ^ (h >> 29);
    }

    /// Mix in raw bytes (length included, so concatenations differ).
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64 ^ K2);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    /// Mix in a vector, component by component (exact bits, widened to f32).
    pub fn vector<T: VectorElement>(&mut self, v: &[T]) {
        self.word(v.len() as u64 ^ K2);
        let mut pairs = v.chunks_exact(2);
        for p in &mut pairs {
            self.word(
                u64::from(p[0].to_f32().to_bits()) | (u64::from(p[1].to_f32().to_bits()) << 32),
            );
        }
        if let [last] = pairs.remainder() {
            self.word(u64::from(last.to_f32().to_bits()));
        }
    }

    /// Mix in one slot of a segment.
    pub fn slot<T: VectorElement>(
        &mut self,
        offset: PointOffset,
        vector: Option<&[T]>,
        deleted: bool,
        payload: &Payload,
        mapping: Option<(PointId, Option<Version>)>,
    ) {
        self.word(u64::from(offset) | (u64::from(deleted) << 32));
        match vector {
            Some(v) => self.vector(v),
            None => self.word(K2),
        }
        if payload.is_empty() {
            self.word(0);
        } else {
            // serde_json's map is ordered by key, so this is canonical.
            match serde_json::to_vec(payload) {
                Ok(json) => self.bytes(&json),
                Err(_) => self.word(1),
            }
        }
        match mapping {
            None => self.word(2),
            Some((id, version)) => {
                self.word(u64::from(id.is_uuid()));
                let key = id.as_u128();
                self.word(key as u64);
                self.word((key >> 64) as u64);
                self.word(version.map_or(K1, |v| v ^ K2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_every_field_and_order() {
        let p = Payload::new();
        let mut q = Payload::new();
        q.insert("a".into(), 1.into());
        let base = |f: &dyn Fn(&mut Checksum)| {
            let mut c = Checksum::default();
            f(&mut c);
            c.value()
        };
        let a = base(&|c| c.slot(0, Some(&[1u8, 2, 3][..]), false, &p, None));
        let variants = [
            base(&|c| c.slot(1, Some(&[1u8, 2, 3][..]), false, &p, None)),
            base(&|c| c.slot(0, Some(&[1u8, 2, 4][..]), false, &p, None)),
            base(&|c| c.slot(0, Some(&[1u8, 2, 3, 0][..]), false, &p, None)),
            base(&|c| c.slot::<u8>(0, None, false, &p, None)),
            base(&|c| c.slot(0, Some(&[1u8, 2, 3][..]), true, &p, None)),
            base(&|c| c.slot(0, Some(&[1u8, 2, 3][..]), false, &q, None)),
            base(&|c| {
                c.slot(
                    0,
                    Some(&[1u8, 2, 3][..]),
                    false,
                    &p,
                    Some((PointId::Num(1), None)),
                )
            }),
            base(&|c| {
                c.slot(
                    0,
                    Some(&[1u8, 2, 3][..]),
                    false,
                    &p,
                    Some((PointId::Num(1), Some(3))),
                )
            }),
        ];
        for v in variants {
            assert_ne!(a, v);
        }
        let ab = base(&|c| {
            c.bytes(b"a");
            c.bytes(b"b")
        });
        let ba = base(&|c| {
            c.bytes(b"b");
            c.bytes(b"a")
        });
        assert_ne!(ab, ba);
    }
}
