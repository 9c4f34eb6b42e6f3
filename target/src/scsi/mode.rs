//! MODE SENSE (6)/(10) and MODE SELECT (6)/(10) (SPC-4 6.11-6.14) with the
//! caching (08h), control (0Ah) and informational exceptions (1Ch) pages.
//!
//! Changeable: WCE (caching), D_SENSE and SWP (control). WCE tells the
//! truth: with WCE=1 writes may stay in the device's cache until
//! SYNCHRONIZE CACHE; with WCE=0 every write is forced to stable storage.

use super::sense::Sense;
use super::unit_attention::MODE_PARAMETERS_CHANGED;
use super::{Ctx, ModeValues, Reply, ScsiResult};

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0A;
const INFO_EXCEPTIONS: u8 = 0x1C;
const ALL_PAGES: u8 = 0x3F;
const PAGES: [u8; 3] = [CACHING, CONTROL, INFO_EXCEPTIONS];

/// Page control values (0 is current).
const PC_CHANGEABLE: u8 = 1;
const PC_DEFAULT: u8 = 2;

/// A page's bytes with `v`'s values.
fn page(code: u8, v: &ModeValues) -> Vec<u8> {
    match code {
        CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = CACHING;
            p[1] = 0x12;
            if v.wce {
                p[2] |= 0x04;
            }
            p
        }
        CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = CONTROL;
            p[1] = 0x0A;
            p[2] = 0x02; // GLTSD: no log parameters saved
            if v.d_sense {
                p[2] |= 0x04;
            }
            p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
            if v.swp {
                p[4] |= 0x08;
            }
            p[8] = 0xFF; // BUSY TIMEOUT PERIOD: unlimited
            p[9] = 0xFF;
            p
        }
        _ => {
            let mut p = vec![0u8; 12];
            p[0] = INFO_EXCEPTIONS;
            p[1] = 0x0A;
            p[2] = 0x08; // DEXCPT: no informational exception reporting
            p
        }
    }
}

/// The changeable-bits mask of a page.
fn changeable(code: u8) -> Vec<u8> {
    let mut p = page(code, &ModeValues::default());
    for b in p.iter_mut().skip(2) {
        *b = 0;
    }
    match code {
        CACHING => p[2] = 0x04,
        CONTROL => {
            p[2] = 0x04;
            p[4] = 0x08;
        }
        _ => {}
    }
    p
}

