//! # ironlun-cow
//!
//! Owns the storage under every LUN: the [`BlockDevice`] interface the iSCSI
//! target serves LUNs from, and the implementations behind it: plain files
//! and the copy-on-write extent store.
//!
//! ## Layout
//! - [`block_device`]: the interface (read, write with FUA, flush, unmap,
//!   write-zeroes, provisioning status) and its error type.
//! - [`file_device`]: a LUN served from a plain (sparse) file or block device.
//! - [`pool`]: a pool of fixed-size extents in one file or device; volume,
//!   snapshot and clone management; the commit and checkpoint protocol.
//! - [`volume`]: [`Volume`] and [`Snapshot`] handles, the data path
//!   (in-place vs redirect-on-write) and their [`BlockDevice`] impls.
//! - [`meta`]: the metadata state, how each journal record changes it, the
//!   sharing rule (birth/death generations), and the invariant check.
//! - [`format`](mod@format): the on-disk encoding: superblock, journal records,
//!   checkpoint (documented byte by byte in `cow/FORMAT.md`).
//! - [`backend`]: the I/O trait under a pool and the real `pread`/`pwrite`
//!   file backend (with the pool lock).
//! - [`sim`]: a power-loss simulating backend for tests.
//! - [`error`]: the store's error type.
//!
//! ## What the server calls
//! ```no_run
//! use std::sync::Arc;
//! use ironlun_cow::{BlockDevice, Pool};
//! # fn main() -> Result<(), ironlun_cow::Error> {
//! // Opens ./ironlun-data/pool.img, or creates a sparse 16 GiB pool there
//! // (64 KiB extents, 512-byte blocks; parent directories are created).
//! let pool: Arc<Pool> = Pool::open_or_create("ironlun-data/pool.img", 16 << 30)?;
//! // A 1 GiB thin volume, created on first use.
//! let lun0: Arc<dyn BlockDevice> = pool.open_or_create_volume("lun0", 1 << 30)?;
//! // A snapshot (O(1), durable on return), then served read-only.
//! pool.create_snapshot("lun0", "lun0-before-upgrade")?;
//! let snap: Arc<dyn BlockDevice> = pool.snapshot_device("lun0-before-upgrade")?;
//! // Any volume or snapshot by name.
//! let any: Arc<dyn BlockDevice> = pool.device("lun0")?;
//! # let _ = (lun0, snap, any); Ok(()) }
//! ```
//! Exact signatures:
//! - `Pool::open_or_create(path: impl AsRef<Path>, size: u64) -> Result<Arc<Pool>, Error>`
//! - `Pool::open(path) -> Result<Arc<Pool>, Error>`,
//!   `Pool::create(path, size: u64, extent_size: u32) -> Result<Arc<Pool>, Error>`
//! - `Pool::open_or_create_volume(self: &Arc<Pool>, name: &str, size: u64) -> Result<Arc<dyn BlockDevice>, Error>`
//! - `Pool::snapshot_device(self: &Arc<Pool>, name: &str) -> Result<Arc<dyn BlockDevice>, Error>`
//! - `Pool::device(self: &Arc<Pool>, name: &str) -> Result<Arc<dyn BlockDevice>, Error>`
//! - `Pool::volume(self: &Arc<Pool>, name: &str) -> Result<Volume, Error>` (a
//!   [`Volume`] is a cheap `Clone` handle that implements [`BlockDevice`]
//!   and adds `snapshot(name)`, `snapshot_deferred(name)` and
//!   `changed_since(generation)`)
//! - `Pool::create_snapshot(self: &Arc<Pool>, volume: &str, name: &str) -> Result<Snapshot, Error>`,
//!   `Pool::create_clone(self: &Arc<Pool>, snapshot: &str, name: &str) -> Result<Volume, Error>`,
//!   `Pool::delete_volume(&self, name: &str)`, `Pool::delete_snapshot(&self, name: &str)`
//!
//! Names are one namespace per pool (volumes and snapshots together).
//!
//! ## Guarantees
//! - Handles are `Send + Sync`; reads and writes from many threads run
//!   concurrently (no lock is held across data I/O; two writes into one
//!   extent serialise on a per-extent stripe lock).
//! - A write is durable when a `ForceUnitAccess` write or a `flush` issued
//!   after it has returned (concurrent FUAs and flushes share one commit).
//!   Snapshot, clone and delete are durable on return; a deferred snapshot
//!   (`Volume::snapshot_deferred`, `Pool::create_snapshot_deferred`) costs
//!   no I/O and becomes durable with the next commit, like a cached write.
//! - The pool file is locked (`flock`) while a `Pool` is open: a second
//!   process gets [`Error::Locked`]. Dropping the last `Arc<Pool>` (and its
//!   handles) commits and writes a checkpoint.
//! - Data I/O: buffered io_uring, else `pread`/`pwrite`;
//!   `IRONLUN_COW_IO=pread|uring|direct` overrides (`direct`: `O_DIRECT`
//!   for aligned transfers; see [`backend`]). Buffered writes go out in
//!   `pwrite`s of at most 16 KiB (`IRONLUN_COW_WRITE_CHUNK`), which keeps
//!   page-cache folios small for later small writes.
//!
//! ## Known limits (next steps)
//! - Sub-extent redirect: the first small write into an extent shared with
//!   a snapshot (or a clone's origin) writes only the granules it touches
//!   (granule = max(block size, extent size / 128): 512 bytes for 64 KiB
//!   extents); the rest keeps reading from the old extent until filled.
//!   Later writes into granules it lacks go in place, their `Fill` records
//!   merged per entry until the next commit (one record, not one a write).
//!   The filler ([`Pool::start_background_fill`], which `ironlun serve`
//!   starts) fills while no write has come for 100 ms; a snapshot delete
//!   fills what reads from it first. Past 65,536 partial entries, or where
//!   the old content is itself partial or borrowed, a redirect copies the
//!   untouched blocks instead.
//! - A checkpoint writes the whole metadata state (about 24 bytes per mapped
//!   extent); it runs when the journal region fills, at open and at close,
//!   under an upgradable read lock (reads and in-place writes continue,
//!   redirects and management operations wait).
//! - A volume delete returns in O(1) (plus its commit); its extents go
//!   back to the free space in batches of 8192 entries, one batch per
//!   later write or commit (all at once when an allocation finds no free
//!   extent), so reads and writes wait at most about a millisecond behind
//!   it. While a copy-offload borrow exists in the pool, a volume delete
//!   frees synchronously. A snapshot delete works the same way: O(1) plus
//!   one batch (and the fill of partial entries reading from it), then a
//!   batch per later write or commit (all at once while borrows exist).
//! - The checkpoint areas hold 96 bytes per extent; many clones that unmap
//!   most of their origin (tombstones) could exhaust them
//!   ([`Error::MetadataFull`]).
//! - A snapshot with clones cannot be deleted, nor its volume; volumes
//!   cannot be resized; a write running while a snapshot is taken may or
//!   may not be in it (quiesce I/O for a consistent group).
//! - io_uring is used synchronously (one operation in flight per thread);
//!   the interface is blocking.
//! - A pool's size includes its metadata; make it larger than the data the
//!   volumes will hold. `open_or_create` ignores `size` for an existing pool.
//!
//! This crate knows nothing of iSCSI or CIM.

pub mod backend;
pub mod block_device;
pub mod error;
pub mod file_device;
pub mod format;
pub mod meta;
pub mod pool;
pub mod range_share;
pub mod sim;
pub mod volume;

pub use block_device::{
    BlockDevice, BlockError, Durability, ExtentSource, Geometry, Provisioning, ProvisioningRun,
};
pub use error::Error;
pub use file_device::{FileDevice, FileDeviceOptions, OpenError};
pub use meta::CheckReport;
pub use pool::{Pool, PoolInfo, PoolOptions, SnapshotInfo, VolumeInfo, DEFAULT_EXTENT_SIZE};
pub use volume::{Snapshot, Volume};
