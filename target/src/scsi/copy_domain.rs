//! The copy domain: every logical unit a copy manager can reach, found by
//! the designator an initiator names it with (EXTENDED COPY's
//! identification CSCD descriptor, the source inside a ROD token), and the
//! ROD tokens created in it.
//!
//! A server shares one domain between all its targets
//! ([`super::LunMap::join_copy_domain`]), so a copy may go from a LUN of one
//! target to a LUN of another — but only to or from a target whose login
//! ACL admits the initiator and which does not require CHAP (a session of
//! another target proved no secret for it): [`CopyAccess`]. A map that never
//! joined one uses a domain of its own LUNs.

use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::inquiry::t10_vendor_designator;
use super::rod_token::TokenStore;
use super::{LogicalUnit, Nexus};

/// Who may reach a target's logical units through a copy that arrives on
/// another target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyAccess {
    /// The target's name.
    pub target: String,
    /// Initiator names its login ACL admits (`None`: all), ignoring ASCII
    /// case as the login does.
    pub allowed_initiators: Option<Vec<String>>,
    /// The target requires CHAP.
    pub chap: bool,
}

impl CopyAccess {
    /// Whether a command from `nexus` may use this target's units.
    pub fn admits(&self, nexus: &Nexus) -> bool {
        if nexus.target_port.target_name == self.target {
            return true;
        }
        !self.chap
            && self.allowed_initiators.as_ref().is_none_or(|list| {
                list.iter()
                    .any(|i| i.eq_ignore_ascii_case(&nexus.initiator_name))
            })
    }
}

/// One unit of the domain and the access rule of its target (`None`: the
/// map's own domain, reached only through that map).
struct Member {
    unit: Weak<LogicalUnit>,
    access: Option<Arc<CopyAccess>>,
}

impl Member {
    fn admits(&self, nexus: &Nexus) -> bool {
        self.access.as_ref().is_none_or(|a| a.admits(nexus))
    }
}

/// Designator types (SPC-4 table 481) a copy target may be named by.
pub mod designator_type {
    pub const T10_VENDOR_ID: u8 = 0x1;
    pub const NAA: u8 = 0x3;
}

/// A designation descriptor naming a logical unit (SPC-4 7.8.6.1): its
/// code set, designator type and value (association is always "logical
/// unit").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    pub code_set: u8,
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Designator {
    /// The NAA designator VPD page 83h reports for `lu`.
    pub fn naa_of(lu: &LogicalUnit) -> Designator {
        Designator {
            code_set: 0x1,
            kind: designator_type::NAA,
            value: lu.identity.naa.to_vec(),
        }
    }

    /// Whether this names `lu`: the NAA or the T10 vendor ID designator
    /// that VPD page 83h reports for it.
    pub fn names(&self, lu: &LogicalUnit) -> bool {
        match self.kind {
            designator_type::NAA => self.value == lu.identity.naa,
            designator_type::T10_VENDOR_ID => self.value == t10_vendor_designator(&lu.identity),
            _ => false,
        }
    }
}

/// Logical units reachable by copy operations, and the ROD tokens.
#[derive(Default)]
pub struct CopyDomain {
    units: RwLock<Vec<Member>>,
    pub(crate) tokens: TokenStore,
}

impl std::fmt::Debug for CopyDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyDomain")
            .field("units", &self.units.read().len())
            .finish()
    }
}

impl CopyDomain {
    /// An empty domain.
    pub fn new() -> Arc<CopyDomain> {
        Arc::new(CopyDomain::default())
    }

    /// Makes `lu` reachable as a copy source or destination, under the
    /// access rule of its target.
    pub fn add(&self, lu: &Arc<LogicalUnit>, access: Option<Arc<CopyAccess>>) {
        let mut units = self.units.write();
        units.retain(|m| m.unit.strong_count() > 0);
        if !units
            .iter()
            .any(|m| std::ptr::eq(m.unit.as_ptr(), Arc::as_ptr(lu)))
        {
            units.push(Member {
                unit: Arc::downgrade(lu),
                access,
            });
        }
    }

    /// Takes `lu` out of the domain (it was unmapped).
    pub fn remove(&self, lu: &Arc<LogicalUnit>) {
        self.units.write().retain(|m| {
            m.unit.strong_count() > 0 && !std::ptr::eq(m.unit.as_ptr(), Arc::as_ptr(lu))
        });
    }

    /// The logical unit `designator` names, if it is in the domain and
    /// `nexus` may reach it.
    pub fn find(&self, designator: &Designator, nexus: &Nexus) -> Option<Arc<LogicalUnit>> {
        self.units
            .read()
            .iter()
            .filter(|m| m.admits(nexus))
            .filter_map(|m| m.unit.upgrade())
            .find(|lu| designator.names(lu))
    }

    /// Whether `lu` is in the domain and `nexus` may reach it.
    pub fn admits(&self, lu: &Arc<LogicalUnit>, nexus: &Nexus) -> bool {
        self.units
            .read()
            .iter()
            .any(|m| std::ptr::eq(m.unit.as_ptr(), Arc::as_ptr(lu)) && m.admits(nexus))
    }

    /// Number of logical units in the domain.
    pub fn len(&self) -> usize {
        self.units
            .read()
            .iter()
            .filter(|m| m.unit.strong_count() > 0)
            .count()
    }

    /// Whether the domain holds no logical unit.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
