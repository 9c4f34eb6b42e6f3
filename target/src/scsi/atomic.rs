//! The read-modify-write and atomic write commands (SBC-4): COMPARE AND
//! WRITE (VMware ATS), ORWRITE (16) and WRITE ATOMIC (16).
//!
//! Each holds the logical unit's range lock over its LBA range from the
//! first read to the last write, so it is atomic against every other write
//! path (they all take the same lock, see [`super::range_lock`]). Unwritten
//! (deallocated) blocks read as zeros and compare as zeros.
//!
//! COMPARE AND WRITE moves 2 × NUMBER OF LOGICAL BLOCKS blocks of Data-Out:
//! the verify data, then the write data. An Expected Data Transfer Length
//! other than that is refused with INVALID FIELD IN CDB before anything is
//! read (as LIO does), so a mangled CDB never writes.

use ironlun_cow::Geometry;

use super::rw::{check_range, read_err, writable, write_err};
use super::sense::Sense;
use super::{Ctx, Reply, ScsiResult, MAX_TRANSFER_BYTES};

/// Largest NUMBER OF LOGICAL BLOCKS of one COMPARE AND WRITE (VPD B0h
/// MAXIMUM COMPARE AND WRITE LENGTH) for a block size: 255, or fewer when
/// the compare and write halves together would exceed the maximum transfer.
pub fn max_compare_and_write_blocks(block_size: u32) -> u8 {
    let by_transfer = MAX_TRANSFER_BYTES / 2 / block_size.max(1) as u64;
    by_transfer.clamp(1, 255) as u8
}

/// Largest WRITE ATOMIC (16) transfer in blocks (VPD B0h MAXIMUM ATOMIC
/// TRANSFER LENGTH): the maximum transfer, within the 16-bit CDB field.
pub fn max_atomic_blocks(block_size: u32) -> u32 {
    (MAX_TRANSFER_BYTES / block_size.max(1) as u64).clamp(1, 0xFFFF) as u32
}

pub fn compare_and_write(ctx: &Ctx<'_>, lba: u64, blocks: u8, fua: bool) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    if blocks > max_compare_and_write_blocks(g.block_size) {
        return Err(Sense::invalid_cdb_field(13, None));
    }
    check_range(&g, lba, blocks as u64)?;
    let half = blocks as usize * g.block_size as usize;
    if ctx.req.edtl as u64 != 2 * half as u64 || ctx.req.data_out.len() < 2 * half {
        // Includes NUMBER OF LOGICAL BLOCKS 0 with Data-Out offered (a
        // 256-block request truncated to the 8-bit field).
        return Err(Sense::invalid_cdb_field(13, None));
    }
    if blocks == 0 {
        // No compare, no write, not an error (SBC-4 5.3).
        return Ok(Reply::none());
    }
    let durability = writable(ctx, fua)?;
    let (verify, data) = ctx.req.data_out[..2 * half].split_at(half);
    let dev = &ctx.lu.device;
    let _range = ctx.lu.ranges.lock(lba, blocks as u64);
    let mut current = vec![0u8; half];
    dev.read(lba, &mut current).map_err(read_err)?;
    if let Some(off) = current.iter().zip(verify).position(|(a, b)| a != b) {
        return Err(Sense::miscompare(off as u64));
    }
    dev.write(lba, data, durability).map_err(write_err)?;
    Ok(Reply::data_out(2 * half as u32))
}

/// Whole blocks of Data-Out that arrived for a `bytes`-long transfer.
fn arrived(ctx: &Ctx<'_>, g: &Geometry, bytes: u64) -> usize {
    let bs = g.block_size as usize;
    ctx.req.data_out.len().min(bytes as usize) / bs * bs
}

pub fn orwrite(ctx: &Ctx<'_>, lba: u64, blocks: u32, fua: bool) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    check_range(&g, lba, blocks as u64)?;
    let bytes = blocks as u64 * g.block_size as u64;
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Sense::invalid_cdb_field(10, Some(7)));
    }
    if blocks == 0 {
        return Ok(Reply::none());
    }
    let durability = writable(ctx, fua)?;
    let n = arrived(ctx, &g, bytes);
    if n > 0 {
        let dev = &ctx.lu.device;
        let _range = ctx.lu.ranges.lock(lba, (n / g.block_size as usize) as u64);
        let mut buf = vec![0u8; n];
        dev.read(lba, &mut buf).map_err(read_err)?;
        for (b, d) in buf.iter_mut().zip(&ctx.req.data_out[..n]) {
            *b |= d;
        }
        dev.write(lba, &buf, durability).map_err(write_err)?;
    }
    Ok(Reply::data_out(bytes as u32))
}

