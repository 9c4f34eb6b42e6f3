//! Asymmetric logical unit access (SPC-4 5.16): implicit ALUA only
//! (standard INQUIRY TPGS = 01b), every target port group in the
//! active/optimized state, and REPORT TARGET PORT GROUPS (MAINTENANCE IN,
//! service action 0Ah) in both the length-only and the extended header
//! formats.
//!
//! A target port group is an iSCSI target portal group: its identifier is
//! the portal group tag (`TargetPort::tpgt`), and its target ports are the
//! relative target port identifiers seen in it — the same values VPD page
//! 83h reports in its relative target port and target port group
//! designators. The groups a logical unit knows are those of every nexus
//! registered with it (the transport registers each session when it
//! reaches full feature phase) and of the nexus asking; the transport can
//! also announce ports up front with [`super::LunMap::add_target_port`].
//! SET TARGET PORT GROUPS is not supported (no explicit ALUA).

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::RwLock;

use super::sense::Sense;
use super::{Ctx, Reply, ScsiResult, TargetPort};

/// ASYMMETRIC ACCESS STATE active/optimized.
const ACTIVE_OPTIMIZED: u8 = 0x0;
/// Supported states: only AO_SUP.
const SUPPORTED_STATES: u8 = 0x01;

/// Target port groups of one logical unit: group id → relative port ids.
#[derive(Debug, Default)]
pub struct PortGroups {
    groups: RwLock<BTreeMap<u16, BTreeSet<u16>>>,
}

impl PortGroups {
    /// Records that `port` gives access to the logical unit.
    pub fn saw(&self, port: &TargetPort) {
        let known = self
            .groups
            .read()
            .get(&port.tpgt)
            .is_some_and(|p| p.contains(&port.relative_port_id));
        if !known {
            self.groups
                .write()
                .entry(port.tpgt)
                .or_default()
                .insert(port.relative_port_id);
        }
    }

    /// A copy of the groups, in ascending group order.
    pub fn snapshot(&self) -> BTreeMap<u16, BTreeSet<u16>> {
        self.groups.read().clone()
    }
}

pub fn report_target_port_groups(ctx: &Ctx<'_>, format: u8, alloc: u32) -> ScsiResult {
    let extended = match format {
        0 => false,
        1 => true,
        _ => return Err(Sense::invalid_cdb_field(1, Some(7))),
    };
    ctx.lu.alua.saw(&ctx.nexus.target_port);
    let mut d = if extended {
        // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0 (no transitions).
        vec![0, 0, 0, 0, 0x10, 0, 0, 0]
    } else {
        vec![0, 0, 0, 0]
    };
    for (group, ports) in ctx.lu.alua.snapshot() {
        d.push(ACTIVE_OPTIMIZED);
        d.push(SUPPORTED_STATES);
        d.extend_from_slice(&group.to_be_bytes());
        d.push(0);
        d.push(0); // STATUS CODE: no status available
        d.push(0);
        d.push(ports.len().min(255) as u8);
        for rel in ports.iter().take(255) {
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(&rel.to_be_bytes());
        }
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::TargetPort;

    fn rtpg(format: u8, alloc: u32) -> Vec<u8> {
        let a = alloc.to_be_bytes();
        vec![
            0xA3,
            (format << 5) | 0x0A,
            0,
            0,
            0,
            0,
            a[0],
            a[1],
            a[2],
            a[3],
            0,
            0,
        ]
    }

    #[test]
    fn inquiry_reports_implicit_alua() {
        let t = Harness::new(64, true);
        assert_eq!(t.run(&[0x12, 0, 0, 0, 36, 0]).data_in[5] & 0x30, 0x10);
    }

    #[test]
    fn one_active_optimized_group_per_portal_group() {
        let t = Harness::new(64, true);
        let o = t.run(&rtpg(0, 1024));
        assert_eq!(o.status, 0);
        assert_eq!(
            &o.data_in[..],
            &[0, 0, 0, 12, 0x00, 0x01, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
        );
        // A second portal group seen through another nexus.
        let mut other = t.nexus(2);
        other.target_port = Arc::new(TargetPort {
            target_name: t.me.target_port.target_name.clone(),
            tpgt: 2,
            relative_port_id: 2,
        });
        t.map.register_nexus(&other);
        let o = t.run(&rtpg(1, 1024));
        assert_eq!(&o.data_in[0..8], &[0, 0, 0, 28, 0x10, 0, 0, 0]);
        assert_eq!(&o.data_in[8..20], &[0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&o.data_in[20..32], &[0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        // Allocation length cuts; the length field still tells the whole.
        let o = t.run(&rtpg(0, 4));
        assert_eq!(&o.data_in[..], &[0, 0, 0, 24]);
        assert_sense(&t.run(&rtpg(2, 1024)), 5, 0x24, 0);
    }

    #[test]
    fn ports_announced_by_the_transport_are_listed() {
        let t = Harness::new(64, true);
        t.map.add_target_port(&TargetPort {
            target_name: t.me.target_port.target_name.clone(),
            tpgt: 7,
            relative_port_id: 3,
        });
        let o = t.run(&rtpg(0, 1024));
        assert_eq!(&o.data_in[0..4], &[0, 0, 0, 24]);
        assert_eq!(&o.data_in[16..28], &[0, 1, 0, 7, 0, 0, 0, 1, 0, 0, 0, 3]);
    }

    #[test]
    fn matches_vpd_83_target_port_group() {
        let t = Harness::new(64, true);
        let o = t.run(&[0x12, 1, 0x83, 0, 255, 0]);
        let d = &o.data_in[4..];
        let mut i = 0;
        let mut tpg = None;
        while i + 4 <= d.len() {
            let len = d[i + 3] as usize;
            if d[i + 1] & 0x0F == 5 {
                tpg = Some(u16::from_be_bytes([d[i + 6], d[i + 7]]));
            }
            i += 4 + len;
        }
        let o = t.run(&rtpg(0, 1024));
        assert_eq!(tpg, Some(u16::from_be_bytes([o.data_in[6], o.data_in[7]])));
    }
}
