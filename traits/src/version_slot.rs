//! The on-disk encoding of a point's version in a dense versions table
//! (`versions.dat` of the chunked id mapper, `ids_versions.dat` of the mmap
//! one): one little-endian `u64` slot per offset.
//!
//! `0` means "no version". Otherwise bits 0..56 hold `version + 1` and bits
//! 56..64 a CRC-8 (polynomial 0x07, initial value 0) of the offset as 4
//! little-endian bytes followed by the low 7 little-endian bytes of the slot.
//! A CRC-8 detects every burst of at most 8 bits, so any single damaged
//! byte of a slot is caught: a flipped version is an error, never another
//! version. Versions are limited to [`MAX_VERSION`].

use crate::error::{Result, StorageError};
use crate::types::{PointOffset, Version};

/// Largest version a slot stores (56 bits hold `version + 1`).
pub const MAX_VERSION: Version = (1 << 56) - 2;
/// Mask of the value bits of a slot.
const VALUE: u64 = (1 << 56) - 1;

/// CRC-8 of `offset` and the value bits of a slot.
fn check(offset: PointOffset, value: u64) -> u8 {
    let mut crc = 0u8;
    let bytes = offset
        .to_le_bytes()
        .into_iter()
        .chain(value.to_le_bytes().into_iter().take(7));
    for byte in bytes {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `version` at `offset`; an error above [`MAX_VERSION`].
pub fn encode(offset: PointOffset, version: Version) -> Result<u64> {
    if version > MAX_VERSION {
        return Err(StorageError::InvalidArgument(format!(
            "version {version} is above the largest storable version {MAX_VERSION}"
        )));
    }
    let value = version + 1;
    Ok(value | u64::from(check(offset, value)) << 56)
}

/// The version a slot holds: `Ok(None)` for 0, `Err(())` when the slot
/// fails its check (the caller names the file).
#[allow(clippy::result_unit_err)]
pub fn decode(offset: PointOffset, slot: u64) -> std::result::Result<Option<Version>, ()> {
    if slot == 0 {
        return Ok(None);
    }
    let value = slot & VALUE;
    if value == 0 || slot >> 56 != u64::from(check(offset, value)) {
        return Err(());
    }
    Ok(Some(value - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_every_damaged_byte_is_caught() {
        for (offset, version) in [
            (0u32, 0u64),
            (7, 1),
            (123_456, 99_999),
            (u32::MAX - 1, MAX_VERSION),
        ] {
            let slot = encode(offset, version).unwrap();
            assert_eq!(decode(offset, slot), Ok(Some(version)));
            for byte in 0..8 {
                for flip in 1..=255u64 {
                    let bad = slot ^ (flip << (8 * byte));
                    assert!(
                        !matches!(decode(offset, bad), Ok(Some(_))),
                        "offset {offset} byte {byte} flip {flip:#x} passes"
                    );
                }
            }
        }
        assert_eq!(decode(3, 0), Ok(None));
        assert!(encode(0, MAX_VERSION + 1).is_err());
    }
}
