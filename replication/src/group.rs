//! CreateGroupReplica and ModifyReplicaSynchronization on a group
//! synchronization (CIM_GroupSynchronized).
//!
//! A group pairs each source member with a target (`RelationshipName_1` ..
//! `_n`), or one source with `TargetElementCount` targets. With Sequential
//! Consistency every member's point in time is taken at one instant: writes
//! to all source members (through their [`crate::ReplicaDevice`]) are held
//! while the cow snapshots are taken, and released at once after.

use std::sync::Arc;

use crate::engine::{ElementReplicaRequest, ReplicationService, Reply, WaitFor};
use crate::error::{ReplicationError, Result};
use crate::model::{Consistency, CopyState, Mode, Operation, ReturnCode, SyncType};
use crate::synchronization::{ElementGroup, ElementRef, GroupSynchronization};
use crate::table::{decide, Decision, Effect};

/// Most targets one CreateGroupReplica makes.
pub const MAX_GROUP_TARGETS: u32 = 256;

/// CreateGroupReplica's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReplicaRequest {
    /// RelationshipName: the group's name and the targets' name prefix.
    pub relationship_name: String,
    pub sync_type: SyncType,
    pub mode: Option<Mode>,
    /// The source group's members (or one SourceElement).
    pub sources: Vec<ElementRef>,
    /// TargetElementCount: copies of a single source.
    pub target_element_count: Option<u32>,
    pub target_pool: Option<String>,
    pub consistency: Consistency,
    pub wait_for: Option<WaitFor>,
}

impl ReplicationService {
    /// CreateGroup: a named group of volumes (a SourceGroup or TargetGroup
    /// for CreateGroupReplica). Returns its id.
    pub fn create_element_group(&self, name: &str, members: &[ElementRef]) -> Result<u64> {
        if members.is_empty() {
            return Err(ReplicationError::InvalidParameter(
                "Members: a group needs at least one element".into(),
            ));
        }
        if members.len() > MAX_GROUP_TARGETS as usize {
            return Err(ReplicationError::InvalidParameter(format!(
                "Members: more than {MAX_GROUP_TARGETS} elements"
            )));
        }
        for (i, m) in members.iter().enumerate() {
            self.pool(&m.pool)?.volume(&m.name).map_err(|_| {
                ReplicationError::InvalidParameter(format!("Members: {m} is not a volume"))
            })?;
            if members[..i].contains(m) {
                return Err(ReplicationError::InvalidParameter(format!(
                    "Members: {m} is listed twice"
                )));
            }
        }
        let mut st = self.state.lock();
        let id = st.next_id();
        st.element_groups.insert(
            id,
            ElementGroup {
                id,
                name: name.to_string(),
                members: members.to_vec(),
            },
        );
        self.persist(&st)?;
        Ok(id)
    }

    /// DeleteGroup: forgets a group made by CreateGroup (its elements stay).
    pub fn delete_element_group(&self, id: u64) -> Result<()> {
        let mut st = self.state.lock();
        if st.element_groups.remove(&id).is_none() {
            return Err(ReplicationError::InvalidParameter(format!(
                "ReplicationGroup: no group {id}"
            )));
        }
        self.persist(&st)?;
        Ok(())
    }

    /// Every group made by CreateGroup.
    pub fn element_groups(&self) -> Vec<ElementGroup> {
        self.state.lock().element_groups.values().cloned().collect()
    }

    /// One group made by CreateGroup.
    pub fn element_group(&self, id: u64) -> Option<ElementGroup> {
        self.state.lock().element_groups.get(&id).cloned()
    }

    /// CreateGroupReplica.
    pub fn create_group_replica(self: &Arc<Self>, req: GroupReplicaRequest) -> Result<Reply> {
        self.create_group_replica_onto(req, None)
    }

