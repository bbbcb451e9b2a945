//! The write-ahead log: every change is appended here, and gets its
//! sequence number, before it reaches a segment; recovery replays it.
//!
//! A log is a directory of files `wal-<first sequence number, 20 digits>.log`
//! (format in [`log_file`]) plus `first.json`, the first sequence number
//! still needed. Appends go to the last file; once it holds
//! [`WalOptions::file_capacity`] bytes, the next append starts a new file
//! (created as temp + fsync + rename + directory fsync). Sequence numbers
//! start at 1 and have no gaps.
//!
//! **Durability** ([`Durability`]): an append returns once its entry is
//! durable in the chosen sense:
//!
//! | mode | an acknowledged append survives | cost |
//! |------|--------------------------------|------|
//! | `Fsync` (default) | a power loss | one `fdatasync` per append |
//! | `GroupCommit` | a power loss | one `fdatasync` shared by the appends that arrive while the previous one runs (concurrent writers) |
//! | `None` | a killed process, not a power loss (the page cache keeps it) | nothing |
//!
//! **Opening** scans every file ([`log_file::scan`]): a torn tail of the
//! last file (a write cut short) is cut off; damage followed by valid
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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use vecseg_traits::fsutil::{fsync_dir, read_sealed, write_sealed};
use vecseg_traits::{IoResultExt, Result, StorageError};

/// Default size at which the log starts a new file: 32 MiB.
pub const DEFAULT_FILE_CAPACITY: u64 = 32 << 20;
/// Name of the file recording the first sequence number still needed.
pub const FIRST_FILE: &str = "first.json";

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
            let on_disk = std::fs::metadata(&path).at(&path)?.len();
            let last = i + 1 == count;
            if scanned.valid_len < on_disk {
                if !last {
                    return Err(StorageError::corrupted(
                        &path,
                        format!(
                            "entries end at byte {} of {on_disk}, but later files follow",
                            scanned.valid_len
                        ),
                    ));
                }
                // A torn tail: cut it so new entries follow the valid ones.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .at(&path)?;
                f.set_len(scanned.valid_len).at(&path)?;
                f.sync_all().at(&path)?;
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
                .append(true)
                .open(&f.path)
                .at(&f.path)?,
            _ => {
                // No file yet, or every file is older than the first
                // needed entry: start a file at `next`.
                seed = random_seed();
                let path = dir.join(file_name(next));
                let file = log_file::create(&path, seed)?;
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
            }),
            sync: Mutex::new(SyncState {
                synced: next - 1,
                running: false,
            }),
            synced: Condvar::new(),
        };
        Ok((wal, entries))
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
    /// entry is durable per [`WalOptions::durability`].
    pub fn append(&self, data: &[u8]) -> Result<u64> {
        if data.len() > log_file::MAX_ENTRY {
            return Err(StorageError::InvalidArgument(format!(
                "a WAL entry holds at most {} bytes, got {}",
                log_file::MAX_ENTRY,
                data.len()
            )));
        }
        let (seq, file) = {
            let mut w = self.writer.lock().map_err(poisoned)?;
            let size = log_file::entry_len(data.len());
            let current = w.files.last().map_or(0, |f| f.len);
            if current + size > self.options.file_capacity
                && w.files.last().is_some_and(|f| f.count > 0)
            {
                self.roll_over(&mut w)?;
            }
            let seq = w.next;
            let seed = w.seed;
            let mut buf = std::mem::take(&mut w.buf);
            buf.clear();
            log_file::encode_entry(&mut buf, seed, seq, data);
            let path = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
            w.file.write_all(&buf).at(&path)?;
            w.buf = buf;
            w.next += 1;
            if let Some(f) = w.files.last_mut() {
                f.count += 1;
                f.len += size;
            }
            let file = match self.options.durability {
                Durability::None => None,
                _ => Some(w.file.try_clone().at(&path)?),
            };
            (seq, file.map(|f| (f, path)))
        };
        match (self.options.durability, file) {
            (Durability::Fsync, Some((f, path))) => {
                f.sync_data().at(&path)?;
                self.mark_synced(seq)?;
            }
            (Durability::GroupCommit, Some((f, path))) => self.group_sync(seq, &f, &path)?,
            _ => {}
        }
        Ok(seq)
    }

    fn mark_synced(&self, seq: u64) -> Result<()> {
        let mut s = self.sync.lock().map_err(poisoned)?;
        s.synced = s.synced.max(seq);
        Ok(())
    }

    /// Make entry `seq` durable, sharing an `fdatasync` with the appends
    /// that arrived while the previous one ran.
    fn group_sync(&self, seq: u64, file: &File, path: &Path) -> Result<()> {
        let mut s = self.sync.lock().map_err(poisoned)?;
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            if !s.running {
                break;
            }
            s = self.synced.wait(s).map_err(poisoned)?;
        }
        s.running = true;
        drop(s);
        // Everything written so far is covered by this sync.
        let upto = self.writer.lock().map_err(poisoned)?.next - 1;
        let result = file.sync_data().at(path);
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
        }
        let seed = random_seed();
        let first = w.next;
        let path = self.dir.join(file_name(first));
        w.file = log_file::create(&path, seed)?;
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
        let (file, path, upto) = {
            let w = self.writer.lock().map_err(poisoned)?;
            let path = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
            (w.file.try_clone().at(&path)?, path, w.next - 1)
        };
        file.sync_data().at(&path)?;
        self.mark_synced(upto)
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
    /// Bytes of the file (more than `valid_len`: a torn tail).
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
            file_len: std::fs::metadata(&path).at(&path)?.len(),
        });
    }
    Ok((first_needed, files))
}

#[cfg(test)]
mod tests;
