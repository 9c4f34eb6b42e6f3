//! A pool: one backing file or device split into fixed-size extents, the
//! metadata state, and the commit protocol that makes it durable.
//!
//! ## Commit protocol
//! Metadata changes are applied in memory and appended, as framed records,
//! to an in-memory journal buffer. `commit` (run by `flush`, by FUA writes,
//! by every management operation, and when the buffer grows large):
//! 1. `sync` the store, so every data write a buffered record points at is
//!    durable before the record can be;
//! 2. write the buffer at the journal tail and `sync` again;
//! 3. only then return extents freed by those records to the allocator
//!    (after waiting out in-flight I/O that may still touch them).
//!
//! When the journal region is full (and at open and close) a checkpoint
//! writes the whole state to the checkpoint area not named by the current
//! superblock, syncs, then writes the next superblock into the other slot
//! and syncs: the highest valid superblock sequence wins at open, and its
//! sequence is the epoch every following journal record must carry, so
//! records of older epochs are never replayed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::backend::{Backend, FileBackend};
use crate::block_device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::{Layout, Record, Superblock, SB_SLOT};
use crate::meta::{CheckReport, Meta, Named};
use crate::volume::{Snapshot, Volume};

/// Default extent size: 64 KiB.
pub const DEFAULT_EXTENT_SIZE: u32 = 64 << 10;
/// Journal buffer size that triggers a commit without a flush.
pub(crate) const AUTO_COMMIT_BYTES: usize = 1 << 20;

/// How far past the lowest free extent the background thread keeps the
/// store allocated, and how much it allocates at a time (one `fallocate`,
/// which holds the file's lock while it runs).
pub(crate) const PREALLOC_WINDOW: u64 = 256 << 20;
pub(crate) const PREALLOC_STEP: u64 = 32 << 20;
const STRIPES: usize = 1024;
/// The background filler's period, the quiet time it waits for, and the
/// partial entries it fills per tick.
const FILL_TICK: std::time::Duration = std::time::Duration::from_millis(20);
const FILL_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
const FILL_BATCH: usize = 64;

/// How to create a pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Total size of the pool file in bytes (metadata included).
    pub size: u64,
    /// Extent size in bytes: a power of two, 4 KiB to 64 MiB.
    pub extent_size: u32,
    /// Logical block size of the volumes: 512 or 4096.
    pub block_size: u32,
    /// Journal region size; `None` sizes it from the pool.
    pub journal_len: Option<u64>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 0,
            extent_size: DEFAULT_EXTENT_SIZE,
            block_size: 512,
            journal_len: None,
        }
    }
}

/// Everything the mutable metadata lock protects.
pub(crate) struct State {
    pub meta: Meta,
    /// Framed records applied but not yet written.
    pub journal: Vec<u8>,
    /// Epoch new records carry (the sequence of the superblock they follow).
    pub epoch: u64,
    /// Fills applied to `meta` whose `Fill` records are not encoded yet,
    /// by (volume, virtual extent): (birth, granules). See
    /// [`Pool::log_fill_deferred`].
    pub deferred_fills: HashMap<(u64, u64), (u64, u128), crate::meta::EntryHash>,
}

struct CommitState {
    /// Highest commit request number a finished commit covers.
    covered: u64,
    sb: Superblock,
    /// Bytes of the journal region used in the current epoch.
    tail: u64,
}

/// A copy-on-write extent pool. Share it as `Arc<Pool>`; volumes and
/// snapshots are cheap handles holding that `Arc`.
pub struct Pool {
    pub(crate) backend: Box<dyn Backend>,
    path: Option<PathBuf>,
    pub(crate) layout: Layout,
    nonce: u64,
    read_only: bool,
    pub(crate) state: RwLock<State>,
    commit: Mutex<CommitState>,
    /// Commit requests made so far (for group commit).
    commit_requests: AtomicU64,
    /// Data I/O holds this shared; returning freed extents to the allocator
    /// takes it exclusively, so no read or write still in flight can touch
    /// an extent after it is reused.
    pub(crate) gate: RwLock<()>,
    stripes: Vec<Mutex<()>>,
    failed: AtomicBool,
    /// When the pool was opened, and when (milliseconds after that) the
    /// background filler last saw `wrote` set: its idle test.
    opened: std::time::Instant,
    last_write_ms: AtomicU64,
    /// Set by every data write, cleared by the filler each tick (a flag,
    /// not a clock read per write: the write path stays clock-free).
    wrote: AtomicBool,
    /// Extents an inline write reserved and could not hand back because
    /// the metadata lock was busy (it never waits for it); the next commit,
    /// `maybe_commit` (every blocking write) or background tick returns
    /// them to the free space. A checkpoint counts them free meanwhile.
    pub(crate) orphans: Mutex<Vec<u32>>,
    /// Byte offset below which the store was preallocated, from the lowest
    /// free extent up ([`Pool::preallocate_ahead`]); `u64::MAX` once the
    /// store turned out not to support it.
    pub(crate) prealloc_end: AtomicU64,
}

/// One volume as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: u64,
    pub name: String,
    pub size: u64,
    /// For a clone, the snapshot it was made from.
    pub origin: Option<String>,
    /// Names of its snapshots, oldest first.
    pub snapshots: Vec<String>,
    /// Extents its live map holds.
    pub mapped_extents: u64,
}

/// One snapshot as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub volume: String,
    pub generation: u64,
    pub size: u64,
    /// Clones made from it.
    pub clones: Vec<String>,
}

/// Pool facts for `pool info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub path: Option<PathBuf>,
    pub block_size: u32,
    pub extent_size: u32,
    pub extents: u64,
    pub free_extents: u64,
    pub data_offset: u64,
    pub journal_bytes: u64,
    pub checkpoint_area_bytes: u64,
    pub generation: u64,
    pub volumes: usize,
    pub snapshots: usize,
}

