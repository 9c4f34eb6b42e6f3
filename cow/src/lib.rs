//! # ironlun-cow
//!
//! Owns the storage under every LUN: the [`BlockDevice`] interface the iSCSI
//! target serves LUNs from, and the implementations behind it.
//!
//! ## Layout
//! - [`block_device`]: the interface (read, write with FUA, flush, unmap,
//!   write-zeroes, provisioning status) and its error type.
//! - [`file_device`]: a LUN served from a plain (sparse) file or block device.
//!
//! The copy-on-write extent store (pools of fixed-size extents, O(1)
//! snapshots by generation, redirect-on-write, clones, a CRC32C journal) is
//! built here too; its volumes and snapshots implement [`BlockDevice`], so
//! the target does not change when a LUN moves onto the store.
//!
//! This crate knows nothing of iSCSI or CIM.

pub mod block_device;
pub mod file_device;

pub use block_device::{
    BlockDevice, BlockError, Durability, Geometry, Provisioning, ProvisioningRun,
};
pub use file_device::{FileDevice, FileDeviceOptions, OpenError};
