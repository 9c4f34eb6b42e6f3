//! The iSCSI wire form (RFC 7143 section 11): the 48-byte Basic Header
//! Segment of every PDU, decoded into typed initiator PDUs and encoded from
//! typed target PDUs.
//!
//! This module is pure: bytes in, a typed PDU or a typed [`PduError`] out.
//! Framing (AHS, digests, data segments) lives in `connection`; what the
//! PDUs mean lives in `session` and `login`.

use bytes::{BufMut, Bytes};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// The "reserved" task tag value (no task / not applicable).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Initiator opcodes (RFC 7143 11.2.1.2).
pub mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT_REQUEST: u8 = 0x02;
    pub const LOGIN_REQUEST: u8 = 0x03;
    pub const TEXT_REQUEST: u8 = 0x04;
    pub const SCSI_DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQUEST: u8 = 0x06;
    pub const SNACK_REQUEST: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const SCSI_DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC_MESSAGE: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// Why a header could not be decoded. Each maps to a Reject reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("header is {0} bytes, need {BHS_LEN}")]
    Short(usize),
    #[error("opcode {0:#04x} is not an initiator opcode")]
    UnknownOpcode(u8),
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

impl PduError {
    /// The Reject reason code (RFC 7143 11.17.1) for this error.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            PduError::Short(_) => RejectReason::ProtocolError,
            PduError::UnknownOpcode(_) => RejectReason::CommandNotSupported,
            PduError::InvalidField(_) => RejectReason::InvalidPduField,
        }
    }
}

/// The fields every BHS has in the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Common {
    pub opcode: u8,
    pub immediate: bool,
    /// TotalAHSLength in bytes (the wire holds 4-byte words).
    pub ahs_len: usize,
    pub data_len: usize,
    pub itt: u32,
}

/// Reads the opcode, lengths and task tag without judging the rest.
/// Framing needs only this to know how many more bytes to read.
pub fn common(bhs: &[u8; BHS_LEN]) -> Common {
    Common {
        opcode: bhs[0] & 0x3f,
        immediate: bhs[0] & 0x40 != 0,
        ahs_len: bhs[4] as usize * 4,
        data_len: u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize,
        itt: be32(bhs, 16),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// NOP-Out (11.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

/// Task attribute of a SCSI command (11.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAttr {
    Untagged,
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

/// SCSI Command (11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: TaskAttr,
    pub lun: u64,
    pub itt: u32,
    pub edtl: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    /// The CDB as carried in the BHS (an extended CDB AHS may add bytes).
    pub cdb: [u8; 16],
}

/// Task management functions (11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    LogicalUnitReset,
    TargetWarmReset,
    TargetColdReset,
    TaskReassign,
    /// A function code RFC 7143 does not define.
    Other(u8),
}

impl TmfFunction {
    fn from_code(code: u8) -> TmfFunction {
        match code {
            1 => TmfFunction::AbortTask,
            2 => TmfFunction::AbortTaskSet,
            3 => TmfFunction::ClearAca,
            4 => TmfFunction::ClearTaskSet,
            5 => TmfFunction::LogicalUnitReset,
            6 => TmfFunction::TargetWarmReset,
            7 => TmfFunction::TargetColdReset,
            8 => TmfFunction::TaskReassign,
            other => TmfFunction::Other(other),
        }
    }
}

/// Task Management Function Request (11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: TmfFunction,
    pub lun: u64,
    pub itt: u32,
    pub referenced_tag: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub ref_cmdsn: u32,
    pub exp_datasn: u32,
}

/// Login stages (11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    fn from_bits(bits: u8) -> Result<Stage, PduError> {
        match bits {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(PduError::InvalidField("login stage 2 is reserved")),
        }
    }
}

/// Login Request (11.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub continue_: bool,
    pub csg: Stage,
    /// Meaningful only when `transit` is set.
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

/// Text Request (11.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

/// SCSI Data-Out (11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_statsn: u32,
    pub datasn: u32,
    pub buffer_offset: u32,
}

/// Logout reasons (11.14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutReason {
    CloseSession,
    CloseConnection,
    RemoveConnectionForRecovery,
    Other(u8),
}

/// Logout Request (11.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: LogoutReason,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

/// SNACK Request (11.16). Only meaningful at ErrorRecoveryLevel > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnackRequest {
    pub kind: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_statsn: u32,
    pub beg_run: u32,
    pub run_length: u32,
}

