//! PRE-FETCH (10/16) and READ DEFECT DATA (10/12) (SBC-4 5.10, 5.11,
//! 5.20, 5.21).
//!
//! PRE-FETCH validates the range and completes with GOOD: the device
//! server keeps no cache of its own that blocks could be staged in (the
//! backing store's page cache is not under its control), which SBC-4
//! answers with GOOD rather than CONDITION MET ("the cache does not have
//! sufficient capacity"). A PREFETCH LENGTH of zero means "to the last
//! logical block".
//!
//! READ DEFECT DATA answers an empty defect list in the address descriptor
//! format that was asked for, with PLISTV / GLISTV set for the lists that
//! were requested (both are empty: a virtual medium has no defects).

use super::rw::check_range;
use super::sense::Sense;
use super::{Ctx, Reply, ScsiResult};

pub fn pre_fetch(ctx: &Ctx<'_>, lba: u64, blocks: u32) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    check_range(&g, lba, blocks as u64)?;
    Ok(Reply::none())
}

/// Address descriptor formats SBC-4 defines (table 66): short block,
/// extended bytes from index, extended physical sector, long block, bytes
/// from index, physical sector, vendor specific. 111b is reserved.
fn valid_format(format: u8) -> bool {
    format <= 0b110
}

pub fn read_defect_data(
    twelve: bool,
    plist: bool,
    glist: bool,
    format: u8,
    alloc: u32,
) -> ScsiResult {
    if !valid_format(format) {
        let byte = if twelve { 1 } else { 2 };
        return Err(Sense::invalid_cdb_field(byte, Some(2)));
    }
    let flags = (if plist { 0x10 } else { 0 }) | (if glist { 0x08 } else { 0 }) | format;
    let data = if twelve {
        // Header: flags + format, GENERATION CODE 0, DEFECT LIST LENGTH 0.
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    };
    Ok(Reply::alloc(data, alloc))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn pre_fetch_ranges() {
        let t = Harness::new(64, true);
        for cdb in [
            vec![0x34, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            vec![0x34, 0x02, 0, 0, 0, 60, 3, 0, 4, 0],
            vec![0x34, 0, 0, 0, 0, 63, 0, 0, 0, 0],
            vec![0x90, 0x02, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 8, 3, 0],
        ] {
            let o = t.run(&cdb);
            assert_eq!((o.status, o.transfer_len), (0, 0), "{cdb:02x?}");
        }
        for cdb in [
            vec![0x34, 0, 0, 0, 0, 64, 0, 0, 0, 0],
            vec![0x34, 0, 0, 0, 0, 60, 0, 0, 5, 0],
            vec![0x90, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            vec![
                0x90, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0,
            ],
        ] {
            assert_sense(&t.run(&cdb), 5, 0x21, 0);
        }
    }

    #[test]
    fn empty_defect_lists() {
        let t = Harness::new(64, true);
        let o = t.run(&[0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 255, 0]);
        assert_eq!(&o.data_in[..], &[0, 0x1D, 0, 0]);
        let o = t.run(&[0x37, 0, 0x03, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!((o.status, &o.data_in[..]), (0, &[0u8, 0x03][..]));
        let o = t.run(&[0xB7, 0x08, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&o.data_in[..], &[0, 0x08, 0, 0, 0, 0, 0, 0]);
        assert_sense(&t.run(&[0x37, 0, 0x07, 0, 0, 0, 0, 0, 255, 0]), 5, 0x24, 0);
    }
}
