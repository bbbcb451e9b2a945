//! [`RocksDb`]: the one RocksDB database a segment's three storages share.
//!
//! A RocksDB segment keeps a single DB at `<segment>/rocksdb/` with one
//! column family per kind of record (see the crate docs for the encodings):
//!
//! | column family | key                         | value                               |
//! |---------------|-----------------------------|-------------------------------------|
//! | `meta`        | ASCII name                  | JSON config or u64 LE counter       |
//! | `vectors`     | offset, u32 big-endian      | `dim` elements, little-endian       |
//! | `deleted`     | offset, u32 big-endian      | empty (presence = deleted)          |
//! | `payload`     | offset, u32 big-endian      | `0x02` + MessagePack map            |
//! | `mapping`     | encoded external id         | offset, u32 big-endian              |
//! | `external`    | offset, u32 big-endian      | encoded external id                 |
//! | `versions`    | offset, u32 big-endian      | version, u64 little-endian          |
//!
//! Every logical change of a storage is one `WriteBatch` (atomic, one WAL
//! record). All writes go through the write-ahead log; `sync` (used by every
//! storage's flush) fsyncs the WAL, so a flushed change survives a crash of
//! the process or of the machine, and an unflushed one survives a process
//! crash (RocksDB writes the WAL record to the OS before returning).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteBatch, WriteOptions, DB,
};
use vecseg_traits::{Result, StorageError};

/// Column family of small metadata records (configs, counters).
pub const CF_META: &str = "meta";
/// Column family of vectors by offset.
pub const CF_VECTORS: &str = "vectors";
/// Column family of deleted-vector flags by offset.
pub const CF_DELETED: &str = "deleted";
/// Column family of payloads by offset.
pub const CF_PAYLOAD: &str = "payload";
/// Column family external id -> offset.
pub const CF_MAPPING: &str = "mapping";
/// Column family offset -> external id.
pub const CF_EXTERNAL: &str = "external";
/// Column family offset -> version.
pub const CF_VERSIONS: &str = "versions";

/// Every column family, in creation order.
pub const ALL_CFS: [&str; 7] = [
    CF_META,
    CF_VECTORS,
    CF_DELETED,
    CF_PAYLOAD,
    CF_MAPPING,
    CF_EXTERNAL,
    CF_VERSIONS,
];

/// Meta key holding the database format record (`{"format_version": 1}`).
pub const META_FORMAT: &[u8] = b"format";
/// Format version of the key/value layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Tunables of a [`RocksDb`].
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Upper bound on open SST files (RocksDB `max_open_files`).
    pub max_open_files: i32,
    /// Size of the one LRU block cache shared by every column family.
    pub block_cache_bytes: usize,
    /// Memtable size per column family before it is flushed to an SST.
    pub write_buffer_bytes: usize,
    /// Background flush/compaction threads.
    pub background_jobs: i32,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            max_open_files: 256,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            background_jobs: 2,
        }
    }
}

impl RocksOptions {
    /// These options with at most `n` open SST files.
    pub fn with_max_open_files(mut self, n: i32) -> Self {
        self.max_open_files = n;
        self
    }

    /// These options with a block cache of `bytes`.
    pub fn with_block_cache_bytes(mut self, bytes: usize) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// These options with memtables of `bytes` per column family.
    pub fn with_write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.write_buffer_bytes = bytes;
        self
    }

    /// These options with `n` background flush/compaction threads.
    pub fn with_background_jobs(mut self, n: i32) -> Self {
        self.background_jobs = n;
        self
    }
}

/// One RocksDB database shared (through an [`Arc`]) by the vector storage,
/// payload storage and id mapper of a segment.
pub struct RocksDb {
    db: DB,
    path: PathBuf,
    write_opts: WriteOptions,
    /// The block cache shared by every column family, and its capacity.
    cache: Cache,
    cache_bytes: usize,
}

impl std::fmt::Debug for RocksDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDb").field("path", &self.path).finish()
    }
}

/// A RocksDB error as a [`StorageError`]: a corruption RocksDB detected
/// (a checksum mismatch in an SST, a damaged MANIFEST, ...) is
/// [`StorageError::Corrupted`] naming the database at `path`; anything else
/// is [`StorageError::Backend`] naming what was being done.
pub(crate) fn backend_err(
    path: &Path,
    context: impl Into<String>,
    e: rocksdb::Error,
) -> StorageError {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => {
            StorageError::corrupted(path, format!("{}: {e}", context.into()))
        }
        _ => StorageError::backend(context, e),
    }
}

