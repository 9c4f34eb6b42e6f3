//! Property test: random sequences of write / unmap / snapshot / clone /
//! delete / flush / close-and-reopen / copy-offload share (whole extents of
//! a volume or snapshot made to borrow into a volume) against a plain model (block -> tag
//! per volume and per snapshot), with the background filler's work
//! (`fill_partials`) and reads of any volume or snapshot mixed in. Every
//! read must match the model and the pool's invariant check must stay
//! clean. Extents of 4 KiB with 512-byte granules, so most writes redirect
//! sparsely (partial entries).
//!
//! `PROPTEST_CASES` sets the number of sequences (default 64).

use std::collections::BTreeMap;
use std::sync::Arc;

use ironlun_cow::sim::SimBackend;
use ironlun_cow::{BlockDevice, Durability, Error, Pool, PoolOptions};
use proptest::prelude::*;

const BS: usize = 512;
const VOL_BLOCKS: u64 = 96; // 6 extents of 4 KiB, the last one partial-free
const VOL_SIZE: u64 = VOL_BLOCKS * BS as u64;

#[derive(Debug, Clone)]
enum Op {
    Write {
        vol: usize,
        lba: u64,
        blocks: u64,
        fua: bool,
    },
    Unmap {
        vol: usize,
        lba: u64,
        blocks: u64,
    },
    Snapshot {
        vol: usize,
        /// `snapshot_deferred` (durable at the next commit; every reopen
        /// here follows a flush or a clean close, so it must survive).
        deferred: bool,
    },
    Clone {
        snap: usize,
    },
    DeleteSnapshot {
        snap: usize,
    },
    DeleteVolume {
        vol: usize,
    },
    Flush,
    Reopen {
        kill: bool,
    },
    /// The background filler's step: fill up to `budget` partial entries.
    Fill {
        budget: usize,
    },
    /// Read a volume (`snap` false) or snapshot whole and compare.
    Read {
        snap: bool,
        which: usize,
    },
    /// `share_range` of whole extents; `from_snap` picks a snapshot as the
    /// source instead of a volume.
    Share {
        src: usize,
        from_snap: bool,
        dst: usize,
        src_ext: u64,
        dst_ext: u64,
        extents: u64,
    },
}

/// Blocks per 4 KiB extent.
const EXT_BLOCKS: u64 = 8;

fn op() -> impl Strategy<Value = Op> {
    let range = (0..VOL_BLOCKS).prop_flat_map(|lba| (Just(lba), 1..=(VOL_BLOCKS - lba).min(24)));
    prop_oneof![
        8 => (0..4usize, range.clone(), any::<bool>())
            .prop_map(|(vol, (lba, blocks), fua)| Op::Write { vol, lba, blocks, fua }),
        2 => (0..4usize, range).prop_map(|(vol, (lba, blocks))| Op::Unmap { vol, lba, blocks }),
        2 => (0..4usize, any::<bool>()).prop_map(|(vol, deferred)| Op::Snapshot { vol, deferred }),
        1 => (0..8usize).prop_map(|snap| Op::Clone { snap }),
        1 => (0..8usize).prop_map(|snap| Op::DeleteSnapshot { snap }),
        1 => (0..4usize).prop_map(|vol| Op::DeleteVolume { vol }),
        1 => Just(Op::Flush),
        1 => (1..4usize).prop_map(|budget| Op::Fill { budget }),
        2 => (any::<bool>(), 0..8usize).prop_map(|(snap, which)| Op::Read { snap, which }),
        1 => any::<bool>().prop_map(|kill| Op::Reopen { kill }),
        2 => (0..8usize, any::<bool>(), 0..4usize, 0..12u64, 0..12u64, 1..=4u64).prop_map(
            |(src, from_snap, dst, src_ext, dst_ext, extents)| Op::Share {
                src, from_snap, dst, src_ext, dst_ext, extents,
            }
        ),
    ]
}

/// Block -> (the block it was written as, tag): a share moves a block's
/// contents to another address.
type Image = BTreeMap<u64, (u64, u32)>;

fn block(lba: u64, tag: u32) -> Vec<u8> {
    let mut b = vec![(tag as u8) ^ (lba as u8); BS];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b[8..12].copy_from_slice(&tag.to_le_bytes());
    b
}

