//! Running a READ whose data is cached, or a WRITE that can go straight
//! into the page cache, on the connection's own task.
//!
//! Every command normally runs on a blocking thread, because a read or a
//! write may wait for the disk. That hop (wake a thread, switch to it, wake
//! the connection's writer from it) costs more than a 4 KiB copy to or
//! from the page cache. So the transport first offers a plain READ or
//! WRITE here: it runs the whole command as usual, except that the device
//! I/O must not wait
//! ([`BlockDevice::read_if_cached`](ironlun_cow::BlockDevice::read_if_cached),
//! [`BlockDevice::write_if_cheap`](ironlun_cow::BlockDevice::write_if_cheap):
//! a cached write, no FUA, needing only the page cache and in-memory
//! metadata, no lock contended). If it would, the attempt is dropped and
//! the transport runs the command on a blocking thread as before. That is
//! safe because a READ or WRITE has no side effects before its device I/O,
//! a unit attention or a conflict found before that is a complete answer,
//! and the device refuses before writing anything, except after an I/O
//! error or a lost race with a snapshot delete, when the blocking run
//! writes every piece again (a WRITE that then fails may leave some of its
//! blocks written, which SCSI allows of a failed WRITE).

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use super::cdb::op;
use super::{CommandOutcome, CommandRequest, LunMap, Nexus};

/// Largest READ or WRITE run inline; longer copies stay off the
/// connection's task so they cannot delay its other commands.
pub const MAX_INLINE_BYTES: u32 = 128 << 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Not inside an inline attempt: reads may wait.
    Off,
    /// Inside one: reads must not wait.
    NoWait,
    /// A read would have waited: the attempt's outcome is discarded.
    WouldWait,
}

thread_local! {
    static ATTEMPT: Cell<Attempt> = const { Cell::new(Attempt::Off) };
}

/// Whether the current command must not wait for the disk.
pub(super) fn must_not_wait() -> bool {
    ATTEMPT.get() != Attempt::Off
}

/// Records that the current inline attempt would have waited.
pub(super) fn would_wait() {
    ATTEMPT.set(Attempt::WouldWait);
}

