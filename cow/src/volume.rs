//! Volume and snapshot handles: the data path, and [`BlockDevice`] on top.
//!
//! A handle is `Arc<Pool>` plus ids, cheap to clone, `Send + Sync`. Data I/O
//! never holds the metadata lock: a write takes the stripe lock of each
//! extent it touches (so two writes into one extent cannot both redirect
//! it), plans under the metadata lock, does the I/O unlocked, and records
//! a new mapping under the lock again.
//!
//! An extent whose live mapping is born after the volume's newest snapshot
//! is owned by the live head alone and is overwritten in place. Any other
//! write is redirected: a new extent gets the written blocks plus a copy of
//! the untouched blocks of the old extent (zeros where there was none), and
//! a `Map` record retires the old mapping. No sync is added: durability
//! comes from FUA or `flush` like any other write.

use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::block_device::{
    BlockDevice, BlockError, Durability, Geometry, Provisioning, ProvisioningRun,
};
use crate::error::{Error, Result};
use crate::format::{Record, TOMBSTONE};
use crate::meta::LIVE;
use crate::pool::Pool;

/// A writable volume (or clone).
#[derive(Clone)]
pub struct Volume {
    pool: Arc<Pool>,
    id: u64,
    geometry: Geometry,
}

/// A read-only snapshot view.
#[derive(Clone)]
pub struct Snapshot {
    pool: Arc<Pool>,
    vol: u64,
    gen: u64,
    geometry: Geometry,
}

fn geometry(pool: &Pool, size: u64) -> Geometry {
    let l = pool.layout;
    Geometry {
        block_size: l.block_size,
        blocks: size / l.block_size as u64,
        thin: true,
        unmap_granularity_blocks: l.extent_size / l.block_size,
    }
}

/// One piece of an I/O that falls in a single extent.
struct Piece {
    vext: u64,
    /// Byte offset inside the extent.
    offset: usize,
    /// Byte range inside the caller's buffer.
    start: usize,
    len: usize,
}

fn pieces(pool: &Pool, lba: u64, len: usize) -> impl Iterator<Item = Piece> {
    let e = pool.layout.extent_size as u64;
    let mut byte = lba * pool.layout.block_size as u64;
    let end = byte + len as u64;
    let first = byte;
    std::iter::from_fn(move || {
        if byte >= end {
            return None;
        }
        let vext = byte / e;
        let offset = byte % e;
        let n = (e - offset).min(end - byte);
        let p = Piece {
            vext,
            offset: offset as usize,
            start: (byte - first) as usize,
            len: n as usize,
        };
        byte += n;
        Some(p)
    })
}

fn io_read(e: std::io::Error) -> BlockError {
    BlockError::Read(e)
}

impl Pool {
    fn read_view(&self, vol: u64, at: u64, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check_usable()?;
        let _gate = self.gate.read();
        for p in pieces(self, lba, buf.len()) {
            let pext = self.state.read().meta.lookup(vol, p.vext, at)?;
            let out = &mut buf[p.start..p.start + p.len];
            match pext {
                Some(pext) => self
                    .backend
                    .read_at(out, self.layout.extent_offset(pext) + p.offset as u64)
                    .map_err(io_read)?,
                None => out.fill(0),
            }
        }
        Ok(())
    }

    /// [`Pool::read_view`] only if no piece needs a wait for the disk
    /// (see [`BlockDevice::read_if_cached`]).
    fn read_view_if_cached(&self, vol: u64, at: u64, lba: u64, buf: &mut [u8]) -> bool {
        if self.check_usable().is_err() {
            return false;
        }
        // Never wait here (the caller is a connection's task): a lock
        // someone holds or waits for sends the read the slow way.
        let Some(_gate) = self.gate.try_read() else {
            return false;
        };
        for p in pieces(self, lba, buf.len()) {
            let Some(st) = self.state.try_read() else {
                return false;
            };
            let Ok(pext) = st.meta.lookup(vol, p.vext, at) else {
                return false;
            };
            drop(st);
            let out = &mut buf[p.start..p.start + p.len];
            match pext {
                Some(pext) => {
                    let at = self.layout.extent_offset(pext) + p.offset as u64;
                    if self.backend.try_read_at(out, at).is_none() {
                        return false;
                    }
                }
                None => out.fill(0),
            }
        }
        true
    }

