//! The block-device interface that LUNs are served from.
//!
//! Everything the iSCSI target does to a LUN's data goes through
//! [`BlockDevice`]: a plain file ([`crate::FileDevice`]) implements it today,
//! and the copy-on-write extent store's volumes and snapshots implement it
//! as well, so the target never changes when the backing changes.
//!
//! The interface is synchronous: the target calls it from blocking worker
//! threads. Implementations must be safe to call from many threads at once;
//! writes to overlapping ranges from different threads may land in either
//! order (the SCSI layer serialises what must be atomic, e.g. COMPARE AND
//! WRITE).

use std::io;
use std::sync::Arc;

/// Errors a block device reports. The SCSI layer maps each one to exact
/// sense data, so keep them distinct.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The range `[lba, lba + blocks)` is outside the device.
    #[error("range lba {lba} + {blocks} blocks is beyond the device's {capacity} blocks")]
    OutOfRange {
        lba: u64,
        blocks: u64,
        capacity: u64,
    },
    /// The buffer length is not a whole number of blocks.
    #[error("buffer of {len} bytes is not a multiple of the {block_size}-byte block")]
    Misaligned { len: usize, block_size: u32 },
    /// The device (or this view of it, e.g. a snapshot) is read-only.
    #[error("device is read-only")]
    ReadOnly,
    /// The pool has no free space for a write that needs a new extent.
    #[error("no space left in the pool")]
    NoSpace,
    /// The operation is not supported by this device.
    #[error("operation not supported: {0}")]
    Unsupported(&'static str),
    /// Reading the backing store failed (medium error on read).
    #[error("read error: {0}")]
    Read(#[source] io::Error),
    /// Writing the backing store failed.
    #[error("write error: {0}")]
    Write(#[source] io::Error),
    /// Metadata is damaged; the device refuses to guess.
    #[error("metadata corrupt: {0}")]
    Corrupt(String),
}

/// Whether a write must be durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// May sit in a volatile cache until the next [`BlockDevice::flush`].
    Cached,
    /// Must be on stable storage when `write` returns (SCSI FUA).
    ForceUnitAccess,
}

/// The provisioning state of a run of blocks (GET LBA STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// Blocks have storage behind them.
    Mapped,
    /// Blocks have no storage: they read as zeros.
    Deallocated,
}

/// A run of blocks that share one provisioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningRun {
    pub lba: u64,
    pub blocks: u64,
    pub state: Provisioning,
}

/// Fixed facts about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
    /// Thin provisioned: unmapped blocks read as zeros and `unmap` frees space.
    pub thin: bool,
    /// Unmap works in units of this many blocks (an extent); 1 when any block
    /// can be released.
    pub unmap_granularity_blocks: u32,
}

impl Geometry {
    /// Checks that `[lba, lba + blocks)` lies inside the device.
    pub fn check_range(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(BlockError::OutOfRange {
                lba,
                blocks,
                capacity: self.blocks,
            }),
        }
    }

    /// Number of blocks in a buffer of `len` bytes, or `Misaligned`.
    pub fn blocks_in(&self, len: usize) -> Result<u64, BlockError> {
        if !len.is_multiple_of(self.block_size as usize) {
            return Err(BlockError::Misaligned {
                len,
                block_size: self.block_size,
            });
        }
        Ok((len / self.block_size as usize) as u64)
    }
}

/// Where a device's data lives inside an extent store, so that another
/// device of the same store can share that data instead of copying it
/// (copy offload: EXTENDED COPY, WRITE USING TOKEN).
#[derive(Clone)]
pub struct ExtentSource {
    /// The pool holding the extents.
    pub pool: Arc<crate::Pool>,
    /// The volume whose view is shared.
    pub volume: u64,
    /// The generation of the view: [`crate::meta::LIVE`] for a volume's
    /// head, a snapshot's generation for a snapshot.
    pub at: u64,
    /// Blocks per extent: only whole extents can be shared.
    pub extent_blocks: u64,
}

impl std::fmt::Debug for ExtentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentSource")
            .field("volume", &self.volume)
            .field("at", &self.at)
            .field("extent_blocks", &self.extent_blocks)
            .finish()
    }
}

