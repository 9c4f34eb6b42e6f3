//! Extent-granular copying between block devices: what the background jobs
//! (clone copy, resync, restore) are made of.

use ironlun_cow::{BlockDevice, BlockError, Provisioning};
use roaring::RoaringBitmap;

use crate::device::ReplicaDevice;

/// Extents of `dev` that hold data (mapped), as extent indexes.
pub fn mapped_extents(
    dev: &dyn BlockDevice,
    extent_blocks: u64,
) -> Result<RoaringBitmap, BlockError> {
    let g = dev.geometry();
    let mut out = RoaringBitmap::new();
    let mut lba = 0;
    while lba < g.blocks {
        let run = dev.provisioning(lba)?;
        if run.blocks == 0 {
            break;
        }
        if run.state == Provisioning::Mapped {
            let first = run.lba / extent_blocks;
            let last = (run.lba + run.blocks - 1) / extent_blocks;
            out.insert_range(first as u32..=last as u32);
        }
        lba = run.lba + run.blocks;
    }
    Ok(out)
}

/// Number of extents in a device of `blocks` blocks.
pub fn extent_count(blocks: u64, extent_blocks: u64) -> u64 {
    blocks.div_ceil(extent_blocks)
}

/// Copies extent `vext` from `src` onto `dst` (under `dst`'s extent lock):
/// data where `src` has data, an unmap where `src` reads as unallocated.
/// When `skip_written`, an extent the initiator wrote since the job began
/// is left alone. Returns the bytes moved (0 when skipped).
pub fn copy_extent(
    src: &dyn BlockDevice,
    dst: &ReplicaDevice,
    vext: u32,
    skip_written: bool,
    buf: &mut Vec<u8>,
) -> Result<u64, BlockError> {
    let _lock = dst.lock_extent(vext);
    if skip_written && dst.was_written(vext) {
        return Ok(0);
    }
    copy_range(src, dst.inner().as_ref(), vext, dst.extent_blocks(), buf)
}

/// Copies extent `vext` (of `extent_blocks` blocks) from `src` onto `dst`;
/// the caller holds whatever lock orders it against writes.
pub fn copy_range(
    src: &dyn BlockDevice,
    dst: &dyn BlockDevice,
    vext: u32,
    extent_blocks: u64,
    buf: &mut Vec<u8>,
) -> Result<u64, BlockError> {
    let g = dst.geometry();
    let lba = vext as u64 * extent_blocks;
    if lba >= g.blocks {
        return Ok(0);
    }
    let blocks = extent_blocks.min(g.blocks - lba);
    let len = (blocks * g.block_size as u64) as usize;
    let run = src.provisioning(lba)?;
    if run.state == Provisioning::Deallocated && run.blocks >= blocks {
        dst.unmap(lba, blocks)?;
        return Ok(len as u64);
    }
    buf.resize(len, 0);
    src.read(lba, &mut buf[..len])?;
    dst.write(lba, &buf[..len], ironlun_cow::Durability::Cached)?;
    Ok(len as u64)
}
