//! The pool's metadata in memory: volumes, their extent maps with birth
//! generations, snapshots, and free space; how each journal record changes
//! it (`apply`, deterministic so replay rebuilds exactly the same state);
//! the checkpoint encoding; and the invariant check.
//!
//! ## The sharing rule
//! Every physical extent is owned by exactly one *entry* of exactly one
//! volume: a live entry (the volume's current map) or a dead entry (a
//! retired mapping kept because a snapshot still sees it). An entry lives
//! over generations `[birth, death)`; a snapshot at generation `g` sees the
//! entries with `birth <= g < death`. When a live entry is replaced or
//! unmapped at generation `G`, it is kept as dead iff some snapshot of its
//! volume has `gen >= birth` (all snapshots are `< G`), else its extent is
//! freed. Deleting the snapshot at `g` (neighbours `p < g < n`) frees
//! exactly the dead entries with `p < birth <= g < death <= n`: no other
//! snapshot can see them. Clones never own their origin's extents: a clone
//! reads through to its origin snapshot (which cannot be deleted while the
//! clone exists) where its own map has no entry, and a *tombstone* entry
//! hides an origin extent the clone unmapped. So no extent is ever shared
//! between owners, and no reference counts are needed.
//!
//! ## Partial entries (sub-extent redirect)
//! A small write into a shared extent does not copy the rest of the extent:
//! the new entry is *partial*. Its extent holds only the granules in its
//! `valid` mask (see `Layout::granule_size`); the other granules read from
//! a *fill source*: the physical extent the volume showed just before (the
//! old entry, which the snapshot that made the write redirect keeps as a
//! dead entry; or the clone's origin extent), or zeros. A source is always
//! a full (non-partial) entry's extent, and it stays allocated while a
//! partial entry reads from it: the only way a dead source could be freed
//! is a snapshot delete, which is refused here until the partial entries
//! that read from it are filled (`Pool` fills them first); a clone's
//! origin snapshot cannot be deleted at all while the clone exists. A
//! `Fill` record marks granules as held (after an in-place write into
//! them, or after the background filler copied them); a fully held entry
//! is an ordinary one again. Partial entries are keyed by (vext, birth)
//! like dead entries, so an entry keeps its mask when it is retired.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::format::{Layout, Reader, Record, Writer, CKPT_MAGIC, TOMBSTONE, ZERO_SOURCE};

/// Entries a deleted volume or snapshot returns to the free space per
/// reclaim step (about a millisecond of work under the metadata lock).
pub const RECLAIM_BATCH: usize = 8192;

/// Generation value meaning "the live head", in lookups.
pub const LIVE: u64 = u64::MAX;

/// A live mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Physical extent, or [`TOMBSTONE`].
    pub pext: u64,
    pub birth: u64,
}

/// A retired mapping that some snapshot still sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dead {
    pub pext: u64,
    pub death: u64,
}

/// A cheap hasher for (vext, birth) keys (metadata in memory; no
/// untrusted input chooses them to collide).
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryHash;

impl std::hash::BuildHasher for EntryHash {
    type Hasher = EntryHasher;
    fn build_hasher(&self) -> EntryHasher {
        EntryHasher(0)
    }
}

/// See [`EntryHash`]: multiply-xorshift over the written words.
#[derive(Debug, Clone, Copy)]
pub struct EntryHasher(u64);

impl std::hash::Hasher for EntryHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
}

/// What a partial entry's extent does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Granules the entry's own extent holds.
    pub valid: u128,
    /// Where the other granules read from: a physical extent, or `None`
    /// for zeros.
    pub src: Option<u64>,
}

/// What a volume shows at one virtual extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Nothing mapped: zeros.
    Zeros,
    /// All of one physical extent.
    Extent(u64),
    /// Physical extent `pext` where `part.valid` says, the fill source
    /// elsewhere.
    Partial { pext: u64, part: Partial },
}

impl View {
    /// The physical extent holding (some of) the data, if any.
    pub fn pext(&self) -> Option<u64> {
        match *self {
            View::Zeros => None,
            View::Extent(p) | View::Partial { pext: p, .. } => Some(p),
        }
    }
}

/// One volume (or clone) and its snapshots.
#[derive(Debug, Clone, Default)]
pub struct VolMeta {
    pub id: u64,
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// For a clone: (origin volume id, origin snapshot generation).
    pub base: Option<(u64, u64)>,
    /// Snapshots: generation -> name.
    pub snaps: BTreeMap<u64, String>,
    pub live: BTreeMap<u64, Live>,
    /// (vext, birth) -> retired entry.
    pub dead: BTreeMap<(u64, u64), Dead>,
    /// Index of `dead` by (death, vext, birth), for snapshot delete.
    pub dead_by_death: BTreeSet<(u64, u64, u64)>,
    /// Partial entries (live or dead), by (vext, birth). Hashed: every read
    /// of a volume that has any looks here once per extent.
    pub partial: HashMap<(u64, u64), Partial, EntryHash>,
}

impl VolMeta {
    /// Newest snapshot generation, if any.
    pub fn newest_snap(&self) -> Option<u64> {
        self.snaps.keys().next_back().copied()
    }
}

/// What a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Volume(u64),
    Snapshot { vol: u64, gen: u64 },
}

/// The whole metadata state.
#[derive(Debug, Clone)]
pub struct Meta {
    pub layout: Layout,
    /// The current generation: new mappings are born in it; a snapshot
    /// takes it and moves it on by one.
    pub gen: u64,
    pub next_vol: u64,
    pub vols: BTreeMap<u64, VolMeta>,
    pub names: HashMap<String, Named>,
    /// Extents that may be allocated now.
    pub free: RoaringBitmap,
    /// Extents freed by records not yet durable: not reusable until the
    /// commit that makes those records durable.
    pub pending_free: RoaringBitmap,
    /// Extents handed to an in-flight write, not yet mapped.
    pub reserved: RoaringBitmap,
    /// Sequence number of the last record applied.
    pub last_seq: u64,
    /// Extents borrowed by copy offload (see `range_share`).
    pub borrows: crate::range_share::Borrows,
    /// Deleted volumes whose extents are still being returned to the free
    /// space, a bounded batch at a time ([`Meta::reclaim_step`]), so a
    /// delete never holds the metadata lock for time proportional to the
    /// volume. Gone from `vols` and `names`; their extents count as free in
    /// checkpoints and in [`Meta::check`].
    pub reclaim: VecDeque<VolMeta>,
    /// Deleted snapshots whose retired entries are still being freed, a
    /// bounded batch at a time (see [`SnapshotReclaim`]).
    pub snap_reclaim: VecDeque<SnapshotReclaim>,
    /// Entries per reclaim step ([`RECLAIM_BATCH`]; tests make it small).
    pub reclaim_batch: usize,
}

