//! Volume and snapshot handles: the data path, and [`BlockDevice`] on top.
//!
//! A handle is `Arc<Pool>` plus ids, cheap to clone, `Send + Sync`. Data I/O
//! never holds the metadata lock: a write takes the stripe lock of each
//! extent it touches (so two writes into one extent cannot both redirect
//! it), plans under the metadata lock, does the I/O unlocked, and records
//! a new mapping under the lock again.
//!
//! An extent whose live mapping is born after the volume's newest snapshot
//! is owned by the live head alone and is overwritten in place. Any other
//! write is redirected to a new extent, and the record retires the old
//! mapping. A write that covers the whole extent writes it whole (`Map`).
//! A smaller one writes only the granules it touches (`MapPartial`): the
//! new entry is partial, and its other granules keep reading from the old
//! extent (or zeros) until an in-place write or the background filler
//! ([`Pool::start_background_fill`]) supplies them (`Fill`). Where that is
//! not possible (the old content is itself partial or borrowed, or too many
//! partial entries exist) the redirect copies the untouched blocks. No sync
//! is added: durability comes from FUA or `flush` like any other write.

use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::block_device::{
    BlockDevice, BlockError, Durability, Geometry, Provisioning, ProvisioningRun,
};
use crate::error::{Error, Result};
use crate::format::{Record, TOMBSTONE, ZERO_SOURCE};
use crate::meta::{Partial, View, LIVE};
use crate::pool::Pool;

/// Largest write [`BlockDevice::write_if_cheap`] takes.
pub const MAX_CHEAP_WRITE: usize = 128 << 10;

/// Most partial entries a pool keeps; past it redirects copy whole extents
/// (bounds the metadata partial entries take while the filler catches up).
pub(crate) const PARTIAL_CAP: usize = 1 << 16;

/// A writable volume (or clone).
#[derive(Clone)]
pub struct Volume {
    pool: Arc<Pool>,
    id: u64,
    geometry: Geometry,
}

/// A read-only snapshot view.
#[derive(Clone)]
pub struct Snapshot {
    pool: Arc<Pool>,
    vol: u64,
    gen: u64,
    geometry: Geometry,
}

fn geometry(pool: &Pool, size: u64) -> Geometry {
    let l = pool.layout;
    Geometry {
        block_size: l.block_size,
        blocks: size / l.block_size as u64,
        thin: true,
        unmap_granularity_blocks: l.extent_size / l.block_size,
    }
}

/// One piece of an I/O that falls in a single extent.
struct Piece {
    vext: u64,
    /// Byte offset inside the extent.
    offset: usize,
    /// Byte range inside the caller's buffer.
    start: usize,
    len: usize,
}

/// The head's entry at `vext` of `vol` if the head alone owns it, so a
/// write goes in place: (physical extent, birth, its partial mask if any).
/// A borrowed extent (copy offload) is never written in place.
fn owned_entry(
    st: &crate::pool::State,
    vol: u64,
    vext: u64,
) -> Result<Option<(u64, u64, Option<Partial>)>> {
    let vm = st.meta.vol(vol)?;
    Ok(match vm.live.get(&vext) {
        Some(l)
            if l.pext != TOMBSTONE
                && !crate::range_share::is_borrow(l.pext)
                && vm.newest_snap().is_none_or(|s| l.birth > s) =>
        {
            Some((l.pext, l.birth, vm.partial.get(&(vext, l.birth)).copied()))
        }
        _ => None,
    })
}

/// What an inline write ([`BlockDevice::write_if_cheap`]) does with one
/// piece: each needs only the page cache and, at most, one record in the
/// journal buffer, so the connection's task can do it.
enum CheapStep {
    /// The head owns the extent and holds the granules written: in place.
    InPlace { pext: u64 },
    /// The extent is shared (or unmapped): the data goes into the reserved
    /// extent `new`, and a `MapPartial` record (`Map` when `valid` is every
    /// granule) makes it the head's, the granules not in `valid` reading
    /// from `src`.
    Redirect {
        new: u64,
        src: Option<u64>,
        valid: u128,
    },
    /// A partial entry lacking some of the granules written (the write
    /// covers whole granules): in place, and a deferred `Fill` of `newly`.
    Fill { pext: u64, birth: u64, newly: u128 },
}

fn pieces(pool: &Pool, lba: u64, len: usize) -> impl Iterator<Item = Piece> {
    let e = pool.layout.extent_size as u64;
    let mut byte = lba * pool.layout.block_size as u64;
    let end = byte + len as u64;
    let first = byte;
    std::iter::from_fn(move || {
        if byte >= end {
            return None;
        }
        let vext = byte / e;
        let offset = byte % e;
        let n = (e - offset).min(end - byte);
        let p = Piece {
            vext,
            offset: offset as usize,
            start: (byte - first) as usize,
            len: n as usize,
        };
        byte += n;
        Some(p)
    })
}

fn io_read(e: std::io::Error) -> BlockError {
    BlockError::Read(e)
}

/// Reads `buf.len()` bytes at a byte offset of the pool: `Ok(None)` means
/// "would wait" (see [`BlockDevice::read_if_cached`]).
pub(crate) type ReadFn<'a> = dyn FnMut(&mut [u8], u64) -> std::io::Result<Option<()>> + 'a;

