//! Simulated power loss. Each crash point runs a seeded random workload
//! (cached and FUA writes, flushes, unmaps, snapshot create/delete, clone
//! create/write/delete, copy-offload shares of whole extents from a snapshot
//! or another volume) on the
//! in-memory [`SimBackend`], cuts the power at a seeded I/O point, builds a
//! crash image (all synced writes plus a random, reordered, possibly torn
//! subset of the rest), reopens the pool from it and checks:
//! - recovery succeeds and `check()` finds no leaked or doubly-mapped extent;
//! - every block reads either its last acknowledged-durable value or a value
//!   written after it (never another block's data, never a torn mix);
//! - every snapshot whose creation was acknowledged exists and reads its
//!   exact point-in-time image; a deleted one is gone; a deferred snapshot
//!   (`snapshot_deferred`) exists once a later flush, FUA write or
//!   management operation returned, and if it survives without one, its
//!   image is exact too;
//! - the recovered pool accepts writes and reopens cleanly;
//! - all of this also when the power fails again during recovery.
//!
//! `IRONLUN_CRASH_POINTS` sets the number of crash points (default 10,000;
//! one point costs about 2 ms of CPU in a debug build; the long mode is
//! 100,000). `IRONLUN_CRASH_SEED` sets the base seed. Runs on every
//! available core.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ironlun_cow::sim::{SimBackend, SplitMix};
use ironlun_cow::{BlockDevice, Durability, Error, Pool, PoolOptions};

const BS: usize = 512;
const VOL_BLOCKS: u64 = 64; // 8 extents of 4 KiB
const OPS: usize = 40;

fn block(lba: u64, tag: u32) -> Vec<u8> {
    let mut b = vec![(tag as u8) ^ (lba as u8) ^ 0x5a; BS];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b[8..12].copy_from_slice(&tag.to_le_bytes());
    b
}

fn decode(lba: u64, b: &[u8]) -> Result<Option<u32>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let tag = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if b != block(lba, tag).as_slice() {
        return Err(format!(
            "block {lba} holds another block's data or a torn mix"
        ));
    }
    Ok(Some(tag))
}

#[derive(Clone, Default)]
struct BlockModel {
    durable: Option<u32>,
    /// Values written after the last durable point; any may survive.
    pending: Vec<Option<u32>>,
}

impl BlockModel {
    fn latest(&self) -> Option<u32> {
        self.pending.last().copied().unwrap_or(self.durable)
    }
    fn allows(&self, v: Option<u32>) -> bool {
        self.durable == v || self.pending.contains(&v)
    }
}

struct SnapModel {
    name: String,
    vol: String,
    image: Vec<Option<u32>>,
    /// False when the create or delete call failed at the crash, or while
    /// a deferred create awaits its commit: the snapshot may or may not
    /// exist, but if it does its image is exact.
    certain: bool,
    /// Created with `snapshot_deferred` and no commit has covered it yet.
    deferred: bool,
}

struct VolModel {
    name: String,
    blocks: Vec<BlockModel>,
    /// False when its create or delete call failed at the crash.
    certain: bool,
    /// For a clone, its origin snapshot.
    origin: Option<String>,
}

/// Pool shape for a crash point: 4 KiB or 16 KiB extents (8 or 32 blocks),
/// a journal small enough to force checkpoints.
fn options(extent_size: u32) -> PoolOptions {
    PoolOptions {
        size: 1 << 20,
        extent_size,
        block_size: 512,
        journal_len: Some(8192),
    }
}

fn read_all(dev: &dyn BlockDevice) -> Result<Vec<Option<u32>>, String> {
    let mut buf = vec![0u8; VOL_BLOCKS as usize * BS];
    dev.read(0, &mut buf).map_err(|e| format!("read: {e}"))?;
    (0..VOL_BLOCKS)
        .map(|lba| decode(lba, &buf[lba as usize * BS..(lba as usize + 1) * BS]))
        .collect()
}