/// The retired entries a snapshot delete freed but has not yet removed:
/// the dead entries of `vol` with `death` in `gen + 1 ..= hi` and `birth`
/// in `(prev, gen]` (`hi` = the next snapshot, or the generation of the
/// delete when there was none). No remaining or future snapshot sees any of
/// them, and no later dead entry or later delete can fall in that set, so
/// the set is fixed at the delete; `cursor` is where the next batch starts
/// in the death index. Until removed they count as free (checkpoints list
/// their extents as free; the check treats them as reclaiming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotReclaim {
    pub vol: u64,
    pub prev: Option<u64>,
    pub gen: u64,
    pub hi: u64,
    pub cursor: (u64, u64, u64),
}

impl SnapshotReclaim {
    /// Whether the dead entry (`vext`, `birth`) retired at `death` of
    /// volume `vol` is one this delete freed.
    pub fn covers(&self, vol: u64, birth: u64, death: u64) -> bool {
        vol == self.vol
            && death > self.gen
            && death <= self.hi
            && birth <= self.gen
            && self.prev.is_none_or(|p| birth > p)
    }
}

fn corrupt<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Corrupt(msg.into()))
}

impl Meta {
    /// The metadata of a new, empty pool.
    pub fn new(layout: Layout) -> Meta {
        let mut free = RoaringBitmap::new();
        free.insert_range(0..layout.extent_count as u32);
        Meta {
            layout,
            gen: 1,
            next_vol: 1,
            vols: BTreeMap::new(),
            names: HashMap::new(),
            free,
            pending_free: RoaringBitmap::new(),
            reserved: RoaringBitmap::new(),
            last_seq: 0,
            borrows: Default::default(),
            reclaim: VecDeque::new(),
            snap_reclaim: VecDeque::new(),
            reclaim_batch: RECLAIM_BATCH,
        }
    }

    /// Whether deleted volumes or snapshots still have entries to free.
    pub fn reclaim_pending(&self) -> bool {
        !self.reclaim.is_empty() || !self.snap_reclaim.is_empty()
    }

    /// Whether the dead entry (`vext`, `birth`, retired at `death`) of
    /// `vol` was freed by a snapshot delete and waits for removal.
    pub fn doomed_pending(&self, vol: u64, birth: u64, death: u64) -> bool {
        self.snap_reclaim
            .iter()
            .any(|j| j.covers(vol, birth, death))
    }

    /// Frees up to `budget` entries (visits at most `budget` index
    /// entries) of the snapshot delete `job`; returns the number visited and
    /// whether the job is done.
    fn snapshot_reclaim_step(
        &mut self,
        job: &mut SnapshotReclaim,
        budget: usize,
        durable: bool,
    ) -> (usize, bool) {
        let Some(vm) = self.vols.get_mut(&job.vol) else {
            return (0, true);
        };
        let mut visited = 0;
        let mut doomed = Vec::new();
        let mut done = true;
        for &(death, vext, birth) in vm
            .dead_by_death
            .range(job.cursor..=(job.hi, u64::MAX, u64::MAX))
        {
            if visited == budget {
                job.cursor = (death, vext, birth);
                done = false;
                break;
            }
            visited += 1;
            if job.covers(job.vol, birth, death) {
                doomed.push((death, vext, birth));
            }
        }
        let mut freed = Vec::with_capacity(doomed.len());
        for (death, vext, birth) in doomed {
            vm.dead_by_death.remove(&(death, vext, birth));
            vm.partial.remove(&(vext, birth));
            if let Some(d) = vm.dead.remove(&(vext, birth)) {
                freed.push(d.pext);
            }
        }
        for p in freed {
            self.release(p, durable);
        }
        (visited, done)
    }

    /// Returns up to `budget` entries of deleted volumes to the free space
    /// (to `pending_free`: reusable after the next commit, which also makes
    /// the delete durable if it was not yet). Returns how many it processed.
    pub fn reclaim_step(&mut self, budget: usize) -> usize {
        let mut done = 0;
        while done < budget {
            let Some(mut job) = self.snap_reclaim.pop_front() else {
                break;
            };
            let (visited, finished) = self.snapshot_reclaim_step(&mut job, budget - done, false);
            // Count a job's end as work, so callers loop until all is done.
            done += visited.max(1);
            if !finished {
                self.snap_reclaim.push_front(job);
            }
        }
        while done < budget {
            let next = match self.reclaim.front_mut() {
                None => break,
                Some(vm) => {
                    vm.dead_by_death.pop_first();
                    vm.live
                        .pop_first()
                        .map(|(_, l)| l.pext)
                        .or_else(|| vm.dead.pop_first().map(|(_, d)| d.pext))
                }
            };
            match next {
                Some(pext) => self.release(pext, false),
                None => {
                    // Empty maps: dropping the rest (names, snapshots) is cheap.
                    self.reclaim.pop_front();
                }
            }
            done += 1;
        }
        done
    }

    /// Finishes all pending reclaim work at once.
    pub fn reclaim_all(&mut self) {
        while self.reclaim_step(1 << 16) > 0 {}
    }

