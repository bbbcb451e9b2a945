//! The one error type of vecseg.
//!
//! Every backend returns [`StorageError`]. A backend-specific error (RocksDB,
//! a serde codec, ...) is boxed into [`StorageError::Backend`] as its source so
//! callers match on a stable set of variants.

use std::path::{Path, PathBuf};

use crate::types::{PointId, PointOffset};

/// Boxed error of a backend library, kept as the `source` of a [`StorageError`].
pub type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout vecseg.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Every error a vecseg storage, segment or tool can return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A vector had the wrong number of components.
    #[error("vector dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The storage's dimension.
        expected: usize,
        /// The dimension that was passed.
        got: usize,
    },
    /// A vector component was NaN or infinite.
    #[error("vector component {index} is not finite")]
    NonFiniteComponent {
        /// Index of the first offending component.
        index: usize,
    },
    /// A zero vector cannot be normalised for cosine distance.
    #[error("zero vector cannot be used with cosine distance")]
    ZeroVector,
    /// An external point id is not in the segment.
    #[error("point {0} not found")]
    NotFound(PointId),
    /// An internal offset is past the end of the storage.
    #[error("offset {offset} out of range (storage holds {len})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: PointOffset,
        /// Number of offsets the storage holds.
        len: usize,
    },
    /// An argument was rejected (message says which and why).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file or directory has content vecseg cannot accept.
    #[error("corrupted storage file {}: {reason}", path.display())]
    Corrupted {
        /// The file (or directory) at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file uses a format version this build does not read.
    #[error("unsupported format version {found} in {} (this build reads {supported})", path.display())]
    UnsupportedVersion {
        /// The file at fault.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An I/O operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The storage does not support this operation (e.g. insert into an
    /// immutable storage reached through a dynamic interface).
    #[error("operation not supported: {0}")]
    Unsupported(String),
    /// A payload could not be encoded or decoded.
    #[error("payload codec error: {0}")]
    Codec(#[source] BoxedError),
    /// An error of a backend library (e.g. RocksDB).
    #[error("{context}: {source}")]
    Backend {
        /// What vecseg was doing.
        context: String,
        /// The backend's own error.
        #[source]
        source: BoxedError,
    },
    /// Migration verification found the two sides different.
    #[error("verification failed: {0}")]
    VerificationFailed(String),
    /// The directory is open for writing elsewhere (another process, or
    /// another open in this one).
    #[error("{}: locked: already open for writing (another process, or an earlier open in this one)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl StorageError {
    /// An [`StorageError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A [`StorageError::Corrupted`] for `path`.
    pub fn corrupted(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        StorageError::Corrupted {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A [`StorageError::Backend`] wrapping a backend library's error.
    pub fn backend(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Backend {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Extension to attach a path to `std::io::Result`s.
pub trait IoResultExt<T> {
    /// Turn an `io::Error` into [`StorageError::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| StorageError::io(path, e))
    }
}
