//! [`ReplicaDevice`]: the block device a replicated volume is served through.
//!
//! It wraps a cow volume and adds what replication needs on the data path,
//! without changing the [`BlockDevice`] the iSCSI target sees:
//! - per-extent stripe locks shared with the background copier, so a copy
//!   of an extent and an initiator write into it never interleave;
//! - a record of the extents written since a copy job started (the copier
//!   leaves those alone: the initiator's data is newer);
//! - a gate that a consistent group point in time closes for an instant
//!   (writes to every member wait; the snapshots are taken; it opens);
//! - an optional [`WriteObserver`] (a mirror) told of every write.
//!
//! Serve replicated volumes through [`crate::ReplicationService::device`]:
//! a write that bypasses this wrapper can race the copier.

use std::sync::Arc;

use ironlun_cow::{BlockDevice, BlockError, Durability, ExtentSource, Geometry, ProvisioningRun};
use parking_lot::{Mutex, MutexGuard, RwLock};
use roaring::RoaringBitmap;

const STRIPES: usize = 64;

/// Writes to a [`ReplicaDevice`] wait while this is held.
pub type WriteHoldGuard = parking_lot::ArcRwLockWriteGuard<parking_lot::RawRwLock, ()>;

/// Told of every write to a replicated volume (a mirror's write hook).
pub trait WriteObserver: Send + Sync {
    /// `data` was written at `lba` on the source; the caller still holds the
    /// extent locks, so the observer sees writes to one extent in order.
    fn wrote(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError>;
    /// `[lba, lba + blocks)` was unmapped (or zeroed) on the source.
    fn unmapped(&self, lba: u64, blocks: u64) -> Result<(), BlockError>;
    /// The source was flushed.
    fn flushed(&self) -> Result<(), BlockError>;
}

/// A cow volume with replication's data-path hooks.
pub struct ReplicaDevice {
    inner: Arc<dyn BlockDevice>,
    extent_blocks: u64,
    stripes: Vec<Mutex<()>>,
    written: Mutex<RoaringBitmap>,
    gate: Arc<RwLock<()>>,
    /// Refuse initiator writes (a mirror target while the mirror flows).
    fenced: std::sync::atomic::AtomicBool,
    observer: RwLock<Option<Arc<dyn WriteObserver>>>,
}

impl ReplicaDevice {
    /// Wraps `inner`, whose pool uses `extent_size`-byte extents.
    pub fn new(inner: Arc<dyn BlockDevice>, extent_size: u32) -> ReplicaDevice {
        let bs = inner.geometry().block_size.max(1);
        ReplicaDevice {
            inner,
            extent_blocks: (extent_size / bs).max(1) as u64,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            written: Mutex::new(RoaringBitmap::new()),
            gate: Arc::new(RwLock::new(())),
            fenced: std::sync::atomic::AtomicBool::new(false),
            observer: RwLock::new(None),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Blocks per extent.
    pub fn extent_blocks(&self) -> u64 {
        self.extent_blocks
    }

    /// Locks extent `vext` against writes (the copier's side).
    pub fn lock_extent(&self, vext: u32) -> MutexGuard<'_, ()> {
        self.stripes[vext as usize % STRIPES].lock()
    }

    /// Whether `vext` was written since [`ReplicaDevice::clear_written`].
    pub fn was_written(&self, vext: u32) -> bool {
        self.written.lock().contains(vext)
    }

    /// Forgets which extents were written (a copy job starts).
    pub fn clear_written(&self) {
        self.written.lock().clear();
    }

    /// Holds every write until the guard drops (consistent point in time).
    pub fn hold_writes(&self) -> WriteHoldGuard {
        self.gate.write_arc()
    }

    /// Refuses (or again accepts) initiator writes; the engine writes
    /// through [`ReplicaDevice::inner`] either way.
    pub fn set_fenced(&self, fenced: bool) {
        self.fenced
            .store(fenced, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_fence(&self) -> Result<(), BlockError> {
        if self.fenced.load(std::sync::atomic::Ordering::SeqCst) {
            Err(BlockError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Whether a write observer is installed.
    pub fn has_observer(&self) -> bool {
        self.observer.read().is_some()
    }

    /// Installs or removes the write observer.
    pub fn set_observer(&self, observer: Option<Arc<dyn WriteObserver>>) {
        *self.observer.write() = observer;
    }

    fn extents(&self, lba: u64, blocks: u64) -> std::ops::RangeInclusive<u64> {
        let first = lba / self.extent_blocks;
        let last = (lba + blocks.max(1) - 1) / self.extent_blocks;
        first..=last
    }

    /// The stripes covering `[lba, lba + blocks)`, ascending (the order
    /// every locker takes them in), each once.
    fn stripe_indices(&self, lba: u64, blocks: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = self
            .extents(lba, blocks)
            .map(|v| v as usize % STRIPES)
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx
    }

    fn lock_range(&self, lba: u64, blocks: u64) -> Vec<MutexGuard<'_, ()>> {
        let idx = self.stripe_indices(lba, blocks);
        let locks = idx.into_iter().map(|i| self.stripes[i].lock()).collect();
        // Marked under the locks: a copier holding an extent's lock sees
        // either the write done or not begun.
        let mut written = self.written.lock();
        for v in self.extents(lba, blocks) {
            written.insert(v as u32);
        }
        locks
    }
}

impl BlockDevice for ReplicaDevice {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only() || self.fenced.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read(lba, buf)
    }

    fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
        self.inner.read_if_cached(lba, buf)
    }

    fn write_if_cheap(&self, lba: u64, data: &[u8]) -> bool {
        let g = self.geometry();
        let Ok(blocks) = g.blocks_in(data.len()) else {
            return false;
        };
        if g.check_range(lba, blocks).is_err() || self.check_fence().is_err() {
            return false;
        }
        let Some(_gate) = self.gate.try_read() else {
            return false;
        };
        // A mirror is told of every write, which may wait: not here. The
        // guard is held to the end, so an observer installed meanwhile waits
        // for this write (as `write` holds the stripes until it has told
        // the observer).
        let Some(observer) = self.observer.try_read() else {
            return false;
        };
        if observer.is_some() {
            return false;
        }
        let idx = self.stripe_indices(lba, blocks);
        let mut locks = Vec::with_capacity(idx.len());
        for i in idx {
            match self.stripes[i].try_lock() {
                Some(l) => locks.push(l),
                None => return false,
            }
        }
        if !self.inner.write_if_cheap(lba, data) {
            return false;
        }
        // Marked under the locks, as `lock_range` does.
        let mut written = self.written.lock();
        for v in self.extents(lba, blocks) {
            written.insert(v as u32);
        }
        true
    }

    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        let g = self.geometry();
        let blocks = g.blocks_in(data.len())?;
        g.check_range(lba, blocks)?;
        self.check_fence()?;
        let _gate = self.gate.read();
        let _locks = self.lock_range(lba, blocks);
        self.inner.write(lba, data, durability)?;
        if let Some(o) = self.observer.read().as_ref() {
            o.wrote(lba, data, durability)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.inner.flush()?;
        if let Some(o) = self.observer.read().as_ref() {
            o.flushed()?;
        }
        Ok(())
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.geometry().check_range(lba, blocks)?;
        self.check_fence()?;
        let _gate = self.gate.read();
        let _locks = self.lock_range(lba, blocks);
        self.inner.unmap(lba, blocks)?;
        if let Some(o) = self.observer.read().as_ref() {
            o.unmapped(lba, blocks)?;
        }
        Ok(())
    }

    fn write_zeroes(&self, lba: u64, blocks: u64, may_unmap: bool) -> Result<(), BlockError> {
        self.geometry().check_range(lba, blocks)?;
        self.check_fence()?;
        let _gate = self.gate.read();
        let _locks = self.lock_range(lba, blocks);
        self.inner.write_zeroes(lba, blocks, may_unmap)?;
        if let Some(o) = self.observer.read().as_ref() {
            o.unmapped(lba, blocks)?;
        }
        Ok(())
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.inner.provisioning(lba)
    }

    fn extent_source(&self) -> Option<ExtentSource> {
        self.inner.extent_source()
    }

    /// Copy offload into a replicated volume: shared like any write (under
    /// the gate and the extent locks, and marked written so a running copy
    /// leaves it alone), except that a mirror source refuses, so the caller
    /// copies data through [`BlockDevice::write`] and the mirror sees it.
    fn share_range(
        &self,
        source: &ExtentSource,
        src_lba: u64,
        dst_lba: u64,
        blocks: u64,
    ) -> Result<bool, BlockError> {
        self.geometry().check_range(dst_lba, blocks)?;
        self.check_fence()?;
        let _gate = self.gate.read();
        // Held across the share: an observer installed meanwhile waits.
        let observer = self.observer.read();
        if observer.is_some() {
            return Ok(false);
        }
        let _locks = self.lock_range(dst_lba, blocks);
        self.inner.share_range(source, src_lba, dst_lba, blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(Mutex<u64>);
    impl WriteObserver for Counting {
        fn wrote(&self, _: u64, data: &[u8], _: Durability) -> Result<(), BlockError> {
            *self.0.lock() += data.len() as u64;
            Ok(())
        }
        fn unmapped(&self, _: u64, _: u64) -> Result<(), BlockError> {
            Ok(())
        }
        fn flushed(&self) -> Result<(), BlockError> {
            Ok(())
        }
    }

    #[test]
    fn shares_unless_a_mirror_must_see_the_data() {
        let dir = std::env::temp_dir().join(format!("ironlun-repdev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("share.pool");
        let _ = std::fs::remove_file(&path);
        let pool = ironlun_cow::Pool::create(&path, 32 << 20, 64 << 10).unwrap();
        let a = pool.create_volume("a", 4 << 20).unwrap();
        let b = pool.create_volume("b", 4 << 20).unwrap();
        a.write(0, &vec![7u8; 64 << 10], Durability::Cached)
            .unwrap();
        let dev = ReplicaDevice::new(Arc::new(b), 64 << 10);
        let src = a.extent_source().unwrap();
        let free = pool.info().free_extents;
        assert!(dev.share_range(&src, 0, 128, 128).unwrap());
        assert_eq!(pool.info().free_extents, free);
        assert!(dev.was_written(1));
        let mut buf = vec![0u8; 512];
        dev.read(128, &mut buf).unwrap();
        assert_eq!(buf, vec![7u8; 512]);
        dev.set_observer(Some(Arc::new(Counting(Mutex::new(0)))));
        assert!(!dev.share_range(&src, 0, 256, 128).unwrap());
        dev.set_observer(None);
        dev.set_fenced(true);
        assert!(matches!(
            dev.share_range(&src, 0, 256, 128),
            Err(BlockError::ReadOnly)
        ));
        let _ = std::fs::remove_file(&path);
    }
}
