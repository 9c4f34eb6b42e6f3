//! A LUN served from a plain file (or block device) through [`BlockDevice`].
//!
//! Writes go through the page cache; FUA writes use a second descriptor
//! opened with `O_DSYNC`, and `flush` is `fdatasync`. Unmap punches holes
//! (`fallocate(PUNCH_HOLE)`), and provisioning status comes from
//! `SEEK_DATA` / `SEEK_HOLE`, so a sparse file is a thin LUN.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::block_device::{
    BlockDevice, BlockError, Durability, Geometry, Provisioning, ProvisioningRun,
};

/// A file-backed block device.
pub struct FileDevice {
    path: PathBuf,
    file: File,
    /// Same file opened with O_DSYNC: a write through it is durable on return.
    dsync: File,
    geometry: Geometry,
    read_only: bool,
}

/// How to open a [`FileDevice`].
#[derive(Debug, Clone)]
pub struct FileDeviceOptions {
    pub block_size: u32,
    /// Size in bytes of the LUN; the file is extended (sparsely) when
    /// `create` is set, else it must already be at least this large.
    /// `None` means: the file's current size.
    pub size: Option<u64>,
    pub create: bool,
    pub read_only: bool,
}

impl Default for FileDeviceOptions {
    fn default() -> Self {
        FileDeviceOptions {
            block_size: 512,
            size: None,
            create: false,
            read_only: false,
        }
    }
}

/// Why a file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("backing file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("backing file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("backing file {path} holds {actual} bytes, smaller than the LUN's {wanted} bytes")]
    TooSmall {
        path: PathBuf,
        actual: u64,
        wanted: u64,
    },
    #[error("block size {0} is not 512 or 4096")]
    BlockSize(u32),
    #[error("size {size} of {path} is not a multiple of the block size {block_size}")]
    SizeNotMultiple {
        path: PathBuf,
        size: u64,
        block_size: u32,
    },
}

impl FileDevice {
    /// Opens (and with `create`, creates or extends) a backing file.
    pub fn open(path: &Path, opts: &FileDeviceOptions) -> Result<FileDevice, OpenError> {
        if opts.block_size != 512 && opts.block_size != 4096 {
            return Err(OpenError::BlockSize(opts.block_size));
        }
        let io_err = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !opts.create && !path.exists() {
            return Err(OpenError::Missing {
                path: path.to_path_buf(),
            });
        }
        let writable = !opts.read_only;
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(opts.create && writable)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let dsync = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_DSYNC)
            .open(path)
            .map_err(io_err)?;
        let actual = device_size(&file).map_err(io_err)?;
        let size = match opts.size {
            Some(wanted) if actual < wanted => {
                if opts.create && writable && file.metadata().map_err(io_err)?.is_file() {
                    file.set_len(wanted).map_err(io_err)?;
                    wanted
                } else {
                    return Err(OpenError::TooSmall {
                        path: path.to_path_buf(),
                        actual,
                        wanted,
                    });
                }
            }
            Some(wanted) => wanted,
            None => actual,
        };
        if !size.is_multiple_of(opts.block_size as u64) {
            return Err(OpenError::SizeNotMultiple {
                path: path.to_path_buf(),
                size,
                block_size: opts.block_size,
            });
        }
        let is_regular = file.metadata().map_err(io_err)?.is_file();
        Ok(FileDevice {
            path: path.to_path_buf(),
            file,
            dsync,
            geometry: Geometry {
                block_size: opts.block_size,
                blocks: size / opts.block_size as u64,
                thin: is_regular,
                unmap_granularity_blocks: if is_regular {
                    (4096 / opts.block_size).max(1)
                } else {
                    1
                },
            },
            read_only: opts.read_only,
        })
    }

    /// The backing file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn byte_range(&self, lba: u64, len: usize) -> Result<u64, BlockError> {
        let blocks = self.geometry.blocks_in(len)?;
        self.geometry.check_range(lba, blocks)?;
        Ok(lba * self.geometry.block_size as u64)
    }
}

fn device_size(file: &File) -> io::Result<u64> {
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    // A block device: its size is where SEEK_END lands.
    // SAFETY: lseek on a valid descriptor has no memory effects.
    let end = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_END) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end as u64)
}

impl BlockDevice for FileDevice {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let offset = self.byte_range(lba, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(BlockError::Read)
    }

    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let offset = self.byte_range(lba, data.len())?;
        let file = match durability {
            Durability::Cached => &self.file,
            Durability::ForceUnitAccess => &self.dsync,
        };
        file.write_all_at(data, offset).map_err(BlockError::Write)
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(BlockError::Write)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.geometry.check_range(lba, blocks)?;
        if blocks == 0 {
            return Ok(());
        }
        let bs = self.geometry.block_size as u64;
        if !self.geometry.thin {
            return self.write_zeroes(lba, blocks, false);
        }
        // PUNCH_HOLE zeroes partial pages itself and frees whole ones.
        // SAFETY: fallocate on a valid descriptor has no memory effects.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (lba * bs) as libc::off_t,
                (blocks * bs) as libc::off_t,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
                // The file system cannot punch holes: write zeros instead.
                let g = self.geometry;
                let chunk = (1 << 20) / bs;
                let zeros = vec![0u8; (chunk * bs) as usize];
                let mut at = lba;
                while at < lba + blocks {
                    let n = chunk.min(lba + blocks - at);
                    self.write(at, &zeros[..(n * bs) as usize], Durability::Cached)?;
                    at += n;
                }
                let _ = g;
                return Ok(());
            }
            return Err(BlockError::Write(err));
        }
        Ok(())
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        let g = self.geometry;
        g.check_range(lba, 1)?;
        let bs = g.block_size as u64;
        let end = g.blocks * bs;
        let start = lba * bs;
        if !g.thin {
            return Ok(ProvisioningRun {
                lba,
                blocks: g.blocks - lba,
                state: Provisioning::Mapped,
            });
        }
        let fd = self.file.as_raw_fd();
        // SAFETY: lseek on a valid descriptor has no memory effects.
        let data = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_DATA) };
        let (state, next) = if data < 0 || data as u64 > start {
            // A hole starts here; it ends at the next data (or the end).
            let next = if data < 0 {
                end
            } else {
                (data as u64).min(end)
            };
            (Provisioning::Deallocated, next)
        } else {
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_HOLE) };
            let next = if hole < 0 {
                end
            } else {
                (hole as u64).min(end)
            };
            (Provisioning::Mapped, next)
        };
        // Round the run to whole blocks (holes are page-granular).
        let next_lba = next.div_ceil(bs).max(lba + 1).min(g.blocks);
        Ok(ProvisioningRun {
            lba,
            blocks: next_lba - lba,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ironlun-filedev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn write_read_unmap_roundtrip() {
        let path = temp_path("rw.img");
        let _ = std::fs::remove_file(&path);
        let dev = FileDevice::open(
            &path,
            &FileDeviceOptions {
                size: Some(1 << 20),
                create: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dev.geometry().blocks, 2048);
        let data = vec![0xabu8; 8192];
        dev.write(16, &data, Durability::ForceUnitAccess).unwrap();
        let mut back = vec![0u8; 8192];
        dev.read(16, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(dev.provisioning(16).unwrap().state, Provisioning::Mapped);
        dev.unmap(16, 16).unwrap();
        dev.read(16, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        assert!(matches!(
            dev.read(2047, &mut back),
            Err(BlockError::OutOfRange { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_file_is_reported() {
        let path = temp_path("nope.img");
        let _ = std::fs::remove_file(&path);
        let err = FileDevice::open(&path, &FileDeviceOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::Missing { .. }));
    }
}