    /// Writes `data` into one extent of `vol`. The caller holds the gate.
    fn write_piece(&self, vol: u64, vext: u64, offset: usize, data: &[u8]) -> Result<()> {
        let _stripe = self.stripe(vol, vext).lock();
        enum Plan {
            InPlace(u64),
            Redirect { new: u64, src: Option<u64> },
        }
        let owned = |st: &crate::pool::State| -> Result<Option<u64>> {
            let vm = st.meta.vol(vol)?;
            Ok(match vm.live.get(&vext) {
                // A borrowed extent (copy offload) is never written in place.
                Some(l)
                    if l.pext != TOMBSTONE
                        && !crate::range_share::is_borrow(l.pext)
                        && vm.newest_snap().is_none_or(|s| l.birth > s) =>
                {
                    Some(l.pext)
                }
                _ => None,
            })
        };
        // Fast path under the shared lock: an extent the head owns alone.
        let fast = owned(&self.state.read())?;
        let plan = match fast {
            Some(pext) => Plan::InPlace(pext),
            None => {
                // The stripe lock keeps this extent's mapping stable; only a
                // snapshot delete can have made it private meanwhile.
                let mut st = self.state.write();
                match owned(&st)? {
                    Some(pext) => Plan::InPlace(pext),
                    None => {
                        let src = st.meta.lookup(vol, vext, LIVE)?;
                        let new = st.meta.free.min().ok_or(Error::NoSpace)?;
                        st.meta.free.remove(new);
                        st.meta.reserved.insert(new);
                        Plan::Redirect {
                            new: new as u64,
                            src,
                        }
                    }
                }
            }
        };
        let e = self.layout.extent_size as usize;
        match plan {
            Plan::InPlace(pext) => {
                self.backend
                    .write_at(data, self.layout.extent_offset(pext) + offset as u64)?;
                Ok(())
            }
            Plan::Redirect { new, src } => {
                let io = (|| -> std::io::Result<()> {
                    if data.len() == e {
                        return self.backend.write_at(data, self.layout.extent_offset(new));
                    }
                    let mut buf = vec![0u8; e];
                    if let Some(src) = src {
                        // Copy only the blocks this write does not cover.
                        let base = self.layout.extent_offset(src);
                        self.backend.read_at(&mut buf[..offset], base)?;
                        let tail = offset + data.len();
                        self.backend.read_at(&mut buf[tail..], base + tail as u64)?;
                    }
                    buf[offset..offset + data.len()].copy_from_slice(data);
                    self.backend.write_at(&buf, self.layout.extent_offset(new))
                })();
                let mut st = self.state.write();
                let logged = io.map_err(Error::Io).and_then(|()| {
                    let birth = st.meta.gen;
                    self.log(
                        &mut st,
                        Record::Map {
                            vol,
                            vext,
                            pext: new,
                            birth,
                        },
                    )
                });
                if logged.is_err() && st.meta.reserved.remove(new as u32) {
                    st.meta.free.insert(new as u32);
                }
                logged
            }
        }
    }

    fn write_volume(
        &self,
        vol: u64,
        g: &Geometry,
        lba: u64,
        data: &[u8],
        durability: Durability,
    ) -> Result<(), BlockError> {
        let blocks = g.blocks_in(data.len())?;
        g.check_range(lba, blocks)?;
        self.check_writable()?;
        let mut all = pieces(self, lba, data.len()).peekable();
        let mut retried = false;
        while all.peek().is_some() {
            let stalled = {
                let _gate = self.gate.read();
                let mut stalled = false;
                while let Some(p) = all.peek() {
                    match self.write_piece(vol, p.vext, p.offset, &data[p.start..p.start + p.len]) {
                        Ok(()) => {
                            all.next();
                        }
                        Err(Error::NoSpace) if !retried => {
                            stalled = true;
                            break;
                        }
                        Err(e) => return Err(write_err(e)),
                    }
                }
                stalled
            };
            if stalled {
                // Extents freed by records not yet durable become
                // allocatable at the next commit: make it, then retry once.
                retried = true;
                self.reclaim_all();
                self.commit().map_err(write_err)?;
            }
        }
        match durability {
            Durability::ForceUnitAccess => self.commit().map_err(write_err),
            Durability::Cached => self.maybe_commit().map_err(write_err),
        }
    }

