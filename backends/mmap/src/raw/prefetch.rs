//! Software prefetch: ask the CPU to start loading memory the caller is
//! about to read, so the misses of a batch of scattered reads overlap.

/// Bytes per cache line on the targets vecseg runs on.
const CACHE_LINE: usize = 64;

/// Hint that every cache line of `data` is about to be read. A no-op on
/// targets without a prefetch instruction wired here (only x86_64 is).
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = data.as_ptr().cast::<i8>();
        let len = std::mem::size_of_val(data);
        let mut at = 0;
        while at < len {
            // SAFETY: a prefetch is a hint: it never faults and has no
            // effect the program can observe. `start + at` stays inside
            // `data` (at < len), so the pointer arithmetic is in bounds;
            // SSE, which provides the instruction, is part of the x86_64
            // baseline.
            unsafe { _mm_prefetch(start.add(at), _MM_HINT_T0) };
            at += CACHE_LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
