//! The ModifyReplicaSynchronization state table, as data.
//!
//! [`RULES`] lists every allowed (SyncType, CopyState, Operation)
//! combination with its result; [`decide`] answers any combination, allowed
//! or not, with a definite [`Decision`]. `docs/REPLICATION.md` is generated
//! from this module ([`render_markdown`]) and a test fails when the checked-in
//! copy differs.
//!
//! The rejection codes and the other choices the profile leaves open are
//! listed in [`DECISIONS`] (derived from model.md section 7; no normative
//! table exists) and rendered into the doc with the table.

use crate::model::{CimValue, CopyState, Mode, Operation, ProgressStatus, ReturnCode, SyncType};

use CopyState as S;
use Operation as O;
use SyncType as T;

/// What an allowed operation leaves the relationship as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done at once: the relationship is now in this state.
    To(CopyState),
    /// The CopyState does not change (mode, roles or group membership do).
    Unchanged,
    /// A job does the work; the relationship shows `during` with `progress`
    /// while it runs and `done` when it completes.
    Job {
        during: CopyState,
        progress: ProgressStatus,
        done: CopyState,
    },
    /// The relationship is removed (Detach, Dissolve, Return To ResourcePool).
    Removed,
}

/// What the engine does to the data for an allowed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only state, timestamps or settings change.
    Bookkeeping,
    /// Snapshot: take the point in time now (again), at the target's name.
    TakePointInTime,
    /// Snapshot: discard the point in time (the target reads nothing).
    DiscardPointInTime,
    /// Clone/mirror: copy source to target (only what changed since the last
    /// sync on either side).
    CopyToTarget,
    /// Copy target to source (Restore from Replica).
    CopyToSource,
    /// Stop the copy job; what was copied stays.
    StopCopy,
    /// Pause the copy job (mirror: stop sending writes, remember them).
    SuspendCopy,
    /// Continue the paused copy job (or start a resync for a mirror).
    ResumeCopy,
    /// Stop following the source; remember changes on both sides.
    StopFlow,
    /// Quiesce, drain outstanding copies, then stop the flow.
    DrainAndStopFlow,
    /// Forget the relationship; both elements stay, independent.
    Forget,
    /// Forget the relationship; a snapshot's point in time is kept as a
    /// SynchronizationAspect of the source.
    Dissolve,
    /// Delete the target and free its space.
    DeleteTarget,
    /// Make the target the writable side.
    Failover,
    /// Copy the target's changes back and make the source writable again.
    Failback,
    /// Swap source and target (the association keys change).
    SwapRoles,
    /// Change the mode.
    SetMode(Mode),
    /// Group consistency or membership (group synchronizations only).
    Group,
}

/// One allowed transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub op: Operation,
    pub types: &'static [SyncType],
    pub from: &'static [CopyState],
    pub next: Next,
    pub effect: Effect,
}

/// The answer for one (SyncType, CopyState, Operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed(&'static Rule),
    Rejected(ReturnCode),
}

impl Decision {
    /// The code the method returns for this decision.
    pub fn code(self) -> ReturnCode {
        match self {
            Decision::Allowed(r) => r.code(),
            Decision::Rejected(c) => c,
        }
    }
}

impl Rule {
    /// 4096 when a job does the work, else 0.
    pub fn code(&self) -> ReturnCode {
        match self.next {
            Next::Job { .. } => ReturnCode::JobStarted,
            _ => ReturnCode::Completed,
        }
    }
}

const ALL: &[SyncType] = &[T::Mirror, T::Snapshot, T::Clone];
const CM: &[SyncType] = &[T::Mirror, T::Clone];
const M: &[SyncType] = &[T::Mirror];
const SNAP: &[SyncType] = &[T::Snapshot];
const CLONE: &[SyncType] = &[T::Clone];

/// States a copy job owns (operations other than the job controls: In Use).
pub const JOB_STATES: &[CopyState] = &[S::Unsynchronized, S::Suspended];

const COPYING: Next = Next::Job {
    during: S::Unsynchronized,
    progress: ProgressStatus::Synchronizing,
    done: S::Synchronized,
};
const RESYNCING: Next = Next::Job {
    during: S::Unsynchronized,
    progress: ProgressStatus::Resyncing,
    done: S::Synchronized,
};
const RESTORING: Next = Next::Job {
    during: S::Unsynchronized,
    progress: ProgressStatus::Restoring,
    done: S::Synchronized,
};
const FAILING_BACK: Next = Next::Job {
    during: S::Unsynchronized,
    progress: ProgressStatus::FailingBack,
    done: S::Synchronized,
};

