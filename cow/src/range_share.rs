//! Copy offload inside one pool: a range of a volume made to read what a
//! range of another (or the same) volume reads, by metadata only.
//!
//! The pool's rule that every extent has exactly one owner stays: the
//! destination never owns the source's extents, it *borrows* them. The
//! source's view is first frozen in a hidden snapshot (reused when it
//! still shows the range as the source's head does), so the source's
//! later writes redirect as for any snapshot and never change what the
//! destination reads. Then one [`Record::ShareRange`] gives each
//! destination extent a live entry whose physical extent field holds a
//! borrow id (`BORROW_BIT | id`); the pool's borrow table maps the id to
//! (source volume, snapshot generation, source extent). Reads resolve a
//! borrow by looking the source up at that generation; a write into a
//! borrowed extent redirects (allocate, copy the untouched blocks, `Map`)
//! like a write into a clone's inherited extent; retiring a borrow entry
//! drops its id from the table instead of freeing an extent. A snapshot
//! that some borrow names cannot be deleted, nor its volume while a
//! borrow of another volume names it, and hidden snapshots nothing borrows from any more are deleted by the
//! next share ([`Pool::reclaim_share_snapshots`]).
//!
//! Borrow ids are never reused, so no stale reference can name a new
//! borrow; the table is part of the checkpoint (see FORMAT.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::block_device::{BlockError, ExtentSource};
use crate::error::{Error, Result};
use crate::format::{Record, Writer, TOMBSTONE};
use crate::meta::{Live, Meta, LIVE};
use crate::pool::Pool;

/// Marks a physical-extent field that holds a borrow id.
pub const BORROW_BIT: u64 = 1 << 63;

/// Name prefix of the hidden snapshots shares are made from (a control
/// character, which no user-given name may contain).
pub const SHARE_SNAPSHOT_PREFIX: &str = "\u{7f}share";

/// Whether a snapshot name is one of the hidden snapshots shares read
/// from (not listed by `Pool::snapshots`, `volumes` or `info`).
pub fn is_share_snapshot(name: &str) -> bool {
    name.starts_with(SHARE_SNAPSHOT_PREFIX)
}

/// Whether a physical-extent field holds a borrow id.
pub fn is_borrow(pext: u64) -> bool {
    pext != TOMBSTONE && pext & BORROW_BIT != 0
}

/// What a borrow entry reads: extent `vext` of volume `vol` as its
/// snapshot at generation `gen` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Borrow {
    pub vol: u64,
    pub gen: u64,
    pub vext: u64,
}

/// The borrow table of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Borrows {
    pub table: BTreeMap<u64, Borrow>,
    /// The next id to hand out (ids are never reused).
    pub next_id: u64,
}

impl Meta {
    /// The borrow a physical-extent field names, `None` for an extent.
    pub(crate) fn borrowed(&self, pext: u64) -> Result<Option<Borrow>> {
        if !is_borrow(pext) {
            return Ok(None);
        }
        match self.borrows.table.get(&(pext & !BORROW_BIT)) {
            Some(b) => Ok(Some(*b)),
            None => Err(Error::Corrupt(format!(
                "borrow {} is not in the table",
                pext & !BORROW_BIT
            ))),
        }
    }

    /// Whether some borrow reads through the snapshot of `vol` at `gen`.
    pub(crate) fn has_borrowers(&self, vol: u64, gen: u64) -> bool {
        self.borrows
            .table
            .values()
            .any(|b| b.vol == vol && b.gen == gen)
    }

    /// Whether a volume other than `vol` itself borrows through the
    /// snapshot of `vol` at `gen` (deleting `vol` would leave it dangling).
    pub(crate) fn has_outside_borrowers(&self, vol: u64, gen: u64) -> bool {
        let own: std::collections::BTreeSet<u64> = self
            .vols
            .get(&vol)
            .map(|vm| {
                vm.live
                    .values()
                    .map(|l| l.pext)
                    .chain(vm.dead.values().map(|d| d.pext))
                    .filter(|p| is_borrow(*p))
                    .map(|p| p & !BORROW_BIT)
                    .collect()
            })
            .unwrap_or_default();
        self.borrows
            .table
            .iter()
            .any(|(id, b)| b.vol == vol && b.gen == gen && !own.contains(id))
    }

