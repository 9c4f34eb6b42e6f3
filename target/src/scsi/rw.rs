//! The data path (SBC-3): READ and WRITE (6/10/12/16), WRITE AND VERIFY,
//! VERIFY, SYNCHRONIZE CACHE, WRITE SAME, UNMAP and GET LBA STATUS.
//!
//! READ allocates one buffer of the exact size and reads straight into it;
//! WRITE hands the Data-Out bytes straight to the device.

use bytes::BytesMut;
use ironlun_cow::{Durability, Geometry, Provisioning};

use super::cdb::{Cdb, Width};
use super::sense::Sense;
use super::{
    Ctx, Reply, ScsiResult, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS,
};

/// Chunk used when a command touches more than one buffer's worth.
const CHUNK_BYTES: u64 = 1 << 20;

pub fn execute(ctx: &Ctx<'_>, c: Cdb) -> ScsiResult {
    match c {
        Cdb::Read {
            width, lba, blocks, ..
        } => read(ctx, width, lba, blocks),
        Cdb::Write {
            width,
            lba,
            blocks,
            fua,
            ..
        } => write(ctx, width, lba, blocks, fua),
        // BYTCHK=0: write then verify the medium; BYTCHK=1: compare the
        // written data with itself. Either way the write is what counts.
        Cdb::WriteAndVerify {
            width, lba, blocks, ..
        } => write(ctx, width, lba, blocks, false),
        Cdb::Verify {
            width,
            lba,
            blocks,
            bytchk,
            ..
        } => verify(ctx, width, lba, blocks, bytchk),
        Cdb::SyncCache { lba, blocks, .. } => sync_cache(ctx, lba, blocks),
        Cdb::WriteSame {
            ten,
            lba,
            blocks,
            unmap,
            anchor,
            ndob,
        } => write_same(ctx, ten, lba, blocks, unmap, anchor, ndob),
        Cdb::Unmap { anchor, len } => unmap(ctx, anchor, len),
        Cdb::GetLbaStatus { lba, alloc } => get_lba_status(ctx, lba, alloc),
        _ => Err(Sense::invalid_opcode()),
    }
}

/// LBA range check (SBC-3 4.5): the first LBA must exist and the range
/// must end inside the medium; a zero-length range still needs a valid LBA.
pub(super) fn check_range(g: &Geometry, lba: u64, blocks: u64) -> Result<(), Sense> {
    if lba >= g.blocks || lba.checked_add(blocks).is_none_or(|end| end > g.blocks) {
        return Err(Sense::lba_out_of_range());
    }
    Ok(())
}

/// Byte offset of the TRANSFER LENGTH field, for the field pointer.
fn length_field(width: Width) -> u16 {
    match width {
        Width::W6 => 4,
        Width::W10 => 7,
        Width::W12 => 6,
        Width::W16 => 10,
    }
}

fn check_transfer(g: &Geometry, width: Width, blocks: u32) -> Result<u64, Sense> {
    let bytes = blocks as u64 * g.block_size as u64;
    if bytes > MAX_TRANSFER_BYTES {
        return Err(Sense::invalid_cdb_field(length_field(width), Some(7)));
    }
    Ok(bytes)
}

pub(super) fn read_err(e: ironlun_cow::BlockError) -> Sense {
    Sense::from_block_error(&e, false)
}

pub(super) fn write_err(e: ironlun_cow::BlockError) -> Sense {
    Sense::from_block_error(&e, true)
}

/// Refuses writes to a protected unit; otherwise the durability a write
/// needs (FUA, or WCE=0: every write forced to stable storage). One look at
/// the mode state serves both.
pub(super) fn writable(ctx: &Ctx<'_>, fua: bool) -> Result<Durability, Sense> {
    let mode = ctx.lu.mode();
    if mode.swp || ctx.lu.options.read_only || ctx.lu.device.read_only() {
        return Err(Sense::write_protected());
    }
    Ok(if fua || !mode.wce {
        Durability::ForceUnitAccess
    } else {
        Durability::Cached
    })
}