pub fn write_atomic(ctx: &Ctx<'_>, lba: u64, boundary: u16, blocks: u16, fua: bool) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    // MAXIMUM ATOMIC BOUNDARY SIZE is 0: no boundaries may be asked for.
    if boundary != 0 {
        return Err(Sense::invalid_cdb_field(10, Some(7)));
    }
    if blocks as u32 > max_atomic_blocks(g.block_size) {
        return Err(Sense::invalid_cdb_field(12, Some(7)));
    }
    check_range(&g, lba, blocks as u64)?;
    if blocks == 0 {
        return Ok(Reply::none());
    }
    let durability = writable(ctx, fua)?;
    let bytes = blocks as u64 * g.block_size as u64;
    let n = arrived(ctx, &g, bytes);
    if n > 0 {
        let _range = ctx.lu.ranges.lock(lba, blocks as u64);
        ctx.lu
            .device
            .write(lba, &ctx.req.data_out[..n], durability)
            .map_err(write_err)?;
    }
    Ok(Reply::data_out(bytes as u32))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::{CommandRequest, LunMap};

    fn caw(lba: u64, nlb: u8, flags: u8) -> Vec<u8> {
        let mut c = vec![0x89, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, nlb, 0, 0];
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c
    }

    fn w16(op: u8, lba: u64, blocks: u32, flags: u8) -> Vec<u8> {
        let mut c = vec![op, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    fn atomic(lba: u64, blocks: u16) -> Vec<u8> {
        let mut c = vec![0x9C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[12..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    fn read(t: &Harness, lba: u64, blocks: u32) -> Vec<u8> {
        let o = t.run_edtl(&w16(0x88, lba, blocks, 0), blocks * 512);
        assert_eq!(o.status, 0);
        o.data_in.to_vec()
    }

    #[test]
    fn compare_and_write_matches_and_miscompares() {
        let t = Harness::new(64, true);
        // Unwritten blocks compare as zeros.
        let mut buf = vec![0u8; 1024];
        buf[512..].fill(b'B');
        let o = t.run_out(&caw(3, 1, 0), &buf, 1024);
        assert_eq!((o.status, o.transfer_len), (0, 1024));
        assert!(read(&t, 3, 1).iter().all(|&b| b == b'B'));
        // Miscompare: INFORMATION is the offset of the first difference,
        // nothing is written.
        let mut buf = vec![b'B'; 2048];
        buf[700] = b'C';
        buf[1024..].fill(b'D');
        t.run_out(&w16(0x8A, 2, 2, 0), &[b'B'; 1024], 1024);
        let o = t.run_out(&caw(2, 2, 0), &buf, 2048);
        assert_sense(&o, 0x0E, 0x1D, 0);
        let s = o.sense.unwrap();
        assert_eq!(s[0], 0xF0, "VALID");
        assert_eq!(&s[3..7], &700u32.to_be_bytes());
        assert!(read(&t, 2, 2).iter().all(|&b| b == b'B'));
        // Unwritten block against non-zero verify data.
        let mut buf = vec![b'%'; 1024];
        buf[512..].fill(b'B');
        let o = t.run_out(&caw(40, 1, 0), &buf, 1024);
        assert_sense(&o, 0x0E, 0x1D, 0);
        assert_eq!(&o.sense.unwrap()[3..7], &0u32.to_be_bytes());
    }

    #[test]
    fn compare_and_write_checks() {
        let t = Harness::new(64, true);
        // Data-Out size must be exactly twice NUMBER OF LOGICAL BLOCKS.
        assert_sense(&t.run_out(&caw(0, 1, 0), &[0; 2048], 2048), 5, 0x24, 0);
        assert_sense(&t.run_out(&caw(0, 3, 0), &[0; 2048], 2048), 5, 0x24, 0);
        // Zero blocks: nothing happens, GOOD; with Data-Out offered (256
        // blocks wrapped to 0 in the 8-bit field), INVALID FIELD IN CDB.
        let o = t.run_out(&caw(0, 0, 0x18), &[], 0);
        assert_eq!((o.status, o.transfer_len), (0, 0));
        assert_sense(&t.run_out(&caw(0, 0, 0), &[0; 512], 512), 5, 0x24, 0);
        // Beyond the end, WRPROTECT, length limit.
        assert_sense(&t.run_out(&caw(63, 2, 0), &[0; 2048], 2048), 5, 0x21, 0);
        assert_sense(&t.run_out(&caw(64, 1, 0), &[0; 1024], 1024), 5, 0x21, 0);
        assert_sense(&t.run_out(&caw(0, 1, 0x20), &[0; 1024], 1024), 5, 0x24, 0);
        let t = Harness::new(1 << 20, true);
        let o = t.run_out(&caw(0, 255, 0), &vec![0; 255 * 1024], 255 * 1024);
        assert_eq!(o.status, 0);
        // FUA is honoured.
        let before = t.dev.fua_writes();
        t.run_out(&caw(0, 1, 0x08), &[0; 1024], 1024);
        assert_eq!(t.dev.fua_writes(), before + 1);
        // Write protection.
        let t = Harness::with_options(64, true, true, false);
        assert_sense(&t.run_out(&caw(0, 1, 0), &[0; 1024], 1024), 7, 0x27, 0);
    }

    #[test]
    fn compare_and_write_is_atomic_against_writes() {
        // Writers flip a block between all-X and all-Y while CAWs swap X->Y;
        // every CAW either matches a whole block or miscompares at byte 0 —
        // a torn block (miscompare at a non-zero offset) would mean a write
        // landed inside the CAW.
        let t = Arc::new(Harness::new(16, true));
        t.run_out(&w16(0x8A, 0, 1, 0), &[b'X'; 512], 512);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let t = t.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v = if i.is_multiple_of(2) { b'X' } else { b'Y' };
                    let req = CommandRequest {
                        cdb: &w16(0x8A, 0, 1, 0),
                        edtl: 512,
                        read: false,
                        write: true,
                        data_out: &[v; 512],
                    };
                    let map: &LunMap = &t.map;
                    assert_eq!(map.execute(0, &t.nexus(2), &req).status, 0);
                    i += 1;
                }
            })
        };
        let mut buf = vec![b'X'; 1024];
        buf[512..].fill(b'Y');
        for _ in 0..2000 {
            let o = t.run_out(&caw(0, 1, 0), &buf, 1024);
            if o.status != 0 {
                assert_sense(&o, 0x0E, 0x1D, 0);
                assert_eq!(&o.sense.unwrap()[3..7], &0u32.to_be_bytes());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(t.map.get(0).unwrap().ranges.held(), 0);
    }

    #[test]
    fn orwrite() {
        let t = Harness::new(64, true);
        t.run_out(&w16(0x8A, 5, 2, 0), &[0xA5; 1024], 1024);
        let o = t.run_out(&w16(0x8B, 5, 2, 0x18), &[0x5A; 1024], 1024);
        assert_eq!((o.status, o.transfer_len), (0, 1024));
        assert!(read(&t, 5, 2).iter().all(|&b| b == 0xFF));
        // Unwritten blocks OR with zeros.
        t.run_out(&w16(0x8B, 9, 1, 0), &[0x0F; 512], 512);
        assert!(read(&t, 9, 1).iter().all(|&b| b == 0x0F));
        assert_eq!(t.run_out(&w16(0x8B, 0, 0, 0), &[], 0).status, 0);
        assert_sense(&t.run_out(&w16(0x8B, 64, 0, 0), &[], 0), 5, 0x21, 0);
        assert_sense(
            &t.run_out(&w16(0x8B, 63, 2, 0), &[0; 1024], 1024),
            5,
            0x21,
            0,
        );
        assert_sense(
            &t.run_out(&w16(0x8B, 0, 1, 0x20), &[0; 512], 512),
            5,
            0x24,
            0,
        );
        let t = Harness::with_options(64, true, true, false);
        assert_sense(&t.run_out(&w16(0x8B, 0, 1, 0), &[0; 512], 512), 7, 0x27, 0);
    }

    #[test]
    fn write_atomic() {
        let t = Harness::new(1024, true);
        let o = t.run_out(&atomic(1000, 24), &[7; 24 * 512], 24 * 512);
        assert_eq!((o.status, o.transfer_len), (0, 24 * 512));
        assert!(read(&t, 1000, 24).iter().all(|&b| b == 7));
        assert_eq!(t.run_out(&atomic(0, 0), &[], 0).status, 0);
        assert_sense(&t.run_out(&atomic(1024, 0), &[], 0), 5, 0x21, 0);
        assert_sense(&t.run_out(&atomic(1 << 63, 0), &[], 0), 5, 0x21, 0);
        assert_sense(&t.run_out(&atomic(u64::MAX, 0), &[], 0), 5, 0x21, 0);
        let mut c = atomic(0, 1);
        c[11] = 1; // atomic boundary
        assert_sense(&t.run_out(&c, &[0; 512], 512), 5, 0x24, 0);
        let mut c = atomic(0, 1);
        c[1] = 0x40; // WRPROTECT
        assert_sense(&t.run_out(&c, &[0; 512], 512), 5, 0x24, 0);
        let t = Harness::with_options(64, true, true, false);
        assert_sense(&t.run_out(&atomic(0, 1), &[0; 512], 512), 7, 0x27, 0);
    }
}
