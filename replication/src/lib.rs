//! # ironlun-replication
//!
//! Will own the SMI-S / Windows iSCSI Target replication engine: the
//! Snapshot (7), Clone (8) and Mirror (6) sync types, the CopyState machine
//! driven by ModifyReplicaSynchronization, long-running jobs, replication
//! groups with consistency, and synchronization aspects. It is built on the
//! `ironlun-cow` extent store and knows nothing of iSCSI or CIM-XML; the
//! `ironlun-cim` crate only translates CIM calls into this crate's typed API.
//!
//! Not built yet: this crate is a placeholder until the replication issue.