fn new_nonce() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    crate::sim::SplitMix(t ^ ((std::process::id() as u64) << 32) ^ addr).next_u64()
}

fn valid_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > crate::format::MAX_NAME || name.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "name {name:?} must be 1 to 255 bytes without control characters"
        )));
    }
    Ok(())
}

impl Pool {
    /// Creates a pool file of `size` bytes with `extent_size` extents and
    /// 512-byte blocks. Fails if `path` already holds a pool (or anything
    /// non-empty).
    pub fn create(path: impl AsRef<Path>, size: u64, extent_size: u32) -> Result<Arc<Pool>> {
        Pool::create_with(
            path,
            &PoolOptions {
                size,
                extent_size,
                ..PoolOptions::default()
            },
        )
    }

    /// Creates a pool with full options.
    pub fn create_with(path: impl AsRef<Path>, opts: &PoolOptions) -> Result<Arc<Pool>> {
        let path = path.as_ref();
        let backend = FileBackend::open(path, true)?;
        if backend.len()? > 0 && !backend.path().starts_with("/dev/") {
            return Err(Error::Invalid(format!(
                "{} already exists and is not empty; refusing to overwrite it",
                path.display()
            )));
        }
        Pool::create_on(Box::new(backend), Some(path.to_path_buf()), opts)
    }

