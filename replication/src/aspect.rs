//! CreateSynchronizationAspect and ModifySettingsDefineState: points in
//! time with no target, linked to their source(s), used later.
//!
//! An aspect is one hidden cow snapshot per source element (taken at one
//! instant for a group with Sequential Consistency). Copy To Target makes a
//! Clone relationship from it (a cow clone plus a copy job); Restore copies
//! the point in time back onto the source (only the extents changed since);
//! Delete drops the snapshots; Detach forgets the link and keeps them.
//! Attach To Target presents the point in time on new targets at once,
//! without copying: each target is a cow clone of the aspect's snapshot
//! (sharing its extents), related to its source as a Clone (8)
//! synchronization already Synchronized. (cow cannot give the snapshot
//! itself a second, visible name, so the target is a writable clone of
//! it; it keeps depending on the aspect's point in time, which cow then
//! refuses to delete.)

use std::sync::Arc;

use crate::engine::{ReplicationService, Reply};
use crate::error::{ReplicationError, Result};
use crate::job::{now_ms, Work};
use crate::model::{
    AspectOperation, Consistency, CopyState, Mode, ProgressStatus, ReturnCode, SyncType,
};
use crate::synchronization::{ElementRef, Synchronization, SynchronizationAspect};

/// CreateSynchronizationAspect's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AspectRequest {
    pub name: Option<String>,
    pub sync_type: SyncType,
    /// One SourceElement, or the SourceGroup's members.
    pub sources: Vec<ElementRef>,
    pub consistency: Consistency,
}

impl ReplicationService {
    /// CreateSynchronizationAspect: returns the aspect id as `settings_state`.
    pub fn create_synchronization_aspect(self: &Arc<Self>, req: AspectRequest) -> Result<Reply> {
        if req.sync_type == SyncType::Mirror {
            return Err(ReplicationError::NotSupported(
                "a Mirror has no point in time to keep as an aspect".into(),
            ));
        }
        if req.sources.is_empty() {
            return Err(ReplicationError::InvalidParameter(
                "no source element or group".into(),
            ));
        }
        for s in &req.sources {
            self.pool(&s.pool)?.volume(&s.name).map_err(|_| {
                ReplicationError::InvalidParameter(format!("source {s} is not a volume"))
            })?;
        }
        let mut st = self.state.lock();
        let id = st.next_id();
        let hold = self.hold_writes(&req.sources)?;
        let mut pits = Vec::new();
        for (i, s) in req.sources.iter().enumerate() {
            let pit = s.sibling(format!(".repl-aspect-{id}-{}", i + 1));
            if let Err(e) = self.pool(&s.pool)?.create_snapshot(&s.name, &pit.name) {
                for p in &pits {
                    let p: &ElementRef = p;
                    let _ = self.pool(&p.pool)?.delete_snapshot(&p.name);
                }
                return Err(e.into());
            }
            pits.push(pit);
        }
        drop(hold);
        st.aspects.insert(
            id,
            SynchronizationAspect {
                id,
                name: req.name.unwrap_or_else(|| format!("aspect-{id}")),
                sync_type: req.sync_type,
                consistency: req.consistency,
                sources: req.sources,
                points_in_time: pits,
                when_point_in_time: now_ms(),
            },
        );
        self.persist(&st)?;
        Ok(Reply {
            settings_state: Some(id),
            ..Reply::default()
        })
    }

    /// The targets of Copy To Target / Attach To Target: `given` (one per
    /// source) or `<aspect name>_<n>` beside each source; always in the
    /// source's pool (they are cow clones of its point in time).
    fn aspect_targets(a: &SynchronizationAspect, given: &[ElementRef]) -> Result<Vec<ElementRef>> {
        if !given.is_empty() && given.len() != a.sources.len() {
            return Err(ReplicationError::InvalidParameter(format!(
                "{} targets for {} sources",
                given.len(),
                a.sources.len()
            )));
        }
        let mut out = Vec::new();
        for (i, src) in a.sources.iter().enumerate() {
            let target = given
                .get(i)
                .cloned()
                .unwrap_or_else(|| src.sibling(format!("{}_{}", a.name, i + 1)));
            if target.pool != src.pool {
                return Err(ReplicationError::InvalidParameter(
                    "the target of an aspect is a clone in the source's pool".into(),
                ));
            }
            out.push(target);
        }
        Ok(out)
    }

    /// Every aspect.
    pub fn aspects(&self) -> Vec<SynchronizationAspect> {
        self.state.lock().aspects.values().cloned().collect()
    }

