//! POPULATE TOKEN, WRITE USING TOKEN and RECEIVE ROD TOKEN INFORMATION
//! (SBC-3 5.9, 5.36; SPC-4 6.20): the ROD-token copy Windows ODX uses.
//!
//! A POPULATE TOKEN names ranges of a logical unit and gets back (through
//! RECEIVE ROD TOKEN INFORMATION) a 512-byte ROD token; a WRITE USING
//! TOKEN, possibly from another I_T nexus or to another logical unit of
//! the copy domain, copies what the token represents into its own ranges.
//! The only ROD type created is "access upon reference" (the data are read
//! when the token is used); WRITE USING TOKEN also accepts the block device
//! zero ROD token. Tokens live in the copy domain's [`TokenStore`] until
//! their inactivity timeout runs out, they are deleted (DEL_TKN), or the
//! store is full (the least recently used goes).
//!
//! The parameter-list decoders [`parse_populate`] and [`parse_write`] are
//! pure and never panic.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::block_copy::{admit_copy, copy_blocks};
use super::copy_domain::Designator;
use super::sense::Sense;
use super::xcopy::{too_many_segments, HeldResult};
use super::{Ctx, LogicalUnit, Reply, ScsiResult};

/// ROD token length on the wire.
pub const TOKEN_LEN: usize = 512;
/// ROD TYPE: access upon reference.
pub const ROD_ACCESS_UPON_REFERENCE: u32 = 0x0001_0000;
/// ROD TYPE: block device zero ROD token.
pub const ROD_BLOCK_ZERO: u32 = 0xFFFF_0001;
/// Block device range descriptors one command may carry.
pub const MAX_RANGE_DESCRIPTORS: u16 = 64;
/// Inactivity timeout when the initiator gives none, in seconds.
pub const DEFAULT_INACTIVITY_SECS: u32 = 60;
/// Largest inactivity timeout accepted, in seconds.
pub const MAX_INACTIVITY_SECS: u32 = 3600;
/// Largest number of bytes one token may represent.
pub const MAX_TOKEN_BYTES: u64 = 1 << 30;
/// Tokens alive at once in a copy domain.
pub const MAX_TOKENS: usize = 1024;

/// 5/23/xx INVALID TOKEN OPERATION reasons (SPC-4 table 48).
pub mod token_error {
    pub const CAUSE_NOT_REPORTABLE: u8 = 0x00;
    pub const UNSUPPORTED_TOKEN_TYPE: u8 = 0x01;
    pub const REMOTE_TOKEN_USAGE_NOT_SUPPORTED: u8 = 0x02;
    pub const TOKEN_UNKNOWN: u8 = 0x04;
    pub const TOKEN_CORRUPT: u8 = 0x05;
    pub const TOKEN_REVOKED: u8 = 0x06;
    pub const TOKEN_EXPIRED: u8 = 0x07;
    pub const INVALID_TOKEN_LENGTH: u8 = 0x0A;
}

/// 5/23/`ascq` INVALID TOKEN OPERATION.
pub fn invalid_token(ascq: u8) -> Sense {
    Sense::new(0x05, 0x23, ascq)
}

/// One block device range descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lba: u64,
    pub blocks: u32,
}

/// A decoded POPULATE TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopulateParams {
    /// Inactivity timeout in seconds (0: the default).
    pub inactivity_secs: u32,
    /// ROD TYPE, when RTV is set.
    pub rod_type: Option<u32>,
    pub ranges: Vec<Range>,
}

/// A decoded WRITE USING TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteParams {
    pub delete_token: bool,
    /// OFFSET INTO ROD, in blocks.
    pub offset: u64,
    pub token: Vec<u8>,
    pub ranges: Vec<Range>,
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

/// The parameter data the CDB describes, checked against the data length
/// field at offset 0 (which counts the bytes after itself).
fn list(param_len: u32, data: &[u8], header: usize) -> Result<&[u8], Sense> {
    let avail = (param_len as usize).min(data.len());
    if avail < header {
        return Err(Sense::param_list_length());
    }
    let data = &data[..avail];
    let declared = be16(data, 0) as usize + 2;
    if declared > data.len() || declared < header {
        return Err(Sense::param_list_length());
    }
    Ok(&data[..declared])
}