    /// Opens an existing pool read-write, replaying its journal.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Pool>> {
        let path = path.as_ref();
        let backend = FileBackend::open(path, false)?;
        Pool::open_on(Box::new(backend), Some(path.to_path_buf()), false)
    }

    /// Opens an existing pool without writing to it (info, check, export).
    /// The lock is still taken.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Arc<Pool>> {
        let path = path.as_ref();
        let backend = FileBackend::open(path, false)?;
        Pool::open_on(Box::new(backend), Some(path.to_path_buf()), true)
    }

    /// Opens the pool at `path`, or creates it (sparse, `size` bytes, 64 KiB
    /// extents) when the file is missing or empty. Parent directories are
    /// created. This is what `ironlun serve` calls.
    pub fn open_or_create(path: impl AsRef<Path>, size: u64) -> Result<Arc<Pool>> {
        let path = path.as_ref();
        let exists = std::fs::metadata(path)
            .map(|m| m.len() > 0 || !m.is_file())
            .unwrap_or(false);
        if exists {
            return Pool::open(path);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Pool::create(path, size, DEFAULT_EXTENT_SIZE)
    }

    /// Creates a pool on any backend (tests use [`crate::sim::SimBackend`]).
    pub fn create_on(
        backend: Box<dyn Backend>,
        path: Option<PathBuf>,
        opts: &PoolOptions,
    ) -> Result<Arc<Pool>> {
        let layout = Layout::plan(
            opts.size,
            opts.extent_size,
            opts.block_size,
            opts.journal_len,
        )?;
        backend.set_len(layout.total_len())?;
        if backend.len()? < layout.total_len() {
            return Err(Error::Invalid(format!(
                "store holds {} bytes, the pool needs {}",
                backend.len()?,
                layout.total_len()
            )));
        }
        let meta = Meta::new(layout);
        let blob = meta.encode_checkpoint();
        if blob.len() as u64 > layout.ckpt_len {
            return Err(Error::MetadataFull {
                needed: blob.len() as u64,
                area: layout.ckpt_len,
            });
        }
        backend.write_at(&blob, layout.ckpt_offset[0])?;
        let sb = Superblock {
            seq: 1,
            nonce: new_nonce(),
            layout,
            ckpt_area: 0,
            ckpt_crc: crc32c::crc32c(&blob),
            ckpt_bytes: blob.len() as u64,
            journal_first_seq: 1,
        };
        // Slot 0 is cleared so an older pool's superblock on a reused
        // device cannot outrank this one; seq 1 goes to slot 1.
        backend.write_at(&vec![0u8; SB_SLOT as usize], 0)?;
        backend.write_at(&sb.encode(), SB_SLOT)?;
        backend.sync()?;
        Pool::open_on(backend, path, false)
    }

    /// Opens a pool on any backend: picks the newest valid superblock, loads
    /// its checkpoint, replays the journal, and (unless `read_only`) writes
    /// a fresh checkpoint so the next epoch starts clean.
    pub fn open_on(
        backend: Box<dyn Backend>,
        path: Option<PathBuf>,
        read_only: bool,
    ) -> Result<Arc<Pool>> {
        let len = backend.len()?;
        if len < 2 * SB_SLOT {
            return Err(Error::NotAPool(format!("store is only {len} bytes")));
        }
        let mut best: Option<Superblock> = None;
        let mut slot_err = None;
        for slot in 0..2 {
            let mut buf = vec![0u8; SB_SLOT as usize];
            backend.read_at(&mut buf, slot * SB_SLOT)?;
            match Superblock::decode(&buf, Some(len)) {
                Ok(Some(sb)) if best.is_none_or(|b| sb.seq > b.seq) => best = Some(sb),
                Ok(_) => {}
                Err(e) => slot_err = Some(e),
            }
        }
        let sb = match (best, slot_err) {
            (Some(sb), _) => sb,
            (None, Some(e)) => return Err(e),
            (None, None) => {
                return Err(Error::NotAPool(
                    path.as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ))
            }
        };
        let layout = sb.layout;
        let mut blob = vec![0u8; sb.ckpt_bytes as usize];
        backend.read_at(&mut blob, layout.ckpt_offset[sb.ckpt_area as usize])?;
        if crc32c::crc32c(&blob) != sb.ckpt_crc {
            return Err(Error::Corrupt(format!(
                "checkpoint in area {} fails its checksum",
                sb.ckpt_area
            )));
        }
        let mut meta = Meta::decode_checkpoint(layout, &blob)?;
        if meta.last_seq.checked_add(1) != Some(sb.journal_first_seq) {
            return Err(Error::Corrupt(format!(
                "checkpoint ends at record {} but the journal starts at {}",
                meta.last_seq, sb.journal_first_seq
            )));
        }
        let mut jbuf = vec![0u8; layout.journal_len as usize];
        backend.read_at(&mut jbuf, layout.journal_offset)?;
        let mut pos = 0usize;
        let mut replayed = 0u64;
        while let Some((rec, n)) =
            Record::decode(&jbuf[pos..], sb.nonce, sb.seq, meta.last_seq + 1)?
        {
            meta.apply(&rec, true)?;
            meta.last_seq += 1;
            pos += n;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(replayed, "cow pool: replayed journal records");
        }
        let pool = Arc::new(Pool {
            backend,
            path,
            layout,
            nonce: sb.nonce,
            read_only,
            state: RwLock::new(State {
                meta,
                journal: Vec::new(),
                epoch: sb.seq,
                deferred_fills: HashMap::with_hasher(crate::meta::EntryHash),
            }),
            commit_requests: AtomicU64::new(0),
            commit: Mutex::new(CommitState {
                covered: 0,
                sb,
                tail: pos as u64,
            }),
            gate: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            failed: AtomicBool::new(false),
            opened: std::time::Instant::now(),
            last_write_ms: AtomicU64::new(0),
            wrote: AtomicBool::new(false),
            orphans: Mutex::new(Vec::new()),
            prealloc_end: AtomicU64::new(0),
        });
        if !read_only {
            pool.checkpoint()?;
        }
        Ok(pool)
    }

    /// The pool file's path, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The pool's fixed layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether the pool was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn stripe(&self, vol: u64, vext: u64) -> &Mutex<()> {
        let h =
            (vol.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ vext).wrapping_mul(0xff51_afd7_ed55_8ccd);
        &self.stripes[(h >> 54) as usize % STRIPES]
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Io(io::Error::other(
                "pool failed an earlier metadata write; reopen it",
            )));
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_usable()?;
        if self.read_only {
            return Err(Error::Invalid("pool is open read-only".into()));
        }
        Ok(())
    }

    /// Applies a record and buffers it for the journal.
    pub(crate) fn log(&self, st: &mut State, rec: Record) -> Result<()> {
        let touches_deferred = match &rec {
            Record::Map { vol, vext, .. }
            | Record::MapPartial { vol, vext, .. }
            | Record::Unmap { vol, vext }
            | Record::Fill { vol, vext, .. } => st.deferred_fills.contains_key(&(*vol, *vext)),
            _ => true,
        };
        if touches_deferred {
            self.encode_deferred_fills(st);
        }
        st.meta.apply(&rec, false)?;
        st.meta.last_seq += 1;
        rec.encode(self.nonce, st.epoch, st.meta.last_seq, &mut st.journal);
        Ok(())
    }

    /// Applies `Fill { vol, vext, birth, valid }` now and encodes it later,
    /// merged with the other fills of the same entry: at the next commit,
    /// or just before a record that could change what it applies to (one
    /// about the same extent, or any record that is not about a single
    /// extent). A write into granules a partial entry lacks calls this, so
    /// a run of small writes into one partial extent costs one record per
    /// commit instead of one each. Replay meets the merged record where
    /// the journal has it; no record in between could change its outcome
    /// (they are about other extents, and no snapshot sees this entry, so
    /// no clone reads through it: a fill of an entry a snapshot sees is
    /// logged at once).
    pub(crate) fn log_fill_deferred(
        &self,
        st: &mut State,
        vol: u64,
        vext: u64,
        birth: u64,
        valid: u128,
    ) -> Result<()> {
        let rec = Record::Fill {
            vol,
            vext,
            birth,
            valid,
        };
        // Once a snapshot sees the entry (one taken while the data was
        // being written), a clone of it can read through it, and a record
        // about the clone's extent would depend on this fill: log it now.
        let seen = st
            .meta
            .vols
            .get(&vol)
            .and_then(|vm| vm.newest_snap())
            .is_some_and(|s| s >= birth);
        if seen {
            return self.log(st, rec);
        }
        if st
            .deferred_fills
            .get(&(vol, vext))
            .is_some_and(|(b, _)| *b != birth)
        {
            self.encode_deferred_fills(st);
        }
        st.meta.apply(&rec, false)?;
        st.deferred_fills.entry((vol, vext)).or_insert((birth, 0)).1 |= valid;
        Ok(())
    }

    /// Encodes every deferred fill into the journal buffer (already applied).
    fn encode_deferred_fills(&self, st: &mut State) {
        let State {
            meta,
            journal,
            epoch,
            deferred_fills,
        } = st;
        for ((vol, vext), (birth, valid)) in deferred_fills.drain() {
            meta.last_seq += 1;
            Record::Fill {
                vol,
                vext,
                birth,
                valid,
            }
            .encode(self.nonce, *epoch, meta.last_seq, journal);
        }
    }

    /// Hands extents inline writes could not return back to the free space.
    pub(crate) fn return_orphans(&self, st: &mut State) {
        for n in self.orphans.lock().drain(..) {
            st.meta.unreserve(n);
        }
    }

    /// Commits when the journal buffer has grown large.
    pub(crate) fn maybe_commit(&self) -> Result<()> {
        if !self.orphans.lock().is_empty() {
            self.return_orphans(&mut self.state.write());
        }
        let (full, reclaim) = {
            let st = self.state.read();
            (
                st.journal.len() >= AUTO_COMMIT_BYTES,
                st.meta.reclaim_pending(),
            )
        };
        if reclaim {
            self.reclaim_step();
        }
        if full {
            self.commit()?;
        }
        Ok(())
    }

    /// Returns one bounded batch of a deleted volume's extents to the free
    /// space (they become allocatable at the next commit). Deletes are
    /// reclaimed this way, a step per write and per commit, so no delete
    /// holds the metadata lock for long.
    fn reclaim_step(&self) {
        let mut st = self.state.write();
        if st.meta.reclaim_pending() {
            let batch = st.meta.reclaim_batch;
            st.meta.reclaim_step(batch);
        }
    }

    /// Returns every extent of deleted volumes to the free space now (when
    /// an allocation finds no free extent).
    pub(crate) fn reclaim_all(&self) {
        loop {
            let mut st = self.state.write();
            if !st.meta.reclaim_pending() {
                return;
            }
            let batch = st.meta.reclaim_batch;
            st.meta.reclaim_step(batch);
        }
    }

    /// Makes every completed write and metadata change durable.
    pub fn commit(&self) -> Result<()> {
        self.check_usable()?;
        if self.read_only {
            return Ok(());
        }
        if self.state.read().meta.reclaim_pending() {
            self.reclaim_step();
        }
        // Group commit: a commit that took the journal after this call
        // began covers everything this caller completed before calling.
        let ticket = self.commit_requests.fetch_add(1, Ordering::AcqRel) + 1;
        let mut cs = self.commit.lock();
        if cs.covered >= ticket {
            return self.check_usable();
        }
        let covers = self.commit_requests.load(Ordering::Acquire);
        let (batch, mut freeing) = {
            let mut st = self.state.write();
            self.return_orphans(&mut st);
            self.encode_deferred_fills(&mut st);
            (
                std::mem::take(&mut st.journal),
                std::mem::take(&mut st.meta.pending_free),
            )
        };
        let result = (|| -> Result<()> {
            self.backend.sync()?;
            if batch.is_empty() {
                return Ok(());
            }
            if cs.tail + batch.len() as u64 > self.layout.journal_len {
                freeing |= self.checkpoint_locked(&mut cs)?;
                return Ok(());
            }
            self.backend
                .write_at(&batch, self.layout.journal_offset + cs.tail)?;
            self.backend.sync()?;
            cs.tail += batch.len() as u64;
            Ok(())
        })();
        cs.covered = covers;
        if let Err(e) = result {
            self.failed.store(true, Ordering::Release);
            tracing::error!("cow pool: commit failed, pool is now failed: {e}");
            return Err(e);
        }
        self.release(freeing);
        Ok(())
    }

    fn release(&self, freeing: RoaringBitmap) {
        if freeing.is_empty() {
            return;
        }
        let _gate = self.gate.write();
        self.state.write().meta.free |= freeing;
    }

    /// Writes a checkpoint of the whole state and switches the superblock.
    pub fn checkpoint(&self) -> Result<()> {
        self.check_usable()?;
        if self.read_only {
            return Ok(());
        }
        let mut cs = self.commit.lock();
        match self.checkpoint_locked(&mut cs) {
            Ok(freeing) => {
                self.release(freeing);
                Ok(())
            }
            Err(e) => {
                self.failed.store(true, Ordering::Release);
                tracing::error!("cow pool: checkpoint failed, pool is now failed: {e}");
                Err(e)
            }
        }
    }

    fn checkpoint_locked(&self, cs: &mut CommitState) -> Result<RoaringBitmap> {
        let next_seq = cs.sb.seq + 1;
        let (blob, freeing, last_seq) = {
            // Encode under an upgradable read: reads and in-place writes go
            // on meanwhile; nothing can change the metadata until the
            // upgrade, so the blob and the journal cut agree.
            let st = self.state.upgradable_read();
            let blob = st.meta.encode_checkpoint();
            if blob.len() as u64 > self.layout.ckpt_len {
                return Err(Error::MetadataFull {
                    needed: blob.len() as u64,
                    area: self.layout.ckpt_len,
                });
            }
            let mut st = parking_lot::RwLockUpgradableReadGuard::upgrade(st);
            // The checkpoint holds every applied record, deferred fills too.
            st.journal.clear();
            st.deferred_fills.clear();
            st.epoch = next_seq;
            let freeing = std::mem::take(&mut st.meta.pending_free);
            (blob, freeing, st.meta.last_seq)
        };
        self.backend.sync()?;
        let area = cs.sb.ckpt_area ^ 1;
        self.backend
            .write_at(&blob, self.layout.ckpt_offset[area as usize])?;
        self.backend.sync()?;
        let sb = Superblock {
            seq: next_seq,
            ckpt_area: area,
            ckpt_crc: crc32c::crc32c(&blob),
            ckpt_bytes: blob.len() as u64,
            journal_first_seq: last_seq + 1,
            ..cs.sb
        };
        self.backend
            .write_at(&sb.encode(), (next_seq % 2) * SB_SLOT)?;
        self.backend.sync()?;
        cs.sb = sb;
        cs.tail = 0;
        Ok(freeing)
    }

    /// Creates a thin volume of `size` bytes (a multiple of the block size).
    pub fn create_volume(self: &Arc<Self>, name: &str, size: u64) -> Result<Volume> {
        self.check_writable()?;
        valid_name(name)?;
        let bs = self.layout.block_size as u64;
        if size == 0 || !size.is_multiple_of(bs) {
            return Err(Error::Invalid(format!(
                "volume size {size} is not a positive multiple of the {bs}-byte block"
            )));
        }
        if size.div_ceil(self.layout.extent_size as u64) > u32::MAX as u64 {
            return Err(Error::Invalid(format!("volume size {size} is too large")));
        }
        let id = {
            let mut st = self.state.write();
            if st.meta.names.contains_key(name) {
                return Err(Error::Exists(name.to_string()));
            }
            let id = st.meta.next_vol;
            self.log(
                &mut st,
                Record::CreateVolume {
                    id,
                    name: name.to_string(),
                    size,
                    base: None,
                },
            )?;
            id
        };
        self.commit()?;
        Ok(Volume::new(self.clone(), id, size))
    }

    /// The volume (or clone) called `name`.
    pub fn volume(self: &Arc<Self>, name: &str) -> Result<Volume> {
        let st = self.state.read();
        match st.meta.names.get(name) {
            Some(Named::Volume(id)) => {
                let size = st.meta.vol(*id)?.size;
                Ok(Volume::new(self.clone(), *id, size))
            }
            Some(Named::Snapshot { .. }) => Err(Error::Invalid(format!(
                "{name:?} is a snapshot, not a volume"
            ))),
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    /// Opens the volume `name`, creating it with `size` bytes if it does not
    /// exist. An existing volume of another size is an error.
    pub fn open_or_create_volume(
        self: &Arc<Self>,
        name: &str,
        size: u64,
    ) -> Result<Arc<dyn BlockDevice>> {
        match self.volume(name) {
            Ok(v) if v.size() == size => Ok(Arc::new(v)),
            Ok(v) => Err(Error::Invalid(format!(
                "volume {name:?} exists with size {}, not {size}",
                v.size()
            ))),
            Err(Error::NotFound(_)) => Ok(Arc::new(self.create_volume(name, size)?)),
            Err(e) => Err(e),
        }
    }

    /// The snapshot called `name`.
    pub fn snapshot(self: &Arc<Self>, name: &str) -> Result<Snapshot> {
        let st = self.state.read();
        match st.meta.names.get(name) {
            Some(Named::Snapshot { vol, gen }) => {
                let size = st.meta.vol(*vol)?.size;
                Ok(Snapshot::new(self.clone(), *vol, *gen, size))
            }
            Some(Named::Volume(_)) => Err(Error::Invalid(format!(
                "{name:?} is a volume, not a snapshot"
            ))),
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    /// The snapshot `name` as a read-only block device.
    pub fn snapshot_device(self: &Arc<Self>, name: &str) -> Result<Arc<dyn BlockDevice>> {
        Ok(Arc::new(self.snapshot(name)?))
    }

    /// A volume or snapshot by name, as a block device.
    pub fn device(self: &Arc<Self>, name: &str) -> Result<Arc<dyn BlockDevice>> {
        let named = self.state.read().meta.names.get(name).copied();
        match named {
            Some(Named::Volume(_)) => Ok(Arc::new(self.volume(name)?)),
            Some(Named::Snapshot { .. }) => self.snapshot_device(name),
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    /// Snapshots volume `volume` as `name`: O(1), durable on return.
    pub fn create_snapshot(self: &Arc<Self>, volume: &str, name: &str) -> Result<Snapshot> {
        self.volume(volume)?.snapshot(name)
    }

    /// Snapshots volume `volume` as `name` without waiting for durability:
    /// O(1) and no I/O. The snapshot becomes durable with the next commit
    /// (flush, FUA write, management operation, full journal buffer), like
    /// a cached write; a crash before then loses it, never the writes made
    /// durable after it (the journal is ordered).
    pub fn create_snapshot_deferred(
        self: &Arc<Self>,
        volume: &str,
        name: &str,
    ) -> Result<Snapshot> {
        self.volume(volume)?.snapshot_deferred(name)
    }

    pub(crate) fn snapshot_of(
        self: &Arc<Self>,
        vol: u64,
        name: &str,
        durable: bool,
    ) -> Result<Snapshot> {
        self.check_writable()?;
        valid_name(name)?;
        let (gen, size) = {
            let mut st = self.state.write();
            if st.meta.names.contains_key(name) {
                return Err(Error::Exists(name.to_string()));
            }
            let size = st.meta.vol(vol)?.size;
            let gen = st.meta.gen;
            self.log(
                &mut st,
                Record::Snapshot {
                    vol,
                    gen,
                    name: name.to_string(),
                },
            )?;
            (gen, size)
        };
        if durable {
            self.commit()?;
        } else {
            self.maybe_commit()?;
        }
        Ok(Snapshot::new(self.clone(), vol, gen, size))
    }

    /// Snapshots several volumes at one point in time: all the snapshot
    /// records are applied under one hold of the metadata lock, so no
    /// mapping changes between them. `pairs` is (volume, snapshot name).
    /// For a crash-consistent group the caller quiesces writes in flight.
    pub fn create_snapshot_group(
        self: &Arc<Self>,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<Snapshot>> {
        self.check_writable()?;
        for (_, name) in pairs {
            valid_name(name)?;
        }
        let made = {
            let mut st = self.state.write();
            let mut plan = Vec::with_capacity(pairs.len());
            for (i, (volume, name)) in pairs.iter().enumerate() {
                if st.meta.names.contains_key(*name) || pairs[..i].iter().any(|(_, n)| n == name) {
                    return Err(Error::Exists(name.to_string()));
                }
                match st.meta.names.get(*volume) {
                    Some(Named::Volume(id)) => plan.push((*id, st.meta.vol(*id)?.size, *name)),
                    Some(_) => return Err(Error::Invalid(format!("{volume:?} is a snapshot"))),
                    None => return Err(Error::NotFound(volume.to_string())),
                }
            }
            let mut made = Vec::with_capacity(plan.len());
            for (vol, size, name) in plan {
                let gen = st.meta.gen;
                self.log(
                    &mut st,
                    Record::Snapshot {
                        vol,
                        gen,
                        name: name.to_string(),
                    },
                )?;
                made.push((vol, gen, size));
            }
            made
        };
        self.commit()?;
        Ok(made
            .into_iter()
            .map(|(vol, gen, size)| Snapshot::new(self.clone(), vol, gen, size))
            .collect())
    }

    /// Creates a writable clone `name` of snapshot `snapshot`: O(1).
    pub fn create_clone(self: &Arc<Self>, snapshot: &str, name: &str) -> Result<Volume> {
        self.check_writable()?;
        valid_name(name)?;
        let snap = self.snapshot(snapshot)?;
        let (id, size) = {
            let mut st = self.state.write();
            if st.meta.names.contains_key(name) {
                return Err(Error::Exists(name.to_string()));
            }
            let size = st.meta.vol(snap.volume_id())?.size;
            let id = st.meta.next_vol;
            self.log(
                &mut st,
                Record::CreateVolume {
                    id,
                    name: name.to_string(),
                    size,
                    base: Some((snap.volume_id(), snap.generation())),
                },
            )?;
            (id, size)
        };
        self.commit()?;
        Ok(Volume::new(self.clone(), id, size))
    }

    /// Deletes a volume or clone and all its snapshots, freeing exactly the
    /// extents they own. Refused while a clone is based on one of them.
    pub fn delete_volume(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        {
            let mut st = self.state.write();
            let id = match st.meta.names.get(name) {
                Some(Named::Volume(id)) => *id,
                Some(_) => return Err(Error::Invalid(format!("{name:?} is a snapshot"))),
                None => return Err(Error::NotFound(name.to_string())),
            };
            let vm = st.meta.vol(id)?;
            for (g, sname) in &vm.snaps {
                if let Some(c) = st.meta.vols.values().find(|v| v.base == Some((id, *g))) {
                    return Err(Error::Busy(format!(
                        "snapshot {sname:?} of {name:?} is the origin of clone {:?}; delete the clone first",
                        c.name
                    )));
                }
                if st.meta.has_outside_borrowers(id, *g) {
                    return Err(Error::Busy(format!(
                        "volume {name:?} is the source of a copy-offload share; overwrite or delete the copies first"
                    )));
                }
            }
            self.log(&mut st, Record::DeleteVolume { id })?;
        }
        self.commit()
    }

    /// Deletes a snapshot, freeing the extents only it still saw. Refused
    /// while a clone is based on it.
    pub fn delete_snapshot(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        loop {
            let mut st = self.state.write();
            let (vol, gen) = match st.meta.names.get(name) {
                Some(Named::Snapshot { vol, gen }) => (*vol, *gen),
                Some(_) => return Err(Error::Invalid(format!("{name:?} is a volume"))),
                None => return Err(Error::NotFound(name.to_string())),
            };
            if let Some(c) = st.meta.vols.values().find(|v| v.base == Some((vol, gen))) {
                return Err(Error::Busy(format!(
                    "snapshot {name:?} is the origin of clone {:?}; delete the clone first",
                    c.name
                )));
            }
            if st.meta.has_borrowers(vol, gen) {
                return Err(Error::Busy(format!(
                    "snapshot {name:?} is the source of a copy-offload share"
                )));
            }
            let waiting = st.meta.fill_before_delete(vol, gen).len();
            if waiting > 0 {
                drop(st);
                // Partial entries read from extents only this snapshot
                // keeps: give them their data first. Writes meanwhile can
                // add more (a first write into an extent only the newest
                // snapshot still shares), but each such extent only once,
                // so passes that fill something end; one that fills
                // nothing means a damaged map.
                let filled = self.fill_for_delete(vol, gen)?;
                if filled == 0 {
                    return Err(Error::Busy(format!(
                        "snapshot {name:?}: {waiting} partial entries reading from it could not be filled"
                    )));
                }
                continue;
            }
            self.log(&mut st, Record::DeleteSnapshot { vol, gen })?;
            break;
        }
        self.commit()
    }

    /// Fills the partial entries that read from extents deleting the
    /// snapshot of `vol` at `gen` would free.
    /// Returns how many it filled.
    pub(crate) fn fill_for_delete(&self, vol: u64, gen: u64) -> Result<usize> {
        let keys = self.state.read().meta.fill_before_delete(vol, gen);
        let mut filled = 0;
        for (vext, birth) in keys {
            if self.fill_entry(vol, vext, birth)? {
                filled += 1;
            }
        }
        Ok(filled)
    }

    /// Copies the granules a partial entry does not hold from its fill
    /// source into its extent and logs `Fill`. Returns false if the entry
    /// was not (or no longer) partial. Holds the gate for this one entry
    /// only, so a commit waiting to release extents is not held up long.
    pub(crate) fn fill_entry(&self, vol: u64, vext: u64, birth: u64) -> Result<bool> {
        let _gate = self.gate.read();
        let _stripe = self.stripe(vol, vext).lock();
        let (pext, part) = {
            let st = self.state.read();
            let Some(vm) = st.meta.vols.get(&vol) else {
                return Ok(false);
            };
            let Some(part) = vm.partial.get(&(vext, birth)).copied() else {
                return Ok(false);
            };
            let pext = match vm.live.get(&vext) {
                Some(l) if l.birth == birth => l.pext,
                _ => match vm.dead.get(&(vext, birth)) {
                    // Freed by a snapshot delete (removal pending): no fill.
                    Some(d) if st.meta.doomed_pending(vol, birth, d.death) => return Ok(false),
                    Some(d) => d.pext,
                    None => return Ok(false),
                },
            };
            (pext, part)
        };
        let g = self.layout.granule_size() as u64;
        let missing = self.layout.full_mask() & !part.valid;
        let mut buf = Vec::new();
        let mut gi = 0u64;
        while gi < self.layout.granules() as u64 {
            if missing >> gi & 1 == 0 {
                gi += 1;
                continue;
            }
            let first = gi;
            while gi < self.layout.granules() as u64 && missing >> gi & 1 == 1 {
                gi += 1;
            }
            let (off, len) = (first * g, ((gi - first) * g) as usize);
            buf.clear();
            buf.resize(len, 0);
            if let Some(src) = part.src {
                self.backend
                    .read_at(&mut buf, self.layout.extent_offset(src) + off)?;
            }
            self.backend
                .write_at(&buf, self.layout.extent_offset(pext) + off)?;
        }
        let mut st = self.state.write();
        let still = st.meta.vols.get(&vol).is_some_and(|vm| {
            vm.partial.get(&(vext, birth)) == Some(&part)
                && !vm
                    .dead
                    .get(&(vext, birth))
                    .is_some_and(|d| st.meta.doomed_pending(vol, birth, d.death))
        });
        if !still {
            return Ok(false);
        }
        self.log(
            &mut st,
            Record::Fill {
                vol,
                vext,
                birth,
                valid: missing,
            },
        )?;
        Ok(true)
    }

    /// Fills up to `budget` partial entries (in no particular order);
    /// returns how many it filled.
    pub fn fill_partials(&self, budget: usize) -> Result<usize> {
        self.check_writable()?;
        let keys = self.state.read().meta.partial_keys(budget);
        let mut filled = 0;
        for (vol, vext, birth) in keys {
            if self.fill_entry(vol, vext, birth)? {
                filled += 1;
            }
        }
        Ok(filled)
    }

    /// Sets how many entries a reclaim step of deleted volumes and
    /// snapshots frees (tests use small batches to exercise deletes that
    /// span many steps).
    #[doc(hidden)]
    pub fn set_reclaim_batch(&self, entries: usize) {
        self.state.write().meta.reclaim_batch = entries.max(1);
    }

    /// Whether deleted volumes or snapshots still have extents to return.
    pub fn reclaim_pending(&self) -> bool {
        self.state.read().meta.reclaim_pending()
    }

    /// Partial entries waiting for their fill.
    pub fn partial_entries(&self) -> usize {
        self.state.read().meta.partial_count()
    }

    /// Keeps the store allocated for between half of and all of
    /// [`PREALLOC_WINDOW`] bytes past the lowest free extent, where the next
    /// new extents come from, a [`PREALLOC_STEP`] per call. A sparse pool
    /// file otherwise allocates on every first write into a fresh region:
    /// with ext4's delayed allocation, each isolated page written adds an
    /// entry to the file's extent-status tree, and a snapshot run of 4 KiB random writes (which
    /// redirects every extent into fresh space) spent ~15% of the
    /// server's time walking that tree (docs/BENCHMARKS.md).
    pub(crate) fn preallocate_ahead(&self) {
        let end = self.prealloc_end.load(Ordering::Relaxed);
        if end == u64::MAX {
            return;
        }
        let Some(next) = self.state.read().meta.free.min() else {
            return;
        };
        let at = self.layout.extent_offset(next as u64);
        let limit = self.layout.total_len();
        if end >= at.saturating_add(PREALLOC_WINDOW / 2).min(limit) {
            return;
        }
        let from = end.max(at);
        let to = from.saturating_add(PREALLOC_STEP).min(limit);
        if from >= to {
            return;
        }
        match self.backend.preallocate(from, to - from) {
            Ok(true) => self.prealloc_end.store(to, Ordering::Relaxed),
            Ok(false) => self.prealloc_end.store(u64::MAX, Ordering::Relaxed),
            Err(e) => {
                // Out of space, an interrupted call, a file system that
                // half supports it: stop trying (writes then allocate as
                // they go, and say so when space runs out).
                tracing::warn!("cow pool: preallocating the store failed: {e}");
                self.prealloc_end.store(u64::MAX, Ordering::Relaxed);
            }
        }
    }

    /// Starts the background filler: a thread that, while no write has
    /// arrived for a moment (or when partial entries pile up), copies the
    /// missing granules of partial entries in small batches, so reads of
    /// those extents become single reads again and snapshot deletes find
    /// nothing to fill. Every tick it also frees one batch of deleted
    /// volumes' and snapshots' entries, if any wait, and keeps the store
    /// preallocated ahead (`preallocate_ahead`). It holds the pool
    /// weakly and ends with it.
    pub fn start_background_fill(self: &Arc<Self>) {
        if self.read_only {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("cow-fill".into())
            .spawn(move || {
                let mut warned = false;
                loop {
                    std::thread::sleep(FILL_TICK);
                    let Some(pool) = weak.upgrade() else {
                        return;
                    };
                    if pool.failed.load(Ordering::Acquire) {
                        return;
                    }
                    // Deleted volumes and snapshots: a batch per tick too,
                    // so their space comes back when the writes that
                    // normally carry the batches are all answered inline
                    // (which skips them) and no flush comes.
                    if pool.state.read().meta.reclaim_pending() {
                        pool.reclaim_step();
                    }
                    pool.preallocate_ahead();
                    if !pool.orphans.lock().is_empty() {
                        if let Some(mut st) = pool.state.try_write() {
                            pool.return_orphans(&mut st);
                        }
                    }
                    let count = pool.partial_entries();
                    let idle = pool.ms_since_write() >= FILL_IDLE.as_millis() as u64;
                    if count == 0 || !(idle || count >= crate::volume::PARTIAL_CAP / 2) {
                        continue;
                    }
                    let done = pool
                        .fill_partials(FILL_BATCH)
                        .and_then(|_| pool.maybe_commit());
                    if let Err(e) = done {
                        // The entries stay partial (reads stay right; past
                        // the cap redirects copy whole extents): try later.
                        if !warned {
                            tracing::warn!(
                                "cow pool: background fill failed, retrying each second: {e}"
                            );
                            warned = true;
                        }
                        drop(pool);
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cow pool: no background filler thread: {e}");
        }
    }

    /// Milliseconds since the filler last found a data write begun (so to
    /// within a tick of the last write). Only the filler's thread calls it.
    fn ms_since_write(&self) -> u64 {
        let now = self.opened.elapsed().as_millis() as u64;
        if self.wrote.swap(false, Ordering::Relaxed) {
            self.last_write_ms.store(now, Ordering::Relaxed);
        }
        now.saturating_sub(self.last_write_ms.load(Ordering::Relaxed))
    }

    /// Notes that a data write is under way (for the background filler).
    pub(crate) fn note_write(&self) {
        // A load first: the cache line stays shared between cores until
        // the filler clears the flag.
        if !self.wrote.load(Ordering::Relaxed) {
            self.wrote.store(true, Ordering::Relaxed);
        }
    }

    /// Every volume and clone, by id.
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        let st = self.state.read();
        let m = &st.meta;
        m.vols
            .values()
            .map(|v| VolumeInfo {
                id: v.id,
                name: v.name.clone(),
                size: v.size,
                origin: v
                    .base
                    .and_then(|(bv, bg)| m.vols.get(&bv).and_then(|b| b.snaps.get(&bg)).cloned()),
                snapshots: v
                    .snaps
                    .values()
                    .filter(|n| !crate::range_share::is_share_snapshot(n))
                    .cloned()
                    .collect(),
                mapped_extents: v
                    .live
                    .values()
                    .filter(|l| l.pext != crate::format::TOMBSTONE)
                    .count() as u64,
            })
            .collect()
    }

    /// Every snapshot, by volume then age.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        let st = self.state.read();
        let m = &st.meta;
        let mut out = Vec::new();
        for v in m.vols.values() {
            // Copy offload's hidden snapshots are internal (range_share).
            let listed = v
                .snaps
                .iter()
                .filter(|(_, n)| !crate::range_share::is_share_snapshot(n));
            for (g, n) in listed {
                out.push(SnapshotInfo {
                    name: n.clone(),
                    volume: v.name.clone(),
                    generation: *g,
                    size: v.size,
                    clones: m
                        .vols
                        .values()
                        .filter(|c| c.base == Some((v.id, *g)))
                        .map(|c| c.name.clone())
                        .collect(),
                });
            }
        }
        out
    }

    /// Pool facts.
    pub fn info(&self) -> PoolInfo {
        let st = self.state.read();
        let m = &st.meta;
        PoolInfo {
            path: self.path.clone(),
            block_size: self.layout.block_size,
            extent_size: self.layout.extent_size,
            extents: self.layout.extent_count,
            free_extents: m.free.len()
                + m.pending_free.len()
                + m.reserved.len()
                + m.reclaiming_extents().len(),
            data_offset: self.layout.data_offset,
            journal_bytes: self.layout.journal_len,
            checkpoint_area_bytes: self.layout.ckpt_len,
            generation: m.gen,
            volumes: m.vols.len(),
            snapshots: m
                .vols
                .values()
                .flat_map(|v| v.snaps.values())
                .filter(|n| !crate::range_share::is_share_snapshot(n))
                .count(),
        }
    }

    /// Verifies every metadata invariant: each extent free or mapped by
    /// exactly one entry, every retired entry visible to some snapshot,
    /// every clone's origin present.
    pub fn check(&self) -> CheckReport {
        self.state.read().meta.check()
    }

    /// Maps the first `extents` virtual extents of `volume` that are not
    /// mapped yet to free physical extents without writing any data, then
    /// checkpoints. For benchmarks that need large populated maps: the
    /// blocks read back whatever those extents hold.
    #[doc(hidden)]
    pub fn bench_populate(&self, volume: &str, extents: u64) -> Result<()> {
        self.bench_map(volume, |vm, n| {
            (0..extents.min(n))
                .filter(|v| !vm.live.contains_key(v))
                .collect()
        })
    }

    /// Maps every mapped virtual extent of `volume` to a fresh physical
    /// extent without writing data (the old mappings retire as a write
    /// would retire them), then checkpoints. For benchmarks that need a
    /// snapshot with a large retired list.
    #[doc(hidden)]
    pub fn bench_remap(&self, volume: &str) -> Result<()> {
        self.bench_map(volume, |vm, _| vm.live.keys().copied().collect())
    }

    /// Maps the virtual extents `pick` chooses (given the volume and its
    /// extent count) to free physical extents, writing no data, then
    /// checkpoints.
    fn bench_map(
        &self,
        volume: &str,
        pick: impl FnOnce(&crate::meta::VolMeta, u64) -> Vec<u64>,
    ) -> Result<()> {
        self.check_writable()?;
        {
            let mut st = self.state.write();
            let id = match st.meta.names.get(volume) {
                Some(Named::Volume(id)) => *id,
                _ => return Err(Error::NotFound(volume.to_string())),
            };
            let vm = st.meta.vol(id)?;
            let vexts = pick(vm, st.meta.extents_of(vm.size));
            for vext in vexts {
                let pext = st.meta.free.min().ok_or(Error::NoSpace)? as u64;
                let birth = st.meta.gen;
                st.meta.apply(
                    &Record::Map {
                        vol: id,
                        vext,
                        pext,
                        birth,
                    },
                    false,
                )?;
            }
        }
        self.checkpoint()
    }

    /// Same as [`Pool::commit`]: makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.commit()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.read_only || self.failed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.commit().and_then(|_| self.checkpoint()) {
            tracing::warn!("cow pool: clean close failed (the journal will be replayed): {e}");
        }
    }
}
