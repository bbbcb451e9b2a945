//! The write-ahead log: every change is appended here, and gets its
//! sequence number, before it reaches a segment; recovery replays it.
//!
//! A log is a directory of files `wal-<first sequence number, 20 digits>.log`
//! (format in [`log_file`]) plus `first.json`, the first sequence number
//! still needed. Appends go to the last file; once it holds
//! [`WalOptions::file_capacity`] bytes, the next append starts a new file
//! (created as temp + fsync + rename + directory fsync). Sequence numbers
//! start at 1 and have no gaps. Files are preallocated with zeros (see
//! [`log_file`]); the next one is prepared on a background thread once
//! the current one is an eighth full, so the preparation has most of a
//! file's worth of appends to finish in.
//!
//! **Durability** ([`Durability`]): an append returns once its entry is
//! durable in the chosen sense ([`Wal::write`] and [`Wal::wait_durable`]
//! split the two steps so a caller can work while the sync runs):
//!
//! | mode | an acknowledged append survives | cost |
//! |------|--------------------------------|------|
//! | `Fsync` (default) | a power loss | one `fdatasync` per append |
//! | `GroupCommit` | a power loss | one `fdatasync` shared by the appends that arrive while the previous one runs (concurrent writers) |
//! | `None` | a killed process, not a power loss (the page cache keeps it) | nothing |
//!
//! **Opening** scans every file ([`log_file::scan`]): a torn tail of the
//! last file (a write cut short) is zeroed; damage followed by valid
//! entries, a file whose first sequence number does not follow the previous
//! file's last, or a torn tail in any file but the last is
//! [`StorageError::Corrupted`] naming the file.
//!
//! **Truncation**: [`Wal::truncate_before`] records the new first needed
//! sequence number in `first.json` (atomically) and then deletes the files
//! that hold only older entries; entries older than it are never returned,
//! even if a deletion was cut short by a crash.

pub mod log_file;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use vecseg_traits::fsutil::{fsync_dir, read_sealed, write_sealed};
use vecseg_traits::{IoResultExt, Result, StorageError};

/// Default size at which the log starts a new file: 32 MiB.
pub const DEFAULT_FILE_CAPACITY: u64 = 32 << 20;
/// Name of the file recording the first sequence number still needed.
pub const FIRST_FILE: &str = "first.json";
/// Suffix of a next log file being preallocated (`next-<seed>.prealloc`);
/// one left by a crash is removed at open.
pub const PREPARED_SUFFIX: &str = ".prealloc";

/// When an append counts as durable (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// `fdatasync` before every append returns.
    #[default]
    Fsync,
    /// Appends arriving while an `fdatasync` runs share the next one.
    GroupCommit,
    /// No sync: survives a killed process, not a power loss.
    None,
}

/// Options of a [`Wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Bytes after which appends go to a new file (default 32 MiB); an
    /// entry larger than this gets a file of its own.
    pub file_capacity: u64,
    /// When an append is durable.
    pub durability: Durability,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            file_capacity: DEFAULT_FILE_CAPACITY,
            durability: Durability::default(),
        }
    }
}

/// One file of the log, as known in RAM.
#[derive(Debug)]
struct LogFile {
    first: u64,
    path: PathBuf,
    /// Entries it holds.
    count: u64,
    len: u64,
}

/// The appending side: the last file and the next sequence number.
#[derive(Debug)]
struct Writer {
    files: Vec<LogFile>,
    file: File,
    seed: u32,
    next: u64,
    first_needed: u64,
    buf: Vec<u8>,
    /// The next file, being preallocated in the background: its
    /// temporary path and seed.
    prepared: Option<JoinHandle<Result<(PathBuf, u32)>>>,
}

/// Group-commit bookkeeping.
#[derive(Debug, Default)]
struct SyncState {
    /// Every entry up to this sequence number is durable.
    synced: u64,
    /// An `fdatasync` is running.
    running: bool,
}

/// The contents of `first.json`.
#[derive(Debug, Serialize, Deserialize)]
struct FirstNeeded {
    first: u64,
}

/// A write-ahead log in a directory (see the [module docs](self)).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Why the log refuses writes (a write or sync failed).
    failed: Mutex<Option<String>>,
    /// `fdatasync` calls made for appends (not counting roll-overs).
    syncs: std::sync::atomic::AtomicU64,
}

fn file_name(first: u64) -> String {
    format!("wal-{first:020}.log")
}

fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// The first needed sequence number recorded in `first.json` (1 if none).
fn read_first_needed(dir: &Path) -> Result<u64> {
    let path = dir.join(FIRST_FILE);
    if !path.exists() {
        return Ok(1);
    }
    let bytes = read_sealed(&path)?;
    serde_json::from_slice::<FirstNeeded>(&bytes)
        .map(|f| f.first)
        .map_err(|e| StorageError::corrupted(&path, format!("invalid JSON: {e}")))
}

/// First sequence numbers of the log files in `dir`, ascending.
fn list_files(dir: &Path) -> Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        if let Some(first) = e.file_name().to_str().and_then(parse_file_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Overwrite bytes `from..to` of `path` with zeros and sync them.
fn zero_range(path: &Path, from: u64, to: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .at(path)?;
    let zeros = vec![0u8; (to - from).min(1 << 20) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], at).at(path)?;
        at += n as u64;
    }
    f.sync_data().at(path)
}

/// Remove preallocated next files left by a crash.
fn remove_prepared(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        if e.file_name().to_string_lossy().ends_with(PREPARED_SUFFIX) {
            let path = e.path();
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

fn random_seed() -> u32 {
    rand::random()
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::InvalidArgument("a thread panicked while appending to the WAL".into())
}

impl Wal {
    /// Open the log in `dir`, creating it (and the directory) when empty.
    /// Returns the log and every entry it holds from the first needed one
    /// on, for replay.
    #[allow(clippy::type_complexity)]
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Self, Vec<(u64, Vec<u8>)>)> {
        std::fs::create_dir_all(dir).at(dir)?;
        remove_prepared(dir)?;
        let first_needed = read_first_needed(dir)?;
        let firsts = list_files(dir)?;
        let mut files = Vec::new();
        let mut entries = Vec::new();
        let mut next = None::<u64>;
        let mut seed = 0;
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let path = dir.join(file_name(first));
            if i == 0 && first > first_needed {
                return Err(StorageError::corrupted(
                    &path,
                    format!(
                        "the log starts at entry {first}, but entries from {first_needed} on are still needed"
                    ),
                ));
            }
            if let Some(expected) = next {
                if first != expected {
                    return Err(StorageError::corrupted(
                        &path,
                        format!(
                            "starts at entry {first}, the previous file ends before {expected}"
                        ),
                    ));
                }
            }
            let scanned = log_file::scan(&path, first)?;
            let last = i + 1 == count;
            if scanned.dirty_end > scanned.valid_len {
                if !last {
                    return Err(StorageError::corrupted(
                        &path,
                        format!(
                            "entries end at byte {}, followed by {} bytes that are not \
                             entries, but later files follow",
                            scanned.valid_len,
                            scanned.dirty_end - scanned.valid_len
                        ),
                    ));
                }
                // A torn tail: zero it so new entries follow the valid ones
                // and no stale byte is read as part of a later entry.
                zero_range(&path, scanned.valid_len, scanned.dirty_end)?;
            }
            let n = scanned.entries.len() as u64;
            next = Some(first + n);
            seed = scanned.seed;
            entries.extend(
                scanned
                    .entries
                    .into_iter()
                    .filter(|(seq, _)| *seq >= first_needed),
            );
            files.push(LogFile {
                first,
                path,
                count: n,
                len: scanned.valid_len,
            });
        }
        let next = next.unwrap_or(first_needed).max(first_needed);
        let file = match files.last() {
            Some(f) if f.first + f.count == next => std::fs::OpenOptions::new()
                .write(true)
                .open(&f.path)
                .at(&f.path)?,
            _ => {
                // No file yet, or every file is older than the first
                // needed entry: start a file at `next`.
                seed = random_seed();
                let path = dir.join(file_name(next));
                let file = log_file::create(&path, seed, options.file_capacity)?;
                fsync_dir(dir)?;
                files.push(LogFile {
                    first: next,
                    path,
                    count: 0,
                    len: log_file::HEADER_LEN,
                });
                file
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            writer: Mutex::new(Writer {
                files,
                file,
                seed,
                next,
                first_needed,
                buf: Vec::new(),
                prepared: None,
            }),
            sync: Mutex::new(SyncState {
                synced: next - 1,
                running: false,
            }),
            synced: Condvar::new(),
            failed: Mutex::new(None),
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        Ok((wal, entries))
    }

    /// `fdatasync` calls made so far to make appends durable: fewer than
    /// appends when group commit shared them.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// When an append is durable.
    pub fn durability(&self) -> Durability {
        self.options.durability
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> Result<u64> {
        Ok(self.writer.lock().map_err(poisoned)?.next)
    }

    /// The first sequence number the log still holds.
    pub fn first_needed(&self) -> Result<u64> {
        Ok(self.writer.lock().map_err(poisoned)?.first_needed)
    }

    /// Bytes of every log file.
    pub fn disk_bytes(&self) -> Result<u64> {
        Ok(self
            .writer
            .lock()
            .map_err(poisoned)?
            .files
            .iter()
            .map(|f| f.len)
            .sum())
    }

    /// Append `data` as one entry; returns its sequence number once the
    /// entry is durable per [`WalOptions::durability`]. The same as
    /// [`write`](Self::write) followed by [`wait_durable`](Self::wait_durable).
    pub fn append(&self, data: &[u8]) -> Result<u64> {
        let seq = self.write(data)?;
        self.wait_durable(seq)?;
        Ok(seq)
    }

    /// Write `data` as one entry and return its sequence number, without
    /// waiting for it to be durable: the entry is in the page cache (it
    /// survives a killed process) and becomes durable with
    /// [`wait_durable`](Self::wait_durable), [`sync`](Self::sync) or the
    /// next file roll-over. A caller can apply the operation while the
    /// sync runs, as [`Collection`](crate::Collection) does, as long as it
    /// acknowledges the operation only after `wait_durable`.
    ///
    /// After a failed write or sync the log refuses every later write
    /// (the state of the file and of the page cache is then unknown);
    /// reopen it to recover what is on disk.
    pub fn write(&self, data: &[u8]) -> Result<u64> {
        if data.len() > log_file::MAX_ENTRY {
            return Err(StorageError::InvalidArgument(format!(
                "a WAL entry holds at most {} bytes, got {}",
                log_file::MAX_ENTRY,
                data.len()
            )));
        }
        self.check_healthy()?;
        let mut w = self.writer.lock().map_err(poisoned)?;
        let result = self.write_locked(&mut w, data);
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result
    }

    fn write_locked(&self, w: &mut MutexGuard<'_, Writer>, data: &[u8]) -> Result<u64> {
        let size = log_file::entry_len(data.len());
        let current = w.files.last().map_or(0, |f| f.len);
        if current + size > self.options.file_capacity
            && w.files.last().is_some_and(|f| f.count > 0)
        {
            self.roll_over(w)?;
        }
        let seq = w.next;
        let seed = w.seed;
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        log_file::encode_entry(&mut buf, seed, seq, data);
        let (path, at) = w
            .files
            .last()
            .map(|f| (f.path.clone(), f.len))
            .unwrap_or_default();
        w.file.write_all_at(&buf, at).at(&path)?;
        w.buf = buf;
        w.next += 1;
        if let Some(f) = w.files.last_mut() {
            f.count += 1;
            f.len += size;
        }
        // An eighth full: start preallocating the next file (early, so it
        // is ready before this one fills even when the disk is slow; not
        // at once, so a small collection keeps one file).
        if w.prepared.is_none() && at + size > self.options.file_capacity / 8 {
            let (dir, capacity) = (self.dir.clone(), self.options.file_capacity);
            w.prepared = Some(std::thread::spawn(move || {
                let seed = random_seed();
                let path = dir.join(format!("next-{seed:08x}{PREPARED_SUFFIX}"));
                log_file::preallocate(&path, seed, capacity)?;
                Ok((path, seed))
            }));
        }
        Ok(seq)
    }

    /// Return once entry `seq` is durable per [`WalOptions::durability`]:
    /// `Fsync` runs an `fdatasync` unless one that started after the entry
    /// was written already covered it; `GroupCommit` shares one with the
    /// writers waiting at the same time; `None` returns at once.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let result = match self.options.durability {
            Durability::None => Ok(()),
            Durability::Fsync => self.sync_covering(seq, false),
            Durability::GroupCommit => self.sync_covering(seq, true),
        };
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result?;
        self.check_healthy()
    }

    /// An error if an earlier write or sync failed.
    fn check_healthy(&self) -> Result<()> {
        match &*self.failed.lock().map_err(poisoned)? {
            None => Ok(()),
            Some(reason) => Err(StorageError::io(
                &self.dir,
                std::io::Error::other(format!(
                    "the WAL refuses writes after an earlier failure ({reason}); reopen it"
                )),
            )),
        }
    }

    fn mark_failed(&self, e: &StorageError) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }

    fn mark_synced(&self, seq: u64) -> Result<()> {
        let mut s = self.sync.lock().map_err(poisoned)?;
        s.synced = s.synced.max(seq);
        Ok(())
    }

    /// Make entry `seq` durable with an `fdatasync` of the current file.
    /// With `share`, wait for a running sync and let one sync cover every
    /// entry written before it started (group commit).
    fn sync_covering(&self, seq: u64, share: bool) -> Result<()> {
        let mut s = self.sync.lock().map_err(poisoned)?;
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            if !share || !s.running {
                break;
            }
            s = self.synced.wait(s).map_err(poisoned)?;
        }
        s.running = true;
        drop(s);
        // Entries of older files were synced at roll-over; everything
        // written to this one so far is covered by this sync.
        let (file, path, upto) = {
            let w = self.writer.lock().map_err(poisoned)?;
            let path = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
            (w.file.try_clone().at(&path), path, w.next - 1)
        };
        let result = file.and_then(|f| f.sync_data().at(&path));
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = self.sync.lock().map_err(poisoned)?;
        s.running = false;
        if result.is_ok() {
            s.synced = s.synced.max(upto);
        }
        self.synced.notify_all();
        result
    }

    /// Start a new file at the next sequence number, after syncing the
    /// current one (so no entry of an older file is lost behind a newer).
    fn roll_over(&self, w: &mut MutexGuard<'_, Writer>) -> Result<()> {
        let old = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
        if self.options.durability != Durability::None {
            w.file.sync_data().at(&old)?;
            self.mark_synced(w.next - 1)?;
        }
        let first = w.next;
        let path = self.dir.join(file_name(first));
        let prepared = w.prepared.take().and_then(|h| h.join().ok()?.ok());
        let seed = match prepared {
            Some((tmp, seed)) => {
                std::fs::rename(&tmp, &path).at(&path)?;
                w.file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .at(&path)?;
                seed
            }
            // Not prepared (or preparing failed): create it now.
            None => {
                let seed = random_seed();
                w.file = log_file::create(&path, seed, self.options.file_capacity)?;
                seed
            }
        };
        fsync_dir(&self.dir)?;
        w.seed = seed;
        w.files.push(LogFile {
            first,
            path,
            count: 0,
            len: log_file::HEADER_LEN,
        });
        Ok(())
    }

    /// Make every appended entry durable now (whatever the durability).
    pub fn sync(&self) -> Result<()> {
        let last = self.writer.lock().map_err(poisoned)?.next - 1;
        let result = self.sync_covering(last, false);
        if let Err(e) = &result {
            self.mark_failed(e);
        }
        result
    }

    /// Forget every entry before `first`: record it in `first.json`, then
    /// delete the files that hold only older entries. The current file is
    /// kept.
    pub fn truncate_before(&self, first: u64) -> Result<()> {
        let mut w = self.writer.lock().map_err(poisoned)?;
        let first = first.min(w.next);
        if first <= w.first_needed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&FirstNeeded { first })
            .map_err(|e| StorageError::Codec(Box::new(e)))?;
        write_sealed(&self.dir.join(FIRST_FILE), &bytes)?;
        w.first_needed = first;
        let keep_from = w
            .files
            .iter()
            .rposition(|f| f.first <= first)
            .unwrap_or(0)
            .min(w.files.len() - 1);
        let old: Vec<LogFile> = w.files.drain(..keep_from).collect();
        for f in &old {
            std::fs::remove_file(&f.path).at(&f.path)?;
        }
        if !old.is_empty() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Number of log files.
    pub fn file_count(&self) -> Result<usize> {
        Ok(self.writer.lock().map_err(poisoned)?.files.len())
    }
}