/// Every PDU an initiator may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorPdu {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    Snack(SnackRequest),
}

impl InitiatorPdu {
    /// Decodes a BHS sent by an initiator.
    pub fn decode(bhs: &[u8]) -> Result<InitiatorPdu, PduError> {
        let bhs: &[u8; BHS_LEN] = bhs
            .get(..BHS_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(PduError::Short(bhs.len()))?;
        let c = common(bhs);
        let f = bhs[1] & 0x80 != 0;
        let pdu = match c.opcode {
            opcode::NOP_OUT => InitiatorPdu::NopOut(NopOut {
                immediate: c.immediate,
                lun: be64(bhs, 8),
                itt: c.itt,
                ttt: be32(bhs, 20),
                cmdsn: be32(bhs, 24),
                exp_statsn: be32(bhs, 28),
            }),
            opcode::SCSI_COMMAND => {
                let attr = match bhs[1] & 0x07 {
                    0 => TaskAttr::Untagged,
                    1 => TaskAttr::Simple,
                    2 => TaskAttr::Ordered,
                    3 => TaskAttr::HeadOfQueue,
                    4 => TaskAttr::Aca,
                    _ => return Err(PduError::InvalidField("task attribute")),
                };
                let mut cdb = [0u8; 16];
                cdb.copy_from_slice(&bhs[32..48]);
                InitiatorPdu::ScsiCommand(ScsiCommand {
                    immediate: c.immediate,
                    final_: f,
                    read: bhs[1] & 0x40 != 0,
                    write: bhs[1] & 0x20 != 0,
                    attr,
                    lun: be64(bhs, 8),
                    itt: c.itt,
                    edtl: be32(bhs, 20),
                    cmdsn: be32(bhs, 24),
                    exp_statsn: be32(bhs, 28),
                    cdb,
                })
            }
            opcode::TASK_MGMT_REQUEST => InitiatorPdu::TaskMgmt(TaskMgmtRequest {
                immediate: c.immediate,
                function: TmfFunction::from_code(bhs[1] & 0x7f),
                lun: be64(bhs, 8),
                itt: c.itt,
                referenced_tag: be32(bhs, 20),
                cmdsn: be32(bhs, 24),
                exp_statsn: be32(bhs, 28),
                ref_cmdsn: be32(bhs, 32),
                exp_datasn: be32(bhs, 36),
            }),
            opcode::LOGIN_REQUEST => {
                let transit = f;
                let continue_ = bhs[1] & 0x40 != 0;
                if transit && continue_ {
                    return Err(PduError::InvalidField("login T and C both set"));
                }
                let csg = Stage::from_bits((bhs[1] >> 2) & 3)?;
                let nsg = if transit {
                    Stage::from_bits(bhs[1] & 3)?
                } else {
                    csg
                };
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&bhs[8..14]);
                InitiatorPdu::Login(LoginRequest {
                    transit,
                    continue_,
                    csg,
                    nsg,
                    version_max: bhs[2],
                    version_min: bhs[3],
                    isid,
                    tsih: be16(bhs, 14),
                    itt: c.itt,
                    cid: be16(bhs, 20),
                    cmdsn: be32(bhs, 24),
                    exp_statsn: be32(bhs, 28),
                })
            }
            opcode::TEXT_REQUEST => {
                let continue_ = bhs[1] & 0x40 != 0;
                if f && continue_ {
                    return Err(PduError::InvalidField("text F and C both set"));
                }
                InitiatorPdu::Text(TextRequest {
                    immediate: c.immediate,
                    final_: f,
                    continue_,
                    lun: be64(bhs, 8),
                    itt: c.itt,
                    ttt: be32(bhs, 20),
                    cmdsn: be32(bhs, 24),
                    exp_statsn: be32(bhs, 28),
                })
            }
            opcode::SCSI_DATA_OUT => InitiatorPdu::DataOut(DataOut {
                final_: f,
                lun: be64(bhs, 8),
                itt: c.itt,
                ttt: be32(bhs, 20),
                exp_statsn: be32(bhs, 28),
                datasn: be32(bhs, 36),
                buffer_offset: be32(bhs, 40),
            }),
            opcode::LOGOUT_REQUEST => InitiatorPdu::Logout(LogoutRequest {
                immediate: c.immediate,
                reason: match bhs[1] & 0x7f {
                    0 => LogoutReason::CloseSession,
                    1 => LogoutReason::CloseConnection,
                    2 => LogoutReason::RemoveConnectionForRecovery,
                    other => LogoutReason::Other(other),
                },
                itt: c.itt,
                cid: be16(bhs, 20),
                cmdsn: be32(bhs, 24),
                exp_statsn: be32(bhs, 28),
            }),
            opcode::SNACK_REQUEST => InitiatorPdu::Snack(SnackRequest {
                kind: bhs[1] & 0x0f,
                lun: be64(bhs, 8),
                itt: c.itt,
                ttt: be32(bhs, 20),
                exp_statsn: be32(bhs, 28),
                beg_run: be32(bhs, 40),
                run_length: be32(bhs, 44),
            }),
            other => return Err(PduError::UnknownOpcode(other)),
        };
        Ok(pdu)
    }