const SNAP_STABLE: &[CopyState] = &[
    S::Initialized,
    S::Prepared,
    S::Synchronized,
    S::Inactive,
    S::Broken,
];
const CM_STABLE: &[CopyState] = &[
    S::Initialized,
    S::Prepared,
    S::Synchronized,
    S::Inactive,
    S::Fractured,
    S::Split,
    S::Aborted,
    S::Broken,
];
const M_ANY: &[CopyState] = &[
    S::Initialized,
    S::Prepared,
    S::Unsynchronized,
    S::Synchronized,
    S::Inactive,
    S::Fractured,
    S::Split,
    S::Suspended,
    S::Failedover,
    S::Aborted,
    S::Broken,
];

macro_rules! rule {
    ($op:expr, $types:expr, $from:expr, $next:expr, $effect:expr) => {
        Rule {
            op: $op,
            types: $types,
            from: $from,
            next: $next,
            effect: $effect,
        }
    };
}

/// Every allowed transition. Anything not listed is rejected by [`decide`].
pub static RULES: &[Rule] = &[
    rule!(
        O::Abort,
        CM,
        &[S::Unsynchronized, S::Suspended],
        Next::To(S::Aborted),
        Effect::StopCopy
    ),
    rule!(
        O::ActivateConsistency,
        ALL,
        M_ANY,
        Next::Unchanged,
        Effect::Group
    ),
    rule!(
        O::DeactivateConsistency,
        ALL,
        M_ANY,
        Next::Unchanged,
        Effect::Group
    ),
    rule!(O::AddSyncPair, ALL, M_ANY, Next::Unchanged, Effect::Group),
    rule!(
        O::RemoveSyncPair,
        ALL,
        M_ANY,
        Next::Unchanged,
        Effect::Group
    ),
    rule!(
        O::Activate,
        SNAP,
        &[S::Initialized, S::Prepared, S::Inactive],
        Next::To(S::Synchronized),
        Effect::TakePointInTime
    ),
    rule!(
        O::Activate,
        CM,
        &[S::Initialized, S::Prepared, S::Inactive],
        COPYING,
        Effect::CopyToTarget
    ),
    rule!(
        O::Deactivate,
        SNAP,
        &[S::Synchronized],
        Next::To(S::Inactive),
        Effect::DiscardPointInTime
    ),
    rule!(
        O::Deactivate,
        CLONE,
        &[S::Synchronized],
        Next::To(S::Inactive),
        Effect::Bookkeeping
    ),
    rule!(
        O::Deactivate,
        M,
        &[S::Synchronized, S::Fractured, S::Split],
        Next::To(S::Inactive),
        Effect::StopFlow
    ),
    rule!(O::Detach, CM, CM_STABLE, Next::Removed, Effect::Forget),
    rule!(
        O::Detach,
        M,
        &[S::Failedover],
        Next::Removed,
        Effect::Forget
    ),
    rule!(
        O::Dissolve,
        SNAP,
        SNAP_STABLE,
        Next::Removed,
        Effect::Dissolve
    ),
    rule!(O::Dissolve, CM, CM_STABLE, Next::Removed, Effect::Dissolve),
    rule!(
        O::Failover,
        M,
        &[S::Synchronized, S::Fractured, S::Split],
        Next::To(S::Failedover),
        Effect::Failover
    ),
    rule!(
        O::Failback,
        M,
        &[S::Failedover],
        FAILING_BACK,
        Effect::Failback
    ),
    rule!(
        O::Fracture,
        CM,
        &[S::Synchronized],
        Next::To(S::Fractured),
        Effect::StopFlow
    ),
    rule!(
        O::Split,
        CM,
        &[S::Synchronized],
        Next::To(S::Split),
        Effect::DrainAndStopFlow
    ),
    rule!(
        O::ResyncReplica,
        SNAP,
        &[S::Synchronized, S::Broken],
        Next::To(S::Synchronized),
        Effect::TakePointInTime
    ),
    rule!(
        O::ResyncReplica,
        CLONE,
        &[
            S::Synchronized,
            S::Fractured,
            S::Split,
            S::Aborted,
            S::Broken
        ],
        RESYNCING,
        Effect::CopyToTarget
    ),
    rule!(
        O::ResyncReplica,
        M,
        &[S::Synchronized],
        Next::Unchanged,
        Effect::Bookkeeping
    ),
    rule!(
        O::ResyncReplica,
        M,
        &[S::Fractured, S::Split, S::Aborted, S::Broken, S::Inactive],
        RESYNCING,
        Effect::CopyToTarget
    ),
    rule!(
        O::RestoreFromReplica,
        SNAP,
        &[S::Synchronized],
        RESTORING,
        Effect::CopyToSource
    ),
    rule!(
        O::RestoreFromReplica,
        CLONE,
        &[S::Synchronized, S::Fractured, S::Split],
        RESTORING,
        Effect::CopyToSource
    ),
    rule!(
        O::RestoreFromReplica,
        M,
        &[S::Fractured, S::Split],
        RESTORING,
        Effect::CopyToSource
    ),
    rule!(
        O::Suspend,
        CM,
        &[S::Unsynchronized],
        Next::To(S::Suspended),
        Effect::SuspendCopy
    ),
    rule!(
        O::Suspend,
        M,
        &[S::Synchronized],
        Next::To(S::Suspended),
        Effect::SuspendCopy
    ),
    rule!(
        O::Resume,
        CM,
        &[S::Suspended],
        Next::To(S::Unsynchronized),
        Effect::ResumeCopy
    ),
    rule!(
        O::ResetToSync,
        M,
        M_ANY,
        Next::Unchanged,
        Effect::SetMode(Mode::Synchronous)
    ),
    rule!(
        O::ResetToAsync,
        M,
        M_ANY,
        Next::Unchanged,
        Effect::SetMode(Mode::Asynchronous)
    ),
    rule!(
        O::ReturnToResourcePool,
        SNAP,
        SNAP_STABLE,
        Next::Removed,
        Effect::DeleteTarget
    ),
    rule!(
        O::ReverseRoles,
        M,
        &[S::Synchronized, S::Fractured, S::Split],
        Next::Unchanged,
        Effect::SwapRoles
    ),
    rule!(
        O::ReverseRoles,
        M,
        &[S::Failedover],
        Next::To(S::Fractured),
        Effect::SwapRoles
    ),
    rule!(
        O::Prepare,
        ALL,
        &[S::Initialized, S::Inactive],
        Next::To(S::Prepared),
        Effect::Bookkeeping
    ),
    rule!(
        O::Unprepare,
        ALL,
        &[S::Prepared, S::Inactive],
        Next::To(S::Initialized),
        Effect::Bookkeeping
    ),
];