/// Block device range descriptors: `len` bytes at `at`, whose length field
/// is at `len_at`.
fn ranges(data: &[u8], at: usize, len_at: usize) -> Result<Vec<Range>, Sense> {
    let len = be16(data, len_at) as usize;
    if len == 0 || !len.is_multiple_of(16) {
        return Err(Sense::invalid_param_field(len_at as u16, Some(7)));
    }
    if len / 16 > MAX_RANGE_DESCRIPTORS as usize {
        return Err(too_many_segments());
    }
    let Some(area) = data.get(at..at + len) else {
        return Err(Sense::param_list_length());
    };
    Ok(area
        .chunks_exact(16)
        .map(|d| Range {
            lba: be64(d, 0),
            blocks: be32(d, 8),
        })
        .collect())
}

/// Decodes a POPULATE TOKEN parameter list (`param_len` from the CDB).
pub fn parse_populate(param_len: u32, data: &[u8]) -> Result<PopulateParams, Sense> {
    let d = list(param_len, data, 16)?;
    let rtv = d[2] & 0x02 != 0;
    let inactivity_secs = be32(d, 4);
    if inactivity_secs > MAX_INACTIVITY_SECS {
        return Err(Sense::invalid_param_field(4, Some(7)));
    }
    let rod_type = rtv.then(|| be32(d, 8));
    if let Some(t) = rod_type {
        if t != 0 && t != ROD_ACCESS_UPON_REFERENCE {
            return Err(Sense::invalid_param_field(8, Some(7)));
        }
    }
    Ok(PopulateParams {
        inactivity_secs,
        rod_type,
        ranges: ranges(d, 16, 14)?,
    })
}

/// Decodes a WRITE USING TOKEN parameter list (`param_len` from the CDB).
pub fn parse_write(param_len: u32, data: &[u8]) -> Result<WriteParams, Sense> {
    let d = list(param_len, data, 536)?;
    Ok(WriteParams {
        delete_token: d[2] & 0x02 != 0,
        offset: be64(d, 8),
        token: d[16..16 + TOKEN_LEN].to_vec(),
        ranges: ranges(d, 536, 534)?,
    })
}

/// What a token represents.
struct TokenEntry {
    bytes: Vec<u8>,
    source: Weak<LogicalUnit>,
    ranges: Vec<Range>,
    inactivity: Duration,
    last_use: Instant,
}

impl TokenEntry {
    fn blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.blocks as u64).sum()
    }
}

/// The ROD tokens of a copy domain.
#[derive(Default)]
pub struct TokenStore {
    inner: Mutex<HashMap<u64, TokenEntry>>,
    next_id: std::sync::atomic::AtomicU64,
    keys: std::collections::hash_map::RandomState,
}

