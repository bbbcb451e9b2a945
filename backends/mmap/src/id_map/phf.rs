//! The id map's perfect hash functions (format 4) and their hashing of ids.
//!
//! * **Numeric ids: PHast** (`ph::phast::Function2`, 8-bit seeds, the
//!   PHast+ seed chooser with wrapping). A lookup hashes the id once, reads
//!   one byte of seeds (about 2 bits per key in all) and computes the slot;
//!   the few keys bumped past the first level go through [`Corrections`].
//!   Against the fingerprinting FMPH of format 3 (one bit test and a rank
//!   per level, 1.6–2.7 levels per lookup with a branch each), evaluation
//!   is about 10× faster and construction 2×.
//! * **UUIDs: FMPH** (`ph::fmph::Function`, levels twice the keys). PHast
//!   builds on 64-bit hashes of the keys and needs them distinct, which a
//!   64-bit hash of 128-bit keys cannot promise; FMPH reports a collision
//!   as a failed build instead.
//!
//! ## Unknown keys
//!
//! A PHF maps an id it was not built for to *some* value; the id map
//! checks the record it lands on. PHast's own correction array reads
//! unchecked, which is sound only for keys of the build, so the functions
//! here use [`Corrections`], whose [`get`](CompressedArray::get) checks
//! its bound and answers `usize::MAX` (no slot) past it. Every slot
//! returned is bound-checked again by the record table.
//!
//! ## Hashing
//!
//! [`IdHash`] is murmur3's 64-bit finalizer, applied to the key's words in
//! turn and once more with the seed mixed in. For a `u64` key each step is
//! a bijection, so distinct numeric ids have distinct hashes under every
//! seed (what PHast needs); the hash is fixed here, not taken from a crate
//! default, so files stay readable whatever features other crates enable.

use std::hash::Hasher;
use std::io;

use ph::fmph;
use ph::phast::{
    self, bits_per_seed_to_100_bucket_size, CompressedArray, Params, ShiftOnlyWrapped,
};
use ph::seeds::Bits8;
use ph::BuildSeededHasher;

/// The perfect hash function over numeric ids.
pub type NumPhf = phast::Function2<Bits8, ShiftOnlyWrapped, Corrections, IdHash>;

/// The perfect hash function over UUIDs.
pub type UuidPhf = fmph::Function<IdHash>;

/// Relative size of an FMPH level (percent of its keys): 200 puts 61 % of
/// the keys on the first level (100: 37 %) for 0.6 more bits per key.
const UUID_LEVEL_SIZE: u16 = 200;