    /// CmdSN of a PDU that carries one (everything but Data-Out and SNACK).
    pub fn cmdsn(&self) -> Option<u32> {
        match self {
            InitiatorPdu::NopOut(p) => Some(p.cmdsn),
            InitiatorPdu::ScsiCommand(p) => Some(p.cmdsn),
            InitiatorPdu::TaskMgmt(p) => Some(p.cmdsn),
            InitiatorPdu::Login(p) => Some(p.cmdsn),
            InitiatorPdu::Text(p) => Some(p.cmdsn),
            InitiatorPdu::Logout(p) => Some(p.cmdsn),
            InitiatorPdu::DataOut(_) | InitiatorPdu::Snack(_) => None,
        }
    }

    /// ExpStatSN acknowledged by this PDU.
    pub fn exp_statsn(&self) -> u32 {
        match self {
            InitiatorPdu::NopOut(p) => p.exp_statsn,
            InitiatorPdu::ScsiCommand(p) => p.exp_statsn,
            InitiatorPdu::TaskMgmt(p) => p.exp_statsn,
            InitiatorPdu::Login(p) => p.exp_statsn,
            InitiatorPdu::Text(p) => p.exp_statsn,
            InitiatorPdu::Logout(p) => p.exp_statsn,
            InitiatorPdu::DataOut(p) => p.exp_statsn,
            InitiatorPdu::Snack(p) => p.exp_statsn,
        }
    }

    /// Whether the immediate (I) bit is set.
    pub fn immediate(&self) -> bool {
        match self {
            InitiatorPdu::NopOut(p) => p.immediate,
            InitiatorPdu::ScsiCommand(p) => p.immediate,
            InitiatorPdu::TaskMgmt(p) => p.immediate,
            InitiatorPdu::Text(p) => p.immediate,
            InitiatorPdu::Logout(p) => p.immediate,
            InitiatorPdu::Login(_) => true,
            InitiatorPdu::DataOut(_) | InitiatorPdu::Snack(_) => false,
        }
    }
}

/// The sequence numbers the target stamps on every PDU it sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetSeq {
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

/// Residual reporting (the o/u/O/U flags and the counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Residual {
    #[default]
    None,
    /// The command wanted more than the initiator expected (O bit).
    Overflow(u32),
    /// The command moved less than the initiator expected (U bit).
    Underflow(u32),
}

impl Residual {
    /// The residual for a command that moves `actual` bytes when the
    /// initiator expected `expected`.
    pub fn of(expected: u32, actual: u32) -> Residual {
        match actual.cmp(&expected) {
            std::cmp::Ordering::Equal => Residual::None,
            std::cmp::Ordering::Less => Residual::Underflow(expected - actual),
            std::cmp::Ordering::Greater => Residual::Overflow(actual - expected),
        }
    }
    fn flags(self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Overflow(_) => 0x04,
            Residual::Underflow(_) => 0x02,
        }
    }
    fn count(self) -> u32 {
        match self {
            Residual::None => 0,
            Residual::Overflow(n) | Residual::Underflow(n) => n,
        }
    }
}

/// Reject reasons (11.17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    DataDigestError = 0x02,
    SnackReject = 0x03,
    ProtocolError = 0x04,
    CommandNotSupported = 0x05,
    ImmediateCommandReject = 0x06,
    TaskInProgress = 0x07,
    InvalidDataAck = 0x08,
    InvalidPduField = 0x09,
    LongOperationReject = 0x0a,
    WaitingForLogout = 0x0c,
}