impl TokenStore {
    /// Creates a token for `ranges` of `source`; returns its bytes.
    fn create(
        &self,
        source: &Arc<LogicalUnit>,
        ranges: Vec<Range>,
        inactivity: Duration,
    ) -> Vec<u8> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let bs = source.device.geometry().block_size as u64;
        let bytes_represented: u64 = ranges.iter().map(|r| r.blocks as u64 * bs).sum();
        let mut t = vec![0u8; TOKEN_LEN];
        t[0..4].copy_from_slice(&ROD_ACCESS_UPON_REFERENCE.to_be_bytes());
        t[6..8].copy_from_slice(&((TOKEN_LEN - 8) as u16).to_be_bytes());
        t[8..16].copy_from_slice(&id.to_be_bytes());
        // CREATOR LOGICAL UNIT DESCRIPTOR: an identification CSCD
        // descriptor naming the source by its NAA designator.
        let naa = Designator::naa_of(source);
        t[16] = super::xcopy::CSCD_IDENTIFICATION;
        t[20] = naa.code_set;
        t[21] = naa.kind;
        t[23] = naa.value.len() as u8;
        t[24..24 + naa.value.len()].copy_from_slice(&naa.value);
        t[45..48].copy_from_slice(&(bs as u32).to_be_bytes()[1..]);
        // NUMBER OF BYTES REPRESENTED (16 bytes).
        t[56..64].copy_from_slice(&bytes_represented.to_be_bytes());
        // The rest is unguessable: a token cannot be forged.
        for (i, chunk) in t[128..].chunks_mut(8).enumerate() {
            let mut h = self.keys.build_hasher();
            h.write_u64(id);
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_be_bytes()[..chunk.len()]);
        }
        let mut g = self.inner.lock();
        let now = Instant::now();
        g.retain(|_, e| now.duration_since(e.last_use) < e.inactivity);
        if g.len() >= MAX_TOKENS {
            if let Some(oldest) = g.iter().min_by_key(|(_, e)| e.last_use).map(|(k, _)| *k) {
                g.remove(&oldest);
            }
        }
        g.insert(
            id,
            TokenEntry {
                bytes: t.clone(),
                source: Arc::downgrade(source),
                ranges,
                inactivity,
                last_use: now,
            },
        );
        t
    }

    /// The source and ranges `token` represents, or why it cannot be used.
    fn resolve(
        &self,
        token: &[u8],
        delete: bool,
    ) -> Result<(Arc<LogicalUnit>, Vec<Range>, u64), Sense> {
        let id = be64(token, 8);
        let mut g = self.inner.lock();
        let Some(e) = g.get_mut(&id) else {
            return Err(invalid_token(token_error::TOKEN_UNKNOWN));
        };
        if e.bytes != token {
            return Err(invalid_token(token_error::TOKEN_CORRUPT));
        }
        let now = Instant::now();
        if now.duration_since(e.last_use) >= e.inactivity {
            g.remove(&id);
            return Err(invalid_token(token_error::TOKEN_EXPIRED));
        }
        e.last_use = now;
        let Some(src) = e.source.upgrade() else {
            g.remove(&id);
            return Err(invalid_token(token_error::TOKEN_REVOKED));
        };
        let out = (src, e.ranges.clone(), e.blocks());
        if delete {
            g.remove(&id);
        }
        Ok(out)
    }

    /// Tokens currently alive.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether no token is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_ranges(lu: &LogicalUnit, ranges: &[Range]) -> Result<u64, Sense> {
    let g = lu.device.geometry();
    let mut total = 0u64;
    for r in ranges {
        g.check_range(r.lba, r.blocks as u64)
            .map_err(|_| Sense::lba_out_of_range().with_info(r.lba))?;
        total += r.blocks as u64;
    }
    Ok(total)
}

/// POPULATE TOKEN.
pub(crate) fn populate_token(ctx: &Ctx<'_>, list_id: u32, len: u32) -> ScsiResult {
    let p = parse_populate(len, ctx.req.data_out)?;
    let _running = ctx.lu.copy_results.start(ctx.nexus.id, list_id)?;
    let total = check_ranges(ctx.lu, &p.ranges)?;
    let bs = ctx.lu.device.geometry().block_size as u64;
    if total * bs > MAX_TOKEN_BYTES {
        return Err(Sense::invalid_param_field(14, Some(7)));
    }
    let lu = ctx.map.arc_of(ctx.lu).ok_or_else(Sense::internal)?;
    let secs = if p.inactivity_secs == 0 {
        DEFAULT_INACTIVITY_SECS
    } else {
        p.inactivity_secs
    };
    let segments = p.ranges.len() as u16;
    let token =
        ctx.map
            .copy_domain()
            .tokens
            .create(&lu, p.ranges, Duration::from_secs(secs as u64));
    ctx.lu.copy_results.hold(
        ctx.nexus.id,
        list_id,
        HeldResult {
            service_action: 0x10,
            ok: true,
            segments_processed: segments,
            transfer_count: total,
            sense: None,
            token: Some(token),
            once: false,
        },
    );
    Ok(Reply::data_out(len))
}

