//! Unit attention conditions, queued per I_T nexus (SAM-5 5.14, SPC-4 5.14).
//!
//! A nexus gets a queue the first time it is seen (a command, or
//! [`super::LunMap::register_nexus`]); a new nexus starts with an empty
//! queue, so a new session does not see POWER ON/RESET unless a reset
//! really happened while it existed. Resets replace whatever was queued
//! (their condition has the highest precedence and implies the others);
//! other conditions are queued once each.

use std::collections::{HashMap, VecDeque};

use super::sense::{key, Sense};

/// 6/29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
pub const POWER_ON_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
/// 6/29/01 POWER ON OCCURRED.
pub const POWER_ON: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x01);
/// 6/29/02 SCSI BUS RESET OCCURRED (target warm reset).
pub const BUS_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x02);
/// 6/29/03 BUS DEVICE RESET FUNCTION OCCURRED (logical unit reset).
pub const BUS_DEVICE_RESET: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
/// 6/2A/01 MODE PARAMETERS CHANGED.
pub const MODE_PARAMETERS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x01);
/// 6/2A/03 RESERVATIONS PREEMPTED.
pub const RESERVATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x03);
/// 6/2A/04 RESERVATIONS RELEASED.
pub const RESERVATIONS_RELEASED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x04);
/// 6/2A/05 REGISTRATIONS PREEMPTED.
pub const REGISTRATIONS_PREEMPTED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x05);
/// 6/2A/09 CAPACITY DATA HAS CHANGED.
pub const CAPACITY_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2A, 0x09);
/// 6/2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR.
pub const COMMANDS_CLEARED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2F, 0x00);
/// 6/3F/0E REPORTED LUNS DATA HAS CHANGED.
pub const REPORTED_LUNS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3F, 0x0E);

/// Task management resets that establish unit attentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET (29/03 BUS DEVICE RESET FUNCTION OCCURRED).
    LogicalUnit,
    /// TARGET WARM RESET (29/02 SCSI BUS RESET OCCURRED).
    TargetWarm,
    /// TARGET COLD RESET (29/01 POWER ON OCCURRED).
    TargetCold,
    /// Process start or any other power-on style event (29/00).
    PowerOn,
}

impl ResetKind {
    /// The unit attention the reset establishes.
    pub fn sense(self) -> Sense {
        match self {
            ResetKind::LogicalUnit => BUS_DEVICE_RESET,
            ResetKind::TargetWarm => BUS_RESET,
            ResetKind::TargetCold => POWER_ON,
            ResetKind::PowerOn => POWER_ON_RESET,
        }
    }
}

/// At most this many conditions are kept per nexus.
const MAX_QUEUED: usize = 16;
/// Beyond this many tracked nexuses, idle ones (nothing pending) are
/// forgotten: a safety net should nexus loss go unreported. A forgotten
/// live nexus is tracked again by its next command.
const MAX_TRACKED: usize = 4096;

/// Pending unit attentions of one logical unit, by nexus id.
#[derive(Debug, Default)]
pub struct UnitAttentions {
    by_nexus: HashMap<u64, VecDeque<Sense>>,
}

impl UnitAttentions {
    /// Starts tracking a nexus (no condition pending).
    pub fn register(&mut self, nexus: u64) {
        if self.by_nexus.len() >= MAX_TRACKED && !self.by_nexus.contains_key(&nexus) {
            self.by_nexus.retain(|_, q| !q.is_empty());
        }
        self.by_nexus.entry(nexus).or_default();
    }

    /// Forgets a nexus (I_T nexus loss).
    pub fn remove(&mut self, nexus: u64) {
        self.by_nexus.remove(&nexus);
    }

    /// Whether the nexus is tracked.
    pub fn knows(&self, nexus: u64) -> bool {
        self.by_nexus.contains_key(&nexus)
    }