fn read(ctx: &Ctx<'_>, width: Width, lba: u64, blocks: u32) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    check_range(&g, lba, blocks as u64)?;
    let bytes = check_transfer(&g, width, blocks)?;
    let bs = g.block_size as u64;
    // Only what the initiator will receive is read (EDTL may be smaller
    // than the CDB's transfer length); the residual still reflects the CDB.
    let carried = (ctx.req.edtl as u64).div_ceil(bs).min(blocks as u64);
    let mut buf = BytesMut::zeroed((carried * bs) as usize);
    if carried > 0 {
        if !super::inline::must_not_wait() {
            ctx.lu.device.read(lba, &mut buf).map_err(read_err)?;
        } else if !ctx.lu.device.read_if_cached(lba, &mut buf) {
            // Not cached: this answer is discarded, the blocking path
            // runs the command again (see `inline`).
            super::inline::would_wait();
            return Err(Sense::internal());
        }
    }
    Ok(Reply {
        data: buf,
        transfer_len: bytes as u32,
    })
}

fn write(ctx: &Ctx<'_>, width: Width, lba: u64, blocks: u32, fua: bool) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    check_range(&g, lba, blocks as u64)?;
    let bytes = check_transfer(&g, width, blocks)?;
    let durability = writable(ctx, fua)?;
    let bs = g.block_size as usize;
    // Write the whole blocks that arrived (EDTL may be below the CDB's
    // transfer length; data beyond it is not ours to write).
    let arrived = ctx.req.data_out.len().min(bytes as usize) / bs * bs;
    if arrived > 0 {
        let data = &ctx.req.data_out[..arrived];
        if super::inline::must_not_wait() {
            // On the connection's task: only a cached write that goes
            // straight into the page cache; anything else is left to the
            // blocking path, with nothing written (see `inline`).
            let done = durability == Durability::Cached
                && ctx
                    .lu
                    .ranges
                    .try_lock(lba, (arrived / bs) as u64)
                    .is_some_and(|_range| ctx.lu.device.write_if_cheap(lba, data));
            if !done {
                super::inline::would_wait();
                return Err(Sense::internal());
            }
        } else {
            let _range = ctx.lu.ranges.lock(lba, (arrived / bs) as u64);
            ctx.lu
                .device
                .write(lba, data, durability)
                .map_err(write_err)?;
        }
    }
    Ok(Reply::data_out(bytes as u32))
}

fn verify(ctx: &Ctx<'_>, width: Width, lba: u64, blocks: u32, bytchk: u8) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    check_range(&g, lba, blocks as u64)?;
    let bytes = check_transfer(&g, width, blocks)?;
    let bs = g.block_size as u64;
    let dev = &ctx.lu.device;
    match bytchk {
        0 => {
            // Medium verification: every block must be readable.
            let chunk = (CHUNK_BYTES / bs).max(1);
            let mut buf = vec![0u8; (chunk.min(blocks as u64) * bs) as usize];
            let mut at = 0u64;
            while at < blocks as u64 {
                let n = chunk.min(blocks as u64 - at);
                dev.read(lba + at, &mut buf[..(n * bs) as usize])
                    .map_err(read_err)?;
                at += n;
            }
            Ok(Reply::none())
        }
        1 => {
            let data = &ctx.req.data_out[..ctx.req.data_out.len().min(bytes as usize)];
            let n = data.len() as u64 / bs;
            let mut buf = vec![0u8; (n * bs) as usize];
            if n > 0 {
                dev.read(lba, &mut buf).map_err(read_err)?;
            }
            if let Some(off) = buf.iter().zip(data).position(|(a, b)| a != b) {
                return Err(Sense::miscompare(off as u64));
            }
            Ok(Reply::data_out(bytes as u32))
        }
        _ => {
            // BYTCHK=11b: one block of Data-Out compared with every block.
            let transfer = if blocks == 0 { 0 } else { bs as u32 };
            if (ctx.req.data_out.len() as u64) < bs || blocks == 0 {
                return Ok(Reply::data_out(transfer));
            }
            let pattern = &ctx.req.data_out[..bs as usize];
            let mut block = vec![0u8; bs as usize];
            for i in 0..blocks as u64 {
                dev.read(lba + i, &mut block).map_err(read_err)?;
                if let Some(off) = block.iter().zip(pattern).position(|(a, b)| a != b) {
                    return Err(Sense::miscompare(i * bs + off as u64));
                }
            }
            Ok(Reply::data_out(transfer))
        }
    }
}

