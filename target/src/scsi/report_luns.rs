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
            lu.state.lock().ua.clear(ctx.nexus.id, REPORTED_LUNS_CHANGED);
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
