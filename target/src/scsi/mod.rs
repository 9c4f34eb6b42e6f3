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
//!
//! ## Layout
//! - [`sense`]: fixed / descriptor sense data and `BlockError` mapping.
//! - [`cdb`]: typed, panic-free CDB decoding.
//! - [`unit_attention`]: per-nexus unit attention queues and resets.
//! - `inquiry`, `capacity`, `rw`, `mode`, `report_luns`, `request_sense`,
//!   `opcodes`: one module per command family (decode → execute → reply).
//! - [`mem`]: an in-memory [`BlockDevice`] for tests and fuzzing.
//! - `reservation` (PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE and the
//!   conflict check every command passes), `pr_access` (which commands a
//!   reservation lets through), `persist` (the PR state file),
//!   [`transport_id`] (I_T nexus identities and iSCSI TransportIDs).
//!
//! Commands: TEST UNIT READY, INQUIRY (standard; VPD 00h, 80h, 83h, 8Fh,
//! B0h, B1h, B2h), REQUEST SENSE, REPORT LUNS, REPORT SUPPORTED OPERATION CODES,
//! MODE SENSE / MODE SELECT (6, 10), START STOP UNIT, PREVENT ALLOW MEDIUM
//! REMOVAL, READ CAPACITY (10, 16), READ / WRITE (6, 10, 12, 16), WRITE AND
//! VERIFY / VERIFY (10, 12, 16), SYNCHRONIZE CACHE (10, 16), WRITE SAME
//! (10, 16), UNMAP, GET LBA STATUS, COMPARE AND WRITE, ORWRITE (16), WRITE
//! ATOMIC (16), PRE-FETCH (10, 16), READ DEFECT DATA (10, 12), SANITIZE
//! (when allowed), REPORT TARGET PORT GROUPS, PERSISTENT RESERVE IN / OUT,
//! RESERVE / RELEASE (6, 10), EXTENDED COPY (LID1), RECEIVE COPY RESULTS
//! (COPY STATUS, OPERATING PARAMETERS), POPULATE TOKEN, WRITE USING TOKEN,
//! RECEIVE ROD TOKEN INFORMATION (`xcopy`, `rod_token`, `block_copy`,
//! `copy_domain`). Anything else: INVALID COMMAND OPERATION
//! CODE.
//!
//! ## What the transport calls
//! - [`LunMap::data_out_len`] to know how much Data-Out to solicit, then
//!   [`LunMap::execute`].
//! - [`LunMap::register_nexus`] when a session reaches full feature phase
//!   (optional: a nexus is also registered by its first command), and
//!   [`LunMap::nexus_lost`] when the I_T nexus ends (logout, connection
//!   loss without reinstatement, session reinstatement of the old nexus).
//! - [`LunMap::logical_unit_reset`] for LOGICAL UNIT RESET and
//!   [`LunMap::target_reset`] for TARGET WARM / COLD RESET, after the
//!   tasks concerned have been aborted.
//! - [`LunMap::commands_cleared`] after CLEAR TASK SET aborted other
//!   nexuses' tasks.
//! - [`LunMap::notify_luns_changed`] after the LUN map of a target changed,
//!   [`LogicalUnit::notify_capacity_changed`] after a resize.
//!
//! Residual rules the emulation follows (those of LIO, which passes
//! libiscsi's residual tests): `transfer_len` is always what the CDB
//! describes; Data-In holds at most that (a READ reads only the whole
//! blocks covering EDTL; the transport truncates to EDTL); a write with
//! less Data-Out than the CDB describes writes the whole blocks that
//! arrived and returns GOOD; a CHECK CONDITION moves nothing
//! (`transfer_len` 0).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::BytesMut;
use ironlun_cow::BlockDevice;
use parking_lot::{Mutex, RwLock};

mod alua;
mod atomic;
pub mod block_copy;
mod capacity;
pub mod cdb;
pub mod copy_domain;
mod inline;
mod inquiry;
pub mod mem;
mod mode;
mod opcodes;
mod persist;
mod pr_access;
pub mod range_lock;
mod report_luns;
mod request_sense;
mod reservation;
pub mod rod_token;
mod rw;
mod sanitize;
mod sbc_misc;
pub mod sense;
mod third_party_vpd;
pub mod transport_id;
pub mod unit_attention;
pub mod xcopy;

#[cfg(test)]
mod copy_offload_tests;
#[cfg(test)]
pub(crate) mod testutil;

use cdb::{op, Cdb};
pub use sense::Sense;
pub use unit_attention::ResetKind;
use unit_attention::UnitAttentions;

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
    /// Bytes per second a SANITIZE OVERWRITE may write (0: no limit).
    pub sanitize_overwrite_rate: u64,
    /// log2 of logical blocks per physical block (READ CAPACITY (16)).
    pub physical_block_exponent: u8,
    /// Directory for this unit's persistent state (persistent
    /// reservations); `None` keeps it in memory only.
    pub state_dir: Option<std::path::PathBuf>,
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