/// A logical unit's storage: a file today, a cow volume or snapshot later.
pub trait BlockDevice: Send + Sync + 'static {
    /// Block size, capacity and provisioning facts.
    fn geometry(&self) -> Geometry;

    /// Whether writes are refused (a snapshot view, a read-only LUN).
    fn read_only(&self) -> bool {
        false
    }

    /// Reads `buf.len() / block_size` blocks starting at `lba` into `buf`.
    /// Unmapped blocks read as zeros.
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// [`BlockDevice::read`] only if it needs no wait for the disk (every
    /// block is cached or unmapped), so a caller that must not block (a
    /// connection's own task) can answer at once. `false`: it would wait,
    /// the device cannot tell, or the read failed; call `read`, which
    /// reports any error. Nothing is promised about `buf` after `false`.
    fn read_if_cached(&self, _lba: u64, _buf: &mut [u8]) -> bool {
        false
    }

    /// Writes `data` (whole blocks) at `lba`.
    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError>;

    /// Writes `data` at `lba` as a cached write ([`Durability::Cached`])
    /// only if that needs no wait: no lock anyone holds, no read from the
    /// disk, no sync; a copy into the page cache on the calling thread and
    /// at most in-memory metadata changes. `true`: written (exactly as
    /// `write` would have). `false`: call `write`; nothing was written,
    /// except after an I/O error or a lost race with a snapshot delete,
    /// when some pieces may have been (which `write` then writes again).
    /// Lets the transport answer such a write on the connection's own task.
    fn write_if_cheap(&self, _lba: u64, _data: &[u8]) -> bool {
        false
    }

    /// Makes every completed write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> Result<(), BlockError>;

    /// Releases `[lba, lba + blocks)`: afterwards those blocks read as zeros.
    /// A thin device frees whatever whole allocation units the range covers
    /// and zeroes the rest; a thick device writes zeros.
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError>;

    /// Makes `[lba, lba + blocks)` read as zeros, releasing the space if
    /// `may_unmap` and the device is thin (WRITE SAME with UNMAP).
    fn write_zeroes(&self, lba: u64, blocks: u64, may_unmap: bool) -> Result<(), BlockError> {
        if may_unmap && self.geometry().thin {
            return self.unmap(lba, blocks);
        }
        let g = self.geometry();
        g.check_range(lba, blocks)?;
        let chunk_blocks = (1 << 20) / g.block_size as u64;
        let zeros = vec![0u8; (chunk_blocks * g.block_size as u64) as usize];
        let mut at = lba;
        let end = lba + blocks;
        while at < end {
            let n = chunk_blocks.min(end - at);
            self.write(
                at,
                &zeros[..(n * g.block_size as u64) as usize],
                Durability::Cached,
            )?;
            at += n;
        }
        Ok(())
    }

    /// The provisioning state of the run of blocks that starts at `lba`
    /// (GET LBA STATUS). The run ends where the state changes or at the end
    /// of the device. A thick device reports one mapped run.
    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        let g = self.geometry();
        g.check_range(lba, 1)?;
        Ok(ProvisioningRun {
            lba,
            blocks: g.blocks - lba,
            state: Provisioning::Mapped,
        })
    }

    /// The extent store view behind this device, if any (`None`: plain
    /// file, or a wrapper that must see every change as data).
    fn extent_source(&self) -> Option<ExtentSource> {
        None
    }

    /// Makes `[dst_lba, dst_lba + blocks)` of this device read what
    /// `[src_lba, src_lba + blocks)` of `source` reads now, by sharing its
    /// extents instead of copying data. `Ok(false)`: this device cannot
    /// (different store, unaligned range, a mirror that must see data);
    /// nothing was changed and the caller copies the data itself.
    fn share_range(
        &self,
        source: &ExtentSource,
        src_lba: u64,
        dst_lba: u64,
        blocks: u64,
    ) -> Result<bool, BlockError> {
        let _ = (source, src_lba, dst_lba, blocks);
        Ok(false)
    }
}
