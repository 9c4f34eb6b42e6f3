//! The on-disk format, byte by byte (see `cow/FORMAT.md`): the pool layout,
//! the two superblock slots, journal records and the checkpoint blob.
//!
//! Encoding is little-endian throughout. Decoding never panics: every read
//! is bounds-checked and every impossible value becomes [`Error::Corrupt`].

use crate::error::{Error, Result};

/// Size of one superblock slot; slot `i` starts at byte `i * SB_SLOT`.
pub const SB_SLOT: u64 = 4096;
/// Bytes of a slot covered by its checksum (the rest is zero).
pub const SB_LEN: usize = 128;
/// Superblock magic.
pub const SB_MAGIC: &[u8; 8] = b"IRONLUNP";
/// Format version written by this code (2: sub-extent redirect, records 8
/// and 9 and the checkpoint's partial-entry section). Version 1 pools are
/// read, and become version 2 at their next checkpoint.
pub const VERSION: u32 = 2;
/// Oldest format version this code reads.
pub const MIN_VERSION: u32 = 1;
/// A fill-source value meaning "the blocks not yet written read as zeros".
pub const ZERO_SOURCE: u64 = u64::MAX;
/// Journal record magic ("IJRN").
pub const REC_MAGIC: u32 = u32::from_le_bytes(*b"IJRN");
/// Journal record header: magic, payload length, epoch, seq.
pub const REC_HEADER: usize = 4 + 4 + 8 + 8;
/// Checkpoint magic.
pub const CKPT_MAGIC: &[u8; 8] = b"IRONCKPT";
/// A physical-extent value meaning "no extent: reads as zeros, hides the
/// clone's origin" (a tombstone).
pub const TOMBSTONE: u64 = u64::MAX;
/// Longest volume or snapshot name.
pub const MAX_NAME: usize = 255;

/// Where everything lives in the pool; fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Logical block size the pool's volumes present (512 or 4096).
    pub block_size: u32,
    /// Extent size in bytes (a power of two, >= 4096).
    pub extent_size: u32,
    /// Number of data extents.
    pub extent_count: u64,
    /// Byte offset and length of the journal region.
    pub journal_offset: u64,
    pub journal_len: u64,
    /// Byte offsets of the two checkpoint areas, and their common length.
    pub ckpt_offset: [u64; 2],
    pub ckpt_len: u64,
    /// Byte offset of data extent 0 (extent-aligned).
    pub data_offset: u64,
}

impl Layout {
    /// Plans a pool of `size` bytes with the given extent and block size.
    /// `journal_len` overrides the default journal size.
    pub fn plan(
        size: u64,
        extent_size: u32,
        block_size: u32,
        journal_len: Option<u64>,
    ) -> Result<Layout> {
        if block_size != 512 && block_size != 4096 {
            return Err(Error::Invalid(format!(
                "block size {block_size} is not 512 or 4096"
            )));
        }
        if !extent_size.is_power_of_two() || !(4096..=(64 << 20)).contains(&extent_size) {
            return Err(Error::Invalid(format!(
                "extent size {extent_size} is not a power of two between 4 KiB and 64 MiB"
            )));
        }
        let e = extent_size as u64;
        // Metadata sized from the most extents the pool could hold.
        let max_extents = size / e;
        let round = |v: u64| v.div_ceil(4096) * 4096;
        let journal_len =
            round(journal_len.unwrap_or((max_extents * 32).clamp(64 << 10, 64 << 20)));
        let ckpt_len = round((max_extents * 96).max(64 << 10));
        let journal_offset = 2 * SB_SLOT;
        let ckpt0 = journal_offset + journal_len;
        let ckpt1 = ckpt0 + ckpt_len;
        let data_offset = (ckpt1 + ckpt_len).div_ceil(e) * e;
        if size <= data_offset || (size - data_offset) / e == 0 {
            return Err(Error::Invalid(format!(
                "pool size {size} is too small: metadata takes {data_offset} bytes and at least one {e}-byte extent must fit"
            )));
        }
        let extent_count = (size - data_offset) / e;
        if extent_count > u32::MAX as u64 {
            return Err(Error::Invalid(format!(
                "{extent_count} extents is more than the 2^32 a pool can track; use a larger extent size"
            )));
        }
        Ok(Layout {
            block_size,
            extent_size,
            extent_count,
            journal_offset,
            journal_len,
            ckpt_offset: [ckpt0, ckpt1],
            ckpt_len,
            data_offset,
        })
    }

