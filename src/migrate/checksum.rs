//! [`Checksum`]: a fast, order-dependent 64-bit digest of a segment's slots.
//!
//! Every slot has its own 64-bit hash ([`Checksum::slot_hash`]) over: the
//! offset, the vector bytes (when the slot has a vector), the deleted flag,
//! the payload as canonical JSON (keys sorted; nothing for an empty
//! payload), the external id and the version (for mapped slots). The digest
//! of a segment folds the slot hashes in offset order ([`Checksum::mix`]).
//! The in-place upgrade records the slot hashes of what it read from the
//! source and compares the target's slot hashes with them one by one. It
//! guards against accidental corruption, not adversaries.

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

    /// Mix in a slot hash (see [`Checksum::slot_hash`]): the digest of a
    /// run of slots folds their hashes in offset order.
    #[inline]
    pub fn mix(&mut self, slot_hash: u64) {
        self.word(slot_hash);
    }

    /// Mix in one slot of a segment: `mix(slot_hash(..))`. Returns the
    /// bytes of the payload's JSON (0 for an empty payload).
    pub fn slot<T: VectorElement>(
        &mut self,
        offset: PointOffset,
        vector: Option<&[T]>,
        deleted: bool,
        payload: &Payload,
        mapping: Option<(PointId, Option<Version>)>,
    ) -> u64 {
        let (h, json) = Self::slot_hash(offset, vector, deleted, payload, mapping);
        self.mix(h);
        json
    }

    /// The 64-bit hash of one slot (from a fixed seed) and the bytes of its
    /// payload's JSON (0 for an empty payload).
    pub fn slot_hash<T: VectorElement>(
        offset: PointOffset,
        vector: Option<&[T]>,
        deleted: bool,
        payload: &Payload,
        mapping: Option<(PointId, Option<Version>)>,
    ) -> (u64, u64) {
        thread_local! {
            static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut c = Checksum::default();
        c.word(u64::from(offset) | (u64::from(deleted) << 32));
        match vector {
            Some(v) => c.vector(v),
            None => c.word(K2),
        }
        let mut json_len = 0;
        if payload.is_empty() {
            c.word(0);
        } else {
            // serde_json's map is ordered by key, so this is canonical. One
            // buffer per thread: no allocation per slot.
            JSON.with_borrow_mut(|buf| {
                buf.clear();
                match serde_json::to_writer(&mut *buf, payload) {
                    Ok(()) => {
                        c.bytes(buf);
                        json_len = buf.len() as u64;
                    }
                    Err(_) => c.word(1),
                }
            });
        }
        match mapping {
            None => c.word(2),
            Some((id, version)) => {
                c.word(u64::from(id.is_uuid()));
                let key = id.as_u128();
                c.word(key as u64);
                c.word((key >> 64) as u64);
                c.word(version.map_or(K1, |v| v ^ K2));
            }
        }
        // Finalise so that nearby slots' hashes share no structure.
        c.word(K2);
        (c.value(), json_len)
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
        let a = base(&|c| {
            c.slot(0, Some(&[1u8, 2, 3][..]), false, &p, None);
        });
        let variants = [
            base(&|c| {
                c.slot(1, Some(&[1u8, 2, 3][..]), false, &p, None);
            }),
            base(&|c| {
                c.slot(0, Some(&[1u8, 2, 4][..]), false, &p, None);
            }),
            base(&|c| {
                c.slot(0, Some(&[1u8, 2, 3, 0][..]), false, &p, None);
            }),
            base(&|c| {
                c.slot::<u8>(0, None, false, &p, None);
            }),
            base(&|c| {
                c.slot(0, Some(&[1u8, 2, 3][..]), true, &p, None);
            }),
            base(&|c| {
                c.slot(0, Some(&[1u8, 2, 3][..]), false, &q, None);
            }),
            base(&|c| {
                c.slot(
                    0,
                    Some(&[1u8, 2, 3][..]),
                    false,
                    &p,
                    Some((PointId::Num(1), None)),
                );
            }),
            base(&|c| {
                c.slot(
                    0,
                    Some(&[1u8, 2, 3][..]),
                    false,
                    &p,
                    Some((PointId::Num(1), Some(3))),
                );
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
