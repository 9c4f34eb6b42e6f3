//! The records the engine keeps: element references, Synchronizations
//! (CIM_StorageSynchronized), group synchronizations and aspects.

use serde::{Deserialize, Serialize};

use crate::job::JobId;
use crate::model::{Consistency, CopyState, Mode, ProgressStatus, SyncType};

/// A volume or snapshot: the pool's name (as given to the service) and the
/// object's name in that pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElementRef {
    pub pool: String,
    pub name: String,
}

impl ElementRef {
    pub fn new(pool: impl Into<String>, name: impl Into<String>) -> ElementRef {
        ElementRef {
            pool: pool.into(),
            name: name.into(),
        }
    }

    /// Another object in the same pool.
    pub fn sibling(&self, name: impl Into<String>) -> ElementRef {
        ElementRef::new(self.pool.clone(), name)
    }
}

impl std::fmt::Display for ElementRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.name)
    }
}

/// One replica relationship (CIM_StorageSynchronized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synchronization {
    pub id: u64,
    /// ElementName (or RelationshipName_n for group members).
    pub name: String,
    /// SystemElement.
    pub source: ElementRef,
    /// SyncedElement.
    pub target: ElementRef,
    pub sync_type: SyncType,
    pub mode: Mode,
    pub copy_state: CopyState,
    pub progress: ProgressStatus,
    pub percent_synced: u8,
    /// Unix milliseconds.
    pub when_established: u64,
    /// The point in time, for snapshot and clone.
    pub when_activated: Option<u64>,
    pub when_synced: Option<u64>,
    pub when_deactivated: Option<u64>,
    pub when_suspended: Option<u64>,
    /// The group synchronization this pair belongs to.
    pub group: Option<u64>,
    /// The job working on it now.
    pub job: Option<JobId>,
    /// Hidden cow snapshots of the source this relationship owns (points in
    /// time; the last is the current one; for a cow clone the first is the
    /// target's origin).
    pub source_pits: Vec<ElementRef>,
    /// Hidden snapshot of the target taken when it was last synchronized
    /// (changes since it are the target's dirty extents for a resync).
    pub target_mark: Option<ElementRef>,
    /// Mirror: extents the source had not yet sent when the flow stopped
    /// (copied by the next resync together with the changes since).
    #[serde(default)]
    pub pending: roaring::RoaringBitmap,
}

/// A group of elements made by CreateGroup (CIM_ReplicationGroup): a
/// SourceGroup or TargetGroup for CreateGroupReplica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementGroup {
    pub id: u64,
    /// GroupName.
    pub name: String,
    pub members: Vec<ElementRef>,
}

/// A group-to-group relationship (CIM_GroupSynchronized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSynchronization {
    pub id: u64,
    /// RelationshipName.
    pub name: String,
    pub sync_type: SyncType,
    pub consistency: Consistency,
    /// The member synchronizations (element pairs), in order.
    pub members: Vec<u64>,
}

/// A point in time with no target (CIM_SynchronizationAspect), linked to
/// its source(s) by SettingsDefineState.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynchronizationAspect {
    pub id: u64,
    pub name: String,
    pub sync_type: SyncType,
    pub consistency: Consistency,
    /// The source elements, and the hidden snapshot holding each one's
    /// point in time (same order).
    pub sources: Vec<ElementRef>,
    pub points_in_time: Vec<ElementRef>,
    pub when_point_in_time: u64,
}
