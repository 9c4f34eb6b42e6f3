//! The I/O backend under a pool: positional reads and writes plus a
//! durability barrier, behind a small trait so tests can swap in the
//! power-loss simulator ([`crate::sim::SimBackend`]).
//!
//! [`FileBackend`] is the real one. It uses io_uring (one small ring per
//! thread, crate `io-uring`) through the page cache by default for reads
//! (a cached read completes inside the ring); buffered writes use `pwrite`
//! on the calling thread, because a file system that cannot complete them
//! without blocking (ext4) makes io_uring pass each one to a kernel worker
//! thread, an extra hop. With `IRONLUN_COW_IO=direct` it adds a second
//! descriptor opened with `O_DIRECT` for 4 KiB-aligned transfers, read and
//! written through io_uring; when io_uring is not available it falls back
//! to `pread`/`pwrite`. The choice is made once per process
//! and logged once; `IRONLUN_COW_IO=pread|uring|direct` forces one.
//! Durability is `fdatasync` either way (a cached write is durable after
//! the next commit, exactly as with `O_DIRECT`, whose writes may also sit
//! in the device's volatile cache), and an exclusive `flock` keeps a second
//! process off the pool.
//!
//! Why buffered by default: side-by-side fio runs (docs/BENCHMARKS.md,
//! "Profile findings") gave about twice the 4k random read IOPS and more
//! write IOPS through the page cache than with `O_DIRECT`, where every
//! cached write waited for the disk and every read missed.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use io_uring::{opcode, types, IoUring};

use crate::error::{Error, Result};

