//! Reservations: SPC-4 persistent reservations (PERSISTENT RESERVE IN /
//! OUT) and SPC-2 RESERVE / RELEASE (6, 10), with the SPC-4 5.13.3
//! exceptions for SPC-2 commands under persistent reservations (CRH=1).
//!
//! - Registrations are keyed by I_T nexus: initiator name + ISID + target
//!   port ([`PortId`]); ALL_TG_PT registrations match any target port.
//!   SPEC_I_PT is not supported (SIP_C=0): such lists are refused with
//!   INVALID FIELD IN PARAMETER LIST.
//! - All six types; PRGENERATION counts REGISTER, REGISTER AND IGNORE
//!   EXISTING KEY, CLEAR, PREEMPT (AND ABORT) and REGISTER AND MOVE.
//! - Unit attentions RESERVATIONS PREEMPTED / RELEASED and REGISTRATIONS
//!   PREEMPTED go to the live I_T nexuses of the registrations concerned.
//! - Persistence: with a state directory the state is written atomically
//!   before the command completes (`persist`), whatever the APTPL bit says
//!   ("on by default"; PTPL_C=1, PTPL_A=1); the bit is recorded. Without a
//!   directory APTPL=1 is refused (PTPL_C=0).
//! - Resets and I_T nexus loss release SPC-2 reservations only; persistent
//!   reservations survive them (SPC-4 5.13.4, SAM-5 6.3).
//! - PREEMPT AND ABORT preempts like PREEMPT and aborts the preempted
//!   nexuses' tasks on the unit (`LogicalUnit::abort_nexus_tasks`): their
//!   answers are never sent, and commands still collecting data never run.

use std::collections::HashMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use tracing::{error, info};

use super::cdb::{self, Cdb};
use super::persist::Store;
use super::pr_access::{self, Access};
use super::sense::{key, Sense};
pub use super::transport_id::PortId;
use super::transport_id::{self, Named};
use super::unit_attention::{
    REGISTRATIONS_PREEMPTED, RESERVATIONS_PREEMPTED, RESERVATIONS_RELEASED,
};
use super::{status, CommandOutcome, Ctx, Nexus, Reply, ScsiResult};

/// Persistent reservation types (SPC-4 table 170).
pub mod pr_type {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WRITE_EXCLUSIVE_RO: u8 = 5;
    pub const EXCLUSIVE_ACCESS_RO: u8 = 6;
    pub const WRITE_EXCLUSIVE_AR: u8 = 7;
    pub const EXCLUSIVE_ACCESS_AR: u8 = 8;
}

/// PERSISTENT RESERVE OUT service actions.
mod sa {
    pub const REGISTER: u8 = 0;
    pub const RESERVE: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const CLEAR: u8 = 3;
    pub const PREEMPT: u8 = 4;
    pub const PREEMPT_AND_ABORT: u8 = 5;
    pub const REGISTER_AND_IGNORE: u8 = 6;
    pub const REGISTER_AND_MOVE: u8 = 7;
}

use pr_type::*;

pub fn valid_type(t: u8) -> bool {
    matches!(
        t,
        WRITE_EXCLUSIVE
            | EXCLUSIVE_ACCESS
            | WRITE_EXCLUSIVE_RO
            | EXCLUSIVE_ACCESS_RO
            | WRITE_EXCLUSIVE_AR
            | EXCLUSIVE_ACCESS_AR
    )
}
pub fn all_registrants(t: u8) -> bool {
    matches!(t, WRITE_EXCLUSIVE_AR | EXCLUSIVE_ACCESS_AR)
}
fn registrants_only(t: u8) -> bool {
    matches!(t, WRITE_EXCLUSIVE_RO | EXCLUSIVE_ACCESS_RO)
}
fn write_exclusive(t: u8) -> bool {
    matches!(t, WRITE_EXCLUSIVE | WRITE_EXCLUSIVE_RO | WRITE_EXCLUSIVE_AR)
}

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub key: u64,
    /// The I_T nexus registered (its target port is ignored if `all_tg_pt`).
    pub port: PortId,
    pub all_tg_pt: bool,
}

impl Registration {
    fn matches(&self, me: &PortId) -> bool {
        self.port.same_initiator_port(me) && (self.all_tg_pt || self.port.same_target_port(me))
    }
}

/// The persistent reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub rtype: u8,
    /// The holder's registration (its `port`); `None` for all-registrants
    /// types, where every registrant holds it.
    pub holder: Option<PortId>,
}

/// Everything that persists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrState {
    pub generation: u32,
    /// The last APTPL bit received.
    pub aptpl: bool,
    pub regs: Vec<Registration>,
    pub res: Option<Reservation>,
}

impl PrState {
    fn find(&self, me: &PortId) -> Option<usize> {
        self.regs.iter().position(|r| r.matches(me))
    }

    /// Whether the registration at `idx` holds the reservation.
    fn holds(&self, idx: usize) -> bool {
        match &self.res {
            Some(r) if all_registrants(r.rtype) => true,
            Some(Reservation {
                holder: Some(h), ..
            }) => self.regs[idx].port == *h,
            _ => false,
        }
    }

    /// The reservation key READ RESERVATION reports.
    fn res_key(&self) -> u64 {
        match &self.res {
            Some(Reservation {
                holder: Some(h), ..
            }) => self.regs.iter().find(|r| r.port == *h).map_or(0, |r| r.key),
            _ => 0,
        }
    }

    fn holder_for(&self, rtype: u8, idx: usize) -> Option<PortId> {
        if all_registrants(rtype) {
            None
        } else {
            Some(self.regs[idx].port.clone())
        }
    }

