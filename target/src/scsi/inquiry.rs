//! INQUIRY (SPC-4 6.6): standard data and the VPD pages 00h, 80h, 83h, 8Fh
//! (built by `third_party_vpd`), B0h, B1h and B2h.

use super::atomic::{max_atomic_blocks, max_compare_and_write_blocks};
use super::sanitize;
use super::sense::Sense;
use super::{
    Ctx, Reply, ScsiResult, MAX_TRANSFER_BYTES, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS, OPTIMAL_TRANSFER_BYTES,
};

/// VPD pages we serve, ascending.
pub const VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];

/// Version descriptors: SAM-5, iSCSI (RFC 7143 family), SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];

pub fn inquiry(ctx: &Ctx<'_>, evpd: bool, page: u8, alloc: u32) -> ScsiResult {
    if !evpd {
        return Ok(Reply::alloc(standard(ctx), alloc));
    }
    let data = match page {
        0x00 => vpd(0x00, VPD_PAGES.to_vec()),
        0x80 => vpd(0x80, ascii(&ctx.lu.identity.serial)),
        0x83 => vpd(0x83, device_identification(ctx)),
        0x8F => vpd(0x8F, super::third_party_vpd::page(ctx)),
        0xB0 => vpd(0xB0, block_limits(ctx)),
        0xB1 => vpd(0xB1, characteristics(ctx)),
        0xB2 => vpd(0xB2, provisioning(ctx)),
        _ => return Err(Sense::invalid_cdb_field(2, Some(7))),
    };
    Ok(Reply::alloc(data, alloc))
}

/// Space-padded fixed-width ASCII field (printable characters only).
fn padded(s: &str, width: usize) -> Vec<u8> {
    let mut v: Vec<u8> = ascii(s).into_iter().take(width).collect();
    v.resize(width, b' ');
    v
}

fn ascii(s: &str) -> Vec<u8> {
    s.bytes()
        .map(|b| if (0x20..=0x7E).contains(&b) { b } else { b'_' })
        .collect()
}

fn standard(ctx: &Ctx<'_>) -> Vec<u8> {
    let id = &ctx.lu.identity;
    let mut d = vec![0u8; 96];
    d[0] = 0x00; // connected, direct access block device
    if ctx.lu.options.removable {
        d[1] = 0x80;
    }
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, response data format 2
    d[4] = (d.len() - 5) as u8;
    // TPGS 01b: implicit ALUA only; 3PC: third-party copy (EXTENDED COPY,
    // ROD tokens); no SCCS, ACC, PROTECT.
    d[5] = 0x10 | 0x08;
    d[6] = 0x00;
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(&padded(&id.vendor, 8));
    d[16..32].copy_from_slice(&padded(&id.product, 16));
    d[32..36].copy_from_slice(&padded(&id.revision, 4));
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// A VPD page: 4-byte header with a 2-byte page length.
fn vpd(page: u8, body: Vec<u8>) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + body.len());
    d.push(0x00);
    d.push(page);
    d.extend_from_slice(&(body.len().min(0xFFFF) as u16).to_be_bytes());
    d.extend_from_slice(&body);
    d
}

