//! io_uring submission for batched positioned reads (Linux).
//!
//! [`RingReader`] owns a ring and a slot buffer of `depth` slots, each as
//! long as the longest request seen. A batch keeps up to `depth`
//! `IORING_OP_READ` requests in flight, each reading one (position, length)
//! range into its own slot; completed ranges are handed to a callback as
//! `&[u8]` and the slot is reused.
//!
//! Soundness rests on one rule: **the slot buffer outlives every request
//! that points into it.** The buffer is a heap allocation owned through a raw
//! pointer (no Rust reference ever covers a slot the kernel may be writing),
//! `in_flight` is kept in `self` so that a panicking callback leaves an
//! accurate count, every entry point first waits for leftovers, and `Drop`
//! waits for outstanding requests — or, if it cannot, leaks the buffer
//! rather than free memory the kernel might still write to.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types, IoUring, Probe};

/// Why a batch failed.
#[derive(Debug)]
pub enum BatchError {
    /// The ring itself failed (setup, submit or wait). Records delivered
    /// before the failure were handed to the callback; the ring must not
    /// be used again.
    Ring(io::Error),
    /// Reading the record at `offsets[index]` failed.
    Read {
        /// Index into the offsets of the failed record.
        index: usize,
        /// The error the kernel reported.
        error: io::Error,
    },
}

/// Check that this process can use io_uring: create a small ring, check
/// that `IORING_OP_READ` is supported and complete one `NOP`.
///
/// Fails when the kernel is too old, io_uring is disabled
/// (`kernel.io_uring_disabled`) or a seccomp filter blocks the syscalls.
pub fn probe() -> io::Result<()> {
    let mut ring = IoUring::new(2)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::Read::CODE) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel does not support IORING_OP_READ",
        ));
    }
    let nop = opcode::Nop::new().build().user_data(0x5eed);
    // SAFETY: a NOP references no memory, so nothing has to outlive it.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    submit_and_wait_retrying(&ring, 1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("io_uring NOP did not complete"))?;
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    Ok(())
}

/// Tell the kernel that `file` (this open file description) is read at
/// random positions (`posix_fadvise(POSIX_FADV_RANDOM)`), so a batch of
/// point reads does not trigger read-ahead of pages nobody asked for.
/// Mappings of the file keep their own `madvise` advice.
pub fn advise_random_reads(file: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a file descriptor borrowed for the duration
    // of the call; it does not touch process memory.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn submit_and_wait_retrying(ring: &IoUring, want: usize) -> io::Result<usize> {
    loop {
        match ring.submit_and_wait(want) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An io_uring ring with a buffer of `depth` record slots.
pub struct RingReader {
    ring: IoUring,
    depth: usize,
    /// Owned allocation of `Box<[u64]>` (8-byte aligned slots), freed in `Drop`.
    buf: *mut [u64],
    /// Bytes per slot (a multiple of 8).
    stride: usize,
    /// Requests submitted (or queued) whose completion was not reaped yet.
    in_flight: usize,
    /// Set when the ring failed; the reader refuses further batches.
    broken: bool,
    completions: Vec<(u64, i32)>,
}

// SAFETY: the buffer behind `buf` is owned exclusively by this value and
// only accessed through `&mut self` (or `&self` for completed slots while
// `&mut self` is held by the running batch); `IoUring` is `Send`. Moving the
// reader to another thread moves that ownership with it.
unsafe impl Send for RingReader {}

impl std::fmt::Debug for RingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("depth", &self.depth)
            .field("stride", &self.stride)
            .field("in_flight", &self.in_flight)
            .field("broken", &self.broken)
            .finish()
    }
}

impl RingReader {
    /// A ring for up to `depth` reads in flight (at least 1, at most 4096).
    pub fn new(depth: usize) -> io::Result<Self> {
        let depth = depth.clamp(1, 4096);
        let ring = IoUring::new(depth.next_power_of_two() as u32)?;
        let empty: Box<[u64]> = Box::new([]);
        Ok(RingReader {
            ring,
            depth,
            buf: Box::into_raw(empty),
            stride: 0,
            in_flight: 0,
            broken: false,
            completions: Vec::with_capacity(depth),
        })
    }

    /// Requests in flight per batch.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether an earlier ring failure made this reader unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Make every slot at least `len` bytes. Only called with nothing in flight.
    fn ensure_slots(&mut self, len: usize) {
        debug_assert_eq!(self.in_flight, 0);
        let stride = len.div_ceil(8) * 8;
        if stride <= self.stride {
            return;
        }
        let words = stride / 8 * self.depth;
        let new: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let old = std::mem::replace(&mut self.buf, Box::into_raw(new));
        // SAFETY: `old` came from `Box::into_raw` of a `Box<[u64]>` and is
        // freed exactly once here; no request is in flight (checked by the
        // callers, who drain first), so the kernel holds no pointer into it.
        drop(unsafe { Box::from_raw(old) });
        self.stride = stride;
    }

