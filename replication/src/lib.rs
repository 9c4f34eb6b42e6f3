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
//! - [`observer`]: [`ElementObserver`], how a server hears that replicas
//!   were made, re-created or deleted (to serve them at once).
//! - [`error`]: [`ReplicationError`], each variant with its return code.
//!
//! ## What is persisted
//! One JSON state file (replaced atomically after every change): every
//! Synchronization, group synchronization, aspect and job record (with the
//! extents a job still has to copy), the bytes-copied counter, and hidden
//! snapshots kept for cow. Points in time and change tracking live in the
//! pools themselves as hidden cow snapshots named `.repl-*`.
//!
//! ## Waiting on cow (worked around here for now)
//! - `Pool::revert_volume_to_snapshot(volume, snapshot)`: Restore from
//!   Replica as a metadata operation; today the changed extents are copied
//!   back (`changed_since` keeps it proportional to what changed).
//! - `Pool::detach_clone(name)` (drop a clone's origin link once it owns
//!   every extent) and `Volume::unshare_extent(vext)` (copy one still-shared
//!   extent into the clone atomically under cow's stripe lock): today a
//!   clone is made independent by rewriting each shared extent under
//!   [`ReplicaDevice`]'s locks, and its origin snapshot is kept (listed by
//!   [`ReplicationService::retained`]) because cow refuses to delete it.
//! - A write hook or an owned-extent query would let the iSCSI target serve
//!   plain cow volumes; today replicated volumes must be served through
//!   [`ReplicationService::device`] (the [`ReplicaDevice`] wrapper) so copies
//!   and mirror forwarding see every write.
//! - A second name for an existing snapshot (Attach To Target of an aspect
//!   would then present the point in time read-only under the target's
//!   name; today the target is a writable cow clone of it) and
//!   hidden/internal snapshot names that pool listings can skip.
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
pub mod observer;
pub mod persist;
pub mod synchronization;
pub mod table;

pub use device::ReplicaDevice;
pub use engine::{ElementReplicaRequest, ReplicationService, Reply, WaitFor};
pub use error::ReplicationError;
pub use group::GroupReplicaRequest;
pub use observer::ElementObserver;
pub use synchronization::{
    ElementGroup, ElementRef, GroupSynchronization, Synchronization, SynchronizationAspect,
};