impl RocksDb {
    /// Open (creating if missing) the database at `path` with default options.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        Self::open_with(path, &RocksOptions::default())
    }

    /// Open (creating if missing) the database at `path`.
    ///
    /// Every column family uses LZ4 compression (RocksDB stores a block
    /// uncompressed when LZ4 does not pay, e.g. for random floats), 16 KiB
    /// blocks, bloom filters on the point-lookup families and one shared LRU
    /// block cache of `options.block_cache_bytes`.
    pub fn open_with(path: &Path, options: &RocksOptions) -> Result<Arc<Self>> {
        std::fs::create_dir_all(path).map_err(|e| StorageError::io(path, e))?;
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_open_files(options.max_open_files.max(16));
        db_opts.set_max_background_jobs(options.background_jobs.max(1));
        db_opts.set_keep_log_file_num(2);
        db_opts.set_max_total_wal_size(256 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(DBCompressionType::Lz4);
            cf_opts.set_bottommost_compression_type(DBCompressionType::Lz4);
            cf_opts.set_write_buffer_size(if *name == CF_VECTORS || *name == CF_PAYLOAD {
                options.write_buffer_bytes
            } else {
                (options.write_buffer_bytes / 4).max(1 << 20)
            });
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_block_size(16 << 10);
            if *name != CF_META {
                table.set_bloom_filter(10.0, false);
            }
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(|e| backend_err(path, format!("open RocksDB at {}", path.display()), e))?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(false);
        let this = RocksDb {
            db,
            path: path.to_path_buf(),
            write_opts,
            cache,
            cache_bytes: options.block_cache_bytes,
        };
        this.check_format()?;
        Ok(Arc::new(this))
    }

    /// Write the format record of a fresh database, or check an existing one.
    fn check_format(&self) -> Result<()> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Format {
            format_version: u32,
        }
        match self.get_meta(META_FORMAT)? {
            None => {
                let bytes = serde_json::to_vec(&Format {
                    format_version: FORMAT_VERSION,
                })
                .map_err(|e| StorageError::Codec(Box::new(e)))?;
                let mut batch = WriteBatch::default();
                batch.put_cf(self.cf(CF_META)?, META_FORMAT, bytes);
                self.write(batch)?;
                self.sync()
            }
            Some(bytes) => {
                let f: Format = serde_json::from_slice(&bytes).map_err(|e| {
                    StorageError::corrupted(&self.path, format!("bad format record: {e}"))
                })?;
                if f.format_version != FORMAT_VERSION {
                    return Err(StorageError::UnsupportedVersion {
                        path: self.path.clone(),
                        found: f.format_version,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make the next reads cold: flush memtables to SST files, empty the
    /// block cache (shrink it to zero and back) and evict every file of the
    /// database from the OS page cache.
    pub fn drop_caches(&self) -> Result<()> {
        self.flush_memtables()?;
        let mut cache = self.cache.clone();
        cache.set_capacity(0);
        cache.set_capacity(self.cache_bytes);
        let entries = std::fs::read_dir(&self.path).map_err(|e| StorageError::io(&self.path, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                vecseg_mmap::file::evict_file_from_page_cache(&path)?;
            }
        }
        Ok(())
    }

    /// The underlying RocksDB handle (for tools and benchmarks).
    pub fn inner(&self) -> &DB {
        &self.db
    }

    /// Handle of column family `name`.
    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| {
            StorageError::corrupted(&self.path, format!("column family `{name}` is missing"))
        })
    }

    /// Apply `batch` atomically (through the WAL, not synced).
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|e| backend_err(&self.path, format!("write to {}", self.path.display()), e))
    }

    /// A metadata record.
    pub(crate) fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(|e| backend_err(&self.path, "read RocksDB metadata", e))
    }

    /// A u64 counter from the `meta` family (0 when absent).
    pub(crate) fn get_counter(&self, key: &[u8]) -> Result<u64> {
        match self.get_meta(key)? {
            None => Ok(0),
            Some(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    StorageError::corrupted(
                        &self.path,
                        format!(
                            "meta counter `{}` has {} bytes, expected 8",
                            String::from_utf8_lossy(key),
                            bytes.len()
                        ),
                    )
                })?;
                Ok(u64::from_le_bytes(arr))
            }
        }
    }

    /// Make every write so far durable: fsync the write-ahead log.
    pub fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| {
            backend_err(
                &self.path,
                format!("sync WAL of {}", self.path.display()),
                e,
            )
        })
    }

    /// Flush every memtable into SST files (so reopening does not replay the
    /// WAL) and sync.
    pub fn flush_memtables(&self) -> Result<()> {
        for name in ALL_CFS {
            self.db
                .flush_cf(self.cf(name)?)
                .map_err(|e| backend_err(&self.path, format!("flush column family {name}"), e))?;
        }
        self.sync()
    }

    /// RocksDB's latest sequence number: it grows with every write, so two
    /// equal values mean nothing was written in between (used by migration
    /// to detect a source that changed between two runs).
    pub fn latest_sequence_number(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    /// On-disk bytes of the SST files of column family `name`.
    pub(crate) fn sst_bytes(&self, name: &str) -> u64 {
        self.cf(name)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Bytes of the whole database directory (SSTs, WAL, manifest, ...).
    pub fn disk_bytes(&self) -> u64 {
        vecseg_traits::fsutil::dir_size(&self.path)
    }

    /// Bytes on disk not attributable to one column family's SSTs (WAL,
    /// manifest, options files); charged to the vector storage so the three
    /// storages' `disk_bytes` add up to the directory size.
    pub(crate) fn overhead_bytes(&self) -> u64 {
        let ssts: u64 = ALL_CFS.iter().map(|n| self.sst_bytes(n)).sum();
        self.disk_bytes().saturating_sub(ssts)
    }
}

/// Key of an offset: 4 bytes big-endian, so byte order = offset order.
#[inline]
pub(crate) fn offset_key(offset: u32) -> [u8; 4] {
    offset.to_be_bytes()
}

/// Decode an offset key.
pub(crate) fn decode_offset(path: &Path, key: &[u8]) -> Result<u32> {
    let arr: [u8; 4] = key.try_into().map_err(|_| {
        StorageError::corrupted(
            path,
            format!("offset key of {} bytes, expected 4", key.len()),
        )
    })?;
    Ok(u32::from_be_bytes(arr))
}