    fn slot_ptr(&self, slot: usize, at: usize) -> *mut u8 {
        self.buf.cast::<u8>().wrapping_add(slot * self.stride + at)
    }

    /// Queue a read of `len` bytes at file position `pos` into `slot` at byte `at`.
    fn push_read(
        &mut self,
        fd: i32,
        slot: usize,
        at: usize,
        pos: u64,
        len: usize,
    ) -> io::Result<()> {
        debug_assert!(slot < self.depth && at + len <= self.stride);
        let entry = opcode::Read::new(types::Fd(fd), self.slot_ptr(slot, at), len as u32)
            .offset(pos)
            .build()
            .user_data(slot as u64);
        // SAFETY: the entry points at `len` bytes of slot `slot` starting at
        // `at`, inside the allocation behind `self.buf` (slot < depth,
        // at + len <= stride, checked by the callers). That allocation is
        // only freed when nothing is in flight (`ensure_slots`, `Drop`,
        // which drains or leaks), and no Rust reference to this slot exists
        // until its completion is reaped.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Submit queued entries, wait for at least one completion and move all
    /// available completions into `self.completions`.
    fn submit_and_reap(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Completion queue busy: reap what is there, then go on.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                Err(e) => return Err(e),
            }
        }
        self.completions.clear();
        let cq = self.ring.completion();
        self.completions
            .extend(cq.map(|cqe| (cqe.user_data(), cqe.result())));
        self.in_flight = self.in_flight.saturating_sub(self.completions.len());
        Ok(())
    }

    /// Wait for every request in flight and discard the results.
    fn drain(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            if let Err(e) = self.submit_and_reap() {
                self.broken = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The `len` bytes read into `slot`.
    fn slot_bytes(&self, slot: usize, len: usize) -> &[u8] {
        debug_assert!(slot < self.depth && len <= self.stride);
        // SAFETY: slot < depth and len <= stride, so the range lies inside
        // the allocation behind `self.buf`, which is zero-initialised and
        // 8-byte aligned. The read into this slot has completed and the slot
        // is not resubmitted while the returned borrow of `self` lives (the
        // batch holds `&mut self`), so nothing writes to these bytes
        // meanwhile. Other slots may be written by the kernel concurrently;
        // they are disjoint from this range.
        unsafe { std::slice::from_raw_parts(self.slot_ptr(slot, 0), len) }
    }

    /// Perform the reads in `requests` (file position, length) on `file`,
    /// calling `f(i, bytes)` once per request as it completes (in any
    /// order), with all `requests[i].1` bytes.
    ///
    /// Short reads are resumed; a read reaching past the end of the file is
    /// an `UnexpectedEof` error for that request. On a read error no further
    /// callbacks are made; every request still in flight is waited for
    /// before returning.
    pub fn read_batch(
        &mut self,
        file: &File,
        requests: &[(u64, usize)],
        f: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), BatchError> {
        if self.broken {
            return Err(BatchError::Ring(io::Error::other(
                "io_uring reader is unusable after an earlier failure",
            )));
        }
        // Leftovers of a batch whose callback panicked.
        self.drain().map_err(BatchError::Ring)?;
        let longest = requests.iter().map(|r| r.1).max().unwrap_or(0);
        if u32::try_from(longest).is_err() {
            return Err(BatchError::Ring(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request too large for one io_uring read",
            )));
        }
        self.ensure_slots(longest);
        let fd = file.as_raw_fd();
        let n = requests.len();
        let depth = self.depth.min(n);
        // Per slot: (request index, bytes already read).
        let mut slots = vec![(0usize, 0usize); depth];
        let mut free: Vec<usize> = (0..depth).rev().collect();
        let mut next = 0;
        let mut error: Option<BatchError> = None;
        let mut completions = Vec::with_capacity(self.depth);
        loop {
            while error.is_none() && next < n {
                let (pos, len) = requests[next];
                if len == 0 {
                    f(next, &[]);
                    next += 1;
                    continue;
                }
                let Some(slot) = free.pop() else { break };
                slots[slot] = (next, 0);
                if let Err(e) = self.push_read(fd, slot, 0, pos, len) {
                    free.push(slot);
                    error = Some(BatchError::Ring(e));
                    break;
                }
                next += 1;
            }
            if self.in_flight == 0 {
                break;
            }
            if let Err(e) = self.submit_and_reap() {
                // Cannot tell which requests the kernel still holds: give up
                // on the ring (Drop will leak the buffer if it cannot drain).
                self.broken = true;
                return Err(BatchError::Ring(e));
            }
            std::mem::swap(&mut completions, &mut self.completions);
            for &(user_data, res) in &completions {
                let slot = user_data as usize;
                let Some(&(index, done)) = slots.get(slot) else {
                    continue;
                };
                let (pos, len) = requests[index];
                if res < 0 {
                    let errno = -res;
                    if (errno == libc::EINTR || errno == libc::EAGAIN) && error.is_none() {
                        if let Err(e) =
                            self.push_read(fd, slot, done, pos + done as u64, len - done)
                        {
                            free.push(slot);
                            error = Some(BatchError::Ring(e));
                        }
                    } else {
                        free.push(slot);
                        error.get_or_insert(BatchError::Read {
                            index,
                            error: io::Error::from_raw_os_error(errno),
                        });
                    }
                    continue;
                }
                if res == 0 {
                    free.push(slot);
                    error.get_or_insert(BatchError::Read {
                        index,
                        error: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "read reaches past the end of the file",
                        ),
                    });
                    continue;
                }
                let done = done + res as usize;
                if done < len && error.is_none() {
                    slots[slot].1 = done;
                    if let Err(e) = self.push_read(fd, slot, done, pos + done as u64, len - done) {
                        free.push(slot);
                        error = Some(BatchError::Ring(e));
                    }
                    continue;
                }
                if error.is_none() {
                    f(index, self.slot_bytes(slot, len));
                }
                free.push(slot);
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        if self.in_flight > 0 && self.drain().is_err() {
            log::error!(
                "io_uring reader dropped with {} reads in flight that could not be waited for; \
                 leaking its {} byte buffer",
                self.in_flight,
                self.stride * self.depth
            );
            return;
        }
        // SAFETY: `buf` came from `Box::into_raw` of a `Box<[u64]>` and is
        // freed exactly once, here; nothing is in flight any more, so the
        // kernel holds no pointer into it.
        drop(unsafe { Box::from_raw(self.buf) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        let f = File::open(&p).unwrap();
        (dir, f)
    }

    #[test]
    fn reads_records_with_many_in_flight() {
        if probe().is_err() {
            eprintln!("io_uring unavailable; skipping");
            return;
        }
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (_d, f) = file_with(&data);
        let mut r = RingReader::new(8).unwrap();
        let positions: Vec<u64> = (0..500u64).map(|i| (i * 7919) % 99_000).collect();
        for len in [12usize, 100, 3] {
            // Mixed lengths in one batch, including an empty request.
            let requests: Vec<(u64, usize)> = positions
                .iter()
                .enumerate()
                .map(|(i, &p)| (p, if i % 5 == 0 { len * 9 } else { len * (i % 3) }))
                .collect();
            let mut seen = vec![0; requests.len()];
            r.read_batch(&f, &requests, &mut |i, b| {
                seen[i] += 1;
                let (p, l) = (requests[i].0 as usize, requests[i].1);
                assert_eq!(b, &data[p..p + l]);
            })
            .unwrap();
            assert!(seen.iter().all(|&n| n == 1));
        }
        // Past the end: an error, and the reader stays usable.
        let e = r.read_batch(&f, &[(0, 4), (200_000, 4)], &mut |_, _| {});
        assert!(matches!(e, Err(BatchError::Read { index: 1, .. })));
        let e = r.read_batch(&f, &[(99_990, 20)], &mut |_, _| {});
        assert!(matches!(e, Err(BatchError::Read { index: 0, .. })));
        let mut got = 0;
        r.read_batch(&f, &[(5, 4)], &mut |_, b| {
            assert_eq!(b, &data[5..9]);
            got += 1;
        })
        .unwrap();
        assert_eq!(got, 1);
    }

    #[test]
    fn survives_a_panicking_callback() {
        if probe().is_err() {
            return;
        }
        let data = vec![7u8; 64 * 1024];
        let (_d, f) = file_with(&data);
        let mut r = RingReader::new(16).unwrap();
        let requests: Vec<(u64, usize)> = (0..64u64).map(|i| (i * 1000, 32)).collect();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.read_batch(&f, &requests, &mut |i, _| {
                if i == 3 {
                    panic!("callback failure");
                }
            })
        }));
        assert!(res.is_err());
        let mut count = 0;
        r.read_batch(&f, &requests, &mut |_, b| {
            assert!(b.iter().all(|&x| x == 7));
            count += 1;
        })
        .unwrap();
        assert_eq!(count, 64);
    }
}
