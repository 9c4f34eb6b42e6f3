//! The typed replication model and the one mapping to and from CIM numbers.
//!
//! Every enumeration the four replication methods use is a Rust enum here,
//! declared with its CIM value (DMTF CIM 2.41 ValueMap, see
//! `shared/reference/cim/model.md`). [`CimValue`] converts both ways; no
//! other module spells a CIM number.

use serde::{Deserialize, Serialize};

/// Conversion between a typed value and its CIM `uint16`/`uint32` number.
pub trait CimValue: Sized + Copy + 'static {
    /// Every value, in CIM order.
    const ALL: &'static [Self];
    /// The CIM number.
    fn cim(self) -> u32;
    /// The typed value for a CIM number, `None` when the number is not one
    /// of ours (the caller answers Invalid Parameter or Not Supported).
    fn from_cim(n: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.cim() == n)
    }
    /// The DMTF name (as in the MOF ValueMap's Values).
    fn label(self) -> &'static str;
}

macro_rules! cim_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $num:literal => $label:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $var,)+ }
        impl CimValue for $name {
            const ALL: &'static [Self] = &[$($name::$var,)+];
            fn cim(self) -> u32 { match self { $($name::$var => $num,)+ } }
            fn label(self) -> &'static str { match self { $($name::$var => $label,)+ } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} ({})", self.label(), self.cim())
            }
        }
    };
}

cim_enum! {
    /// `SyncType`: what kind of replica. (9 TokenizedClone is not offered.)
    SyncType {
        /// Continuous full copy: the target follows every source write.
        Mirror = 6 => "Mirror",
        /// Point-in-time virtual copy (a cow snapshot).
        Snapshot = 7 => "Snapshot",
        /// Point-in-time full copy (a cow clone made independent by a copy job).
        Clone = 8 => "Clone",
    }
}

cim_enum! {
    /// `Mode`: when a source write is acknowledged relative to the target.
    /// (4 Adaptive is not offered.)
    Mode {
        /// Acknowledged when both sides have it.
        Synchronous = 2 => "Synchronous",
        /// Acknowledged at once; the target catches up.
        Asynchronous = 3 => "Asynchronous",
    }
}

cim_enum! {
    /// `Consistency` of a group's point in time.
    Consistency {
        /// Members are copied independently.
        NoConsistency = 2 => "No Consistency",
        /// Every member's point in time is the same instant.
        Sequential = 3 => "Sequential Consistency",
    }
}

cim_enum! {
    /// `CopyState` of a Synchronization.
    CopyState {
        /// Associated, no data flow yet.
        Initialized = 2 => "Initialized",
        /// The copy is incomplete (a job is copying).
        Unsynchronized = 3 => "Unsynchronized",
        /// The target is a copy (the point in time, for snapshot and clone).
        Synchronized = 4 => "Synchronized",
        /// Errors or lack of space stopped the copy.
        Broken = 5 => "Broken",
        /// Sync suspended; changes are remembered for a fast resync.
        Fractured = 6 => "Fractured",
        /// Like Fractured, but the target is consistent.
        Split = 7 => "Split",
        /// Data flow stopped; writes are not sent.
        Inactive = 8 => "Inactive",
        /// Background copy stopped until Resume.
        Suspended = 9 => "Suspended",
        /// The target acts as the source.
        Failedover = 10 => "Failedover",
        /// Prepared for activation.
        Prepared = 11 => "Prepared",
        /// A copy was aborted; Resync restarts it.
        Aborted = 12 => "Aborted",
        /// The target was modified relative to the point in time.
        Skewed = 13 => "Skewed",
        /// Group members are in different states.
        Mixed = 14 => "Mixed",
        /// No copy state applies.
        NotApplicable = 15 => "Not Applicable",
        /// The state cannot be determined (link down).
        Partitioned = 16 => "Partitioned",
        /// The relationship is invalid.
        Invalid = 17 => "Invalid",
        /// The source was restored from the target (CIM 2.41).
        Restored = 18 => "Restored",
    }
}

cim_enum! {
    /// `ProgressStatus` of a Synchronization: what is happening now.
    ProgressStatus {
        Unknown = 0 => "Unknown",
        Completed = 2 => "Completed",
        Dormant = 3 => "Dormant",
        Initializing = 4 => "Initializing",
        Preparing = 5 => "Preparing",
        Synchronizing = 6 => "Synchronizing",
        Resyncing = 7 => "Resyncing",
        Restoring = 8 => "Restoring",
        Fracturing = 9 => "Fracturing",
        Splitting = 10 => "Splitting",
        FailingOver = 11 => "Failing over",
        FailingBack = 12 => "Failing back",
        Aborting = 13 => "Aborting",
        Mixed = 14 => "Mixed",
        NotApplicable = 15 => "Not Applicable",
        Suspending = 16 => "Suspending",
        RequiresFracture = 17 => "Requires fracture",
        RequiresResync = 18 => "Requires resync",
        RequiresActivate = 19 => "Requires activate",
        Pending = 20 => "Pending",
        Detaching = 21 => "Detaching",
        RequiresDetach = 22 => "Requires detach",
        Terminating = 23 => "Terminating",
        RequiresSplit = 24 => "Requires split",
        RequiresResume = 25 => "Requires resume",
    }
}

