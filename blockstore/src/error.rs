//! Errors, one enum per kind of operation.
//!
//! Failures of the disk or of redb are wrapped in the opaque [`StorageError`]
//! so that neither `std::io` nor redb types become part of this crate's API;
//! they stay reachable through [`std::error::Error::source`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;

use crate::config::ConfigError;

/// The disk or the index database failed underneath an operation.
///
/// Cheap to clone: one failed group commit is reported to every caller whose
/// writes were in it.
#[derive(Clone, Debug, thiserror::Error)]
#[error(transparent)]
pub struct StorageError(Arc<StorageErrorKind>);

#[derive(Debug, thiserror::Error)]
enum StorageErrorKind {
    #[error(
        "I/O error while {op} {path}: {source}; check that the disk is mounted, writable and not full"
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "blockstore index (redb) failed: {0}; if this persists, move the store aside and restore it from the cluster"
    )]
    Index(#[source] redb::Error),
    #[error(
        "blockstore is inconsistent: {0}; move the store aside and restore it from the cluster"
    )]
    Inconsistent(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self(Arc::new(StorageErrorKind::Io {
            op,
            path: path.to_path_buf(),
            source,
        }))
    }

    pub(crate) fn inconsistent(what: impl Into<String>) -> Self {
        Self(Arc::new(StorageErrorKind::Inconsistent(what.into())))
    }
}

impl<E: Into<redb::Error>> From<E> for StorageError {
    fn from(e: E) -> Self {
        Self(Arc::new(StorageErrorKind::Index(e.into())))
    }
}

/// [`Blockstore::open`](crate::Blockstore::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another process (or another handle in this one) has the store open.
    #[error(
        "blockstore {path} is already open by another process or handle; stop the other tessera daemon first"
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store was written by a version of tessera with another format.
    #[error(
        "blockstore format version {found} is not supported (this build reads version {supported}); use a matching tessera build"
    )]
    UnsupportedFormat {
        /// The version recorded in the store.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A write (put, pin, delete, GC step) could not be completed.
///
/// On this error, blocks of the failed call may or may not be stored; none
/// that is in the index points at bytes that are not on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The writer thread is gone (it panicked or the store is shutting down).
    #[error("the blockstore writer thread has stopped (see the log); reopen the store")]
    Closed,
}

/// A read could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored bytes do not hash to the CID. They have been moved aside
    /// (the block is gone from the index and listed in
    /// [`Blockstore::corrupt_blocks`](crate::Blockstore::corrupt_blocks)); fetch or
    /// rebuild the block and put it again.
    #[error(
        "block {cid} is corrupt on disk and was removed from the store; fetch or rebuild it and put it again"
    )]
    Corrupt {
        /// The block that failed.
        cid: Cid,
    },
    /// A verified read was asked for a block whose hash function this build
    /// cannot compute.
    #[error(
        "block {cid} uses multihash code 0x{code:x}, which tessera cannot verify; use get() without verification"
    )]
    Unverifiable {
        /// The block.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// Moving a corrupt block aside needs the writer thread, which is gone.
    #[error("the blockstore writer thread has stopped (see the log); reopen the store")]
    Closed,
}

/// A delete could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The writer thread is gone.
    #[error("the blockstore writer thread has stopped (see the log); reopen the store")]
    Closed,
}

/// A pin operation could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The writer thread is gone.
    #[error("the blockstore writer thread has stopped (see the log); reopen the store")]
    Closed,
}

/// Garbage collection or compaction stopped part way.
///
/// Whatever it had done is consistent and durable; running it again resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The disk or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The writer thread is gone.
    #[error("the blockstore writer thread has stopped (see the log); reopen the store")]
    Closed,
}

/// What the writer thread reports back; converted to each operation's error.
#[derive(Clone, Debug)]
pub(crate) enum WriteFailure {
    Storage(StorageError),
    Closed,
}

impl From<StorageError> for WriteFailure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

macro_rules! from_write_failure {
    ($($t:ident),*) => {$(
        impl From<WriteFailure> for $t {
            fn from(e: WriteFailure) -> Self {
                match e {
                    WriteFailure::Storage(e) => Self::Storage(e),
                    WriteFailure::Closed => Self::Closed,
                }
            }
        }
    )*};
}
from_write_failure!(PutError, GetError, DeleteError, PinError, GcError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_path_and_advice_and_keeps_source() {
        let e = StorageError::io(
            "reading",
            Path::new("/x/packs/00000001.pack"),
            std::io::Error::other("boom"),
        );
        let msg = e.to_string();
        assert!(msg.contains("/x/packs/00000001.pack"), "{msg}");
        assert!(msg.contains("not full"), "{msg}");
        let src = std::error::Error::source(&e).expect("source");
        assert!(src.to_string().contains("boom"));
    }

    #[test]
    fn write_failure_maps_to_each_operation() {
        let e: PutError = WriteFailure::Closed.into();
        assert!(matches!(e, PutError::Closed));
        let e: GcError = WriteFailure::Storage(StorageError::inconsistent("x")).into();
        assert!(matches!(e, GcError::Storage(_)));
        assert!(e.to_string().contains("inconsistent"));
    }
}
