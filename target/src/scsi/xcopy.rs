//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): the
//! copy manager of a logical unit.
//!
//! Supported: identification CSCD descriptors (E4h) naming a logical unit
//! of the copy domain by its NAA or T10 vendor ID designator, and
//! block-to-block segment descriptors (02h). RECEIVE COPY RESULTS answers
//! COPY STATUS for a held list identifier and OPERATING PARAMETERS. Copies
//! run to completion inside the command (no background copies), so a
//! status is only ever "completed".
//!
//! [`parse`] is pure and never panics: every invalid field gets the sense
//! SPC-4 names, with the field pointer into the parameter list.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::block_copy::{admit_copy, copy_blocks, Moved};
use super::copy_domain::Designator;
use super::sense::Sense;
use super::{Ctx, LogicalUnit, Reply, ScsiResult};

/// CSCD descriptors one EXTENDED COPY may carry.
pub const MAX_CSCD_DESCRIPTORS: u16 = 8;
/// Segment descriptors one EXTENDED COPY may carry.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// Largest CSCD + segment descriptor list, in bytes.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 4096;
/// Largest segment, in bytes (a block-to-block segment has a 16-bit count).
pub const MAX_SEGMENT_BYTES: u32 = 256 << 20;
/// Held copy results kept per I_T nexus (the oldest go first).
pub const MAX_HELD_PER_NEXUS: usize = 64;

/// Parameter list header length.
const HEADER_LEN: usize = 16;
/// Identification CSCD descriptor type code.
pub const CSCD_IDENTIFICATION: u8 = 0xE4;
/// Block device to block device segment descriptor type code.
pub const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;

/// Sense key COPY ABORTED.
const COPY_ABORTED: u8 = 0x0A;

/// 5/26/06 TOO MANY TARGET DESCRIPTORS.
pub fn too_many_cscd() -> Sense {
    Sense::new(0x05, 0x26, 0x06)
}
/// 5/26/07 UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
pub fn unsupported_cscd(byte: u16) -> Sense {
    with_param_pointer(Sense::new(0x05, 0x26, 0x07), byte, Some(7))
}
/// 5/26/08 TOO MANY SEGMENT DESCRIPTORS.
pub fn too_many_segments() -> Sense {
    Sense::new(0x05, 0x26, 0x08)
}
/// 5/26/09 UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
pub fn unsupported_segment(byte: u16) -> Sense {
    with_param_pointer(Sense::new(0x05, 0x26, 0x09), byte, Some(7))
}
/// A/0D/02 COPY TARGET DEVICE NOT REACHABLE.
pub fn target_not_reachable() -> Sense {
    Sense::new(COPY_ABORTED, 0x0D, 0x02)
}
/// 5/00/16 OPERATION IN PROGRESS (a list identifier already in use).
pub fn operation_in_progress() -> Sense {
    Sense::new(0x05, 0x00, 0x16)
}

fn with_param_pointer(mut s: Sense, byte: u16, bit: Option<u8>) -> Sense {
    s.field = Sense::invalid_param_field(byte, bit).field;
    s
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

/// What the copy manager keeps of a list identifier (LIST ID USAGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: hold status (and data) for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: hold status until it has been returned once.
    HoldStatusOnce,
    /// 11b: nothing held; the list identifier is not used (must be 0).
    NoList,
}

/// One copy target: an identification CSCD descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTarget {
    pub designator: Designator,
    /// DISK BLOCK LENGTH.
    pub block_size: u32,
}

/// One block-to-block segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src: u16,
    pub dst: u16,
    /// DC: the count is in destination blocks (equal here: sizes must match).
    pub dc: bool,
    pub blocks: u16,
    pub src_lba: u64,
    pub dst_lba: u64,
}

/// A decoded EXTENDED COPY (LID1) parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyList {
    pub list_id: u8,
    pub usage: ListIdUsage,
    pub targets: Vec<CopyTarget>,
    pub segments: Vec<Segment>,
}