    /// The extents deleted volumes and snapshots still hold, pending
    /// reclaim.
    pub fn reclaiming_extents(&self) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for job in &self.snap_reclaim {
            let Some(vm) = self.vols.get(&job.vol) else {
                continue;
            };
            for &(death, vext, birth) in vm
                .dead_by_death
                .range(job.cursor..=(job.hi, u64::MAX, u64::MAX))
            {
                if job.covers(job.vol, birth, death) {
                    match vm.dead.get(&(vext, birth)) {
                        Some(d)
                            if d.pext != TOMBSTONE && !crate::range_share::is_borrow(d.pext) =>
                        {
                            out.insert(d.pext as u32);
                        }
                        _ => {}
                    }
                }
            }
        }
        for vm in &self.reclaim {
            let owned = vm
                .live
                .values()
                .map(|l| l.pext)
                .chain(vm.dead.values().map(|d| d.pext));
            for p in owned {
                if p != TOMBSTONE && !crate::range_share::is_borrow(p) {
                    out.insert(p as u32);
                }
            }
        }
        out
    }

    /// Number of extents a volume of `size` bytes spans.
    pub fn extents_of(&self, size: u64) -> u64 {
        size.div_ceil(self.layout.extent_size as u64)
    }

    pub fn vol(&self, id: u64) -> Result<&VolMeta> {
        self.vols.get(&id).ok_or(Error::Deleted("volume"))
    }

    /// Resolves what volume `vol` at generation `at` ([`LIVE`] for the head)
    /// shows for virtual extent `vext`: `Some(pext)` or `None` (zeros). For
    /// a partial entry, its own extent (see [`Meta::resolve`]).
    pub fn lookup(&self, vol: u64, vext: u64, at: u64) -> Result<Option<u64>> {
        Ok(self.resolve(vol, vext, at)?.0.pext())
    }

    /// Number of partial entries in all volumes (not counting those of
    /// entries a snapshot delete freed, whose removal is pending).
    pub fn partial_count(&self) -> usize {
        if self.snap_reclaim.is_empty() {
            return self.vols.values().map(|v| v.partial.len()).sum();
        }
        self.partial_keys(usize::MAX).len()
    }

    /// Partial entries held in memory, freed ones included (cheap: for
    /// the cap on new ones).
    pub fn partial_held(&self) -> usize {
        self.vols.values().map(|v| v.partial.len()).sum()
    }

    /// Up to `limit` partial entries (volume, vext, birth) that may be
    /// filled: not of entries a snapshot delete freed.
    pub fn partial_keys(&self, limit: usize) -> Vec<(u64, u64, u64)> {
        let freed = |vm: &VolMeta, vext: u64, birth: u64| {
            vm.dead
                .get(&(vext, birth))
                .is_some_and(|d| self.doomed_pending(vm.id, birth, d.death))
        };
        self.vols
            .values()
            .flat_map(|vm| {
                vm.partial
                    .keys()
                    .filter(move |(x, b)| !freed(vm, *x, *b))
                    .map(move |(x, b)| (vm.id, *x, *b))
            })
            .take(limit)
            .collect()
    }

    /// Resolves what volume `vol` at generation `at` ([`LIVE`] for the head)
    /// shows for virtual extent `vext`, and whether the answer was reached
    /// through a copy-offload borrow.
    pub fn resolve(&self, vol: u64, vext: u64, at: u64) -> Result<(View, bool)> {
        let mut borrowed = false;
        let mut vol = vol;
        let mut at = at;
        let mut vext = vext;
        // A chain of clones and borrows is finite (each hop goes to an
        // older generation); the bound only guards against a damaged map.
        for _ in 0..=(self.vols.len() + self.borrows.table.len()) {
            let vm = self.vol(vol)?;
            if vext >= self.extents_of(vm.size) {
                return Ok((View::Zeros, borrowed));
            }
            let found = match vm.live.get(&vext) {
                Some(l) if at == LIVE || l.birth <= at => Some((l.pext, l.birth)),
                _ if at == LIVE => None,
                _ => match vm.dead.range((vext, 0)..=(vext, at)).next_back() {
                    Some(((_, birth), d)) if d.death > at => Some((d.pext, *birth)),
                    _ => None,
                },
            };
            if let Some((p, birth)) = found {
                if let Some(b) = self.borrowed(p)? {
                    (vol, at, vext) = (b.vol, b.gen, b.vext);
                    borrowed = true;
                    continue;
                }
                if p == TOMBSTONE {
                    return Ok((View::Zeros, borrowed));
                }
                let view = match vm.partial.get(&(vext, birth)) {
                    Some(part) => View::Partial {
                        pext: p,
                        part: *part,
                    },
                    None => View::Extent(p),
                };
                return Ok((view, borrowed));
            }
            match vm.base {
                Some((bv, bg)) => {
                    vol = bv;
                    at = bg;
                }
                None => return Ok((View::Zeros, borrowed)),
            }
        }
        corrupt("clone chain loops")
    }

    /// Whether `snapshot (vol, gen)` is the origin of some clone.
    pub fn has_clones(&self, vol: u64, gen: u64) -> bool {
        self.vols.values().any(|v| v.base == Some((vol, gen)))
    }

    /// Takes the lowest free extent for a write in flight: reserved (not
    /// allocatable, counted free by a checkpoint) until a record maps it
    /// ([`Meta::claim`]) or [`Meta::unreserve`] hands it back.
    pub fn reserve(&mut self) -> Option<u32> {
        let n = self.free.min()?;
        self.free.remove(n);
        self.reserved.insert(n);
        Some(n)
    }

    /// Hands back an extent [`Meta::reserve`] gave that no record took
    /// (once: a second call, or one for an extent since claimed, does
    /// nothing).
    pub fn unreserve(&mut self, n: u32) {
        if self.reserved.remove(n) {
            self.free.insert(n);
        }
    }

    fn claim(&mut self, pext: u64) -> Result<()> {
        if pext >= self.layout.extent_count {
            return corrupt(format!("extent {pext} beyond the pool"));
        }
        let p = pext as u32;
        if self.reserved.remove(p) || self.free.remove(p) {
            Ok(())
        } else {
            corrupt(format!("extent {pext} mapped while in use"))
        }
    }

    fn release(&mut self, pext: u64, durable: bool) {
        if crate::range_share::is_borrow(pext) {
            self.release_borrow(pext);
        } else if pext != TOMBSTONE {
            if durable {
                self.free.insert(pext as u32);
            } else {
                self.pending_free.insert(pext as u32);
            }
        }
    }

    /// Retires a live entry at the current generation: kept as dead if a
    /// snapshot sees it, else its extent is freed.
    pub(crate) fn retire(&mut self, vol: u64, vext: u64, old: Live, durable: bool) {
        let gen = self.gen;
        let keep = self
            .vols
            .get(&vol)
            .and_then(|v| v.newest_snap())
            .is_some_and(|s| s >= old.birth);
        if keep {
            if let Some(vm) = self.vols.get_mut(&vol) {
                vm.dead.insert(
                    (vext, old.birth),
                    Dead {
                        pext: old.pext,
                        death: gen,
                    },
                );
                vm.dead_by_death.insert((gen, vext, old.birth));
            }
        } else {
            if let Some(vm) = self.vols.get_mut(&vol) {
                vm.partial.remove(&(vext, old.birth));
            }
            self.release(old.pext, durable);
        }
    }

    /// Whether a partial entry written now at `vext` of `vol` may read its
    /// other granules from `src` (`None`: zeros): `src` is what the volume
    /// shows there now, a full extent reached without a borrow, which stays
    /// allocated after the new entry retires the old one (a snapshot keeps
    /// it, or it is the clone origin's).
    pub fn can_fill_from(&self, vol: u64, vext: u64, src: Option<u64>) -> bool {
        let Ok((view, borrowed)) = self.resolve(vol, vext, LIVE) else {
            return false;
        };
        let same = match (view, src) {
            (View::Zeros, None) => true,
            (View::Extent(p), Some(s)) => p == s,
            _ => false,
        };
        if !same || borrowed {
            return false;
        }
        let Some(vm) = self.vols.get(&vol) else {
            return false;
        };
        match vm.live.get(&vext) {
            // Its own old entry: kept only if a snapshot sees it.
            Some(l) if Some(l.pext) == src => vm.newest_snap().is_some_and(|s| s >= l.birth),
            _ => true,
        }
    }

    /// What deleting the snapshot of `vol` at `gen` frees (as a not yet
    /// started [`SnapshotReclaim`]): the dead entries with
    /// `prev < birth <= gen < death <= next`. The current generation stands
    /// in for a missing next snapshot: no dead entry died later.
    fn delete_job(&self, vm: &VolMeta, gen: u64) -> SnapshotReclaim {
        let prev = vm.snaps.range(..gen).next_back().map(|(g, _)| *g);
        let next = vm
            .snaps
            .range(gen.saturating_add(1)..)
            .next()
            .map(|(g, _)| *g);
        SnapshotReclaim {
            vol: vm.id,
            prev,
            gen,
            hi: next.unwrap_or(self.gen),
            cursor: (gen.saturating_add(1), 0, 0),
        }
    }

    /// Partial entries (vext, birth) of `vol` that read from an extent the
    /// delete of its snapshot at `gen` would free: they must be filled
    /// before that delete. Costs one look per partial entry of the volume.
    pub fn fill_before_delete(&self, vol: u64, gen: u64) -> Vec<(u64, u64)> {
        let Some(vm) = self.vols.get(&vol) else {
            return Vec::new();
        };
        if vm.partial.is_empty() || !vm.snaps.contains_key(&gen) {
            return Vec::new();
        }
        let job = self.delete_job(vm, gen);
        let mut out = Vec::new();
        for (&(vext, pbirth), p) in &vm.partial {
            let Some(src) = p.src else { continue };
            // The entry a partial entry replaced died when it was born.
            let replaced = vm.dead.range((vext, 0)..(vext, pbirth)).any(|((_, b), d)| {
                d.death == pbirth && d.pext == src && job.covers(vol, *b, d.death)
            });
            if replaced {
                out.push((vext, pbirth));
            }
        }
        out.sort_unstable();
        out
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.len() > crate::format::MAX_NAME {
            return corrupt(format!("bad name {name:?}"));
        }
        if self.names.contains_key(name) {
            return corrupt(format!("name {name:?} used twice"));
        }
        Ok(())
    }

    /// Applies one record. `durable` is true during replay (the record is
    /// already on disk, so freed extents are reusable at once); at run time
    /// freed extents wait in `pending_free` for the next commit.
    pub fn apply(&mut self, rec: &Record, durable: bool) -> Result<()> {
        match rec {
            Record::CreateVolume {
                id,
                name,
                size,
                base,
            } => {
                if *id < self.next_vol || self.vols.contains_key(id) {
                    return corrupt(format!("volume id {id} reused"));
                }
                self.check_name(name)?;
                if let Some((bv, bg)) = base {
                    match self.vols.get(bv) {
                        Some(b) if b.snaps.contains_key(bg) && b.size == *size => {}
                        _ => return corrupt(format!("clone {name:?} of a missing snapshot")),
                    }
                }
                self.next_vol = id
                    .checked_add(1)
                    .ok_or_else(|| Error::Corrupt("volume id overflow".into()))?;
                self.names.insert(name.clone(), Named::Volume(*id));
                self.vols.insert(
                    *id,
                    VolMeta {
                        id: *id,
                        name: name.clone(),
                        size: *size,
                        base: *base,
                        ..VolMeta::default()
                    },
                );
            }
            Record::DeleteVolume { id } => {
                let Some(vm) = self.vols.get(id) else {
                    return corrupt(format!("delete of missing volume {id}"));
                };
                if vm
                    .snaps
                    .keys()
                    .any(|g| self.has_clones(*id, *g) || self.has_outside_borrowers(*id, *g))
                {
                    return corrupt(format!("delete of volume {id} whose snapshot has clones"));
                }
                let Some(vm) = self.vols.remove(id) else {
                    return corrupt("volume vanished");
                };
                self.names.remove(&vm.name);
                for n in vm.snaps.values() {
                    self.names.remove(n);
                }
                // A pending snapshot delete of this volume ends with it.
                self.snap_reclaim.retain(|j| j.vol != *id);
                if !durable && self.borrows.table.is_empty() {
                    // At run time the extents go back in bounded batches
                    // (`reclaim_step`). Only while no copy-offload borrow
                    // exists, so borrow bookkeeping is never left stale.
                    self.reclaim.push_back(vm);
                } else {
                    for l in vm.live.values() {
                        self.release(l.pext, durable);
                    }
                    for d in vm.dead.values() {
                        self.release(d.pext, durable);
                    }
                }
            }
            Record::Snapshot { vol, gen, name } => {
                if *gen != self.gen {
                    return corrupt(format!(
                        "snapshot at generation {gen}, pool is at {}",
                        self.gen
                    ));
                }
                self.check_name(name)?;
                let Some(vm) = self.vols.get_mut(vol) else {
                    return corrupt(format!("snapshot of missing volume {vol}"));
                };
                vm.snaps.insert(*gen, name.clone());
                self.names.insert(
                    name.clone(),
                    Named::Snapshot {
                        vol: *vol,
                        gen: *gen,
                    },
                );
                self.gen = gen
                    .checked_add(1)
                    .ok_or_else(|| Error::Corrupt("generation overflow".into()))?;
            }
            Record::DeleteSnapshot { vol, gen } => {
                if self.has_clones(*vol, *gen) || self.has_borrowers(*vol, *gen) {
                    return corrupt("delete of a snapshot that has clones");
                }
                if !self.fill_before_delete(*vol, *gen).is_empty() {
                    return corrupt("delete of a snapshot whose extents partial entries read from");
                }
                let Some(vm) = self.vols.get(vol) else {
                    return corrupt(format!("snapshot delete on missing volume {vol}"));
                };
                if !vm.snaps.contains_key(gen) {
                    return corrupt(format!("delete of missing snapshot {vol}@{gen}"));
                }
                let mut job = self.delete_job(vm, *gen);
                let Some(name) = self.vols.get_mut(vol).and_then(|vm| vm.snaps.remove(gen)) else {
                    return corrupt(format!("delete of missing snapshot {vol}@{gen}"));
                };
                self.names.remove(&name);
                if durable || !self.borrows.table.is_empty() {
                    // Replay (freed extents are reusable at once), or a
                    // pool with copy-offload borrows (kept simple: all now).
                    self.snapshot_reclaim_step(&mut job, usize::MAX, durable);
                } else {
                    // At run time: one batch now (small deletes end here),
                    // the rest a batch per later write or commit.
                    let batch = self.reclaim_batch;
                    let (_, done) = self.snapshot_reclaim_step(&mut job, batch, false);
                    if !done {
                        self.snap_reclaim.push_back(job);
                    }
                }
            }
            Record::Map {
                vol,
                vext,
                pext,
                birth,
            } => self.apply_map(*vol, *vext, *pext, *birth, None, durable)?,
            Record::MapPartial {
                vol,
                vext,
                pext,
                birth,
                src,
                valid,
            } => {
                let full = self.layout.full_mask();
                if *valid == 0 || *valid & !full != 0 || *valid == full {
                    return corrupt(format!(
                        "partial map of volume {vol} extent {vext}: bad mask"
                    ));
                }
                let src = match *src {
                    ZERO_SOURCE => None,
                    s if s < self.layout.extent_count && s != *pext => Some(s),
                    _ => {
                        return corrupt(format!(
                            "partial map of volume {vol} extent {vext}: bad source"
                        ))
                    }
                };
                let part = Partial { valid: *valid, src };
                self.apply_map(*vol, *vext, *pext, *birth, Some(part), durable)?;
            }
            Record::Fill {
                vol,
                vext,
                birth,
                valid,
            } => {
                let full = self.layout.full_mask();
                // An entry a snapshot delete freed is gone, even while its
                // removal is pending (replay removes it at once).
                let freed = self
                    .vols
                    .get(vol)
                    .and_then(|vm| vm.dead.get(&(*vext, *birth)))
                    .is_some_and(|d| self.doomed_pending(*vol, *birth, d.death));
                let Some(p) = self
                    .vols
                    .get_mut(vol)
                    .and_then(|vm| vm.partial.get_mut(&(*vext, *birth)))
                    .filter(|_| !freed)
                else {
                    return corrupt(format!("fill of volume {vol} extent {vext}: not partial"));
                };
                if *valid & !full != 0 {
                    return corrupt(format!("fill of volume {vol} extent {vext}: bad mask"));
                }
                p.valid |= *valid;
                if p.valid == full {
                    if let Some(vm) = self.vols.get_mut(vol) {
                        vm.partial.remove(&(*vext, *birth));
                    }
                }
            }
            Record::Unmap { vol, vext } => {
                let Some(vm) = self.vols.get(vol) else {
                    return corrupt(format!("unmap on missing volume {vol}"));
                };
                let base_maps = match vm.base {
                    Some((bv, bg)) => self.lookup(bv, *vext, bg)?.is_some(),
                    None => false,
                };
                let gen = self.gen;
                let Some(vm) = self.vols.get_mut(vol) else {
                    return corrupt("volume vanished");
                };
                match vm.live.get(vext).copied() {
                    Some(l) if l.pext == TOMBSTONE && base_maps => {}
                    Some(old) => {
                        vm.live.remove(vext);
                        if base_maps {
                            vm.live.insert(
                                *vext,
                                Live {
                                    pext: TOMBSTONE,
                                    birth: gen,
                                },
                            );
                        }
                        self.retire(*vol, *vext, old, durable);
                    }
                    None if base_maps => {
                        vm.live.insert(
                            *vext,
                            Live {
                                pext: TOMBSTONE,
                                birth: gen,
                            },
                        );
                    }
                    None => {}
                }
            }
            Record::ShareRange {
                vol,
                vext,
                src_vol,
                src_gen,
                src_vext,
                count,
                first_id,
            } => self.apply_share_range(
                *vol, *vext, *src_vol, *src_gen, *src_vext, *count, *first_id, durable,
            )?,
        }
        Ok(())
    }

    /// `Map` and `MapPartial`: `vext` of `vol` now maps `pext`, born at the
    /// current generation; the old entry is retired.
    fn apply_map(
        &mut self,
        vol: u64,
        vext: u64,
        pext: u64,
        birth: u64,
        part: Option<Partial>,
        durable: bool,
    ) -> Result<()> {
        let Some(vm) = self.vols.get(&vol) else {
            return corrupt(format!("map on missing volume {vol}"));
        };
        if vext >= self.extents_of(vm.size) || birth != self.gen {
            return corrupt(format!("bad map record for volume {vol} extent {vext}"));
        }
        self.claim(pext)?;
        let new = Live { pext, birth };
        let old = self
            .vols
            .get_mut(&vol)
            .and_then(|vm| vm.live.insert(vext, new));
        if let Some(old) = old {
            self.retire(vol, vext, old, durable);
        }
        if let (Some(part), Some(vm)) = (part, self.vols.get_mut(&vol)) {
            vm.partial.insert((vext, birth), part);
        }
        Ok(())
    }

    /// Encodes the checkpoint blob (see FORMAT.md). Extents pending free or
    /// reserved count as free: the checkpoint covers the records that freed
    /// them, and a reservation does not survive a restart.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(CKPT_MAGIC);
        w.u64(self.last_seq);
        w.u64(self.gen);
        w.u64(self.next_vol);
        w.u32(self.vols.len() as u32);
        for vm in self.vols.values() {
            w.u64(vm.id);
            w.name(&vm.name);
            w.u64(vm.size);
            let (bv, bg) = vm.base.unwrap_or((u64::MAX, u64::MAX));
            w.u64(bv);
            w.u64(bg);
            w.u32(vm.snaps.len() as u32);
            for (g, n) in &vm.snaps {
                w.u64(*g);
                w.name(n);
            }
            w.u64(vm.live.len() as u64);
            for (vext, l) in &vm.live {
                w.u64(*vext);
                w.u64(l.pext);
                w.u64(l.birth);
            }
            // Entries a snapshot delete freed but has not removed yet are
            // left out (their extents are written as free below).
            let dead: Vec<_> = vm
                .dead
                .iter()
                .filter(|((_, birth), d)| !self.doomed_pending(vm.id, *birth, d.death))
                .collect();
            w.u64(dead.len() as u64);
            for ((vext, birth), d) in dead {
                w.u64(*vext);
                w.u64(*birth);
                w.u64(d.pext);
                w.u64(d.death);
            }
        }
        let mut free = self.free.clone();
        free |= &self.pending_free;
        free |= &self.reserved;
        free |= self.reclaiming_extents();
        let mut fb = Vec::with_capacity(free.serialized_size());
        // Serializing into a Vec cannot fail.
        let _ = free.serialize_into(&mut fb);
        w.u64(fb.len() as u64);
        w.bytes(&fb);
        // Partial entries of entries a snapshot delete freed are left out
        // with them.
        let mut partials = Vec::new();
        for vm in self.vols.values() {
            let mut keyed: Vec<_> = vm
                .partial
                .iter()
                .filter(|((vext, birth), _)| {
                    !vm.dead
                        .get(&(*vext, *birth))
                        .is_some_and(|d| self.doomed_pending(vm.id, *birth, d.death))
                })
                .collect();
            keyed.sort_unstable_by_key(|(k, _)| **k);
            partials.extend(keyed.into_iter().map(|(k, p)| (vm.id, *k, *p)));
        }
        // The partial section follows the borrow section, so that one is
        // written (maybe empty) whenever partial entries exist.
        self.encode_borrows(&mut w, !partials.is_empty());
        if !partials.is_empty() {
            w.u64(partials.len() as u64);
            for (vol, (vext, birth), p) in partials {
                w.u64(vol);
                w.u64(vext);
                w.u64(birth);
                w.u64(p.src.unwrap_or(ZERO_SOURCE));
                w.u128(p.valid);
            }
        }
        w.0
    }

    /// Decodes a checkpoint blob (already checksum-verified) and validates
    /// it: every mapped extent inside the pool and mapped once, names
    /// unique, clone origins present.
    pub fn decode_checkpoint(layout: Layout, buf: &[u8]) -> Result<Meta> {
        let mut r = Reader::new(buf, "checkpoint");
        if r.take(8)? != CKPT_MAGIC {
            return corrupt("checkpoint magic");
        }
        let mut m = Meta::new(layout);
        m.free = RoaringBitmap::new();
        m.last_seq = r.u64()?;
        m.gen = r.u64()?;
        m.next_vol = r.u64()?;
        let nvols = r.u32()?;
        for _ in 0..nvols {
            let mut vm = VolMeta {
                id: r.u64()?,
                name: r.name()?,
                size: r.u64()?,
                ..VolMeta::default()
            };
            let bv = r.u64()?;
            let bg = r.u64()?;
            vm.base = (bv != u64::MAX).then_some((bv, bg));
            let nsnaps = r.u32()?;
            for _ in 0..nsnaps {
                let g = r.u64()?;
                let n = r.name()?;
                if g >= m.gen {
                    return corrupt("snapshot from the future");
                }
                vm.snaps.insert(g, n);
            }
            let nlive = r.u64()?;
            if nlive > (r.remaining() / 24) as u64 {
                return corrupt("live map count exceeds the checkpoint");
            }
            for _ in 0..nlive {
                let vext = r.u64()?;
                let pext = r.u64()?;
                let birth = r.u64()?;
                vm.live.insert(vext, Live { pext, birth });
            }
            let ndead = r.u64()?;
            if ndead > (r.remaining() / 32) as u64 {
                return corrupt("dead map count exceeds the checkpoint");
            }
            for _ in 0..ndead {
                let vext = r.u64()?;
                let birth = r.u64()?;
                let pext = r.u64()?;
                let death = r.u64()?;
                vm.dead.insert((vext, birth), Dead { pext, death });
                vm.dead_by_death.insert((death, vext, birth));
            }
            if vm.id >= m.next_vol || m.vols.contains_key(&vm.id) {
                return corrupt(format!("volume id {} out of order", vm.id));
            }
            if m.names
                .insert(vm.name.clone(), Named::Volume(vm.id))
                .is_some()
            {
                return corrupt(format!("name {:?} used twice", vm.name));
            }
            for (g, n) in &vm.snaps {
                if m.names
                    .insert(
                        n.clone(),
                        Named::Snapshot {
                            vol: vm.id,
                            gen: *g,
                        },
                    )
                    .is_some()
                {
                    return corrupt(format!("name {n:?} used twice"));
                }
            }
            m.vols.insert(vm.id, vm);
        }
        let flen = r.u64()?;
        let fb = r.take(usize::try_from(flen).unwrap_or(usize::MAX))?;
        m.free = RoaringBitmap::deserialize_from(fb)
            .map_err(|e| Error::Corrupt(format!("checkpoint free-space bitmap: {e}")))?;
        m.decode_borrows(&mut r)?;
        if r.remaining() > 0 {
            let n = r.u64()?;
            if n > (r.remaining() / 48) as u64 {
                return corrupt("partial entry count exceeds the checkpoint");
            }
            let full = layout.full_mask();
            for _ in 0..n {
                let vol = r.u64()?;
                let vext = r.u64()?;
                let birth = r.u64()?;
                let src = r.u64()?;
                let valid = r.u128()?;
                if valid == 0 || valid & !full != 0 || valid == full {
                    return corrupt("partial entry with a bad mask");
                }
                let src = (src != ZERO_SOURCE).then_some(src);
                let Some(vm) = m.vols.get_mut(&vol) else {
                    return corrupt(format!("partial entry of missing volume {vol}"));
                };
                if vm
                    .partial
                    .insert((vext, birth), Partial { valid, src })
                    .is_some()
                {
                    return corrupt("partial entry listed twice");
                }
            }
        }
        r.end()?;
        for vm in m.vols.values() {
            if let Some((bv, bg)) = vm.base {
                if !m.vols.get(&bv).is_some_and(|b| b.snaps.contains_key(&bg)) {
                    return corrupt(format!("clone {:?} of a missing snapshot", vm.name));
                }
            }
        }
        let report = m.check();
        if !report.is_clean() {
            return corrupt(format!("checkpoint fails its check: {}", report.summary()));
        }
        Ok(m)
    }

    /// Verifies every metadata invariant.
    pub fn check(&self) -> CheckReport {
        let n = self.layout.extent_count;
        let mut owners: HashMap<u64, u32> = HashMap::new();
        let mut problems = Vec::new();
        let mut unreachable = 0u64;
        // Extents of partial entries, and the fill sources they read from.
        let mut partial_extents: BTreeSet<u64> = BTreeSet::new();
        let mut fill_sources: Vec<(String, u64, u64)> = Vec::new();
        let full = self.layout.full_mask();
        for vm in self.vols.values() {
            for (&(vext, birth), p) in &vm.partial {
                let freed = vm
                    .dead
                    .get(&(vext, birth))
                    .is_some_and(|d| self.doomed_pending(vm.id, birth, d.death));
                if freed {
                    continue;
                }
                let pext = match vm.live.get(&vext) {
                    Some(l) if l.birth == birth => Some(l.pext),
                    _ => vm.dead.get(&(vext, birth)).map(|d| d.pext),
                };
                match pext {
                    Some(pext) if pext != TOMBSTONE && !crate::range_share::is_borrow(pext) => {
                        partial_extents.insert(pext);
                    }
                    _ => problems.push(format!(
                        "volume {:?}: partial entry for extent {vext} born {birth} has no extent",
                        vm.name
                    )),
                }
                if p.valid == 0 || p.valid & !full != 0 || p.valid == full {
                    problems.push(format!(
                        "volume {:?}: partial entry for extent {vext} has mask {:#x}",
                        vm.name, p.valid
                    ));
                }
                if let Some(src) = p.src {
                    fill_sources.push((vm.name.clone(), vext, src));
                    // The source is what the volume showed there just
                    // before: the entry this one replaced (retired when
                    // this one was born), or the clone origin's view. Only
                    // those are kept for it (see `fill_before_delete`).
                    let own = vm
                        .dead
                        .range((vext, 0)..(vext, birth))
                        .any(|(_, d)| d.death == birth && d.pext == src);
                    let origin = vm.base.is_some_and(|(bv, bg)| {
                        matches!(self.resolve(bv, vext, bg), Ok((View::Extent(x), false)) if x == src)
                    });
                    if !own && !origin {
                        problems.push(format!(
                            "volume {:?}: extent {vext} fills from physical extent {src}, which is neither the entry it replaced nor its origin's",
                            vm.name
                        ));
                    }
                }
            }
        }
        for vm in self.vols.values() {
            let extents = self.extents_of(vm.size);
            for (vext, l) in &vm.live {
                if *vext >= extents {
                    problems.push(format!(
                        "volume {:?}: extent {vext} beyond its size",
                        vm.name
                    ));
                }
                if l.birth > self.gen {
                    problems.push(format!(
                        "volume {:?}: extent {vext} born in the future",
                        vm.name
                    ));
                }
                if l.pext != TOMBSTONE && !crate::range_share::is_borrow(l.pext) {
                    *owners.entry(l.pext).or_default() += 1;
                }
            }
            for ((vext, birth), d) in &vm.dead {
                if self.doomed_pending(vm.id, *birth, d.death) {
                    // Freed by a snapshot delete, removal pending: counts
                    // as reclaiming (free) below.
                    continue;
                }
                if *birth >= d.death || d.death > self.gen {
                    problems.push(format!(
                        "volume {:?}: retired extent {vext} has lifetime [{birth}, {})",
                        vm.name, d.death
                    ));
                }
                if !vm.dead_by_death.contains(&(d.death, *vext, *birth)) {
                    problems.push(format!(
                        "volume {:?}: death index misses extent {vext}",
                        vm.name
                    ));
                }
                let seen = *birth < d.death && vm.snaps.range(*birth..d.death).next().is_some();
                if !seen {
                    unreachable += 1;
                    problems.push(format!(
                        "volume {:?}: retired extent {vext} (physical {}) is seen by no snapshot",
                        vm.name, d.pext
                    ));
                }
                if d.pext != TOMBSTONE && !crate::range_share::is_borrow(d.pext) {
                    *owners.entry(d.pext).or_default() += 1;
                }
            }
            if vm.dead_by_death.len() != vm.dead.len() {
                problems.push(format!("volume {:?}: death index size differs", vm.name));
            }
            if let Some((bv, bg)) = vm.base {
                if !self
                    .vols
                    .get(&bv)
                    .is_some_and(|b| b.snaps.contains_key(&bg))
                {
                    problems.push(format!("clone {:?}: origin snapshot missing", vm.name));
                }
            }
        }
        for (name, vext, src) in fill_sources {
            if !owners.contains_key(&src) || partial_extents.contains(&src) {
                problems.push(format!(
                    "volume {name:?}: extent {vext} fills from physical extent {src}, which no full entry owns"
                ));
            }
        }
        // Extents of deleted volumes not yet returned count as free.
        let reclaiming = self.reclaiming_extents();
        let mut doubly_mapped = Vec::new();
        let mut out_of_range = Vec::new();
        let mut mapped_and_free = Vec::new();
        for (&p, &count) in &owners {
            if p >= n {
                out_of_range.push(p);
                continue;
            }
            if count > 1 {
                doubly_mapped.push(p);
            }
            let p32 = p as u32;
            if self.free.contains(p32)
                || self.pending_free.contains(p32)
                || self.reserved.contains(p32)
                || reclaiming.contains(p32)
            {
                mapped_and_free.push(p);
            }
        }
        let mut leaked = Vec::new();
        let mut free_count = 0u64;
        for p in 0..n {
            let p32 = p as u32;
            let is_free = self.free.contains(p32)
                || self.pending_free.contains(p32)
                || self.reserved.contains(p32)
                || reclaiming.contains(p32);
            if is_free {
                free_count += 1;
            } else if !owners.contains_key(&p) {
                leaked.push(p);
            }
        }
        self.check_borrows(&mut problems);
        if self.free.max().is_some_and(|m| m as u64 >= n) {
            problems.push("free-space bitmap holds extents beyond the pool".into());
        }
        doubly_mapped.sort_unstable();
        out_of_range.sort_unstable();
        mapped_and_free.sort_unstable();
        CheckReport {
            extents: n,
            free: free_count,
            mapped: owners.len() as u64,
            leaked,
            doubly_mapped,
            mapped_and_free,
            out_of_range,
            unreachable,
            problems,
        }
    }
}