/// Largest transfer a single command may describe (VPD B0h MAXIMUM
/// TRANSFER LENGTH, in bytes).
pub const MAX_TRANSFER_BYTES: u64 = 16 << 20;
/// Preferred transfer size (VPD B0h OPTIMAL TRANSFER LENGTH, in bytes).
pub const OPTIMAL_TRANSFER_BYTES: u64 = 1 << 20;
/// Largest number of blocks one UNMAP may release.
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
/// Largest number of block descriptors in one UNMAP parameter list.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// Largest WRITE SAME, in blocks (the 16-bit limit LIO uses too; larger
/// ranges are split by the initiator).
pub const MAX_WRITE_SAME_BLOCKS: u64 = 0xFFFF;

/// Changeable mode parameter values (see `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeValues {
    /// Caching page WCE: writes may be cached until SYNCHRONIZE CACHE.
    pub wce: bool,
    /// Control page D_SENSE: descriptor format sense data.
    pub d_sense: bool,
    /// Control page SWP: software write protect.
    pub swp: bool,
}

impl Default for ModeValues {
    fn default() -> Self {
        ModeValues {
            wce: true,
            d_sense: false,
            swp: false,
        }
    }
}

/// Mutable SCSI state of a logical unit.
#[derive(Debug)]
pub(crate) struct LuState {
    pub mode: ModeValues,
    pub ua: UnitAttentions,
    /// Removable medium loaded (always true for fixed media).
    pub loaded: bool,
    /// Nexuses with PREVENT ALLOW MEDIUM REMOVAL (PREVENT=1) in force;
    /// removal is prevented while any is (SBC-3 5.13).
    pub prevent: HashSet<u64>,
    /// Capacity in blocks last reported; a change (resize) raises CAPACITY
    /// DATA HAS CHANGED for every nexus.
    pub blocks: u64,
}

/// A logical unit: a block device plus the SCSI state shared by all nexuses.
pub struct LogicalUnit {
    pub device: Arc<dyn BlockDevice>,
    pub identity: LuIdentity,
    pub options: LuOptions,
    /// Counts the resets (LOGICAL UNIT RESET, target resets) that aborted
    /// every task of this unit, whichever session it came from: a command
    /// that arrived under an older count is never answered.
    reset_epoch: std::sync::atomic::AtomicU64,
    /// Per nexus, how many times its tasks here were aborted by another
    /// nexus (PREEMPT AND ABORT); added to `reset_epoch` per command.
    nexus_aborts: Mutex<HashMap<u64, u64>>,
    /// Set by the first abort of [`LogicalUnit::nexus_aborts`]: until then
    /// every count there is 0, and a command's epoch needs no lock.
    aborted_any: std::sync::atomic::AtomicBool,
    pub(crate) state: Mutex<LuState>,
    /// Mode values that resets return to.
    defaults: ModeValues,
    /// LBA ranges held by commands that write (atomicity of COMPARE AND
    /// WRITE, ORWRITE, WRITE ATOMIC).
    pub(crate) ranges: range_lock::RangeLock,
    /// Target port groups through which the unit is reached (ALUA).
    pub(crate) alua: alua::PortGroups,
    /// SANITIZE in progress.
    pub(crate) sanitize: sanitize::SanitizeState,
    /// SPC-2 and persistent reservations.
    pub(crate) reservations: reservation::Reservations,
    /// Copy operation results held for RECEIVE COPY RESULTS / RECEIVE ROD
    /// TOKEN INFORMATION, per nexus.
    pub(crate) copy_results: xcopy::CopyResults,
}

impl std::fmt::Debug for LogicalUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalUnit")
            .field("identity", &self.identity)
            .field("options", &self.options)
            .field("geometry", &self.device.geometry())
            .finish()
    }
}

/// The reply of a successful command: Data-In and the CDB's transfer length.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub data: BytesMut,
    pub transfer_len: u32,
}

impl Reply {
    /// No data either way.
    pub fn none() -> Reply {
        Reply::default()
    }
    /// A command that moved `transfer_len` bytes of Data-Out.
    pub fn data_out(transfer_len: u32) -> Reply {
        Reply {
            data: BytesMut::new(),
            transfer_len,
        }
    }
    /// Parameter data cut to the allocation length; the transfer length is
    /// what is actually returned (allocation-length semantics, no overflow).
    pub fn alloc(mut data: Vec<u8>, alloc: u32) -> Reply {
        data.truncate(alloc as usize);
        let transfer_len = data.len() as u32;
        Reply {
            data: BytesMut::from(&data[..]),
            transfer_len,
        }
    }
}

pub(crate) type ScsiResult = Result<Reply, Sense>;

/// Everything a command handler may look at.
pub(crate) struct Ctx<'a> {
    pub lu: &'a LogicalUnit,
    pub map: &'a LunMap,
    pub nexus: &'a Nexus,
    pub req: &'a CommandRequest<'a>,
}