fn sync_cache(ctx: &Ctx<'_>, lba: u64, blocks: u32) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    if lba != 0 || blocks != 0 {
        check_range(&g, lba, blocks as u64)?;
    }
    ctx.lu.device.flush().map_err(write_err)?;
    Ok(Reply::none())
}

fn write_same(
    ctx: &Ctx<'_>,
    ten: bool,
    lba: u64,
    blocks: u32,
    unmap: bool,
    anchor: bool,
    ndob: bool,
) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    let len_field = if ten { 7 } else { 10 };
    if anchor {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    let blocks = if blocks == 0 {
        // WSNZ=0: zero blocks means from LBA through the last logical block.
        if lba >= g.blocks {
            return Err(Sense::lba_out_of_range());
        }
        g.blocks - lba
    } else {
        blocks as u64
    };
    check_range(&g, lba, blocks)?;
    let bs = g.block_size as u64;
    if blocks > MAX_WRITE_SAME_BLOCKS {
        return Err(Sense::invalid_cdb_field(len_field, Some(7)));
    }
    let blocks = blocks as u32;
    if ctx.lu.write_protected() {
        return Err(Sense::write_protected());
    }
    let transfer = if ndob { 0 } else { bs as u32 };
    let pattern: &[u8] = if ndob {
        &[]
    } else {
        if ctx.req.edtl as u64 != bs || (ctx.req.data_out.len() as u64) < bs {
            // Exactly one block to replicate must be offered (LIO refuses
            // an under- or overflowing WRITE SAME alike).
            return Err(Sense::invalid_cdb_field(len_field, Some(7)));
        }
        &ctx.req.data_out[..bs as usize]
    };
    let dev = &ctx.lu.device;
    let _range = ctx.lu.ranges.lock(lba, blocks as u64);
    if (unmap && g.thin) || pattern.iter().all(|&b| b == 0) {
        // With UNMAP on a thin device the blocks are released whatever the
        // pattern (as LIO does; libiscsi's UnmapUntilEnd expects zeros to
        // read back under LBPRZ).
        dev.write_zeroes(lba, blocks as u64, unmap && g.thin)
            .map_err(write_err)?;
    } else {
        let chunk = (CHUNK_BYTES / bs).clamp(1, blocks as u64);
        let buf: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take((chunk * bs) as usize)
            .collect();
        let mut at = 0u64;
        while at < blocks as u64 {
            let n = chunk.min(blocks as u64 - at);
            dev.write(lba + at, &buf[..(n * bs) as usize], Durability::Cached)
                .map_err(write_err)?;
            at += n;
        }
    }
    if !ctx.lu.mode().wce {
        dev.flush().map_err(write_err)?;
    }
    Ok(Reply::data_out(transfer))
}

fn unmap(ctx: &Ctx<'_>, anchor: bool, len: u32) -> ScsiResult {
    if anchor {
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    if len == 0 {
        return Ok(Reply::none());
    }
    if len < 8 {
        return Err(Sense::param_list_length());
    }
    let data = &ctx.req.data_out[..ctx.req.data_out.len().min(len as usize)];
    if data.len() < 8 {
        return Err(Sense::param_list_length());
    }
    if ctx.lu.write_protected() {
        return Err(Sense::write_protected());
    }
    let g = ctx.lu.device.geometry();
    let bd_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let count = bd_len.min(data.len() - 8) / 16;
    if count as u64 > MAX_UNMAP_DESCRIPTORS as u64 {
        return Err(Sense::invalid_param_field(2, None));
    }
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let d = &data[8 + 16 * i..8 + 16 * (i + 1)];
        let lba = u64::from_be_bytes(d[0..8].try_into().unwrap_or([0; 8]));
        let blocks = u32::from_be_bytes(d[8..12].try_into().unwrap_or([0; 4]));
        if blocks > MAX_UNMAP_BLOCKS {
            return Err(Sense::invalid_param_field((8 + 16 * i + 8) as u16, None));
        }
        if lba
            .checked_add(blocks as u64)
            .is_none_or(|end| end > g.blocks)
        {
            return Err(Sense::lba_out_of_range());
        }
        ranges.push((lba, blocks as u64));
    }
    for (lba, blocks) in ranges {
        if blocks > 0 {
            let _range = ctx.lu.ranges.lock(lba, blocks);
            ctx.lu.device.unmap(lba, blocks).map_err(write_err)?;
        }
    }
    Ok(Reply::data_out(len))
}