#[allow(clippy::too_many_arguments)]
pub fn mode_sense(
    ctx: &Ctx<'_>,
    ten: bool,
    dbd: bool,
    llbaa: bool,
    pc: u8,
    page_code: u8,
    subpage: u8,
    alloc: u32,
) -> ScsiResult {
    if pc == 3 {
        return Err(Sense::saving_not_supported());
    }
    let codes: Vec<u8> = match (page_code, subpage) {
        (ALL_PAGES, 0x00) | (ALL_PAGES, 0xFF) => PAGES.to_vec(),
        (p, 0x00) if PAGES.contains(&p) => vec![p],
        (p, _) if PAGES.contains(&p) || p == ALL_PAGES => {
            return Err(Sense::invalid_cdb_field(3, Some(7)))
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    };
    let values = match pc {
        PC_DEFAULT => ModeValues::default(),
        _ => ctx.lu.mode(),
    };
    let mut pages = Vec::new();
    for c in codes {
        if pc == PC_CHANGEABLE {
            pages.extend_from_slice(&changeable(c));
        } else {
            pages.extend_from_slice(&page(c, &values));
        }
    }
    let g = ctx.lu.device.geometry();
    let mut bd = Vec::new();
    if !dbd {
        if ten && llbaa {
            bd.extend_from_slice(&g.blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&g.block_size.to_be_bytes());
        } else {
            let n = g.blocks.min(0xFFFF_FFFF) as u32;
            bd.extend_from_slice(&n.to_be_bytes());
            bd.push(0);
            bd.extend_from_slice(&g.block_size.to_be_bytes()[1..]);
        }
        if pc == PC_CHANGEABLE {
            bd.iter_mut().for_each(|b| *b = 0);
        }
    }
    // Device-specific parameter: WP, DPOFUA.
    let dsp = if ctx.lu.write_protected() { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::with_capacity(8 + bd.len() + pages.len());
    if ten {
        let total = 8 + bd.len() + pages.len();
        d.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        d.push(0);
        d.push(dsp);
        d.push(if llbaa && !dbd { 0x01 } else { 0 });
        d.push(0);
        d.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let total = 4 + bd.len() + pages.len();
        d.push((total - 1).min(255) as u8);
        d.push(0);
        d.push(dsp);
        d.push(bd.len() as u8);
    }
    d.extend_from_slice(&bd);
    d.extend_from_slice(&pages);
    Ok(Reply::alloc(d, alloc))
}

pub fn mode_select(ctx: &Ctx<'_>, ten: bool, pf: bool, sp: bool, len: u32) -> ScsiResult {
    if sp {
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    if !pf {
        return Err(Sense::invalid_cdb_field(1, Some(4)));
    }
    if len == 0 {
        return Ok(Reply::none());
    }
    let data = &ctx.req.data_out[..ctx.req.data_out.len().min(len as usize)];
    let hdr = if ten { 8 } else { 4 };
    if data.len() < hdr {
        return Err(Sense::param_list_length());
    }
    let medium_type_at = if ten { 2 } else { 1 };
    if data[medium_type_at] != 0 {
        return Err(Sense::invalid_param_field(medium_type_at as u16, None));
    }
    let (bd_len, bd_len_at) = if ten {
        (u16::from_be_bytes([data[6], data[7]]) as usize, 6u16)
    } else {
        (data[3] as usize, 3u16)
    };
    let long = ten && data[4] & 0x01 != 0;
    let bd_size = if long { 16 } else { 8 };
    if bd_len % bd_size != 0 || hdr + bd_len > data.len() {
        return Err(Sense::invalid_param_field(bd_len_at, None));
    }
    let g = ctx.lu.device.geometry();
    for i in 0..bd_len / bd_size {
        let at = hdr + i * bd_size;
        let bl_at = at + bd_size - 3;
        let bl =
            ((data[bl_at] as u32) << 16) | ((data[bl_at + 1] as u32) << 8) | data[bl_at + 2] as u32;
        if bl != g.block_size {
            return Err(Sense::invalid_param_field(bl_at as u16 - 1, None));
        }
    }
    let mut new = ctx.lu.mode();
    let mut off = hdr + bd_len;
    while off < data.len() {
        if off + 2 > data.len() {
            return Err(Sense::param_list_length());
        }
        let code = data[off] & 0x3F;
        if data[off] & 0x80 != 0 {
            return Err(Sense::invalid_param_field(off as u16, Some(7)));
        }
        if data[off] & 0x40 != 0 || !PAGES.contains(&code) {
            return Err(Sense::invalid_param_field(off as u16, Some(5)));
        }
        let plen = data[off + 1] as usize;
        let cur = page(code, &new);
        if plen + 2 != cur.len() {
            return Err(Sense::invalid_param_field(off as u16 + 1, Some(7)));
        }
        if off + 2 + plen > data.len() {
            return Err(Sense::param_list_length());
        }
        let given = &data[off..off + 2 + plen];
        let mask = changeable(code);
        for i in 2..cur.len() {
            let diff = (given[i] ^ cur[i]) & !mask[i];
            if diff != 0 {
                let bit = 7 - diff.leading_zeros() as u8;
                return Err(Sense::invalid_param_field((off + i) as u16, Some(bit)));
            }
        }
        match code {
            CACHING => new.wce = given[2] & 0x04 != 0,
            CONTROL => {
                new.d_sense = given[2] & 0x04 != 0;
                new.swp = given[4] & 0x08 != 0;
            }
            _ => {}
        }
        off += 2 + plen;
    }
    let old = ctx.lu.mode();
    if new != old {
        if old.wce && !new.wce {
            // Whatever the cache holds becomes durable before WCE=0 is
            // reported, so that WCE=0 never lies.
            ctx.lu
                .device
                .flush()
                .map_err(|e| Sense::from_block_error(&e, true))?;
        }
        let mut st = ctx.lu.state.lock();
        st.mode = new;
        st.ua.push_all(MODE_PARAMETERS_CHANGED, Some(ctx.nexus.id));
    }
    Ok(Reply::data_out(len))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    fn sense6(page: u8, pc: u8, alloc: u8, dbd: bool) -> Vec<u8> {
        vec![
            0x1A,
            if dbd { 0x08 } else { 0 },
            (pc << 6) | page,
            0,
            alloc,
            0,
        ]
    }

    #[test]
    fn all_pages_and_residual_semantics() {
        let t = Harness::new(64, true);
        let o = t.run(&sense6(0x3F, 0, 255, false));
        assert_eq!(o.status, 0);
        let d = &o.data_in;
        assert_eq!(d[0] as usize, d.len() - 1);
        assert_eq!(d[2] & 0x10, 0x10, "DPOFUA");
        assert_eq!(d[3], 8);
        assert_eq!(d.len(), 4 + 8 + 20 + 12 + 12);
        let o = t.run(&sense6(0x3F, 0, 4, false));
        assert_eq!((o.data_in.len(), o.transfer_len), (4, 4));
        let o = t.run(&sense6(0x3F, 3, 255, false));
        assert_sense(&o, 5, 0x39, 0);
        let o = t.run(&sense6(0x01, 0, 255, false));
        assert_sense(&o, 5, 0x24, 0);
    }

    #[test]
    fn d_sense_switches_sense_format_and_raises_ua_elsewhere() {
        let t = Harness::new(64, true);
        let other = t.nexus(2);
        t.run_as(&other, &[0, 0, 0, 0, 0, 0]);
        let o = t.run(&sense6(0x0A, 0, 255, true));
        let mut page = o.data_in[4..].to_vec();
        assert_eq!(page[0], 0x0A);
        page[2] |= 0x04;
        let mut p = vec![0u8, 0, 0, 0];
        p.extend_from_slice(&page);
        let o = t.run_out(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, p.len() as u32);
        assert_eq!(o.status, 0, "{:?}", o.sense);
        let o = t.run_edtl(&[0x28, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0], 512);
        assert_eq!(o.sense.as_ref().unwrap()[0], 0x72);
        // The other nexus sees MODE PARAMETERS CHANGED once, in descriptor format.
        let o = t.run_as(&other, &[0, 0, 0, 0, 0, 0]);
        let s = o.sense.unwrap();
        assert_eq!(&s[..4], &[0x72, 6, 0x2A, 0x01]);
        let o = t.run_as(&other, &[0, 0, 0, 0, 0, 0]);
        assert_eq!(o.status, 0);
    }

    #[test]
    fn swp_and_wce() {
        let t = Harness::new(64, true);
        let o = t.run(&sense6(0x0A, 1, 255, true));
        assert_eq!(o.data_in[4 + 4] & 0x08, 0x08, "SWP changeable");
        let mut page = t.run(&sense6(0x0A, 0, 255, true)).data_in[4..].to_vec();
        page[4] |= 0x08;
        let mut p = vec![0u8, 0, 0, 0];
        p.extend_from_slice(&page);
        let o = t.run_out(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, p.len() as u32);
        assert_eq!(o.status, 0);
        let o = t.run_out(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0; 512], 512);
        assert_sense(&o, 7, 0x27, 0);
        assert_eq!(t.run(&sense6(0x3F, 0, 255, true)).data_in[2] & 0x80, 0x80);
        // Caching page: WCE off flushes and then every write is FUA.
        let mut page = t.run(&sense6(0x08, 0, 255, true)).data_in[4..].to_vec();
        assert_eq!(page[2] & 0x04, 0x04);
        page[2] &= !0x04;
        let mut p = vec![0u8, 0, 0, 0];
        p.extend_from_slice(&page);
        let before = t.dev.flushes();
        let o = t.run_out(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, p.len() as u32);
        assert_eq!(o.status, 0);
        assert!(t.dev.flushes() > before);
        // A non-changeable bit is refused with a pointer into the list.
        let mut page = t.run(&sense6(0x08, 0, 255, true)).data_in[4..].to_vec();
        page[2] |= 0x01; // RCD
        let mut p = vec![0u8, 0, 0, 0];
        p.extend_from_slice(&page);
        let o = t.run_out(&[0x15, 0x10, 0, 0, p.len() as u8, 0], &p, p.len() as u32);
        assert_sense(&o, 5, 0x26, 0);
        let s = o.sense.unwrap();
        assert_eq!(&s[15..18], &[0x88, 0, 6]);
    }

    #[test]
    fn mode_sense_10_long_lba() {
        let t = Harness::new(64, true);
        let o = t.run(&[0x5A, 0x10, 0x3F, 0, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(o.status, 0);
        let d = &o.data_in;
        assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
        assert_eq!(d[4] & 1, 1);
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), 16);
        assert_eq!(&d[8..16], &64u64.to_be_bytes());
    }
}