/// WRITE USING TOKEN.
pub(crate) fn write_using_token(ctx: &Ctx<'_>, list_id: u32, len: u32) -> ScsiResult {
    let p = parse_write(len, ctx.req.data_out)?;
    let _running = ctx.lu.copy_results.start(ctx.nexus.id, list_id)?;
    if ctx.lu.write_protected() {
        return Err(Sense::write_protected());
    }
    let wanted = check_ranges(ctx.lu, &p.ranges)?;
    let rod_type = be32(&p.token, 0);
    let result = if rod_type == ROD_BLOCK_ZERO {
        write_zero_token(ctx, &p)
    } else if rod_type != ROD_ACCESS_UPON_REFERENCE {
        Err(invalid_token(token_error::UNSUPPORTED_TOKEN_TYPE))
    } else if be16(&p.token, 6) as usize != TOKEN_LEN - 8 {
        Err(invalid_token(token_error::INVALID_TOKEN_LENGTH))
    } else {
        write_from_token(ctx, &p)
    };
    let (ok, done, sense) = match result {
        Ok(done) => (true, done, None),
        Err(s) => (false, 0, Some(s)),
    };
    ctx.lu.copy_results.hold(
        ctx.nexus.id,
        list_id,
        HeldResult {
            service_action: 0x11,
            ok: ok && done == wanted,
            segments_processed: p.ranges.len() as u16,
            transfer_count: done,
            sense,
            token: None,
            once: false,
        },
    );
    match sense {
        Some(s) => Err(s),
        None => Ok(Reply::data_out(len)),
    }
}

/// Writes zeros to every destination range (block device zero ROD token).
fn write_zero_token(ctx: &Ctx<'_>, p: &WriteParams) -> Result<u64, Sense> {
    let mut done = 0;
    for r in &p.ranges {
        let _range = ctx.lu.ranges.lock(r.lba, r.blocks as u64);
        ctx.lu
            .device
            .write_zeroes(r.lba, r.blocks as u64, true)
            .map_err(|e| Sense::from_block_error(&e, true))?;
        done += r.blocks as u64;
    }
    Ok(done)
}

/// Copies what the token represents, from OFFSET INTO ROD on, into the
/// destination ranges in order; stops when either side runs out.
fn write_from_token(ctx: &Ctx<'_>, p: &WriteParams) -> Result<u64, Sense> {
    let (src, src_ranges, src_blocks) = ctx
        .map
        .copy_domain()
        .tokens
        .resolve(&p.token, p.delete_token)?;
    if !ctx.map.copy_domain().admits(&src, ctx.nexus) {
        // A token of a target this initiator may not reach.
        return Err(invalid_token(token_error::REMOTE_TOKEN_USAGE_NOT_SUPPORTED));
    }
    if src.device.geometry().block_size != ctx.lu.device.geometry().block_size {
        return Err(invalid_token(token_error::CAUSE_NOT_REPORTABLE));
    }
    if !std::ptr::eq(&*src, ctx.lu) {
        // The addressed unit was admitted like any command; the source is
        // read as the initiator would read it.
        admit_copy(&src, ctx.nexus, false)?;
    }
    if p.offset >= src_blocks {
        return Err(Sense::invalid_param_field(8, Some(7)));
    }
    // Walk the source ranges (skipping `offset` blocks) and the destination
    // ranges side by side.
    let mut src_iter = src_ranges.iter().filter(|r| r.blocks > 0);
    let mut skip = p.offset;
    let mut cur: Option<(u64, u64)> = None; // (lba, blocks left) of the source
    let mut done = 0u64;
    for d in &p.ranges {
        let mut dst_lba = d.lba;
        let mut left = d.blocks as u64;
        while left > 0 {
            let (slba, sleft) = match cur {
                Some(c) if c.1 > 0 => c,
                _ => {
                    let Some(r) = src_iter.next() else {
                        return Ok(done);
                    };
                    let mut c = (r.lba, r.blocks as u64);
                    let s = skip.min(c.1);
                    c.0 += s;
                    c.1 -= s;
                    skip -= s;
                    cur = Some(c);
                    continue;
                }
            };
            let n = sleft.min(left);
            copy_blocks(&src, slba, ctx.lu, dst_lba, n)?;
            cur = Some((slba + n, sleft - n));
            dst_lba += n;
            left -= n;
            done += n;
        }
    }
    Ok(done)
}