impl LogicalUnit {
    /// A logical unit over `device`.
    pub fn new(device: Arc<dyn BlockDevice>, identity: LuIdentity, options: LuOptions) -> Self {
        let defaults = ModeValues::default();
        let blocks = device.geometry().blocks;
        let reservations = reservation::Reservations::new(options.state_dir.clone());
        LogicalUnit {
            device,
            identity,
            options,
            state: Mutex::new(LuState {
                mode: defaults,
                ua: UnitAttentions::default(),
                loaded: true,
                prevent: HashSet::new(),
                blocks,
            }),
            defaults,
            ranges: range_lock::RangeLock::new(),
            alua: alua::PortGroups::default(),
            sanitize: sanitize::SanitizeState::default(),
            reservations,
            copy_results: xcopy::CopyResults::default(),
            reset_epoch: std::sync::atomic::AtomicU64::new(0),
            nexus_aborts: Mutex::new(HashMap::new()),
            aborted_any: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The mode values currently in force.
    pub fn mode(&self) -> ModeValues {
        self.state.lock().mode
    }

    /// Whether writes are refused: read-only LUN, read-only device, or SWP.
    pub fn write_protected(&self) -> bool {
        self.options.read_only || self.device.read_only() || self.state.lock().mode.swp
    }

    /// Starts tracking a nexus for unit attentions (none pending).
    pub fn register_nexus(&self, nexus: &Nexus) {
        self.state.lock().ua.register(nexus.id);
        self.alua.saw(&nexus.target_port);
    }

    /// Forgets a nexus whose I_T nexus has been lost.
    /// A count that changes whenever the tasks of `nexus_id` on this unit
    /// are aborted by a reset or by another nexus: a command that arrived
    /// under another count is never answered.
    pub fn task_epoch(&self, nexus_id: u64) -> u64 {
        let resets = self.reset_epoch.load(std::sync::atomic::Ordering::Acquire);
        if !self.aborted_any.load(std::sync::atomic::Ordering::Acquire) {
            return resets;
        }
        let aborts = self
            .nexus_aborts
            .lock()
            .get(&nexus_id)
            .copied()
            .unwrap_or(0);
        resets.wrapping_add(aborts)
    }

    /// Aborts every task of the nexuses `ids` on this unit.
    pub fn abort_nexus_tasks(&self, ids: &[u64]) {
        let mut aborts = self.nexus_aborts.lock();
        for &id in ids {
            *aborts.entry(id).or_insert(0) += 1;
        }
        self.aborted_any
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn nexus_lost(&self, nexus_id: u64) {
        self.nexus_aborts.lock().remove(&nexus_id);
        let mut st = self.state.lock();
        st.ua.remove(nexus_id);
        st.prevent.remove(&nexus_id);
        drop(st);
        self.reservations.nexus_lost(nexus_id);
        self.copy_results.nexus_lost(nexus_id);
    }

    /// A task-management reset reached this logical unit: mode parameters
    /// return to their defaults, a removable medium's prevention ends, and
    /// every nexus known to the unit (the issuing one included, which is
    /// registered if it was not yet) gets the reset's unit attention.
    /// The caller aborts the affected tasks first.
    pub fn reset(&self, kind: ResetKind, issuing: &Nexus) {
        self.reset_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut st = self.state.lock();
        st.ua.register(issuing.id);
        st.mode = self.defaults;
        st.prevent.clear();
        if kind == ResetKind::TargetCold || kind == ResetKind::PowerOn {
            st.loaded = true;
        }
        st.ua.reset(kind);
        drop(st);
        // SPC-2 reservations end; persistent reservations stay (SPC-4 5.13).
        self.reservations.reset();
    }

    /// The capacity changed (resize): CAPACITY DATA HAS CHANGED for all.
    pub fn notify_capacity_changed(&self) {
        let blocks = self.device.geometry().blocks;
        let mut st = self.state.lock();
        st.blocks = blocks;
        st.ua.push_all(unit_attention::CAPACITY_CHANGED, None);
    }

    /// Pending unit attentions for a nexus (for tests and diagnostics).
    pub fn pending_unit_attentions(&self, nexus_id: u64) -> usize {
        self.state.lock().ua.pending(nexus_id)
    }

    fn sense_outcome(&self, sense: Sense) -> CommandOutcome {
        let d = self.state.lock().mode.d_sense;
        check_condition(sense, d)
    }

    fn execute(&self, map: &LunMap, nexus: &Nexus, req: &CommandRequest<'_>) -> CommandOutcome {
        let opcode = req.cdb.first().copied().unwrap_or(0xFF);
        let exempt = matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE);
        let blocks = self.device.geometry().blocks;
        {
            let mut st = self.state.lock();
            st.ua.register(nexus.id);
            if blocks != st.blocks {
                // Resized underneath us: tell every nexus once.
                st.blocks = blocks;
                st.ua.push_all(unit_attention::CAPACITY_CHANGED, None);
            }
            if !exempt && !req.cdb.is_empty() {
                if let Some(ua) = st.ua.take(nexus.id) {
                    return check_condition(ua, st.mode.d_sense);
                }
            }
        }
        let ctx = Ctx {
            lu: self,
            map,
            nexus,
            req,
        };
        let result = match reservation::admit(&ctx) {
            reservation::Admit::Proceed => {
                cdb::decode(req.cdb).and_then(|c| self.dispatch(&ctx, c))
            }
            reservation::Admit::Done(r) => r,
            reservation::Admit::Conflict => return reservation::conflict_outcome(),
        };
        match result {
            Ok(reply) => CommandOutcome {
                status: status::GOOD,
                sense: None,
                data_in: reply.data,
                transfer_len: reply.transfer_len,
            },
            Err(sense) => self.sense_outcome(sense),
        }
    }

    /// Commands that need the medium fail with NOT READY when it is out.
    pub(crate) fn check_loaded(&self) -> Result<(), Sense> {
        self.sanitize.check()?;
        if self.state.lock().loaded {
            Ok(())
        } else {
            Err(Sense::medium_not_present())
        }
    }

    fn dispatch(&self, ctx: &Ctx<'_>, c: Cdb) -> ScsiResult {
        match c {
            Cdb::TestUnitReady => {
                self.check_loaded()?;
                Ok(Reply::none())
            }
            Cdb::Inquiry { evpd, page, alloc } => inquiry::inquiry(ctx, evpd, page, alloc),
            Cdb::RequestSense { desc, alloc } => request_sense::request_sense(ctx, desc, alloc),
            Cdb::ReportLuns { select, alloc } => report_luns::report_luns(ctx, select, alloc),
            Cdb::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => mode::mode_sense(ctx, ten, dbd, llbaa, pc, page, subpage, alloc),
            Cdb::ModeSelect { ten, pf, sp, len } => mode::mode_select(ctx, ten, pf, sp, len),
            Cdb::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                sa,
                alloc,
            } => opcodes::report(ctx, rctd, options, opcode, sa, alloc),
            Cdb::ReportTargetPortGroups { format, alloc } => {
                alua::report_target_port_groups(ctx, format, alloc)
            }
            Cdb::StartStopUnit {
                immed: _,
                power_condition,
                no_flush,
                loej,
                start,
            } => {
                self.sanitize.check()?;
                self.start_stop(power_condition, no_flush, loej, start)
            }
            Cdb::PreventAllow { prevent } => {
                if prevent > 1 {
                    return Err(Sense::invalid_cdb_field(4, Some(1)));
                }
                if self.options.removable {
                    let mut st = self.state.lock();
                    if prevent == 1 {
                        st.prevent.insert(ctx.nexus.id);
                    } else {
                        st.prevent.remove(&ctx.nexus.id);
                    }
                }
                Ok(Reply::none())
            }
            other => {
                self.check_loaded()?;
                match other {
                    Cdb::ReadCapacity10 { .. } => capacity::read_capacity_10(ctx),
                    Cdb::ReadCapacity16 { alloc } => capacity::read_capacity_16(ctx, alloc),
                    Cdb::CompareAndWrite { lba, blocks, fua } => {
                        atomic::compare_and_write(ctx, lba, blocks, fua)
                    }
                    Cdb::OrWrite { lba, blocks, fua } => atomic::orwrite(ctx, lba, blocks, fua),
                    Cdb::WriteAtomic {
                        lba,
                        boundary,
                        blocks,
                        fua,
                    } => atomic::write_atomic(ctx, lba, boundary, blocks, fua),
                    Cdb::PreFetch { lba, blocks, .. } => sbc_misc::pre_fetch(ctx, lba, blocks),
                    Cdb::ReadDefectData {
                        twelve,
                        plist,
                        glist,
                        format,
                        alloc,
                    } => sbc_misc::read_defect_data(twelve, plist, glist, format, alloc),
                    Cdb::Sanitize { sa, len, .. } => sanitize::sanitize(ctx, sa, len),
                    Cdb::ExtendedCopy { len } => xcopy::extended_copy(ctx, len),
                    Cdb::ReceiveCopyStatus { list_id, alloc } => {
                        xcopy::copy_status(ctx, list_id, alloc)
                    }
                    Cdb::ReceiveCopyOperatingParameters { alloc } => {
                        xcopy::operating_parameters(alloc)
                    }
                    Cdb::PopulateToken { list_id, len } => {
                        rod_token::populate_token(ctx, list_id, len)
                    }
                    Cdb::WriteUsingToken { list_id, len } => {
                        rod_token::write_using_token(ctx, list_id, len)
                    }
                    Cdb::ReceiveRodTokenInformation { list_id, alloc } => {
                        rod_token::receive_rod_token_information(ctx, list_id, alloc)
                    }
                    _ => rw::execute(ctx, other),
                }
            }
        }
    }

    fn start_stop(
        &self,
        power_condition: u8,
        no_flush: bool,
        loej: bool,
        start: bool,
    ) -> ScsiResult {
        if power_condition != 0 {
            // Power conditions are accepted and have no effect; LOEJ and
            // START are ignored with a non-zero POWER CONDITION (SBC-3).
            return Ok(Reply::none());
        }
        if loej && !self.options.removable {
            return Err(Sense::invalid_cdb_field(4, Some(1)));
        }
        if !start && !no_flush {
            self.device
                .flush()
                .map_err(|e| Sense::from_block_error(&e, true))?;
        }
        if loej {
            let mut st = self.state.lock();
            // Neither eject nor load while removal is prevented.
            if !st.prevent.is_empty() {
                return Err(Sense::removal_prevented());
            }
            st.loaded = start;
        }
        Ok(Reply::none())
    }
}

fn check_condition(sense: Sense, descriptor: bool) -> CommandOutcome {
    CommandOutcome {
        status: status::CHECK_CONDITION,
        sense: Some(sense.to_bytes(descriptor)),
        data_in: BytesMut::new(),
        transfer_len: 0,
    }
}

/// The LUNs one target exposes, and the dispatcher of SCSI commands to them.
///
/// The set of LUNs can change while sessions run (replicas made through
/// CIM are added and removed at run time). The read lock is held only to
/// look a LUN up and clone its `Arc`; no command runs under it, so a
/// change waits at most for a lookup, never for I/O.
#[derive(Default)]
pub struct LunMap {
    luns: RwLock<BTreeMap<u64, Arc<LogicalUnit>>>,
    /// Target ports announced so far, given to units added later.
    ports: Mutex<Vec<TargetPort>>,
    /// Where copy operations find their targets and ROD tokens (see
    /// [`LunMap::join_copy_domain`]).
    copy_domain: std::sync::OnceLock<Arc<copy_domain::CopyDomain>>,
    /// Who may reach this map's units through copies from other targets.
    copy_access: std::sync::OnceLock<Arc<copy_domain::CopyAccess>>,
}

impl LunMap {
    /// An empty map.
    pub fn new() -> Self {
        LunMap::default()
    }