/// Decodes an EXTENDED COPY (LID1) parameter list. `param_len` is the
/// CDB's PARAMETER LIST LENGTH and `data` the Data-Out received. `Ok(None)`
/// for a zero-length list (nothing to do, SPC-4 6.4.1).
pub fn parse(param_len: u32, data: &[u8]) -> Result<Option<CopyList>, Sense> {
    if param_len == 0 {
        return Ok(None);
    }
    let avail = (param_len as usize).min(data.len());
    let data = &data[..avail];
    if data.len() < HEADER_LEN {
        return Err(Sense::param_list_length());
    }
    let list_id = data[0];
    let usage = match (data[1] >> 3) & 0x03 {
        0b00 => ListIdUsage::Hold,
        0b10 => ListIdUsage::HoldStatusOnce,
        0b11 => {
            if list_id != 0 {
                return Err(Sense::invalid_param_field(0, Some(7)));
            }
            ListIdUsage::NoList
        }
        _ => return Err(Sense::invalid_param_field(1, Some(4))),
    };
    let cscd_len = be16(data, 2) as usize;
    let seg_len = be32(data, 8) as usize;
    let inline_len = be32(data, 12) as usize;
    let total = (cscd_len as u64) + (seg_len as u64) + (inline_len as u64);
    if total > MAX_DESCRIPTOR_LIST_LENGTH as u64 {
        return Err(Sense::param_list_length());
    }
    if HEADER_LEN as u64 + total > data.len() as u64 {
        return Err(Sense::param_list_length());
    }
    if inline_len != 0 {
        // No segment type we implement uses inline data.
        return Err(Sense::invalid_param_field(12, Some(7)));
    }
    let cscd_area = &data[HEADER_LEN..HEADER_LEN + cscd_len];
    let seg_start = HEADER_LEN + cscd_len;
    let seg_area = &data[seg_start..seg_start + seg_len];

    let mut targets = Vec::new();
    let mut at = 0usize;
    while at < cscd_area.len() {
        let abs = (HEADER_LEN + at) as u16;
        if targets.len() >= MAX_CSCD_DESCRIPTORS as usize {
            return Err(too_many_cscd());
        }
        let code = cscd_area[at];
        if code != CSCD_IDENTIFICATION {
            return Err(unsupported_cscd(abs));
        }
        let Some(d) = cscd_area.get(at..at + 32) else {
            return Err(Sense::param_list_length());
        };
        targets.push(parse_identification(d, abs)?);
        at += 32;
    }

    let mut segments = Vec::new();
    let mut at = 0usize;
    while at < seg_area.len() {
        let abs = (seg_start + at) as u16;
        if segments.len() >= MAX_SEGMENT_DESCRIPTORS as usize {
            return Err(too_many_segments());
        }
        let code = seg_area[at];
        if code != SEGMENT_BLOCK_TO_BLOCK {
            return Err(unsupported_segment(abs));
        }
        let Some(head) = seg_area.get(at..at + 4) else {
            return Err(Sense::param_list_length());
        };
        let desc_len = be16(head, 2) as usize;
        if desc_len != 0x18 {
            return Err(Sense::invalid_param_field(abs + 2, Some(7)));
        }
        let Some(d) = seg_area.get(at..at + 4 + desc_len) else {
            return Err(Sense::param_list_length());
        };
        if d[1] & 0x01 != 0 {
            // CAT: residual handling for stream devices only.
            return Err(Sense::invalid_param_field(abs + 1, Some(0)));
        }
        segments.push(Segment {
            dc: d[1] & 0x02 != 0,
            src: be16(d, 4),
            dst: be16(d, 6),
            blocks: be16(d, 10),
            src_lba: be64(d, 12),
            dst_lba: be64(d, 20),
        });
        at += 4 + desc_len;
    }
    Ok(Some(CopyList {
        list_id,
        usage,
        targets,
        segments,
    }))
}

/// An identification CSCD descriptor (E4h) at parameter list offset `abs`.
fn parse_identification(d: &[u8], abs: u16) -> Result<CopyTarget, Sense> {
    // Byte 1: LU ID TYPE (bits 7-6) and NUL (bit 5) are obsolete in SPC-4
    // and ignored, as libiscsi expects of an SPC-4 copy manager.
    if d[1] & 0x1F != 0 {
        // Only direct access block devices can be copy targets here.
        return Err(Sense::invalid_param_field(abs + 1, Some(4)));
    }
    let code_set = d[4] & 0x0F;
    let association = (d[5] >> 4) & 0x03;
    let kind = d[5] & 0x0F;
    let len = d[7] as usize;
    if association != 0 {
        return Err(Sense::invalid_param_field(abs + 5, Some(5)));
    }
    if len > 20 {
        return Err(Sense::invalid_param_field(abs + 7, Some(7)));
    }
    let block_size = u32::from_be_bytes([0, d[29], d[30], d[31]]);
    if d[28] & 0x04 != 0 {
        // PAD: only for stream devices.
        return Err(Sense::invalid_param_field(abs + 28, Some(2)));
    }
    Ok(CopyTarget {
        designator: Designator {
            code_set,
            kind,
            value: d[8..8 + len].to_vec(),
        },
        block_size,
    })
}