/// Task management responses (11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfResponse {
    Complete = 0,
    TaskDoesNotExist = 1,
    LunDoesNotExist = 2,
    TaskStillAllegiant = 3,
    ReassignmentNotSupported = 4,
    NotSupported = 5,
    AuthorizationFailed = 6,
    Rejected = 255,
}

/// Every PDU the target sends. Sequence numbers are stamped at send time
/// from [`TargetSeq`]; `data_len` is the data segment's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPdu {
    NopIn {
        lun: u64,
        itt: u32,
        ttt: u32,
        /// NOP-In answering a NOP-Out carries StatSN without advancing it.
        advance_statsn: bool,
    },
    ScsiResponse {
        itt: u32,
        /// 0 = command completed at target, 1 = target failure.
        response: u8,
        status: u8,
        residual: Residual,
        exp_datasn: u32,
    },
    DataIn {
        lun: u64,
        itt: u32,
        final_: bool,
        /// Status (and StatSN) carried in this PDU: `Some(status)`.
        status: Option<u8>,
        residual: Residual,
        datasn: u32,
        buffer_offset: u32,
    },
    R2T {
        lun: u64,
        itt: u32,
        ttt: u32,
        r2tsn: u32,
        buffer_offset: u32,
        desired_length: u32,
    },
    TaskMgmtResponse {
        itt: u32,
        response: TmfResponse,
    },
    LoginResponse {
        transit: bool,
        continue_: bool,
        csg: Stage,
        nsg: Stage,
        version_max: u8,
        version_active: u8,
        isid: [u8; 6],
        tsih: u16,
        itt: u32,
        status_class: u8,
        status_detail: u8,
    },
    TextResponse {
        final_: bool,
        continue_: bool,
        lun: u64,
        itt: u32,
        ttt: u32,
    },
    LogoutResponse {
        itt: u32,
        response: u8,
        time2wait: u16,
        time2retain: u16,
    },
    AsyncMessage {
        lun: u64,
        event: u8,
        vcode: u8,
        param1: u16,
        param2: u16,
        param3: u16,
    },
    Reject {
        reason: RejectReason,
        datasn_r2tsn: u32,
    },
}

impl TargetPdu {
    /// Whether sending this PDU consumes a StatSN (RFC 7143 4.2.2.2.2:
    /// responses that carry status; Data-In only when it carries status).
    pub fn advances_statsn(&self) -> bool {
        match self {
            TargetPdu::NopIn { advance_statsn, .. } => *advance_statsn,
            TargetPdu::DataIn { status, .. } => status.is_some(),
            TargetPdu::R2T { .. } | TargetPdu::AsyncMessage { .. } => false,
            _ => true,
        }
    }