    fn unmap_volume(
        &self,
        vol: u64,
        g: &Geometry,
        lba: u64,
        blocks: u64,
    ) -> Result<(), BlockError> {
        g.check_range(lba, blocks)?;
        self.check_writable()?;
        let bs = g.block_size as usize;
        let e = self.layout.extent_size as usize;
        {
            let _gate = self.gate.read();
            for p in pieces(self, lba, (blocks as usize) * bs) {
                let mapped = self.state.read().meta.lookup(vol, p.vext, LIVE)?.is_some();
                if !mapped {
                    continue;
                }
                if p.len == e {
                    let _stripe = self.stripe(vol, p.vext).lock();
                    let mut st = self.state.write();
                    self.log(&mut st, Record::Unmap { vol, vext: p.vext })?;
                } else {
                    let zeros = vec![0u8; p.len];
                    self.write_piece(vol, p.vext, p.offset, &zeros)
                        .map_err(write_err)?;
                }
            }
        }
        self.maybe_commit().map_err(write_err)
    }

    fn provisioning_view(
        &self,
        vol: u64,
        at: u64,
        g: &Geometry,
        lba: u64,
    ) -> Result<ProvisioningRun, BlockError> {
        g.check_range(lba, 1)?;
        let per = (self.layout.extent_size / g.block_size) as u64;
        let st = self.state.read();
        let first = lba / per;
        let last = (g.blocks - 1) / per;
        let state_of = |vext: u64| -> Result<Provisioning, BlockError> {
            Ok(match st.meta.lookup(vol, vext, at)? {
                Some(_) => Provisioning::Mapped,
                None => Provisioning::Deallocated,
            })
        };
        let state = state_of(first)?;
        let mut vext = first + 1;
        // Bound the walk; the initiator asks again from where the run ends.
        while vext <= last && vext - first < (1 << 16) && state_of(vext)? == state {
            vext += 1;
        }
        let end = (vext * per).min(g.blocks);
        Ok(ProvisioningRun {
            lba,
            blocks: end - lba,
            state,
        })
    }
}

fn write_err(e: Error) -> BlockError {
    match e {
        Error::Io(e) => BlockError::Write(e),
        other => other.into(),
    }
}

impl Volume {
    pub(crate) fn new(pool: Arc<Pool>, id: u64, size: u64) -> Volume {
        let geometry = geometry(&pool, size);
        Volume { pool, id, geometry }
    }

    /// The pool this volume lives in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The volume's id in the pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.blocks * self.geometry.block_size as u64
    }

    /// The volume's name (an error if it was deleted).
    pub fn name(&self) -> Result<String> {
        Ok(self.pool.state.read().meta.vol(self.id)?.name.clone())
    }

    /// Takes a snapshot named `name`: O(1), durable on return.
    pub fn snapshot(&self, name: &str) -> Result<Snapshot> {
        self.pool.snapshot_of(self.id, name, true)
    }

    /// Takes a snapshot named `name` that becomes durable with the pool's
    /// next commit (see [`Pool::create_snapshot_deferred`]): O(1), no I/O.
    pub fn snapshot_deferred(&self, name: &str) -> Result<Snapshot> {
        self.pool.snapshot_of(self.id, name, false)
    }

    /// The generation a snapshot taken now would record.
    pub fn current_generation(&self) -> u64 {
        self.pool.state.read().meta.gen
    }

    /// Virtual extents whose content may differ from the snapshot at
    /// generation `gen` (exact for generations of snapshots that still
    /// exist; for a clone, relative to its origin where `gen` predates it).
    pub fn changed_since(&self, gen: u64) -> Result<RoaringBitmap> {
        let st = self.pool.state.read();
        let vm = st.meta.vol(self.id)?;
        let mut out = RoaringBitmap::new();
        for (vext, l) in &vm.live {
            if l.birth > gen {
                out.insert(*vext as u32);
            }
        }
        for (death, vext, _) in vm.dead_by_death.range((gen.saturating_add(1), 0, 0)..) {
            let _ = death;
            out.insert(*vext as u32);
        }
        Ok(out)
    }
    /// Virtual extents whose content may differ between the snapshots at
    /// generations `from` and `to` of this volume (`from < to`; [`u64::MAX`]
    /// for `to` means the live head): mappings born, or retired, after
    /// `from` and no later than `to`. For incremental copies and resync.
    pub fn changed_between(&self, from: u64, to: u64) -> Result<RoaringBitmap> {
        let st = self.pool.state.read();
        let vm = st.meta.vol(self.id)?;
        let within = |g: u64| g > from && g <= to;
        let mut out = RoaringBitmap::new();
        for (vext, l) in &vm.live {
            if within(l.birth) {
                out.insert(*vext as u32);
            }
        }
        for ((vext, birth), d) in &vm.dead {
            if within(*birth) || within(d.death) {
                out.insert(*vext as u32);
            }
        }
        Ok(out)
    }
}