/// Status of a finished copy operation, held for RECEIVE COPY RESULTS and
/// RECEIVE ROD TOKEN INFORMATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldResult {
    /// The service action that ran (00h EXTENDED COPY LID1, 10h POPULATE
    /// TOKEN, 11h WRITE USING TOKEN).
    pub service_action: u8,
    /// Completed without errors.
    pub ok: bool,
    pub segments_processed: u16,
    /// Blocks (for tokens) or bytes (LID1) transferred.
    pub transfer_count: u64,
    /// Sense data of a failed operation.
    pub sense: Option<Sense>,
    /// The ROD token a POPULATE TOKEN created.
    pub token: Option<Vec<u8>>,
    /// Returned at most once (LIST ID USAGE 10b).
    pub once: bool,
}

/// Held copy results and list identifiers in use, per I_T nexus.
#[derive(Debug, Default)]
pub struct CopyResults {
    inner: Mutex<ResultsInner>,
}

#[derive(Debug, Default)]
struct ResultsInner {
    held: HashMap<u64, VecDeque<(u32, HeldResult)>>,
    running: HashMap<u64, Vec<u32>>,
}

/// Marks a list identifier in use for the life of a copy.
pub struct Running<'a> {
    results: &'a CopyResults,
    nexus: u64,
    list_id: u32,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut g = self.results.inner.lock();
        if let Some(v) = g.running.get_mut(&self.nexus) {
            v.retain(|&id| id != self.list_id);
            if v.is_empty() {
                g.running.remove(&self.nexus);
            }
        }
    }
}

impl CopyResults {
    /// Claims `list_id` for a copy of `nexus`, or OPERATION IN PROGRESS.
    pub fn start(&self, nexus: u64, list_id: u32) -> Result<Running<'_>, Sense> {
        let mut g = self.inner.lock();
        let v = g.running.entry(nexus).or_default();
        if v.contains(&list_id) {
            return Err(operation_in_progress());
        }
        v.push(list_id);
        Ok(Running {
            results: self,
            nexus,
            list_id,
        })
    }

    /// Holds the result of `list_id` (replacing an older one).
    pub fn hold(&self, nexus: u64, list_id: u32, result: HeldResult) {
        let mut g = self.inner.lock();
        let q = g.held.entry(nexus).or_default();
        q.retain(|(id, _)| *id != list_id);
        if q.len() >= MAX_HELD_PER_NEXUS {
            q.pop_front();
        }
        q.push_back((list_id, result));
    }

    /// The held result of `list_id` from one of `service_actions`; one
    /// held "once" is forgotten as it is returned.
    pub fn take(&self, nexus: u64, list_id: u32, service_actions: &[u8]) -> Option<HeldResult> {
        let mut g = self.inner.lock();
        let q = g.held.get_mut(&nexus)?;
        let i = q
            .iter()
            .position(|(id, r)| *id == list_id && service_actions.contains(&r.service_action))?;
        if q[i].1.once {
            q.remove(i).map(|(_, r)| r)
        } else {
            Some(q[i].1.clone())
        }
    }

    /// The I_T nexus is gone: its held results go with it.
    pub fn nexus_lost(&self, nexus: u64) {
        self.inner.lock().held.remove(&nexus);
    }
}

/// EXTENDED COPY (LID1).
pub(crate) fn extended_copy(ctx: &Ctx<'_>, len: u32) -> ScsiResult {
    let Some(list) = parse(len, ctx.req.data_out)? else {
        return Ok(Reply::data_out(0));
    };
    let results = &ctx.lu.copy_results;
    let list_id = list.list_id as u32;
    let _running = match list.usage {
        ListIdUsage::NoList => None,
        _ => Some(results.start(ctx.nexus.id, list_id)?),
    };
    let mut bytes = 0u64;
    let mut done = 0u16;
    let mut outcome = Ok(());
    for seg in &list.segments {
        match run_segment(ctx, &list, seg) {
            Ok(moved) => {
                bytes += moved.blocks() * moved.block_size as u64;
                done += 1;
            }
            Err(s) => {
                outcome = Err(s);
                break;
            }
        }
    }
    if list.usage != ListIdUsage::NoList {
        results.hold(
            ctx.nexus.id,
            list_id,
            HeldResult {
                service_action: 0x00,
                ok: outcome.is_ok(),
                segments_processed: done,
                transfer_count: bytes,
                sense: outcome.err(),
                token: None,
                once: list.usage == ListIdUsage::HoldStatusOnce,
            },
        );
    }
    outcome?;
    Ok(Reply::data_out(len))
}