    /// Total bytes the pool occupies.
    pub fn total_len(&self) -> u64 {
        self.data_offset + self.extent_count * self.extent_size as u64
    }

    /// Bytes per granule: the unit of sub-extent redirect. An extent has at
    /// most 128 granules (one bit each in a `u128` mask), each at least one
    /// logical block.
    pub fn granule_size(&self) -> u32 {
        (self.extent_size / 128).max(self.block_size)
    }

    /// Granules per extent (at most 128).
    pub fn granules(&self) -> u32 {
        self.extent_size / self.granule_size()
    }

    /// The mask with every granule of an extent set.
    pub fn full_mask(&self) -> u128 {
        match self.granules() {
            128 => u128::MAX,
            n => (1u128 << n) - 1,
        }
    }

    /// Byte offset of physical extent `pext`.
    pub fn extent_offset(&self, pext: u64) -> u64 {
        self.data_offset + pext * self.extent_size as u64
    }

    fn validate(&self, store_len: Option<u64>) -> Result<()> {
        let bad = |what: &str| Err(Error::Corrupt(format!("superblock: {what}")));
        if self.block_size != 512 && self.block_size != 4096 {
            return bad("block size is not 512 or 4096");
        }
        if !self.extent_size.is_power_of_two() || self.extent_size < 4096 {
            return bad("extent size is not a power of two >= 4096");
        }
        if self.extent_count == 0 || self.extent_count > u32::MAX as u64 {
            return bad("extent count out of range");
        }
        let e = self.extent_size as u64;
        let j_end = self.journal_offset.checked_add(self.journal_len);
        let c0_end = self.ckpt_offset[0].checked_add(self.ckpt_len);
        let c1_end = self.ckpt_offset[1].checked_add(self.ckpt_len);
        let d_end = self
            .extent_count
            .checked_mul(e)
            .and_then(|n| n.checked_add(self.data_offset));
        match (j_end, c0_end, c1_end, d_end) {
            (Some(j), Some(c0), Some(c1), Some(d))
                if self.journal_offset >= 2 * SB_SLOT
                    && j <= self.ckpt_offset[0]
                    && c0 <= self.ckpt_offset[1]
                    && c1 <= self.data_offset
                    && self.data_offset.is_multiple_of(e)
                    && store_len.is_none_or(|len| d <= len) => {}
            _ => return bad("regions overlap or lie beyond the store"),
        }
        Ok(())
    }
}

/// One superblock slot's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Increases by one at every checkpoint; the valid slot with the
    /// highest value wins. Also the journal epoch records must carry.
    pub seq: u64,
    /// Random per pool; mixed into every journal record's checksum.
    pub nonce: u64,
    pub layout: Layout,
    /// Which checkpoint area (0 or 1) holds the checkpoint.
    pub ckpt_area: u32,
    pub ckpt_crc: u32,
    pub ckpt_bytes: u64,
    /// Sequence number of the first journal record after the checkpoint.
    pub journal_first_seq: u64,
}

