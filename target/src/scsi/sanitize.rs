//! SANITIZE (SBC-4 5.30): OVERWRITE, BLOCK ERASE, CRYPTOGRAPHIC ERASE and
//! EXIT FAILURE MODE, served only when the logical unit was configured
//! with `allow_sanitize` (otherwise the opcode does not exist: INVALID
//! COMMAND OPERATION CODE, and REPORT SUPPORTED OPERATION CODES does not
//! list it).
//!
//! On a virtual disk every method ends the same way for the data: the old
//! contents are unrecoverable through the logical unit. BLOCK ERASE and
//! CRYPTOGRAPHIC ERASE release every extent of a thin device (reads then
//! return zeros, GET LBA STATUS reports everything deallocated); they are
//! offered only on thin devices (SBC-4 ties them to logical block
//! provisioning, and libiscsi checks LBPME). OVERWRITE writes the
//! initialization pattern (replicated over each block, inverted when INVERT
//! asks for it and the pass count is even) over the whole medium, at most
//! `LuOptions::sanitize_overwrite_rate` bytes per second; after an
//! all-zero pattern a thin device releases the extents. Passes
//! other than the last leave no trace on a copy-on-write store, so only the
//! last one is written.
//!
//! The operation runs under the whole-LU range lock; while it runs, media
//! access commands and TEST UNIT READY answer NOT READY / SANITIZE IN
//! PROGRESS (2/04/1B). A sanitize that fails leaves no failure mode to exit
//! (the device stays usable), so EXIT FAILURE MODE just completes.

use std::sync::atomic::{AtomicBool, Ordering};

use ironlun_cow::Durability;

use super::rw::write_err;
use super::sense::{key, Sense};
use super::{Ctx, Reply, ScsiResult};

/// SANITIZE service actions.
pub mod sa {
    pub const OVERWRITE: u8 = 0x01;
    pub const BLOCK_ERASE: u8 = 0x02;
    pub const CRYPTO_ERASE: u8 = 0x03;
    pub const EXIT_FAILURE_MODE: u8 = 0x1F;
}

/// 2/04/1B LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
pub const IN_PROGRESS: Sense = Sense::new(key::NOT_READY, 0x04, 0x1B);

/// Bytes written per device call while overwriting.
const CHUNK_BYTES: usize = 1 << 20;

/// Whether a sanitize operation is running on the logical unit.
#[derive(Debug, Default)]
pub struct SanitizeState {
    running: AtomicBool,
}

impl SanitizeState {
    /// NOT READY, SANITIZE IN PROGRESS while one runs.
    pub fn check(&self) -> Result<(), Sense> {
        if self.running.load(Ordering::Acquire) {
            Err(IN_PROGRESS)
        } else {
            Ok(())
        }
    }
}