    /// Maps `lun` (the plain number, 0..16383) to a logical unit, which
    /// learns the target ports already announced. Replaces (and returns)
    /// the unit mapped there before. Callers that change the map of a
    /// running target follow with [`LunMap::notify_luns_changed`].
    pub fn insert(&self, lun: u64, lu: Arc<LogicalUnit>) -> Option<Arc<LogicalUnit>> {
        for p in self.ports.lock().iter() {
            lu.alua.saw(p);
        }
        if let Some(d) = self.copy_domain.get() {
            d.add(&lu, self.copy_access.get().cloned());
        }
        let old = self.luns.write().insert(lun, lu);
        if let (Some(d), Some(o)) = (self.copy_domain.get(), &old) {
            d.remove(o);
        }
        old
    }

    /// Makes this map's logical units (and those inserted later) part of
    /// `domain`, reachable from other targets as `access` allows, and has
    /// copy operations arriving through this map look their targets up
    /// there (a server gives every target the same domain, so copies may go
    /// between targets). A map that never joins one uses a domain of its
    /// own LUNs; joining after that first use only adds the LUNs to
    /// `domain`.
    pub fn join_copy_domain(
        &self,
        domain: &Arc<copy_domain::CopyDomain>,
        access: copy_domain::CopyAccess,
    ) {
        let access = Arc::new(access);
        let _ = self.copy_access.set(access.clone());
        let _ = self.copy_domain.set(domain.clone());
        for lu in self.units() {
            domain.add(&lu, Some(access.clone()));
        }
    }

