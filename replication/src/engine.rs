//! [`ReplicationService`]: the engine behind CreateElementReplica and
//! ModifyReplicaSynchronization (groups and aspects add their methods in
//! [`crate::group`] and [`crate::aspect`]).
//!
//! Every method validates synchronously (errors carry their return code,
//! see [`ReplicationError::code`]), asks [`crate::table::decide`] whether
//! the operation is valid, applies the effect, persists the state file and
//! answers a [`Reply`]: 0 Completed, 4096 Job Started, or 3 Timeout when a
//! WaitForCopyState ran out (the job continues).
//!
//! How each SyncType maps onto `cow`:
//! - Snapshot: the target *is* a cow snapshot of the source (read-only,
//!   O(1)). Resync re-takes it under the same name; Restore copies back only
//!   the extents the source changed since the snapshot's generation.
//! - Clone: a hidden cow snapshot of the source (the point in time) and a
//!   cow clone of it as the target, usable at once; a job copies every
//!   extent the target still shares, making its data independent. A target
//!   in another pool is a new volume filled by the same job (usable once
//!   Synchronized). When synchronized, a hidden mark snapshot of the target
//!   records the state, so Resync copies only extents changed on either
//!   side since then.
//! - Mirror: a new (or given, same-size) volume in any pool; the
//!   [`crate::mirror::MirrorLink`] on the source's [`ReplicaDevice`]
//!   forwards (synchronous) or queues (asynchronous) every write while a
//!   job copies what the target lacks; see [`crate::mirror`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlun_cow::{BlockDevice, Pool};
use parking_lot::{Condvar, Mutex};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::copier::{copy_extent, copy_range, mapped_extents};
use crate::device::ReplicaDevice;
use crate::error::{ReplicationError, Result};
use crate::job::{now_ms, Command, Job, JobControl, JobId, Work, DEFAULT_TIME_BEFORE_REMOVAL};
use crate::model::{
    CimValue, CopyState, JobRequest, JobState, Mode, Operation, ProgressStatus, ReturnCode,
    SyncType,
};
use crate::synchronization::{
    ElementRef, GroupSynchronization, Synchronization, SynchronizationAspect,
};
use crate::table::{decide, Decision, Effect, Next};

/// Extents a job copies between progress updates.
const BATCH: usize = 16;
/// How often a running job rewrites the state file.
const PERSIST_EVERY: Duration = Duration::from_millis(500);
/// Names of the engine's hidden snapshots start with this.
pub const HIDDEN_PREFIX: &str = ".repl-";
/// The longest WaitForCopyState the engine accepts.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// What a method answers when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// 0 Completed, 4096 Job Started, or 3 Timeout (WaitForCopyState).
    pub code: Option<ReturnCode>,
    /// The jobs started (one per pair; several for a group).
    pub jobs: Vec<JobId>,
    /// The synchronization created or changed (element or group id).
    pub synchronization: Option<u64>,
    /// The targets created.
    pub targets: Vec<ElementRef>,
    /// Dissolve of a snapshot: the aspect that now holds its point in time.
    pub settings_state: Option<u64>,
}

impl Reply {
    /// The return code (0 when unset).
    pub fn code(&self) -> ReturnCode {
        self.code.unwrap_or(ReturnCode::Completed)
    }
}

/// WaitForCopyState: wait until this CopyState, at most `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFor {
    pub state: CopyState,
    pub timeout: Duration,
}

/// CreateElementReplica's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementReplicaRequest {
    /// ElementName: the new target's name (generated when absent).
    pub element_name: Option<String>,
    pub sync_type: SyncType,
    /// `None`: the engine decides (Asynchronous).
    pub mode: Option<Mode>,
    pub source: ElementRef,
    /// An existing target (clone only: a volume of the source's size).
    pub target: Option<ElementRef>,
    /// TargetPool: where a new target goes (default: the source's pool).
    pub target_pool: Option<String>,
    pub wait_for: Option<WaitFor>,
}

impl ElementReplicaRequest {
    /// A request with only the required parameters.
    pub fn new(sync_type: SyncType, source: ElementRef) -> ElementReplicaRequest {
        ElementReplicaRequest {
            element_name: None,
            sync_type,
            mode: None,
            source,
            target: None,
            target_pool: None,
            wait_for: None,
        }
    }
}

/// The persisted state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub next_id: u64,
    pub syncs: BTreeMap<u64, Synchronization>,
    pub jobs: BTreeMap<u64, Job>,
    pub groups: BTreeMap<u64, GroupSynchronization>,
    pub aspects: BTreeMap<u64, SynchronizationAspect>,
    /// Groups of elements made by CreateGroup.
    #[serde(default)]
    pub element_groups: BTreeMap<u64, crate::synchronization::ElementGroup>,
    /// Hidden snapshots no record owns any more that cow cannot delete yet
    /// (a detached clone's origin).
    pub retained: Vec<ElementRef>,
    /// Bytes moved by every job so far.
    pub bytes_copied: u64,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The replication engine over a set of named cow pools.
pub struct ReplicationService {
    pools: BTreeMap<String, Arc<Pool>>,
    state_path: PathBuf,
    pub(crate) state: Mutex<State>,
    changed: Condvar,
    /// Volume id (in its pool) and device, per element: a volume deleted
    /// and created again under the same name gets a new device.
    devices: Mutex<HashMap<ElementRef, (u64, Arc<ReplicaDevice>)>>,
    controls: Mutex<HashMap<JobId, Arc<JobControl>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Mirror links by synchronization id.
    pub(crate) links: Mutex<HashMap<u64, Arc<crate::mirror::MirrorLink>>>,
    /// Pause between copy batches (a rate limit; 0 = full speed).
    copy_delay: Mutex<Duration>,
    /// Told when replica elements are made, re-created or deleted.
    observer: Mutex<Option<Arc<dyn crate::observer::ElementObserver>>>,
}