/// A commit returned: every write and every deferred snapshot before it is
/// durable.
fn all_durable(vols: &mut [VolModel], snaps: &mut [SnapModel]) {
    for s in snaps.iter_mut().filter(|s| s.deferred) {
        s.deferred = false;
        s.certain = true;
    }
    for v in vols.iter_mut() {
        for b in v.blocks.iter_mut() {
            b.durable = b.latest();
            b.pending.clear();
        }
    }
}

/// One crash point; returns a description of the first violation.
fn crash_point(seed: u64) -> Result<(), String> {
    let mut rng = SplitMix(seed);
    let extent_size: u32 = if rng.below(4) == 0 { 16384 } else { 4096 };
    let per_extent = extent_size as u64 / BS as u64;
    let sim = SimBackend::new(0);
    let pool = Pool::create_on(Box::new(sim.clone()), None, &options(extent_size))
        .map_err(|e| e.to_string())?;
    // Deletes span several reclaim steps (crash points fall between them).
    pool.set_reclaim_batch(1 + rng.below(4) as usize);
    pool.create_volume("v", VOL_BLOCKS * BS as u64)
        .map_err(|e| e.to_string())?;
    let start = sim.points();
    sim.crash_at(start + rng.below(200));

    let mut vols = vec![VolModel {
        name: "v".into(),
        blocks: vec![BlockModel::default(); VOL_BLOCKS as usize],
        certain: true,
        origin: None,
    }];
    let mut snaps: Vec<SnapModel> = Vec::new();
    let mut tag = 1u32;
    let mut next_name = 0;
    for _ in 0..OPS {
        let dice = rng.below(100);
        let lba = rng.below(VOL_BLOCKS);
        let n = 1 + rng.below((VOL_BLOCKS - lba).min(16));
        let vi = rng.below(vols.len() as u64) as usize;
        let vname = vols[vi].name.clone();
        let vol = pool.volume(&vname).map_err(|e| e.to_string())?;
        let ok = if dice < 60 {
            let fua = dice >= 50;
            let mut data = Vec::new();
            for b in lba..lba + n {
                data.extend(block(b, tag));
            }
            let d = if fua {
                Durability::ForceUnitAccess
            } else {
                Durability::Cached
            };
            let ok = vol.write(lba, &data, d).is_ok();
            for b in lba..lba + n {
                let m = &mut vols[vi].blocks[b as usize];
                if ok && fua {
                    m.durable = Some(tag);
                    m.pending.clear();
                } else {
                    m.pending.push(Some(tag));
                }
            }
            if ok && fua {
                // A FUA write commits the whole journal buffer, so deferred
                // snapshots taken before it are durable too.
                for s in snaps.iter_mut().filter(|s| s.deferred) {
                    s.deferred = false;
                    s.certain = true;
                }
            }
            tag += 1;
            ok
        } else if dice < 63 {
            // The background filler's work: copies into partial entries'
            // extents, then `Fill` records (no content changes).
            pool.fill_partials(2).is_ok()
        } else if dice < 67 {
            let ok = vol.flush().is_ok();
            if ok {
                all_durable(&mut vols, &mut snaps);
            }
            ok
        } else if dice < 76 {
            // Half the unmaps cover whole extents.
            let (lba, n) = if rng.below(2) == 0 {
                (lba / per_extent * per_extent, per_extent)
            } else {
                (lba, n)
            };
            let ok = vol.unmap(lba, n).is_ok();
            for b in lba..lba + n {
                vols[vi].blocks[b as usize].pending.push(None);
            }
            ok
        } else if dice < 85 {
            let name = format!("s{next_name}");
            next_name += 1;
            let image: Vec<Option<u32>> = vols[vi].blocks.iter().map(BlockModel::latest).collect();
            // Half the snapshots are deferred: durable only with the next
            // commit (flush, FUA write, management operation).
            let deferred = rng.below(2) == 0;
            let ok = if deferred {
                vol.snapshot_deferred(&name).is_ok()
            } else {
                vol.snapshot(&name).is_ok()
            };
            if ok && !deferred {
                all_durable(&mut vols, &mut snaps);
            }
            snaps.push(SnapModel {
                name,
                vol: vname,
                image,
                certain: ok && !deferred,
                deferred: ok && deferred,
            });
            ok
        } else if dice < 91 {
            if snaps.is_empty() {
                continue;
            }
            let i = rng.below(snaps.len() as u64) as usize;
            match pool.delete_snapshot(&snaps[i].name) {
                Ok(()) => {
                    snaps.remove(i);
                    all_durable(&mut vols, &mut snaps);
                    true
                }
                Err(Error::Busy(_)) => true,
                Err(_) => {
                    snaps[i].certain = false;
                    snaps[i].deferred = false;
                    false
                }
            }
        } else if dice < 96 {
            let Some(s) = snaps
                .iter()
                .filter(|s| s.certain)
                .nth(rng.below(4) as usize)
            else {
                continue;
            };
            let name = format!("c{next_name}");
            next_name += 1;
            let origin = s.name.clone();
            let image = s.image.clone();
            let ok = pool.create_clone(&origin, &name).is_ok();
            if ok {
                all_durable(&mut vols, &mut snaps);
            }
            vols.push(VolModel {
                name,
                blocks: image
                    .into_iter()
                    .map(|v| BlockModel {
                        durable: v,
                        pending: Vec::new(),
                    })
                    .collect(),
                certain: ok,
                origin: Some(origin),
            });
            ok
        } else if dice >= 98 {
            // Copy offload: whole extents of a snapshot or of another
            // volume shared into this one at the same offsets (durable on
            // return; one record, so all or nothing at a crash).
            let extents = VOL_BLOCKS / per_extent;
            let first = rng.below(extents);
            let (lba, n) = (
                first * per_extent,
                (1 + rng.below(extents - first)) * per_extent,
            );
            let (source, values) = if rng.below(2) == 0 {
                let Some(s) = snaps
                    .iter()
                    .filter(|s| s.certain)
                    .nth(rng.below(4) as usize)
                else {
                    continue;
                };
                let Ok(dev) = pool.snapshot(&s.name) else {
                    continue;
                };
                (dev.extent_source(), s.image.clone())
            } else {
                let si = rng.below(vols.len() as u64) as usize;
                if si == vi || !vols[si].certain {
                    continue;
                }
                let Ok(dev) = pool.volume(&vols[si].name) else {
                    continue;
                };
                let latest: Vec<Option<u32>> =
                    vols[si].blocks.iter().map(BlockModel::latest).collect();
                (dev.extent_source(), latest)
            };
            let Some(source) = source else {
                return Err("a pool view has no extent source".into());
            };
            let ok = match vol.share_range(&source, lba, lba, n) {
                Ok(true) => true,
                Ok(false) => return Err("an aligned share was refused".into()),
                Err(_) => false,
            };
            if ok {
                all_durable(&mut vols, &mut snaps);
            }
            for b in lba..lba + n {
                let m = &mut vols[vi].blocks[b as usize];
                if ok {
                    m.durable = values[b as usize];
                    m.pending.clear();
                } else {
                    m.pending.push(values[b as usize]);
                }
            }
            ok
        } else {
            // Delete a clone (never the first volume).
            if vi == 0 {
                continue;
            }
            match pool.delete_volume(&vname) {
                Ok(()) => {
                    vols.remove(vi);
                    snaps.retain(|s| s.vol != vname);
                    all_durable(&mut vols, &mut snaps);
                    true
                }
                Err(Error::Busy(_)) => true,
                Err(_) => {
                    vols[vi].certain = false;
                    for s in snaps.iter_mut().filter(|s| s.vol == vname) {
                        s.certain = false;
                        s.deferred = false;
                    }
                    false
                }
            }
        };
        if !ok {
            break;
        }
    }
    sim.crash_now();
    let mut image = sim.crash_image(seed ^ 0xc0ff_ee00);
    drop(pool);

    // Half the time the power also fails during recovery (replay and the
    // checkpoint that opening writes), once or twice; recovery does not
    // change the logical state, so the same expectations hold.
    for attempt in 0..rng.below(3) {
        let s = SimBackend::from_image(image);
        s.crash_at(rng.below(8));
        if let Ok(p) = Pool::open_on(Box::new(s.clone()), None, false) {
            s.crash_now();
            drop(p);
        }
        image = s.crash_image(seed ^ (0xdead_0000 + attempt));
    }

    let sim2 = SimBackend::from_image(image);
    let pool = Pool::open_on(Box::new(sim2.clone()), None, false)
        .map_err(|e| format!("recovery failed: {e}"))?;
    let report = pool.check();
    if !report.is_clean() {
        return Err(format!("check after recovery: {}", report.summary()));
    }
    for v in &vols {
        let vol = match pool.volume(&v.name) {
            Ok(vol) => vol,
            Err(e) if v.certain => return Err(format!("volume {} missing: {e}", v.name)),
            Err(_) => continue,
        };
        let got = read_all(&vol)?;
        for (lba, (g, m)) in got.iter().zip(&v.blocks).enumerate() {
            if !m.allows(*g) {
                return Err(format!(
                    "{} block {lba} reads {g:?}; durable {:?}, later writes {:?}",
                    v.name, m.durable, m.pending
                ));
            }
        }
        if let (Some(origin), Some(info)) = (
            &v.origin,
            pool.volumes().into_iter().find(|i| i.name == v.name),
        ) {
            if info.origin.as_deref() != Some(origin.as_str()) {
                return Err(format!("clone {} lost its origin", v.name));
            }
        }
    }
    for s in &snaps {
        match pool.snapshot(&s.name) {
            Ok(dev) => {
                let got = read_all(&dev)?;
                if got != s.image {
                    return Err(format!("snapshot {} lost its point-in-time image", s.name));
                }
            }
            Err(e) if s.certain => return Err(format!("snapshot {} missing: {e}", s.name)),
            Err(_) => {}
        }
    }
    let known_snaps: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    for info in pool.snapshots() {
        if !known_snaps.contains(&info.name.as_str()) {
            return Err(format!("deleted snapshot {} came back", info.name));
        }
    }
    let known_vols: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
    for info in pool.volumes() {
        if !known_vols.contains(&info.name.as_str()) {
            return Err(format!("deleted volume {} came back", info.name));
        }
    }
    // The recovered pool must take new writes and reopen cleanly.
    let vol = pool.volume("v").map_err(|e| e.to_string())?;
    vol.write(3, &block(3, 999_999), Durability::ForceUnitAccess)
        .map_err(|e| format!("write after recovery: {e}"))?;
    drop(vol);
    drop(pool);
    let pool = Pool::open_on(Box::new(sim2), None, false).map_err(|e| format!("reopen: {e}"))?;
    let got = read_all(&pool.volume("v").map_err(|e| e.to_string())?)?;
    if got[3] != Some(999_999) {
        return Err("write after recovery lost on reopen".into());
    }
    let report = pool.check();
    if !report.is_clean() {
        return Err(format!("check after reopen: {}", report.summary()));
    }
    Ok(())
}

#[test]
fn power_loss_at_random_points() {
    let points: u64 = std::env::var("IRONLUN_CRASH_POINTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000);
    let base: u64 = std::env::var("IRONLUN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1b0_a5e);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let failures: Vec<String> = (0..threads)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut fails = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= points {
                        break;
                    }
                    let seed = base.wrapping_add(i);
                    if let Err(e) = crash_point(seed) {
                        fails.push(format!("seed {seed}: {e}"));
                        if fails.len() >= 5 {
                            break;
                        }
                    }
                }
                fails
            })
        })
        .flat_map(|h| h.join().unwrap())
        .collect();
    eprintln!(
        "power-loss simulation: {points} crash points in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