    /// Removes the registration at `idx`, releasing the reservation if it
    /// held it (SPC-4 5.13.11.2.3); returns who must hear RESERVATIONS
    /// RELEASED.
    fn unregister(&mut self, idx: usize) -> Vec<PortId> {
        let was_holder = self.holds(idx);
        self.regs.remove(idx);
        let mut tell = Vec::new();
        if let Some(res) = &self.res {
            if all_registrants(res.rtype) {
                if self.regs.is_empty() {
                    self.res = None;
                }
            } else if was_holder {
                if registrants_only(res.rtype) {
                    tell = self.regs.iter().map(|r| r.port.clone()).collect();
                }
                self.res = None;
            }
        }
        tell
    }
}

/// Why a reservation command did not complete with GOOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Sense(Sense),
    Conflict,
}

impl From<Sense> for Refusal {
    fn from(s: Sense) -> Refusal {
        Refusal::Sense(s)
    }
}

/// What [`admit`] decided about a command.
pub(crate) enum Admit {
    /// Not a reservation command and no conflict: execute it.
    Proceed,
    /// A reservation command, executed.
    Done(ScsiResult),
    /// RESERVATION CONFLICT.
    Conflict,
}

/// At most this many live nexuses are remembered for unit attentions.
const MAX_LIVE: usize = 4096;

#[derive(Debug, Default)]
struct Inner {
    pr: PrState,
    /// The nexus (id) holding an SPC-2 RESERVE reservation.
    spc2: Option<u64>,
    /// Live nexuses by id, to deliver unit attentions to registrants.
    live: HashMap<u64, PortId>,
}

impl Inner {
    fn note(&mut self, n: &Nexus) -> PortId {
        if let Some(p) = self.live.get(&n.id) {
            return p.clone();
        }
        if self.live.len() >= MAX_LIVE {
            let regs = &self.pr.regs;
            self.live.retain(|_, p| regs.iter().any(|r| r.matches(p)));
        }
        let p = PortId::from_nexus(n);
        self.live.insert(n.id, p.clone());
        p
    }

