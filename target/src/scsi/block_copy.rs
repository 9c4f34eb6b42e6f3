//! Moving blocks from one logical unit to another for the copy manager
//! (EXTENDED COPY, WRITE USING TOKEN).
//!
//! When both devices are views of one extent store and source and
//! destination start at the same offset within an extent, the whole
//! extents of the range are shared ([`BlockDevice::share_range`]): no data
//! moves. The unaligned head and tail, and everything when sharing is not
//! possible (different pools, plain files, a mirrored destination), are
//! copied as data in bounded chunks.

use ironlun_cow::{BlockDevice, Durability};

use super::sense::Sense;
use super::{LogicalUnit, Nexus};

/// Largest data copy done with one read and one write.
pub const COPY_CHUNK_BYTES: u64 = 1 << 20;

/// How a range was moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Blocks made to share the source's extents (no data moved).
    pub shared: u64,
    /// Blocks copied as data.
    pub copied: u64,
    /// The (common) block size.
    pub block_size: u32,
}

impl Moved {
    pub fn blocks(&self) -> u64 {
        self.shared + self.copied
    }
}

/// Whether `nexus` may have the copy manager read (`write` false) or write
/// `lu`: the unit must not be sanitizing, its medium must be in, and the
/// access must not conflict with a reservation, exactly as a READ or WRITE
/// the initiator sent to it would be checked. A unit other than the one the
/// command was addressed to is answered COPY ABORTED / COPY TARGET DEVICE
/// NOT REACHABLE (SPC-4 6.4.3: the copy target refused the access).
pub fn admit_copy(lu: &LogicalUnit, nexus: &Nexus, write: bool) -> Result<(), Sense> {
    lu.check_loaded()
        .map_err(|_| super::xcopy::target_not_reachable())?;
    if lu.reservations.copy_conflicts(nexus, write) {
        return Err(super::xcopy::target_not_reachable());
    }
    Ok(())
}

/// Copies `blocks` blocks at `src_lba` of `src` to `dst_lba` of `dst`. The
/// caller has checked both ranges against the capacities, the block sizes
/// are equal, the destination is writable, and both units admit the copy
/// ([`admit_copy`]). The destination range is held against other writes
/// (and COMPARE AND WRITE) while it changes.
pub fn copy_blocks(
    src: &LogicalUnit,
    src_lba: u64,
    dst: &LogicalUnit,
    dst_lba: u64,
    blocks: u64,
) -> Result<Moved, Sense> {
    let mut moved = Moved {
        block_size: src.device.geometry().block_size,
        ..Moved::default()
    };
    if blocks == 0 {
        return Ok(moved);
    }
    let _range = dst.ranges.lock(dst_lba, blocks);
    let same_unit = std::ptr::eq(src, dst);
    let overlapping = same_unit && src_lba < dst_lba + blocks && dst_lba < src_lba + blocks;
    if !overlapping {
        if let Some(source) = src.device.extent_source() {
            let eb = source.extent_blocks.max(1);
            if src_lba % eb == dst_lba % eb {
                let head = ((eb - src_lba % eb) % eb).min(blocks);
                let middle = (blocks - head) / eb * eb;
                if middle > 0
                    && dst
                        .device
                        .share_range(&source, src_lba + head, dst_lba + head, middle)
                        .map_err(|e| Sense::from_block_error(&e, true))?
                {
                    copy_data(&*src.device, src_lba, &*dst.device, dst_lba, head)?;
                    let tail = blocks - head - middle;
                    copy_data(
                        &*src.device,
                        src_lba + head + middle,
                        &*dst.device,
                        dst_lba + head + middle,
                        tail,
                    )?;
                    moved.shared = middle;
                    moved.copied = head + tail;
                    return Ok(moved);
                }
            }
        }
    }
    copy_data(&*src.device, src_lba, &*dst.device, dst_lba, blocks)?;
    moved.copied = blocks;
    Ok(moved)
}

/// Data copy in chunks of at most [`COPY_CHUNK_BYTES`]; backwards when the
/// destination overlaps the source from above, so every block is read
/// before it is overwritten.
fn copy_data(
    src: &dyn BlockDevice,
    src_lba: u64,
    dst: &dyn BlockDevice,
    dst_lba: u64,
    blocks: u64,
) -> Result<(), Sense> {
    if blocks == 0 {
        return Ok(());
    }
    let bs = src.geometry().block_size.max(1) as u64;
    let chunk = (COPY_CHUNK_BYTES / bs).max(1);
    let mut buf = vec![0u8; (chunk.min(blocks) * bs) as usize];
    let backwards = dst_lba > src_lba;
    let mut done = 0u64;
    while done < blocks {
        let n = chunk.min(blocks - done);
        let off = if backwards { blocks - done - n } else { done };
        let b = &mut buf[..(n * bs) as usize];
        src.read(src_lba + off, b)
            .map_err(|e| Sense::from_block_error(&e, false))?;
        dst.write(dst_lba + off, b, Durability::Cached)
            .map_err(|e| Sense::from_block_error(&e, true))?;
        done += n;
    }
    Ok(())
}