impl Superblock {
    /// Encodes the slot (SB_SLOT bytes, checksum at byte 124).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(SB_MAGIC);
        w.u32(VERSION);
        w.u32(SB_LEN as u32);
        w.u64(self.seq);
        w.u64(self.nonce);
        w.u32(self.layout.block_size);
        w.u32(self.layout.extent_size);
        w.u64(self.layout.extent_count);
        w.u64(self.layout.journal_offset);
        w.u64(self.layout.journal_len);
        w.u64(self.layout.ckpt_offset[0]);
        w.u64(self.layout.ckpt_offset[1]);
        w.u64(self.layout.ckpt_len);
        w.u64(self.layout.data_offset);
        w.u32(self.ckpt_area);
        w.u32(self.ckpt_crc);
        w.u64(self.ckpt_bytes);
        w.u64(self.journal_first_seq);
        let mut buf = w.0;
        buf.resize(SB_LEN - 4, 0);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.resize(SB_SLOT as usize, 0);
        buf
    }

    /// Decodes a slot; `Ok(None)` for a slot that holds no valid superblock
    /// (never written, torn, or another format). `store_len` bounds the
    /// regions when known.
    pub fn decode(buf: &[u8], store_len: Option<u64>) -> Result<Option<Superblock>> {
        if buf.len() < SB_LEN || &buf[..8] != SB_MAGIC {
            return Ok(None);
        }
        let stored = u32::from_le_bytes([buf[124], buf[125], buf[126], buf[127]]);
        if crc32c::crc32c(&buf[..SB_LEN - 4]) != stored {
            return Ok(None);
        }
        let mut r = Reader::new(&buf[8..SB_LEN - 4], "superblock");
        let version = r.u32()?;
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(Error::Corrupt(format!(
                "superblock version {version}, this build reads versions {MIN_VERSION} to {VERSION}"
            )));
        }
        let _len = r.u32()?;
        let sb = Superblock {
            seq: r.u64()?,
            nonce: r.u64()?,
            layout: Layout {
                block_size: r.u32()?,
                extent_size: r.u32()?,
                extent_count: r.u64()?,
                journal_offset: r.u64()?,
                journal_len: r.u64()?,
                ckpt_offset: [r.u64()?, r.u64()?],
                ckpt_len: r.u64()?,
                data_offset: r.u64()?,
            },
            ckpt_area: r.u32()?,
            ckpt_crc: r.u32()?,
            ckpt_bytes: r.u64()?,
            journal_first_seq: r.u64()?,
        };
        sb.layout.validate(store_len)?;
        if sb.ckpt_area > 1 || sb.ckpt_bytes > sb.layout.ckpt_len {
            return Err(Error::Corrupt(
                "superblock: checkpoint reference out of range".into(),
            ));
        }
        Ok(Some(sb))
    }
}

/// A metadata change, as journaled. Applying the same records in the same
/// order to the same state always gives the same state (see `meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A new volume; `base` = (volume id, snapshot generation) for a clone.
    CreateVolume {
        id: u64,
        name: String,
        size: u64,
        base: Option<(u64, u64)>,
    },
    /// Deletes a volume with all its snapshots.
    DeleteVolume { id: u64 },
    /// Freezes volume `vol`'s view at generation `gen` under `name`.
    Snapshot { vol: u64, gen: u64, name: String },
    /// Deletes the snapshot of `vol` at `gen`.
    DeleteSnapshot { vol: u64, gen: u64 },
    /// Maps virtual extent `vext` of `vol` to physical extent `pext`, born at
    /// generation `birth`; the old mapping is retired.
    Map {
        vol: u64,
        vext: u64,
        pext: u64,
        birth: u64,
    },
    /// Unmaps virtual extent `vext` of `vol`.
    Unmap { vol: u64, vext: u64 },
    /// Like `Map`, but only the granules in `valid` of the new extent hold
    /// data; the others read from physical extent `src` (the content the
    /// volume showed before), or as zeros when `src` is [`ZERO_SOURCE`].
    /// Sub-extent redirect: the first small write after a snapshot writes
    /// only its own granules (see `meta`, "Partial entries").
    MapPartial {
        vol: u64,
        vext: u64,
        pext: u64,
        birth: u64,
        src: u64,
        valid: u128,
    },
    /// The granules in `valid` of the entry (`vol`, `vext`, born at
    /// `birth`) now hold their data (written in place, or copied from the
    /// fill source); when all do, the entry is an ordinary one.
    Fill {
        vol: u64,
        vext: u64,
        birth: u64,
        valid: u128,
    },
    /// Makes `count` virtual extents of `vol` from `vext` on read what the
    /// snapshot of `src_vol` at `src_gen` shows from `src_vext` on, without
    /// owning its extents: each gets a borrow entry (ids `first_id ..`),
    /// born in the current generation; the old mappings are retired (see
    /// `range_share`).
    ShareRange {
        vol: u64,
        vext: u64,
        src_vol: u64,
        src_gen: u64,
        src_vext: u64,
        count: u64,
        first_id: u64,
    },
}

const T_CREATE: u8 = 1;
const T_DELETE_VOL: u8 = 2;
const T_SNAP: u8 = 3;
const T_DELETE_SNAP: u8 = 4;
const T_MAP: u8 = 5;
const T_UNMAP: u8 = 6;
const T_SHARE_RANGE: u8 = 7;
const T_MAP_PARTIAL: u8 = 8;
const T_FILL: u8 = 9;

