//! The state file: relationships, groups, aspects and job records as JSON,
//! replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory) after every change, so a restart finds the last decided state.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ReplicationError, Result};

fn state_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::State(format!("{what} {}: {e}", path.display()))
}

/// Reads the state at `path`; `None` when there is no file yet.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_err("decoding", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err("reading", path, e)),
    }
}

/// Replaces the state at `path` with `value`, atomically and durably.
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| state_err("encoding", path, e))?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| state_err("writing", path, e))
}