/// Splits bytes `[start, end)` of an extent into runs lying wholly in
/// granules of `valid` (`true`) or wholly outside it (`false`).
fn runs(granule: usize, valid: u128, start: usize, end: usize) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    let mut at = start;
    while at < end {
        let g = at / granule;
        let held = valid >> g & 1 == 1;
        let stop = ((g + 1) * granule).min(end);
        match out.last_mut() {
            Some(last) if last.2 == held && last.1 == at => last.1 = stop,
            _ => out.push((at, stop, held)),
        }
        at = stop;
    }
    out
}

/// The granule mask covering bytes `[start, end)` of an extent (at most
/// 128 granules).
fn granule_mask(granule: usize, start: usize, end: usize) -> u128 {
    if start >= end {
        return 0;
    }
    let first = start / granule;
    let n = end.div_ceil(granule) - first;
    let ones = if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    };
    ones << first
}

impl Pool {
    fn read_view(&self, vol: u64, at: u64, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check_usable()?;
        let _gate = self.gate.read();
        for p in pieces(self, lba, buf.len()) {
            let (view, _) = self.state.read().meta.resolve(vol, p.vext, at)?;
            let out = &mut buf[p.start..p.start + p.len];
            self.read_extent(view, p.offset, out, &mut |b, at| {
                self.backend.read_at(b, at).map(Some)
            })
            .map_err(io_read)?;
        }
        Ok(())
    }

    /// Reads bytes `offset..offset + out.len()` of what `view` shows, with
    /// `read` (which may answer `None`: "would wait"; then so does this).
    pub(crate) fn read_extent(
        &self,
        view: View,
        offset: usize,
        out: &mut [u8],
        read: &mut ReadFn<'_>,
    ) -> std::io::Result<Option<()>> {
        let at = |pext: u64, off: usize| self.layout.extent_offset(pext) + off as u64;
        if out.is_empty() {
            return Ok(Some(()));
        }
        match view {
            View::Zeros => {
                out.fill(0);
                Ok(Some(()))
            }
            View::Extent(pext) => read(out, at(pext, offset)),
            View::Partial { pext, part } => {
                let g = self.layout.granule_size() as usize;
                // Most reads lie wholly on one side: one read, no split.
                let touched = granule_mask(g, offset, offset + out.len());
                if touched & part.valid == touched {
                    return read(out, at(pext, offset));
                }
                if touched & part.valid == 0 {
                    return match part.src {
                        Some(src) => read(out, at(src, offset)),
                        None => {
                            out.fill(0);
                            Ok(Some(()))
                        }
                    };
                }
                for (s, e, held) in runs(g, part.valid, offset, offset + out.len()) {
                    let dst = &mut out[s - offset..e - offset];
                    let from = if held { Some(pext) } else { part.src };
                    match from {
                        Some(p) => {
                            if read(dst, at(p, s))?.is_none() {
                                return Ok(None);
                            }
                        }
                        None => dst.fill(0),
                    }
                }
                Ok(Some(()))
            }
        }
    }

    /// [`Pool::read_view`] only if no piece needs a wait for the disk
    /// (see [`BlockDevice::read_if_cached`]).
    fn read_view_if_cached(&self, vol: u64, at: u64, lba: u64, buf: &mut [u8]) -> bool {
        if self.check_usable().is_err() {
            return false;
        }
        // Never wait here (the caller is a connection's task): a lock
        // someone holds or waits for sends the read the slow way.
        let Some(_gate) = self.gate.try_read() else {
            return false;
        };
        for p in pieces(self, lba, buf.len()) {
            let Some(st) = self.state.try_read() else {
                return false;
            };
            let Ok((view, _)) = st.meta.resolve(vol, p.vext, at) else {
                return false;
            };
            drop(st);
            let out = &mut buf[p.start..p.start + p.len];
            let done = self.read_extent(view, p.offset, out, &mut |b, at| {
                Ok(self.backend.try_read_at(b, at))
            });
            if !matches!(done, Ok(Some(()))) {
                return false;
            }
        }
        true
    }