    /// Live nexus ids of the registrations `ports` (not `except`).
    fn nexus_ids(&self, ports: &[PortId], except: u64) -> Vec<u64> {
        self.live
            .iter()
            .filter(|(id, p)| {
                **id != except
                    && ports
                        .iter()
                        .any(|q| q.same_initiator_port(p) && q.same_target_port(p))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The reservation state of one logical unit.
#[derive(Debug)]
pub struct Reservations {
    inner: Mutex<Inner>,
    /// Serialises the commands that change reservations, and with them the
    /// writes of the state file.
    change: Mutex<()>,
    store: Option<Store>,
}

impl Reservations {
    /// The state of a logical unit whose PR state lives in `state_dir`
    /// (loaded now; damaged state is logged and set aside).
    pub fn new(state_dir: Option<PathBuf>) -> Reservations {
        let store = state_dir.map(Store::new);
        let mut pr = PrState::default();
        if let Some(s) = &store {
            match s.load() {
                Ok(Some(st)) => {
                    info!(path = %s.path().display(), registrations = st.regs.len(),
                        reserved = st.res.is_some(), "persistent reservations restored");
                    pr = st;
                }
                Ok(None) => {}
                Err(e) => error!(
                    "persistent reservation state unusable, starting without reservations: {e}"
                ),
            }
        }
        Reservations {
            inner: Mutex::new(Inner {
                pr,
                ..Inner::default()
            }),
            change: Mutex::new(()),
            store,
        }
    }

    /// A copy of the persistent state (for tests).
    #[cfg(test)]
    pub fn snapshot(&self) -> PrState {
        self.inner.lock().pr.clone()
    }

    /// The I_T nexus is gone: its SPC-2 reservation ends.
    pub fn nexus_lost(&self, id: u64) {
        let mut g = self.inner.lock();
        if g.spc2 == Some(id) {
            g.spc2 = None;
        }
        g.live.remove(&id);
    }

    /// LOGICAL UNIT RESET, TARGET RESET: SPC-2 reservations end,
    /// persistent reservations stay.
    pub fn reset(&self) {
        self.inner.lock().spc2 = None;
    }

    /// Whether a copy that `nexus` asked for may not read (`write` false)
    /// or write this unit's blocks: what a READ (10) or WRITE (10) it sent
    /// here itself would meet.
    pub(crate) fn copy_conflicts(&self, nexus: &Nexus, write: bool) -> bool {
        let op = if write { 0x2A } else { 0x28 };
        self.conflicts(nexus, &[op, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// Whether `cdb` from `nexus` conflicts with a reservation.
    fn conflicts(&self, nexus: &Nexus, cdb: &[u8]) -> bool {
        let mut g = self.inner.lock();
        if g.spc2.is_none() && g.pr.res.is_none() {
            if !g.pr.regs.is_empty() {
                g.note(nexus);
            }
            return false;
        }
        let me = g.note(nexus);
        if let Some(h) = g.spc2 {
            if h != nexus.id && !pr_access::spc2_allowed(cdb) {
                return true;
            }
        }
        let Some(res) = &g.pr.res else {
            return false;
        };
        if let Some(i) = g.pr.find(&me) {
            if g.pr.holds(i) || registrants_only(res.rtype) {
                return false;
            }
        }
        match pr_access::classify(cdb) {
            Access::Any => false,
            Access::Read => !write_exclusive(res.rtype),
            Access::Write => true,
        }
    }
}

/// RESERVATION CONFLICT: no sense data, nothing moved.
pub(crate) fn conflict_outcome() -> CommandOutcome {
    CommandOutcome {
        status: status::RESERVATION_CONFLICT,
        ..CommandOutcome::default()
    }
}

/// Runs the reservation commands, and checks every other command against
/// the reservations in force.
pub(crate) fn admit(ctx: &Ctx<'_>) -> Admit {
    let cdb = ctx.req.cdb;
    let Some(&op) = cdb.first() else {
        return Admit::Proceed;
    };
    let r = &ctx.lu.reservations;
    if !matches!(op, 0x16 | 0x17 | 0x56 | 0x57 | 0x5E | 0x5F) {
        return if r.conflicts(ctx.nexus, cdb) {
            Admit::Conflict
        } else {
            Admit::Proceed
        };
    }
    let result = match cdb::decode(cdb) {
        Err(s) => Err(Refusal::Sense(s)),
        Ok(Cdb::PersistentReserveIn { sa, alloc }) => r.pr_in(ctx.nexus, sa, alloc),
        Ok(Cdb::PersistentReserveOut {
            sa,
            scope,
            rtype,
            len,
        }) => r.pr_out(ctx, sa, scope, rtype, len),
        Ok(Cdb::Reserve { .. }) => r.reserve(ctx.nexus),
        Ok(Cdb::Release { .. }) => r.release(ctx.nexus),
        Ok(_) => Err(Refusal::Sense(Sense::invalid_opcode())),
    };
    match result {
        Ok(reply) => Admit::Done(Ok(reply)),
        Err(Refusal::Sense(s)) => Admit::Done(Err(s)),
        Err(Refusal::Conflict) => Admit::Conflict,
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// 5/26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
fn invalid_release() -> Sense {
    Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x04)
}

impl Reservations {
    fn pr_in(&self, nexus: &Nexus, sa: u8, alloc: u32) -> Result<Reply, Refusal> {
        let mut g = self.inner.lock();
        g.note(nexus);
        // SPC-2 5.5.1: under a RESERVE reservation every PERSISTENT RESERVE
        // IN / OUT conflicts, whoever sends it.
        if g.spc2.is_some() {
            return Err(Refusal::Conflict);
        }
        let st = &g.pr;
        let mut d = Vec::new();
        d.extend_from_slice(&st.generation.to_be_bytes());
        match sa {
            0 => {
                d.extend_from_slice(&((st.regs.len() * 8) as u32).to_be_bytes());
                for r in &st.regs {
                    d.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            1 => match &st.res {
                Some(res) => {
                    d.extend_from_slice(&16u32.to_be_bytes());
                    d.extend_from_slice(&st.res_key().to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0, 0, 0, res.rtype & 0x0F, 0, 0]);
                }
                None => d.extend_from_slice(&0u32.to_be_bytes()),
            },
            2 => {
                let ptpl = self.store.is_some();
                d = vec![
                    0,
                    8,
                    // CRH, ATP_C, PTPL_C
                    0x10 | 0x04 | u8::from(ptpl),
                    // TMV, ALLOW COMMANDS 001b, PTPL_A
                    0x80 | 0x10 | u8::from(ptpl),
                    // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR
                    0xEA,
                    0x01,
                    0,
                    0,
                ];
            }
            3 => {
                let mut body = Vec::new();
                for (i, r) in st.regs.iter().enumerate() {
                    let tid = r.port.transport_id();
                    body.extend_from_slice(&r.key.to_be_bytes());
                    body.extend_from_slice(&[0; 4]);
                    let holder = st.holds(i);
                    body.push(u8::from(r.all_tg_pt) << 1 | u8::from(holder));
                    body.push(if holder {
                        st.res.as_ref().map_or(0, |x| x.rtype & 0x0F)
                    } else {
                        0
                    });
                    body.extend_from_slice(&[0; 4]);
                    body.extend_from_slice(
                        &if r.all_tg_pt { 0 } else { r.port.rel_port }.to_be_bytes(),
                    );
                    body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    body.extend_from_slice(&tid);
                }
                d.extend_from_slice(&(body.len() as u32).to_be_bytes());
                d.extend_from_slice(&body);
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        }
        Ok(Reply::alloc(d, alloc))
    }

    fn reserve(&self, nexus: &Nexus) -> Result<Reply, Refusal> {
        let _c = self.change.lock();
        let mut g = self.inner.lock();
        let me = g.note(nexus);
        if let Some(i) = g.pr.find(&me) {
            // SPC-4 5.13.3: the holder, or a registrant under a
            // registrants-only / all-registrants type: GOOD, nothing done.
            let quiet = g.pr.holds(i)
                || g.pr
                    .res
                    .as_ref()
                    .is_some_and(|r| registrants_only(r.rtype) || all_registrants(r.rtype));
            if quiet {
                return Ok(Reply::none());
            }
            return Err(Refusal::Conflict);
        }
        // SPC-2: any registration makes RESERVE conflict.
        if !g.pr.regs.is_empty() {
            return Err(Refusal::Conflict);
        }
        match g.spc2 {
            Some(h) if h != nexus.id => Err(Refusal::Conflict),
            _ => {
                g.spc2 = Some(nexus.id);
                Ok(Reply::none())
            }
        }
    }

    fn release(&self, nexus: &Nexus) -> Result<Reply, Refusal> {
        let _c = self.change.lock();
        let mut g = self.inner.lock();
        let me = g.note(nexus);
        if let Some(i) = g.pr.find(&me) {
            let quiet = g.pr.holds(i)
                || g.pr
                    .res
                    .as_ref()
                    .is_some_and(|r| registrants_only(r.rtype) || all_registrants(r.rtype));
            if quiet {
                return Ok(Reply::none());
            }
            return Err(Refusal::Conflict);
        }
        if !g.pr.regs.is_empty() {
            return Err(Refusal::Conflict);
        }
        // Releasing someone else's reservation (or none) does nothing.
        if g.spc2 == Some(nexus.id) {
            g.spc2 = None;
        }
        Ok(Reply::none())
    }

    fn pr_out(
        &self,
        ctx: &Ctx<'_>,
        action: u8,
        scope: u8,
        rtype: u8,
        len: u32,
    ) -> Result<Reply, Refusal> {
        let nexus = ctx.nexus;
        if matches!(
            action,
            sa::RESERVE | sa::RELEASE | sa::PREEMPT | sa::PREEMPT_AND_ABORT
        ) {
            if scope != 0 {
                return Err(Sense::invalid_cdb_field(2, Some(7)).into());
            }
            if !valid_type(rtype) {
                return Err(Sense::invalid_cdb_field(2, Some(3)).into());
            }
        }
        if len < 24 {
            return Err(Sense::param_list_length().into());
        }
        let data = ctx.req.data_out;
        if (data.len() as u64) < len as u64 {
            return Err(Sense::param_list_length().into());
        }
        let p = &data[..len as usize];
        let rk = be64(&p[0..]);
        let sark = be64(&p[8..]);
        let (aptpl, all_tg_pt, move_to) = if action == sa::REGISTER_AND_MOVE {
            let tid_len = be32(&p[20..]) as u64;
            if 24 + tid_len > len as u64 {
                return Err(Sense::param_list_length().into());
            }
            if p[17] & 0xFC != 0 {
                return Err(Sense::invalid_param_field(17, Some(7)).into());
            }
            let rel = u16::from_be_bytes([p[18], p[19]]);
            let tid = &p[24..24 + tid_len as usize];
            let (named, _) = transport_id::decode(tid)
                .map_err(|e| Sense::invalid_param_field(24 + e.byte, None))?;
            let Named::Port(name, isid) = named else {
                return Err(Sense::invalid_param_field(24, Some(7)).into());
            };
            let tp = &nexus.target_port;
            if rel != tp.relative_port_id {
                return Err(Sense::invalid_param_field(18, None).into());
            }
            let dest = PortId {
                initiator: name,
                isid,
                target: tp.target_name.to_ascii_lowercase(),
                rel_port: rel,
                tpgt: tp.tpgt,
            };
            (p[17] & 0x01 != 0, false, Some((dest, p[17] & 0x02 != 0)))
        } else {
            if p[20] & 0x08 != 0 {
                // SPEC_I_PT: not supported (SIP_C=0).
                return Err(Sense::invalid_param_field(20, Some(3)).into());
            }
            if len != 24 {
                return Err(Sense::param_list_length().into());
            }
            if p[20] & 0xF2 != 0 {
                return Err(Sense::invalid_param_field(20, Some(7)).into());
            }
            (p[20] & 0x01 != 0, p[20] & 0x04 != 0, None)
        };
        if aptpl && self.store.is_none() {
            return Err(Sense::invalid_param_field(
                if action == sa::REGISTER_AND_MOVE {
                    17
                } else {
                    20
                },
                Some(0),
            )
            .into());
        }

        let _c = self.change.lock();
        let (mut next, me) = {
            let mut g = self.inner.lock();
            let me = g.note(nexus);
            if g.spc2.is_some() {
                return Err(Refusal::Conflict);
            }
            (g.pr.clone(), me)
        };
        let mine = next.find(&me);
        // (who, what) unit attentions to establish after the change.
        let mut tell: Vec<(Vec<PortId>, Sense)> = Vec::new();
        let mut bump = true;
        match action {
            sa::REGISTER | sa::REGISTER_AND_IGNORE => match mine {
                None => {
                    if action == sa::REGISTER && rk != 0 {
                        return Err(Refusal::Conflict);
                    }
                    if sark == 0 {
                        return Ok(Reply::data_out(len));
                    }
                    next.regs.push(Registration {
                        key: sark,
                        port: me.clone(),
                        all_tg_pt,
                    });
                    next.aptpl = aptpl;
                }
                Some(i) => {
                    if action == sa::REGISTER && rk != next.regs[i].key {
                        return Err(Refusal::Conflict);
                    }
                    if sark == 0 {
                        let released = next.unregister(i);
                        tell.push((released, RESERVATIONS_RELEASED));
                    } else {
                        next.regs[i].key = sark;
                    }
                    next.aptpl = aptpl;
                }
            },
            _ => {
                let Some(i) = mine else {
                    return Err(Refusal::Conflict);
                };
                if rk != next.regs[i].key {
                    return Err(Refusal::Conflict);
                }
                match action {
                    sa::RESERVE => {
                        bump = false;
                        match &next.res {
                            Some(res) => {
                                if next.holds(i) && res.rtype == rtype {
                                    return Ok(Reply::data_out(len));
                                }
                                return Err(Refusal::Conflict);
                            }
                            None => {
                                next.res = Some(Reservation {
                                    rtype,
                                    holder: next.holder_for(rtype, i),
                                });
                            }
                        }
                    }
                    sa::RELEASE => {
                        bump = false;
                        let Some(res) = next.res.clone() else {
                            return Ok(Reply::data_out(len));
                        };
                        if !next.holds(i) {
                            return Ok(Reply::data_out(len));
                        }
                        if res.rtype != rtype {
                            return Err(invalid_release().into());
                        }
                        next.res = None;
                        if registrants_only(rtype) || all_registrants(rtype) {
                            let others: Vec<PortId> = next
                                .regs
                                .iter()
                                .enumerate()
                                .filter(|(j, _)| *j != i)
                                .map(|(_, r)| r.port.clone())
                                .collect();
                            tell.push((others, RESERVATIONS_RELEASED));
                        }
                    }
                    sa::CLEAR => {
                        let others: Vec<PortId> = next
                            .regs
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, r)| r.port.clone())
                            .collect();
                        tell.push((others, RESERVATIONS_PREEMPTED));
                        next.regs.clear();
                        next.res = None;
                    }
                    sa::PREEMPT | sa::PREEMPT_AND_ABORT => {
                        preempt(&mut next, i, sark, rtype, &mut tell)?;
                    }
                    _ => {
                        // REGISTER AND MOVE.
                        let (dest, unreg) = move_to.clone().unwrap_or_else(|| (me.clone(), false));
                        let Some(res) = next.res.clone() else {
                            return Err(Refusal::Conflict);
                        };
                        if all_registrants(res.rtype) || !next.holds(i) {
                            return Err(Refusal::Conflict);
                        }
                        if sark == 0 {
                            return Err(Sense::invalid_param_field(8, None).into());
                        }
                        if dest.same_initiator_port(&me) && dest.same_target_port(&me) {
                            return Err(Sense::invalid_param_field(24, None).into());
                        }
                        match next.find(&dest) {
                            Some(d) => next.regs[d].key = sark,
                            None => next.regs.push(Registration {
                                key: sark,
                                port: dest.clone(),
                                all_tg_pt: false,
                            }),
                        }
                        let d = next.find(&dest).unwrap_or(0);
                        next.res = Some(Reservation {
                            rtype: res.rtype,
                            holder: Some(next.regs[d].port.clone()),
                        });
                        if unreg {
                            if let Some(j) = next.find(&me) {
                                next.regs.remove(j);
                            }
                        }
                        next.aptpl = aptpl;
                    }
                }
            }
        }
        if bump {
            next.generation = next.generation.wrapping_add(1);
        }
        if let Some(s) = &self.store {
            if let Err(e) = s.save(&next) {
                error!(path = %s.path().display(), error = %e,
                    "cannot save persistent reservations; command refused");
                return Err(Sense::internal().into());
            }
        }
        let ids: Vec<(u64, Sense)> = {
            let mut g = self.inner.lock();
            g.pr = next;
            tell.iter()
                .flat_map(|(ports, s)| {
                    g.nexus_ids(ports, nexus.id)
                        .into_iter()
                        .map(move |id| (id, *s))
                })
                .collect()
        };
        if action == sa::PREEMPT_AND_ABORT {
            // The preempted nexuses' tasks end too (SPC-4 5.13.11.2.6).
            let preempted: Vec<u64> = ids
                .iter()
                .filter(|(_, s)| *s == REGISTRATIONS_PREEMPTED)
                .map(|(id, _)| *id)
                .collect();
            ctx.lu.abort_nexus_tasks(&preempted);
        }
        if !ids.is_empty() {
            let mut st = ctx.lu.state.lock();
            for (id, s) in ids {
                st.ua.push(id, s);
            }
        }
        Ok(Reply::data_out(len))
    }
}

/// PREEMPT / PREEMPT AND ABORT by the registration `i` (SPC-4 5.13.11.4).
fn preempt(
    next: &mut PrState,
    i: usize,
    sark: u64,
    rtype: u8,
    tell: &mut Vec<(Vec<PortId>, Sense)>,
) -> Result<(), Refusal> {
    let me = next.regs[i].port.clone();
    // Removes the registrations with `sark` (keeping the preempting one if
    // `keep_me`), returning who was removed.
    let remove = |st: &mut PrState, keep_me: bool| -> Vec<PortId> {
        let mut gone = Vec::new();
        st.regs.retain(|r| {
            let drop = r.key == sark && !(keep_me && r.port == me);
            if drop {
                gone.push(r.port.clone());
            }
            !drop
        });
        gone
    };
    let res = next.res.clone();
    let holder_key = next.res_key();
    let gone = match res {
        Some(r) if all_registrants(r.rtype) && sark == 0 => {
            let gone: Vec<PortId> = next
                .regs
                .iter()
                .filter(|x| x.port != me)
                .map(|x| x.port.clone())
                .collect();
            next.regs.retain(|x| x.port == me);
            let idx = next.find(&me).unwrap_or(0);
            next.res = Some(Reservation {
                rtype,
                holder: next.holder_for(rtype, idx),
            });
            gone
        }
        Some(r) if !all_registrants(r.rtype) && sark == holder_key => {
            let gone = remove(next, true);
            let idx = next.find(&me).unwrap_or(0);
            next.res = Some(Reservation {
                rtype,
                holder: next.holder_for(rtype, idx),
            });
            if r.rtype != rtype {
                let stay: Vec<PortId> = next
                    .regs
                    .iter()
                    .filter(|x| x.port != me)
                    .map(|x| x.port.clone())
                    .collect();
                tell.push((stay, RESERVATIONS_RELEASED));
            }
            gone
        }
        _ => {
            if sark == 0 {
                return Err(Sense::invalid_param_field(8, None).into());
            }
            let gone = remove(next, false);
            if gone.is_empty() {
                return Err(Refusal::Conflict);
            }
            match &next.res {
                Some(r) if all_registrants(r.rtype) && next.regs.is_empty() => next.res = None,
                Some(Reservation {
                    holder: Some(h), ..
                }) if !next.regs.iter().any(|x| x.port == *h) => next.res = None,
                _ => {}
            }
            gone
        }
    };
    let others: Vec<PortId> = gone.into_iter().filter(|p| *p != me).collect();
    tell.push((others, REGISTRATIONS_PREEMPTED));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{status, CommandOutcome, LuOptions, Nexus};
    use super::*;

    fn out(t: &Harness, n: &Nexus, sa: u8, rtype: u8, rk: u64, sark: u64) -> CommandOutcome {
        let (c, p) = prout(sa, rtype, rk, sark, 0);
        t.exec(0, n, &c, &p, 24)
    }

    fn prin(t: &Harness, n: &Nexus, sa: u8) -> Vec<u8> {
        let o = t.exec(0, n, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096);
        assert_eq!(o.status, status::GOOD, "{o:?}");
        o.data_in.to_vec()
    }

    fn keys(t: &Harness, n: &Nexus) -> (u32, Vec<u64>) {
        let d = prin(t, n, 0);
        let gen = u32::from_be_bytes(d[0..4].try_into().unwrap());
        let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
        let k = d[8..8 + len]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        (gen, k)
    }

    fn reservation(t: &Harness, n: &Nexus) -> Option<(u64, u8)> {
        let d = prin(t, n, 1);
        if d[7] == 0 {
            return None;
        }
        Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
    }

    /// Takes every pending unit attention of `n`.
    fn settle(t: &Harness, n: &Nexus) {
        while t.run_as(n, &[0; 6]).status == status::CHECK_CONDITION {}
    }

    const READ: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    const WRITE: [u8; 10] = [0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0];

    fn write(t: &Harness, n: &Nexus) -> u8 {
        t.exec(0, n, &WRITE, &[0u8; 512], 512).status
    }
    fn read(t: &Harness, n: &Nexus) -> u8 {
        t.exec(0, n, &READ, &[], 512).status
    }

    #[test]
    fn register_reserve_and_the_access_table() {
        let t = Harness::new(64, true);
        let (a, b, c) = (t.nexus(1), t.nexus(2), t.nexus(3));
        assert_eq!(out(&t, &a, 6, 0, 0, 0xA).status, 0);
        assert_eq!(out(&t, &b, 6, 0, 0, 0xB).status, 0);
        assert_eq!(keys(&t, &a), (2, vec![0xA, 0xB]));
        // REGISTER with a wrong key conflicts; REGISTER AND IGNORE works.
        assert_eq!(
            out(&t, &a, 0, 0, 0, 0xC).status,
            status::RESERVATION_CONFLICT
        );
        // RESERVE needs the right key; an unregistered nexus conflicts.
        assert_eq!(
            out(&t, &a, 1, 1, 0xB, 0).status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(out(&t, &c, 1, 1, 0, 0).status, status::RESERVATION_CONFLICT);
        for (ty, reg_r, reg_w, un_r, un_w) in [
            (1u8, true, false, true, false),
            (3, false, false, false, false),
            (5, true, true, true, false),
            (6, true, true, false, false),
            (7, true, true, true, false),
            (8, true, true, false, false),
        ] {
            assert_eq!(out(&t, &a, 1, ty, 0xA, 0).status, 0, "type {ty}");
            let key = if all_registrants(ty) { 0 } else { 0xA };
            assert_eq!(reservation(&t, &b), Some((key, ty)));
            // Same reservation again: GOOD; another type: conflict.
            assert_eq!(out(&t, &a, 1, ty, 0xA, 0).status, 0);
            let other = if ty == 1 { 3 } else { 1 };
            assert_eq!(
                out(&t, &a, 1, other, 0xA, 0).status,
                status::RESERVATION_CONFLICT
            );
            assert_eq!(read(&t, &a), 0);
            assert_eq!(write(&t, &a), 0);
            let want = |ok: bool| if ok { 0 } else { status::RESERVATION_CONFLICT };
            assert_eq!(read(&t, &b), want(reg_r), "type {ty} registered read");
            assert_eq!(write(&t, &b), want(reg_w), "type {ty} registered write");
            assert_eq!(read(&t, &c), want(un_r), "type {ty} unregistered read");
            assert_eq!(write(&t, &c), want(un_w), "type {ty} unregistered write");
            // INQUIRY, TUR, READ CAPACITY, PR IN always pass.
            assert_eq!(t.exec(0, &c, &[0x12, 0, 0, 0, 36, 0], &[], 36).status, 0);
            assert_eq!(t.exec(0, &c, &[0, 0, 0, 0, 0, 0], &[], 0).status, 0);
            assert_eq!(
                t.exec(0, &c, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8)
                    .status,
                0
            );
            // RELEASE with the wrong type: 5/26/04; then properly.
            assert_sense(&out(&t, &a, 2, other, 0xA, 0), 5, 0x26, 0x04);
            assert_eq!(out(&t, &a, 2, ty, 0xA, 0).status, 0);
            assert_eq!(reservation(&t, &a), None);
            settle(&t, &b);
        }
        // RESERVE/RELEASE do not change the generation.
        assert_eq!(keys(&t, &a).0, 2);
    }

    #[test]
    fn unit_attentions_on_release_preempt_clear() {
        let t = Harness::new(64, true);
        let (a, b) = (t.nexus(1), t.nexus(2));
        const TUR: [u8; 6] = [0; 6];
        out(&t, &a, 6, 0, 0, 0xA);
        out(&t, &b, 6, 0, 0, 0xB);
        out(&t, &a, 1, 5, 0xA, 0);
        assert_eq!(out(&t, &a, 2, 5, 0xA, 0).status, 0);
        assert_sense(&t.run_as(&b, &TUR), 6, 0x2A, 0x04);
        assert_eq!(t.run_as(&a, &TUR).status, 0);
        // PREEMPT of b's registration (no reservation): generation + 1.
        let g = keys(&t, &a).0;
        assert_eq!(out(&t, &a, 4, 3, 0xA, 0xB).status, 0);
        assert_sense(&t.run_as(&b, &TUR), 6, 0x2A, 0x05);
        assert_eq!(keys(&t, &a), (g + 1, vec![0xA]));
        // PREEMPT with a key nobody has: conflict; with zero: 5/26/00.
        assert_eq!(
            out(&t, &a, 4, 3, 0xA, 0x77).status,
            status::RESERVATION_CONFLICT
        );
        assert_sense(&out(&t, &a, 4, 3, 0xA, 0), 5, 0x26, 0);
        // b preempts a's reservation and takes it over.
        out(&t, &b, 6, 0, 0, 0xB);
        out(&t, &a, 1, 1, 0xA, 0);
        assert_eq!(out(&t, &b, 5, 3, 0xB, 0xA).status, 0);
        assert_eq!(reservation(&t, &b), Some((0xB, 3)));
        assert_sense(&t.run_as(&a, &TUR), 6, 0x2A, 0x05);
        assert_eq!(read(&t, &a), status::RESERVATION_CONFLICT);
        // CLEAR by b: a (registered again) hears RESERVATIONS PREEMPTED.
        out(&t, &a, 6, 0, 0, 0xA);
        assert_eq!(out(&t, &b, 3, 0, 0xB, 0).status, 0);
        assert_sense(&t.run_as(&a, &TUR), 6, 0x2A, 0x03);
        assert_eq!(keys(&t, &a).1, Vec::<u64>::new());
        assert_eq!(reservation(&t, &a), None);
        // A non-registrant may not CLEAR.
        assert_eq!(
            out(&t, &a, 3, 0, 0xA, 0).status,
            status::RESERVATION_CONFLICT
        );
    }

    #[test]
    fn holder_leaving() {
        let t = Harness::new(64, true);
        let (a, b) = (t.nexus(1), t.nexus(2));
        // All registrants: the reservation outlives the reserving nexus.
        out(&t, &a, 6, 0, 0, 0xA);
        out(&t, &b, 6, 0, 0, 0xB);
        out(&t, &a, 1, 8, 0xA, 0);
        out(&t, &a, 0, 0, 0xA, 0);
        assert_eq!(reservation(&t, &b), Some((0, 8)));
        assert_eq!(out(&t, &b, 2, 8, 0xB, 0).status, 0);
        assert_eq!(reservation(&t, &b), None);
        // Otherwise unregistering the holder releases it.
        out(&t, &a, 6, 0, 0, 0xA);
        out(&t, &a, 1, 3, 0xA, 0);
        out(&t, &a, 6, 0, 0, 0);
        assert_eq!(reservation(&t, &b), None);
        // Re-registering the holder with a new key changes the reported key.
        out(&t, &a, 6, 0, 0, 0xA);
        out(&t, &a, 1, 1, 0xA, 0);
        out(&t, &a, 0, 0, 0xA, 0xAA);
        assert_eq!(reservation(&t, &b), Some((0xAA, 1)));
        // LUN reset and nexus loss keep persistent reservations.
        t.map.logical_unit_reset(0, &a);
        t.map.nexus_lost(a.id);
        settle(&t, &b);
        assert_eq!(reservation(&t, &b), Some((0xAA, 1)));
    }

    #[test]
    fn spc2_reserve_release() {
        let t = Harness::new(64, true);
        let (a, b) = (t.nexus(1), t.nexus(2));
        const RES6: [u8; 6] = [0x16, 0, 0, 0, 0, 0];
        const REL6: [u8; 6] = [0x17, 0, 0, 0, 0, 0];
        const RES10: [u8; 10] = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(t.run_as(&a, &RES6).status, 0);
        assert_eq!(t.run_as(&a, &RES10).status, 0);
        assert_eq!(t.run_as(&b, &RES6).status, status::RESERVATION_CONFLICT);
        assert_eq!(t.run_as(&b, &REL6).status, 0, "not the holder: no-op");
        assert_eq!(read(&t, &b), status::RESERVATION_CONFLICT);
        assert_eq!(
            t.run_as(&b, &[0x1A, 0, 0x3F, 0, 255, 0]).status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(t.exec(0, &b, &[0x12, 0, 0, 0, 36, 0], &[], 36).status, 0);
        assert_eq!(read(&t, &a), 0);
        // PR commands conflict under an SPC-2 reservation.
        assert_eq!(out(&t, &a, 6, 0, 0, 1).status, status::RESERVATION_CONFLICT);
        assert_eq!(t.run_as(&a, &REL6).status, 0);
        assert_eq!(t.run_as(&b, &RES6).status, 0);
        // Nexus loss and resets release it.
        t.map.nexus_lost(b.id);
        assert_eq!(t.run_as(&a, &RES6).status, 0);
        t.map.logical_unit_reset(0, &b);
        assert_eq!(t.run_as(&b, &TUR_CLEAR).status, 2);
        assert_eq!(t.run_as(&b, &RES6).status, 0);
        t.map.target_reset(ResetKind::TargetWarm, &a);
        assert_sense(&t.run_as(&a, &TUR_CLEAR), 6, 0x29, 0x02);
        assert_eq!(t.run_as(&a, &RES6).status, 0);
        assert_eq!(t.run_as(&a, &REL6).status, 0);
        settle(&t, &b);
        // Registrations make RESERVE conflict, except for the PR holder.
        out(&t, &a, 6, 0, 0, 0xA);
        assert_eq!(t.run_as(&b, &RES6).status, status::RESERVATION_CONFLICT);
        assert_eq!(t.run_as(&a, &RES6).status, status::RESERVATION_CONFLICT);
        out(&t, &a, 1, 3, 0xA, 0);
        assert_eq!(t.run_as(&a, &RES6).status, 0);
        assert_eq!(t.run_as(&a, &REL6).status, 0);
        assert_eq!(reservation(&t, &a), Some((0xA, 3)));
        // Third-party RESERVE is refused.
        assert_sense(
            &t.run_as(&a, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]),
            5,
            0x24,
            0,
        );
    }

    const TUR_CLEAR: [u8; 6] = [0; 6];
    use super::super::ResetKind;

    #[test]
    fn cdb_and_parameter_list_errors() {
        let t = Harness::new(64, true);
        let a = t.nexus(1);
        // PR IN service action out of range.
        for sa in 4..0x20u8 {
            let o = t.exec(0, &a, &[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], &[], 4096);
            assert_sense(&o, 5, 0x24, 0);
        }
        // Parameter list length not 24.
        let (c, p) = prout(6, 0, 0, 1, 0);
        let mut c0 = c.clone();
        c0[8] = 0;
        assert_sense(&t.exec(0, &a, &c0, &[], 0), 5, 0x1A, 0);
        let mut c28 = c.clone();
        c28[8] = 28;
        assert_sense(&t.exec(0, &a, &c28, &[0; 28], 28), 5, 0x1A, 0);
        // Data-Out shorter than the list.
        assert_sense(&t.exec(0, &a, &c, &p[..10], 10), 5, 0x1A, 0);
        // SPEC_I_PT is not supported; APTPL needs a state directory.
        let (c, p) = prout(6, 0, 0, 1, 0x08);
        assert_sense(&t.exec(0, &a, &c, &p, 24), 5, 0x26, 0);
        let (c, p) = prout(6, 0, 0, 1, 0x01);
        assert_sense(&t.exec(0, &a, &c, &p, 24), 5, 0x26, 0);
        // Bad type and scope for RESERVE.
        out(&t, &a, 6, 0, 0, 1);
        assert_sense(&out(&t, &a, 1, 2, 1, 0), 5, 0x24, 0);
        assert_sense(&out(&t, &a, 1, 0x11, 1, 0), 5, 0x24, 0);
        // Truncated READ KEYS keeps the additional length.
        let o = t.exec(0, &a, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[], 8);
        assert_eq!(o.data_in.len(), 8);
        assert_eq!(&o.data_in[4..8], &[0, 0, 0, 8]);
        // READ FULL STATUS names the I_T nexus.
        let d = prin(&t, &a, 3);
        let tid = &d[8 + 24..];
        let (named, _) = transport_id::decode(tid).unwrap();
        assert_eq!(named, Named::Port(a.initiator_name.clone(), a.isid));
        // REPORT CAPABILITIES.
        let d = prin(&t, &a, 2);
        assert_eq!(&d[..2], &[0, 8]);
        assert_eq!(d[4..6], [0xEA, 0x01]);
    }

    /// The sequence of Windows failover-cluster validation ("Validate SCSI-3
    /// Persistent Reservation", esos#62): each node registers, one reserves
    /// WRITE EXCLUSIVE REGISTRANTS ONLY, both read the reservation back, the
    /// other node takes over with PREEMPT, then everything is cleared.
    #[test]
    fn windows_cluster_validation_sequence() {
        let t = Harness::new(64, true);
        let (n1, n2) = (t.nexus(1), t.nexus(2));
        assert_eq!(out(&t, &n1, 6, 0, 0, 0x1001).status, 0);
        assert_eq!(out(&t, &n1, 1, 5, 0x1001, 0).status, 0);
        assert_eq!(reservation(&t, &n1), Some((0x1001, 5)));
        assert_eq!(reservation(&t, &n2), Some((0x1001, 5)));
        assert_eq!(write(&t, &n2), status::RESERVATION_CONFLICT);
        assert_eq!(out(&t, &n2, 6, 0, 0, 0x2002).status, 0);
        assert_eq!(keys(&t, &n1).1, vec![0x1001, 0x2002]);
        // Registered under registrants-only: node 2 may write now.
        assert_eq!(write(&t, &n2), 0);
        // Node 2 takes over, evicting node 1.
        assert_eq!(out(&t, &n2, 4, 5, 0x2002, 0x1001).status, 0);
        assert_sense(&t.run_as(&n1, &[0; 6]), 6, 0x2A, 0x05);
        assert_eq!(reservation(&t, &n1), Some((0x2002, 5)));
        assert_eq!(keys(&t, &n1).1, vec![0x2002]);
        assert_eq!(write(&t, &n1), status::RESERVATION_CONFLICT);
        assert_eq!(read(&t, &n1), 0);
        assert_eq!(
            out(&t, &n1, 1, 5, 0x1001, 0).status,
            status::RESERVATION_CONFLICT
        );
        assert_eq!(out(&t, &n2, 2, 5, 0x2002, 0).status, 0);
        assert_eq!(out(&t, &n2, 3, 0, 0x2002, 0).status, 0);
        assert_eq!(keys(&t, &n1).1, Vec::<u64>::new());
        assert_eq!(write(&t, &n1), 0);
    }

    #[test]
    fn register_and_move() {
        let t = Harness::new(64, true);
        let (a, b) = (t.nexus(1), t.nexus(2));
        out(&t, &a, 6, 0, 0, 0xA);
        out(&t, &a, 1, 1, 0xA, 0);
        let tid = transport_id::encode(&b.initiator_name, b.isid);
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&0xAu64.to_be_bytes());
        p[8..16].copy_from_slice(&0xBu64.to_be_bytes());
        p[17] = 0x02; // UNREG
        p[18..20].copy_from_slice(&1u16.to_be_bytes());
        p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&tid);
        let n = p.len() as u8;
        let o = t.exec(0, &a, &[0x5F, 7, 1, 0, 0, 0, 0, 0, n, 0], &p, n as u32);
        assert_eq!(o.status, 0, "{o:?}");
        assert_eq!(reservation(&t, &a), Some((0xB, 1)));
        assert_eq!(keys(&t, &a).1, vec![0xB]);
        assert_eq!(write(&t, &b), 0);
        assert_eq!(write(&t, &a), status::RESERVATION_CONFLICT);
    }

    #[test]
    fn state_survives_a_new_logical_unit() {
        let dir = std::env::temp_dir().join(format!("ironlun-res-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = LuOptions {
            state_dir: Some(dir.clone()),
            ..LuOptions::default()
        };
        let t = Harness::with_lu_options(64, true, opts.clone());
        let (a, b) = (t.nexus(1), t.nexus(2));
        let (c, p) = prout(6, 0, 0, 0xA, 0x01);
        assert_eq!(t.exec(0, &a, &c, &p, 24).status, 0);
        out(&t, &a, 1, 1, 0xA, 0);
        let d = prin(&t, &a, 2);
        assert_eq!((d[2] & 1, d[3] & 1), (1, 1), "PTPL_C, PTPL_A");
        drop(t);
        let t = Harness::with_lu_options(64, true, opts);
        assert_eq!(reservation(&t, &b), Some((0xA, 1)));
        assert_eq!(keys(&t, &b), (1, vec![0xA]));
        assert_eq!(write(&t, &b), status::RESERVATION_CONFLICT);
        assert_eq!(write(&t, &a), 0);
        let snap = t.map.get(0).unwrap().reservations.snapshot();
        assert!(snap.aptpl);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn never_panics_on_random_parameter_lists() {
        let t = Harness::new(64, true);
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = t.nexus(next() % 4);
            let len = (next() % 64) as u8;
            let sa = (next() % 9) as u8;
            let ty = (next() % 10) as u8;
            let cdb = [0x5F, sa, ty, 0, 0, 0, 0, 0, len, 0];
            let mut p: Vec<u8> = (0..len).map(|_| (next() % 4) as u8).collect();
            if p.len() >= 24 && next() % 2 == 0 {
                p[20] = 0;
            }
            let o = t.exec(0, &n, &cdb, &p, len as u32);
            assert_eq!(o.status == status::CHECK_CONDITION, o.sense.is_some());
            let _ = t.exec(
                0,
                &n,
                &[
                    0x5E,
                    (next() % 5) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (next() % 64) as u8,
                    0,
                ],
                &[],
                64,
            );
            let _ = t.exec(0, &n, &READ, &[], 512);
        }
    }
}
