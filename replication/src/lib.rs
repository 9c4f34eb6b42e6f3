//! # ironlun-replication
//!
//! The SMI-S / Windows iSCSI Target replication engine: Snapshot (7),
//! Clone (8) and Mirror (6) relationships on the `ironlun-cow` extent
//! store, the CopyState machine driven by ModifyReplicaSynchronization,
//! jobs, groups and synchronization aspects. It knows nothing of iSCSI or
//! CIM-XML; `ironlun-cim` only translates CIM calls into this typed API.
//!
//! ## Layout
//! - [`model`]: the typed enums (SyncType, Mode, Consistency, CopyState,
//!   ProgressStatus, Operation, ReturnCode, JobState, ...) and the one
//!   mapping to and from CIM numbers.
//! - [`table`]: the Operation x CopyState x SyncType state table as data;
//!   `docs/REPLICATION.md` is generated from it.
//! - [`synchronization`]: the records: [`ElementRef`], [`Synchronization`]
//!   (CIM_StorageSynchronized), [`GroupSynchronization`],
//!   [`SynchronizationAspect`].
//! - [`engine`]: [`ReplicationService`]: CreateElementReplica and
//!   ModifyReplicaSynchronization on cow pools, WaitForCopyState, job control.
//! - [`group`]: CreateGroupReplica and group operations (consistent points
//!   in time across members).
//! - [`aspect`]: CreateSynchronizationAspect and ModifySettingsDefineState.
//! - [`mirror`]: Mirror (6): [`mirror::MirrorLink`], the write hook on the
//!   source's [`ReplicaDevice`] (synchronous forward, asynchronous dirty
//!   bitmap with a drainer, tracking while fractured), and the engine's
//!   Fracture/Split/Resync/Restore/Failover/Failback/Reverse Roles.
//! - [`job`]: job records (CIM_ConcreteJob) and their control.
//! - [`copier`]: extent-granular copying, the body of every job.
//! - [`device`]: [`ReplicaDevice`], the block device replicated volumes are
//!   served through (copier locks, consistency gate, mirror write hook).
//! - [`persist`]: the state file, replaced atomically.
//! - [`error`]: [`ReplicationError`], each variant with its return code.
//!
//! ## Use
//! ```no_run
//! use ironlun_replication::{ElementRef, ElementReplicaRequest, ReplicationService};
//! use ironlun_replication::model::SyncType;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = ironlun_cow::Pool::open_or_create("data/pool.img", 1 << 30)?;
//! pool.open_or_create_volume("lun0", 64 << 20)?;
//! let svc = ReplicationService::open([("main".to_string(), pool)], "data/replication.json")?;
//! let mut req = ElementReplicaRequest::new(SyncType::Snapshot, ElementRef::new("main", "lun0"));
//! req.element_name = Some("lun0-snap".into());
//! let reply = svc.create_element_replica(req)?;
//! assert_eq!(reply.code().to_string(), "Completed with No Error (0)");
//! # Ok(()) }
//! ```

pub mod aspect;
pub mod copier;
pub mod device;
pub mod engine;
pub mod error;
pub mod group;
pub mod job;
pub mod mirror;
pub mod model;
pub mod persist;
pub mod synchronization;
pub mod table;

pub use device::ReplicaDevice;
pub use engine::{ElementReplicaRequest, ReplicationService, Reply, WaitFor};
pub use error::ReplicationError;
pub use group::GroupReplicaRequest;
pub use synchronization::{
    ElementRef, GroupSynchronization, Synchronization, SynchronizationAspect,
};