    /// Applies [`Record::ShareRange`] (deterministic, as replay requires).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_share_range(
        &mut self,
        vol: u64,
        vext: u64,
        src_vol: u64,
        src_gen: u64,
        src_vext: u64,
        count: u64,
        first_id: u64,
        durable: bool,
    ) -> Result<()> {
        let bad = |why: &str| Err(Error::Corrupt(format!("share record: {why}")));
        let Some(dst) = self.vols.get(&vol) else {
            return bad("missing destination volume");
        };
        let Some(src) = self.vols.get(&src_vol) else {
            return bad("missing source volume");
        };
        if !src.snaps.contains_key(&src_gen) || src_gen >= self.gen {
            return bad("missing source snapshot");
        }
        let in_dst = vext
            .checked_add(count)
            .is_some_and(|e| e <= self.extents_of(dst.size));
        let in_src = src_vext
            .checked_add(count)
            .is_some_and(|e| e <= self.extents_of(src.size));
        if !in_dst || !in_src {
            return bad("range beyond a volume");
        }
        let ids_ok = first_id >= self.borrows.next_id
            && first_id.checked_add(count).is_some_and(|e| e < BORROW_BIT);
        if !ids_ok {
            return bad("borrow ids reused");
        }
        let birth = self.gen;
        for i in 0..count {
            let id = first_id + i;
            self.borrows.table.insert(
                id,
                Borrow {
                    vol: src_vol,
                    gen: src_gen,
                    vext: src_vext + i,
                },
            );
            let new = Live {
                pext: BORROW_BIT | id,
                birth,
            };
            let old = self
                .vols
                .get_mut(&vol)
                .and_then(|vm| vm.live.insert(vext + i, new));
            if let Some(old) = old {
                self.retire(vol, vext + i, old, durable);
            }
        }
        self.borrows.next_id = first_id + count;
        Ok(())
    }

    /// Drops a borrow whose entry was retired for good.
    pub(crate) fn release_borrow(&mut self, pext: u64) {
        self.borrows.table.remove(&(pext & !BORROW_BIT));
    }

    /// Appends the borrow table to a checkpoint: when borrows were ever
    /// made, or when `always` (the partial-entry section, which follows,
    /// is present). Pools that never share keep the older layout.
    pub(crate) fn encode_borrows(&self, w: &mut Writer, always: bool) {
        if self.borrows.next_id == 0 && !always {
            return;
        }
        w.u64(self.borrows.next_id);
        w.u64(self.borrows.table.len() as u64);
        for (id, b) in &self.borrows.table {
            w.u64(*id);
            w.u64(b.vol);
            w.u64(b.gen);
            w.u64(b.vext);
        }
    }

    /// Reads the borrow table section of a checkpoint (absent: empty).
    pub(crate) fn decode_borrows(&mut self, r: &mut crate::format::Reader<'_>) -> Result<()> {
        if r.remaining() == 0 {
            return Ok(());
        }
        self.borrows.next_id = r.u64()?;
        let n = r.u64()?;
        if n > (r.remaining() / 32) as u64 {
            return Err(Error::Corrupt("borrow count exceeds the checkpoint".into()));
        }
        for _ in 0..n {
            let id = r.u64()?;
            let b = Borrow {
                vol: r.u64()?,
                gen: r.u64()?,
                vext: r.u64()?,
            };
            if id >= self.borrows.next_id || self.borrows.table.insert(id, b).is_some() {
                return Err(Error::Corrupt(format!("borrow {id} out of order")));
            }
        }
        Ok(())
    }

    /// Borrow invariants for `check`: every borrow entry names a borrow of
    /// the table, every borrow is named by exactly one entry, and its
    /// snapshot exists.
    pub(crate) fn check_borrows(&self, problems: &mut Vec<String>) {
        let mut named: BTreeMap<u64, u32> = BTreeMap::new();
        for vm in self.vols.values() {
            let entries = vm
                .live
                .values()
                .map(|l| l.pext)
                .chain(vm.dead.values().map(|d| d.pext));
            for p in entries.filter(|p| is_borrow(*p)) {
                *named.entry(p & !BORROW_BIT).or_default() += 1;
            }
        }
        for (id, n) in &named {
            if !self.borrows.table.contains_key(id) {
                problems.push(format!("borrow {id} is named but not in the table"));
            } else if *n > 1 {
                problems.push(format!("borrow {id} is named by {n} entries"));
            }
        }
        for (id, b) in &self.borrows.table {
            if !named.contains_key(id) {
                problems.push(format!("borrow {id} is in the table but named by no entry"));
            }
            if *id >= self.borrows.next_id {
                problems.push(format!("borrow {id} is beyond the next id"));
            }
            let snap_ok = self
                .vols
                .get(&b.vol)
                .is_some_and(|v| v.snaps.contains_key(&b.gen) && b.vext < self.extents_of(v.size));
            if !snap_ok {
                problems.push(format!(
                    "borrow {id} reads a missing snapshot {}@{}",
                    b.vol, b.gen
                ));
            }
        }
    }
}

