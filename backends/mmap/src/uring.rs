//! Batched positioned reads with io_uring, falling back to `pread`.
//!
//! [`BatchReader`] reads many fixed-size records of a file with up to
//! `depth` (default [`DEFAULT_QUEUE_DEPTH`]) io_uring requests in flight and
//! hands each record to a callback as it completes. Whether io_uring can be
//! used is detected once per process ([`detected_backend`]); when it cannot
//! (old kernel, `kernel.io_uring_disabled`, a seccomp filter, or
//! `VECSEG_NO_IO_URING=1`), readers use one `pread` per record instead. The
//! fallback is never silent: it is logged once with `log::warn!`, and
//! [`BatchReader::backend`] / [`io_uring_unavailable_reason`] report it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Once, OnceLock};

use vecseg_traits::{Result, StorageError};

use crate::coalesce::{plan_requests, PlannedRequest, ReadCoalescing};
use crate::raw::uring::{self as raw_uring, BatchError, RingReader};

/// Requests kept in flight by default.
pub const DEFAULT_QUEUE_DEPTH: usize = 64;

/// Environment variable that, set to `1`, disables io_uring process-wide.
pub const NO_IO_URING_ENV: &str = "VECSEG_NO_IO_URING";

/// How a [`BatchReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadBackend {
    /// io_uring with many requests in flight.
    IoUring,
    /// One synchronous `pread` per record.
    Pread,
}

impl ReadBackend {
    /// Lowercase name (`io_uring` / `pread`).
    pub fn name(self) -> &'static str {
        match self {
            ReadBackend::IoUring => "io_uring",
            ReadBackend::Pread => "pread",
        }
    }
}

struct Detection {
    backend: ReadBackend,
    reason: Option<String>,
}

static DETECTION: OnceLock<Detection> = OnceLock::new();
static RING_SETUP_WARNING: Once = Once::new();

fn detection() -> &'static Detection {
    DETECTION.get_or_init(|| {
        let disabled = std::env::var(NO_IO_URING_ENV).is_ok_and(|v| v == "1");
        let reason = if disabled {
            Some(format!("disabled by {NO_IO_URING_ENV}=1"))
        } else {
            raw_uring::probe().err().map(|e| e.to_string())
        };
        match reason {
            None => {
                log::debug!("io_uring available; batched reads use it");
                Detection {
                    backend: ReadBackend::IoUring,
                    reason: None,
                }
            }
            Some(reason) => {
                log::warn!("io_uring unavailable ({reason}); batched reads fall back to pread");
                Detection {
                    backend: ReadBackend::Pread,
                    reason: Some(reason),
                }
            }
        }
    })
}

/// The backend batched reads use in this process: [`ReadBackend::IoUring`]
/// when the kernel and sandbox allow it, else [`ReadBackend::Pread`].
/// Detected on first call; the fallback is logged once.
pub fn detected_backend() -> ReadBackend {
    detection().backend
}

/// Why io_uring is not used in this process, or `None` when it is.
pub fn io_uring_unavailable_reason() -> Option<&'static str> {
    detection().reason.as_deref()
}

/// How many records a batch read through each backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Records read through io_uring.
    pub io_uring: u64,
    /// Records read with `pread`.
    pub pread: u64,
    /// Read requests issued for them (fewer than records when close
    /// records were coalesced; see [`ReadCoalescing`]).
    pub requests: u64,
}

/// Reads batches of fixed-size records from a file.
#[derive(Debug)]
pub struct BatchReader {
    ring: Option<RingReader>,
    depth: usize,
    coalescing: ReadCoalescing,
    pread_buf: Vec<u64>,
}

impl BatchReader {
    /// A reader using io_uring (when available) with `depth` requests in flight.
    pub fn new(depth: usize) -> Self {
        Self::with_backend(detected_backend(), depth)
    }