fn designator(out: &mut Vec<u8>, b0: u8, b1: u8, value: &[u8]) {
    out.push(b0);
    out.push(b1);
    out.push(0);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// SCSI name string: NUL-terminated, padded to a multiple of 4, at most
/// 256 bytes.
fn name_string(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(251).collect();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// The T10 vendor ID based designator of a logical unit (VPD 83h).
pub(crate) fn t10_vendor_designator(id: &super::LuIdentity) -> Vec<u8> {
    let mut t10 = padded(&id.vendor, 8);
    t10.extend_from_slice(&ascii(&id.serial));
    t10.truncate(252);
    t10
}

fn device_identification(ctx: &Ctx<'_>) -> Vec<u8> {
    let id = &ctx.lu.identity;
    let port = &ctx.nexus.target_port;
    let mut d = Vec::new();
    // Logical unit: NAA IEEE Registered Extended (binary, type 3).
    designator(&mut d, 0x01, 0x03, &id.naa);
    // Logical unit: T10 vendor ID based (ASCII, type 1).
    designator(&mut d, 0x02, 0x01, &t10_vendor_designator(id));
    // Target port: relative target port (iSCSI, binary, PIV, assoc 1, type 4).
    let mut rel = [0u8; 4];
    rel[2..].copy_from_slice(&port.relative_port_id.to_be_bytes());
    designator(&mut d, 0x51, 0x94, &rel);
    // Target port: target port group (type 5).
    let mut tpg = [0u8; 4];
    tpg[2..].copy_from_slice(&port.tpgt.to_be_bytes());
    designator(&mut d, 0x51, 0x95, &tpg);
    // Target port: SCSI name string "<iqn>,t,0x<tpgt>" (UTF-8, type 8).
    let port_name = format!("{},t,0x{:04x}", port.target_name, port.tpgt);
    designator(&mut d, 0x53, 0x98, &name_string(&port_name));
    // Target device: SCSI name string of the target (assoc 2, type 8).
    designator(&mut d, 0x53, 0xA8, &name_string(&port.target_name));
    d
}

fn block_limits(ctx: &Ctx<'_>) -> Vec<u8> {
    let g = ctx.lu.device.geometry();
    let bs = g.block_size.max(1) as u64;
    let mut d = vec![0u8; 0x3C];
    // Offsets below are page offsets minus the 4-byte header.
    d[0] = 0x00; // WSNZ 0: WRITE SAME of 0 blocks runs to the last block
    d[1] = max_compare_and_write_blocks(g.block_size);
    let gran = (4096 / bs).max(1) as u16;
    d[2..4].copy_from_slice(&gran.to_be_bytes());
    d[4..8].copy_from_slice(&((MAX_TRANSFER_BYTES / bs) as u32).to_be_bytes());
    d[8..12].copy_from_slice(&((OPTIMAL_TRANSFER_BYTES / bs) as u32).to_be_bytes());
    if g.thin {
        d[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
        d[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        d[24..28].copy_from_slice(&g.unmap_granularity_blocks.max(1).to_be_bytes());
        d[28..32].copy_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID, alignment 0
    }
    d[32..40].copy_from_slice(&MAX_WRITE_SAME_BLOCKS.to_be_bytes());
    // WRITE ATOMIC (16): any alignment and granularity, no boundaries.
    d[40..44].copy_from_slice(&max_atomic_blocks(g.block_size).to_be_bytes());
    d
}

fn characteristics(ctx: &Ctx<'_>) -> Vec<u8> {
    let mut d = vec![0u8; 0x3C];
    // Non-rotating medium.
    d[0..2].copy_from_slice(&1u16.to_be_bytes());
    // WABEREQ / WACEREQ 01b: after a block or cryptographic erase, reads
    // succeed (and return zeros). Zero when the method is not offered.
    if sanitize::offered(ctx, sanitize::sa::BLOCK_ERASE) {
        d[3] |= 0x40;
    }
    if sanitize::offered(ctx, sanitize::sa::CRYPTO_ERASE) {
        d[3] |= 0x10;
    }
    d
}

fn provisioning(ctx: &Ctx<'_>) -> Vec<u8> {
    let g = ctx.lu.device.geometry();
    let mut d = vec![0u8; 4];
    if g.thin {
        // LBPU, LBPWS, LBPWS10, LBPRZ (unmapped blocks read as zeros).
        d[1] = 0x80 | 0x40 | 0x20 | 0x04;
        d[2] = 0x02; // thin provisioned
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;

    #[test]
    fn standard_inquiry() {
        let t = Harness::new(1024, true);
        let o = t.run(&[0x12, 0, 0, 0, 255, 0]);
        assert_eq!(o.status, 0);
        let d = &o.data_in;
        assert_eq!(d.len(), 96);
        assert_eq!(d[0], 0);
        assert_eq!(d[2], 6);
        assert_eq!(d[3] & 0x0F, 2);
        assert_eq!(d[4] as usize, d.len() - 5);
        assert_eq!(&d[8..16], b"IRONLUN ");
        assert_eq!(&d[58..60], &[0x00, 0xA0]);
        assert_eq!(o.transfer_len, 96);
        // Allocation length cuts without overflow.
        let o = t.run(&[0x12, 0, 0, 0, 5, 0]);
        assert_eq!(o.data_in.len(), 5);
        assert_eq!(o.transfer_len, 5);
        let o = t.run(&[0x12, 0, 0, 0, 0, 0]);
        assert_eq!(o.status, 0);
        assert_eq!(o.transfer_len, 0);
    }

    #[test]
    fn evpd_zero_with_page_is_invalid() {
        let t = Harness::new(1024, true);
        let o = t.run(&[0x12, 0, 1, 1, 0, 0]);
        assert_sense(&o, 5, 0x24, 0);
    }

    #[test]
    fn vpd_pages() {
        let t = Harness::new(1024, true);
        let o = t.run(&[0x12, 1, 0x00, 0, 255, 0]);
        assert_eq!(
            &o.data_in[..],
            &[0, 0, 0, 7, 0, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]
        );
        for p in [0x80u8, 0x83, 0x8F, 0xB0, 0xB1, 0xB2] {
            let o = t.run(&[0x12, 1, p, 0x02, 0, 0]);
            assert_eq!(o.status, 0, "page {p:x}");
            let len = u16::from_be_bytes([o.data_in[2], o.data_in[3]]) as usize;
            assert_eq!(len + 4, o.data_in.len(), "page {p:x}");
        }
        let o = t.run(&[0x12, 1, 0xB0, 0, 64, 0]);
        assert_eq!(o.data_in[3], 0x3C);
        let max_unmap = u32::from_be_bytes(o.data_in[20..24].try_into().unwrap());
        assert!(max_unmap > 0);
        let o = t.run(&[0x12, 1, 0xB2, 0, 64, 0]);
        assert_eq!(o.data_in[5] & 0x80, 0x80);
        let o = t.run(&[0x12, 1, 0x83, 0, 255, 0]);
        assert_eq!(&o.data_in[4..8], &[0x01, 0x03, 0x00, 0x10]);
        assert_eq!(&o.data_in[8..24], &NAA);
        let o = t.run(&[0x12, 1, 0x42, 0, 255, 0]);
        assert_sense(&o, 5, 0x24, 0);
    }

    #[test]
    fn thick_device_has_no_unmap_limits() {
        let t = Harness::new(1024, false);
        let o = t.run(&[0x12, 1, 0xB0, 0, 64, 0]);
        assert_eq!(&o.data_in[20..28], &[0; 8]);
        let o = t.run(&[0x12, 1, 0xB2, 0, 64, 0]);
        assert_eq!(o.data_in[5], 0);
    }
}
