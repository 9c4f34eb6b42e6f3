//! Basic behaviour of pools, volumes, snapshots and clones on a real file.

use std::path::PathBuf;
use std::sync::Arc;

use ironlun_cow::{BlockDevice, BlockError, Durability, Error, Pool, Provisioning};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironlun-cow-basic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[test]
fn thin_write_read_snapshot_clone_delete() {
    let path = temp("a.pool");
    let pool = Pool::create(&path, 64 << 20, 64 << 10).unwrap();
    let free0 = pool.info().free_extents;
    let vol = pool.create_volume("v", 8 << 20).unwrap();
    let mut buf = vec![0xffu8; 4096];
    vol.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "unwritten reads as zeros");
    assert_eq!(
        vol.provisioning(0).unwrap().state,
        Provisioning::Deallocated
    );

    vol.write(8, &pattern(1, 4096), Durability::Cached).unwrap();
    vol.read(8, &mut buf).unwrap();
    assert_eq!(buf, pattern(1, 4096));
    assert_eq!(pool.info().free_extents, free0 - 1);
    let run = vol.provisioning(0).unwrap();
    assert_eq!((run.state, run.blocks), (Provisioning::Mapped, 128));

    let snap = vol.snapshot("s1").unwrap();
    let gen = snap.generation();
    // Overwrite after the snapshot: redirected, snapshot keeps old data.
    vol.write(16, &pattern(2, 4096), Durability::ForceUnitAccess)
        .unwrap();
    assert_eq!(pool.info().free_extents, free0 - 2);
    vol.read(8, &mut buf).unwrap();
    assert_eq!(buf, pattern(1, 4096), "untouched blocks copied");
    vol.read(16, &mut buf).unwrap();
    assert_eq!(buf, pattern(2, 4096));
    snap.read(16, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    snap.read(8, &mut buf).unwrap();
    assert_eq!(buf, pattern(1, 4096));
    assert!(matches!(
        snap.write(0, &buf, Durability::Cached),
        Err(BlockError::ReadOnly)
    ));
    assert_eq!(
        vol.changed_since(gen).unwrap().iter().collect::<Vec<_>>(),
        vec![0]
    );

    // A second write into the now-private extent is in place.
    vol.write(24, &pattern(3, 4096), Durability::Cached)
        .unwrap();
    assert_eq!(pool.info().free_extents, free0 - 2);

    let clone = pool.create_clone("s1", "c").unwrap();
    clone.read(8, &mut buf).unwrap();
    assert_eq!(buf, pattern(1, 4096));
    clone
        .write(8, &pattern(9, 512), Durability::Cached)
        .unwrap();
    clone.read(8, &mut buf[..512]).unwrap();
    assert_eq!(&buf[..512], &pattern(9, 512)[..]);
    snap.read(8, &mut buf[..512]).unwrap();
    assert_eq!(&buf[..512], &pattern(1, 512)[..]);
    // Unmap in a clone hides the origin's data.
    clone
        .write(200, &pattern(4, 512), Durability::Cached)
        .unwrap();
    clone.unmap(128, 128).unwrap();
    clone.read(200, &mut buf[..512]).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 0));

    assert!(matches!(pool.delete_snapshot("s1"), Err(Error::Busy(_))));
    assert!(matches!(pool.delete_volume("v"), Err(Error::Busy(_))));
    pool.delete_volume("c").unwrap();
    pool.delete_snapshot("s1").unwrap();
    pool.delete_volume("v").unwrap();
    pool.flush().unwrap();
    assert_eq!(pool.info().free_extents, free0);
    let report = pool.check();
    assert!(report.is_clean(), "{}", report.summary());
    drop((vol, snap, clone));
    drop(pool);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn reopen_keeps_everything_and_lock_refuses_second_holder() {
    let path = temp("b.pool");
    {
        let pool = Pool::create(&path, 32 << 20, 16 << 10).unwrap();
        assert!(matches!(Pool::open(&path), Err(Error::Locked { .. })));
        let v = pool.create_volume("v", 4 << 20).unwrap();
        v.write(0, &pattern(5, 8192), Durability::Cached).unwrap();
        v.snapshot("s").unwrap();
        v.write(0, &pattern(6, 512), Durability::Cached).unwrap();
        v.flush().unwrap();
    }
    let pool = Pool::open(&path).unwrap();
    let v = pool.volume("v").unwrap();
    let s = pool.snapshot("s").unwrap();
    let mut buf = vec![0u8; 8192];
    v.read(0, &mut buf).unwrap();
    let mut want = pattern(5, 8192);
    want[..512].copy_from_slice(&pattern(6, 512));
    assert_eq!(buf, want);
    s.read(0, &mut buf).unwrap();
    assert_eq!(buf, pattern(5, 8192));
    assert!(pool.check().is_clean());
    let dev: Arc<dyn BlockDevice> = pool.open_or_create_volume("lun0", 1 << 20).unwrap();
    assert_eq!(dev.geometry().blocks, 2048);
    drop((v, s, dev, pool));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn concurrent_writers_to_one_extent_after_snapshot() {
    let path = temp("c.pool");
    let pool = Pool::create(&path, 32 << 20, 64 << 10).unwrap();
    let v = pool.create_volume("v", 1 << 20).unwrap();
    for round in 0..20u8 {
        v.snapshot(&format!("s{round}")).unwrap();
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for b in 0..8u64 {
                        let lba = t * 8 + b;
                        v.write(
                            lba,
                            &[round.wrapping_add(lba as u8); 512],
                            Durability::Cached,
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut buf = vec![0u8; 32 * 512];
        v.read(0, &mut buf).unwrap();
        for lba in 0..32usize {
            assert!(
                buf[lba * 512..(lba + 1) * 512]
                    .iter()
                    .all(|&x| x == round.wrapping_add(lba as u8)),
                "round {round} lba {lba}"
            );
        }
    }
    assert!(pool.check().is_clean());
    drop((v, pool));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_io_engine_reads_what_the_others_wrote() {
    use ironlun_cow::backend::{FileBackend, IoMode};
    use ironlun_cow::PoolOptions;
    let modes = [IoMode::Pread, IoMode::Uring, IoMode::UringDirect];
    for (i, &mode) in modes.iter().enumerate() {
        let path = temp(&format!("engine-{i}.pool"));
        let backend = FileBackend::open_with(&path, true, mode).unwrap();
        eprintln!("{mode:?} -> {:?}", backend.mode());
        let opts = PoolOptions {
            size: 16 << 20,
            extent_size: 64 << 10,
            ..PoolOptions::default()
        };
        let pool = Pool::create_on(Box::new(backend), Some(path.clone()), &opts).unwrap();
        let v = pool.create_volume("v", 1 << 20).unwrap();
        v.write(1, &pattern(7, 512), Durability::Cached).unwrap();
        v.write(128, &pattern(8, 64 << 10), Durability::ForceUnitAccess)
            .unwrap();
        v.snapshot("s").unwrap();
        v.write(130, &pattern(9, 4096), Durability::Cached).unwrap();
        drop((v, pool));
        // Reopen with the next engine.
        let next = modes[(i + 1) % modes.len()];
        let backend = FileBackend::open_with(&path, false, next).unwrap();
        let pool = Pool::open_on(Box::new(backend), Some(path.clone()), false).unwrap();
        let v = pool.volume("v").unwrap();
        let s = pool.snapshot("s").unwrap();
        let mut buf = vec![0u8; 64 << 10];
        v.read(128, &mut buf).unwrap();
        let mut want = pattern(8, 64 << 10);
        want[1024..1024 + 4096].copy_from_slice(&pattern(9, 4096));
        assert_eq!(buf, want, "{mode:?} then {next:?}");
        s.read(128, &mut buf).unwrap();
        assert_eq!(buf, pattern(8, 64 << 10));
        v.read(1, &mut buf[..512]).unwrap();
        assert_eq!(&buf[..512], &pattern(7, 512)[..]);
        assert!(pool.check().is_clean());
        drop((v, s, pool));
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn concurrent_fua_writers_and_snapshots_survive_reopen() {
    let path = temp("d.pool");
    {
        let pool = Pool::create(&path, 64 << 20, 16 << 10).unwrap();
        let v = pool.create_volume("v", 8 << 20).unwrap();
        let snapper = {
            let v = v.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    v.snapshot(&format!("s{i}")).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        };
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let lba = (t * 50 + i) * 37 % 16384;
                        let d = if i % 3 == 0 {
                            Durability::ForceUnitAccess
                        } else {
                            Durability::Cached
                        };
                        v.write(lba, &[(t * 50 + i) as u8 | 1; 512], d).unwrap();
                    }
                    v.flush().unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        snapper.join().unwrap();
        assert!(pool.check().is_clean());
    }
    let pool = Pool::open(&path).unwrap();
    let v = pool.volume("v").unwrap();
    let mut buf = [0u8; 512];
    for t in 0..4u64 {
        for i in 0..50u64 {
            let lba = (t * 50 + i) * 37 % 16384;
            v.read(lba, &mut buf).unwrap();
            assert!(
                buf.iter().all(|&b| b == (t * 50 + i) as u8 | 1),
                "lba {lba}"
            );
        }
    }
    assert_eq!(pool.snapshots().len(), 10);
    assert!(pool.check().is_clean());
    drop((v, pool));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_full_pool_reuses_unmapped_space_without_an_explicit_flush() {
    let path = temp("e.pool");
    let pool = Pool::create(&path, 4 << 20, 64 << 10).unwrap();
    let extents = pool.info().extents;
    let v = pool.create_volume("v", extents * (64 << 10)).unwrap();
    let chunk = vec![7u8; 64 << 10];
    for e in 0..extents {
        v.write(e * 128, &chunk, Durability::Cached).unwrap();
    }
    assert_eq!(pool.info().free_extents, 0);
    assert!(matches!(
        pool.create_volume("w", 1 << 20)
            .unwrap()
            .write(0, &chunk, Durability::Cached),
        Err(BlockError::NoSpace)
    ));
    // Unmap without a flush: the space is pending until a commit, which the
    // next allocation that finds the pool full makes itself.
    v.unmap(0, 128).unwrap();
    let w = pool.volume("w").unwrap();
    w.write(0, &chunk, Durability::Cached).unwrap();
    assert!(pool.check().is_clean());
    drop((v, w, pool));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn group_snapshot_and_changed_between() {
    let path = temp("f.pool");
    let pool = Pool::create(&path, 32 << 20, 64 << 10).unwrap();
    let a = pool.create_volume("a", 4 << 20).unwrap();
    let b = pool.create_volume("b", 4 << 20).unwrap();
    a.write(0, &pattern(1, 512), Durability::Cached).unwrap();
    b.write(0, &pattern(2, 512), Durability::Cached).unwrap();
    let snaps = pool
        .create_snapshot_group(&[("a", "a@1"), ("b", "b@1")])
        .unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(matches!(
        pool.create_snapshot_group(&[("a", "x"), ("b", "x")]),
        Err(Error::Exists(_))
    ));
    let g1 = snaps[0].generation();
    a.write(128, &pattern(3, 512), Durability::Cached).unwrap(); // extent 1
    let s2 = a.snapshot("a@2").unwrap();
    a.write(0, &pattern(4, 512), Durability::Cached).unwrap(); // extent 0
    a.unmap(256, 128).unwrap(); // extent 2: never mapped, no change
    let ext = |bm: roaring::RoaringBitmap| bm.iter().collect::<Vec<_>>();
    assert_eq!(
        ext(a.changed_between(g1, s2.generation()).unwrap()),
        vec![1]
    );
    assert_eq!(
        ext(a.changed_between(s2.generation(), u64::MAX).unwrap()),
        vec![0]
    );
    assert_eq!(ext(a.changed_between(g1, u64::MAX).unwrap()), vec![0, 1]);
    assert_eq!(ext(a.changed_since(g1).unwrap()), vec![0, 1]);
    assert!(b.changed_since(snaps[1].generation()).unwrap().is_empty());
    let mut buf = vec![0u8; 512];
    snaps[0].read(0, &mut buf).unwrap();
    assert_eq!(buf, pattern(1, 512));
    drop((a, b, snaps, s2, pool));
    std::fs::remove_file(&path).unwrap();
}

/// A volume delete returns before its extents are back (they return in
/// batches); meanwhile the pool counts them as free, `check` is clean, a
/// close writes them as free, and an allocation that finds no free extent
/// finishes the reclaim instead of failing.
#[test]
fn volume_delete_reclaims_in_batches() {
    let path = temp("reclaim.pool");
    let ext = 4096u64;
    let pool = Pool::create(&path, 256 << 20, ext as u32).unwrap();
    let free0 = pool.info().free_extents;
    let big = 200u64 << 20;
    pool.create_volume("big", big).unwrap();
    pool.bench_populate("big", big / ext).unwrap();
    assert_eq!(pool.info().free_extents, free0 - big / ext);

    // Delete, then close at once: the checkpoint covers the extents still
    // waiting, so the reopened pool has them all free.
    pool.delete_volume("big").unwrap();
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    assert_eq!(pool.info().free_extents, free0);
    drop(pool);
    let pool = Pool::open(&path).unwrap();
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    assert_eq!(pool.info().free_extents, free0);

    // Again, and this time fill the space right after the delete with one
    // write larger than the extents free outside the deleted volume.
    pool.create_volume("big", big).unwrap();
    pool.bench_populate("big", big / ext).unwrap();
    pool.delete_volume("big").unwrap();
    let vol = pool.create_volume("next", big).unwrap();
    let data = pattern(7, big as usize);
    vol.write(0, &data, Durability::Cached).unwrap();
    vol.flush().unwrap();
    let mut back = vec![0u8; 1 << 20];
    for mib in [0u64, 99, 199] {
        vol.read(mib * 2048, &mut back).unwrap();
        let at = (mib << 20) as usize;
        assert!(
            back == data[at..at + (1 << 20)],
            "MiB {mib} reads back wrong"
        );
    }
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    assert_eq!(pool.info().free_extents, free0 - big / ext);
    drop(vol);
    drop(pool);
    let pool = Pool::open(&path).unwrap();
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    assert_eq!(pool.info().free_extents, free0 - big / ext);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// Sub-extent redirect: the first small write after a snapshot writes only
/// its own granules; the rest of the extent keeps reading from the
/// snapshot's extent until it is filled (by a later write, the background
/// filler, or before the snapshot is deleted). Survives a reopen.
#[test]
fn small_write_after_snapshot_redirects_only_its_granules() {
    const E: usize = 64 << 10;
    let path = temp("partial.pool");
    let pool = Pool::create(&path, 64 << 20, E as u32).unwrap();
    let vol = pool.create_volume("v", 1 << 20).unwrap();
    let a = pattern(1, 3 * E);
    vol.write(0, &a, Durability::Cached).unwrap();
    pool.create_snapshot("v", "s").unwrap();
    let free = pool.info().free_extents;

    // 4 KiB at 8 KiB; 512 bytes at 40.5 KiB in the next extent; 512 bytes
    // at the start of the third.
    vol.write(16, &pattern(2, 4096), Durability::Cached)
        .unwrap();
    vol.write(128 + 81, &pattern(3, 512), Durability::ForceUnitAccess)
        .unwrap();
    vol.write(256, &pattern(5, 512), Durability::Cached)
        .unwrap();
    assert_eq!(pool.partial_entries(), 3, "three partial entries");
    assert_eq!(pool.info().free_extents, free - 3);
    let mut want = a.clone();
    want[8192..12288].copy_from_slice(&pattern(2, 4096));
    want[E + 81 * 512..E + 82 * 512].copy_from_slice(&pattern(3, 512));
    want[2 * E..2 * E + 512].copy_from_slice(&pattern(5, 512));
    let read_all = |dev: &dyn BlockDevice| {
        let mut b = vec![0u8; 3 * E];
        dev.read(0, &mut b).unwrap();
        b
    };
    assert!(
        read_all(&vol) == want,
        "volume reads its writes over the old data"
    );
    let snap = pool.snapshot("s").unwrap();
    assert!(read_all(&snap) == a, "snapshot keeps its image");
    assert!(pool.check().is_clean(), "{}", pool.check().summary());

    // A second write into granules a partial extent does not hold writes
    // them in place; the entry holds them from then on (a deferred `Fill`)
    // and stays partial until it is filled.
    vol.write(40, &pattern(4, 1024), Durability::Cached)
        .unwrap();
    want[40 * 512..42 * 512].copy_from_slice(&pattern(4, 1024));
    // Unaligned to 4 KiB, at the end of the second extent: widened to the
    // granules, which it fills exactly.
    vol.write(128 + 127, &pattern(7, 512), Durability::Cached)
        .unwrap();
    want[2 * E - 512..2 * E].copy_from_slice(&pattern(7, 512));
    assert!(read_all(&vol) == want);
    assert!(read_all(&snap) == a, "snapshot keeps its image");
    assert_eq!(pool.partial_entries(), 3);
    assert_eq!(pool.info().free_extents, free - 3, "in place: no extent");
    // Into granules it holds: no change.
    vol.write(128 + 81, &pattern(6, 512), Durability::Cached)
        .unwrap();
    want[E + 81 * 512..E + 82 * 512].copy_from_slice(&pattern(6, 512));
    assert_eq!(pool.partial_entries(), 3);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());

    // Reopen after a flush: the fills were recorded. The checkpoint of a
    // clean close carries the partial entries.
    vol.flush().unwrap();
    let copy = temp("partial-flushed.pool");
    std::fs::copy(&path, &copy).unwrap();
    let replayed = Pool::open(&copy).unwrap();
    assert!(read_all(&replayed.volume("v").unwrap()) == want, "replayed");
    assert!(
        replayed.check().is_clean(),
        "{}",
        replayed.check().summary()
    );
    drop(replayed);
    let _ = std::fs::remove_file(&copy);
    drop((vol, snap));
    drop(pool);
    let pool = Pool::open(&path).unwrap();
    assert_eq!(pool.partial_entries(), 3);
    let vol = pool.volume("v").unwrap();
    assert!(read_all(&vol) == want);
    assert!(read_all(&pool.snapshot("s").unwrap()) == a);

    // The filler completes two; deleting the snapshot fills the other first.
    assert_eq!(pool.fill_partials(2).unwrap(), 2);
    assert_eq!(pool.partial_entries(), 1);
    pool.delete_snapshot("s").unwrap();
    assert_eq!(pool.partial_entries(), 0);
    assert!(read_all(&vol) == want, "filled extents read the same");
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    assert_eq!(
        pool.info().free_extents,
        free,
        "the snapshot's extents came back"
    );

    // A clone's first small write reads the rest from its origin.
    pool.create_snapshot("v", "s2").unwrap();
    let clone = pool.create_clone("s2", "c").unwrap();
    clone
        .write(0, &pattern(5, 512), Durability::Cached)
        .unwrap();
    assert_eq!(pool.partial_entries(), 1);
    let mut cwant = want.clone();
    cwant[..512].copy_from_slice(&pattern(5, 512));
    assert!(read_all(&clone) == cwant);
    assert!(read_all(&vol) == want);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    drop(clone);
    pool.delete_volume("c").unwrap();
    pool.delete_snapshot("s2").unwrap();
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    drop(vol);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// Writes that end at an extent's end, into partial entries of extents
/// with 128 granules (512-byte blocks, 64 KiB extents), on every path:
/// in place into a partial entry, and a whole-extent copy from a partial
/// one (found in review: a granule index one past the last).
#[test]
fn partial_writes_at_the_extent_end() {
    const E: usize = 64 << 10;
    let path = temp("partial-end.pool");
    let pool = Pool::create(&path, 64 << 20, E as u32).unwrap();
    let v = pool.create_volume("v", 1 << 20).unwrap();
    let mut want = vec![0u8; 2 * E];
    // Sequential 4 KiB writes into a fresh volume: the first makes a
    // partial entry (zeros elsewhere), the rest go in place.
    for i in 0..(2 * E / 4096) {
        let d = pattern(i as u8, 4096);
        v.write(i as u64 * 8, &d, Durability::Cached).unwrap();
        want[i * 4096..(i + 1) * 4096].copy_from_slice(&d);
    }
    let mut got = vec![0u8; 2 * E];
    v.read(0, &mut got).unwrap();
    assert!(got == want);
    assert_eq!(pool.partial_entries(), 0, "filled by the writes themselves");

    // Snapshot, a partial write, another snapshot, then a write at the
    // extent's end: the old view is partial, so the whole extent is copied.
    pool.create_snapshot("v", "s1").unwrap();
    v.write(0, &pattern(50, 512), Durability::Cached).unwrap();
    want[..512].copy_from_slice(&pattern(50, 512));
    pool.create_snapshot("v", "s2").unwrap();
    v.write(127, &pattern(60, 512), Durability::Cached).unwrap();
    want[127 * 512..128 * 512].copy_from_slice(&pattern(60, 512));
    // And in place into a new partial entry, ending at the extent's end.
    pool.create_snapshot("v", "s3").unwrap();
    v.write(128, &pattern(70, 512), Durability::Cached).unwrap();
    v.write(255, &pattern(80, 512), Durability::Cached).unwrap();
    want[E..E + 512].copy_from_slice(&pattern(70, 512));
    want[2 * E - 512..].copy_from_slice(&pattern(80, 512));
    v.read(0, &mut got).unwrap();
    assert!(got == want);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    for s in ["s2", "s1", "s3"] {
        pool.delete_snapshot(s).unwrap();
        v.read(0, &mut got).unwrap();
        assert!(got == want, "after deleting {s}");
        assert!(pool.check().is_clean(), "{}", pool.check().summary());
    }
    drop(v);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// The background thread also frees deleted volumes' and snapshots'
/// entries, with no write or flush to carry the batches (over iSCSI most
/// writes are answered without passing through the path that does).
#[test]
fn background_thread_finishes_deletes_without_writes() {
    let path = temp("bg-reclaim.pool");
    let pool = Pool::create(&path, 64 << 20, 64 << 10).unwrap();
    pool.set_reclaim_batch(16);
    let v = pool.create_volume("v", 16 << 20).unwrap();
    v.write(0, &pattern(3, 16 << 20), Durability::Cached)
        .unwrap();
    pool.create_snapshot("v", "s").unwrap();
    v.write(0, &pattern(4, 16 << 20), Durability::Cached)
        .unwrap();
    drop(v);
    pool.delete_snapshot("s").unwrap();
    assert!(pool.reclaim_pending(), "256 retired entries, 16 per step");
    pool.start_background_fill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pool.reclaim_pending() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!pool.reclaim_pending(), "the background thread freed them");
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// Once writes pause, the background thread completes partial entries
/// (and the data reads the same before and after).
#[test]
fn background_thread_fills_partial_entries_when_writes_pause() {
    let path = temp("bg-fill.pool");
    let pool = Pool::create(&path, 64 << 20, 64 << 10).unwrap();
    let v = pool.create_volume("v", 4 << 20).unwrap();
    let old = pattern(5, 4 << 20);
    v.write(0, &old, Durability::Cached).unwrap();
    pool.create_snapshot("v", "s").unwrap();
    let mut want = old.clone();
    for i in 0..16u64 {
        // 4 KiB into each of 16 extents: 16 partial entries.
        let lba = i * 128 + 8;
        v.write(lba, &pattern(6 + i as u8, 4096), Durability::Cached)
            .unwrap();
        let at = lba as usize * 512;
        want[at..at + 4096].copy_from_slice(&pattern(6 + i as u8, 4096));
    }
    assert_eq!(pool.partial_entries(), 16);
    pool.start_background_fill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pool.partial_entries() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        pool.partial_entries(),
        0,
        "the background thread filled them"
    );
    let mut got = vec![0u8; 4 << 20];
    v.read(0, &mut got).unwrap();
    assert!(got == want, "the volume reads the same");
    pool.snapshot("s").unwrap().read(0, &mut got).unwrap();
    assert!(got == old, "the snapshot reads the same");
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    drop(v);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// In large extents (2 MiB, granules of 16 KiB) too, a second small write
/// into a partial extent does not copy the whole extent: it records just
/// the granules it wrote, widened from sub-granule writes.
#[test]
fn large_extents_record_granules_instead_of_completing() {
    const E: usize = 2 << 20;
    let path = temp("partial-large.pool");
    let pool = Pool::create(&path, 64 << 20, E as u32).unwrap();
    let v = pool.create_volume("v", 8 << 20).unwrap();
    let old = pattern(7, E);
    v.write(0, &old, Durability::Cached).unwrap();
    pool.create_snapshot("v", "s").unwrap();
    // Granules of 16 KiB (2 MiB / 128): 512 bytes at 4 KiB, then 512
    // bytes at 1 MiB + 512 (both widened to their granules).
    v.write(8, &pattern(1, 512), Durability::Cached).unwrap();
    v.write(2049, &pattern(2, 512), Durability::Cached).unwrap();
    assert_eq!(
        pool.partial_entries(),
        1,
        "still partial after the second write"
    );
    let mut want = old.clone();
    want[4096..4608].copy_from_slice(&pattern(1, 512));
    want[(1 << 20) + 512..(1 << 20) + 1024].copy_from_slice(&pattern(2, 512));
    let mut got = vec![0u8; E];
    v.read(0, &mut got).unwrap();
    assert!(got == want);
    pool.snapshot("s").unwrap().read(0, &mut got).unwrap();
    assert!(got == old);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());
    drop(v);
    drop(pool);
    let pool = Pool::open(&path).unwrap();
    let mut got = vec![0u8; E];
    pool.volume("v").unwrap().read(0, &mut got).unwrap();
    assert!(got == want, "after a reopen");
    pool.delete_snapshot("s").unwrap();
    pool.volume("v").unwrap().read(0, &mut got).unwrap();
    assert!(got == want, "after the fill the delete made");
    drop(pool);
    let _ = std::fs::remove_file(&path);
}