/// One log file as [`inspect`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFileSummary {
    /// File name.
    pub name: String,
    /// Sequence number of its first entry.
    pub first: u64,
    /// Valid entries.
    pub entries: u64,
    /// Bytes of the valid prefix.
    pub valid_len: u64,
    /// End of the non-zero bytes after the valid prefix (more than
    /// `valid_len`: a torn tail, zeroed at the next open).
    pub dirty_end: u64,
    /// Bytes of the file (preallocated: the valid prefix, then zeros).
    pub file_len: u64,
}

/// What a log directory holds, read without changing anything (a torn
/// tail is reported, not cut): the first needed sequence number and the
/// files. Damage is an error, as at open.
pub fn inspect(dir: &Path) -> Result<(u64, Vec<WalFileSummary>)> {
    let first_needed = read_first_needed(dir)?;
    let firsts = list_files(dir)?;
    let mut files = Vec::new();
    for first in firsts {
        let path = dir.join(file_name(first));
        let scanned = log_file::scan(&path, first)?;
        files.push(WalFileSummary {
            name: file_name(first),
            first,
            entries: scanned.entries.len() as u64,
            valid_len: scanned.valid_len,
            dirty_end: scanned.dirty_end,
            file_len: std::fs::metadata(&path).at(&path)?.len(),
        });
    }
    Ok((first_needed, files))
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Let a preallocation finish, so no thread of this log still
        // writes in the directory when the next one opens it.
        if let Ok(w) = self.writer.get_mut() {
            if let Some(h) = w.prepared.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
