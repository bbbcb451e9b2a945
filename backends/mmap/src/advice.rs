//! Access advice for mappings (`madvise`), populating and cache eviction.
//!
//! A storage's advice is an [`AdviceSetting`]: an explicit
//! [`AdviceSetting::Advice`] always applies; [`AdviceSetting::Global`] (the
//! default) follows the process-wide default set with
//! [`set_global_advice`], and the storage's own default when none is set.
//! A failing `madvise` is logged (a performance problem, not a correctness
//! one) and never ignored silently.

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

/// Where a storage takes its [`Advice`] from.
///
/// ```
/// use vecseg_mmap::advice::{AdviceSetting, Advice};
/// // No process-wide default set: `Global` falls back to the storage's own.
/// assert_eq!(AdviceSetting::Global.resolve(Advice::Random), Advice::Random);
/// assert_eq!(AdviceSetting::from(Advice::Sequential).resolve(Advice::Random), Advice::Sequential);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdviceSetting {
    /// The process-wide default ([`set_global_advice`]) if one is set, else
    /// the storage's own default.
    #[default]
    Global,
    /// This advice, whatever the process-wide default.
    Advice(Advice),
}

impl AdviceSetting {
    /// The advice to apply for a storage whose own default is
    /// `storage_default`.
    pub fn resolve(self, storage_default: Advice) -> Advice {
        match self {
            AdviceSetting::Advice(a) => a,
            AdviceSetting::Global => global_advice().unwrap_or(storage_default),
        }
    }
}

impl From<Advice> for AdviceSetting {
    fn from(advice: Advice) -> Self {
        AdviceSetting::Advice(advice)
    }
}

/// Process-wide default, `u8::MAX` = unset (use the storage's own choice).
static GLOBAL_ADVICE: AtomicU8 = AtomicU8::new(u8::MAX);

/// Set the advice used by storages whose setting is
/// [`AdviceSetting::Global`] (those opened without an explicit advice).
/// Applies to mappings created afterwards.
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
    populate_pages(map, bytes, path);
}

/// [`populate`] for a read-only mapping, asking first for huge pages
/// (`MADV_HUGEPAGE`): where the file system and kernel support large
/// folios (ext4 on Linux 6.16+, measured on 6.18) the populated mapping is
/// then 2 MiB pages, so warm random reads (id lookups, graph walks) take
/// far fewer TLB misses. Only read-only mappings: a dirty huge folio would
/// be written back whole. [`small_pages`] undoes it before eviction, so
/// cold faults read single pages again.
pub(crate) fn populate_huge(map: &impl AdviseTarget, bytes: &[u8], path: &std::path::Path) {
    if bytes.is_empty() {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = map.advise_mapping(memmap2::Advice::HugePage) {
        log::debug!("MADV_HUGEPAGE refused for {}: {e}", path.display());
    }
    populate_pages(map, bytes, path);
}

/// Back to small pages (`MADV_NOHUGEPAGE`) before the pages are dropped: a
/// later cold fault reads one page, not a 2 MiB folio.
pub(crate) fn small_pages(map: &impl AdviseTarget, path: &std::path::Path) {
    #[cfg(target_os = "linux")]
    if let Err(e) = map.advise_mapping(memmap2::Advice::NoHugePage) {
        log::debug!("MADV_NOHUGEPAGE refused for {}: {e}", path.display());
    }
    let _ = (map, path);
}

fn populate_pages(map: &impl AdviseTarget, bytes: &[u8], path: &std::path::Path) {
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

/// The system page size (`sysconf(_SC_PAGESIZE)`, read once).
pub fn page_size() -> usize {
    static PAGE_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(crate::raw::advice::system_page_size)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One test owns the process-wide default (tests run in threads).
    #[test]
    fn explicit_advice_wins_over_the_global_default() {
        GLOBAL_ADVICE.store(u8::MAX, Ordering::Relaxed);
        assert_eq!(
            AdviceSetting::Global.resolve(Advice::Random),
            Advice::Random
        );
        set_global_advice(Advice::Sequential);
        assert_eq!(
            AdviceSetting::Global.resolve(Advice::Random),
            Advice::Sequential
        );
        for a in [Advice::Normal, Advice::Random, Advice::Sequential] {
            assert_eq!(AdviceSetting::from(a).resolve(Advice::Random), a);
        }
        GLOBAL_ADVICE.store(u8::MAX, Ordering::Relaxed);
        assert_eq!(
            AdviceSetting::Global.resolve(Advice::Normal),
            Advice::Normal
        );
    }

    #[test]
    fn page_size_comes_from_the_system() {
        let p = page_size();
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
    }
}
