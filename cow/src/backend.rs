//! The I/O backend under a pool: positional reads and writes plus a
//! durability barrier, behind a small trait so tests can swap in the
//! power-loss simulator ([`crate::sim::SimBackend`]).
//!
//! [`FileBackend`] is the real one: `pread`/`pwrite` on a file or block
//! device, `fdatasync` as the barrier, and an exclusive `flock` so a second
//! process cannot open the same pool.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::error::{Error, Result};

/// Positional I/O on the pool's backing store.
///
/// Writes may sit in a volatile cache until [`Backend::sync`] returns; only
/// what was written before a completed `sync` is guaranteed to survive a
/// crash, and unsynced writes may land in any order, or torn.
pub trait Backend: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
    /// Size of the store in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Grows a regular file to `len` bytes (sparse); a no-op where the store
    /// is already that large.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Whether the store is empty (zero bytes long).
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A pool file or block device, read and written with `pread`/`pwrite`.
pub struct FileBackend {
    file: File,
    path: PathBuf,
}

static BACKEND_CHOICE: Once = Once::new();

impl FileBackend {
    /// Opens (with `create`, creates) the file and takes an exclusive,
    /// non-blocking `flock`. A second holder gets [`Error::Locked`].
    pub fn open(path: &Path, create: bool) -> Result<FileBackend> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Error::NotFound(path.display().to_string())
                } else {
                    Error::Io(e)
                }
            })?;
        // SAFETY: flock on a valid descriptor has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                });
            }
            return Err(Error::Io(err));
        }
        BACKEND_CHOICE.call_once(|| {
            tracing::info!(
                "cow data I/O: pread/pwrite backend (io_uring backend not built in this version)"
            );
        });
        Ok(FileBackend {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The backing path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Backend for FileBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        let meta = self.file.metadata()?;
        if meta.is_file() {
            return Ok(meta.len());
        }
        // SAFETY: lseek on a valid descriptor has no memory effects.
        let end = unsafe { libc::lseek(self.file.as_raw_fd(), 0, libc::SEEK_END) };
        if end < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(end as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.file.metadata()?.is_file() && self.len()? < len {
            self.file.set_len(len)?;
        }
        Ok(())
    }
}