    /// [`BlockDevice::write_if_cheap`] for volume `vol`: the transfer is
    /// 4 KiB-aligned (so the page cache never has to read a page to merge
    /// it), no lock is contended, nothing has to be read from the disk, and
    /// every piece is one of the [`CheapStep`]s. Everything is decided (and
    /// any new extent reserved) before the first byte is written.
    fn write_volume_if_cheap(&self, vol: u64, g: &Geometry, lba: u64, data: &[u8]) -> bool {
        const PAGE: u64 = 4096;
        let Ok(blocks) = g.blocks_in(data.len()) else {
            return false;
        };
        if g.check_range(lba, blocks).is_err() {
            return false;
        }
        let byte = lba * g.block_size as u64;
        if data.is_empty()
            || data.len() > MAX_CHEAP_WRITE
            || !byte.is_multiple_of(PAGE)
            || !(data.len() as u64).is_multiple_of(PAGE)
            || self.check_writable().is_err()
        {
            return false;
        }
        let Some(_gate) = self.gate.try_read() else {
            return false;
        };
        let mut held = Vec::with_capacity(2);
        let mut plan: Vec<(CheapStep, Piece)> = Vec::with_capacity(2);
        let mut refused = false;
        for p in pieces(self, lba, data.len()) {
            let Some(stripe) = self.stripe(vol, p.vext).try_lock() else {
                refused = true;
                break;
            };
            held.push(stripe);
            match self.plan_cheap_piece(vol, &p) {
                Some(step) => plan.push((step, p)),
                None => {
                    refused = true;
                    break;
                }
            }
        }
        if refused {
            self.unreserve_cheap(&plan);
            return false;
        }
        for (i, (step, p)) in plan.iter().enumerate() {
            if !self.do_cheap_piece(vol, step, p, &data[p.start..p.start + p.len]) {
                // An I/O error (which the slow path meets again and
                // reports) or a snapshot delete that took a redirect's fill
                // source meanwhile. The slow path rewrites every piece,
                // the ones done here included, which is harmless.
                self.unreserve_cheap(&plan[i + 1..]);
                return false;
            }
        }
        self.note_write();
        true
    }

    /// Decides how piece `p` (4 KiB-aligned) of an inline write goes,
    /// holding its stripe lock; `None`: not without a wait. A redirect
    /// reserves its new extent here.
    fn plan_cheap_piece(&self, vol: u64, p: &Piece) -> Option<CheapStep> {
        let gs = self.layout.granule_size() as usize;
        let (start, end) = (p.offset, p.offset + p.len);
        let touched = granule_mask(gs, start, end);
        let owned = |st: &crate::pool::State| owned_entry(st, vol, p.vext).ok();
        let st = self.state.try_read()?;
        match owned(&st)? {
            Some((pext, _, None)) => Some(CheapStep::InPlace { pext }),
            Some((pext, _, Some(part))) if touched & !part.valid == 0 => {
                Some(CheapStep::InPlace { pext })
            }
            Some((pext, birth, Some(part))) => {
                if !start.is_multiple_of(gs) || !end.is_multiple_of(gs) {
                    return None;
                }
                Some(CheapStep::Fill {
                    pext,
                    birth,
                    newly: touched & !part.valid,
                })
            }
            None => {
                drop(st);
                if !start.is_multiple_of(gs) || !end.is_multiple_of(gs) {
                    return None;
                }
                let mut st = self.state.try_write()?;
                // Only a snapshot delete can have made it the head's alone
                // meanwhile; then it is not a redirect any more.
                if owned(&st)?.is_some() {
                    return None;
                }
                // The record waits in the journal buffer; a full buffer is
                // committed by the slow path (which syncs).
                if st.journal.len() >= crate::pool::AUTO_COMMIT_BYTES {
                    return None;
                }
                let full = touched == self.layout.full_mask();
                let (old, borrowed) = st.meta.resolve(vol, p.vext, LIVE).ok()?;
                if !full
                    && (borrowed
                        || matches!(old, View::Partial { .. })
                        || st.meta.partial_held() >= PARTIAL_CAP)
                {
                    return None;
                }
                let new = st.meta.reserve()?;
                Some(CheapStep::Redirect {
                    new: new as u64,
                    src: if full { None } else { old.pext() },
                    valid: touched,
                })
            }
        }
    }

    /// Carries out one planned piece of an inline write: `false` when it
    /// could not (its reserved extent, if any, is handed back).
    fn do_cheap_piece(&self, vol: u64, step: &CheapStep, p: &Piece, data: &[u8]) -> bool {
        let at = |pext: u64, off: usize| self.layout.extent_offset(pext) + off as u64;
        match step {
            CheapStep::InPlace { pext } => matches!(
                self.backend.write_cached_here(data, at(*pext, p.offset)),
                Some(Ok(()))
            ),
            CheapStep::Fill { pext, birth, newly } => {
                if !matches!(
                    self.backend.write_cached_here(data, at(*pext, p.offset)),
                    Some(Ok(()))
                ) {
                    return false;
                }
                // Never wait for the metadata lock here (a checkpoint may
                // hold it for a while): if busy, the slow path writes this
                // again; the bytes are in granules the entry does not
                // claim yet, so nobody reads them meanwhile.
                let Some(mut st) = self.state.try_write() else {
                    return false;
                };
                // Deleted meanwhile: the slow path reports it.
                st.meta.vol(vol).is_ok()
                    && self
                        .log_fill_deferred(&mut st, vol, p.vext, *birth, *newly)
                        .is_ok()
            }
            CheapStep::Redirect { new, src, valid } => {
                let wrote = self.backend.write_cached_here(data, at(*new, p.offset));
                let Some(mut st) = self.state.try_write() else {
                    self.orphans.lock().push(*new as u32);
                    return false;
                };
                let io = match wrote {
                    Some(r) => r,
                    None => Err(std::io::Error::other("not a cached backend")),
                };
                matches!(
                    self.log_redirect(&mut st, vol, p.vext, *new, *src, *valid, io),
                    Ok(true)
                )
            }
        }
    }