/// Positional I/O on the pool's backing store.
///
/// Writes may sit in a volatile cache until [`Backend::sync`] returns; only
/// what was written before a completed `sync` is guaranteed to survive a
/// crash, and unsynced writes may land in any order, or torn.
pub trait Backend: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset` only if that needs no
    /// wait for the disk (the data is cached). `None`: it would wait, or
    /// the backend cannot tell, or it failed; the caller then uses
    /// [`Backend::read_at`], which reports any error. Nothing is promised
    /// about `buf` after `None`.
    fn try_read_at(&self, _buf: &mut [u8], _offset: u64) -> Option<()> {
        None
    }
    /// Writes all of `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset` into the page cache on the calling
    /// thread (a plain `pwrite`, never handed to another thread), if this
    /// backend writes through a cache. `None`: it does not (`O_DIRECT`, the
    /// simulator); nothing was written.
    fn write_cached_here(&self, _data: &[u8], _offset: u64) -> Option<io::Result<()>> {
        None
    }
    /// Allocates space for `[offset, offset + len)` where the store has
    /// none, leaving any data there as it is (so later writes into it need
    /// no allocation). `Ok(false)`: this store cannot.
    fn preallocate(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
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

/// How a [`FileBackend`] moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// `pread`/`pwrite` through the page cache.
    Pread,
    /// io_uring reads and writes through the page cache.
    Uring,
    /// io_uring, with `O_DIRECT` for 4 KiB-aligned transfers (falls back to
    /// [`IoMode::Uring`] per file where `O_DIRECT` cannot be opened).
    UringDirect,
}

impl IoMode {
    /// The mode for this process: `IRONLUN_COW_IO` if set, else buffered
    /// io_uring when a ring can be created, else `pread`. Decided once and
    /// logged once.
    pub fn detect() -> IoMode {
        static MODE: OnceLock<IoMode> = OnceLock::new();
        *MODE.get_or_init(|| {
            let forced = std::env::var("IRONLUN_COW_IO").ok();
            let wanted = match forced.as_deref() {
                Some("pread") => IoMode::Pread,
                Some("direct") => IoMode::UringDirect,
                _ => IoMode::Uring,
            };
            let mode = if wanted != IoMode::Pread {
                match IoUring::new(4) {
                    Ok(_) => wanted,
                    Err(e) => {
                        tracing::warn!(
                            "cow data I/O: io_uring unavailable ({e}); using pread/pwrite"
                        );
                        return IoMode::Pread;
                    }
                }
            } else {
                wanted
            };
            tracing::info!(?mode, "cow data I/O backend");
            mode
        })
    }
}

/// How long a busy pool lock is retried before [`Error::Locked`].
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(2000);

/// Alignment (and size granularity) of `O_DIRECT` transfers.
const DIRECT_ALIGN: usize = 4096;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// One read or write through this thread's ring; returns bytes moved.
fn uring_rw(fd: i32, ptr: *mut u8, len: usize, offset: u64, write: bool) -> io::Result<usize> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        let ring = match slot.as_mut() {
            Some(r) => r,
            None => slot.insert(IoUring::new(4)?),
        };
        let len32 = u32::try_from(len).unwrap_or(!(DIRECT_ALIGN as u32 - 1));
        let entry = if write {
            opcode::Write::new(types::Fd(fd), ptr, len32)
                .offset(offset)
                .build()
        } else {
            opcode::Read::new(types::Fd(fd), ptr, len32)
                .offset(offset)
                .build()
        };
        // SAFETY: the buffer outlives the operation: we wait for its
        // completion below before returning, and the ring is only used by
        // this thread.
        unsafe {
            ring.submission()
                .push(&entry)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("io_uring completion missing"))?;
        let res = cqe.result();
        if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        }
    })
}

/// A heap buffer aligned for `O_DIRECT`.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> io::Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), DIRECT_ALIGN)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "aligned buffer"));
        }
        Ok(AlignedBuf { ptr, layout })
    }

    fn as_mut_slice(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() >= len bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len.min(self.layout.size())) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// A pool file or block device (see the module docs for the I/O engines).
pub struct FileBackend {
    file: File,
    /// The same file opened with `O_DIRECT`, when the mode asks for it and
    /// the file system allows it.
    direct: Option<File>,
    mode: IoMode,
    path: PathBuf,
}

impl FileBackend {
    /// Opens (with `create`, creates) the file with the process's I/O mode
    /// ([`IoMode::detect`]) and takes an exclusive, non-blocking `flock`.
    /// A second holder gets [`Error::Locked`].
    pub fn open(path: &Path, create: bool) -> Result<FileBackend> {
        FileBackend::open_with(path, create, IoMode::detect())
    }

    /// Like [`FileBackend::open`] with an explicit I/O mode.
    pub fn open_with(path: &Path, create: bool, mode: IoMode) -> Result<FileBackend> {
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
        // A process killed with SIGKILL can hold the lock a moment after it
        // is reaped (the kernel tears its io_uring down asynchronously), so
        // a busy lock is retried briefly before it is reported.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        loop {
            // SAFETY: flock on a valid descriptor has no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::Io(err));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let direct = match mode {
            IoMode::UringDirect => match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::debug!("cow: O_DIRECT not available on {}: {e}", path.display());
                    None
                }
            },
            _ => None,
        };
        Ok(FileBackend {
            file,
            direct,
            mode,
            path: path.to_path_buf(),
        })
    }

    /// The backing path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The I/O engine in use for this file.
    pub fn mode(&self) -> IoMode {
        match (self.mode, &self.direct) {
            (IoMode::UringDirect, None) => IoMode::Uring,
            (m, _) => m,
        }
    }

    /// The descriptor for a transfer: the `O_DIRECT` one when offset and
    /// length are aligned.
    fn direct_fd(&self, len: usize, offset: u64) -> Option<i32> {
        let d = self.direct.as_ref()?;
        (len.is_multiple_of(DIRECT_ALIGN) && offset.is_multiple_of(DIRECT_ALIGN as u64) && len > 0)
            .then(|| d.as_raw_fd())
    }

    fn uring_all(
        &self,
        fd: i32,
        ptr: *mut u8,
        len: usize,
        offset: u64,
        write: bool,
    ) -> io::Result<()> {
        let mut done = 0usize;
        while done < len {
            // SAFETY: ptr..ptr+len is the caller's buffer; done < len.
            let p = unsafe { ptr.add(done) };
            let n = uring_rw(fd, p, len - done, offset + done as u64, write)?;
            if n == 0 {
                return Err(if write {
                    io::Error::new(io::ErrorKind::WriteZero, "short write")
                } else {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of pool")
                });
            }
            done += n;
        }
        Ok(())
    }
}

impl FileBackend {
    /// A buffered write, in pieces of at most [`buffered_chunk`] bytes.
    /// The page cache sizes a new folio by the write that creates it, and
    /// ext4's write path walks every block of the folio a write lands in:
    /// after 64 KiB writes (a fill, a whole-extent redirect) each later
    /// 4 KiB write into that range paid for 16 blocks. Small pieces keep
    /// folios small (measured: fio 4k random writes over iSCSI after a
    /// 1 MiB sequential fill, 103k IOPS with 64 KiB pwrites, 140k after a
    /// 4 KiB fill).
    fn write_buffered(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let chunk = buffered_chunk();
        let mut at = 0usize;
        while at < data.len() {
            let n = chunk.min(data.len() - at);
            self.file
                .write_all_at(&data[at..at + n], offset + at as u64)?;
            at += n;
        }
        Ok(())
    }
}

/// Largest single `pwrite` of buffered data (`IRONLUN_COW_WRITE_CHUNK`
/// bytes, default 16 KiB; see `FileBackend::write_buffered`).
fn buffered_chunk() -> usize {
    static CHUNK: OnceLock<usize> = OnceLock::new();
    *CHUNK.get_or_init(|| {
        std::env::var("IRONLUN_COW_WRITE_CHUNK")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            // Whole 4 KiB pages, so no logical block is ever split.
            .map(|n| n / 4096 * 4096)
            .filter(|&n| n >= 4096)
            .unwrap_or(16 << 10)
    })
}

impl Backend for FileBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.mode == IoMode::Pread {
            return self.file.read_exact_at(buf, offset);
        }
        let len = buf.len();
        if let Some(fd) = self.direct_fd(len, offset) {
            if (buf.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) {
                return self.uring_all(fd, buf.as_mut_ptr(), len, offset, false);
            }
            let mut bounce = AlignedBuf::new(len)?;
            self.uring_all(fd, bounce.ptr, len, offset, false)?;
            buf.copy_from_slice(bounce.as_mut_slice(len));
            return Ok(());
        }
        self.uring_all(self.file.as_raw_fd(), buf.as_mut_ptr(), len, offset, false)
    }

    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> Option<()> {
        if self.direct.is_some() {
            // O_DIRECT reads always go to the disk.
            return None;
        }
        let offset = libc::off_t::try_from(offset).ok()?;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` describes `buf`, which is valid for writes of its
        // length for the duration of the call.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        // EAGAIN (not all cached), a short read or any error: not here.
        (usize::try_from(n).ok()? == buf.len()).then_some(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        if self.mode == IoMode::Pread {
            return self.file.write_all_at(data, offset);
        }
        let len = data.len();
        if let Some(fd) = self.direct_fd(len, offset) {
            if (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) {
                return self.uring_all(fd, data.as_ptr() as *mut u8, len, offset, true);
            }
            let mut bounce = AlignedBuf::new(len)?;
            bounce.as_mut_slice(len).copy_from_slice(data);
            return self.uring_all(fd, bounce.ptr, len, offset, true);
        }
        // Buffered: ext4 (this machine's file system, and most others)
        // cannot complete a buffered write without blocking, so io_uring
        // hands every one to a kernel worker thread (io-wq): one more
        // thread hop per write. A pwrite on this thread, which is already
        // one that may block, does the same copy without it (measured:
        // 4k random writes after a snapshot over iSCSI, 26.0k IOPS through
        // io_uring, 54.0k with pwrite; docs/BENCHMARKS.md).
        self.write_buffered(data, offset)
    }
    fn write_cached_here(&self, data: &[u8], offset: u64) -> Option<io::Result<()>> {
        if self.direct.is_some() {
            return None;
        }
        Some(self.write_buffered(data, offset))
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn preallocate(&self, offset: u64, len: u64) -> io::Result<bool> {
        if !self.file.metadata()?.is_file() {
            return Ok(false);
        }
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Ok(false);
        };
        // SAFETY: fallocate on a valid descriptor has no memory effects.
        // Mode 0 allocates only where no block is, and (the range lies
        // inside the file) never changes its size.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, len) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(false),
            _ => Err(e),
        }
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