    /// Takes the oldest pending condition of `nexus`.
    pub fn take(&mut self, nexus: u64) -> Option<Sense> {
        self.by_nexus.get_mut(&nexus)?.pop_front()
    }

    /// The oldest pending condition, left in place.
    pub fn peek(&self, nexus: u64) -> Option<Sense> {
        self.by_nexus.get(&nexus)?.front().copied()
    }

    /// Number of pending conditions for `nexus`.
    pub fn pending(&self, nexus: u64) -> usize {
        self.by_nexus.get(&nexus).map_or(0, |q| q.len())
    }

    /// Removes one kind of condition from `nexus` (REPORT LUNS clears
    /// REPORTED LUNS DATA HAS CHANGED).
    pub fn clear(&mut self, nexus: u64, which: Sense) {
        if let Some(q) = self.by_nexus.get_mut(&nexus) {
            q.retain(|s| (s.asc, s.ascq) != (which.asc, which.ascq));
        }
    }

    /// Queues `sense` for every tracked nexus except `except`.
    pub fn push_all(&mut self, sense: Sense, except: Option<u64>) {
        for (id, q) in self.by_nexus.iter_mut() {
            if Some(*id) == except {
                continue;
            }
            push(q, sense);
        }
    }

    /// Queues `sense` for one tracked nexus.
    pub fn push(&mut self, nexus: u64, sense: Sense) {
        if let Some(q) = self.by_nexus.get_mut(&nexus) {
            push(q, sense);
        }
    }

    /// Establishes a reset condition on every tracked nexus, replacing
    /// whatever was pending.
    pub fn reset(&mut self, kind: ResetKind) {
        for q in self.by_nexus.values_mut() {
            q.clear();
            q.push_back(kind.sense());
        }
    }
}

fn push(q: &mut VecDeque<Sense>, sense: Sense) {
    if q.iter().any(|s| (s.asc, s.ascq) == (sense.asc, sense.ascq)) {
        return;
    }
    if q.len() >= MAX_QUEUED {
        return;
    }
    q.push_back(sense);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nexus_has_nothing_pending() {
        let mut ua = UnitAttentions::default();
        ua.register(1);
        assert_eq!(ua.take(1), None);
    }

    #[test]
    fn reset_replaces_and_reaches_everyone_known() {
        let mut ua = UnitAttentions::default();
        ua.register(1);
        ua.register(2);
        ua.push_all(MODE_PARAMETERS_CHANGED, Some(1));
        assert_eq!(ua.pending(1), 0);
        assert_eq!(ua.pending(2), 1);
        ua.reset(ResetKind::LogicalUnit);
        assert_eq!(ua.take(2), Some(BUS_DEVICE_RESET));
        assert_eq!(ua.take(2), None);
        assert_eq!(ua.take(1), Some(BUS_DEVICE_RESET));
        // A nexus registered after the reset sees nothing.
        ua.register(3);
        assert_eq!(ua.take(3), None);
    }

    #[test]
    fn idle_nexuses_are_pruned_beyond_the_limit() {
        let mut ua = UnitAttentions::default();
        ua.register(0);
        ua.reset(ResetKind::LogicalUnit);
        for id in 1..=MAX_TRACKED as u64 {
            ua.register(id);
        }
        assert!(ua.knows(0), "a nexus with a pending condition is kept");
        assert!(ua.by_nexus.len() <= MAX_TRACKED);
    }

    #[test]
    fn duplicates_collapse_and_clear_works() {
        let mut ua = UnitAttentions::default();
        ua.register(7);
        ua.push_all(REPORTED_LUNS_CHANGED, None);
        ua.push_all(REPORTED_LUNS_CHANGED, None);
        ua.push_all(CAPACITY_CHANGED, None);
        assert_eq!(ua.pending(7), 2);
        ua.clear(7, REPORTED_LUNS_CHANGED);
        assert_eq!(ua.take(7), Some(CAPACITY_CHANGED));
        ua.remove(7);
        assert!(!ua.knows(7));
    }
}
