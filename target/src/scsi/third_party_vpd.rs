//! VPD page 8Fh, Third-party Copy (SPC-4 7.8.17, SBC-3 6.6.7): what the
//! copy manager implements and its limits, one descriptor per kind.

use super::rod_token::{
    DEFAULT_INACTIVITY_SECS, MAX_INACTIVITY_SECS, MAX_RANGE_DESCRIPTORS, MAX_TOKEN_BYTES,
    ROD_ACCESS_UPON_REFERENCE, ROD_BLOCK_ZERO,
};
use super::xcopy::{
    CSCD_IDENTIFICATION, MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_BYTES,
    MAX_SEGMENT_DESCRIPTORS, SEGMENT_BLOCK_TO_BLOCK,
};
use super::Ctx;

/// Third-party copy commands and their service actions.
const COMMANDS: [(u8, &[u8]); 2] = [(0x83, &[0x00, 0x10, 0x11]), (0x84, &[0x00, 0x03, 0x07])];

/// Appends one descriptor: type, length, body padded to a multiple of 4.
fn descriptor(out: &mut Vec<u8>, kind: u16, mut body: Vec<u8>) {
    while !(body.len() + 4).is_multiple_of(4) {
        body.push(0);
    }
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
}

/// The page body (after the 4-byte VPD header).
pub fn page(ctx: &Ctx<'_>) -> Vec<u8> {
    let bs = ctx.lu.device.geometry().block_size.max(1) as u64;
    let mut d = Vec::new();

    // Block Device ROD Token Limits (SBC-3, type 0000h).
    let mut b = vec![0u8; 32];
    b[6..8].copy_from_slice(&MAX_RANGE_DESCRIPTORS.to_be_bytes());
    b[8..12].copy_from_slice(&MAX_INACTIVITY_SECS.to_be_bytes());
    b[12..16].copy_from_slice(&DEFAULT_INACTIVITY_SECS.to_be_bytes());
    b[16..24].copy_from_slice(&(MAX_TOKEN_BYTES / bs).to_be_bytes());
    b[24..32].copy_from_slice(&((8u64 << 20) / bs).to_be_bytes());
    descriptor(&mut d, 0x0000, b);

    // Supported Commands (0001h).
    let mut list = Vec::new();
    for (op, sas) in COMMANDS {
        list.push(op);
        list.push(sas.len() as u8);
        list.extend_from_slice(sas);
    }
    let mut b = vec![list.len() as u8];
    b.extend_from_slice(&list);
    descriptor(&mut d, 0x0001, b);

    // Parameter Data (0004h).
    let mut b = vec![0u8; 28];
    b[2..4].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    b[4..6].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    b[6..10].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH 0.
    descriptor(&mut d, 0x0004, b);

    // Supported Descriptors (0008h).
    let codes = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    let mut b = vec![codes.len() as u8];
    b.extend_from_slice(&codes);
    descriptor(&mut d, 0x0008, b);

    // Supported CSCD Descriptor IDs (000Ch): none (no CSCD IDs in use).
    descriptor(&mut d, 0x000C, vec![0, 0]);

    // ROD Token Features (0106h): no remote tokens; lifetimes; the block
    // device ROD limits.
    let mut b = vec![0u8; 44];
    b[12..16].copy_from_slice(&1u32.to_be_bytes()); // MINIMUM TOKEN LIFETIME
    b[16..20].copy_from_slice(&MAX_INACTIVITY_SECS.to_be_bytes()); // MAXIMUM
    b[20..24].copy_from_slice(&MAX_INACTIVITY_SECS.to_be_bytes()); // INACTIVITY
    let mut dev = vec![0u8; 48];
    dev[0] = 0x00; // direct access block device
    dev[2..4].copy_from_slice(&0x2Cu16.to_be_bytes());
    dev[6..8].copy_from_slice(&1u16.to_be_bytes()); // OPTIMAL BLOCK ROD LENGTH GRANULARITY
    dev[8..16].copy_from_slice(&MAX_TOKEN_BYTES.to_be_bytes()); // MAXIMUM BYTES IN BLOCK ROD
    dev[16..24].copy_from_slice(&(8u64 << 20).to_be_bytes()); // OPTIMAL BYTES IN BLOCK ROD TRANSFER
    dev[24..32].copy_from_slice(&(8u64 << 20).to_be_bytes()); // OPTIMAL BYTES TO TOKEN PER SEGMENT
    dev[32..40].copy_from_slice(&(8u64 << 20).to_be_bytes()); // OPTIMAL BYTES FROM TOKEN PER SEGMENT
    b[42..44].copy_from_slice(&(dev.len() as u16).to_be_bytes());
    b.extend_from_slice(&dev);
    descriptor(&mut d, 0x0106, b);

    // Supported ROD Types (0108h): access upon reference (in and out), the
    // block device zero token (in only).
    let mut b = vec![0u8; 4];
    let mut types = Vec::new();
    for (t, flags) in [(ROD_ACCESS_UPON_REFERENCE, 0x03u8), (ROD_BLOCK_ZERO, 0x02)] {
        let mut e = [0u8; 8];
        e[0..4].copy_from_slice(&t.to_be_bytes());
        e[4] = flags; // TOKEN_IN (bit 1), TOKEN_OUT (bit 0)
        types.extend_from_slice(&e);
    }
    b[2..4].copy_from_slice(&(types.len() as u16).to_be_bytes());
    b.extend_from_slice(&types);
    descriptor(&mut d, 0x0108, b);

    // General Copy Operations (8001h).
    let mut b = vec![0u8; 32];
    b[0..4].copy_from_slice(&1u32.to_be_bytes()); // TOTAL CONCURRENT COPIES
    b[4..8].copy_from_slice(&1u32.to_be_bytes()); // MAXIMUM IDENTIFIED CONCURRENT COPIES
    b[8..12].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    b[12] = 0; // DATA SEGMENT GRANULARITY (log2)
    b[13] = 0; // INLINE DATA GRANULARITY (log2)
    descriptor(&mut d, 0x8001, b);
    d
}
