//! Mirror (6): the target follows every write of the source.
//!
//! A [`MirrorLink`] is the [`WriteObserver`] installed on the source's
//! [`ReplicaDevice`] (the device the iSCSI target serves, unchanged):
//! - **Synchronous**: the write goes to the target before the initiator's
//!   write returns (called with the source extent locked, so writes to one
//!   extent reach the target in order).
//! - **Asynchronous**: the written extents are marked in a roaring bitmap
//!   that the link's drainer thread copies (source extent locked while it
//!   reads and writes). The lag is bounded: when more than `max_dirty`
//!   extents are pending, writes go through synchronously until it drains.
//! - **Tracking** (Fractured, Split, Suspended, Inactive, Failedover, ...):
//!   writes are only marked. Stopping the flow also takes a cow snapshot of
//!   each side, so the changes on either side are known exactly (and
//!   survive a restart) and Resync copies only those.
//!
//! The target is any [`BlockDevice`]: a local volume in the same or
//! another pool today; an iSCSI LUN reached by an initiator can implement
//! the same trait. While the mirror flows the target is fenced (initiator
//! writes answer read-only); the engine writes it through the inner device.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ironlun_cow::{BlockDevice, BlockError, Durability};
use parking_lot::{Condvar, Mutex};
use roaring::RoaringBitmap;

use crate::copier::copy_range;
use crate::device::{ReplicaDevice, WriteObserver};
use crate::model::Mode;

/// Default bound on pending extents in asynchronous mode (64 MiB of 64 KiB
/// extents).
pub const DEFAULT_MAX_DIRTY: u64 = 1024;

/// Where source writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// To the target before the write returns.
    Synchronous,
    /// Marked dirty; the drainer copies them.
    Asynchronous,
    /// Marked dirty only (the flow is stopped).
    Tracking,
}

impl Flow {
    /// The active flow of a mode.
    pub fn of(mode: Mode) -> Flow {
        match mode {
            Mode::Synchronous => Flow::Synchronous,
            Mode::Asynchronous => Flow::Asynchronous,
        }
    }
}

/// One mirror's data path (see the module docs).
pub struct MirrorLink {
    /// Weak: the source device owns the link (as its observer).
    source: std::sync::Weak<ReplicaDevice>,
    extent_blocks: u64,
    block_size: u32,
    target: Arc<dyn BlockDevice>,
    flow: Mutex<Flow>,
    dirty: Mutex<RoaringBitmap>,
    wake: Condvar,
    max_dirty: u64,
    stop: AtomicBool,
    broken: AtomicBool,
    bytes_copied: AtomicU64,
}