    /// Hands back the extents that planned redirects reserved.
    fn unreserve_cheap(&self, plan: &[(CheapStep, Piece)]) {
        let news: Vec<u32> = plan
            .iter()
            .filter_map(|(step, _)| match step {
                CheapStep::Redirect { new, .. } => Some(*new as u32),
                _ => None,
            })
            .collect();
        if news.is_empty() {
            return;
        }
        match self.state.try_write() {
            Some(mut st) => {
                for n in news {
                    st.meta.unreserve(n);
                }
            }
            None => self.orphans.lock().extend(news),
        }
    }

    /// Writes `data` into one extent of `vol`. The caller holds the gate.
    fn write_piece(&self, vol: u64, vext: u64, offset: usize, data: &[u8]) -> Result<()> {
        let _stripe = self.stripe(vol, vext).lock();
        loop {
            if let Some(done) = self.try_write_piece(vol, vext, offset, data)? {
                return Ok(done);
            }
        }
    }

    /// One attempt of [`Pool::write_piece`] (the caller holds the stripe
    /// lock): `None` when a sparse redirect lost its fill source to a
    /// snapshot delete meanwhile and must be planned again.
    fn try_write_piece(
        &self,
        vol: u64,
        vext: u64,
        offset: usize,
        data: &[u8],
    ) -> Result<Option<()>> {
        enum Plan {
            InPlace {
                pext: u64,
                birth: u64,
                part: Option<Partial>,
            },
            /// Into extent `new`: only the granules written, the rest read
            /// from `src` (a full extent) or zeros.
            Sparse { new: u64, src: Option<u64> },
            /// Into extent `new`: all of it, the untouched blocks copied
            /// from what the volume shows now.
            Whole { new: u64, old: View },
        }
        let owned = |st: &crate::pool::State| owned_entry(st, vol, vext);
        let e = self.layout.extent_size as usize;
        // Fast path under the shared lock: an extent the head owns alone.
        let fast = owned(&self.state.read())?;
        let plan = match fast {
            Some((pext, birth, part)) => Plan::InPlace { pext, birth, part },
            None => {
                // The stripe lock keeps this extent's mapping stable; only a
                // snapshot delete can have made it private meanwhile.
                let mut st = self.state.write();
                match owned(&st)? {
                    Some((pext, birth, part)) => Plan::InPlace { pext, birth, part },
                    None => {
                        let (old, borrowed) = st.meta.resolve(vol, vext, LIVE)?;
                        let sparse = data.len() < e
                            && !borrowed
                            && !matches!(old, View::Partial { .. })
                            && st.meta.partial_held() < PARTIAL_CAP;
                        let new = st.meta.reserve().ok_or(Error::NoSpace)? as u64;
                        if sparse {
                            Plan::Sparse {
                                new,
                                src: old.pext(),
                            }
                        } else {
                            Plan::Whole { new, old }
                        }
                    }
                }
            }
        };
        let g = self.layout.granule_size() as usize;
        let end = offset + data.len();
        // The write widened to whole granules: bytes `[a, b)` of the extent,
        // the edges filled by `edge` (which reads what those bytes show).
        let widen = |edge: &mut dyn FnMut(&mut [u8], usize) -> std::io::Result<()>|
         -> std::io::Result<(usize, Vec<u8>)> {
            let a = offset / g * g;
            let b = end.div_ceil(g) * g;
            let mut buf = vec![0u8; b - a];
            // Only edges that exist (an edge at the extent's end would
            // name a granule past the last one).
            if offset > a {
                edge(&mut buf[..offset - a], a)?;
            }
            if b > end {
                edge(&mut buf[end - a..], end)?;
            }
            buf[offset - a..end - a].copy_from_slice(data);
            Ok((a, buf))
        };
        let read_src = |src: Option<u64>, out: &mut [u8], off: usize| -> std::io::Result<()> {
            match src {
                Some(p) if !out.is_empty() => self
                    .backend
                    .read_at(out, self.layout.extent_offset(p) + off as u64),
                _ => {
                    out.fill(0);
                    Ok(())
                }
            }
        };
        match plan {
            Plan::InPlace {
                pext, part: None, ..
            } => {
                self.backend
                    .write_at(data, self.layout.extent_offset(pext) + offset as u64)?;
                Ok(Some(()))
            }
            Plan::InPlace {
                pext,
                birth,
                part: Some(part),
            } => {
                let touched = granule_mask(g, offset, end);
                if touched & !part.valid == 0 {
                    self.backend
                        .write_at(data, self.layout.extent_offset(pext) + offset as u64)?;
                    return Ok(Some(()));
                }
                // Granules the extent lacks: written in place (widened to
                // whole granules, the edges from the extent where it holds
                // them, else from the fill source), and a deferred `Fill`
                // records them, merged with the entry's other fills until the
                // next commit. The rest of the extent is copied by the
                // background filler, or by a snapshot delete that needs it.
                let (a, buf) = widen(&mut |out, off| {
                    let held = part.valid >> (off / g) & 1 == 1;
                    read_src(if held { Some(pext) } else { part.src }, out, off)
                })?;
                self.backend
                    .write_at(&buf, self.layout.extent_offset(pext) + a as u64)?;
                let mut st = self.state.write();
                // Deleted meanwhile (the data went into an extent on its
                // way back to the free space, which the gate keeps unused).
                st.meta.vol(vol)?;
                self.log_fill_deferred(&mut st, vol, vext, birth, touched & !part.valid)?;
                Ok(Some(()))
            }
            Plan::Sparse { new, src } => {
                let touched = granule_mask(g, offset, end);
                let io = (|| -> std::io::Result<()> {
                    if offset.is_multiple_of(g) && end.is_multiple_of(g) {
                        return self
                            .backend
                            .write_at(data, self.layout.extent_offset(new) + offset as u64);
                    }
                    let (a, buf) = widen(&mut |out, off| read_src(src, out, off))?;
                    self.backend
                        .write_at(&buf, self.layout.extent_offset(new) + a as u64)
                })();
                let mut st = self.state.write();
                // `false`: a snapshot delete made the old extent private
                // (and freed it when this record retires it): plan again.
                let logged = self.log_redirect(&mut st, vol, vext, new, src, touched, io)?;
                Ok(logged.then_some(()))
            }
            Plan::Whole { new, old } => {
                let io = (|| -> std::io::Result<()> {
                    if data.len() == e {
                        return self.backend.write_at(data, self.layout.extent_offset(new));
                    }
                    let mut buf = vec![0u8; e];
                    // Copy only the blocks this write does not cover.
                    let mut read = |b: &mut [u8], at: u64| self.backend.read_at(b, at).map(Some);
                    self.read_extent(old, 0, &mut buf[..offset], &mut read)?;
                    self.read_extent(old, end, &mut buf[end..], &mut read)?;
                    buf[offset..end].copy_from_slice(data);
                    self.backend.write_at(&buf, self.layout.extent_offset(new))
                })();
                let mut st = self.state.write();
                let birth = st.meta.gen;
                let rec = Record::Map {
                    vol,
                    vext,
                    pext: new,
                    birth,
                };
                self.finish_redirect(&mut st, new, io, rec).map(Some)
            }
        }
    }

