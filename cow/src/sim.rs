//! A power-loss simulator: an in-memory [`Backend`] that keeps synced and
//! unsynced writes apart.
//!
//! Every `write_at` and `sync` is an *I/O point*. With [`SimBackend::crash_at`]
//! set, the store "loses power" when that point is reached: the call and
//! every later one fail. [`SimBackend::crash_image`] then builds what a disk
//! could hold after the power cut: everything written before the last
//! completed `sync`, plus a seeded random subset of the writes after it,
//! applied in a random order, some of them torn (only some of their
//! 512-byte sectors land).

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::Backend;

/// Sector size at which the simulator tears writes.
pub const SECTOR: usize = 512;

struct State {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    points: u64,
    crash_at: Option<u64>,
    crashed: bool,
}

/// The in-memory simulated disk. Clones share the same disk, so a test can
/// keep a handle while a pool owns another.
#[derive(Clone)]
pub struct SimBackend {
    state: Arc<Mutex<State>>,
}

/// A small deterministic generator (splitmix64), so tests need no RNG crate.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimBackend {
    /// An all-zero disk of `len` bytes.
    pub fn new(len: u64) -> SimBackend {
        SimBackend::from_image(vec![0; len as usize])
    }

    /// A disk whose durable content is `image` (e.g. a crash image).
    pub fn from_image(image: Vec<u8>) -> SimBackend {
        SimBackend {
            state: Arc::new(Mutex::new(State {
                current: image.clone(),
                durable: image,
                pending: Vec::new(),
                points: 0,
                crash_at: None,
                crashed: false,
            })),
        }
    }

    /// Loses power when I/O point number `point` (counting from 0, over
    /// writes and syncs) is reached.
    pub fn crash_at(&self, point: u64) {
        self.state.lock().crash_at = Some(point);
    }

    /// Loses power now.
    pub fn crash_now(&self) {
        self.state.lock().crashed = true;
    }

    /// How many I/O points (writes and syncs) have run so far.
    pub fn points(&self) -> u64 {
        self.state.lock().points
    }

    /// Whether the power has been lost.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// What the disk could hold after the power cut: all synced writes plus
    /// a `seed`-chosen, reordered, possibly torn subset of the rest.
    pub fn crash_image(&self, seed: u64) -> Vec<u8> {
        let st = self.state.lock();
        let mut rng = SplitMix(seed);
        let mut image = st.durable.clone();
        let mut chosen: Vec<&(u64, Vec<u8>)> =
            st.pending.iter().filter(|_| rng.below(2) == 0).collect();
        // Fisher-Yates shuffle: unsynced writes may land in any order.
        for i in (1..chosen.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            chosen.swap(i, j);
        }
        for (offset, data) in chosen {
            let torn = rng.below(4) == 0;
            let start = *offset as usize;
            let mut at = 0;
            while at < data.len() {
                // Tear at sector boundaries of the device, not of the write.
                let abs = start + at;
                let next_boundary = (abs / SECTOR + 1) * SECTOR;
                let n = (next_boundary - abs).min(data.len() - at);
                if !torn || rng.below(2) == 0 {
                    image[abs..abs + n].copy_from_slice(&data[at..at + n]);
                }
                at += n;
            }
        }
        image
    }

    /// The disk as a process reading it right now would see it (all
    /// completed writes), as after a clean shutdown or a kill -9.
    pub fn current_image(&self) -> Vec<u8> {
        self.state.lock().current.clone()
    }

    fn point(st: &mut State) -> io::Result<()> {
        if st.crashed {
            return Err(power_lost());
        }
        if st.crash_at == Some(st.points) {
            st.crashed = true;
            return Err(power_lost());
        }
        st.points += 1;
        Ok(())
    }
}

impl Backend for SimBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.state.lock();
        if st.crashed {
            return Err(power_lost());
        }
        let start = offset as usize;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= st.current.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))?;
        buf.copy_from_slice(&st.current[start..end]);
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        SimBackend::point(&mut st)?;
        let start = offset as usize;
        let end = start + data.len();
        if end > st.current.len() {
            return Err(io::Error::other("write past end of simulated disk"));
        }
        st.current[start..end].copy_from_slice(data);
        st.pending.push((offset, data.to_vec()));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        SimBackend::point(&mut st)?;
        let pending = std::mem::take(&mut st.pending);
        for (offset, data) in pending {
            let start = offset as usize;
            st.durable[start..start + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        if (st.current.len() as u64) < len {
            // Fresh zeroed allocations: `resize` fills byte by byte, which
            // dominates debug-build test time.
            let st = &mut *st;
            for v in [&mut st.current, &mut st.durable] {
                let mut grown = vec![0u8; len as usize];
                grown[..v.len()].copy_from_slice(v);
                *v = grown;
            }
        }
        Ok(())
    }
}
