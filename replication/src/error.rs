//! The engine's error type: every failure maps to one definite return code.

use crate::model::{CopyState, Operation, ReturnCode, SyncType};

/// Why a replication method did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A parameter is missing, malformed, or names nothing.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The method, SyncType or operation is not offered.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The table refuses the operation in this state.
    #[error("{op} is not valid for a {sync_type} synchronization in CopyState {state}")]
    Refused {
        op: Operation,
        sync_type: SyncType,
        state: CopyState,
        code: ReturnCode,
    },
    /// The element is busy (a job owns it, or a name is taken).
    #[error("in use: {0}")]
    InUse(String),
    /// The wait for a CopyState ran out.
    #[error("timed out waiting for CopyState {0}")]
    Timeout(CopyState),
    /// The storage underneath failed.
    #[error("storage: {0}")]
    Storage(#[from] ironlun_cow::Error),
    /// A block device failed.
    #[error("block device: {0}")]
    Block(#[from] ironlun_cow::BlockError),
    /// The state file could not be written or read.
    #[error("state file: {0}")]
    State(String),
}

impl ReplicationError {
    /// The CIM return code for this error.
    pub fn code(&self) -> ReturnCode {
        match self {
            ReplicationError::InvalidParameter(_) => ReturnCode::InvalidParameter,
            ReplicationError::NotSupported(_) => ReturnCode::NotSupported,
            ReplicationError::Refused { code, .. } => *code,
            ReplicationError::InUse(_) => ReturnCode::InUse,
            ReplicationError::Timeout(_) => ReturnCode::Timeout,
            ReplicationError::Storage(ironlun_cow::Error::NotFound(_))
            | ReplicationError::Storage(ironlun_cow::Error::Invalid(_)) => {
                ReturnCode::InvalidParameter
            }
            ReplicationError::Storage(ironlun_cow::Error::Exists(_))
            | ReplicationError::Storage(ironlun_cow::Error::Busy(_)) => ReturnCode::InUse,
            ReplicationError::Storage(_)
            | ReplicationError::Block(_)
            | ReplicationError::State(_) => ReturnCode::Failed,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;