    /// Logs the record of a redirect whose data I/O ended with `io`, or
    /// hands the reserved extent back if either failed.
    fn finish_redirect(
        &self,
        st: &mut crate::pool::State,
        new: u64,
        io: std::io::Result<()>,
        rec: Record,
    ) -> Result<()> {
        let logged = io.map_err(Error::Io).and_then(|()| self.log(st, rec));
        if logged.is_err() {
            st.meta.unreserve(new as u32);
        }
        logged
    }

    /// Records a sub-extent redirect whose data went into the reserved
    /// extent `new`, holding granules `valid` (`Map` when that is all of
    /// them, else `MapPartial` reading the rest from `src`, or zeros).
    /// `Ok(false)`: a snapshot delete made `src` private meanwhile (a
    /// partial entry may not read from it), so nothing was recorded and
    /// `new` is handed back; the caller plans again.
    #[allow(clippy::too_many_arguments)]
    fn log_redirect(
        &self,
        st: &mut crate::pool::State,
        vol: u64,
        vext: u64,
        new: u64,
        src: Option<u64>,
        valid: u128,
        io: std::io::Result<()>,
    ) -> Result<bool> {
        let full = valid == self.layout.full_mask();
        if !full && !st.meta.can_fill_from(vol, vext, src) {
            st.meta.unreserve(new as u32);
            return Ok(false);
        }
        // The mapping is born now (a snapshot may have been taken while
        // the data was written).
        let birth = st.meta.gen;
        let rec = if full {
            Record::Map {
                vol,
                vext,
                pext: new,
                birth,
            }
        } else {
            Record::MapPartial {
                vol,
                vext,
                pext: new,
                birth,
                src: src.unwrap_or(ZERO_SOURCE),
                valid,
            }
        };
        self.finish_redirect(st, new, io, rec).map(|()| true)
    }

    fn write_volume(
        &self,
        vol: u64,
        g: &Geometry,
        lba: u64,
        data: &[u8],
        durability: Durability,
    ) -> Result<(), BlockError> {
        let blocks = g.blocks_in(data.len())?;
        g.check_range(lba, blocks)?;
        self.check_writable()?;
        self.note_write();
        let mut all = pieces(self, lba, data.len()).peekable();
        let mut retried = false;
        while all.peek().is_some() {
            let stalled = {
                let _gate = self.gate.read();
                let mut stalled = false;
                while let Some(p) = all.peek() {
                    match self.write_piece(vol, p.vext, p.offset, &data[p.start..p.start + p.len]) {
                        Ok(()) => {
                            all.next();
                        }
                        Err(Error::NoSpace) if !retried => {
                            stalled = true;
                            break;
                        }
                        Err(e) => return Err(write_err(e)),
                    }
                }
                stalled
            };
            if stalled {
                // Extents freed by records not yet durable become
                // allocatable at the next commit: make it, then retry once.
                retried = true;
                self.reclaim_all();
                self.commit().map_err(write_err)?;
            }
        }
        match durability {
            Durability::ForceUnitAccess => self.commit().map_err(write_err),
            Durability::Cached => self.maybe_commit().map_err(write_err),
        }
    }