cim_enum! {
    /// `Operation` of ModifyReplicaSynchronization (2 Abort .. 23 Unprepare,
    /// plus the CIM 2.41 additions 24 Prepare and 25 Reset To Adaptive).
    Operation {
        Abort = 2 => "Abort",
        ActivateConsistency = 3 => "Activate Consistency",
        Activate = 4 => "Activate",
        AddSyncPair = 5 => "AddSyncPair",
        DeactivateConsistency = 6 => "Deactivate Consistency",
        Deactivate = 7 => "Deactivate",
        Detach = 8 => "Detach",
        Dissolve = 9 => "Dissolve",
        Failover = 10 => "Failover",
        Failback = 11 => "Failback",
        Fracture = 12 => "Fracture",
        RemoveSyncPair = 13 => "RemoveSyncPair",
        ResyncReplica = 14 => "Resync Replica",
        RestoreFromReplica = 15 => "Restore from Replica",
        Resume = 16 => "Resume",
        ResetToSync = 17 => "Reset To Sync",
        ResetToAsync = 18 => "Reset To Async",
        ReturnToResourcePool = 19 => "Return To ResourcePool",
        ReverseRoles = 20 => "Reverse Roles",
        Split = 21 => "Split",
        Suspend = 22 => "Suspend",
        Unprepare = 23 => "Unprepare",
        Prepare = 24 => "Prepare",
        ResetToAdaptive = 25 => "Reset To Adaptive",
    }
}

cim_enum! {
    /// Return value of the four replication methods.
    ReturnCode {
        Completed = 0 => "Completed with No Error",
        NotSupported = 1 => "Not Supported",
        Timeout = 3 => "Timeout",
        Failed = 4 => "Failed",
        InvalidParameter = 5 => "Invalid Parameter",
        InUse = 6 => "In Use",
        JobStarted = 4096 => "Method Parameters Checked - Job Started",
    }
}

cim_enum! {
    /// `JobState` of a CIM_ConcreteJob.
    JobState {
        New = 2 => "New",
        Starting = 3 => "Starting",
        Running = 4 => "Running",
        Suspended = 5 => "Suspended",
        ShuttingDown = 6 => "Shutting Down",
        Completed = 7 => "Completed",
        Terminated = 8 => "Terminated",
        Killed = 9 => "Killed",
        Exception = 10 => "Exception",
        Service = 11 => "Service",
        QueryPending = 12 => "Query Pending",
    }
}

cim_enum! {
    /// `RequestedState` of CIM_ConcreteJob.RequestStateChange.
    JobRequest {
        Start = 2 => "Start",
        Suspend = 3 => "Suspend",
        Terminate = 4 => "Terminate",
        Kill = 5 => "Kill",
        Service = 6 => "Service",
    }
}

cim_enum! {
    /// `Operation` of ModifySettingsDefineState (on a SynchronizationAspect).
    AspectOperation {
        ActivateConsistency = 2 => "Activate Consistency",
        DeactivateConsistency = 3 => "Deactivate Consistency",
        Delete = 4 => "Delete",
        CopyToTarget = 5 => "Copy To Target",
        Detach = 6 => "Detach",
        Restore = 7 => "Restore",
        AttachToTarget = 8 => "Attach To Target",
    }
}

impl JobState {
    /// Whether the job has finished (successfully or not).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Terminated | JobState::Killed | JobState::Exception
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: CimValue + PartialEq + std::fmt::Debug>() {
        for v in T::ALL {
            assert_eq!(T::from_cim(v.cim()), Some(*v));
        }
    }

    #[test]
    fn every_value_round_trips() {
        round_trip::<SyncType>();
        round_trip::<Mode>();
        round_trip::<Consistency>();
        round_trip::<CopyState>();
        round_trip::<ProgressStatus>();
        round_trip::<Operation>();
        round_trip::<ReturnCode>();
        round_trip::<JobState>();
        round_trip::<JobRequest>();
        round_trip::<AspectOperation>();
    }

    #[test]
    fn counts_match_the_model() {
        assert_eq!(CopyState::ALL.len(), 17);
        assert_eq!(Operation::ALL.len(), 24);
        assert_eq!(Operation::from_cim(2), Some(Operation::Abort));
        assert_eq!(Operation::from_cim(23), Some(Operation::Unprepare));
        assert_eq!(SyncType::from_cim(9), None);
        assert_eq!(Mode::from_cim(4), None);
        assert_eq!(ReturnCode::JobStarted.cim(), 4096);
    }
}
