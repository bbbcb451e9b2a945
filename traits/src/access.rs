//! Access patterns: a type-level hint of how a read walks the data.
//!
//! Reads are generic over `P: AccessPattern`. Memory backends ignore it;
//! mmap backends use it to choose between a mapping advised `MADV_RANDOM`
//! and one advised `MADV_SEQUENTIAL`.

/// Marker for how a read walks a storage. Implemented by [`Random`] and
/// [`Sequential`] only.
pub trait AccessPattern: Copy + Send + Sync + 'static + sealed::Sealed {
    /// True for scans that read offsets in increasing order.
    const IS_SEQUENTIAL: bool;
}

/// Point reads at unrelated offsets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

/// Scans in increasing offset order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl AccessPattern for Random {
    const IS_SEQUENTIAL: bool = false;
}

impl AccessPattern for Sequential {
    const IS_SEQUENTIAL: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Random {}
    impl Sealed for super::Sequential {}
}
