//! Hashing mappings into slot order: the perfect hash functions over a set
//! of `(id, offset)` mappings and the record tables they index. Shared by
//! [`MmapIdMapper::build`](super::MmapIdMapper::build) and the format-3
//! upgrade (`format_v3.rs`), which rebuilds both from the old records.
//! [`NumSlotPlan`] builds the numeric function before the points are laid
//! out, for builders that can put each point at its id's slot.

use rayon::prelude::*;
use vecseg_traits::{PointOffset, Result, StorageError};

use super::phf::{self, NumPhf, UuidPhf};
use super::records::{NumRecord, UuidRecord};

/// The perfect hash function over a set of numeric ids, built before a
/// segment's points get their offsets: a builder free to choose the order
/// (the optimizer without a tenant key) puts the point of id `n` at offset
/// [`slot(n)`](Self::slot), hands the plan to
/// [`MmapIdMapper::build_planned`](super::MmapIdMapper::build_planned),
/// and the id map needs no record table for numeric ids: the slot the
/// function picks *is* the offset, and the dense offset → id array verifies
/// it ([`NumLayout::SlotOrdered`](super::NumLayout::SlotOrdered)).
pub struct NumSlotPlan {
    pub(super) phf: Option<NumPhf>,
    pub(super) keys: usize,
}

impl std::fmt::Debug for NumSlotPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumSlotPlan")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl NumSlotPlan {
    /// Build the function over `ids`, which must be distinct (the id map
    /// build rejects a plan that is not a bijection of its ids onto
    /// `0..len`).
    pub fn build(ids: Vec<u64>) -> Self {
        let keys = ids.len();
        NumSlotPlan {
            phf: phf::build_num(ids),
            keys,
        }
    }

    /// The slot of `id`: in `0..len()` for the ids of the build (some
    /// value, possibly past the end, for any other).
    #[inline]
    pub fn slot(&self, id: u64) -> usize {
        self.phf.as_ref().map_or(usize::MAX, |f| f.get(&id))
    }

    /// Number of ids the plan was built over.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether the plan holds no ids.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }
}

/// The two perfect hash functions of a mapper.
pub(super) struct Phfs {
    /// Over the numeric ids (`None` without any).
    pub num: Option<NumPhf>,
    /// Over the UUIDs (`None` without any).
    pub uuid: Option<UuidPhf>,
}

/// The record tables in slot order.
pub(super) struct SlotRecords {
    /// `nums[s]`: the numeric mapping hashed to slot `s`.
    pub nums: Vec<NumRecord>,
    /// `uuids[s]`: the UUID mapping hashed to slot `s`.
    pub uuids: Vec<UuidRecord>,
    /// The slot of each UUID mapping, in the order they were given (what
    /// `ids_external.dat` stores for a UUID offset).
    pub uuid_slots: Vec<u64>,
}

/// Build the functions over distinct ids (the caller checks they are);
/// with a `plan` over the numeric ids, its function is taken instead of
/// building one ([`fill_records`] then checks it is a bijection of them).
pub(super) fn build_phfs(
    nums: &[(u64, PointOffset)],
    uuids: &[(u128, PointOffset)],
    plan: Option<NumSlotPlan>,
) -> Result<Phfs> {
    let num = match plan {
        Some(plan) if plan.keys == nums.len() => plan.phf,
        Some(plan) => {
            return Err(StorageError::InvalidArgument(format!(
                "slot plan over {} ids given for {} numeric ids",
                plan.keys,
                nums.len()
            )))
        }
        None => phf::build_num(nums.iter().map(|p| p.0).collect()),
    };
    let uuid = phf::build_uuid(uuids.iter().map(|p| p.0).collect()).map_err(|()| {
        StorageError::InvalidArgument(
            "perfect hash construction over UUID ids failed (duplicate ids?)".into(),
        )
    })?;
    Ok(Phfs { num, uuid })
}

/// Scatter the mappings into their slots ([`par_scatter`]); every slot is
/// checked to be in range and taken once, so a function that is not a
/// bijection on these ids is an error, never a lost mapping.
pub(super) fn fill_records(
    phfs: &Phfs,
    nums: &[(u64, PointOffset)],
    uuids: &[(u128, PointOffset)],
) -> Result<SlotRecords> {
    let num_slots: Vec<usize> = match &phfs.num {
        Some(f) => nums.par_iter().map(|(id, _)| f.get(id)).collect(),
        None => Vec::new(),
    };
    let uuid_slots: Vec<usize> = match &phfs.uuid {
        Some(f) => uuids
            .par_iter()
            .map(|(u, _)| f.get(u).map_or(usize::MAX, |s| s as usize))
            .collect(),
        None => Vec::new(),
    };
    let mut records = vec![NumRecord::new(0, 0); nums.len()];
    par_scatter(
        &mut records,
        nums,
        "perfect hash over numeric ids",
        |i, _| num_slots[i],
        |&(id, o)| NumRecord::new(id, o),
    )?;
    let mut uuid_records = vec![
        UuidRecord {
            uuid: [0; 16],
            offset: 0
        };
        uuids.len()
    ];
    par_scatter(
        &mut uuid_records,
        uuids,
        "perfect hash over UUIDs",
        |i, _| uuid_slots[i],
        |&(u, o)| UuidRecord {
            uuid: u.to_be_bytes(),
            offset: o,
        },
    )?;
    Ok(SlotRecords {
        nums: records,
        uuids: uuid_records,
        uuid_slots: uuid_slots.into_iter().map(|s| s as u64).collect(),
    })
}

/// `out[slot(i, &items[i])] = make(&items[i])` for every `i`, checking
/// that every slot is in range and used once.
///
/// Random writes over a large table are bound by memory latency, so the
/// table is split into one range per thread; each thread goes through all
/// the items (sequentially) and writes those whose slot is in its range.
pub(super) fn par_scatter<T: Send, I: Sync>(
    out: &mut [T],
    items: &[I],
    what: &str,
    slot: impl Fn(usize, &I) -> usize + Sync,
    make: impl Fn(&I) -> T + Sync,
) -> Result<()> {
    let n = out.len();
    let range = n.div_ceil(rayon::current_num_threads().max(1)).max(1 << 16);
    let written: usize = out
        .par_chunks_mut(range)
        .enumerate()
        .map(|(c, chunk)| {
            let start = c * range;
            let mut taken = vec![0u64; chunk.len().div_ceil(64)];
            let mut count = 0usize;
            for (i, item) in items.iter().enumerate() {
                let Some(local) = slot(i, item)
                    .checked_sub(start)
                    .filter(|l| *l < chunk.len())
                else {
                    continue;
                };
                if taken[local / 64] & (1 << (local % 64)) != 0 {
                    return Err(StorageError::InvalidArgument(format!(
                        "{what}: slot {} of {n} is taken twice",
                        start + local
                    )));
                }
                taken[local / 64] |= 1 << (local % 64);
                chunk[local] = make(item);
                count += 1;
            }
            Ok(count)
        })
        .sum::<Result<usize>>()?;
    if written != items.len() {
        return Err(StorageError::InvalidArgument(format!(
            "{what}: {} of {} slots out of range {n}",
            items.len() - written,
            items.len()
        )));
    }
    Ok(())
}