/// What [`Meta::check`] (and `Pool::check`) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Extents in the pool.
    pub extents: u64,
    /// Extents free (including pending and reserved).
    pub free: u64,
    /// Distinct extents some mapping points at.
    pub mapped: u64,
    /// Extents neither free nor mapped.
    pub leaked: Vec<u64>,
    /// Extents mapped by more than one entry.
    pub doubly_mapped: Vec<u64>,
    /// Extents both mapped and free.
    pub mapped_and_free: Vec<u64>,
    /// Mappings pointing past the end of the pool.
    pub out_of_range: Vec<u64>,
    /// Retired mappings no snapshot can see (space that can never be freed).
    pub unreachable: u64,
    /// Every problem, in words.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// True when no invariant is broken.
    pub fn is_clean(&self) -> bool {
        self.leaked.is_empty()
            && self.doubly_mapped.is_empty()
            && self.mapped_and_free.is_empty()
            && self.out_of_range.is_empty()
            && self.problems.is_empty()
    }

    /// One line for logs and errors.
    pub fn summary(&self) -> String {
        format!(
            "{} extents, {} free, {} mapped, {} leaked, {} mapped twice, {} mapped and free, {} out of range, {} other problems{}",
            self.extents,
            self.free,
            self.mapped,
            self.leaked.len(),
            self.doubly_mapped.len(),
            self.mapped_and_free.len(),
            self.out_of_range.len(),
            self.problems.len(),
            self.problems.first().map(|p| format!(" (first: {p})")).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Meta {
        let layout = Layout::plan(8 << 20, 4096, 512, None).unwrap();
        let mut m = Meta::new(layout);
        let recs = [
            Record::CreateVolume {
                id: 1,
                name: "v".into(),
                size: 1 << 20,
                base: None,
            },
            Record::Map {
                vol: 1,
                vext: 0,
                pext: 5,
                birth: 1,
            },
            Record::Map {
                vol: 1,
                vext: 3,
                pext: 6,
                birth: 1,
            },
            Record::Snapshot {
                vol: 1,
                gen: 1,
                name: "s".into(),
            },
            Record::Map {
                vol: 1,
                vext: 0,
                pext: 7,
                birth: 2,
            },
            Record::CreateVolume {
                id: 2,
                name: "c".into(),
                size: 1 << 20,
                base: Some((1, 1)),
            },
            Record::Unmap { vol: 2, vext: 3 },
        ];
        for r in &recs {
            m.apply(r, true).unwrap();
            m.last_seq += 1;
        }
        assert!(m.check().is_clean(), "{}", m.check().summary());
        m
    }

    #[test]
    fn checkpoint_roundtrip() {
        let m = sample();
        let blob = m.encode_checkpoint();
        let back = Meta::decode_checkpoint(m.layout, &blob).unwrap();
        assert_eq!(back.encode_checkpoint(), blob);
        assert_eq!(back.lookup(2, 0, LIVE).unwrap(), Some(5));
        assert_eq!(back.lookup(2, 3, LIVE).unwrap(), None);
        assert_eq!(back.lookup(1, 0, 1).unwrap(), Some(5));
        assert_eq!(back.lookup(1, 0, LIVE).unwrap(), Some(7));
    }

    /// A partial entry must fill from the entry it replaced (or its
    /// origin's): any other source is one a snapshot delete would not keep
    /// for it, and the check says so before anything is freed.
    #[test]
    fn check_rejects_a_fill_source_it_would_not_keep() {
        let layout = Layout::plan(64 << 20, 64 << 10, 512, None).unwrap();
        let build = |src: u64| {
            let mut m = Meta::new(layout);
            let recs = [
                Record::CreateVolume {
                    id: 1,
                    name: "v".into(),
                    size: 1 << 20,
                    base: None,
                },
                Record::Map {
                    vol: 1,
                    vext: 0,
                    pext: 0,
                    birth: 1,
                },
                Record::Map {
                    vol: 1,
                    vext: 1,
                    pext: 1,
                    birth: 1,
                },
                Record::Snapshot {
                    vol: 1,
                    gen: 1,
                    name: "s".into(),
                },
                Record::MapPartial {
                    vol: 1,
                    vext: 0,
                    pext: 2,
                    birth: 2,
                    src,
                    valid: 1,
                },
                Record::Map {
                    vol: 1,
                    vext: 1,
                    pext: 3,
                    birth: 2,
                },
            ];
            for r in &recs {
                m.apply(r, true).unwrap();
            }
            m
        };
        let good = build(0);
        assert!(good.check().is_clean(), "{}", good.check().summary());
        assert_eq!(good.fill_before_delete(1, 1), vec![(0, 2)]);
        let bad = build(1);
        assert!(
            !bad.check().is_clean(),
            "the neighbour's extent is no fill source"
        );
    }

    proptest! {
        /// Damaged checkpoints decode to a value or an error, never a panic.
        #[test]
        fn damaged_checkpoint_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let m = sample();
            let mut blob = m.encode_checkpoint();
            for (at, x) in flips {
                let i = at % blob.len();
                blob[i] ^= x | 1;
            }
            let _ = Meta::decode_checkpoint(m.layout, &blob);
            let _ = Meta::decode_checkpoint(m.layout, &blob[..cut % (blob.len() + 1)]);
        }

        /// Arbitrary (checksum-valid) records applied to a real state are
        /// accepted or refused as corruption, never a panic.
        #[test]
        fn arbitrary_records_never_panic(recs in proptest::collection::vec(
            (0u8..8, any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()), 1..20)) {
            let mut m = sample();
            for (t, a, b, c, d, small) in recs {
                let f = |v: u64| if small { v % 12 } else { v };
                let rec = match t {
                    0 => Record::CreateVolume { id: f(a), name: format!("n{b}"), size: f(c), base: small.then_some((f(d), f(a))) },
                    1 => Record::DeleteVolume { id: f(a) },
                    2 => Record::Snapshot { vol: f(a), gen: f(b), name: format!("s{c}") },
                    3 => Record::DeleteSnapshot { vol: f(a), gen: f(b) },
                    4 => Record::Map { vol: f(a), vext: f(b), pext: f(c), birth: f(d) },
                    5 => Record::MapPartial { vol: f(a), vext: f(b), pext: f(c), birth: f(d), src: f(d ^ a), valid: (c as u128) << (a % 100) },
                    6 => Record::Fill { vol: f(a), vext: f(b), birth: f(c), valid: d as u128 },
                    _ => Record::Unmap { vol: f(a), vext: f(b) },
                };
                let _ = m.apply(&rec, false);
                let _ = m.check();
            }
        }
    }
}