    /// Encodes the BHS. `seq.statsn` is the StatSN this PDU carries.
    pub fn encode(&self, seq: TargetSeq, data_len: usize) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        let dl = (data_len as u32).min(0x00ff_ffff);
        b[5..8].copy_from_slice(&dl.to_be_bytes()[1..]);
        match *self {
            TargetPdu::NopIn { lun, itt, ttt, .. } => {
                b[0] = opcode::NOP_IN;
                b[1] = 0x80;
                put64(&mut b, 8, lun);
                put32(&mut b, 16, itt);
                put32(&mut b, 20, ttt);
            }
            TargetPdu::ScsiResponse {
                itt,
                response,
                status,
                residual,
                exp_datasn,
            } => {
                b[0] = opcode::SCSI_RESPONSE;
                b[1] = 0x80 | residual.flags();
                b[2] = response;
                b[3] = status;
                put32(&mut b, 16, itt);
                put32(&mut b, 36, exp_datasn);
                put32(&mut b, 44, residual.count());
            }
            TargetPdu::DataIn {
                lun,
                itt,
                final_,
                status,
                residual,
                datasn,
                buffer_offset,
            } => {
                b[0] = opcode::SCSI_DATA_IN;
                let mut flags = if final_ { 0x80 } else { 0 };
                if let Some(st) = status {
                    flags |= 0x01 | residual.flags();
                    b[3] = st;
                    put32(&mut b, 44, residual.count());
                }
                b[1] = flags;
                put64(&mut b, 8, lun);
                put32(&mut b, 16, itt);
                put32(&mut b, 20, RESERVED_TAG);
                put32(&mut b, 36, datasn);
                put32(&mut b, 40, buffer_offset);
            }
            TargetPdu::R2T {
                lun,
                itt,
                ttt,
                r2tsn,
                buffer_offset,
                desired_length,
            } => {
                b[0] = opcode::R2T;
                b[1] = 0x80;
                put64(&mut b, 8, lun);
                put32(&mut b, 16, itt);
                put32(&mut b, 20, ttt);
                put32(&mut b, 36, r2tsn);
                put32(&mut b, 40, buffer_offset);
                put32(&mut b, 44, desired_length);
            }
            TargetPdu::TaskMgmtResponse { itt, response } => {
                b[0] = opcode::TASK_MGMT_RESPONSE;
                b[1] = 0x80;
                b[2] = response as u8;
                put32(&mut b, 16, itt);
            }
            TargetPdu::LoginResponse {
                transit,
                continue_,
                csg,
                nsg,
                version_max,
                version_active,
                isid,
                tsih,
                itt,
                status_class,
                status_detail,
            } => {
                b[0] = opcode::LOGIN_RESPONSE;
                let mut flags = (csg as u8) << 2;
                if transit {
                    flags |= 0x80 | nsg as u8;
                }
                if continue_ {
                    flags |= 0x40;
                }
                b[1] = flags;
                b[2] = version_max;
                b[3] = version_active;
                b[8..14].copy_from_slice(&isid);
                put16(&mut b, 14, tsih);
                put32(&mut b, 16, itt);
                b[36] = status_class;
                b[37] = status_detail;
            }
            TargetPdu::TextResponse {
                final_,
                continue_,
                lun,
                itt,
                ttt,
            } => {
                b[0] = opcode::TEXT_RESPONSE;
                b[1] = if final_ { 0x80 } else { 0 } | if continue_ { 0x40 } else { 0 };
                put64(&mut b, 8, lun);
                put32(&mut b, 16, itt);
                put32(&mut b, 20, ttt);
            }
            TargetPdu::LogoutResponse {
                itt,
                response,
                time2wait,
                time2retain,
            } => {
                b[0] = opcode::LOGOUT_RESPONSE;
                b[1] = 0x80;
                b[2] = response;
                put32(&mut b, 16, itt);
                put16(&mut b, 40, time2wait);
                put16(&mut b, 42, time2retain);
            }
            TargetPdu::AsyncMessage {
                lun,
                event,
                vcode,
                param1,
                param2,
                param3,
            } => {
                b[0] = opcode::ASYNC_MESSAGE;
                b[1] = 0x80;
                put64(&mut b, 8, lun);
                put32(&mut b, 16, RESERVED_TAG);
                b[36] = event;
                b[37] = vcode;
                put16(&mut b, 38, param1);
                put16(&mut b, 40, param2);
                put16(&mut b, 42, param3);
            }
            TargetPdu::Reject {
                reason,
                datasn_r2tsn,
            } => {
                b[0] = opcode::REJECT;
                b[1] = 0x80;
                b[2] = reason as u8;
                put32(&mut b, 16, RESERVED_TAG);
                put32(&mut b, 36, datasn_r2tsn);
            }
        }
        // Every target PDU carries ExpCmdSN and MaxCmdSN; all but a Data-In
        // without status carry StatSN (RFC 7143 11.7.4).
        if !matches!(self, TargetPdu::DataIn { status: None, .. }) {
            put32(&mut b, 24, seq.statsn);
        }
        put32(&mut b, 28, seq.exp_cmdsn);
        put32(&mut b, 32, seq.max_cmdsn);
        b
    }
}