/// Hidden share snapshots (volume, generation) that no clone and no borrow
/// uses any more, except `keep`.
fn idle_share_snapshots(meta: &Meta, keep: Option<(u64, u64)>) -> Vec<(u64, u64)> {
    meta.vols
        .values()
        .flat_map(|v| {
            v.snaps
                .iter()
                .filter(|(_, n)| n.starts_with(SHARE_SNAPSHOT_PREFIX))
                .map(move |(g, _)| (v.id, *g))
        })
        .filter(|&(v, g)| {
            Some((v, g)) != keep && !meta.has_clones(v, g) && !meta.has_borrowers(v, g)
        })
        .collect()
}

impl Pool {
    /// Makes extents `[dst_vext, dst_vext + count)` of volume `dst_vol`
    /// read what extents `[src_vext, ..)` of volume `src_vol` read at
    /// generation `src_at` ([`LIVE`] for its head, else one of its
    /// snapshots), without copying data. Durable on return. Overlapping
    /// ranges of one volume's head are refused.
    pub fn share_extents(
        &self,
        src_vol: u64,
        src_at: u64,
        src_vext: u64,
        dst_vol: u64,
        dst_vext: u64,
        count: u64,
    ) -> Result<()> {
        self.check_writable()?;
        if count == 0 {
            return Ok(());
        }
        {
            // No data I/O in flight: an in-place write that began before
            // the source is frozen must not land in it afterwards.
            let _gate = self.gate.write();
            let mut st = self.state.write();
            let m = &st.meta;
            let src = m.vol(src_vol)?;
            let dst = m.vol(dst_vol)?;
            let fits = |start: u64, size: u64| {
                start
                    .checked_add(count)
                    .is_some_and(|e| e <= m.extents_of(size))
            };
            if !fits(src_vext, src.size) || !fits(dst_vext, dst.size) {
                return Err(Error::Invalid("share range beyond a volume".into()));
            }
            let overlapping = src_vol == dst_vol
                && src_at == LIVE
                && src_vext < dst_vext + count
                && dst_vext < src_vext + count;
            if overlapping {
                return Err(Error::Invalid("overlapping share within one volume".into()));
            }
            let gen = if src_at != LIVE {
                if !src.snaps.contains_key(&src_at) {
                    return Err(Error::Deleted("snapshot"));
                }
                src_at
            } else {
                // Reuse the newest hidden snapshot when it still shows the
                // range as the head does; else freeze the head now.
                let reusable = src.snaps.iter().next_back().and_then(|(g, name)| {
                    let same = name.starts_with(SHARE_SNAPSHOT_PREFIX)
                        && (src_vext..src_vext + count).all(|v| {
                            matches!((m.lookup(src_vol, v, *g), m.lookup(src_vol, v, LIVE)),
                                (Ok(a), Ok(b)) if a == b)
                        });
                    same.then_some(*g)
                });
                match reusable {
                    Some(g) => g,
                    None => {
                        let gen = st.meta.gen;
                        let name = format!("{SHARE_SNAPSHOT_PREFIX}-{src_vol}-{gen}");
                        self.log(
                            &mut st,
                            Record::Snapshot {
                                vol: src_vol,
                                gen,
                                name,
                            },
                        )?;
                        gen
                    }
                }
            };
            let first_id = st.meta.borrows.next_id;
            self.log(
                &mut st,
                Record::ShareRange {
                    vol: dst_vol,
                    vext: dst_vext,
                    src_vol,
                    src_gen: gen,
                    src_vext,
                    count,
                    first_id,
                },
            )?;
            self.reclaim_locked(&mut st, Some((src_vol, gen)))?;
        }
        self.commit()
    }