/// Resolves a segment's CSCD descriptor index to a logical unit.
fn resolve(
    ctx: &Ctx<'_>,
    list: &CopyList,
    index: u16,
) -> Result<std::sync::Arc<LogicalUnit>, Sense> {
    let t = list
        .targets
        .get(index as usize)
        .ok_or_else(target_not_reachable)?;
    let lu = ctx
        .map
        .copy_domain()
        .find(&t.designator, ctx.nexus)
        .ok_or_else(target_not_reachable)?;
    if t.block_size != lu.device.geometry().block_size {
        return Err(target_not_reachable());
    }
    Ok(lu)
}

fn run_segment(ctx: &Ctx<'_>, list: &CopyList, seg: &Segment) -> Result<Moved, Sense> {
    let src = resolve(ctx, list, seg.src)?;
    let dst = resolve(ctx, list, seg.dst)?;
    let blocks = seg.blocks as u64;
    let sg = src.device.geometry();
    let dg = dst.device.geometry();
    if sg.check_range(seg.src_lba, blocks).is_err() || dg.check_range(seg.dst_lba, blocks).is_err()
    {
        return Err(target_not_reachable());
    }
    if sg.block_size != dg.block_size {
        // Block-to-block copies between different block sizes (DC) are
        // not implemented: the destination cannot take the source's blocks.
        return Err(target_not_reachable());
    }
    if dst.write_protected() {
        return Err(Sense::write_protected());
    }
    admit_copy(&src, ctx.nexus, false)?;
    admit_copy(&dst, ctx.nexus, true)?;
    copy_blocks(&src, seg.src_lba, &dst, seg.dst_lba, blocks)
}

/// RECEIVE COPY RESULTS, COPY STATUS (LID1).
pub(crate) fn copy_status(ctx: &Ctx<'_>, list_id: u8, alloc: u32) -> ScsiResult {
    let Some(r) = ctx
        .lu
        .copy_results
        .take(ctx.nexus.id, list_id as u32, &[0x00])
    else {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    };
    let mut d = vec![0u8; 12];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    d[4] = if r.ok { 0x01 } else { 0x02 };
    d[5..7].copy_from_slice(&r.segments_processed.to_be_bytes());
    let (units, count) = transfer_units(r.transfer_count);
    d[7] = units;
    d[8..12].copy_from_slice(&count.to_be_bytes());
    Ok(Reply::alloc(d, alloc))
}

