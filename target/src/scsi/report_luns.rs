//! REPORT LUNS (SPC-4 6.33). LUN 0 is always listed, so that initiators
//! that only scan from LUN 0 (Linux, ESXi) find the others.

use super::sense::Sense;
use super::unit_attention::REPORTED_LUNS_CHANGED;
use super::{encode_lun, Ctx, LunMap, Reply, ScsiResult};

pub fn report_luns(ctx: &Ctx<'_>, select: u8, alloc: u32) -> ScsiResult {
    let reply = build(ctx.map, select, alloc)?;
    // Reporting the LUN inventory clears the condition that says it
    // changed for this I_T nexus, on every logical unit of the target: the
    // initiator now knows the new inventory.
    ctx.lu
        .state
        .lock()
        .ua
        .clear(ctx.nexus.id, REPORTED_LUNS_CHANGED);
    for lun in ctx.map.luns() {
        if let Some(lu) = ctx.map.get(lun) {
            lu.state
                .lock()
                .ua
                .clear(ctx.nexus.id, REPORTED_LUNS_CHANGED);
        }
    }
    Ok(reply)
}

pub fn build(map: &LunMap, select: u8, alloc: u32) -> ScsiResult {
    let mut luns: Vec<u64> = match select {
        0x00 | 0x02 => map.luns().collect(),
        0x01 => Vec::new(), // no well-known logical units
        _ => return Err(Sense::invalid_cdb_field(2, Some(7))),
    };
    if select != 0x01 && !luns.contains(&0) {
        luns.insert(0, 0);
    }
    let mut d = Vec::with_capacity(8 + 8 * luns.len());
    d.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for lun in luns {
        d.extend_from_slice(&encode_lun(lun).to_be_bytes());
    }
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn lists_lun_zero_and_others() {
        let t = Harness::new(64, true);
        let o = t.run(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(o.status, 0);
        assert_eq!(
            &o.data_in[..],
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let o = t.run(&[0xA0, 0, 0x07, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_sense(&o, 5, 0x24, 0);
        // Addressed to an unmapped LUN it still works.
        let o = t.run_lun(5, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(o.status, 0);
    }

    /// A unit mapped or unmapped while nexuses exist: REPORTED LUNS DATA
    /// HAS CHANGED for each of them; REPORT LUNS through any unit lists the
    /// new inventory and clears the condition on every unit for that
    /// nexus only.
    #[test]
    fn luns_changed_at_run_time_are_announced_once_per_nexus() {
        use super::super::{LogicalUnit, LuIdentity, LuOptions};
        use std::sync::Arc;
        const TUR: [u8; 6] = [0; 6];
        const REPORT: [u8; 12] = [0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let unit = || {
            Arc::new(LogicalUnit::new(
                Arc::new(MemDevice::new(64, true)),
                LuIdentity {
                    vendor: "IRONLUN".into(),
                    product: "added".into(),
                    revision: "0001".into(),
                    serial: "serial-added".into(),
                    naa: NAA,
                },
                LuOptions::default(),
            ))
        };
        let t = Harness::new(64, true);
        let other = t.nexus(2);
        t.map.insert(3, unit());
        assert_eq!(t.run(&TUR).status, 0);
        assert_eq!(t.run_lun(3, &TUR).status, 0);
        assert_eq!(t.run_as(&other, &TUR).status, 0);
        t.map.insert(4, unit());
        t.map.notify_luns_changed();
        for lun in [0, 3] {
            assert_sense(&t.exec(lun, &t.me, &TUR, &[], 0), 6, 0x3F, 0x0E);
            // Reported once per unit, then cleared by being reported.
            assert_eq!(t.exec(lun, &t.me, &TUR, &[], 0).status, 0);
        }
        t.map.notify_luns_changed();
        let o = t.run(&REPORT);
        assert_eq!(o.status, 0);
        assert_eq!(&o.data_in[..4], &[0, 0, 0, 24], "LUNs 0, 3 and 4");
        assert_eq!(o.data_in[8 + 8 + 1], 3);
        assert_eq!(o.data_in[8 + 16 + 1], 4);
        // REPORT LUNS through LUN 0 cleared it on LUN 3 too.
        assert_eq!(t.run_lun(3, &TUR).status, 0);
        // The other nexus still has it.
        assert_sense(&t.run_as(&other, &TUR), 6, 0x3F, 0x0E);
        // Unmapped: announced, then LOGICAL UNIT NOT SUPPORTED.
        assert!(t.map.remove(4).is_some());
        t.map.notify_luns_changed();
        assert_sense(&t.run(&TUR), 6, 0x3F, 0x0E);
        assert_sense(&t.run_lun(4, &TUR), 5, 0x25, 0x00);
        assert_eq!(t.map.luns().collect::<Vec<_>>(), vec![0, 3]);
    }

    #[test]
    fn unmapped_lun() {
        let t = Harness::new(64, true);
        let o = t.run_lun(5, &[0x12, 0, 0, 0, 96, 0]);
        assert_eq!((o.status, o.data_in[0]), (0, 0x7F));
        let o = t.run_lun(5, &[0, 0, 0, 0, 0, 0]);
        assert_sense(&o, 5, 0x25, 0);
        let o = t.run_lun(5, &[0x03, 0, 0, 0, 18, 0]);
        assert_eq!((o.status, o.data_in[2], o.data_in[12]), (0, 5, 0x25));
    }
}