impl ReplicationService {
    /// Opens the engine over `pools` (name -> pool), with its state file at
    /// `state_path`; unfinished jobs resume where they stopped.
    pub fn open(
        pools: impl IntoIterator<Item = (String, Arc<Pool>)>,
        state_path: impl AsRef<Path>,
    ) -> Result<Arc<ReplicationService>> {
        let state_path = state_path.as_ref().to_path_buf();
        let state: State = crate::persist::load(&state_path)?.unwrap_or_default();
        let svc = Arc::new(ReplicationService {
            pools: pools.into_iter().collect(),
            state_path,
            state: Mutex::new(state),
            changed: Condvar::new(),
            devices: Mutex::new(HashMap::new()),
            controls: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            links: Mutex::new(HashMap::new()),
            copy_delay: Mutex::new(Duration::ZERO),
            observer: Mutex::new(None),
        });
        let unfinished: Vec<(JobId, JobState)> = svc
            .state
            .lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_final())
            .map(|j| (j.id, j.state))
            .collect();
        svc.reconnect_mirrors()?;
        for (id, state) in unfinished {
            tracing::info!("replication: resuming {id} ({state})");
            svc.spawn_job(id, state == JobState::Suspended, true);
        }
        Ok(svc)
    }

    /// Stops every job thread where it is (job records stay as they are, so
    /// the next [`ReplicationService::open`] resumes them) and waits for them.
    pub fn shutdown(&self) {
        for c in self.controls.lock().values() {
            c.set(Command::Shutdown);
        }
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        for link in self.links.lock().values() {
            if let Err(e) = link.drain() {
                tracing::warn!("replication: draining a mirror at shutdown: {e}");
            }
            link.stop();
        }
        let st = self.state.lock();
        if let Err(e) = self.persist(&st) {
            tracing::warn!("replication: {e}");
        }
    }

    /// Sets a pause between copy batches of every job (a rate limit for
    /// background copies; tests use it to observe the copying states).
    pub fn set_copy_delay(&self, delay: Duration) {
        *self.copy_delay.lock() = delay;
    }

    /// The names the pools were registered under.
    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// The pool registered as `name`.
    pub fn pool(&self, name: &str) -> Result<&Arc<Pool>> {
        self.pools
            .get(name)
            .ok_or_else(|| ReplicationError::InvalidParameter(format!("no pool named {name:?}")))
    }

    /// The block device to serve `element` from: replicated volumes come
    /// wrapped in their [`ReplicaDevice`] (always the same one), snapshots
    /// as read-only cow devices.
    pub fn device(&self, element: &ElementRef) -> Result<Arc<dyn BlockDevice>> {
        let pool = self.pool(&element.pool)?;
        if pool.volume(&element.name).is_ok() {
            Ok(self.replica_device(element)?)
        } else {
            Ok(pool.device(&element.name)?)
        }
    }

    /// The [`ReplicaDevice`] of volume `element`.
    pub fn replica_device(&self, element: &ElementRef) -> Result<Arc<ReplicaDevice>> {
        let pool = self.pool(&element.pool)?;
        let vol = pool.volume(&element.name)?;
        let mut devices = self.devices.lock();
        if let Some((id, d)) = devices.get(element) {
            if *id == vol.id() {
                return Ok(d.clone());
            }
        }
        let id = vol.id();
        let d = Arc::new(ReplicaDevice::new(Arc::new(vol), pool.info().extent_size));
        devices.insert(element.clone(), (id, d.clone()));
        Ok(d)
    }

    /// Every synchronization.
    pub fn synchronizations(&self) -> Vec<Synchronization> {
        let mut st = self.state.lock();
        self.note_broken_mirrors(&mut st);
        st.syncs.values().cloned().collect()
    }

    /// One synchronization.
    pub fn synchronization(&self, id: u64) -> Option<Synchronization> {
        let mut st = self.state.lock();
        self.note_broken_mirrors(&mut st);
        st.syncs.get(&id).cloned()
    }

    /// Every job record still kept (finished ones until TimeBeforeRemoval).
    pub fn jobs(&self) -> Vec<Job> {
        let mut st = self.state.lock();
        let now = now_ms();
        st.jobs.retain(|_, j| !j.expired(now));
        st.jobs.values().cloned().collect()
    }

    /// One job record.
    pub fn job(&self, id: JobId) -> Option<Job> {
        self.state.lock().jobs.get(&id.0).cloned()
    }

    /// Bytes moved by all jobs since the state file was created.
    pub fn bytes_copied(&self) -> u64 {
        self.state.lock().bytes_copied
    }

    /// Hidden snapshots the engine keeps because cow cannot drop them yet.
    pub fn retained(&self) -> Vec<ElementRef> {
        self.state.lock().retained.clone()
    }

    pub(crate) fn persist(&self, st: &State) -> Result<()> {
        crate::persist::store(&self.state_path, st)
    }

    /// Tells the observer, then wakes waiters (WaitForCopyState), so a
    /// method that waited returns only once the observer has seen the
    /// change. Called with no state lock held.
    pub(crate) fn notify(&self) {
        let observer = self.observer.lock().clone();
        if let Some(o) = observer {
            o.changed();
        }
        self.changed.notify_all();
    }

    /// Sets (or clears) the [`crate::ElementObserver`] told about replica
    /// elements being made, re-created and deleted.
    pub fn set_observer(&self, observer: Option<Arc<dyn crate::observer::ElementObserver>>) {
        *self.observer.lock() = observer;
    }

    /// Tells the observer that `element` is about to go away (state lock
    /// may be held).
    pub(crate) fn releasing(&self, element: &ElementRef) {
        let observer = self.observer.lock().clone();
        if let Some(o) = observer {
            o.releasing(element);
        }
    }

    // ---- CreateElementReplica -------------------------------------------

    /// CreateElementReplica.
    pub fn create_element_replica(self: &Arc<Self>, req: ElementReplicaRequest) -> Result<Reply> {
        self.create_pair(req, None, false)
    }

    /// One pair: `group` is set for group members; `writes_held` when the
    /// caller holds the source's writes already (a consistent group).
    pub(crate) fn create_pair(
        self: &Arc<Self>,
        req: ElementReplicaRequest,
        group: Option<u64>,
        writes_held: bool,
    ) -> Result<Reply> {
        let src_pool = self.pool(&req.source.pool)?.clone();
        let source = src_pool.volume(&req.source.name).map_err(|_| {
            ReplicationError::InvalidParameter(format!("source {} is not a volume", req.source))
        })?;
        if req.target.is_some() && req.target_pool.is_some() {
            return Err(ReplicationError::InvalidParameter(
                "TargetPool must be NULL when TargetElement is given".into(),
            ));
        }
        let mode = req.mode.unwrap_or(match req.sync_type {
            SyncType::Mirror => Mode::Synchronous,
            _ => Mode::Asynchronous,
        });
        let target_pool_name = req
            .target
            .as_ref()
            .map(|t| t.pool.clone())
            .or(req.target_pool.clone())
            .unwrap_or_else(|| req.source.pool.clone());
        let target_pool = self.pool(&target_pool_name)?.clone();
        let mut st = self.state.lock();
        let id = st.next_id();
        let name = req
            .element_name
            .clone()
            .or_else(|| req.target.as_ref().map(|t| t.name.clone()))
            .unwrap_or_else(|| {
                format!(
                    "{}-{}-{id}",
                    req.source.name,
                    req.sync_type.label().to_lowercase()
                )
            });
        if name.starts_with(HIDDEN_PREFIX) {
            return Err(ReplicationError::InvalidParameter(format!(
                "names starting with {HIDDEN_PREFIX:?} are the engine's own"
            )));
        }
        let target = req
            .target
            .clone()
            .unwrap_or_else(|| ElementRef::new(target_pool_name.clone(), name.clone()));
        let now = now_ms();
        let mut sync = Synchronization {
            id,
            name: name.clone(),
            source: req.source.clone(),
            target: target.clone(),
            sync_type: req.sync_type,
            mode,
            copy_state: CopyState::Synchronized,
            progress: ProgressStatus::Completed,
            percent_synced: 100,
            when_established: now,
            when_activated: None,
            when_synced: None,
            when_deactivated: None,
            when_suspended: None,
            group,
            job: None,
            source_pits: Vec::new(),
            target_mark: None,
            pending: Default::default(),
        };
        let mut reply = Reply {
            synchronization: Some(id),
            targets: vec![target.clone()],
            ..Reply::default()
        };
        match req.sync_type {
            SyncType::Mirror => {
                let hold = self.hold_unless(writes_held, &req.source)?;
                if self.replica_device(&req.source)?.has_observer() {
                    return Err(ReplicationError::InUse(format!(
                        "{} is already mirrored",
                        req.source
                    )));
                }
                match &req.target {
                    Some(t) => {
                        let v = target_pool.volume(&t.name).map_err(|_| {
                            ReplicationError::InvalidParameter(format!(
                                "target {t} is not a volume"
                            ))
                        })?;
                        if v.size() != source.size() {
                            return Err(ReplicationError::InvalidParameter(format!(
                                "target {t} has {} bytes, the source {}",
                                v.size(),
                                source.size()
                            )));
                        }
                        if st.syncs.values().any(|s| &s.target == t || &s.source == t) {
                            return Err(ReplicationError::InUse(format!(
                                "{t} is in a relationship"
                            )));
                        }
                    }
                    None => {
                        target_pool.create_volume(&name, source.size())?;
                    }
                }
                let per = self.replica_device(&target)?.extent_blocks();
                let todo = mapped_extents(&source, per)?
                    | mapped_extents(self.replica_device(&target)?.inner().as_ref(), per)?;
                self.install_link(&sync, crate::mirror::Flow::of(mode))?;
                let job = self.new_job(
                    &mut st,
                    &mut sync,
                    "CreateElementReplica",
                    Work::MirrorToTarget,
                    todo,
                    ProgressStatus::Synchronizing,
                );
                drop(hold);
                st.syncs.insert(id, sync);
                self.persist(&st)?;
                reply.jobs.push(job);
                reply.code = Some(ReturnCode::JobStarted);
                drop(st);
                self.notify();
                self.spawn_job(job, false, false);
                return self.finish_wait(reply, id, req.wait_for);
            }
            SyncType::Snapshot => {
                if req.target.is_some() || target_pool_name != req.source.pool {
                    return Err(ReplicationError::InvalidParameter(
                        "a snapshot's target is created in the source's pool; TargetElement and another TargetPool are not accepted".into(),
                    ));
                }
                let deferred = matches!(
                    req.wait_for.map(|w| w.state),
                    Some(CopyState::Initialized | CopyState::Prepared)
                );
                if deferred {
                    // Activation deferred: the point in time is taken by Activate.
                    if src_pool.device(&name).is_ok() {
                        return Err(ReplicationError::InUse(format!("{target} exists")));
                    }
                    sync.copy_state = req
                        .wait_for
                        .map(|w| w.state)
                        .unwrap_or(CopyState::Initialized);
                    sync.progress = ProgressStatus::RequiresActivate;
                    sync.percent_synced = 0;
                } else {
                    let _hold = self.hold_unless(writes_held, &req.source)?;
                    src_pool.create_snapshot(&req.source.name, &name)?;
                    sync.when_activated = Some(now);
                    sync.when_synced = Some(now);
                }
                st.syncs.insert(id, sync);
                self.persist(&st)?;
            }
            SyncType::Clone => {
                let pit = req.source.sibling(format!(".repl-{id}-pit-1"));
                {
                    let _hold = self.hold_unless(writes_held, &req.source)?;
                    src_pool.create_snapshot(&req.source.name, &pit.name)?;
                }
                let made = match &req.target {
                    Some(t) => {
                        let v = target_pool.volume(&t.name).map_err(|_| {
                            ReplicationError::InvalidParameter(format!(
                                "target {t} is not a volume"
                            ))
                        })?;
                        if v.size() != source.size() {
                            Err(ReplicationError::InvalidParameter(format!(
                                "target {t} has {} bytes, the source {}",
                                v.size(),
                                source.size()
                            )))
                        } else if st.syncs.values().any(|s| &s.target == t || &s.source == t) {
                            Err(ReplicationError::InUse(format!("{t} is in a relationship")))
                        } else {
                            Ok(false)
                        }
                    }
                    None if target_pool_name == req.source.pool => src_pool
                        .create_clone(&pit.name, &name)
                        .map(|_| true)
                        .map_err(Into::into),
                    None => target_pool
                        .create_volume(&name, source.size())
                        .map(|_| false)
                        .map_err(Into::into),
                };
                let fill_clone = match made {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = src_pool.delete_snapshot(&pit.name);
                        return Err(e);
                    }
                };
                sync.source_pits.push(pit.clone());
                sync.when_activated = Some(now);
                let pit_dev = src_pool.snapshot_device(&pit.name)?;
                let per = self.replica_device(&target)?.extent_blocks();
                let mut todo = mapped_extents(pit_dev.as_ref(), per)?;
                if !fill_clone {
                    // A full copy onto a volume that may hold data: clear it too.
                    todo |= mapped_extents(self.replica_device(&target)?.inner().as_ref(), per)?;
                }
                let job = self.new_job(
                    &mut st,
                    &mut sync,
                    "CreateElementReplica",
                    Work::CopyToTarget {
                        from: pit,
                        fill_clone,
                    },
                    todo,
                    ProgressStatus::Synchronizing,
                );
                st.syncs.insert(id, sync);
                self.persist(&st)?;
                reply.jobs.push(job);
                reply.code = Some(ReturnCode::JobStarted);
                drop(st);
                self.notify();
                self.spawn_job(job, false, false);
                return self.finish_wait(reply, id, req.wait_for);
            }
        }
        drop(st);
        self.notify();
        self.finish_wait(reply, id, req.wait_for)
    }

    /// Holds writes to every volume in `elements` (a consistent instant).
    pub(crate) fn hold_writes(&self, elements: &[ElementRef]) -> Result<WriteHold> {
        let mut devs: Vec<(ElementRef, Arc<ReplicaDevice>)> = Vec::new();
        for e in elements {
            devs.push((e.clone(), self.replica_device(e)?));
        }
        devs.sort_by(|a, b| a.0.cmp(&b.0));
        devs.dedup_by(|a, b| a.0 == b.0);
        Ok(WriteHold::new(devs.into_iter().map(|d| d.1).collect()))
    }

    pub(crate) fn hold_unless(
        &self,
        writes_held: bool,
        source: &ElementRef,
    ) -> Result<Option<WriteHold>> {
        if writes_held {
            Ok(None)
        } else {
            self.hold_writes(std::slice::from_ref(source)).map(Some)
        }
    }

    pub(crate) fn finish_wait(
        &self,
        mut reply: Reply,
        id: u64,
        wait: Option<WaitFor>,
    ) -> Result<Reply> {
        let Some(w) = wait else { return Ok(reply) };
        if w.timeout > MAX_WAIT {
            return Err(ReplicationError::InvalidParameter(format!(
                "WaitForCopyState timeout {:?} is over the {MAX_WAIT:?} limit",
                w.timeout
            )));
        }
        match self.wait_for_copy_state(id, w.state, w.timeout) {
            Ok(()) => {
                if reply.code == Some(ReturnCode::JobStarted) {
                    reply.code = Some(ReturnCode::Completed);
                }
                Ok(reply)
            }
            Err(ReplicationError::Timeout(_)) => {
                reply.code = Some(ReturnCode::Timeout);
                Ok(reply)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until synchronization `id` is in `state` (or gone, when
    /// waiting for a removal makes no sense: an error), up to `timeout`.
    pub fn wait_for_copy_state(&self, id: u64, state: CopyState, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        let mut st = self.state.lock();
        loop {
            match st.syncs.get(&id) {
                None => {
                    return Err(ReplicationError::InvalidParameter(format!(
                        "synchronization {id} no longer exists"
                    )))
                }
                Some(s) if s.copy_state == state => return Ok(()),
                Some(s)
                    if matches!(s.copy_state, CopyState::Broken | CopyState::Aborted)
                        && state != s.copy_state =>
                {
                    return Err(ReplicationError::Block(
                        ironlun_cow::BlockError::Unsupported(
                            "the copy stopped (Broken or Aborted) before reaching the state",
                        ),
                    ))
                }
                Some(_) => {}
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return Err(ReplicationError::Timeout(state));
            }
        }
    }

    // ---- ModifyReplicaSynchronization --------------------------------------

    /// ModifyReplicaSynchronization on an element synchronization.
    pub fn modify_replica_synchronization(
        self: &Arc<Self>,
        id: u64,
        op: Operation,
        wait: Option<WaitFor>,
    ) -> Result<Reply> {
        let mut st = self.state.lock();
        self.note_broken_mirrors(&mut st);
        let sync = st.syncs.get(&id).cloned().ok_or_else(|| {
            ReplicationError::InvalidParameter(format!("no synchronization {id}"))
        })?;
        let rule = match decide(sync.sync_type, sync.copy_state, op) {
            Decision::Allowed(r) => r,
            Decision::Rejected(code) => {
                return Err(ReplicationError::Refused {
                    op,
                    sync_type: sync.sync_type,
                    state: sync.copy_state,
                    code,
                })
            }
        };
        if rule.effect == Effect::Group {
            return Err(ReplicationError::InvalidParameter(format!(
                "{op} applies to group synchronizations; {id} is an element synchronization"
            )));
        }
        let reply = self.apply(&mut st, sync, op, rule.next, rule.effect, false)?;
        self.persist(&st)?;
        drop(st);
        self.notify();
        for j in &reply.jobs {
            self.spawn_job(*j, false, false);
        }
        if matches!(rule.next, Next::Removed) {
            return Ok(reply);
        }
        self.finish_wait(reply, id, wait)
    }

    /// Applies an allowed transition; the caller persists and spawns jobs.
    pub(crate) fn apply(
        &self,
        st: &mut State,
        mut sync: Synchronization,
        op: Operation,
        next: Next,
        effect: Effect,
        writes_held: bool,
    ) -> Result<Reply> {
        let id = sync.id;
        let now = now_ms();
        let mut reply = Reply {
            synchronization: Some(id),
            ..Reply::default()
        };
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let handled = sync.sync_type == SyncType::Mirror
            && self.mirror_effect(st, &mut sync, next, effect, writes_held, &mut reply)?;
        match effect {
            _ if handled => {}
            Effect::Bookkeeping | Effect::Group | Effect::StopFlow => {}
            Effect::DrainAndStopFlow => {
                self.replica_device(&sync.target)?.flush()?;
            }
            Effect::TakePointInTime => {
                let _hold = self.hold_unless(writes_held, &sync.source)?;
                if src_pool.snapshot(&sync.target.name).is_ok() {
                    self.releasing(&sync.target);
                    src_pool.delete_snapshot(&sync.target.name)?;
                }
                src_pool.create_snapshot(&sync.source.name, &sync.target.name)?;
                sync.when_activated = Some(now);
                sync.when_synced = Some(now);
                sync.percent_synced = 100;
            }
            Effect::DiscardPointInTime => {
                self.releasing(&sync.target);
                src_pool.delete_snapshot(&sync.target.name)?;
                sync.when_deactivated = Some(now);
                sync.percent_synced = 0;
            }
            Effect::CopyToTarget => {
                let (from, todo) = self.plan_resync(st, &mut sync, writes_held)?;
                let job = self.new_job(
                    st,
                    &mut sync,
                    "ModifyReplicaSynchronization",
                    Work::CopyToTarget {
                        from,
                        fill_clone: false,
                    },
                    todo,
                    progress_of(next),
                );
                reply.jobs.push(job);
            }
            Effect::CopyToSource => {
                let (from, todo) = self.plan_restore(&sync)?;
                let job = self.new_job(
                    st,
                    &mut sync,
                    "ModifyReplicaSynchronization",
                    Work::CopyToSource { from },
                    todo,
                    ProgressStatus::Restoring,
                );
                reply.jobs.push(job);
            }
            Effect::StopCopy | Effect::SuspendCopy | Effect::ResumeCopy => {
                let (cmd, job_state) = match effect {
                    Effect::StopCopy => (Command::Terminate, JobState::Terminated),
                    Effect::SuspendCopy => (Command::Suspend, JobState::Suspended),
                    _ => (Command::Run, JobState::Running),
                };
                if let Some(j) = sync.job {
                    if let Some(c) = self.controls.lock().get(&j) {
                        c.set(cmd);
                    }
                    if let Some(job) = st.jobs.get_mut(&j.0) {
                        job.state = job_state;
                        job.time_of_last_state_change = now;
                        if job_state.is_final() {
                            job.finished = Some(now);
                        }
                    }
                    if job_state.is_final() {
                        sync.job = None;
                    }
                }
                match effect {
                    Effect::StopCopy => sync.progress = ProgressStatus::Completed,
                    Effect::SuspendCopy => {
                        sync.when_suspended = Some(now);
                        sync.progress = ProgressStatus::Dormant;
                    }
                    _ => sync.progress = ProgressStatus::Synchronizing,
                }
            }
            Effect::Forget | Effect::Dissolve | Effect::DeleteTarget => {
                self.end_relationship(st, &sync, effect, &mut reply)?;
                st.syncs.remove(&id);
                if let Some(g) = sync.group {
                    if let Some(gs) = st.groups.get_mut(&g) {
                        gs.members.retain(|m| *m != id);
                    }
                }
                return Ok(reply);
            }
            Effect::SetMode(m) => sync.mode = m,
            Effect::Failover | Effect::Failback | Effect::SwapRoles => {
                return Err(ReplicationError::NotSupported(format!(
                    "{op} applies to mirrors only"
                )))
            }
        }
        match next {
            Next::To(s) => sync.copy_state = s,
            Next::Job {
                during, progress, ..
            } => {
                sync.copy_state = during;
                sync.progress = progress;
                reply.code = Some(ReturnCode::JobStarted);
            }
            Next::Unchanged | Next::Removed => {}
        }
        if sync.copy_state == CopyState::Synchronized && sync.job.is_none() {
            sync.progress = ProgressStatus::Completed;
        }
        if sync.copy_state == CopyState::Inactive && sync.when_deactivated.is_none() {
            sync.when_deactivated = Some(now);
        }
        st.syncs.insert(id, sync);
        Ok(reply)
    }

    fn end_relationship(
        &self,
        st: &mut State,
        sync: &Synchronization,
        effect: Effect,
        reply: &mut Reply,
    ) -> Result<()> {
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        match (sync.sync_type, effect) {
            (SyncType::Snapshot, Effect::DeleteTarget) => {
                if src_pool.snapshot(&sync.target.name).is_ok() {
                    self.releasing(&sync.target);
                    src_pool.delete_snapshot(&sync.target.name)?;
                }
            }
            (SyncType::Snapshot, Effect::Dissolve) => {
                if src_pool.snapshot(&sync.target.name).is_ok() {
                    let aid = st.next_id();
                    st.aspects.insert(
                        aid,
                        SynchronizationAspect {
                            id: aid,
                            name: sync.name.clone(),
                            sync_type: SyncType::Snapshot,
                            consistency: crate::model::Consistency::NoConsistency,
                            sources: vec![sync.source.clone()],
                            points_in_time: vec![sync.target.clone()],
                            when_point_in_time: sync
                                .when_activated
                                .unwrap_or(sync.when_established),
                        },
                    );
                    reply.settings_state = Some(aid);
                }
            }
            _ => {
                if sync.sync_type == SyncType::Mirror {
                    self.remove_link(sync);
                }
                if let Some(m) = &sync.target_mark {
                    let _ = tgt_pool.delete_snapshot(&m.name);
                }
                for pit in &sync.source_pits {
                    match src_pool.delete_snapshot(&pit.name) {
                        Ok(()) | Err(ironlun_cow::Error::NotFound(_)) => {}
                        Err(ironlun_cow::Error::Busy(_)) => st.retained.push(pit.clone()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// A new point in time of the source and the extents to copy onto the
    /// target: those changed on either side since the last sync, or all.
    fn plan_resync(
        &self,
        st: &mut State,
        sync: &mut Synchronization,
        writes_held: bool,
    ) -> Result<(ElementRef, RoaringBitmap)> {
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        let n = st.next_id();
        let pit = sync.source.sibling(format!(".repl-{}-pit-{n}", sync.id));
        let prev = sync.source_pits.last().cloned();
        {
            let _hold = self.hold_unless(writes_held, &sync.source)?;
            src_pool.create_snapshot(&sync.source.name, &pit.name)?;
        }
        let per = self.replica_device(&sync.target)?.extent_blocks();
        let source = src_pool.volume(&sync.source.name)?;
        let target = tgt_pool.volume(&sync.target.name)?;
        let incremental = match (&prev, &sync.target_mark) {
            (Some(p), Some(m)) => match (src_pool.snapshot(&p.name), tgt_pool.snapshot(&m.name)) {
                (Ok(p), Ok(m)) => Some(
                    source.changed_since(p.generation())? | target.changed_since(m.generation())?,
                ),
                _ => None,
            },
            _ => None,
        };
        let todo = match incremental {
            Some(t) => t,
            None => {
                let pit_dev = src_pool.snapshot_device(&pit.name)?;
                mapped_extents(pit_dev.as_ref(), per)? | mapped_extents(&target, per)?
            }
        };
        sync.source_pits.push(pit.clone());
        sync.when_activated = Some(now_ms());
        Ok((pit, todo))
    }

    /// What Restore from Replica copies back: the extents the source changed
    /// since the point in time (snapshot), or on either side (clone).
    fn plan_restore(&self, sync: &Synchronization) -> Result<(ElementRef, RoaringBitmap)> {
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        let source = src_pool.volume(&sync.source.name)?;
        let per = self.replica_device(&sync.source)?.extent_blocks();
        match sync.sync_type {
            SyncType::Snapshot => {
                let snap = src_pool.snapshot(&sync.target.name)?;
                Ok((
                    sync.target.clone(),
                    source.changed_since(snap.generation())?,
                ))
            }
            _ => {
                let target = tgt_pool.volume(&sync.target.name)?;
                let pit = sync
                    .source_pits
                    .last()
                    .and_then(|p| src_pool.snapshot(&p.name).ok());
                let mark = sync
                    .target_mark
                    .as_ref()
                    .and_then(|m| tgt_pool.snapshot(&m.name).ok());
                let todo = match (pit, mark) {
                    (Some(p), Some(m)) => {
                        source.changed_since(p.generation())?
                            | target.changed_since(m.generation())?
                    }
                    _ => mapped_extents(&source, per)? | mapped_extents(&target, per)?,
                };
                Ok((sync.target.clone(), todo))
            }
        }
    }

    // ---- jobs -----------------------------------------------------------

    pub(crate) fn new_job(
        &self,
        st: &mut State,
        sync: &mut Synchronization,
        method: &str,
        work: Work,
        todo: RoaringBitmap,
        progress: ProgressStatus,
    ) -> JobId {
        let destination = match work {
            Work::CopyToTarget { .. } | Work::MirrorToTarget => sync.target.clone(),
            Work::CopyToSource { .. } => sync.source.clone(),
        };
        let id = self.insert_job(st, Some(sync.id), destination, method, work, todo);
        sync.job = Some(id);
        sync.copy_state = CopyState::Unsynchronized;
        sync.progress = progress;
        sync.percent_synced = 0;
        id
    }

    pub(crate) fn insert_job(
        &self,
        st: &mut State,
        sync: Option<u64>,
        destination: ElementRef,
        method: &str,
        work: Work,
        todo: RoaringBitmap,
    ) -> JobId {
        let id = JobId(st.next_id());
        let now = now_ms();
        if let Ok(d) = self.replica_device(&destination) {
            d.clear_written();
        }
        st.jobs.insert(
            id.0,
            Job {
                id,
                method: method.to_string(),
                synchronization: sync,
                destination,
                state: JobState::Running,
                percent_complete: 0,
                time_submitted: now,
                start_time: Some(now),
                time_of_last_state_change: now,
                finished: None,
                error: None,
                time_before_removal_ms: DEFAULT_TIME_BEFORE_REMOVAL.as_millis() as u64,
                work,
                total_extents: todo.len(),
                remaining: todo,
                bytes_copied: 0,
            },
        );
        id
    }

    /// CIM_ConcreteJob.RequestStateChange: Suspend, Start (resume) or
    /// Terminate a job; its synchronization follows (Suspended, Unsynchronized,
    /// Aborted).
    pub fn request_job_state_change(
        self: &Arc<Self>,
        id: JobId,
        request: JobRequest,
    ) -> Result<ReturnCode> {
        let sync = {
            let st = self.state.lock();
            let job = st
                .jobs
                .get(&id.0)
                .ok_or_else(|| ReplicationError::InvalidParameter(format!("no job {id}")))?;
            if job.state.is_final() {
                return Err(ReplicationError::InvalidParameter(format!(
                    "{id} has finished ({})",
                    job.state
                )));
            }
            job.synchronization
        };
        let op = match request {
            JobRequest::Suspend => Operation::Suspend,
            JobRequest::Start => Operation::Resume,
            JobRequest::Terminate | JobRequest::Kill => Operation::Abort,
            JobRequest::Service => {
                return Err(ReplicationError::NotSupported("job state Service".into()))
            }
        };
        match sync {
            Some(s) => self
                .modify_replica_synchronization(s, op, None)
                .map(|r| r.code()),
            None => {
                let cmd = match op {
                    Operation::Suspend => Command::Suspend,
                    Operation::Resume => Command::Run,
                    _ => Command::Terminate,
                };
                if let Some(c) = self.controls.lock().get(&id) {
                    c.set(cmd);
                }
                let mut st = self.state.lock();
                if let Some(j) = st.jobs.get_mut(&id.0) {
                    j.state = match cmd {
                        Command::Run => JobState::Running,
                        Command::Suspend => JobState::Suspended,
                        Command::Terminate | Command::Shutdown => JobState::Terminated,
                    };
                    j.time_of_last_state_change = now_ms();
                    if j.state.is_final() {
                        j.finished = j.finished.or(Some(now_ms()));
                    }
                }
                self.persist(&st)?;
                Ok(ReturnCode::Completed)
            }
        }
    }

    pub(crate) fn spawn_job(self: &Arc<Self>, id: JobId, suspended: bool, restarted: bool) {
        let control = Arc::new(JobControl::default());
        if suspended {
            control.set(Command::Suspend);
        }
        self.controls.lock().insert(id, control.clone());
        let svc = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("repl-job-{}", id.0))
            .spawn(move || {
                let result = svc.run_job(id, &control, restarted);
                svc.finish_job(id, &control, result);
            });
        match spawned {
            Ok(t) => {
                let mut threads = self.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(e) => {
                self.finish_job(
                    id,
                    &JobControl::default(),
                    Err(ReplicationError::State(format!(
                        "cannot start a thread: {e}"
                    ))),
                );
            }
        }
    }

    fn run_job(&self, id: JobId, control: &JobControl, restarted: bool) -> Result<()> {
        let (work, destination) = {
            let st = self.state.lock();
            let job = st
                .jobs
                .get(&id.0)
                .ok_or_else(|| ReplicationError::State(format!("{id} vanished")))?;
            (job.work.clone(), job.destination.clone())
        };
        let JobEnds {
            src,
            dst,
            mirror_target: source_locked,
        } = match &work {
            Work::CopyToTarget { from, .. } | Work::CopyToSource { from } => JobEnds {
                src: self.pool(&from.pool)?.device(&from.name)?,
                dst: self.replica_device(&destination)?,
                mirror_target: None,
            },
            Work::MirrorToTarget => {
                let sync = {
                    let st = self.state.lock();
                    st.jobs
                        .get(&id.0)
                        .and_then(|j| j.synchronization)
                        .and_then(|s| st.syncs.get(&s).cloned())
                        .ok_or_else(|| {
                            ReplicationError::State(format!("{id} has no synchronization"))
                        })?
                };
                let target = self.replica_device(&destination)?.inner().clone();
                JobEnds {
                    src: target.clone(),
                    dst: self.replica_device(&sync.source)?,
                    mirror_target: Some(target),
                }
            }
        };
        if restarted {
            dst.clear_written();
            if let Work::CopyToTarget {
                fill_clone: true, ..
            } = work
            {
                // Extents the clone owns hold copied or newer data.
                let owned = self
                    .pool(&destination.pool)?
                    .volume(&destination.name)?
                    .changed_since(0)?;
                let mut st = self.state.lock();
                if let Some(j) = st.jobs.get_mut(&id.0) {
                    j.remaining -= owned;
                }
            }
        }
        let mut buf = Vec::new();
        let mut last_persist = Instant::now();
        loop {
            match control.get() {
                Command::Terminate | Command::Shutdown => return Ok(()),
                Command::Suspend => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Command::Run => {}
            }
            let batch: Vec<u32> = {
                let st = self.state.lock();
                let job = st
                    .jobs
                    .get(&id.0)
                    .ok_or_else(|| ReplicationError::State(format!("{id} vanished")))?;
                if job.state.is_final() {
                    return Ok(());
                }
                job.remaining.iter().take(BATCH).collect()
            };
            if batch.is_empty() {
                dst.flush()?;
                src.flush()?;
                return Ok(());
            }
            let delay = *self.copy_delay.lock();
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let mut moved = 0;
            for vext in &batch {
                moved += match &source_locked {
                    // Mirror: the live source onto the target, ordered with
                    // forwarded writes by the source's extent lock.
                    Some(target) => {
                        let _lock = dst.lock_extent(*vext);
                        copy_range(
                            dst.inner().as_ref(),
                            target.as_ref(),
                            *vext,
                            dst.extent_blocks(),
                            &mut buf,
                        )?
                    }
                    None => copy_extent(src.as_ref(), &dst, *vext, true, &mut buf)?,
                };
            }
            let mut st = self.state.lock();
            st.bytes_copied += moved;
            let Some(job) = st.jobs.get_mut(&id.0) else {
                return Ok(());
            };
            for vext in &batch {
                job.remaining.remove(*vext);
            }
            job.bytes_copied += moved;
            let done = job.total_extents - job.remaining.len();
            let pct = (done * 100)
                .checked_div(job.total_extents)
                .map_or(100, |p| p.min(99) as u8);
            job.percent_complete = pct;
            let sync = job.synchronization;
            if let Some(s) = sync.and_then(|s| st.syncs.get_mut(&s)) {
                s.percent_synced = pct;
            }
            if last_persist.elapsed() >= PERSIST_EVERY {
                // The data must be durable before the record says it is copied.
                drop(st);
                dst.flush()?;
                src.flush()?;
                let st = self.state.lock();
                self.persist(&st)?;
                last_persist = Instant::now();
            }
        }
    }

    fn finish_job(&self, id: JobId, control: &JobControl, result: Result<()>) {
        self.controls.lock().remove(&id);
        let mut st = self.state.lock();
        let now = now_ms();
        let Some(job) = st.jobs.get_mut(&id.0) else {
            return;
        };
        if job.state.is_final() || matches!(control.get(), Command::Terminate | Command::Shutdown) {
            // Aborted or terminated: the modify that stopped it set the
            // states; shut down: the record stays unfinished and resumes.
            let _ = self.persist(&st);
            return;
        }
        let sync_id = job.synchronization;
        job.finished = Some(now);
        job.time_of_last_state_change = now;
        let ok = result.is_ok();
        match &result {
            Ok(()) => {
                job.state = JobState::Completed;
                job.percent_complete = 100;
            }
            Err(e) => {
                tracing::warn!("replication: {id} failed: {e}");
                job.state = JobState::Exception;
                job.error = Some(e.to_string());
            }
        }
        if let Some(mut sync) = sync_id.and_then(|s| st.syncs.get(&s).cloned()) {
            sync.job = None;
            if ok {
                sync.copy_state = CopyState::Synchronized;
                sync.progress = ProgressStatus::Completed;
                sync.percent_synced = 100;
                sync.when_synced = Some(now);
                if let Err(e) = self.after_sync(&mut st, &mut sync) {
                    tracing::warn!("replication: synchronization {}: {e}", sync.id);
                }
            } else {
                sync.copy_state = CopyState::Broken;
                sync.progress = ProgressStatus::RequiresResync;
            }
            st.syncs.insert(sync.id, sync);
        }
        if let Err(e) = self.persist(&st) {
            tracing::warn!("replication: {e}");
        }
        drop(st);
        self.notify();
    }

    /// After a clone or mirror reached Synchronized: mark the target (the
    /// base of the next incremental resync) and drop superseded points in
    /// time of the source.
    fn after_sync(&self, st: &mut State, sync: &mut Synchronization) -> Result<()> {
        match sync.sync_type {
            SyncType::Snapshot => return Ok(()),
            SyncType::Mirror => return self.mirror_synchronized(st, sync),
            SyncType::Clone => {}
        }
        let src_pool = self.pool(&sync.source.pool)?.clone();
        let tgt_pool = self.pool(&sync.target.pool)?.clone();
        let n = st.next_id();
        let mark = sync.target.sibling(format!(".repl-{}-mark-{n}", sync.id));
        tgt_pool.create_snapshot(&sync.target.name, &mark.name)?;
        if let Some(old) = sync.target_mark.replace(mark) {
            let _ = tgt_pool.delete_snapshot(&old.name);
        }
        let keep_last = sync.source_pits.len().saturating_sub(1);
        let mut kept = Vec::new();
        for (i, pit) in sync.source_pits.drain(..).enumerate() {
            if i == keep_last {
                kept.push(pit);
                continue;
            }
            match src_pool.delete_snapshot(&pit.name) {
                Ok(()) | Err(ironlun_cow::Error::NotFound(_)) => {}
                // Still the origin of the cow clone target.
                Err(_) => kept.push(pit),
            }
        }
        sync.source_pits = kept;
        Ok(())
    }
}

/// What a job reads and writes. For a mirror copy `dst` is the source's
/// device (its extent locks order the copy with forwarded writes) and the
/// data goes to `mirror_target`.
struct JobEnds {
    src: Arc<dyn BlockDevice>,
    dst: Arc<ReplicaDevice>,
    mirror_target: Option<Arc<dyn BlockDevice>>,
}

fn progress_of(next: Next) -> ProgressStatus {
    match next {
        Next::Job { progress, .. } => progress,
        _ => ProgressStatus::Synchronizing,
    }
}

/// Writes to a set of volumes held for an instant (dropped: released).
pub(crate) struct WriteHold {
    _held: Vec<crate::device::WriteHoldGuard>,
}

impl WriteHold {
    fn new(devices: Vec<Arc<ReplicaDevice>>) -> WriteHold {
        WriteHold {
            _held: devices.iter().map(|d| d.hold_writes()).collect(),
        }
    }
}