    /// ModifySettingsDefineState. `targets`: for Copy To Target, the new
    /// targets' names (one per source; default `<aspect name>_<n>` in the
    /// source's pool).
    pub fn modify_settings_define_state(
        self: &Arc<Self>,
        aspect: u64,
        op: AspectOperation,
        targets: &[ElementRef],
    ) -> Result<Reply> {
        let mut st = self.state.lock();
        let a = st.aspects.get(&aspect).cloned().ok_or_else(|| {
            ReplicationError::InvalidParameter(format!("no synchronization aspect {aspect}"))
        })?;
        let mut reply = Reply {
            settings_state: Some(aspect),
            ..Reply::default()
        };
        match op {
            AspectOperation::ActivateConsistency | AspectOperation::DeactivateConsistency => {
                if let Some(x) = st.aspects.get_mut(&aspect) {
                    x.consistency = if op == AspectOperation::ActivateConsistency {
                        Consistency::Sequential
                    } else {
                        Consistency::NoConsistency
                    };
                }
            }
            AspectOperation::Delete => {
                for p in &a.points_in_time {
                    match self.pool(&p.pool)?.delete_snapshot(&p.name) {
                        Ok(()) | Err(ironlun_cow::Error::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                st.aspects.remove(&aspect);
                reply.settings_state = None;
            }
            AspectOperation::Detach => {
                st.retained.extend(a.points_in_time.iter().cloned());
                st.aspects.remove(&aspect);
                reply.settings_state = None;
            }
            AspectOperation::AttachToTarget => {
                let targets = Self::aspect_targets(&a, targets)?;
                let now = now_ms();
                for ((src, pit), target) in a.sources.iter().zip(&a.points_in_time).zip(targets) {
                    let pool = self.pool(&src.pool)?.clone();
                    if pool.device(&target.name).is_ok() {
                        return Err(ReplicationError::InUse(format!(
                            "TargetElement: {target} exists; Attach To Target makes a new volume"
                        )));
                    }
                    pool.create_clone(&pit.name, &target.name)?;
                    let id = st.next_id();
                    st.syncs.insert(
                        id,
                        Synchronization {
                            id,
                            name: target.name.clone(),
                            source: src.clone(),
                            target: target.clone(),
                            sync_type: SyncType::Clone,
                            mode: Mode::Asynchronous,
                            copy_state: CopyState::Synchronized,
                            progress: ProgressStatus::Completed,
                            percent_synced: 100,
                            when_established: now,
                            when_activated: Some(a.when_point_in_time),
                            when_synced: Some(now),
                            when_deactivated: None,
                            when_suspended: None,
                            group: None,
                            job: None,
                            // The aspect owns the point in time.
                            source_pits: Vec::new(),
                            target_mark: None,
                            pending: Default::default(),
                        },
                    );
                    reply.targets.push(target);
                    reply.synchronization = Some(id);
                }
            }
            AspectOperation::Restore => {
                for (src, pit) in a.sources.iter().zip(&a.points_in_time) {
                    let pool = self.pool(&src.pool)?;
                    let gen = pool.snapshot(&pit.name)?.generation();
                    let todo = pool.volume(&src.name)?.changed_since(gen)?;
                    let job = self.insert_job(
                        &mut st,
                        None,
                        src.clone(),
                        "ModifySettingsDefineState",
                        Work::CopyToSource { from: pit.clone() },
                        todo,
                    );
                    reply.jobs.push(job);
                }
                reply.code = Some(ReturnCode::JobStarted);
            }
            AspectOperation::CopyToTarget => {
                let targets = Self::aspect_targets(&a, targets)?;
                for ((src, pit), target) in a.sources.iter().zip(&a.points_in_time).zip(targets) {
                    let pool = self.pool(&src.pool)?.clone();
                    pool.create_clone(&pit.name, &target.name)?;
                    let per = self.replica_device(&target)?.extent_blocks();
                    let todo = crate::copier::mapped_extents(
                        pool.snapshot_device(&pit.name)?.as_ref(),
                        per,
                    )?;
                    let id = st.next_id();
                    let now = now_ms();
                    let mut sync = Synchronization {
                        id,
                        name: target.name.clone(),
                        source: src.clone(),
                        target: target.clone(),
                        sync_type: SyncType::Clone,
                        mode: Mode::Asynchronous,
                        copy_state: CopyState::Unsynchronized,
                        progress: ProgressStatus::Synchronizing,
                        percent_synced: 0,
                        when_established: now,
                        when_activated: Some(a.when_point_in_time),
                        when_synced: None,
                        when_deactivated: None,
                        when_suspended: None,
                        group: None,
                        job: None,
                        // The aspect owns the point in time.
                        source_pits: Vec::new(),
                        target_mark: None,
                        pending: Default::default(),
                    };
                    let job = self.new_job(
                        &mut st,
                        &mut sync,
                        "ModifySettingsDefineState",
                        Work::CopyToTarget {
                            from: pit.clone(),
                            fill_clone: true,
                        },
                        todo,
                        ProgressStatus::Synchronizing,
                    );
                    st.syncs.insert(id, sync);
                    reply.jobs.push(job);
                    reply.targets.push(target);
                    reply.synchronization = Some(id);
                }
                reply.code = Some(ReturnCode::JobStarted);
            }
        }
        self.persist(&st)?;
        drop(st);
        for j in &reply.jobs {
            self.spawn_job(*j, false, false);
        }
        self.notify();
        Ok(reply)
    }
}