struct Running<'a>(&'a SanitizeState);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Whether the service action is offered on this logical unit (SANITIZE
/// allowed; the erase methods only on thin devices).
pub fn offered(ctx: &Ctx<'_>, service_action: u8) -> bool {
    ctx.lu.options.allow_sanitize
        && match service_action {
            sa::OVERWRITE | sa::EXIT_FAILURE_MODE => true,
            sa::BLOCK_ERASE | sa::CRYPTO_ERASE => ctx.lu.device.geometry().thin,
            _ => false,
        }
}

pub fn sanitize(ctx: &Ctx<'_>, service_action: u8, len: u32) -> ScsiResult {
    if !ctx.lu.options.allow_sanitize {
        return Err(Sense::invalid_opcode());
    }
    if !offered(ctx, service_action) {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    let g = ctx.lu.device.geometry();
    let bs = g.block_size as usize;
    // PARAMETER LIST LENGTH: 0 for everything but OVERWRITE, whose list is
    // a 4-byte header plus a pattern of 1..=block size bytes.
    let len_ok = match service_action {
        sa::OVERWRITE => len > 4 && len as usize <= bs + 4,
        _ => len == 0,
    };
    if !len_ok {
        return Err(Sense::invalid_cdb_field(7, None));
    }
    if service_action == sa::EXIT_FAILURE_MODE {
        return Ok(Reply::none());
    }
    if ctx.lu.write_protected() {
        return Err(Sense::write_protected());
    }
    let pattern = if service_action == sa::OVERWRITE {
        Some(overwrite_block(ctx.req.data_out, len as usize, bs)?)
    } else {
        None
    };
    let state = &ctx.lu.sanitize;
    if state.running.swap(true, Ordering::AcqRel) {
        return Err(IN_PROGRESS);
    }
    let _running = Running(state);
    let _range = ctx.lu.ranges.lock(0, g.blocks);
    let dev = &ctx.lu.device;
    match pattern {
        Some(block) => {
            // The pattern goes over every block, also an all-zero one: the
            // old contents must be overwritten where they lie, not just
            // unmapped (a released extent keeps its bytes in the pool
            // until it is reused). A thin device then releases the zeros.
            let per = (CHUNK_BYTES / bs).max(1) as u64;
            let chunk: Vec<u8> = block
                .iter()
                .copied()
                .cycle()
                .take(per.min(g.blocks.max(1)) as usize * bs)
                .collect();
            let pace = Pace::new(ctx.lu.options.sanitize_overwrite_rate);
            let mut at = 0u64;
            while at < g.blocks {
                let n = per.min(g.blocks - at);
                dev.write(at, &chunk[..n as usize * bs], Durability::Cached)
                    .map_err(write_err)?;
                at += n;
                pace.wait_for(at * bs as u64);
            }
            if g.thin && block.iter().all(|&b| b == 0) && g.blocks > 0 {
                dev.flush().map_err(write_err)?;
                dev.unmap(0, g.blocks).map_err(write_err)?;
            }
        }
        None => {
            if g.blocks > 0 {
                dev.write_zeroes(0, g.blocks, g.thin).map_err(write_err)?;
            }
        }
    }
    dev.flush().map_err(write_err)?;
    Ok(Reply::data_out(len))
}

/// Holds an overwrite to at most `rate` bytes per second (0: no limit), so
/// a sanitize of one logical unit leaves the pool's disk bandwidth to the
/// others, the way RAID rebuilds and scrubs are paced.
struct Pace {
    rate: u64,
    start: std::time::Instant,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate,
            start: std::time::Instant::now(),
        }
    }

    /// Sleeps until `done` bytes are within the rate.
    fn wait_for(&self, done: u64) {
        if self.rate == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(done as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Parses the OVERWRITE parameter list into the block to write.
fn overwrite_block(data: &[u8], len: usize, bs: usize) -> Result<Vec<u8>, Sense> {
    if data.len() < len {
        return Err(Sense::param_list_length());
    }
    let p = &data[..len];
    let invert = p[0] & 0x80 != 0;
    if p[0] & 0x60 != 0 {
        // TEST is reserved for vendor testing.
        return Err(Sense::invalid_param_field(0, Some(6)));
    }
    let count = p[0] & 0x1F;
    if count == 0 {
        return Err(Sense::invalid_param_field(0, Some(4)));
    }
    let plen = u16::from_be_bytes([p[2], p[3]]) as usize;
    if plen == 0 || plen > bs {
        return Err(Sense::invalid_param_field(2, Some(7)));
    }
    if 4 + plen > len {
        return Err(Sense::param_list_length());
    }
    let flip = invert && count.is_multiple_of(2);
    Ok(p[4..4 + plen]
        .iter()
        .map(|&b| if flip { !b } else { b })
        .cycle()
        .take(bs)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::LuOptions;
    use super::*;

    fn cdb(sa: u8, len: u16) -> Vec<u8> {
        let l = len.to_be_bytes();
        vec![0x48, sa, 0, 0, 0, 0, 0, l[0], l[1], 0]
    }

    fn allowing(blocks: u64, thin: bool) -> Harness {
        Harness::with_lu_options(
            blocks,
            thin,
            LuOptions {
                allow_sanitize: true,
                ..LuOptions::default()
            },
        )
    }

    fn write_all(t: &Harness, v: u8) {
        let o = t.run_out(
            &[0x2A, 0, 0, 0, 0, 0, 0, 0, 64, 0],
            &[v; 64 * 512],
            64 * 512,
        );
        assert_eq!(o.status, 0);
    }

    fn read_all(t: &Harness) -> Vec<u8> {
        t.run_edtl(&[0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0], 64 * 512)
            .data_in
            .to_vec()
    }

    #[test]
    fn refused_unless_allowed() {
        let t = Harness::new(64, true);
        assert_sense(&t.run(&cdb(sa::BLOCK_ERASE, 0)), 5, 0x20, 0);
    }

    #[test]
    fn block_and_crypto_erase_deallocate() {
        for method in [sa::BLOCK_ERASE, sa::CRYPTO_ERASE] {
            let t = allowing(64, true);
            write_all(&t, b'a');
            assert_eq!(t.run(&cdb(method, 0)).status, 0);
            assert!(read_all(&t).iter().all(|&b| b == 0));
            let o = t.run(&[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
            assert_eq!(&o.data_in[8..20], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64]);
            assert_eq!(o.data_in[20], 1, "deallocated");
            // Parameter data is not allowed.
            assert_sense(&t.run_out(&cdb(method, 8), &[0; 8], 8), 5, 0x24, 0);
        }
        // Not offered on a thick device.
        let t = allowing(64, false);
        assert_sense(&t.run(&cdb(sa::BLOCK_ERASE, 0)), 5, 0x24, 0);
    }

    #[test]
    fn overwrite_patterns_and_checks() {
        let t = allowing(64, true);
        write_all(&t, b'a');
        let mut p = vec![0x01, 0, 0x02, 0x00];
        p.extend_from_slice(&[0xAA; 512]);
        assert_eq!(t.run_out(&cdb(sa::OVERWRITE, 516), &p, 516).status, 0);
        assert!(read_all(&t).iter().all(|&b| b == 0xAA));
        // A 4-byte pattern inverted over two passes.
        let p = [0x82, 0, 0, 4, 1, 2, 3, 4];
        assert_eq!(t.run_out(&cdb(sa::OVERWRITE, 8), &p, 8).status, 0);
        let d = read_all(&t);
        assert_eq!(&d[508..516], &[!1, !2, !3, !4, !1, !2, !3, !4]);
        // Zeros on a thin device release the blocks.
        let p = [0x01, 0, 0, 1, 0];
        assert_eq!(t.run_out(&cdb(sa::OVERWRITE, 5), &p, 5).status, 0);
        assert!(read_all(&t).iter().all(|&b| b == 0));
        // Parameter list length 0..=4 and block size + 5 are CDB errors.
        for len in [0u16, 1, 4, 517] {
            let o = t.run_out(
                &cdb(sa::OVERWRITE, len),
                &[1; 520][..len as usize],
                len as u32,
            );
            assert_sense(&o, 5, 0x24, 0);
        }
        // Count 0, pattern length 0 or beyond the block: list errors.
        let mut p = vec![0x00, 0, 0x02, 0x00];
        p.extend_from_slice(&[0xAA; 512]);
        assert_sense(&t.run_out(&cdb(sa::OVERWRITE, 516), &p, 516), 5, 0x26, 0);
        p[0] = 1;
        p[2] = 0;
        assert_sense(&t.run_out(&cdb(sa::OVERWRITE, 516), &p, 516), 5, 0x26, 0);
        p[2] = 0x02;
        p[3] = 0x04;
        assert_sense(&t.run_out(&cdb(sa::OVERWRITE, 516), &p, 516), 5, 0x26, 0);
    }

    #[test]
    fn exit_failure_mode_reserved_bits_and_protection() {
        let t = allowing(64, true);
        assert_eq!(t.run(&cdb(sa::EXIT_FAILURE_MODE, 0)).status, 0);
        assert_sense(
            &t.run_out(&cdb(sa::EXIT_FAILURE_MODE, 8), &[0; 8], 8),
            5,
            0x24,
            0,
        );
        assert_sense(&t.run(&cdb(0x04, 0)), 5, 0x24, 0);
        let mut c = cdb(sa::BLOCK_ERASE, 0);
        c[1] |= 0x40;
        assert_sense(&t.run(&c), 5, 0x24, 0);
        for i in 2..7 {
            let mut c = cdb(sa::BLOCK_ERASE, 0);
            c[i] = 1;
            assert_sense(&t.run(&c), 5, 0x24, 0);
        }
        t.map.get(0).unwrap().state.lock().mode.swp = true;
        assert_sense(&t.run(&cdb(sa::BLOCK_ERASE, 0)), 7, 0x27, 0);
    }

    #[test]
    fn in_progress_blocks_media_access() {
        let t = allowing(64, true);
        let lu = t.map.get(0).unwrap().clone();
        lu.sanitize.running.store(true, Ordering::Release);
        assert_sense(&t.run(&[0, 0, 0, 0, 0, 0]), 2, 0x04, 0x1B);
        assert_sense(
            &t.run_edtl(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512),
            2,
            0x04,
            0x1B,
        );
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0]).status, 0);
        lu.sanitize.running.store(false, Ordering::Release);
        assert_eq!(t.run(&[0, 0, 0, 0, 0, 0]).status, 0);
    }
}
