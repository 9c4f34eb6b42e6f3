//! Fault injection for tests: a backend that answers slowly.
//!
//! `IRONLUN_TEST_BACKEND_DELAY_MS=N` in the environment of `ironlun serve`
//! makes every read, write and flush of every LUN take at least N ms more,
//! so tests can show that task management (ABORT TASK, LUN RESET) is
//! answered while the backend still holds a command. The server logs a
//! warning when it is on; nothing else changes.

use std::sync::Arc;
use std::time::Duration;

use ironlun_cow::{BlockDevice, BlockError, Durability, ExtentSource, Geometry, ProvisioningRun};

/// The environment variable that turns the delay on.
pub const BACKEND_DELAY_ENV: &str = "IRONLUN_TEST_BACKEND_DELAY_MS";

/// The injected delay, if the environment asks for one.
pub fn backend_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(BACKEND_DELAY_ENV).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// `device`, slowed down when the environment asks for it.
pub fn maybe_slow(device: Arc<dyn BlockDevice>) -> Arc<dyn BlockDevice> {
    match backend_delay() {
        Some(delay) => Arc::new(SlowDevice {
            inner: device,
            delay,
        }),
        None => device,
    }
}

/// A device whose data operations sleep `delay` before they run.
struct SlowDevice {
    inner: Arc<dyn BlockDevice>,
    delay: Duration,
}

impl BlockDevice for SlowDevice {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        std::thread::sleep(self.delay);
        self.inner.read(lba, buf)
    }

    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        std::thread::sleep(self.delay);
        self.inner.write(lba, data, durability)
    }

    fn flush(&self) -> Result<(), BlockError> {
        std::thread::sleep(self.delay);
        self.inner.flush()
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        std::thread::sleep(self.delay);
        self.inner.unmap(lba, blocks)
    }

    fn write_zeroes(&self, lba: u64, blocks: u64, may_unmap: bool) -> Result<(), BlockError> {
        std::thread::sleep(self.delay);
        self.inner.write_zeroes(lba, blocks, may_unmap)
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.inner.provisioning(lba)
    }

    fn extent_source(&self) -> Option<ExtentSource> {
        // Copy offload must see the data path (and its delay).
        None
    }
}