/// The states a relationship of `t` can be in (what the engine can reach).
pub fn reachable(t: SyncType) -> &'static [CopyState] {
    match t {
        // Unsynchronized only while a Restore from Replica job runs.
        T::Snapshot => &[
            S::Initialized,
            S::Prepared,
            S::Unsynchronized,
            S::Synchronized,
            S::Inactive,
            S::Broken,
        ],
        T::Clone => &[
            S::Initialized,
            S::Prepared,
            S::Unsynchronized,
            S::Synchronized,
            S::Inactive,
            S::Fractured,
            S::Split,
            S::Suspended,
            S::Aborted,
            S::Broken,
        ],
        T::Mirror => M_ANY,
    }
}

/// The answer for `op` on a relationship of type `t` in state `state`.
pub fn decide(t: SyncType, state: CopyState, op: Operation) -> Decision {
    let mut known_for_type = false;
    for r in RULES.iter().filter(|r| r.op == op && r.types.contains(&t)) {
        known_for_type = true;
        if r.from.contains(&state) && reachable(t).contains(&state) {
            return Decision::Allowed(r);
        }
    }
    if !known_for_type {
        Decision::Rejected(ReturnCode::NotSupported)
    } else if JOB_STATES.contains(&state) {
        Decision::Rejected(ReturnCode::InUse)
    } else {
        Decision::Rejected(ReturnCode::InvalidParameter)
    }
}

/// The CopyStates from which `op` is allowed for `t` (GetSupportedCopyStates).
pub fn supported_copy_states(t: SyncType, op: Operation) -> Vec<CopyState> {
    reachable(t)
        .iter()
        .copied()
        .filter(|s| matches!(decide(t, *s, op), Decision::Allowed(_)))
        .collect()
}