fn decode(lba: u64, b: &[u8]) -> Result<Option<(u64, u32)>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let written_as = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let tag = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if b != block(written_as, tag).as_slice() {
        return Err(format!("block {lba} holds foreign or torn data"));
    }
    Ok(Some((written_as, tag)))
}

fn verify(dev: &dyn BlockDevice, want: &Image, what: &str) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; VOL_BLOCKS as usize * BS];
    dev.read(0, &mut buf)
        .map_err(|e| TestCaseError::fail(format!("{what}: read: {e}")))?;
    for lba in 0..VOL_BLOCKS {
        let got = decode(lba, &buf[lba as usize * BS..(lba as usize + 1) * BS])
            .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
        prop_assert_eq!(got, want.get(&lba).copied(), "{} block {}", what, lba);
    }
    Ok(())
}

struct ModelVol {
    name: String,
    image: Image,
}

struct ModelSnap {
    name: String,
    vol: String,
    image: Image,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let opts = PoolOptions {
        size: 4 << 20,
        extent_size: 4096,
        block_size: 512,
        journal_len: Some(8192),
    };
    let mut sim = SimBackend::new(0);
    let mut pool: Arc<Pool> = Pool::create_on(Box::new(sim.clone()), None, &opts).unwrap();
    // Deletes free a few entries per step, so a delete's work spans the
    // writes, commits, checks and reopens that follow it.
    pool.set_reclaim_batch(3);
    let mut vols: Vec<ModelVol> = (0..2)
        .map(|i| ModelVol {
            name: format!("v{i}"),
            image: Image::new(),
        })
        .collect();
    for v in &vols {
        pool.create_volume(&v.name, VOL_SIZE).unwrap();
    }
    let mut snaps: Vec<ModelSnap> = Vec::new();
    // Volumes and snapshots some share read from (deleting them may be
    // refused while the copy borrows).
    let mut shared_from: std::collections::BTreeSet<String> = Default::default();
    let mut next_tag = 1u32;
    let mut next_name = 0u32;
    for op in ops {
        match op {
            Op::Write {
                vol,
                lba,
                blocks,
                fua,
            } => {
                let Some(v) = vols.get_mut(vol) else { continue };
                let mut data = Vec::new();
                for b in lba..lba + blocks {
                    data.extend(block(b, next_tag));
                    v.image.insert(b, (b, next_tag));
                }
                next_tag += 1;
                let d = if fua {
                    Durability::ForceUnitAccess
                } else {
                    Durability::Cached
                };
                pool.volume(&v.name).unwrap().write(lba, &data, d).unwrap();
            }
            Op::Unmap { vol, lba, blocks } => {
                let Some(v) = vols.get_mut(vol) else { continue };
                for b in lba..lba + blocks {
                    v.image.remove(&b);
                }
                pool.volume(&v.name).unwrap().unmap(lba, blocks).unwrap();
            }
            Op::Snapshot { vol, deferred } => {
                let Some(v) = vols.get(vol) else { continue };
                let name = format!("s{next_name}");
                next_name += 1;
                if deferred {
                    pool.create_snapshot_deferred(&v.name, &name).unwrap();
                } else {
                    pool.create_snapshot(&v.name, &name).unwrap();
                }
                snaps.push(ModelSnap {
                    name,
                    vol: v.name.clone(),
                    image: v.image.clone(),
                });
            }
            Op::Clone { snap } => {
                let Some(s) = snaps.get(snap) else { continue };
                let name = format!("c{next_name}");
                next_name += 1;
                pool.create_clone(&s.name, &name).unwrap();
                vols.push(ModelVol {
                    name,
                    image: s.image.clone(),
                });
            }
            Op::DeleteSnapshot { snap } => {
                let Some(s) = snaps.get(snap) else { continue };
                let has_clone = pool
                    .snapshots()
                    .iter()
                    .any(|i| i.name == s.name && !i.clones.is_empty());
                match pool.delete_snapshot(&s.name) {
                    Ok(()) => {
                        prop_assert!(!has_clone);
                        snaps.remove(snap);
                    }
                    Err(Error::Busy(_)) => {
                        prop_assert!(has_clone || shared_from.contains(&s.name))
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Op::DeleteVolume { vol } => {
                let Some(v) = vols.get(vol) else { continue };
                match pool.delete_volume(&v.name) {
                    Ok(()) => {
                        let name = vols.remove(vol).name;
                        snaps.retain(|s| s.vol != name);
                    }
                    Err(Error::Busy(_)) => {
                        let busy = pool
                            .snapshots()
                            .iter()
                            .any(|i| i.volume == v.name && !i.clones.is_empty());
                        prop_assert!(busy || shared_from.contains(&v.name));
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Op::Flush => pool.flush().unwrap(),
            Op::Fill { budget } => {
                let before = pool.partial_entries();
                let filled = pool.fill_partials(budget).unwrap();
                prop_assert_eq!(filled, budget.min(before));
                prop_assert_eq!(pool.partial_entries(), before - filled);
            }
            Op::Read { snap: false, which } => {
                let Some(v) = vols.get(which % vols.len().max(1)) else {
                    continue;
                };
                verify(&pool.volume(&v.name).unwrap(), &v.image, &v.name)?;
            }
            Op::Read { snap: true, which } => {
                let Some(s) = snaps.get(which % snaps.len().max(1)) else {
                    continue;
                };
                verify(&pool.snapshot(&s.name).unwrap(), &s.image, &s.name)?;
            }
            Op::Share {
                src,
                from_snap,
                dst,
                src_ext,
                dst_ext,
                extents,
            } => {
                let n = extents.min(12 - src_ext).min(12 - dst_ext);
                let (src_name, src_image, src_dev): (String, Image, Arc<dyn BlockDevice>) =
                    if from_snap {
                        let Some(s) = snaps.get(src) else { continue };
                        let dev = pool.snapshot(&s.name).unwrap();
                        shared_from.insert(s.vol.clone());
                        (s.name.clone(), s.image.clone(), Arc::new(dev))
                    } else {
                        let Some(v) = vols.get(src % vols.len().max(1)) else {
                            continue;
                        };
                        let dev = pool.volume(&v.name).unwrap();
                        (v.name.clone(), v.image.clone(), Arc::new(dev))
                    };
                let Some(d) = vols.get_mut(dst) else { continue };
                let dst_dev = pool.volume(&d.name).unwrap();
                let source = src_dev.extent_source().unwrap();
                let done = dst_dev
                    .share_range(
                        &source,
                        src_ext * EXT_BLOCKS,
                        dst_ext * EXT_BLOCKS,
                        n * EXT_BLOCKS,
                    )
                    .unwrap();
                let overlapping = !from_snap
                    && src_name == d.name
                    && src_ext < dst_ext + n
                    && dst_ext < src_ext + n;
                prop_assert_eq!(done, !overlapping);
                if done {
                    shared_from.insert(src_name);
                    for i in 0..n * EXT_BLOCKS {
                        let (from, to) = (src_ext * EXT_BLOCKS + i, dst_ext * EXT_BLOCKS + i);
                        match src_image.get(&from) {
                            Some(t) => d.image.insert(to, *t),
                            None => d.image.remove(&to),
                        };
                    }
                }
            }
            Op::Reopen { kill } => {
                if kill {
                    // kill -9 after a flush: the page cache survives, the
                    // in-memory journal buffer does not (it is empty).
                    pool.flush().unwrap();
                    sim.crash_now();
                    drop(pool);
                    sim = SimBackend::from_image(sim.current_image());
                } else {
                    drop(pool);
                }
                pool = Pool::open_on(Box::new(sim.clone()), None, false).unwrap();
                pool.set_reclaim_batch(3);
            }
        }
        let report = pool.check();
        prop_assert!(report.is_clean(), "{}", report.summary());
    }
    for v in &vols {
        verify(&pool.volume(&v.name).unwrap(), &v.image, &v.name)?;
    }
    for s in &snaps {
        verify(&pool.snapshot(&s.name).unwrap(), &s.image, &s.name)?;
    }
    // Deleting everything returns every extent.
    let total = pool.info().extents;
    for v in vols.iter().rev() {
        let _ = pool.delete_volume(&v.name);
    }
    for v in vols.iter() {
        let _ = pool.delete_volume(&v.name);
    }
    for v in vols.iter().rev() {
        let _ = pool.delete_volume(&v.name);
    }
    pool.flush().unwrap();
    if pool.volumes().is_empty() {
        prop_assert_eq!(pool.info().free_extents, total);
    }
    prop_assert!(pool.check().is_clean());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