impl Record {
    fn encode_payload(&self, w: &mut Writer) {
        match self {
            Record::CreateVolume {
                id,
                name,
                size,
                base,
            } => {
                w.u8(T_CREATE);
                w.u64(*id);
                w.u64(*size);
                let (bv, bg) = base.unwrap_or((u64::MAX, u64::MAX));
                w.u64(bv);
                w.u64(bg);
                w.name(name);
            }
            Record::DeleteVolume { id } => {
                w.u8(T_DELETE_VOL);
                w.u64(*id);
            }
            Record::Snapshot { vol, gen, name } => {
                w.u8(T_SNAP);
                w.u64(*vol);
                w.u64(*gen);
                w.name(name);
            }
            Record::DeleteSnapshot { vol, gen } => {
                w.u8(T_DELETE_SNAP);
                w.u64(*vol);
                w.u64(*gen);
            }
            Record::Map {
                vol,
                vext,
                pext,
                birth,
            } => {
                w.u8(T_MAP);
                w.u64(*vol);
                w.u64(*vext);
                w.u64(*pext);
                w.u64(*birth);
            }
            Record::Unmap { vol, vext } => {
                w.u8(T_UNMAP);
                w.u64(*vol);
                w.u64(*vext);
            }
            Record::ShareRange {
                vol,
                vext,
                src_vol,
                src_gen,
                src_vext,
                count,
                first_id,
            } => {
                w.u8(T_SHARE_RANGE);
                for v in [vol, vext, src_vol, src_gen, src_vext, count, first_id] {
                    w.u64(*v);
                }
            }
            Record::MapPartial {
                vol,
                vext,
                pext,
                birth,
                src,
                valid,
            } => {
                w.u8(T_MAP_PARTIAL);
                for v in [vol, vext, pext, birth, src] {
                    w.u64(*v);
                }
                w.u128(*valid);
            }
            Record::Fill {
                vol,
                vext,
                birth,
                valid,
            } => {
                w.u8(T_FILL);
                for v in [vol, vext, birth] {
                    w.u64(*v);
                }
                w.u128(*valid);
            }
        }
    }

    fn decode_payload(buf: &[u8]) -> Result<Record> {
        let mut r = Reader::new(buf, "journal record");
        let rec = match r.u8()? {
            T_CREATE => {
                let id = r.u64()?;
                let size = r.u64()?;
                let bv = r.u64()?;
                let bg = r.u64()?;
                let name = r.name()?;
                let base = if bv == u64::MAX { None } else { Some((bv, bg)) };
                Record::CreateVolume {
                    id,
                    name,
                    size,
                    base,
                }
            }
            T_DELETE_VOL => Record::DeleteVolume { id: r.u64()? },
            T_SNAP => Record::Snapshot {
                vol: r.u64()?,
                gen: r.u64()?,
                name: r.name()?,
            },
            T_DELETE_SNAP => Record::DeleteSnapshot {
                vol: r.u64()?,
                gen: r.u64()?,
            },
            T_MAP => Record::Map {
                vol: r.u64()?,
                vext: r.u64()?,
                pext: r.u64()?,
                birth: r.u64()?,
            },
            T_UNMAP => Record::Unmap {
                vol: r.u64()?,
                vext: r.u64()?,
            },
            T_SHARE_RANGE => Record::ShareRange {
                vol: r.u64()?,
                vext: r.u64()?,
                src_vol: r.u64()?,
                src_gen: r.u64()?,
                src_vext: r.u64()?,
                count: r.u64()?,
                first_id: r.u64()?,
            },
            T_MAP_PARTIAL => Record::MapPartial {
                vol: r.u64()?,
                vext: r.u64()?,
                pext: r.u64()?,
                birth: r.u64()?,
                src: r.u64()?,
                valid: r.u128()?,
            },
            T_FILL => Record::Fill {
                vol: r.u64()?,
                vext: r.u64()?,
                birth: r.u64()?,
                valid: r.u128()?,
            },
            t => {
                return Err(Error::Corrupt(format!(
                    "journal record of unknown type {t}"
                )))
            }
        };
        r.end()?;
        Ok(rec)
    }