    fn unmap_volume(
        &self,
        vol: u64,
        g: &Geometry,
        lba: u64,
        blocks: u64,
    ) -> Result<(), BlockError> {
        g.check_range(lba, blocks)?;
        self.check_writable()?;
        let bs = g.block_size as usize;
        let e = self.layout.extent_size as usize;
        {
            let _gate = self.gate.read();
            for p in pieces(self, lba, (blocks as usize) * bs) {
                let mapped = self.state.read().meta.lookup(vol, p.vext, LIVE)?.is_some();
                if !mapped {
                    continue;
                }
                if p.len == e {
                    let _stripe = self.stripe(vol, p.vext).lock();
                    let mut st = self.state.write();
                    self.log(&mut st, Record::Unmap { vol, vext: p.vext })?;
                } else {
                    let zeros = vec![0u8; p.len];
                    self.write_piece(vol, p.vext, p.offset, &zeros)
                        .map_err(write_err)?;
                }
            }
        }
        self.maybe_commit().map_err(write_err)
    }

    fn provisioning_view(
        &self,
        vol: u64,
        at: u64,
        g: &Geometry,
        lba: u64,
    ) -> Result<ProvisioningRun, BlockError> {
        g.check_range(lba, 1)?;
        let per = (self.layout.extent_size / g.block_size) as u64;
        let st = self.state.read();
        let first = lba / per;
        let last = (g.blocks - 1) / per;
        let state_of = |vext: u64| -> Result<Provisioning, BlockError> {
            Ok(match st.meta.lookup(vol, vext, at)? {
                Some(_) => Provisioning::Mapped,
                None => Provisioning::Deallocated,
            })
        };
        let state = state_of(first)?;
        let mut vext = first + 1;
        // Bound the walk; the initiator asks again from where the run ends.
        while vext <= last && vext - first < (1 << 16) && state_of(vext)? == state {
            vext += 1;
        }
        let end = (vext * per).min(g.blocks);
        Ok(ProvisioningRun {
            lba,
            blocks: end - lba,
            state,
        })
    }
}

fn write_err(e: Error) -> BlockError {
    match e {
        Error::Io(e) => BlockError::Write(e),
        other => other.into(),
    }
}

impl Volume {
    pub(crate) fn new(pool: Arc<Pool>, id: u64, size: u64) -> Volume {
        let geometry = geometry(&pool, size);
        Volume { pool, id, geometry }
    }

    /// The pool this volume lives in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The volume's id in the pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.blocks * self.geometry.block_size as u64
    }

    /// The volume's name (an error if it was deleted).
    pub fn name(&self) -> Result<String> {
        Ok(self.pool.state.read().meta.vol(self.id)?.name.clone())
    }

    /// Takes a snapshot named `name`: O(1), durable on return.
    pub fn snapshot(&self, name: &str) -> Result<Snapshot> {
        self.pool.snapshot_of(self.id, name, true)
    }

    /// Takes a snapshot named `name` that becomes durable with the pool's
    /// next commit (see [`Pool::create_snapshot_deferred`]): O(1), no I/O.
    pub fn snapshot_deferred(&self, name: &str) -> Result<Snapshot> {
        self.pool.snapshot_of(self.id, name, false)
    }

    /// The generation a snapshot taken now would record.
    pub fn current_generation(&self) -> u64 {
        self.pool.state.read().meta.gen
    }

    /// Virtual extents whose content may differ from the snapshot at
    /// generation `gen` (exact for generations of snapshots that still
    /// exist; for a clone, relative to its origin where `gen` predates it).
    pub fn changed_since(&self, gen: u64) -> Result<RoaringBitmap> {
        let st = self.pool.state.read();
        let vm = st.meta.vol(self.id)?;
        let mut out = RoaringBitmap::new();
        for (vext, l) in &vm.live {
            if l.birth > gen {
                out.insert(*vext as u32);
            }
        }
        for (death, vext, _) in vm.dead_by_death.range((gen.saturating_add(1), 0, 0)..) {
            let _ = death;
            out.insert(*vext as u32);
        }
        Ok(out)
    }
    /// Virtual extents whose content may differ between the snapshots at
    /// generations `from` and `to` of this volume (`from < to`; [`u64::MAX`]
    /// for `to` means the live head): mappings born, or retired, after
    /// `from` and no later than `to`. For incremental copies and resync.
    pub fn changed_between(&self, from: u64, to: u64) -> Result<RoaringBitmap> {
        let st = self.pool.state.read();
        let vm = st.meta.vol(self.id)?;
        let within = |g: u64| g > from && g <= to;
        let mut out = RoaringBitmap::new();
        for (vext, l) in &vm.live {
            if within(l.birth) {
                out.insert(*vext as u32);
            }
        }
        for ((vext, birth), d) in &vm.dead {
            if within(*birth) || within(d.death) {
                out.insert(*vext as u32);
            }
        }
        Ok(out)
    }
}

impl Snapshot {
    pub(crate) fn new(pool: Arc<Pool>, vol: u64, gen: u64, size: u64) -> Snapshot {
        let geometry = geometry(&pool, size);
        Snapshot {
            pool,
            vol,
            gen,
            geometry,
        }
    }