/// The operations allowed for `t` in `state` (GetSupportedOperations).
pub fn supported_operations(t: SyncType, state: CopyState) -> Vec<Operation> {
    O::ALL
        .iter()
        .copied()
        .filter(|op| matches!(decide(t, state, *op), Decision::Allowed(_)))
        .collect()
}

/// The choices behind the rejection codes (no normative table exists;
/// derived from model.md section 7), rendered into docs/REPLICATION.md.
pub const DECISIONS: &[&str] = &[
    "An operation never meaningful for a SyncType (Failover on a snapshot, Return To ResourcePool on a clone or mirror, Reset To Adaptive anywhere: Adaptive mode is not offered) returns 1 Not Supported.",
    "An operation meaningful for the SyncType but not from the current CopyState returns 6 In Use when a copy job owns the relationship (CopyState 3 Unsynchronized or 9 Suspended: Abort, Suspend/Resume or wait first), else 5 Invalid Parameter: it is refused while the parameters are checked (step 1 of the 4096 lifecycle), before any work or job.",
    "Snapshot Detach is Not Supported: a cow snapshot depends on its source by construction. Dissolve (the point in time survives as a SynchronizationAspect) or Return To ResourcePool (the snapshot is deleted) end a snapshot relationship.",
    "Snapshot Deactivate discards the point in time (the target snapshot is deleted; CopyState 8); Activate takes a new one. Resync Replica re-takes it under the same name (O(1), return 0).",
    "Mirror Resync Replica from Synchronized completes at once (nothing is dirty). Restore from Replica on a mirror needs the flow stopped first (Fractured or Split).",
    "Resume after Suspend returns to Unsynchronized: the suspended copy job continues (a mirror suspended while Synchronized starts a resync job); return 0, the job runs on.",
    "Reverse Roles from Failedover leaves the pair Fractured (the new source has writes the new target lacks); Resync Replica then copies them. From Synchronized the mirror keeps flowing in the new direction.",
    "Prepare (24) and Unprepare (23) only move between Initialized, Prepared and Inactive; no data moves until Activate.",
    "The group operations (3, 5, 6, 13) keep the CopyState; on an element (not group) synchronization the engine answers 5 Invalid Parameter. Other operations on a group synchronization apply to every member, and only if every member allows them.",
    "WaitForCopyState waits at most the caller's timeout (capped at 10 minutes); when it runs out the method returns 3 Timeout and the job continues.",
];

/// How each SyncType maps onto the cow store, rendered into the doc.
pub const ENGINE_NOTES: &[&str] = &[
    "Snapshot (7): the target is a cow snapshot of the source named ElementName (read-only, O(1), durable on return). Restore from Replica copies back only the extents the source changed since the snapshot's generation (`Volume::changed_since`).",
    "Clone (8): a hidden cow snapshot `.repl-<id>-pit-<n>` of the source is the point in time; the target is a cow clone of it, usable at once; a job copies every extent the clone still shares, so its data becomes independent (CopyState 3 then 4). A target in another pool is a new volume filled by the same job (usable once 4). When synchronized, a hidden mark snapshot of the target (`.repl-<id>-mark-<n>`) records the state, so Resync copies only the extents changed on either side since.",
    "Mirror (6): the target is a new (or given) volume in any pool. The source is served through its ReplicaDevice, whose MirrorLink forwards each write before it returns (Synchronous) or marks its extents in a roaring bitmap drained by a background copier, falling back to synchronous writes past 1024 pending extents (Asynchronous). While the mirror flows the target refuses initiator writes. Stopping the flow (Fracture, Split after draining, Suspend, Deactivate, Failover) takes a cow snapshot of both sides, so the changes on either side are known exactly across restarts; Resync and Failback/Restore copy only those.",
    "Jobs copy in extent batches, record the extents still to copy in the state file (at most every 0.5 s, after flushing what they copied), and resume from it after a restart or kill -9. Finished jobs are kept for TimeBeforeRemoval (5 minutes).",
    "Sequential Consistency: writes to every source member (through their ReplicaDevices) are held while the members' cow snapshots are taken, then released.",
];