/// Encodes a BHS as an initiator would send it. For tests, fuzzing and
/// tools that play the initiator; the target itself never sends these.
pub fn encode_initiator(pdu: &InitiatorPdu, ahs_words: u8, data_len: usize) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[4] = ahs_words;
    let dl = (data_len as u32).min(0x00ff_ffff);
    b[5..8].copy_from_slice(&dl.to_be_bytes()[1..]);
    let imm = |i: bool| if i { 0x40 } else { 0 };
    match pdu {
        InitiatorPdu::NopOut(p) => {
            b[0] = opcode::NOP_OUT | imm(p.immediate);
            b[1] = 0x80;
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.ttt);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
        }
        InitiatorPdu::ScsiCommand(p) => {
            b[0] = opcode::SCSI_COMMAND | imm(p.immediate);
            let attr = match p.attr {
                TaskAttr::Untagged => 0,
                TaskAttr::Simple => 1,
                TaskAttr::Ordered => 2,
                TaskAttr::HeadOfQueue => 3,
                TaskAttr::Aca => 4,
            };
            b[1] = attr
                | if p.final_ { 0x80 } else { 0 }
                | if p.read { 0x40 } else { 0 }
                | if p.write { 0x20 } else { 0 };
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.edtl);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
            b[32..48].copy_from_slice(&p.cdb);
        }
        InitiatorPdu::TaskMgmt(p) => {
            b[0] = opcode::TASK_MGMT_REQUEST | imm(p.immediate);
            let code = match p.function {
                TmfFunction::AbortTask => 1,
                TmfFunction::AbortTaskSet => 2,
                TmfFunction::ClearAca => 3,
                TmfFunction::ClearTaskSet => 4,
                TmfFunction::LogicalUnitReset => 5,
                TmfFunction::TargetWarmReset => 6,
                TmfFunction::TargetColdReset => 7,
                TmfFunction::TaskReassign => 8,
                TmfFunction::Other(c) => c & 0x7f,
            };
            b[1] = 0x80 | code;
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.referenced_tag);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
            put32(&mut b, 32, p.ref_cmdsn);
            put32(&mut b, 36, p.exp_datasn);
        }
        InitiatorPdu::Login(p) => {
            b[0] = opcode::LOGIN_REQUEST | 0x40;
            let mut flags = (p.csg as u8) << 2;
            if p.transit {
                flags |= 0x80 | p.nsg as u8;
            }
            if p.continue_ {
                flags |= 0x40;
            }
            b[1] = flags;
            b[2] = p.version_max;
            b[3] = p.version_min;
            b[8..14].copy_from_slice(&p.isid);
            put16(&mut b, 14, p.tsih);
            put32(&mut b, 16, p.itt);
            put16(&mut b, 20, p.cid);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
        }
        InitiatorPdu::Text(p) => {
            b[0] = opcode::TEXT_REQUEST | imm(p.immediate);
            b[1] = if p.final_ { 0x80 } else { 0 } | if p.continue_ { 0x40 } else { 0 };
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.ttt);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
        }
        InitiatorPdu::DataOut(p) => {
            b[0] = opcode::SCSI_DATA_OUT;
            b[1] = if p.final_ { 0x80 } else { 0 };
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.ttt);
            put32(&mut b, 28, p.exp_statsn);
            put32(&mut b, 36, p.datasn);
            put32(&mut b, 40, p.buffer_offset);
        }
        InitiatorPdu::Logout(p) => {
            b[0] = opcode::LOGOUT_REQUEST | imm(p.immediate);
            let code = match p.reason {
                LogoutReason::CloseSession => 0,
                LogoutReason::CloseConnection => 1,
                LogoutReason::RemoveConnectionForRecovery => 2,
                LogoutReason::Other(c) => c & 0x7f,
            };
            b[1] = 0x80 | code;
            put32(&mut b, 16, p.itt);
            put16(&mut b, 20, p.cid);
            put32(&mut b, 24, p.cmdsn);
            put32(&mut b, 28, p.exp_statsn);
        }
        InitiatorPdu::Snack(p) => {
            b[0] = opcode::SNACK_REQUEST;
            b[1] = 0x80 | (p.kind & 0x0f);
            put64(&mut b, 8, p.lun);
            put32(&mut b, 16, p.itt);
            put32(&mut b, 20, p.ttt);
            put32(&mut b, 28, p.exp_statsn);
            put32(&mut b, 40, p.beg_run);
            put32(&mut b, 44, p.run_length);
        }
    }
    b
}

/// Decodes the fields of a target PDU that a test client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHeaderView {
    pub opcode: u8,
    pub flags: u8,
    pub byte2: u8,
    pub byte3: u8,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_len: usize,
    pub word36: u32,
    pub word40: u32,
    pub word44: u32,
    pub tsih: u16,
}