    /// The generation this snapshot froze.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Id of the volume it is a snapshot of.
    pub fn volume_id(&self) -> u64 {
        self.vol
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.blocks * self.geometry.block_size as u64
    }

    fn alive(&self) -> Result<(), BlockError> {
        let st = self.pool.state.read();
        match st.meta.vols.get(&self.vol) {
            Some(v) if v.snaps.contains_key(&self.gen) => Ok(()),
            _ => Err(Error::Deleted("snapshot").into()),
        }
    }
}

impl BlockDevice for Volume {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.geometry.blocks_in(buf.len())?;
        self.geometry.check_range(lba, blocks)?;
        self.pool.read_view(self.id, LIVE, lba, buf)
    }

    fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
        let in_range = self
            .geometry
            .blocks_in(buf.len())
            .and_then(|blocks| self.geometry.check_range(lba, blocks));
        in_range.is_ok() && self.pool.read_view_if_cached(self.id, LIVE, lba, buf)
    }

    fn write(&self, lba: u64, data: &[u8], durability: Durability) -> Result<(), BlockError> {
        self.pool
            .write_volume(self.id, &self.geometry, lba, data, durability)
    }

    fn write_if_cheap(&self, lba: u64, data: &[u8]) -> bool {
        self.pool
            .write_volume_if_cheap(self.id, &self.geometry, lba, data)
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.pool.commit().map_err(write_err)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.pool.unmap_volume(self.id, &self.geometry, lba, blocks)
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.pool
            .provisioning_view(self.id, LIVE, &self.geometry, lba)
    }

    fn extent_source(&self) -> Option<crate::ExtentSource> {
        Some(crate::range_share::source_of(&self.pool, self.id, LIVE))
    }

    fn share_range(
        &self,
        source: &crate::ExtentSource,
        src_lba: u64,
        dst_lba: u64,
        blocks: u64,
    ) -> Result<bool, BlockError> {
        self.pool
            .share_blocks(self.id, &self.geometry, source, src_lba, dst_lba, blocks)
    }
}

impl BlockDevice for Snapshot {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn read_only(&self) -> bool {
        true
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.geometry.blocks_in(buf.len())?;
        self.geometry.check_range(lba, blocks)?;
        self.alive()?;
        self.pool.read_view(self.vol, self.gen, lba, buf)
    }

    fn read_if_cached(&self, lba: u64, buf: &mut [u8]) -> bool {
        let in_range = self
            .geometry
            .blocks_in(buf.len())
            .and_then(|blocks| self.geometry.check_range(lba, blocks));
        in_range.is_ok()
            && self.alive().is_ok()
            && self.pool.read_view_if_cached(self.vol, self.gen, lba, buf)
    }