/// RECEIVE ROD TOKEN INFORMATION.
pub(crate) fn receive_rod_token_information(ctx: &Ctx<'_>, list_id: u32, alloc: u32) -> ScsiResult {
    let Some(r) = ctx
        .lu
        .copy_results
        .take(ctx.nexus.id, list_id, &[0x10, 0x11])
    else {
        return Err(Sense::invalid_cdb_field(2, Some(7)));
    };
    let sense = r
        .sense
        .map(|s| s.to_bytes(ctx.lu.mode().d_sense))
        .unwrap_or_default();
    let mut d = vec![0u8; 32];
    d[4] = r.service_action;
    d[5] = if r.ok { 0x01 } else { 0x02 }; // COPY OPERATION STATUS
    d[12] = if r.sense.is_some() { 0x02 } else { 0x00 }; // COMPLETION STATUS
    d[13] = sense.len() as u8; // SENSE DATA FIELD LENGTH
    d[14] = sense.len() as u8; // SENSE DATA LENGTH
    d[15] = 0xF1; // TRANSFER COUNT UNITS: logical blocks
    d[16..24].copy_from_slice(&r.transfer_count.to_be_bytes());
    d[24..26].copy_from_slice(&r.segments_processed.to_be_bytes());
    d.extend_from_slice(&sense);
    match &r.token {
        Some(t) => {
            d.extend_from_slice(&((t.len() + 2) as u32).to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(t);
        }
        None => d.extend_from_slice(&0u32.to_be_bytes()),
    }
    let avail = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    Ok(Reply::alloc(d, alloc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn populate(ranges: &[(u64, u32)]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[14..16].copy_from_slice(&((ranges.len() * 16) as u16).to_be_bytes());
        for (lba, n) in ranges {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&lba.to_be_bytes());
            d[8..12].copy_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&d);
        }
        let l = (v.len() - 2) as u16;
        v[0..2].copy_from_slice(&l.to_be_bytes());
        v
    }

    #[test]
    fn populate_params() {
        let v = populate(&[(0, 8), (100, 16)]);
        let p = parse_populate(v.len() as u32, &v).unwrap();
        assert_eq!(
            p.ranges,
            vec![
                Range { lba: 0, blocks: 8 },
                Range {
                    lba: 100,
                    blocks: 16
                }
            ]
        );
        assert_eq!(
            parse_populate(10, &v).unwrap_err(),
            Sense::param_list_length()
        );
        let mut bad = v.clone();
        bad[15] = 17;
        let s = parse_populate(bad.len() as u32, &bad).unwrap_err();
        assert_eq!((s.asc, s.field.unwrap().byte), (0x26, 14));
        let mut bad = v.clone();
        bad[2] = 0x02; // RTV with an unsupported ROD type
        bad[8..12].copy_from_slice(&0x0080_0000u32.to_be_bytes());
        let s = parse_populate(bad.len() as u32, &bad).unwrap_err();
        assert_eq!((s.asc, s.field.unwrap().byte), (0x26, 8));
        let many: Vec<(u64, u32)> = (0..65).map(|i| (i, 1)).collect();
        let v = populate(&many);
        assert_eq!(parse_populate(v.len() as u32, &v).unwrap_err().ascq, 0x08);
    }

    #[test]
    fn write_params() {
        let mut v = vec![0u8; 536 + 16];
        let l = (v.len() - 2) as u16;
        v[0..2].copy_from_slice(&l.to_be_bytes());
        v[2] = 0x02;
        v[15] = 3;
        v[16] = 0xAB;
        v[534..536].copy_from_slice(&16u16.to_be_bytes());
        v[536 + 11] = 4;
        let p = parse_write(v.len() as u32, &v).unwrap();
        assert!(p.delete_token);
        assert_eq!(p.offset, 3);
        assert_eq!(p.token[0], 0xAB);
        assert_eq!(p.ranges, vec![Range { lba: 0, blocks: 4 }]);
        assert_eq!(
            parse_write(100, &v).unwrap_err(),
            Sense::param_list_length()
        );
    }
}
