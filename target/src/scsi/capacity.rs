//! READ CAPACITY (10) and (16) (SBC-3 5.15, 5.16).

use super::{Ctx, Reply, ScsiResult};

pub fn read_capacity_10(ctx: &Ctx<'_>) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    let last = g.blocks.saturating_sub(1).min(u32::MAX as u64) as u32;
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&last.to_be_bytes());
    d.extend_from_slice(&g.block_size.to_be_bytes());
    Ok(Reply::alloc(d, 8))
}

pub fn read_capacity_16(ctx: &Ctx<'_>, alloc: u32) -> ScsiResult {
    let g = ctx.lu.device.geometry();
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&g.blocks.saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&g.block_size.to_be_bytes());
    // d[12]: no protection; d[13]: LOGICAL BLOCKS PER PHYSICAL BLOCK
    // EXPONENT (the lowest aligned LBA is 0).
    d[13] = ctx.lu.options.physical_block_exponent & 0x0F;
    if g.thin {
        d[14] = 0x80 | 0x40; // LBPME, LBPRZ
    }
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn capacities() {
        let t = Harness::new(1000, true);
        let o = t.run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&o.data_in[..], &[0, 0, 0x03, 0xE7, 0, 0, 2, 0]);
        let o = t.run(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
        assert_eq!(o.data_in.len(), 32);
        assert_eq!(
            &o.data_in[0..12],
            &[0, 0, 0, 0, 0, 0, 0x03, 0xE7, 0, 0, 2, 0]
        );
        assert_eq!(o.data_in[14], 0xC0);
        for alloc in 0..16u8 {
            let o = t.run(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, alloc, 0, 0]);
            assert_eq!(o.status, 0);
            assert_eq!(o.data_in.len(), alloc as usize);
        }
        // LBA without PMI is invalid.
        let o = t.run(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_sense(&o, 5, 0x24, 0);
    }
}