    /// Frames the record: header, payload, CRC32C (seeded with the pool
    /// nonce) over header and payload.
    pub fn encode(&self, nonce: u64, epoch: u64, seq: u64, out: &mut Vec<u8>) {
        let mut p = Writer::default();
        self.encode_payload(&mut p);
        let start = out.len();
        out.extend_from_slice(&REC_MAGIC.to_le_bytes());
        out.extend_from_slice(&(p.0.len() as u32).to_le_bytes());
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&p.0);
        let crc = record_crc(nonce, &out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the record at the start of `buf` if it is a valid record of
    /// `epoch` with sequence number `seq`; returns it and its framed length.
    /// `Ok(None)` marks the end of the journal (anything else there: zeros,
    /// a torn or stale record). A record that checks out but does not parse
    /// is corruption.
    pub fn decode(buf: &[u8], nonce: u64, epoch: u64, seq: u64) -> Result<Option<(Record, usize)>> {
        if buf.len() < REC_HEADER + 4 {
            return Ok(None);
        }
        let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let dword = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if word(0) != REC_MAGIC || dword(8) != epoch || dword(16) != seq {
            return Ok(None);
        }
        let len = word(4) as usize;
        let Some(total) = len.checked_add(REC_HEADER + 4).filter(|&t| t <= buf.len()) else {
            return Ok(None);
        };
        if record_crc(nonce, &buf[..REC_HEADER + len]) != word(REC_HEADER + len) {
            return Ok(None);
        }
        let rec = Record::decode_payload(&buf[REC_HEADER..REC_HEADER + len])?;
        Ok(Some((rec, total)))
    }
}

fn record_crc(nonce: u64, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&nonce.to_le_bytes()), bytes)
}

/// A little-endian byte writer.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A u128 as 16 little-endian bytes.
    pub fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A name: u16 length then UTF-8 bytes.
    pub fn name(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(MAX_NAME)];
        self.0.extend_from_slice(&(b.len() as u16).to_le_bytes());
        self.0.extend_from_slice(b);
    }
}

/// A bounds-checked little-endian reader; running off the end is
/// [`Error::Corrupt`] naming `what`.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::Corrupt(format!("{} truncated at byte {}", self.what, self.pos))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn u128(&mut self) -> Result<u128> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(u128::from_le_bytes(a))
    }
    pub fn name(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        if n > MAX_NAME {
            return Err(Error::Corrupt(format!("{}: name of {n} bytes", self.what)));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::Corrupt(format!("{}: name is not UTF-8", self.what)))
    }
    /// Errors unless everything was consumed.
    pub fn end(&self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::Corrupt(format!(
                "{}: {} trailing bytes",
                self.what,
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_roundtrip_and_damage() {
        let layout = Layout::plan(64 << 20, 65536, 512, None).unwrap();
        let sb = Superblock {
            seq: 7,
            nonce: 99,
            layout,
            ckpt_area: 1,
            ckpt_crc: 5,
            ckpt_bytes: 100,
            journal_first_seq: 42,
        };
        let buf = sb.encode();
        assert_eq!(buf.len(), SB_SLOT as usize);
        assert_eq!(Superblock::decode(&buf, Some(64 << 20)).unwrap(), Some(sb));
        for i in 0..SB_LEN {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert_eq!(Superblock::decode(&bad, None).unwrap(), None, "byte {i}");
        }
    }

    #[test]
    fn record_roundtrip_and_damage() {
        let recs = [
            Record::CreateVolume {
                id: 1,
                name: "lun0".into(),
                size: 1 << 30,
                base: Some((0, 3)),
            },
            Record::DeleteVolume { id: 4 },
            Record::Snapshot {
                vol: 1,
                gen: 2,
                name: "s".into(),
            },
            Record::DeleteSnapshot { vol: 1, gen: 2 },
            Record::Map {
                vol: 1,
                vext: 2,
                pext: 3,
                birth: 4,
            },
            Record::Unmap { vol: 1, vext: 9 },
            Record::MapPartial {
                vol: 1,
                vext: 2,
                pext: 5,
                birth: 6,
                src: ZERO_SOURCE,
                valid: 1 << 127 | 3,
            },
            Record::Fill {
                vol: 1,
                vext: 2,
                birth: 6,
                valid: 4,
            },
        ];
        for (i, rec) in recs.iter().enumerate() {
            let mut out = Vec::new();
            rec.encode(11, 3, i as u64, &mut out);
            let (back, n) = Record::decode(&out, 11, 3, i as u64).unwrap().unwrap();
            assert_eq!(&back, rec);
            assert_eq!(n, out.len());
            assert!(Record::decode(&out, 12, 3, i as u64).unwrap().is_none());
            assert!(Record::decode(&out, 11, 4, i as u64).unwrap().is_none());
            for cut in 0..out.len() {
                assert!(Record::decode(&out[..cut], 11, 3, i as u64)
                    .unwrap()
                    .is_none());
            }
        }
    }
}