    fn write(&self, _lba: u64, _data: &[u8], _d: Durability) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    fn unmap(&self, _lba: u64, _blocks: u64) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn write_zeroes(&self, _lba: u64, _blocks: u64, _may_unmap: bool) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }

    fn provisioning(&self, lba: u64) -> Result<ProvisioningRun, BlockError> {
        self.alive()?;
        self.pool
            .provisioning_view(self.vol, self.gen, &self.geometry, lba)
    }

    fn extent_source(&self) -> Option<crate::ExtentSource> {
        Some(crate::range_share::source_of(
            &self.pool, self.vol, self.gen,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::backend::{FileBackend, IoMode};
    use crate::{BlockDevice, Durability, Pool, PoolOptions};

    /// A buffered pool of `size` bytes (64 KiB extents) in a fresh
    /// directory of its own: (directory, pool file, pool).
    fn file_pool(name: &str, size: u64) -> (PathBuf, PathBuf, Arc<Pool>) {
        let dir = std::env::temp_dir().join(format!("ironlun-cow-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.pool"));
        let _ = std::fs::remove_file(&path);
        let backend = FileBackend::open_with(&path, true, IoMode::Uring).unwrap();
        let opts = PoolOptions {
            size,
            extent_size: 64 << 10,
            ..PoolOptions::default()
        };
        let pool = Pool::create_on(Box::new(backend), Some(path.clone()), &opts).unwrap();
        (dir, path, pool)
    }

    /// A fill is merged and encoded later only while no snapshot sees its
    /// entry. Once one does (a snapshot taken while the write's data was
    /// on its way), a clone of that snapshot can read through the entry,
    /// so the fill must precede any record about the clone: logged at once.
    #[test]
    fn fills_of_entries_a_snapshot_sees_are_logged_at_once() {
        let pool = Pool::create_on(
            Box::new(crate::sim::SimBackend::new(0)),
            None,
            &PoolOptions {
                size: 8 << 20,
                extent_size: 4096,
                ..PoolOptions::default()
            },
        )
        .unwrap();
        let v = pool.create_volume("v", 64 << 10).unwrap();
        v.write(0, &[1u8; 4096], Durability::Cached).unwrap();
        v.snapshot("s1").unwrap();
        // Extent 0 becomes a partial entry the head owns (first granule).
        v.write(0, &[2u8; 512], Durability::Cached).unwrap();
        let id = v.id;
        let birth = |pool: &Pool| pool.state.read().meta.vol(id).unwrap().live[&0].birth;
        let b = birth(&pool);
        assert_eq!(pool.partial_entries(), 1);

        // Not seen by a snapshot: deferred.
        {
            let mut st = pool.state.write();
            let before = st.journal.len();
            pool.log_fill_deferred(&mut st, id, 0, b, 0b10).unwrap();
            assert_eq!(st.journal.len(), before, "deferred");
            assert_eq!(st.deferred_fills.len(), 1);
        }
        // A snapshot record encodes it first.
        v.snapshot_deferred("s2").unwrap();
        assert!(pool.state.read().deferred_fills.is_empty());
        // Seen by s2 now: logged at once.
        {
            let mut st = pool.state.write();
            let before = st.journal.len();
            pool.log_fill_deferred(&mut st, id, 0, b, 0b100).unwrap();
            assert!(st.journal.len() > before, "logged at once");
            assert!(st.deferred_fills.is_empty());
        }
        assert!(pool.check().is_clean(), "{}", pool.check().summary());
    }

    /// The background thread keeps the store allocated ahead of the lowest
    /// free extent, a step at a time, without touching data already there.
    #[test]
    fn the_store_is_preallocated_ahead_of_allocation() {
        use std::os::unix::fs::MetadataExt;
        let (dir, path, pool) = file_pool("prealloc", 1 << 30);
        let v = pool.create_volume("v", 64 << 20).unwrap();
        v.write(0, &vec![7u8; 1 << 20], Durability::Cached).unwrap();
        let allocated = || std::fs::metadata(&path).unwrap().blocks() * 512;
        let before = allocated();
        pool.preallocate_ahead();
        let after = allocated();
        if pool.prealloc_end.load(std::sync::atomic::Ordering::Relaxed) == u64::MAX {
            eprintln!("WARNING: this file system cannot preallocate; nothing was checked");
            return;
        }
        assert!(
            after >= before + crate::pool::PREALLOC_STEP,
            "one step allocated: {before} -> {after}"
        );
        // A second call allocates the next step, up to the window.
        pool.preallocate_ahead();
        assert!(allocated() >= after + crate::pool::PREALLOC_STEP);
        let mut b = vec![0u8; 1 << 20];
        v.read(0, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 7), "data left as it was");
        // New extents land in the preallocated space and read back.
        v.write(8192, &vec![8u8; 1 << 20], Durability::Cached)
            .unwrap();
        v.read(8192, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 8));
        assert!(pool.check().is_clean(), "{}", pool.check().summary());
        drop(v);
        drop(pool);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The connection's task never waits for the metadata lock: with it
    /// held (a checkpoint encodes under an upgradable read for a while),
    /// an inline write that needs to change metadata answers `false` at
    /// once, and one that changes none still goes ahead.
    #[test]
    fn inline_writes_never_wait_for_the_metadata_lock() {
        let (dir, _path, pool) = file_pool("lock", 16 << 20);
        let v = pool.create_volume("v", 1 << 20).unwrap();
        v.write(0, &vec![1u8; 256 << 10], Durability::Cached)
            .unwrap();
        v.snapshot("s").unwrap();
        // Extent 0 stays shared with the snapshot; extent 1 becomes partial
        // (its first 4 KiB redirected); extent 2 is redirected whole, so the
        // head owns it.
        v.write(128, &[2u8; 4096], Durability::Cached).unwrap();
        v.write(256, &vec![3u8; 64 << 10], Durability::Cached)
            .unwrap();
        let free = pool.info().free_extents;

        let attempt = |lba: u64| {
            let (tx, rx) = mpsc::channel();
            let v = v.clone();
            std::thread::spawn(move || tx.send(v.write_if_cheap(lba, &[9u8; 4096])));
            rx.recv_timeout(Duration::from_secs(20))
                .expect("write_if_cheap waited for the metadata lock")
        };
        {
            let _busy = pool.state.upgradable_read();
            assert!(!attempt(0), "a redirect needs the lock: refused");
            assert!(!attempt(136), "a fill of a partial entry: refused");
            assert!(attempt(264), "in place into an owned extent: done");
        }
        assert_eq!(pool.info().free_extents, free, "nothing reserved is lost");
        let mut b = vec![0u8; 4096];
        v.read(136, &mut b).unwrap();
        assert_eq!(b, vec![1u8; 4096], "the refused fill is not visible");
        v.read(264, &mut b).unwrap();
        assert_eq!(b, vec![9u8; 4096]);
        assert!(attempt(0) && attempt(136), "lock free again: both done");
        assert!(pool.check().is_clean(), "{}", pool.check().summary());
        // `free_extents` and the check count reserved extents as free, so
        // look at the reservations themselves: none is left over.
        assert!(pool.state.read().meta.reserved.is_empty());

        // An extent an inline write had to park (the lock was busy after
        // its pwrite) comes back at the next commit.
        let parked = { pool.state.write().meta.reserve().unwrap() };
        pool.orphans.lock().push(parked);
        pool.commit().unwrap();
        assert!(pool.orphans.lock().is_empty());
        let st = pool.state.read();
        assert!(st.meta.reserved.is_empty() && st.meta.free.contains(parked));
        drop(st);
        drop(v);
        drop(pool);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