    /// Number of hidden share snapshots the pool holds now.
    pub fn share_snapshots(&self) -> usize {
        self.state
            .read()
            .meta
            .vols
            .values()
            .flat_map(|v| v.snaps.values())
            .filter(|n| is_share_snapshot(n))
            .count()
    }

    /// Deletes the hidden share snapshots nothing borrows from (nor clones)
    /// any more. Durable on return.
    pub fn reclaim_share_snapshots(&self) -> Result<()> {
        self.check_writable()?;
        // Partial entries that read from what those snapshots keep get
        // their data first.
        let idle = idle_share_snapshots(&self.state.read().meta, None);
        // Filling for one delete can leave a neighbour to fill for after
        // that delete: repeat while a round deletes something.
        let mut before = usize::MAX;
        loop {
            for &(vol, gen) in &idle {
                self.fill_for_delete(vol, gen)?;
            }
            let left = {
                let mut st = self.state.write();
                self.reclaim_locked(&mut st, None)?;
                drop(st);
                self.share_snapshots()
            };
            if left == 0 || left >= before {
                break;
            }
            before = left;
        }
        self.commit()
    }

    fn reclaim_locked(&self, st: &mut crate::pool::State, keep: Option<(u64, u64)>) -> Result<()> {
        // Those partial entries still read from wait: a later share (or
        // `reclaim_share_snapshots`) deletes them once filled.
        let idle: Vec<(u64, u64)> = idle_share_snapshots(&st.meta, keep)
            .into_iter()
            .filter(|&(v, g)| st.meta.fill_before_delete(v, g).is_empty())
            .collect();
        for (vol, gen) in idle {
            // Each delete moves its neighbours' bounds: look again right
            // before the next one.
            if st.meta.has_clones(vol, gen)
                || st.meta.has_borrowers(vol, gen)
                || !st.meta.fill_before_delete(vol, gen).is_empty()
            {
                continue;
            }
            self.log(st, Record::DeleteSnapshot { vol, gen })?;
        }
        Ok(())
    }

    /// `BlockDevice::share_range` for a view of this pool: shares when
    /// `source` is a view of this same pool and the range is whole extents.
    pub(crate) fn share_blocks(
        self: &Arc<Self>,
        dst_vol: u64,
        dst: &crate::Geometry,
        source: &ExtentSource,
        src_lba: u64,
        dst_lba: u64,
        blocks: u64,
    ) -> std::result::Result<bool, BlockError> {
        let per = (self.layout.extent_size / self.layout.block_size.max(1)) as u64;
        let aligned = per > 0
            && source.extent_blocks == per
            && src_lba.is_multiple_of(per)
            && dst_lba.is_multiple_of(per)
            && blocks.is_multiple_of(per);
        if !Arc::ptr_eq(&source.pool, self) || !aligned || blocks == 0 {
            return Ok(false);
        }
        dst.check_range(dst_lba, blocks)?;
        match self.share_extents(
            source.volume,
            source.at,
            src_lba / per,
            dst_vol,
            dst_lba / per,
            blocks / per,
        ) {
            Ok(()) => Ok(true),
            Err(Error::Invalid(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The [`ExtentSource`] of a view of `pool`.
pub(crate) fn source_of(pool: &Arc<Pool>, vol: u64, at: u64) -> ExtentSource {
    let l = pool.layout;
    ExtentSource {
        pool: pool.clone(),
        volume: vol,
        at,
        extent_blocks: (l.extent_size / l.block_size.max(1)) as u64,
    }
}
