//! The only place in vecseg with `unsafe` code.
//!
//! * [`map`] — creating memory maps of files (`memmap2`'s constructors are
//!   `unsafe` because another process could truncate or change the file).
//! * [`advice`] — `madvise` / `posix_fadvise` calls that drop pages.
//! * [`uring`] — the io_uring batch reader (submission entries point at
//!   buffers the kernel writes into).
//! * [`prefetch`] — software prefetch of memory about to be read (the
//!   intrinsic takes a raw pointer).
//! * [`byte_permute`] — AVX-512 VBMI's byte permute for product-code
//!   scoring (x86_64 only; `pulp` does not wrap it).
//!
//! Everything above this module works on `&[u8]` / `&mut [u8]` and casts
//! through `bytemuck`'s checked functions, so size and alignment are
//! verified in release builds too.
#![allow(unsafe_code)]

pub mod advice;
#[cfg(target_arch = "x86_64")]
pub mod byte_permute;
pub mod map;
pub mod prefetch;
pub mod uring;