impl TargetHeaderView {
    /// Reads a target PDU's header (for tests and tools).
    pub fn parse(bhs: &[u8; BHS_LEN]) -> TargetHeaderView {
        let c = common(bhs);
        TargetHeaderView {
            opcode: c.opcode,
            flags: bhs[1],
            byte2: bhs[2],
            byte3: bhs[3],
            itt: c.itt,
            ttt: be32(bhs, 20),
            statsn: be32(bhs, 24),
            exp_cmdsn: be32(bhs, 28),
            max_cmdsn: be32(bhs, 32),
            data_len: c.data_len,
            word36: be32(bhs, 36),
            word40: be32(bhs, 40),
            word44: be32(bhs, 44),
            tsih: be16(bhs, 14),
        }
    }
}

/// Serial number arithmetic (RFC 1982, 32 bits) for CmdSN and friends.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// `a <= b` in serial number arithmetic.
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// Appends a data segment's padding (to a 4-byte boundary).
pub fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Builds a sense data segment: 2-byte SenseLength then the sense bytes.
pub fn sense_segment(sense: &[u8]) -> Bytes {
    let mut b = bytes::BytesMut::with_capacity(2 + sense.len());
    b.put_u16(sense.len() as u16);
    b.put_slice(sense);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scsi_command_roundtrips() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        let pdu = InitiatorPdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: TaskAttr::Simple,
            lun: 0,
            itt: 7,
            edtl: 4096,
            cmdsn: 42,
            exp_statsn: 3,
            cdb,
        });
        let bhs = encode_initiator(&pdu, 0, 0);
        assert_eq!(InitiatorPdu::decode(&bhs).unwrap(), pdu);
    }

    #[test]
    fn login_roundtrips_and_rejects_bad_stage() {
        let pdu = InitiatorPdu::Login(LoginRequest {
            transit: true,
            continue_: false,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            version_max: 0,
            version_min: 0,
            isid: [0x40, 0, 1, 2, 3, 4],
            tsih: 0,
            itt: 1,
            cid: 0,
            cmdsn: 1,
            exp_statsn: 0,
        });
        let mut bhs = encode_initiator(&pdu, 0, 100);
        assert_eq!(InitiatorPdu::decode(&bhs).unwrap(), pdu);
        assert_eq!(common(&bhs).data_len, 100);
        bhs[1] = 0x80 | (2 << 2) | 3;
        assert!(matches!(
            InitiatorPdu::decode(&bhs),
            Err(PduError::InvalidField(_))
        ));
    }

    #[test]
    fn unknown_opcode_and_short_header_are_errors() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x1d;
        assert_eq!(
            InitiatorPdu::decode(&bhs),
            Err(PduError::UnknownOpcode(0x1d))
        );
        assert_eq!(InitiatorPdu::decode(&bhs[..10]), Err(PduError::Short(10)));
    }

    #[test]
    fn data_in_with_status_sets_flags() {
        let pdu = TargetPdu::DataIn {
            lun: 0,
            itt: 9,
            final_: true,
            status: Some(0),
            residual: Residual::Underflow(512),
            datasn: 0,
            buffer_offset: 0,
        };
        let seq = TargetSeq {
            statsn: 5,
            exp_cmdsn: 6,
            max_cmdsn: 70,
        };
        let b = pdu.encode(seq, 512);
        let v = TargetHeaderView::parse(&b);
        assert_eq!(v.opcode, opcode::SCSI_DATA_IN);
        assert_eq!(v.flags, 0x80 | 0x01 | 0x02);
        assert_eq!(v.statsn, 5);
        assert_eq!(v.word44, 512);
        assert!(pdu.advances_statsn());
        // Without status, StatSN stays reserved (zero); the window is stamped.
        let mid = TargetPdu::DataIn {
            lun: 0,
            itt: 9,
            final_: false,
            status: None,
            residual: Residual::None,
            datasn: 0,
            buffer_offset: 0,
        };
        let v = TargetHeaderView::parse(&mid.encode(seq, 512));
        assert_eq!((v.statsn, v.exp_cmdsn, v.max_cmdsn), (0, 6, 70));
        assert!(!mid.advances_statsn());
        let r2t = TargetPdu::R2T {
            lun: 0,
            itt: 9,
            ttt: 3,
            r2tsn: 0,
            buffer_offset: 0,
            desired_length: 4096,
        };
        let v = TargetHeaderView::parse(&r2t.encode(seq, 0));
        assert_eq!((v.statsn, v.exp_cmdsn, v.max_cmdsn), (5, 6, 70));
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(sn_lt(0xffff_fff0, 5));
        assert!(!sn_lt(5, 0xffff_fff0));
        assert!(sn_le(7, 7));
    }
}