    /// A reader using `backend`. Asking for io_uring where it is not
    /// available gives a `pread` reader (logged; see [`BatchReader::backend`]).
    pub fn with_backend(backend: ReadBackend, depth: usize) -> Self {
        let depth = depth.clamp(1, 4096);
        let ring = match backend {
            ReadBackend::Pread => None,
            ReadBackend::IoUring if detected_backend() == ReadBackend::Pread => None,
            ReadBackend::IoUring => {
                match RingReader::new(depth) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        RING_SETUP_WARNING.call_once(|| {
                        log::warn!("io_uring ring setup failed ({e}); batched reads fall back to pread");
                    });
                        None
                    }
                }
            }
        };
        BatchReader {
            ring,
            depth,
            coalescing: ReadCoalescing::default(),
            pread_buf: Vec::new(),
        }
    }

    /// The backend this reader uses now.
    pub fn backend(&self) -> ReadBackend {
        match &self.ring {
            Some(r) if !r.is_broken() => ReadBackend::IoUring,
            _ => ReadBackend::Pread,
        }
    }

    /// Requests kept in flight with io_uring.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// When close records share one read request (default
    /// [`ReadCoalescing::default`]).
    pub fn coalescing(&self) -> ReadCoalescing {
        self.coalescing
    }

    /// Set when close records share one read request.
    pub fn set_coalescing(&mut self, coalescing: ReadCoalescing) {
        self.coalescing = coalescing;
    }

    /// Read `len` bytes at each position in `positions` of `file` (named
    /// `path` in errors), calling `f(i, bytes)` exactly once per record, in
    /// any order. Record bytes start 8-byte aligned.
    ///
    /// Reads are issued in increasing file position, and records closer
    /// than the reader's [`ReadCoalescing`] rules are read with one request
    /// (a cold read costs the device mostly per request, not per byte);
    /// the callback still gets each record's index in `positions`.
    ///
    /// If the ring fails mid-batch, the reader logs it, switches to `pread`
    /// for good, and reads the records not yet delivered that way.
    pub fn read(
        &mut self,
        file: &File,
        path: &Path,
        positions: &[u64],
        len: usize,
        f: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<ReadCounts> {
        if positions.windows(2).all(|w| w[0] <= w[1]) {
            return self.read_in_order(file, path, positions, len, f);
        }
        let mut order: Vec<usize> = (0..positions.len()).collect();
        order.sort_unstable_by_key(|&i| positions[i]);
        let sorted: Vec<u64> = order.iter().map(|&i| positions[i]).collect();
        self.read_in_order(file, path, &sorted, len, &mut |i, bytes| f(order[i], bytes))
    }

    fn read_in_order(
        &mut self,
        file: &File,
        path: &Path,
        positions: &[u64],
        len: usize,
        f: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<ReadCounts> {
        let plan = plan_requests(positions, len, self.coalescing);
        let mut counts = ReadCounts::default();
        // Hand each record of a completed request to `f`.
        let mut deliver = |request: &PlannedRequest, bytes: &[u8]| {
            for (i, &pos) in positions[request.first..request.end].iter().enumerate() {
                let at = (pos - request.pos) as usize;
                f(request.first + i, &bytes[at..at + len]);
            }
        };
        let mut delivered: Option<Vec<bool>> = None;
        if let Some(ring) = self.ring.as_mut().filter(|r| !r.is_broken()) {
            let ranges: Vec<(u64, usize)> = plan.iter().map(|r| (r.pos, r.len)).collect();
            let mut done = vec![false; plan.len()];
            let mut on_complete = |r: usize, bytes: &[u8]| {
                done[r] = true;
                deliver(&plan[r], bytes);
            };
            match ring.read_batch(file, &ranges, &mut on_complete) {
                Ok(()) => {
                    counts.io_uring = positions.len() as u64;
                    counts.requests = plan.len() as u64;
                    return Ok(counts);
                }
                Err(BatchError::Read { error, .. }) => return Err(StorageError::io(path, error)),
                Err(BatchError::Ring(e)) => {
                    log::warn!(
                        "io_uring failed while reading {} ({e}); this reader falls back to pread",
                        path.display()
                    );
                    for (r, _) in plan.iter().zip(&done).filter(|(_, d)| **d) {
                        counts.io_uring += (r.end - r.first) as u64;
                        counts.requests += 1;
                    }
                    delivered = Some(done);
                    // Keep the broken ring (its Drop waits for or leaks the
                    // buffer) but never use it again.
                }
            }
        }
        for (r, request) in plan.iter().enumerate() {
            if delivered.as_ref().is_some_and(|d| d[r]) {
                continue;
            }
            let words = request.len.div_ceil(8);
            if self.pread_buf.len() < words {
                self.pread_buf.resize(words, 0);
            }
            let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.pread_buf)[..request.len];
            file.read_exact_at(buf, request.pos)
                .map_err(|e| StorageError::io(path, e))?;
            deliver(request, buf);
            counts.pread += (request.end - request.first) as u64;
            counts.requests += 1;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_backends_read_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
        File::create(&p).unwrap().write_all(&data).unwrap();
        let file = File::open(&p).unwrap();
        // Descending (so the reader sorts), 136 B apart; every third record
        // is moved 4 B, off the 8-byte grid, so it cannot share a request
        // with its neighbours.
        let positions: Vec<u64> = (0..300u64)
            .rev()
            .map(|i| i * 136 + if i % 3 == 0 { 4 } else { 0 })
            .collect();
        let coalesced = ReadCoalescing {
            max_gap: 200,
            max_request: 1000,
        };
        for backend in [ReadBackend::IoUring, ReadBackend::Pread] {
            for rules in [ReadCoalescing::OFF, coalesced] {
                let mut r = BatchReader::with_backend(backend, 16);
                r.set_coalescing(rules);
                if backend == ReadBackend::Pread {
                    assert_eq!(r.backend(), ReadBackend::Pread);
                }
                let mut seen = vec![0; positions.len()];
                let counts = r
                    .read(&file, &p, &positions, 40, &mut |i, b| {
                        seen[i] += 1;
                        let s = positions[i] as usize;
                        assert_eq!(b, &data[s..s + 40]);
                        assert_eq!(b.as_ptr() as usize % 8, 0);
                    })
                    .unwrap();
                assert!(seen.iter().all(|&n| n == 1));
                assert_eq!(counts.io_uring + counts.pread, positions.len() as u64);
                match r.backend() {
                    ReadBackend::IoUring => assert_eq!(counts.io_uring, 300),
                    ReadBackend::Pread => assert_eq!(counts.pread, 300),
                }
                // Off, one request per record. On, each aligned pair
                // (3k+1, 3k+2) shares one and every shifted record 3k is
                // read alone: 200 requests.
                let expected = if rules.is_off() { 300 } else { 200 };
                assert_eq!(counts.requests, expected, "{counts:?}");
                let e = r.read(&file, &p, &[49_990], 40, &mut |_, _| {});
                assert!(matches!(e, Err(StorageError::Io { path, .. }) if path == p));
            }
        }
    }

    #[test]
    fn io_uring_is_detected_on_this_machine() {
        // io_uring works on the development and CI machines, where `.ci/run`
        // sets VECSEG_REQUIRE_IO_URING=1: a silent fallback there is a bug.
        // Elsewhere (a container whose seccomp profile blocks io_uring) the
        // test says why it skips.
        if std::env::var(NO_IO_URING_ENV).is_ok_and(|v| v == "1") {
            assert_eq!(detected_backend(), ReadBackend::Pread);
            return;
        }
        if detected_backend() != ReadBackend::IoUring {
            let reason = io_uring_unavailable_reason();
            assert!(
                std::env::var("VECSEG_REQUIRE_IO_URING").as_deref() != Ok("1"),
                "VECSEG_REQUIRE_IO_URING=1 but io_uring is unavailable: {reason:?}"
            );
            eprintln!(
                "skipped: the kernel refuses io_uring here ({reason:?}); \
                 set VECSEG_REQUIRE_IO_URING=1 to make this a failure"
            );
            return;
        }
        assert_eq!(BatchReader::new(64).backend(), ReadBackend::IoUring);
    }
}
