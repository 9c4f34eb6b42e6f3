//! The extent store's error type.
//!
//! Everything read from disk is decoded into typed values or one of these
//! errors; nothing on the pool file can make the engine panic.

use std::io;
use std::path::PathBuf;

use crate::block_device::BlockError;

/// Errors from pool and volume management (and the data path underneath).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backing store failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Another process (or another `Pool` in this one) holds the pool.
    #[error("pool {path} is in use by another process (it holds the lock); stop it first")]
    Locked { path: PathBuf },
    /// The pool's metadata is damaged: a bad checksum, an impossible value.
    #[error("pool metadata corrupt: {0}")]
    Corrupt(String),
    /// Not an ironlun pool at all (no valid superblock).
    #[error("not an ironlun pool (no valid superblock): {0}")]
    NotAPool(String),
    /// No volume or snapshot has that name.
    #[error("no volume or snapshot named {0:?}")]
    NotFound(String),
    /// The name is already taken by a volume or snapshot.
    #[error("name {0:?} is already used by a volume or snapshot")]
    Exists(String),
    /// The object is still needed (e.g. a snapshot that clones are based on).
    #[error("{0}")]
    Busy(String),
    /// A bad argument (size, extent size, name).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The pool has no free extent.
    #[error("no space left in the pool")]
    NoSpace,
    /// The metadata areas cannot hold the pool's maps any more.
    #[error("metadata area full: checkpoint of {needed} bytes exceeds the {area} byte area")]
    MetadataFull { needed: u64, area: u64 },
    /// The object was deleted while a handle to it was still held.
    #[error("{0} was deleted")]
    Deleted(&'static str),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for BlockError {
    fn from(e: Error) -> BlockError {
        match e {
            Error::Io(e) => BlockError::Write(e),
            Error::NoSpace => BlockError::NoSpace,
            Error::Deleted(what) => BlockError::Unsupported(match what {
                "snapshot" => "snapshot was deleted",
                _ => "volume was deleted",
            }),
            Error::Corrupt(s) => BlockError::Corrupt(s),
            other => BlockError::Corrupt(other.to_string()),
        }
    }
}