impl Snapshot {
    pub(crate) fn new(pool: Arc<Pool>, vol: u64, gen: u64, size: u64) -> Snapshot {
        let geometry = geometry(&pool, size);
        Snapshot {
            pool,
            vol,
            gen,
            geometry,
        }
    }

    /// The generation this snapshot froze.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Id of the volume it is a snapshot of.
    pub fn volume_id(&self) -> u64 {
        self.vol
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.blocks * self.geometry.block_size as u64
    }

    fn alive(&self) -> Result<(), BlockError> {
        let st = self.pool.state.read();
        match st.meta.vols.get(&self.vol) {
            Some(v) if v.snaps.contains_key(&self.gen) => Ok(()),
            _ => Err(Error::Deleted("snapshot").into()),
        }
    }
}

impl BlockDevice for Volume {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.geometry.blocks_in(buf.len())?;
        self.geometry.check_range(lba, blocks)?;
        self.pool.read_view(self.id, LIVE, lba, buf)
    }

    fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
        let in_range = self
            .geometry
            .blocks_in(buf.len())
            .and_then(|blocks| self.geometry.check_range(lba, blocks));
        in_range.is_ok() && self.pool.read_view_if_cached(self.id, LIVE, lba, buf)
    }

    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        self.pool
            .write_volume(self.id, &self.geometry, lba, data, durability)
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.pool.commit().map_err(write_err)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.pool.unmap_volume(self.id, &self.geometry, lba, blocks)
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.pool
            .provisioning_view(self.id, LIVE, &self.geometry, lba)
    }

    fn extent_source(&self) -> Option<crate::ExtentSource> {
        Some(crate::range_share::source_of(&self.pool, self.id, LIVE))
    }

    fn share_range(
        &self,
        source: &crate::ExtentSource,
        src_lba: u64,
        dst_lba: u64,
        blocks: u64,
    ) -> Result<bool, BlockError> {
        self.pool
            .share_blocks(self.id, &self.geometry, source, src_lba, dst_lba, blocks)
    }
}

impl BlockDevice for Snapshot {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read_only(&self) -> bool {
        true
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.geometry.blocks_in(buf.len())?;
        self.geometry.check_range(lba, blocks)?;
        self.alive()?;
        self.pool.read_view(self.vol, self.gen, lba, buf)
    }

    fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
        let in_range = self
            .geometry
            .blocks_in(buf.len())
            .and_then(|blocks| self.geometry.check_range(lba, blocks));
        in_range.is_ok()
            && self.alive().is_ok()
            && self.pool.read_view_if_cached(self.vol, self.gen, lba, buf)
    }

    fn write(&self, _lba: u64, _data: &[u8], _d: Durability) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    fn unmap(&self, _lba: u64, _blocks: u64) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn write_zeroes(&self, _lba: u64, _blocks: u64, _may_unmap: bool) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.alive()?;
        self.pool
            .provisioning_view(self.vol, self.gen, &self.geometry, lba)
    }

    fn extent_source(&self) -> Option<crate::ExtentSource> {
        Some(crate::range_share::source_of(
            &self.pool, self.vol, self.gen,
        ))
    }
}