    /// The copy domain of this map.
    pub fn copy_domain(&self) -> &Arc<copy_domain::CopyDomain> {
        self.copy_domain.get_or_init(|| {
            let d = copy_domain::CopyDomain::new();
            for lu in self.units() {
                d.add(&lu, None);
            }
            d
        })
    }

    /// The shared handle of a logical unit of this map.
    pub(crate) fn arc_of(&self, lu: &LogicalUnit) -> Option<Arc<LogicalUnit>> {
        self.luns
            .read()
            .values()
            .find(|a| std::ptr::eq(a.as_ref(), lu))
            .cloned()
    }

    /// Unmaps `lun`; commands already running on it finish on the unit
    /// they hold.
    pub fn remove(&self, lun: u64) -> Option<Arc<LogicalUnit>> {
        let old = self.luns.write().remove(&lun);
        if let (Some(d), Some(o)) = (self.copy_domain.get(), &old) {
            d.remove(o);
        }
        old
    }

    /// The logical unit at `lun`, if mapped.
    pub fn get(&self, lun: u64) -> Option<Arc<LogicalUnit>> {
        self.luns.read().get(&lun).cloned()
    }

    /// [`LogicalUnit::task_epoch`] of LUN `lun` (0 if not mapped).
    pub fn task_epoch(&self, lun: u64, nexus_id: u64) -> u64 {
        self.luns
            .read()
            .get(&lun)
            .map_or(0, |lu| lu.task_epoch(nexus_id))
    }

