//! An in-memory, thin [`BlockDevice`] with 512-byte blocks: the test double
//! for unit tests, fuzzing and transport tests (no file system needed).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use ironlun_cow::{BlockDevice, BlockError, Durability, Geometry, Provisioning, ProvisioningRun};
use parking_lot::Mutex;

/// 512-byte blocks in memory; tracks which blocks are mapped, counts flushes.
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
    mapped: Mutex<BTreeSet<u64>>,
    blocks: u64,
    thin: bool,
    flushes: AtomicUsize,
    fua_writes: AtomicUsize,
}

impl MemDevice {
    /// A zeroed device of `blocks` blocks (thin: unmap deallocates).
    pub fn new(blocks: u64, thin: bool) -> MemDevice {
        MemDevice {
            data: Mutex::new(vec![0; (blocks * 512) as usize]),
            mapped: Mutex::new(BTreeSet::new()),
            blocks,
            thin,
            flushes: AtomicUsize::new(0),
            fua_writes: AtomicUsize::new(0),
        }
    }
    /// How many writes asked for [`Durability::ForceUnitAccess`].
    pub fn fua_writes(&self) -> usize {
        self.fua_writes.load(Ordering::SeqCst)
    }
    /// How many times `flush` was called.
    pub fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl BlockDevice for MemDevice {
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: 512,
            blocks: self.blocks,
            thin: self.thin,
            unmap_granularity_blocks: 1,
        }
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let g = self.geometry();
        let n = g.blocks_in(buf.len())?;
        g.check_range(lba, n)?;
        let at = (lba * 512) as usize;
        buf.copy_from_slice(&self.data.lock()[at..at + buf.len()]);
        Ok(())
    }
    fn write(&self, lba: u64, data: &[u8], d: Durability) -> Result<(), BlockError> {
        if d == Durability::ForceUnitAccess {
            self.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        let g = self.geometry();
        let n = g.blocks_in(data.len())?;
        g.check_range(lba, n)?;
        let at = (lba * 512) as usize;
        self.data.lock()[at..at + data.len()].copy_from_slice(data);
        self.mapped.lock().extend(lba..lba + n);
        Ok(())
    }
    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.geometry().check_range(lba, blocks)?;
        let at = (lba * 512) as usize;
        self.data.lock()[at..at + (blocks * 512) as usize].fill(0);
        let mut m = self.mapped.lock();
        for b in lba..lba + blocks {
            m.remove(&b);
        }
        Ok(())
    }
    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.geometry().check_range(lba, 1)?;
        let m = self.mapped.lock();
        let state = m.contains(&lba);
        let mut end = lba + 1;
        while end < self.blocks && m.contains(&end) == state {
            end += 1;
        }
        Ok(ProvisioningRun {
            lba,
            blocks: end - lba,
            state: if state {
                Provisioning::Mapped
            } else {
                Provisioning::Deallocated
            },
        })
    }
}