fn cell(d: Decision) -> String {
    match d {
        Decision::Allowed(r) => match r.next {
            Next::To(s) => format!("→{}", s.cim()),
            Next::Unchanged => "=".to_string(),
            Next::Removed => "✕".to_string(),
            Next::Job { during, done, .. } => format!("job {}→{}", during.cim(), done.cim()),
        },
        Decision::Rejected(c) => format!("*{}*", c.cim()),
    }
}

/// `docs/REPLICATION.md`, generated from [`RULES`] and [`decide`].
pub fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Replication state table\n\n\
         Generated from `replication/src/table.rs` by \
         `cargo run -p ironlun-replication --example gen_replication_doc`; \
         do not edit by hand (a test compares this file with the code).\n\n\
         For every SyncType, the result of each ModifyReplicaSynchronization \
         Operation (rows) in each CopyState the engine can reach (columns).\n\n\
         Legend: `→n` completes (return 0) leaving CopyState n; \
         `job a→b` returns 4096 with a job, the relationship shows CopyState a \
         while the job runs and b when it completes; `=` completes (0) without \
         changing CopyState; `✕` completes (0) and removes the relationship; \
         *n* is the rejection code (1 Not Supported: never valid for this \
         SyncType; 6 In Use: a copy job owns the relationship; 5 Invalid \
         Parameter: not valid from this CopyState). CopyStates not shown \
         (13 Skewed, 14 Mixed, 15 Not Applicable, 16 Partitioned, 17 Invalid, \
         18 Restored) are never entered; any operation there answers as in \
         the last rule (1 or 5). Operations 3, 5, 6 and 13 act on group \
         synchronizations only; on an element synchronization they return 5.\n\n",
    );
    out.push_str("CopyState numbers: ");
    let names: Vec<String> = reachable(T::Mirror)
        .iter()
        .map(|s| format!("{} {}", s.cim(), s.label()))
        .collect();
    out.push_str(&names.join(", "));
    out.push_str(".\n\n");
    for t in [T::Snapshot, T::Clone, T::Mirror] {
        let states = reachable(t);
        out.push_str(&format!("## {} ({})\n\n| Operation |", t.label(), t.cim()));
        for s in states {
            out.push_str(&format!(" {} |", s.cim()));
        }
        out.push_str("\n|---|");
        for _ in states {
            out.push_str("---|");
        }
        out.push('\n');
        for op in O::ALL {
            out.push_str(&format!("| {} {} |", op.cim(), op.label()));
            for s in states {
                out.push_str(&format!(" {} |", cell(decide(t, *s, *op))));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("## Decisions\n\n");
    for d in DECISIONS {
        out.push_str(&format!("- {d}\n"));
    }
    out.push_str("\n## How the engine does it\n\n");
    for d in ENGINE_NOTES {
        out.push_str(&format!("- {d}\n"));
    }
    out.push('\n');
    out.push_str("## Effects of the allowed operations\n\n| SyncType | Operation | from | effect |\n|---|---|---|---|\n");
    for r in RULES {
        let types: Vec<&str> = r.types.iter().map(|t| t.label()).collect();
        let from: Vec<String> = r.from.iter().map(|s| s.cim().to_string()).collect();
        out.push_str(&format!(
            "| {} | {} {} | {} | {:?} |\n",
            types.join(", "),
            r.op.cim(),
            r.op.label(),
            from.join(", "),
            r.effect
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_rules_overlap() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                if a.op != b.op {
                    continue;
                }
                for t in a.types.iter().filter(|t| b.types.contains(t)) {
                    let both: Vec<_> = a.from.iter().filter(|s| b.from.contains(s)).collect();
                    assert!(both.is_empty(), "{t:?} {both:?} {:?} has two rules", a.op);
                }
            }
        }
    }

    #[test]
    fn every_rule_starts_from_a_reachable_state_and_ends_in_one() {
        for r in RULES {
            for t in r.types {
                // Shared from-lists (group operations) may name states another
                // SyncType never reaches; at least one must be reachable.
                assert!(
                    r.from.iter().any(|s| reachable(*t).contains(s)),
                    "{t:?} {:?}",
                    r.op
                );
                let ends: Vec<CopyState> = match r.next {
                    Next::To(s) => vec![s],
                    Next::Job { during, done, .. } => vec![during, done],
                    _ => vec![],
                };
                for e in ends {
                    assert!(reachable(*t).contains(&e), "{t:?} -> {e:?} by {:?}", r.op);
                }
            }
        }
    }
}