    /// Mapped LUN numbers in ascending order (at the time of the call).
    pub fn luns(&self) -> impl Iterator<Item = u64> {
        self.luns
            .read()
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Every mapped unit (at the time of the call).
    fn units(&self) -> Vec<Arc<LogicalUnit>> {
        self.luns.read().values().cloned().collect()
    }

    /// The number of Data-Out bytes the CDB asks for, so the transport knows
    /// how much to solicit (`None`: no data-out, or the CDB is invalid and
    /// `execute` will say so).
    pub fn data_out_len(&self, lun: u64, cdb: &[u8]) -> Option<u32> {
        let lu = self.get(lun)?;
        let c = cdb::decode(cdb).ok()?;
        let bs = lu.device.geometry().block_size as u64;
        let bytes = match c {
            Cdb::Write { blocks, .. }
            | Cdb::WriteAndVerify { blocks, .. }
            | Cdb::OrWrite { blocks, .. } => blocks as u64 * bs,
            Cdb::WriteAtomic { blocks, .. } => blocks as u64 * bs,
            Cdb::CompareAndWrite { blocks, .. } => 2 * blocks as u64 * bs,
            Cdb::Sanitize { len, .. } => len as u64,
            Cdb::PersistentReserveOut { len, .. } => len as u64,
            Cdb::ExtendedCopy { len }
            | Cdb::PopulateToken { len, .. }
            | Cdb::WriteUsingToken { len, .. } => len as u64,
            Cdb::Verify { blocks, bytchk, .. } => match bytchk {
                1 => blocks as u64 * bs,
                3 if blocks > 0 => bs,
                _ => 0,
            },
            // One block to replicate (also for 0 blocks: to the last block).
            Cdb::WriteSame { ndob, .. } => {
                if ndob {
                    0
                } else {
                    bs
                }
            }
            Cdb::Unmap { len, .. } | Cdb::ModeSelect { len, .. } => len as u64,
            _ => 0,
        };
        if bytes == 0 {
            None
        } else {
            Some(bytes.min(u32::MAX as u64) as u32)
        }
    }

    /// Executes one command. `lun` is the decoded LUN number (from the
    /// 8-byte LUN field, see [`decode_lun`]).
    pub fn execute(&self, lun: u64, nexus: &Nexus, req: &CommandRequest<'_>) -> CommandOutcome {
        match self.get(lun) {
            Some(lu) => lu.execute(self, nexus, req),
            None => self.execute_unmapped(req),
        }
    }

    /// Commands addressed to a LUN that is not mapped: INQUIRY answers
    /// "no device here", REPORT LUNS and REQUEST SENSE work, everything else
    /// is LOGICAL UNIT NOT SUPPORTED.
    fn execute_unmapped(&self, req: &CommandRequest<'_>) -> CommandOutcome {
        let result = match cdb::decode(req.cdb) {
            Ok(Cdb::Inquiry {
                evpd: false, alloc, ..
            }) => {
                let mut d = vec![0u8; 36];
                d[0] = 0x7F; // peripheral qualifier 3, device type 1Fh
                d[2] = 0x06;
                d[3] = 0x12;
                d[4] = 31;
                Ok(Reply::alloc(d, alloc))
            }
            Ok(Cdb::ReportLuns { select, alloc }) => report_luns::build(self, select, alloc),
            Ok(Cdb::RequestSense { desc, alloc }) => Ok(Reply::alloc(
                Sense::lun_not_supported().to_bytes(desc),
                alloc,
            )),
            Ok(_) => Err(Sense::lun_not_supported()),
            Err(s) if s == Sense::invalid_opcode() => Err(Sense::lun_not_supported()),
            Err(s) => Err(s),
        };
        match result {
            Ok(reply) => CommandOutcome {
                status: status::GOOD,
                sense: None,
                data_in: reply.data,
                transfer_len: reply.transfer_len,
            },
            Err(sense) => check_condition(sense, false),
        }
    }

    /// Registers a nexus with every logical unit (no unit attention
    /// pending), so that later resets and changes reach it.
    pub fn register_nexus(&self, nexus: &Nexus) {
        for lu in self.units() {
            lu.register_nexus(nexus);
        }
    }

    /// Announces a target port through which every logical unit of the map
    /// is reachable (REPORT TARGET PORT GROUPS lists its group even before
    /// a session arrives through it).
    pub fn add_target_port(&self, port: &TargetPort) {
        {
            let mut ports = self.ports.lock();
            if !ports.contains(port) {
                ports.push(port.clone());
            }
        }
        for lu in self.units() {
            lu.alua.saw(port);
        }
    }

    /// The I_T nexus `nexus_id` is gone: drop its per-LU state.
    pub fn nexus_lost(&self, nexus_id: u64) {
        for lu in self.units() {
            lu.nexus_lost(nexus_id);
        }
    }

    /// LOGICAL UNIT RESET of `lun`; `false` if the LUN is not mapped.
    pub fn logical_unit_reset(&self, lun: u64, issuing: &Nexus) -> bool {
        match self.get(lun) {
            Some(lu) => {
                lu.reset(ResetKind::LogicalUnit, issuing);
                true
            }
            None => false,
        }
    }

    /// TARGET WARM RESET or TARGET COLD RESET: every logical unit resets.
    pub fn target_reset(&self, kind: ResetKind, issuing: &Nexus) {
        for lu in self.units() {
            lu.reset(kind, issuing);
        }
    }

    /// CLEAR TASK SET (or ABORT TASK SET under a shared task set) issued by
    /// `issuing` aborted tasks of the nexuses in `affected`: each of them
    /// other than the issuer gets COMMANDS CLEARED BY ANOTHER INITIATOR.
    pub fn commands_cleared(&self, lun: u64, issuing: &Nexus, affected: &[u64]) {
        if let Some(lu) = self.get(lun) {
            let mut st = lu.state.lock();
            for &id in affected.iter().filter(|&&id| id != issuing.id) {
                st.ua.push(id, unit_attention::COMMANDS_CLEARED);
            }
        }
    }

    /// The set of LUNs changed: REPORTED LUNS DATA HAS CHANGED for every
    /// nexus known to any logical unit.
    pub fn notify_luns_changed(&self) {
        for lu in self.units() {
            lu.state
                .lock()
                .ua
                .push_all(unit_attention::REPORTED_LUNS_CHANGED, None);
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

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

    #[test]
    fn new_nexus_sees_no_unit_attention() {
        let t = Harness::new(64, true);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        assert_eq!(t.run_as(&t.nexus(9), &TUR).status, status::GOOD);
    }

    #[test]
    fn lun_reset_reaches_known_nexuses_once() {
        let t = Harness::new(64, true);
        let other = t.nexus(2);
        t.map.register_nexus(&other);
        assert!(t.map.logical_unit_reset(0, &t.me));
        assert!(!t.map.logical_unit_reset(3, &t.me));
        // INQUIRY and REPORT LUNS are not blocked and do not clear it.
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0]).status, status::GOOD);
        assert_eq!(
            t.run(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).status,
            status::GOOD
        );
        assert_sense(&t.run(&TUR), 6, 0x29, 0x03);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        assert_sense(&t.run_as(&other, &TUR), 6, 0x29, 0x03);
        assert_eq!(t.run_as(&other, &TUR).status, status::GOOD);
        // A nexus that appears afterwards sees nothing.
        assert_eq!(t.run_as(&t.nexus(3), &TUR).status, status::GOOD);
    }

