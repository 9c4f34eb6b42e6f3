//! REQUEST SENSE (SPC-4 6.39). With autosense on iSCSI there is no saved
//! sense to return, but a pending unit attention is reported (and cleared),
//! and a missing medium is reported as NOT READY.

use super::sense::Sense;
use super::{Ctx, Reply, ScsiResult};

pub fn request_sense(ctx: &Ctx<'_>, desc: bool, alloc: u32) -> ScsiResult {
    let sense = {
        let mut st = ctx.lu.state.lock();
        match st.ua.take(ctx.nexus.id) {
            Some(ua) => ua,
            None if !st.loaded => Sense::medium_not_present(),
            None => Sense::no_sense(),
        }
    };
    Ok(Reply::alloc(sense.to_bytes(desc), alloc))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn no_sense_then_unit_attention() {
        let t = Harness::new(64, true);
        let o = t.run(&[0x03, 0, 0, 0, 252, 0]);
        assert_eq!(o.status, 0);
        assert_eq!(&o.data_in[..3], &[0x70, 0, 0]);
        assert_eq!(o.data_in.len(), 18);
        t.map.logical_unit_reset(0, &t.me);
        let o = t.run(&[0x03, 1, 0, 0, 252, 0]);
        assert_eq!(&o.data_in[..4], &[0x72, 6, 0x29, 0x03]);
        // Cleared: the next command runs.
        let o = t.run(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(o.status, 0);
    }
}
