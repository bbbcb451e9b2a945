//! Access advice for mappings (`madvise`), populating and cache eviction.
//!
//! Every storage can set its own [`Advice`]; storages that do not choose use
//! the process-wide default ([`set_global_advice`]). A failing `madvise` is
//! logged (a performance problem, not a correctness one) and never ignored
//! silently.

use std::sync::atomic::{AtomicU8, Ordering};

/// How a mapping will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Advice {
    /// Kernel default read-ahead.
    #[default]
    Normal,
    /// Point reads: no read-ahead (`MADV_RANDOM`).
    Random,
    /// Scans: aggressive read-ahead (`MADV_SEQUENTIAL`).
    Sequential,
}

impl Advice {
    fn to_memmap(self) -> memmap2::Advice {
        match self {
            Advice::Normal => memmap2::Advice::Normal,
            Advice::Random => memmap2::Advice::Random,
            Advice::Sequential => memmap2::Advice::Sequential,
        }
    }

    fn encode(self) -> u8 {
        self as u8
    }

    fn decode(v: u8) -> Advice {
        match v {
            1 => Advice::Random,
            2 => Advice::Sequential,
            _ => Advice::Normal,
        }
    }
}

/// Process-wide default, 0 = unset (use the storage's own choice).
static GLOBAL_ADVICE: AtomicU8 = AtomicU8::new(u8::MAX);

/// Set the advice used by storages that are opened without an explicit one.
pub fn set_global_advice(advice: Advice) {
    GLOBAL_ADVICE.store(advice.encode(), Ordering::Relaxed);
}

/// The process-wide default advice, if one was set.
pub fn global_advice() -> Option<Advice> {
    match GLOBAL_ADVICE.load(Ordering::Relaxed) {
        u8::MAX => None,
        v => Some(Advice::decode(v)),
    }
}

/// `advice` unless a process-wide default overrides it.
pub fn effective_advice(advice: Advice) -> Advice {
    global_advice().unwrap_or(advice)
}

/// Apply `advice` to a mapping, logging (not failing) when the kernel refuses.
pub(crate) fn apply(map: &impl AdviseTarget, advice: Advice, path: &std::path::Path) {
    if let Err(e) = map.advise_mapping(advice.to_memmap()) {
        log::warn!("madvise({advice:?}) failed on {}: {e}", path.display());
    }
}

/// Fault every page of `bytes` into the mapping: `MADV_POPULATE_READ` where
/// the kernel has it (5.14+), else one read per page.
pub(crate) fn populate(map: &impl AdviseTarget, bytes: &[u8], path: &std::path::Path) {
    if bytes.is_empty() {
        return;
    }
    #[cfg(target_os = "linux")]
    if map.advise_mapping(memmap2::Advice::PopulateRead).is_ok() {
        return;
    }
    log::debug!(
        "MADV_POPULATE_READ unavailable for {}; touching pages",
        path.display()
    );
    let _ = map;
    let mut sum = 0u8;
    for i in (0..bytes.len()).step_by(page_size()) {
        sum = sum.wrapping_add(bytes[i]);
    }
    std::hint::black_box(sum);
}

/// The system page size (4096 if unknown).
pub fn page_size() -> usize {
    4096
}

/// Mappings that accept `madvise`.
pub(crate) trait AdviseTarget {
    fn advise_mapping(&self, advice: memmap2::Advice) -> std::io::Result<()>;
}

impl AdviseTarget for memmap2::Mmap {
    fn advise_mapping(&self, advice: memmap2::Advice) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.advise(advice)
    }
}

impl AdviseTarget for memmap2::MmapMut {
    fn advise_mapping(&self, advice: memmap2::Advice) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.advise(advice)
    }
}