    #[test]
    fn target_resets_and_nexus_loss() {
        let t = Harness::new(64, true);
        t.run(&TUR);
        t.map.target_reset(ResetKind::TargetWarm, &t.me);
        assert_sense(&t.run(&TUR), 6, 0x29, 0x02);
        t.map.target_reset(ResetKind::TargetCold, &t.me);
        assert_sense(&t.run(&TUR), 6, 0x29, 0x01);
        t.map.target_reset(ResetKind::TargetCold, &t.me);
        t.map.nexus_lost(t.me.id);
        assert_eq!(t.map.get(0).unwrap().pending_unit_attentions(t.me.id), 0);
        assert_eq!(t.run(&TUR).status, status::GOOD);
    }

    #[test]
    fn reset_restores_mode_defaults() {
        let t = Harness::new(64, true);
        let lu = t.map.get(0).unwrap().clone();
        lu.state.lock().mode.swp = true;
        assert!(lu.write_protected());
        lu.reset(ResetKind::LogicalUnit, &t.me);
        assert!(!lu.write_protected());
    }

    #[test]
    fn commands_cleared_by_another_initiator() {
        let t = Harness::new(64, true);
        let other = t.nexus(2);
        t.map.register_nexus(&other);
        t.map.commands_cleared(0, &t.me, &[1, 2]);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        assert_sense(&t.run_as(&other, &TUR), 6, 0x2F, 0);
    }