impl LunMap {
    /// Runs `req` at once if it is a READ of at most [`MAX_INLINE_BYTES`]
    /// whose data is cached, or a WRITE of at most that which goes straight
    /// into the page cache; `None` means "run it with [`LunMap::execute`]
    /// on a blocking thread", and nothing happened.
    pub fn execute_if_cheap(
        &self,
        lun: u64,
        nexus: &Nexus,
        req: &CommandRequest<'_>,
    ) -> Option<CommandOutcome> {
        let opcode = *req.cdb.first()?;
        let is_read = matches!(opcode, op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16);
        let is_write = matches!(
            opcode,
            op::WRITE_6 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16
        );
        let plain = (is_read && !req.write) || (is_write && !req.read);
        if !plain || req.edtl > MAX_INLINE_BYTES || self.get(lun).is_none() {
            return None;
        }
        ATTEMPT.set(Attempt::NoWait);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.execute(lun, nexus, req)));
        let attempt = ATTEMPT.replace(Attempt::Off);
        match (outcome, attempt) {
            (Ok(outcome), Attempt::NoWait) => Some(outcome),
            // It would have waited, or it panicked: the blocking path
            // runs it (and answers a panic with a target failure).
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use ironlun_cow::{BlockDevice, BlockError, Durability, Geometry};

    use super::*;
    use crate::scsi::testutil::{assert_sense, Harness, MemDevice};
    use crate::scsi::{status, LogicalUnit, LuOptions, ResetKind};

    /// A memory device that says whether its blocks are "cached".
    struct CacheSwitch {
        inner: MemDevice,
        cached: AtomicBool,
    }

    impl BlockDevice for CacheSwitch {
        fn geometry(&self) -> Geometry {
            self.inner.geometry()
        }
        fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.inner.read(lba, buf)
        }
        fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
            self.cached.load(Ordering::SeqCst) && self.inner.read(lba, buf).is_ok()
        }
        fn write(&self, lba: u64, data: &[u8], d: Durability) -> Result<(), BlockError> {
            self.inner.write(lba, data, d)
        }
        fn write_if_cheap(&self, lba: u64, data: &[u8]) -> bool {
            self.cached.load(Ordering::SeqCst)
                && self.inner.write(lba, data, Durability::Cached).is_ok()
        }
        fn flush(&self) -> Result<(), BlockError> {
            self.inner.flush()
        }
        fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
            self.inner.unmap(lba, blocks)
        }
    }

    fn setup(cached: bool) -> (Arc<CacheSwitch>, LunMap, Nexus) {
        let dev = Arc::new(CacheSwitch {
            inner: MemDevice::new(1024, false),
            cached: AtomicBool::new(cached),
        });
        let identity = crate::scsi::LuIdentity {
            vendor: "IRONLUN".into(),
            product: "inline".into(),
            revision: "0001".into(),
            serial: "s".into(),
            naa: crate::scsi::testutil::NAA,
        };
        let lu = LogicalUnit::new(dev.clone(), identity, LuOptions::default());
        let map = LunMap::new();
        map.insert(0, Arc::new(lu));
        let nexus = Harness::new(8, false).me;
        (dev, map, nexus)
    }

    fn read10(lba: u8, blocks: u8) -> [u8; 10] {
        [0x28, 0, 0, 0, 0, lba, 0, 0, blocks, 0]
    }

    fn req(cdb: &[u8], edtl: u32) -> CommandRequest<'_> {
        CommandRequest {
            cdb,
            edtl,
            read: true,
            write: false,
            data_out: &[],
        }
    }

    #[test]
    fn cached_read_answers_like_the_blocking_path() {
        let (dev, map, nexus) = setup(true);
        let block: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        dev.write(3, &block, Durability::Cached).unwrap();
        // The first command of a nexus reports the power-on unit attention.
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        let cdb = read10(3, 1);
        let inline = map.execute_if_cheap(0, &nexus, &req(&cdb, 512)).unwrap();
        let blocking = map.execute(0, &nexus, &req(&cdb, 512));
        assert_eq!(inline.status, status::GOOD);
        assert_eq!(&inline.data_in[..], &block[..]);
        assert_eq!(&inline.data_in[..], &blocking.data_in[..]);
        assert_eq!(inline.transfer_len, blocking.transfer_len);
    }

    #[test]
    fn uncached_read_is_left_to_the_blocking_path() {
        let (_dev, map, nexus) = setup(false);
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        let cdb = read10(0, 8);
        assert!(map.execute_if_cheap(0, &nexus, &req(&cdb, 4096)).is_none());
        let o = map.execute(0, &nexus, &req(&cdb, 4096));
        assert_eq!(o.status, status::GOOD);
        assert_eq!(o.data_in.len(), 4096);
    }

    #[test]
    fn a_pending_unit_attention_is_answered_inline_once() {
        let (_dev, map, nexus) = setup(false);
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        map.get(0).unwrap().reset(ResetKind::LogicalUnit, &nexus);
        let cdb = read10(0, 1);
        let ua = map.execute_if_cheap(0, &nexus, &req(&cdb, 512)).unwrap();
        assert_sense(&ua, 0x06, 0x29, 0x03);
        // Reported once: the data itself is not cached, so the read goes on
        // to the blocking path.
        assert!(map.execute_if_cheap(0, &nexus, &req(&cdb, 512)).is_none());
    }

    fn write10(lba: u8, blocks: u8, fua: bool) -> [u8; 10] {
        [
            0x2a,
            if fua { 0x08 } else { 0 },
            0,
            0,
            0,
            lba,
            0,
            0,
            blocks,
            0,
        ]
    }

    fn write_req<'a>(cdb: &'a [u8], data: &'a [u8]) -> CommandRequest<'a> {
        CommandRequest {
            cdb,
            edtl: data.len() as u32,
            read: false,
            write: true,
            data_out: data,
        }
    }

    fn block_at(dev: &CacheSwitch, lba: u64) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        dev.read(lba, &mut b).unwrap();
        b
    }

    #[test]
    fn cheap_write_is_answered_inline_and_lands() {
        let (dev, map, nexus) = setup(true);
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        let cdb = write10(4, 2, false);
        let o = map
            .execute_if_cheap(0, &nexus, &write_req(&cdb, &data))
            .unwrap();
        assert_eq!(o.status, status::GOOD);
        assert_eq!(o.transfer_len, 1024);
        assert_eq!(block_at(&dev, 5), data[512..].to_vec());
    }

    #[test]
    fn writes_that_would_wait_go_to_the_blocking_path_untouched() {
        let (dev, map, nexus) = setup(true);
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        let data = vec![0xabu8; 512];
        // FUA: needs a commit.
        let fua = write10(2, 1, true);
        assert!(map
            .execute_if_cheap(0, &nexus, &write_req(&fua, &data))
            .is_none());
        assert_eq!(block_at(&dev, 2), vec![0u8; 512]);
        // A range lock held (COMPARE AND WRITE or a copy in progress).
        let lu = map.get(0).unwrap();
        let held = lu.ranges.lock(2, 1);
        let plain = write10(2, 1, false);
        assert!(map
            .execute_if_cheap(0, &nexus, &write_req(&plain, &data))
            .is_none());
        drop(held);
        // The device cannot write without waiting.
        dev.cached.store(false, Ordering::SeqCst);
        assert!(map
            .execute_if_cheap(0, &nexus, &write_req(&plain, &data))
            .is_none());
        assert_eq!(block_at(&dev, 2), vec![0u8; 512]);
        // The blocking path writes it.
        let o = map.execute(0, &nexus, &write_req(&plain, &data));
        assert_eq!(o.status, status::GOOD);
        assert_eq!(block_at(&dev, 2), data);
    }

    #[test]
    fn only_plain_reads_and_writes_within_the_limit_run_inline() {
        let (_dev, map, nexus) = setup(true);
        map.execute(0, &nexus, &req(&[0, 0, 0, 0, 0, 0], 0));
        // WRITE AND VERIFY is not a plain WRITE.
        let wv = [0x2e, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(map
            .execute_if_cheap(0, &nexus, &write_req(&wv, &[0u8; 512]))
            .is_none());
        // 257 blocks of 512 bytes: just over MAX_INLINE_BYTES.
        let big = [0x28, 0, 0, 0, 0, 0, 0, 1, 1, 0];
        assert!(map
            .execute_if_cheap(0, &nexus, &req(&big, 257 * 512))
            .is_none());
        let limit = [0x28, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(map
            .execute_if_cheap(0, &nexus, &req(&limit, 256 * 512))
            .is_some());
        let tur = [0u8; 6];
        assert!(map.execute_if_cheap(0, &nexus, &req(&tur, 0)).is_none());
        assert!(map
            .execute_if_cheap(7, &nexus, &req(&read10(0, 1), 512))
            .is_none());
    }
}
