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
pub mod model;
pub mod table;