impl MirrorLink {
    /// A link from `source` onto `target` (written directly: pass the
    /// target's inner device, not its fenced wrapper), starting in `flow`,
    /// with its drainer thread running.
    pub fn start(
        source: Arc<ReplicaDevice>,
        target: Arc<dyn BlockDevice>,
        flow: Flow,
    ) -> Arc<MirrorLink> {
        let link = Arc::new(MirrorLink {
            extent_blocks: source.extent_blocks(),
            block_size: source.geometry().block_size,
            source: Arc::downgrade(&source),
            target,
            flow: Mutex::new(flow),
            dirty: Mutex::new(RoaringBitmap::new()),
            wake: Condvar::new(),
            max_dirty: DEFAULT_MAX_DIRTY,
            stop: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            bytes_copied: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&link);
        let spawned = std::thread::Builder::new()
            .name("repl-mirror-drain".into())
            .spawn(move || drain_loop(weak));
        if let Err(e) = spawned {
            tracing::warn!(
                "replication: mirror drainer did not start ({e}); writes go synchronously"
            );
            *link.flow.lock() = Flow::Synchronous;
        }
        link
    }

    /// The current flow.
    pub fn flow(&self) -> Flow {
        *self.flow.lock()
    }

    /// Changes the flow (wakes the drainer).
    pub fn set_flow(&self, flow: Flow) {
        *self.flow.lock() = flow;
        self.wake.notify_all();
    }

    /// Extents written on the source and not yet on the target.
    pub fn dirty(&self) -> RoaringBitmap {
        self.dirty.lock().clone()
    }

    /// Adds extents to copy (e.g. a resync's set).
    pub fn mark(&self, extents: &RoaringBitmap) {
        *self.dirty.lock() |= extents;
        self.wake.notify_all();
    }

    /// Forgets pending extents (a job copies them instead).
    pub fn clear(&self, extents: &RoaringBitmap) {
        *self.dirty.lock() -= extents;
    }

    /// Whether a target write failed (the target lacks data; resync).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Clears the failure flag (a resync has copied everything since).
    pub fn reset_broken(&self) {
        self.broken.store(false, Ordering::SeqCst);
    }

    /// Bytes the link copied (synchronous forwards and drains).
    pub fn bytes_copied(&self) -> u64 {
        self.bytes_copied.load(Ordering::Relaxed)
    }

    /// Copies every pending extent now, in the caller's thread.
    pub fn drain(&self) -> Result<(), BlockError> {
        let mut buf = Vec::new();
        loop {
            // (Not `while let`: its guard would live through the body.)
            let next = self.dirty.lock().min();
            let Some(vext) = next else { break };
            self.copy_one(vext, &mut buf)?;
        }
        self.target.flush()
    }

    /// Stops the drainer thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    fn copy_one(&self, vext: u32, buf: &mut Vec<u8>) -> Result<(), BlockError> {
        let Some(source) = self.source.upgrade() else {
            return Ok(());
        };
        let _lock = source.lock_extent(vext);
        if !self.dirty.lock().remove(vext) {
            return Ok(());
        }
        match copy_range(
            source.inner().as_ref(),
            self.target.as_ref(),
            vext,
            self.extent_blocks,
            buf,
        ) {
            Ok(n) => {
                self.bytes_copied.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.dirty.lock().insert(vext);
                self.broken.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn mark_range(&self, lba: u64, blocks: u64) {
        let per = self.extent_blocks;
        let first = lba / per;
        let last = (lba + blocks.max(1) - 1) / per;
        self.dirty.lock().insert_range(first as u32..=last as u32);
        self.wake.notify_all();
    }

    fn forward<F: FnOnce() -> Result<(), BlockError>>(
        &self,
        lba: u64,
        blocks: u64,
        bytes: u64,
        f: F,
    ) {
        match f() {
            Ok(()) => {
                self.bytes_copied.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(
                    "replication: mirror target write failed ({e}); tracking the extent"
                );
                self.broken.store(true, Ordering::SeqCst);
                self.mark_range(lba, blocks);
            }
        }
    }
}

impl WriteObserver for MirrorLink {
    fn wrote(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        let blocks = (data.len() / self.block_size.max(1) as usize) as u64;
        let flow = self.flow();
        let pending = self.dirty.lock().len();
        match flow {
            Flow::Synchronous => self.forward(lba, blocks, data.len() as u64, || {
                self.target.write(lba, data, durability)
            }),
            Flow::Asynchronous if pending >= self.max_dirty => {
                self.forward(lba, blocks, data.len() as u64, || {
                    self.target.write(lba, data, durability)
                })
            }
            Flow::Asynchronous | Flow::Tracking => self.mark_range(lba, blocks),
        }
        Ok(())
    }

    fn unmapped(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        match self.flow() {
            Flow::Synchronous => self.forward(lba, blocks, 0, || self.target.unmap(lba, blocks)),
            Flow::Asynchronous | Flow::Tracking => self.mark_range(lba, blocks),
        }
        Ok(())
    }

    fn flushed(&self) -> Result<(), BlockError> {
        if self.flow() == Flow::Synchronous {
            self.target.flush()?;
        }
        Ok(())
    }
}

fn drain_loop(link: std::sync::Weak<MirrorLink>) {
    let mut buf = Vec::new();
    loop {
        let Some(link) = link.upgrade() else { return };
        if link.stop.load(Ordering::SeqCst) {
            return;
        }
        let next = {
            let mut dirty = link.dirty.lock();
            let active = *link.flow.lock() != Flow::Tracking;
            match dirty.min() {
                Some(v) if active => Some(v),
                _ => {
                    link.wake.wait_for(&mut dirty, Duration::from_millis(50));
                    None
                }
            }
        };
        if let Some(vext) = next {
            if link.copy_one(vext, &mut buf).is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---- the engine's side of mirrors ---------------------------------------

use crate::engine::{ReplicationService, Reply, State};
use crate::error::{ReplicationError, Result};
use crate::job::Work;
use crate::model::{CopyState, ProgressStatus, SyncType};
use crate::synchronization::Synchronization;
use crate::table::{Effect, Next};

impl ReplicationService {
    /// Installs the data path of mirror `sync` in `flow`.
    pub(crate) fn install_link(
        &self,
        sync: &Synchronization,
        flow: Flow,
    ) -> Result<Arc<MirrorLink>> {
        let source = self.replica_device(&sync.source)?;
        if source.has_observer() {
            return Err(ReplicationError::InUse(format!(
                "{} is already mirrored",
                sync.source
            )));
        }
        let target = self.replica_device(&sync.target)?;
        let link = MirrorLink::start(source.clone(), target.inner().clone(), flow);
        source.set_observer(Some(link.clone()));
        target.set_fenced(flow != Flow::Tracking);
        if let Some(old) = self.links.lock().insert(sync.id, link.clone()) {
            old.stop();
        }
        Ok(link)
    }

    /// Removes mirror `id`'s data path (both elements accept writes).
    /// (Called with the state locked: it must not lock it again.)
    pub(crate) fn remove_link(&self, sync: &Synchronization) {
        let Some(link) = self.links.lock().remove(&sync.id) else {
            return;
        };
        link.stop();
        if let Some(source) = link.source.upgrade() {
            source.set_observer(None);
        }
        if let Ok(t) = self.replica_device(&sync.target) {
            t.set_fenced(false);
        }
    }

    fn link(&self, id: u64) -> Result<Arc<MirrorLink>> {
        self.links
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| ReplicationError::State(format!("mirror {id} has no data path")))
    }

    /// A flowing mirror whose target write failed becomes Broken (the failed
    /// extents stay queued; Resync Replica copies them). Called with the
    /// state locked.
    pub(crate) fn note_broken_mirrors(&self, st: &mut State) {
        let links = self.links.lock();
        let mut changed = false;
        for (id, link) in links.iter() {
            if !link.is_broken() {
                continue;
            }
            if let Some(s) = st.syncs.get_mut(id) {
                if s.copy_state == CopyState::Synchronized {
                    link.set_flow(Flow::Tracking);
                    s.copy_state = CopyState::Broken;
                    s.progress = ProgressStatus::RequiresResync;
                    changed = true;
                }
            }
        }
        drop(links);
        if changed {
            if let Err(e) = self.persist(st) {
                tracing::warn!("replication: {e}");
            }
        }
    }

    /// The mirror's data path, if any (tests and benches read its counters).
    pub fn mirror_link(&self, id: u64) -> Option<Arc<MirrorLink>> {
        self.links.lock().get(&id).cloned()
    }

    /// At open: reinstall every mirror's data path. An asynchronous mirror
    /// that was flowing may have lost its in-memory dirty map: everything
    /// mapped is queued for the drainer (a full background copy).
    pub(crate) fn reconnect_mirrors(&self) -> Result<()> {
        let mirrors: Vec<Synchronization> = self
            .state
            .lock()
            .syncs
            .values()
            .filter(|s| s.sync_type == SyncType::Mirror)
            .cloned()
            .collect();
        for sync in mirrors {
            if let Err(e) = self.reconnect_mirror(&sync) {
                tracing::warn!(
                    "replication: mirror {} ({} -> {}) is Broken: {e}",
                    sync.id,
                    sync.source,
                    sync.target
                );
                let mut st = self.state.lock();
                if let Some(s) = st.syncs.get_mut(&sync.id) {
                    s.copy_state = CopyState::Broken;
                    s.progress = ProgressStatus::RequiresResync;
                }
                self.persist(&st)?;
            }
        }
        Ok(())
    }

    fn reconnect_mirror(&self, sync: &Synchronization) -> Result<()> {
        let flowing = matches!(
            sync.copy_state,
            CopyState::Synchronized | CopyState::Unsynchronized
        );
        let flow = if flowing {
            Flow::of(sync.mode)
        } else {
            Flow::Tracking
        };
        let link = self.install_link(sync, flow)?;
        if flow == Flow::Asynchronous {
            let source = self.replica_device(&sync.source)?;
            let per = source.extent_blocks();
            let all = crate::copier::mapped_extents(source.inner().as_ref(), per)?
                | crate::copier::mapped_extents(link.target.as_ref(), per)?;
            link.mark(&all);
        }
        Ok(())
    }

    /// The link, installed (tracking) if the mirror has none (a Broken
    /// mirror whose elements were missing at open).
    fn ensure_link(&self, sync: &Synchronization) -> Result<Arc<MirrorLink>> {
        match self.link(sync.id) {
            Ok(l) => Ok(l),
            Err(_) => self.install_link(sync, Flow::Tracking),
        }
    }

    /// Stops the flow (optionally draining first, under held source
    /// writes): from now on changes are tracked on both sides by cow
    /// snapshots, and the extents not yet sent are kept as `pending`.
    fn stop_flow(
        &self,
        st: &mut State,
        sync: &mut Synchronization,
        drain: bool,
        writes_held: bool,
    ) -> Result<()> {
        let link = self.ensure_link(sync)?;
        let _hold = self.hold_unless(writes_held, &sync.source)?;
        if drain && link.flow() != Flow::Tracking {
            link.drain()?;
        }
        link.set_flow(Flow::Tracking);
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        if sync.source_pits.is_empty() {
            let n = st.next_id();
            let pit = sync.source.sibling(format!(".repl-{}-pit-{n}", sync.id));
            src_pool.create_snapshot(&sync.source.name, &pit.name)?;
            sync.source_pits.push(pit);
        }
        if sync.target_mark.is_none() {
            let n = st.next_id();
            let mark = sync.target.sibling(format!(".repl-{}-mark-{n}", sync.id));
            tgt_pool.create_snapshot(&sync.target.name, &mark.name)?;
            sync.target_mark = Some(mark);
        }
        let dirty = link.dirty();
        link.clear(&dirty);
        sync.pending |= dirty;
        self.replica_device(&sync.target)?.set_fenced(false);
        Ok(())
    }

    /// Extents that differ between the two sides since the flow stopped (or
    /// everything mapped on either side when that is unknown).
    fn mirror_dirty(&self, sync: &Synchronization) -> Result<roaring::RoaringBitmap> {
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        let source = src_pool.volume(&sync.source.name)?;
        let target = tgt_pool.volume(&sync.target.name)?;
        let pit = sync
            .source_pits
            .last()
            .and_then(|p| src_pool.snapshot(&p.name).ok());
        let mark = sync
            .target_mark
            .as_ref()
            .and_then(|m| tgt_pool.snapshot(&m.name).ok());
        let link_dirty = self.link(sync.id).map(|l| l.dirty()).unwrap_or_default();
        Ok(match (pit, mark) {
            (Some(p), Some(m)) => {
                source.changed_since(p.generation())?
                    | target.changed_since(m.generation())?
                    | &sync.pending
                    | link_dirty
            }
            _ => {
                let per = self.replica_device(&sync.source)?.extent_blocks();
                crate::copier::mapped_extents(&source, per)?
                    | crate::copier::mapped_extents(&target, per)?
            }
        })
    }

    /// Restarts the flow and queues a job for what differs.
    fn start_mirror_copy(
        &self,
        st: &mut State,
        sync: &mut Synchronization,
        writes_held: bool,
        progress: ProgressStatus,
        reply: &mut Reply,
    ) -> Result<()> {
        let link = self.ensure_link(sync)?;
        let _hold = self.hold_unless(writes_held, &sync.source)?;
        let todo = self.mirror_dirty(sync)?;
        link.clear(&todo);
        sync.pending = Default::default();
        link.set_flow(Flow::of(sync.mode));
        self.replica_device(&sync.target)?.set_fenced(true);
        let job = self.new_job(
            st,
            sync,
            "ModifyReplicaSynchronization",
            Work::MirrorToTarget,
            todo,
            progress,
        );
        reply.jobs.push(job);
        Ok(())
    }

    /// A mirror's part of an allowed transition; `false` leaves the effect
    /// to the engine's common handling.
    pub(crate) fn mirror_effect(
        &self,
        st: &mut State,
        sync: &mut Synchronization,
        next: Next,
        effect: Effect,
        writes_held: bool,
        reply: &mut Reply,
    ) -> Result<bool> {
        let progress = match next {
            Next::Job { progress, .. } => progress,
            _ => ProgressStatus::Synchronizing,
        };
        match effect {
            Effect::StopFlow => self.stop_flow(st, sync, false, writes_held)?,
            Effect::DrainAndStopFlow => self.stop_flow(st, sync, true, writes_held)?,
            Effect::Failover => {
                self.stop_flow(st, sync, true, writes_held)?;
            }
            Effect::CopyToTarget => {
                self.start_mirror_copy(st, sync, writes_held, progress, reply)?
            }
            Effect::CopyToSource | Effect::Failback => {
                let todo = self.mirror_dirty(sync)?;
                sync.pending = Default::default();
                self.replica_device(&sync.target)?.set_fenced(true);
                let job = self.new_job(
                    st,
                    sync,
                    "ModifyReplicaSynchronization",
                    Work::CopyToSource {
                        from: sync.target.clone(),
                    },
                    todo,
                    progress,
                );
                reply.jobs.push(job);
            }
            Effect::StopCopy => {
                if let Some(j) = sync.job.and_then(|j| st.jobs.get(&j.0)) {
                    let left = j.remaining.clone();
                    sync.pending |= left;
                }
                self.stop_flow(st, sync, false, writes_held)?;
                return Ok(false);
            }
            Effect::SuspendCopy if sync.job.is_none() => {
                self.stop_flow(st, sync, false, writes_held)?;
                sync.when_suspended = Some(crate::job::now_ms());
                sync.progress = ProgressStatus::Dormant;
            }
            Effect::ResumeCopy if sync.job.is_none() => {
                self.start_mirror_copy(st, sync, writes_held, ProgressStatus::Resyncing, reply)?;
            }
            Effect::SetMode(m) => {
                sync.mode = m;
                if let Ok(link) = self.link(sync.id) {
                    if link.flow() != Flow::Tracking {
                        link.set_flow(Flow::of(m));
                    }
                }
            }
            Effect::SwapRoles => self.reverse_roles(st, sync, next)?,
            Effect::Forget | Effect::Dissolve => {
                self.remove_link(sync);
                return Ok(false);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn reverse_roles(&self, st: &mut State, sync: &mut Synchronization, next: Next) -> Result<()> {
        let link = self.ensure_link(sync)?;
        let pair = [sync.source.clone(), sync.target.clone()];
        let _hold = self.hold_writes(&pair)?;
        let flowing = link.flow() != Flow::Tracking;
        if flowing {
            link.drain()?;
        }
        self.remove_link(sync);
        std::mem::swap(&mut sync.source, &mut sync.target);
        let old_pits = std::mem::take(&mut sync.source_pits);
        let old_mark = sync.target_mark.take();
        let src_pool = self.pool(&sync.target.pool)?.clone();
        let (current, older) = old_pits
            .split_last()
            .map_or((None, &[][..]), |(l, r)| (Some(l.clone()), r));
        for p in older {
            let _ = src_pool.delete_snapshot(&p.name);
        }
        sync.source_pits = old_mark.into_iter().collect();
        sync.target_mark = current;
        let keep_flowing =
            flowing && next == Next::Unchanged && sync.copy_state == CopyState::Synchronized;
        let flow = if keep_flowing {
            Flow::of(sync.mode)
        } else {
            Flow::Tracking
        };
        let _ = st;
        self.install_link(sync, flow)?;
        Ok(())
    }

    /// A mirror's copy job completed: the flow runs, the tracking
    /// snapshots go.
    pub(crate) fn mirror_synchronized(
        &self,
        _st: &mut State,
        sync: &mut Synchronization,
    ) -> Result<()> {
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        if let Ok(link) = self.link(sync.id) {
            link.reset_broken();
            link.set_flow(Flow::of(sync.mode));
        }
        self.replica_device(&sync.target)?.set_fenced(true);
        for p in sync.source_pits.drain(..) {
            let _ = src_pool.delete_snapshot(&p.name);
        }
        if let Some(m) = sync.target_mark.take() {
            let _ = tgt_pool.delete_snapshot(&m.name);
        }
        sync.pending = Default::default();
        Ok(())
    }
}