/// murmur3's 64-bit finalizer: a bijection of `u64` with full avalanche.
#[inline(always)]
fn fmix64(mut z: u64) -> u64 {
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

/// Seeded hashing of ids (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHash;

/// The [`Hasher`] of [`IdHash`].
#[derive(Debug, Clone, Copy)]
pub struct IdHasher {
    state: u64,
    seed: u64,
}

impl Hasher for IdHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        fmix64(self.state ^ self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    #[inline(always)]
    fn write_u64(&mut self, v: u64) {
        self.state = fmix64(self.state ^ v);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

impl BuildSeededHasher for IdHash {
    type Hasher = IdHasher;

    #[inline(always)]
    fn build_hasher(&self, seed: u64) -> IdHasher {
        IdHasher { state: 0, seed }
    }
}

/// PHast's corrections (the slots of keys placed past the first level),
/// bit-packed, with a bound-checked `get` (see the module docs).
///
/// Serialized as: width in bits (`u8`, ≤ 32), count (`u64` LE), then
/// `⌈count · width / 64⌉` little-endian `u64` words, values packed from
/// bit 0 of word 0 upwards.
#[derive(Debug, Clone)]
pub struct Corrections {
    words: Box<[u64]>,
    width: u8,
    len: usize,
}

/// Words holding `len` values of `width` bits.
fn packed_words(len: usize, width: u8) -> Option<usize> {
    len.checked_mul(width as usize)
        .map(|bits| bits.div_ceil(64))
}

impl CompressedArray for Corrections {
    fn new(values: Vec<usize>, last_in_value: usize, _number_of_keys: usize) -> Self {
        let max = values.iter().copied().max().unwrap_or(0).max(last_in_value);
        let width = (usize::BITS - max.leading_zeros()) as u8;
        let len = values.len();
        let mut words = vec![0u64; packed_words(len, width).unwrap_or(0)];
        for (i, v) in values.into_iter().enumerate().filter(|_| width > 0) {
            let bit = i * width as usize;
            let (w, shift) = (bit / 64, bit % 64);
            words[w] |= (v as u64) << shift;
            if shift + width as usize > 64 {
                words[w + 1] |= (v as u64) >> (64 - shift);
            }
        }
        Corrections {
            words: words.into_boxed_slice(),
            width,
            len,
        }
    }

    #[inline]
    fn get(&self, index: usize) -> usize {
        if index >= self.len {
            return usize::MAX;
        }
        if self.width == 0 {
            return 0;
        }
        let bit = index * self.width as usize;
        let (w, shift) = (bit / 64, bit % 64);
        let mut v = self.words.get(w).map_or(0, |x| x >> shift);
        if shift + self.width as usize > 64 {
            v |= self.words.get(w + 1).map_or(0, |x| x << (64 - shift));
        }
        (v & ((1u64 << self.width) - 1)) as usize
    }

    fn write(&self, output: &mut dyn io::Write) -> io::Result<()> {
        output.write_all(&[self.width])?;
        output.write_all(&(self.len as u64).to_le_bytes())?;
        for w in self.words.iter() {
            output.write_all(&w.to_le_bytes())?;
        }
        Ok(())
    }

    fn write_bytes(&self) -> usize {
        1 + 8 + self.words.len() * 8
    }

    fn read(input: &mut dyn io::Read) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut width = [0u8; 1];
        input.read_exact(&mut width)?;
        let width = width[0];
        if width > 32 {
            return Err(bad("correction width over 32 bits"));
        }
        let mut len = [0u8; 8];
        input.read_exact(&mut len)?;
        let len = usize::try_from(u64::from_le_bytes(len))
            .ok()
            .filter(|n| *n <= super::MAX_TOTAL)
            .ok_or_else(|| bad("correction count out of range"))?;
        let n = packed_words(len, width).ok_or_else(|| bad("correction count out of range"))?;
        let mut bytes = vec![0u8; n * 8];
        input.read_exact(&mut bytes)?;
        let words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect();
        Ok(Corrections { words, width, len })
    }
}

/// Build the numeric-id PHF (`None` without keys). The keys must be
/// distinct (their hashes then are, see the module docs).
pub fn build_num(keys: Vec<u64>) -> Option<NumPhf> {
    if keys.is_empty() {
        return None;
    }
    let params = Params::new(Bits8, bits_per_seed_to_100_bucket_size(8));
    let threads = rayon::current_num_threads().max(1);
    Some(NumPhf::with_vec_p_threads_hash_sc(
        keys,
        &params,
        threads,
        IdHash,
        ShiftOnlyWrapped,
    ))
}

/// Build the UUID PHF: `Ok(None)` without keys, `Err(())` when the build
/// fails (two keys whose hashes collide at every level).
pub fn build_uuid(keys: Vec<u128>) -> Result<Option<UuidPhf>, ()> {
    if keys.is_empty() {
        return Ok(None);
    }
    let conf = fmph::BuildConf::hash_lsize(IdHash, UUID_LEVEL_SIZE);
    UuidPhf::try_with_conf_stats(keys, conf, &mut ())
        .map(Some)
        .ok_or(())
}

/// Serialize a numeric-id PHF (empty without one).
pub fn num_to_bytes(phf: &Option<NumPhf>) -> Vec<u8> {
    phf.as_ref()
        .map_or_else(Vec::new, |f| to_bytes(f.write_bytes(), |out| f.write(out)))
}

/// Serialize a UUID PHF (empty without one).
pub fn uuid_to_bytes(phf: &Option<UuidPhf>) -> Vec<u8> {
    phf.as_ref()
        .map_or_else(Vec::new, |f| to_bytes(f.write_bytes(), |out| f.write(out)))
}

/// The `size` bytes `write` produces.
fn to_bytes(size: usize, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    // Writing to a Vec cannot fail.
    let _ = write(&mut out);
    out
}

/// Read a numeric-id PHF written by [`num_to_bytes`]; the whole of `bytes`
/// must be consumed.
pub fn read_num(bytes: &[u8]) -> io::Result<NumPhf> {
    read_whole(bytes, |input| {
        NumPhf::read_with_hasher_sc(input, IdHash, ShiftOnlyWrapped)
    })
}

/// Read a UUID PHF written by [`uuid_to_bytes`]; the whole of `bytes` must
/// be consumed.
pub fn read_uuid(bytes: &[u8]) -> io::Result<UuidPhf> {
    read_whole(bytes, |input| UuidPhf::read_with_hasher(input, IdHash))
}

/// What `read` decodes from `bytes`, an error unless it consumes them all.
fn read_whole<F>(bytes: &[u8], read: impl FnOnce(&mut &[u8]) -> io::Result<F>) -> io::Result<F> {
    let mut input = bytes;
    let f = read(&mut input)?;
    if !input.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} trailing bytes", input.len()),
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_round_trip_and_answer_no_slot_past_the_end() {
        for (len, max) in [
            (0usize, 0usize),
            (1, 0),
            (5, 1),
            (100, 1000),
            (333, (1 << 31) - 1),
        ] {
            let values: Vec<usize> = (0..len).map(|i| (i * 7_919) % (max + 1)).collect();
            let c = Corrections::new(values.clone(), max, len);
            let mut bytes = Vec::new();
            c.write(&mut bytes).unwrap();
            assert_eq!(bytes.len(), c.write_bytes());
            let r = Corrections::read(&mut bytes.as_slice()).unwrap();
            for (i, v) in values.iter().enumerate() {
                assert_eq!(c.get(i), *v);
                assert_eq!(r.get(i), *v);
            }
            assert_eq!(r.get(len), usize::MAX);
            assert_eq!(r.get(usize::MAX), usize::MAX);
            // Truncated: an error, not a short array.
            if !bytes.is_empty() {
                assert!(Corrections::read(&mut &bytes[..bytes.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn numeric_hashes_are_distinct_under_every_seed() {
        // fmix64 is a bijection: consecutive ids (the worst case for weak
        // hashes) never collide, whatever the seed.
        for seed in [0u64, 1, 2, 77] {
            let mut hashes: Vec<u64> = (0..100_000u64).map(|k| IdHash.hash_one(k, seed)).collect();
            hashes.sort_unstable();
            hashes.dedup();
            assert_eq!(hashes.len(), 100_000);
        }
    }

    #[test]
    fn phfs_are_bijections_and_unknown_keys_never_panic() {
        let keys: Vec<u64> = (0..50_000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let f = build_num(keys.clone()).unwrap();
        let f = read_num(&num_to_bytes(&Some(f))).unwrap();
        let mut seen = vec![false; keys.len()];
        for k in &keys {
            let s = f.get(k);
            assert!(s < keys.len() && !seen[s], "slot {s}");
            seen[s] = true;
        }
        // Unknown keys land anywhere (or nowhere), without panicking.
        for k in 0..200_000u64 {
            let _ = f.get(&(k ^ 0x5555));
        }
        let uuids: Vec<u128> = (0..20_000u128).map(|k| k * 0x1234_5678_9abc_def1).collect();
        let g = build_uuid(uuids.clone()).unwrap().unwrap();
        let g = read_uuid(&uuid_to_bytes(&Some(g))).unwrap();
        let mut seen = vec![false; uuids.len()];
        for u in &uuids {
            let s = g.get(u).unwrap() as usize;
            assert!(s < uuids.len() && !seen[s]);
            seen[s] = true;
        }
    }
}