fn get_lba_status(ctx: &Ctx<'_>, lba: u64, alloc: u32) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    if lba >= g.blocks {
        return Err(Sense::lba_out_of_range());
    }
    let max = ((alloc.saturating_sub(8) / 16) as usize).clamp(1, 64);
    let mut d = vec![0u8; 8];
    let mut at = lba;
    let mut n = 0;
    while at < g.blocks && n < max {
        let run = ctx.lu.device.provisioning(at).map_err(read_err)?;
        let blocks = run.blocks.min(g.blocks - at).min(u32::MAX as u64);
        if blocks == 0 {
            break;
        }
        d.extend_from_slice(&at.to_be_bytes());
        d.extend_from_slice(&(blocks as u32).to_be_bytes());
        d.push(match run.state {
            Provisioning::Mapped => 0,
            Provisioning::Deallocated => 1,
        });
        d.extend_from_slice(&[0, 0, 0]);
        at += blocks;
        n += 1;
    }
    let param_len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&param_len.to_be_bytes());
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::MAX_WRITE_SAME_BLOCKS;

    fn rw10(op: u8, flags: u8, lba: u32, blocks: u16) -> Vec<u8> {
        let l = lba.to_be_bytes();
        let b = blocks.to_be_bytes();
        vec![op, flags, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
    }

    #[test]
    fn write_then_read_back() {
        let t = Harness::new(64, true);
        let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
        let o = t.run_out(&rw10(0x2A, 0x08, 3, 2), &data, 1024);
        assert_eq!((o.status, o.transfer_len), (0, 1024));
        let o = t.run_edtl(&rw10(0x28, 0, 3, 2), 1024);
        assert_eq!(&o.data_in[..], &data[..]);
        assert_eq!(o.transfer_len, 1024);
    }

    #[test]
    fn out_of_range() {
        let t = Harness::new(64, true);
        for (lba, n) in [(64u32, 1u16), (63, 2), (0xFFFF_FFFF, 1), (65, 0), (64, 0)] {
            let o = t.run_edtl(&rw10(0x28, 0, lba, n), 512);
            assert_sense(&o, 5, 0x21, 0);
        }
        let o = t.run_edtl(&rw10(0x28, 0, 0, 0), 0);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 63, 0), 0);
        assert_eq!(o.status, 0);
    }

    #[test]
    fn residual_inputs() {
        let t = Harness::new(64, true);
        // EDTL 0: GOOD, transfer length one block.
        let o = t.run_edtl(&rw10(0x28, 0, 0, 1), 0);
        assert_eq!((o.status, o.transfer_len, o.data_in.len()), (0, 512, 0));
        // EDTL shorter than the CDB: only whole blocks that arrived are written.
        t.run_out(&rw10(0x2A, 0, 0, 2), &[b'a'; 1024], 1024);
        let o = t.run_out(&rw10(0x2A, 0, 0, 2), &[b'b'; 512], 512);
        assert_eq!((o.status, o.transfer_len), (0, 1024));
        let o = t.run_edtl(&rw10(0x28, 0, 0, 2), 1024);
        assert!(o.data_in[..512].iter().all(|&b| b == b'b'));
        assert!(o.data_in[512..].iter().all(|&b| b == b'a'));
        // EDTL longer than the CDB: only the CDB's blocks are written.
        let o = t.run_out(&rw10(0x2A, 0, 0, 1), &[b'c'; 1024], 1024);
        assert_eq!((o.status, o.transfer_len), (0, 512));
        let o = t.run_edtl(&rw10(0x28, 0, 0, 2), 1024);
        assert!(o.data_in[512..].iter().all(|&b| b == b'a'));
        // A partial block writes nothing and succeeds.
        let o = t.run_out(&rw10(0x2A, 0, 0, 1), &[b'd'; 200], 200);
        assert_eq!(o.status, 0);
    }

    #[test]
    fn too_long_transfer() {
        let t = Harness::new(1 << 20, true);
        let mut cdb = vec![0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0];
        cdb[10..14].copy_from_slice(&(1u32 << 16).to_be_bytes());
        let o = t.run_edtl(&cdb, 0);
        assert_sense(&o, 5, 0x24, 0);
    }

    #[test]
    fn verify_compare() {
        let t = Harness::new(64, true);
        t.run_out(&rw10(0x2A, 0, 5, 2), &[7u8; 1024], 1024);
        let o = t.run_out(&rw10(0x2F, 0x02, 5, 2), &[7u8; 1024], 1024);
        assert_eq!(o.status, 0);
        let mut bad = vec![7u8; 1024];
        bad[700] = 8;
        let o = t.run_out(&rw10(0x2F, 0x02, 5, 2), &bad, 1024);
        assert_sense(&o, 0x0E, 0x1D, 0);
        let s = o.sense.unwrap();
        assert_eq!(&s[3..7], &700u32.to_be_bytes());
        // BYTCHK=0 does not compare.
        let o = t.run_edtl(&rw10(0x2F, 0, 5, 2), 0);
        assert_eq!((o.status, o.transfer_len), (0, 0));
        // VRPROTECT is rejected.
        let o = t.run_edtl(&rw10(0x2F, 0x20, 5, 2), 0);
        assert_sense(&o, 5, 0x24, 0);
    }

    #[test]
    fn write_protect_by_option() {
        let t = Harness::with_options(64, true, true, false);
        let o = t.run_out(&rw10(0x2A, 0, 0, 1), &[1u8; 512], 512);
        assert_sense(&o, 7, 0x27, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 0, 1), 512);
        assert_eq!(o.status, 0);
    }

    #[test]
    fn write_same_unmap_and_status() {
        let t = Harness::new(64, true);
        t.run_out(&rw10(0x2A, 0, 0, 4), &[9u8; 2048], 2048);
        // WRITE SAME(16) pattern over 8 blocks.
        let mut ws = vec![0x93, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 8, 0, 0];
        let o = t.run_out(&ws, &[3u8; 512], 512);
        assert_eq!((o.status, o.transfer_len), (0, 512));
        let o = t.run_edtl(&rw10(0x28, 0, 10, 8), 4096);
        assert!(o.data_in.iter().all(|&b| b == 3));
        // With UNMAP, whatever the pattern: deallocates.
        ws[1] = 0x08;
        let o = t.run_out(&ws, &[3u8; 512], 512);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 10, 8), 4096);
        assert!(o.data_in.iter().all(|&b| b == 0));
        // With UNMAP and zeros: deallocates.
        ws[1] = 0x08;
        let o = t.run_out(&ws, &[0u8; 512], 512);
        assert_eq!(o.status, 0);
        // Data-Out other than exactly one block is refused.
        let ws10 = [0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_sense(&t.run_out(&ws10, &[0u8; 256], 256), 5, 0x24, 0);
        assert_sense(&t.run_out(&ws10, &[0u8; 1024], 1024), 5, 0x24, 0);
        // Zero blocks: through the last block (WSNZ=0).
        t.run_out(&rw10(0x2A, 0, 60, 4), &[9u8; 2048], 2048);
        let o = t.run_out(&[0x41, 0, 0, 0, 0, 60, 0, 0, 0, 0], &[5u8; 512], 512);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 60, 4), 2048);
        assert!(o.data_in.iter().all(|&b| b == 5));
        let o = t.run_out(&[0x41, 0, 0, 0, 0, 64, 0, 0, 0, 0], &[0u8; 512], 512);
        assert_sense(&o, 5, 0x21, 0);
        let big = Harness::new(MAX_WRITE_SAME_BLOCKS + 2, true);
        let o = big.run_out(&[0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0u8; 512], 512);
        assert_sense(&o, 5, 0x24, 0);
        let o = big.run_out(&[0x41, 0, 0, 0, 0, 2, 0, 0, 0, 0], &[0u8; 512], 512);
        assert_eq!(o.status, 0);
        // UNMAP blocks 0..4.
        let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&4u32.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        let o = t.run_out(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &p, 24);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 0, 4), 2048);
        assert!(o.data_in.iter().all(|&b| b == 0));
        let mut gls = vec![0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
        let o = t.run_edtl(&gls, 4096);
        assert_eq!(o.status, 0);
        assert_eq!(o.data_in[8 + 12], 1, "first run deallocated");
        gls[9] = 64;
        let o = t.run_edtl(&gls, 4096);
        assert_sense(&o, 5, 0x21, 0);
        // UNMAP beyond the end.
        let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
        p.extend_from_slice(&60u64.to_be_bytes());
        p.extend_from_slice(&8u32.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        let o = t.run_out(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &p, 24);
        assert_sense(&o, 5, 0x21, 0);
    }

    #[test]
    fn fua_and_write_cache() {
        let t = Harness::new(64, true);
        t.run_out(&rw10(0x2A, 0, 0, 1), &[1; 512], 512);
        assert_eq!(t.dev.fua_writes(), 0);
        t.run_out(&rw10(0x2A, 0x08, 0, 1), &[1; 512], 512);
        assert_eq!(t.dev.fua_writes(), 1);
        t.map.get(0).unwrap().state.lock().mode.wce = false;
        t.run_out(&rw10(0x2A, 0, 0, 1), &[1; 512], 512);
        assert_eq!(t.dev.fua_writes(), 2);
    }

    #[test]
    fn file_device_end_to_end() {
        use std::sync::Arc;

        use ironlun_cow::{FileDevice, FileDeviceOptions};

        use super::super::{LogicalUnit, LuIdentity, LuOptions, LunMap};

        let path = std::env::temp_dir().join(format!("ironlun-scsi-rw-{}.img", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let dev = FileDevice::open(
            &path,
            &FileDeviceOptions {
                block_size: 512,
                size: Some(1 << 20),
                create: true,
                read_only: false,
            },
        )
        .unwrap();
        let lu = LogicalUnit::new(
            Arc::new(dev),
            LuIdentity {
                vendor: "IRONLUN".into(),
                product: "file".into(),
                revision: "0001".into(),
                serial: "f".into(),
                naa: NAA,
            },
            LuOptions::default(),
        );
        let mut t = Harness::new(1, true);
        t.map = LunMap::new();
        t.map.insert(0, Arc::new(lu));
        // FUA write, read back, SYNCHRONIZE CACHE(16).
        let o = t.run_out(&rw10(0x2A, 0x08, 16, 16), &[0xA5; 8192], 8192);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 16, 16), 8192);
        assert!(o.data_in.iter().all(|&b| b == 0xA5));
        let o = t.run_edtl(&[0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0);
        assert_eq!(o.status, 0);
        // GET LBA STATUS sees the written extent as mapped.
        let mut gls = vec![0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0x01, 0, 0, 0];
        let o = t.run_edtl(&gls, 256);
        assert_eq!((o.status, o.data_in[8 + 12]), (0, 0));
        // UNMAP it: reads zeros and reports deallocated.
        let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
        p.extend_from_slice(&16u64.to_be_bytes());
        p.extend_from_slice(&16u32.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        let o = t.run_out(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &p, 24);
        assert_eq!(o.status, 0);
        let o = t.run_edtl(&rw10(0x28, 0, 16, 16), 8192);
        assert!(o.data_in.iter().all(|&b| b == 0));
        gls[9] = 16;
        let o = t.run_edtl(&gls, 256);
        assert_eq!((o.status, o.data_in[8 + 12]), (0, 1));
        // Beyond the end.
        let o = t.run_edtl(&rw10(0x28, 0, 2048, 1), 512);
        assert_sense(&o, 5, 0x21, 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sync_cache() {
        let t = Harness::new(64, true);
        let o = t.run_edtl(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0);
        assert_eq!(o.status, 0);
        assert!(t.dev.flushes() >= 1);
        let o = t.run_edtl(&[0x35, 0, 0, 0, 0, 64, 0, 0, 1, 0], 0);
        assert_sense(&o, 5, 0x21, 0);
    }
}