    #[test]
    fn luns_and_capacity_changed() {
        let t = Harness::new(64, true);
        t.run(&TUR);
        t.map.notify_luns_changed();
        // REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED.
        t.run(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        t.map.notify_luns_changed();
        assert_sense(&t.run(&TUR), 6, 0x3F, 0x0E);
        t.map.get(0).unwrap().notify_capacity_changed();
        assert_sense(&t.run(&TUR), 6, 0x2A, 0x09);
    }

    #[test]
    fn resize_underneath_raises_capacity_changed_once_per_nexus() {
        use std::sync::atomic::{AtomicU64, Ordering};

        use ironlun_cow::{BlockError, Durability, Geometry};

        /// A device whose capacity can change while it is served.
        struct Resizable(MemDevice, AtomicU64);
        impl BlockDevice for Resizable {
            fn geometry(&self) -> Geometry {
                Geometry {
                    blocks: self.1.load(Ordering::SeqCst),
                    ..self.0.geometry()
                }
            }
            fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
                self.0.read(lba, buf)
            }
            fn write(&self, lba: u64, data: &[u8], d: Durability) -> Result<(), BlockError> {
                self.0.write(lba, data, d)
            }
            fn flush(&self) -> Result<(), BlockError> {
                self.0.flush()
            }
            fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
                self.0.unmap(lba, blocks)
            }
        }
        let dev = Arc::new(Resizable(MemDevice::new(128, true), AtomicU64::new(64)));
        let mut t = Harness::new(1, true);
        t.map = LunMap::new();
        let identity = LuIdentity {
            vendor: "IRONLUN".into(),
            product: "resizable".into(),
            revision: "0001".into(),
            serial: "r".into(),
            naa: NAA,
        };
        let lu = LogicalUnit::new(dev.clone(), identity, LuOptions::default());
        t.map.insert(0, Arc::new(lu));
        let other = t.nexus(2);
        t.map.register_nexus(&t.me);
        t.map.register_nexus(&other);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        dev.1.store(128, Ordering::SeqCst);
        // INQUIRY does not report it; the next other command does, once.
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0]).status, status::GOOD);
        assert_sense(&t.run(&TUR), 6, 0x2A, 0x09);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        assert_sense(&t.run_as(&other, &TUR), 6, 0x2A, 0x09);
        assert_eq!(t.run_as(&other, &TUR).status, status::GOOD);
        let o = t.run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&o.data_in[0..4], &127u32.to_be_bytes());
    }

    #[test]
    fn start_stop_fixed_and_removable() {
        let t = Harness::new(64, true);
        // LOEJ on a fixed medium fails; START/STOP alone succeeds.
        assert_sense(&t.run(&[0x1B, 1, 0, 0, 0x02, 0]), 5, 0x24, 0);
        assert_eq!(t.run(&[0x1B, 0, 0, 0, 0x00, 0]).status, status::GOOD);
        assert_eq!(t.run(&[0x1B, 0, 0, 0, 0x01, 0]).status, status::GOOD);

        let t = Harness::with_options(64, true, false, true);
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0]).data_in[1], 0x80);
        assert_eq!(t.run(&[0x1B, 1, 0, 0, 0x02, 0]).status, status::GOOD);
        assert_sense(&t.run(&TUR), 2, 0x3A, 0);
        assert_sense(
            &t.run_edtl(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512),
            2,
            0x3A,
            0,
        );
        assert_eq!(t.run(&[0x1A, 0x08, 0x3F, 0, 255, 0]).status, status::GOOD);
        assert_eq!(t.run(&[0x1B, 1, 0, 0, 0x03, 0]).status, status::GOOD);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        // Power conditions do not eject.
        assert_eq!(t.run(&[0x1B, 1, 0, 0, 0x12, 0]).status, status::GOOD);
        assert_eq!(t.run(&TUR).status, status::GOOD);
        // PREVENT blocks ejection and loading until ALLOW.
        assert_eq!(t.run(&[0x1E, 0, 0, 0, 1, 0]).status, status::GOOD);
        assert_sense(&t.run(&[0x1B, 0, 0, 0, 0x02, 0]), 5, 0x53, 0x02);
        let other = t.nexus(2);
        assert_sense(&t.run_as(&other, &[0x1B, 0, 0, 0, 0x02, 0]), 5, 0x53, 0x02);
        assert_eq!(t.run(&[0x1E, 0, 0, 0, 0, 0]).status, status::GOOD);
        assert_eq!(t.run(&[0x1B, 0, 0, 0, 0x02, 0]).status, status::GOOD);
        assert_eq!(t.run(&[0x1E, 0, 0, 0, 1, 0]).status, status::GOOD);
        assert_sense(&t.run(&[0x1B, 0, 0, 0, 0x03, 0]), 5, 0x53, 0x02);
        // Nexus loss ends that nexus' prevention.
        t.map.nexus_lost(t.me.id);
        assert_eq!(
            t.run_as(&other, &[0x1B, 0, 0, 0, 0x03, 0]).status,
            status::GOOD
        );
    }

    #[test]
    fn data_out_lengths() {
        let t = Harness::new(64, true);
        let m = &t.map;
        assert_eq!(
            m.data_out_len(0, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 4, 0]),
            Some(2048)
        );
        assert_eq!(m.data_out_len(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0]), None);
        assert_eq!(
            m.data_out_len(0, &[0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0]),
            Some(1024)
        );
        assert_eq!(
            m.data_out_len(0, &[0x2F, 0x00, 0, 0, 0, 0, 0, 0, 2, 0]),
            None
        );
        assert_eq!(
            m.data_out_len(0, &[0x41, 0, 0, 0, 0, 0, 0, 0, 9, 0]),
            Some(512)
        );
        assert_eq!(
            m.data_out_len(0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]),
            Some(24)
        );
        assert_eq!(m.data_out_len(0, &[0x15, 0x10, 0, 0, 28, 0]), Some(28));
        assert_eq!(m.data_out_len(1, &[0x2A, 0, 0, 0, 0, 0, 0, 0, 4, 0]), None);
        assert_eq!(m.data_out_len(0, &[]), None);
    }

    #[test]
    fn never_panics_on_noise() {
        // A cheap deterministic stand-in for the cargo-fuzz target.
        let t = Harness::with_lu_options(
            64,
            true,
            LuOptions {
                removable: true,
                allow_sanitize: true,
                ..LuOptions::default()
            },
        );
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ops = [
            0x00u8, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A, 0x2E, 0x2F,
            0x35, 0x41, 0x42, 0x55, 0x5A, 0x88, 0x8A, 0x8E, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA3,
            0xA8, 0xAA, 0xAE, 0xAF, 0x34, 0x37, 0x48, 0x89, 0x8B, 0x90, 0x9C, 0xB7, 0x83, 0x84,
        ];
        for i in 0..20_000 {
            let len = (next() % 18) as usize;
            let mut cdb: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if !cdb.is_empty() && i % 4 != 0 {
                cdb[0] = ops[(next() % ops.len() as u64) as usize];
                // Keep lengths small most of the time so commands execute.
                for b in cdb.iter_mut().skip(2) {
                    if next() % 3 != 0 {
                        *b = 0;
                    }
                }
            }
            let out: Vec<u8> = (0..(next() % 1100)).map(|_| next() as u8).collect();
            let edtl = (next() % 4096) as u32;
            let out = &out[..out.len().min(edtl as usize)];
            let nexus = t.nexus(next() % 3);
            let _ = t.map.data_out_len(0, &cdb);
            let o = t.exec(next() % 2, &nexus, &cdb, out, edtl);
            // GOOD and RESERVATION CONFLICT carry no sense data.
            let senseless = matches!(o.status, status::GOOD | status::RESERVATION_CONFLICT);
            assert_eq!(senseless, o.sense.is_none(), "{cdb:02x?} {o:?}");
            assert!(o.data_in.len() as u64 <= o.transfer_len as u64);
        }
    }
}