    /// CreateGroupReplica with a TargetGroup: `targets` (existing volumes,
    /// one per source, in order) become the targets; Clone and Mirror
    /// only (a snapshot's target is always new).
    pub fn create_group_replica_onto(
        self: &Arc<Self>,
        req: GroupReplicaRequest,
        targets: Option<Vec<ElementRef>>,
    ) -> Result<Reply> {
        if let Some(t) = &targets {
            if req.target_element_count.is_some() {
                return Err(ReplicationError::InvalidParameter(
                    "TargetGroup and TargetElementCount are mutually exclusive".into(),
                ));
            }
            if req.target_pool.is_some() {
                return Err(ReplicationError::InvalidParameter(
                    "TargetPool must be NULL when TargetGroup is given".into(),
                ));
            }
            if t.len() != req.sources.len() {
                return Err(ReplicationError::InvalidParameter(format!(
                    "TargetGroup has {} elements for {} source elements",
                    t.len(),
                    req.sources.len()
                )));
            }
            if req.sync_type == SyncType::Snapshot {
                return Err(ReplicationError::InvalidParameter(
                    "TargetGroup: a snapshot's targets are always new; give TargetElementCount or no target"
                        .into(),
                ));
            }
            for (i, x) in t.iter().enumerate() {
                if t[..i].contains(x) || req.sources.contains(x) {
                    return Err(ReplicationError::InvalidParameter(format!(
                        "TargetGroup: {x} is listed twice or is also a source"
                    )));
                }
            }
        }
        if req.sources.is_empty() {
            return Err(ReplicationError::InvalidParameter(
                "the source group is empty".into(),
            ));
        }
        if req.relationship_name.is_empty() {
            return Err(ReplicationError::InvalidParameter(
                "RelationshipName is empty".into(),
            ));
        }
        let pairs: Vec<(ElementRef, String)> = match req.target_element_count {
            Some(n) => {
                if req.sources.len() != 1 {
                    return Err(ReplicationError::InvalidParameter(
                        "TargetElementCount needs exactly one source element".into(),
                    ));
                }
                if n == 0 || n > MAX_GROUP_TARGETS {
                    return Err(ReplicationError::InvalidParameter(format!(
                        "TargetElementCount {n} is outside 1..={MAX_GROUP_TARGETS}"
                    )));
                }
                (1..=n)
                    .map(|i| {
                        (
                            req.sources[0].clone(),
                            format!("{}_{i}", req.relationship_name),
                        )
                    })
                    .collect()
            }
            None => req
                .sources
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), format!("{}_{}", req.relationship_name, i + 1)))
                .collect(),
        };
        for s in &req.sources {
            self.pool(&s.pool)?.volume(&s.name).map_err(|_| {
                ReplicationError::InvalidParameter(format!("source {s} is not a volume"))
            })?;
        }
        let gid = {
            let mut st = self.state.lock();
            let gid = st.next_id();
            st.groups.insert(
                gid,
                GroupSynchronization {
                    id: gid,
                    name: req.relationship_name.clone(),
                    sync_type: req.sync_type,
                    consistency: req.consistency,
                    members: Vec::new(),
                },
            );
            gid
        };
        let hold = match req.consistency {
            Consistency::Sequential => Some(self.hold_writes(&req.sources)?),
            Consistency::NoConsistency => None,
        };
        let mut reply = Reply {
            synchronization: Some(gid),
            ..Reply::default()
        };
        let mut failure = None;
        for (i, (source, name)) in pairs.into_iter().enumerate() {
            let mut one = ElementReplicaRequest::new(req.sync_type, source);
            one.element_name = Some(name);
            one.mode = req.mode;
            one.target_pool = req.target_pool.clone();
            one.target = targets.as_ref().and_then(|t| t.get(i).cloned());
            match self.create_pair(one, Some(gid), hold.is_some()) {
                Ok(r) => {
                    let mut st = self.state.lock();
                    if let (Some(g), Some(m)) = (st.groups.get_mut(&gid), r.synchronization) {
                        g.members.push(m);
                    }
                    reply.jobs.extend(r.jobs);
                    reply.targets.extend(r.targets);
                    if r.code == Some(ReturnCode::JobStarted) {
                        reply.code = r.code;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(hold);
        {
            let st = self.state.lock();
            self.persist(&st)?;
        }
        self.notify();
        if let Some(e) = failure {
            // Members made so far stay (listed in the group); report the error.
            return Err(e);
        }
        self.finish_group_wait(reply, gid, req.wait_for)
    }

    fn finish_group_wait(
        &self,
        mut reply: Reply,
        gid: u64,
        wait: Option<WaitFor>,
    ) -> Result<Reply> {
        let Some(w) = wait else { return Ok(reply) };
        let members = self.group(gid).map(|g| g.members).unwrap_or_default();
        let deadline = std::time::Instant::now() + w.timeout;
        for m in members {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let r = self.finish_wait(
                Reply::default(),
                m,
                Some(WaitFor {
                    state: w.state,
                    timeout: left,
                }),
            )?;
            if r.code() == ReturnCode::Timeout {
                reply.code = Some(ReturnCode::Timeout);
                return Ok(reply);
            }
        }
        if reply.code == Some(ReturnCode::JobStarted) {
            reply.code = Some(ReturnCode::Completed);
        }
        Ok(reply)
    }

    /// One group synchronization.
    pub fn group(&self, id: u64) -> Option<GroupSynchronization> {
        self.state.lock().groups.get(&id).cloned()
    }

    /// Every group synchronization.
    pub fn groups(&self) -> Vec<GroupSynchronization> {
        self.state.lock().groups.values().cloned().collect()
    }

    /// The group's CopyState: the members' common state, or Mixed.
    pub fn group_copy_state(&self, id: u64) -> Option<CopyState> {
        let st = self.state.lock();
        let g = st.groups.get(&id)?;
        let mut states = g
            .members
            .iter()
            .filter_map(|m| st.syncs.get(m))
            .map(|s| s.copy_state);
        let first = states.next().unwrap_or(CopyState::NotApplicable);
        Some(if states.all(|s| s == first) {
            first
        } else {
            CopyState::Mixed
        })
    }

    /// ModifyReplicaSynchronization on a group synchronization: the group
    /// operations (3, 5, 6, 13; `sync_pairs` for 5 and 13) or any other
    /// operation applied to every member (all must allow it, or nothing
    /// changes). With Sequential Consistency, points in time re-taken by
    /// the operation share one instant.
    pub fn modify_group_synchronization(
        self: &Arc<Self>,
        id: u64,
        op: Operation,
        sync_pairs: &[u64],
        wait: Option<WaitFor>,
    ) -> Result<Reply> {
        let mut st = self.state.lock();
        let group = st.groups.get(&id).cloned().ok_or_else(|| {
            ReplicationError::InvalidParameter(format!("no group synchronization {id}"))
        })?;
        let mut reply = Reply {
            synchronization: Some(id),
            ..Reply::default()
        };
        match op {
            Operation::ActivateConsistency | Operation::DeactivateConsistency => {
                let g = st.groups.get_mut(&id).expect("checked above");
                g.consistency = if op == Operation::ActivateConsistency {
                    Consistency::Sequential
                } else {
                    Consistency::NoConsistency
                };
                self.persist(&st)?;
                return Ok(reply);
            }
            Operation::AddSyncPair | Operation::RemoveSyncPair => {
                if sync_pairs.is_empty() {
                    return Err(ReplicationError::InvalidParameter(format!(
                        "{op} needs SyncPair"
                    )));
                }
                for p in sync_pairs {
                    let s = st.syncs.get(p).ok_or_else(|| {
                        ReplicationError::InvalidParameter(format!("no synchronization {p}"))
                    })?;
                    let ok = if op == Operation::AddSyncPair {
                        s.group.is_none() && s.sync_type == group.sync_type
                    } else {
                        s.group == Some(id)
                    };
                    if !ok {
                        return Err(ReplicationError::InvalidParameter(format!(
                            "synchronization {p} cannot be {} group {id}",
                            if op == Operation::AddSyncPair {
                                "added to"
                            } else {
                                "removed from"
                            }
                        )));
                    }
                }
                for p in sync_pairs {
                    let add = op == Operation::AddSyncPair;
                    if let Some(s) = st.syncs.get_mut(p) {
                        s.group = if add { Some(id) } else { None };
                    }
                    let g = st.groups.get_mut(&id).expect("checked above");
                    if add {
                        g.members.push(*p);
                    } else {
                        g.members.retain(|m| m != p);
                    }
                }
                self.persist(&st)?;
                return Ok(reply);
            }
            _ => {}
        }
        let mut plan = Vec::new();
        for m in &group.members {
            let sync = st.syncs.get(m).cloned().ok_or_else(|| {
                ReplicationError::State(format!("group {id} lists missing member {m}"))
            })?;
            match decide(sync.sync_type, sync.copy_state, op) {
                Decision::Allowed(r) if r.effect != Effect::Group => plan.push((sync, r)),
                Decision::Allowed(_) => unreachable_group_op(op)?,
                Decision::Rejected(code) => {
                    return Err(ReplicationError::Refused {
                        op,
                        sync_type: sync.sync_type,
                        state: sync.copy_state,
                        code,
                    })
                }
            }
        }
        let sources: Vec<ElementRef> = plan.iter().map(|(s, _)| s.source.clone()).collect();
        drop(st);
        let hold = match group.consistency {
            Consistency::Sequential => Some(self.hold_writes(&sources)?),
            Consistency::NoConsistency => None,
        };
        let mut st = self.state.lock();
        let mut result = Ok(());
        for (sync, rule) in plan {
            match self.apply(&mut st, sync, op, rule.next, rule.effect, hold.is_some()) {
                Ok(r) => {
                    reply.jobs.extend(r.jobs);
                    if r.code == Some(ReturnCode::JobStarted) {
                        reply.code = r.code;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(hold);
        if let Some(g) = st.groups.get(&id) {
            if g.members.is_empty()
                && matches!(
                    op,
                    Operation::Detach | Operation::Dissolve | Operation::ReturnToResourcePool
                )
            {
                st.groups.remove(&id);
            }
        }
        self.persist(&st)?;
        drop(st);
        self.notify();
        for j in &reply.jobs {
            self.spawn_job(*j, false, false);
        }
        result?;
        if self.group(id).is_none() {
            return Ok(reply);
        }
        self.finish_group_wait(reply, id, wait)
    }
}

fn unreachable_group_op(op: Operation) -> Result<()> {
    Err(ReplicationError::InvalidParameter(format!(
        "{op} was handled above"
    )))
}
