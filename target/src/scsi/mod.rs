//! SCSI block-device emulation (SPC-4 / SBC-3) over a [`BlockDevice`].
//!
//! The transport (`session`) hands every SCSI command here as a
//! [`CommandRequest`] (CDB, expected length, all Data-Out bytes already
//! collected) and gets back a [`CommandOutcome`] (status, sense, Data-In
//! bytes and the transfer length the CDB itself describes, from which the
//! transport computes exact residuals). Everything here is synchronous and
//! is called from blocking worker threads; nothing here knows about PDUs.
//!
//! Per logical unit state that several sessions share (unit attentions,
//! mode page values, reservations) lives in [`LogicalUnit`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use ironlun_cow::BlockDevice;

/// SCSI status codes (SAM-5).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const CONDITION_MET: u8 = 0x04;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
    pub const ACA_ACTIVE: u8 = 0x30;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// The target port a command arrived through (for VPD 0x83 and PR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPort {
    /// The target's iSCSI name (IQN).
    pub target_name: String,
    /// Target portal group tag.
    pub tpgt: u16,
    /// Relative target port identifier (1-based, unique within the target).
    pub relative_port_id: u16,
}

/// One I_T nexus: an initiator port (name + ISID) talking to a target port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexus {
    /// Unique for the life of the process; stable for the life of the nexus.
    pub id: u64,
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target_port: Arc<TargetPort>,
}

/// Identity data of a logical unit, stable across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuIdentity {
    /// T10 vendor identification (8 bytes, space padded on the wire).
    pub vendor: String,
    /// Product identification (16 bytes, space padded).
    pub product: String,
    /// Product revision level (4 bytes).
    pub revision: String,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// NAA IEEE Registered Extended designator (NAA 6, 16 bytes) for VPD 0x83.
    pub naa: [u8; 16],
}

/// Per-LU options from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LuOptions {
    /// Report and enforce write protection.
    pub read_only: bool,
    /// Removable medium (PREVENT ALLOW MEDIUM REMOVAL, load/eject).
    pub removable: bool,
    /// Allow SANITIZE.
    pub allow_sanitize: bool,
}

/// A SCSI command as the transport hands it over.
#[derive(Debug)]
pub struct CommandRequest<'a> {
    /// The CDB (16 bytes from the BHS, longer with an extended CDB AHS).
    pub cdb: &'a [u8],
    /// Expected Data Transfer Length from the initiator.
    pub edtl: u32,
    /// R (read) flag of the SCSI Command PDU.
    pub read: bool,
    /// W (write) flag of the SCSI Command PDU.
    pub write: bool,
    /// All Data-Out bytes received for this command (at most `edtl`).
    pub data_out: &'a [u8],
}

/// What a command produced.
#[derive(Debug, Default)]
pub struct CommandOutcome {
    pub status: u8,
    /// Sense data (fixed or descriptor format) when status is CHECK CONDITION.
    pub sense: Option<Vec<u8>>,
    /// Data-In bytes, at most what the CDB's allocation length allows. The
    /// transport sends at most `edtl` of them.
    pub data_in: BytesMut,
    /// Bytes the CDB itself asks to move (data-in or data-out), used for the
    /// residual: `transfer_len < edtl` is an underflow, `> edtl` an overflow.
    /// For a read-type command this is normally `data_in.len()`.
    pub transfer_len: u32,
}

/// A logical unit: a block device plus the SCSI state shared by all nexuses.
pub struct LogicalUnit {
    pub device: Arc<dyn BlockDevice>,
    pub identity: LuIdentity,
    pub options: LuOptions,
}

/// Which reset a task management function performed (SAM-5 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET.
    LogicalUnit,
    /// TARGET WARM RESET.
    TargetWarm,
    /// TARGET COLD RESET.
    TargetCold,
}

impl LogicalUnit {
    /// Called by the transport after it aborted the LU's tasks for a reset
    /// requested through `issuing`: establishes the unit attentions the
    /// reset causes and clears the state it clears.
    pub fn reset(&self, kind: ResetKind, issuing: &Nexus) {
        let _ = (kind, issuing);
    }

    /// A logical unit over `device`.
    pub fn new(device: Arc<dyn BlockDevice>, identity: LuIdentity, options: LuOptions) -> Self {
        LogicalUnit {
            device,
            identity,
            options,
        }
    }
}

/// The LUNs one target exposes, and the dispatcher of SCSI commands to them.
#[derive(Default)]
pub struct LunMap {
    luns: BTreeMap<u64, Arc<LogicalUnit>>,
}

impl LunMap {
    /// An empty map.
    pub fn new() -> Self {
        LunMap::default()
    }

    /// Maps `lun` (the plain number, 0..16383) to a logical unit.
    pub fn insert(&mut self, lun: u64, lu: Arc<LogicalUnit>) {
        self.luns.insert(lun, lu);
    }

    /// The logical unit at `lun`, if mapped.
    pub fn get(&self, lun: u64) -> Option<&Arc<LogicalUnit>> {
        self.luns.get(&lun)
    }

    /// Mapped LUN numbers in ascending order.
    pub fn luns(&self) -> impl Iterator<Item = u64> + '_ {
        self.luns.keys().copied()
    }

    /// The number of Data-Out bytes the CDB asks for, so the transport knows
    /// how much to solicit (`None`: no data-out, or the CDB is invalid and
    /// `execute` will say so).
    pub fn data_out_len(&self, lun: u64, cdb: &[u8]) -> Option<u32> {
        let _ = (lun, cdb);
        None
    }

    /// Executes one command. `lun` is the decoded LUN number (from the
    /// 8-byte LUN field, see [`decode_lun`]).
    pub fn execute(&self, lun: u64, nexus: &Nexus, req: &CommandRequest<'_>) -> CommandOutcome {
        let _ = (lun, nexus, req);
        CommandOutcome {
            status: status::CHECK_CONDITION,
            // ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE, fixed format.
            sense: Some(vec![
                0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0,
            ]),
            ..Default::default()
        }
    }
}

/// Decodes the 8-byte LUN field (SAM-5 peripheral or flat addressing) to a
/// LUN number; `None` for addressing methods we do not use.
pub fn decode_lun(raw: u64) -> Option<u64> {
    let b = raw.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 => {
            if b[0] & 0x3f != 0 {
                return None;
            }
            Some(b[1] as u64)
        }
        1 => Some((((b[0] & 0x3f) as u64) << 8) | b[1] as u64),
        _ => None,
    }
}

/// Encodes a LUN number the way REPORT LUNS and iSCSI PDUs carry it
/// (peripheral addressing below 256, flat space above).
pub fn encode_lun(lun: u64) -> u64 {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        b[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        b[1] = lun as u8;
    }
    u64::from_be_bytes(b)
}