/// A byte count as TRANSFER COUNT UNITS (powers of 1024) and a 32-bit count.
fn transfer_units(bytes: u64) -> (u8, u32) {
    let mut units = 0u8;
    let mut v = bytes;
    while v > u32::MAX as u64 {
        v >>= 10;
        units += 1;
    }
    (units, v as u32)
}

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS.
pub(crate) fn operating_parameters(alloc: u32) -> ScsiResult {
    let codes = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b (no list identifier) is supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&MAX_SEGMENT_BYTES.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH 0, HELD DATA LIMIT 0, no stream devices.
    d[34..36].copy_from_slice(&1u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
    d[36] = 1; // MAXIMUM CONCURRENT COPIES
    d[37] = 0; // DATA SEGMENT GRANULARITY: one byte (2^0)
    d[43] = codes.len() as u8;
    d.extend_from_slice(&codes);
    let avail = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(list_id: u8, usage: u8, cscd: u16, seg: u32) -> Vec<u8> {
        let mut h = vec![0u8; 16];
        h[0] = list_id;
        h[1] = usage << 3;
        h[2..4].copy_from_slice(&cscd.to_be_bytes());
        h[8..12].copy_from_slice(&seg.to_be_bytes());
        h
    }

    fn e4(naa: &[u8; 16], bs: u32) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 16;
        d[8..24].copy_from_slice(naa);
        d[29..32].copy_from_slice(&bs.to_be_bytes()[1..]);
        d
    }

    fn b2b(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&src_lba.to_be_bytes());
        d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
        d
    }

    fn list(targets: usize, segs: usize) -> Vec<u8> {
        let mut v = header(1, 0, 32 * targets as u16, 28 * segs as u32);
        for _ in 0..targets {
            v.extend(e4(&[0x60; 16], 512));
        }
        for _ in 0..segs {
            v.extend(b2b(0, 0, 8, 0, 100));
        }
        v
    }

    fn asc(r: Result<Option<CopyList>, Sense>) -> (u8, u8, u8) {
        let s = r.unwrap_err();
        (s.key, s.asc, s.ascq)
    }

    #[test]
    fn decodes_one_segment() {
        let v = list(1, 1);
        let l = parse(v.len() as u32, &v).unwrap().unwrap();
        assert_eq!(l.list_id, 1);
        assert_eq!(l.targets[0].block_size, 512);
        assert_eq!(l.targets[0].designator.value, vec![0x60; 16]);
        assert_eq!(l.segments[0].blocks, 8);
        assert_eq!(l.segments[0].dst_lba, 100);
        assert_eq!(parse(0, &v).unwrap(), None);
    }

    #[test]
    fn truncated_lists_are_length_errors() {
        let v = list(1, 1);
        assert_eq!(asc(parse(16 + 31, &v)), (5, 0x1A, 0));
        assert_eq!(asc(parse(v.len() as u32 - 1, &v)), (5, 0x1A, 0));
        assert_eq!(asc(parse(8, &v)), (5, 0x1A, 0));
        // The CDB says more than the Data-Out holds.
        assert_eq!(asc(parse(v.len() as u32, &v[..40])), (5, 0x1A, 0));
    }

    #[test]
    fn descriptor_limits() {
        let v = list(MAX_CSCD_DESCRIPTORS as usize + 1, 1);
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x26, 0x06));
        let v = list(1, MAX_SEGMENT_DESCRIPTORS as usize + 1);
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x26, 0x08));
        let v = list(1, 200);
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x1A, 0));
    }

    #[test]
    fn unsupported_types_point_at_the_descriptor() {
        let mut v = list(1, 1);
        v[16] = 0xE0;
        let s = parse(v.len() as u32, &v).unwrap_err();
        assert_eq!((s.asc, s.ascq), (0x26, 0x07));
        assert_eq!(s.field.unwrap().byte, 16);
        let mut v = list(1, 1);
        v[48] = 0x03;
        let s = parse(v.len() as u32, &v).unwrap_err();
        assert_eq!((s.asc, s.ascq), (0x26, 0x09));
        assert_eq!(s.field.unwrap().byte, 48);
    }

    #[test]
    fn invalid_fields() {
        let mut v = list(1, 1);
        v[17] = 0xA0; // LU ID TYPE 10b and NUL: obsolete, ignored
        assert!(parse(v.len() as u32, &v).is_ok());
        v[17] = 0x05; // a tape drive cannot be a block copy target
        let s = parse(v.len() as u32, &v).unwrap_err();
        assert_eq!((s.key, s.asc, s.field.unwrap().byte), (5, 0x26, 17));
        let mut v = list(1, 1);
        v[1] = 0x01 << 3; // LIST ID USAGE 01b is reserved
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x26, 0));
        let mut v = list(1, 1);
        v[1] = 0x03 << 3; // no list, but a list identifier
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x26, 0));
        let mut v = list(1, 1);
        v[48 + 3] = 0x14; // wrong segment descriptor length
        assert_eq!(asc(parse(v.len() as u32, &v)), (5, 0x26, 0));
    }

    #[test]
    fn held_results_per_nexus() {
        let r = CopyResults::default();
        let held = HeldResult {
            service_action: 0,
            ok: true,
            segments_processed: 1,
            transfer_count: 4096,
            sense: None,
            token: None,
            once: true,
        };
        r.hold(1, 5, held.clone());
        assert!(r.take(2, 5, &[0]).is_none());
        assert!(r.take(1, 5, &[0x10]).is_none());
        assert_eq!(r.take(1, 5, &[0]), Some(held.clone()));
        assert!(r.take(1, 5, &[0]).is_none());
        r.hold(
            1,
            6,
            HeldResult {
                once: false,
                ..held
            },
        );
        assert!(r.take(1, 6, &[0]).is_some());
        assert!(r.take(1, 6, &[0]).is_some());
        r.nexus_lost(1);
        assert!(r.take(1, 6, &[0]).is_none());
        let running = r.start(1, 9).unwrap();
        assert_eq!(r.start(1, 9).err(), Some(operation_in_progress()));
        drop(running);
        assert!(r.start(1, 9).is_ok());
    }
}
