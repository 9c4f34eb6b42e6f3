//! `BlockDevice::read_if_cached` on pool volumes and snapshots: through the
//! page cache it answers what `read` would (data just written is cached,
//! holes are zeros), and it never answers with `O_DIRECT` or out of range.

use std::path::PathBuf;

use ironlun_cow::backend::{FileBackend, IoMode};
use ironlun_cow::{BlockDevice, Durability, Pool, PoolOptions};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironlun-cow-cached-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn pool(name: &str, mode: IoMode) -> std::sync::Arc<Pool> {
    let path = temp(name);
    let backend = FileBackend::open_with(&path, true, mode).unwrap();
    let opts = PoolOptions {
        size: 16 << 20,
        extent_size: 64 << 10,
        ..PoolOptions::default()
    };
    Pool::create_on(Box::new(backend), Some(path), &opts).unwrap()
}

#[test]
fn buffered_reads_of_written_blocks_and_holes_are_answered() {
    let pool = pool("buffered.pool", IoMode::Uring);
    let v = pool.create_volume("v", 1 << 20).unwrap();
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    v.write(16, &data, Durability::Cached).unwrap();
    let s = v.snapshot("s").unwrap();
    v.write(16, &vec![0xAB; 4096], Durability::Cached).unwrap();

    let mut buf = vec![0xFFu8; 8192];
    assert!(v.read_if_cached(16, &mut buf));
    let mut want = data.clone();
    want[..4096].fill(0xAB);
    assert_eq!(buf, want);

    // The snapshot still shows the data from before the second write.
    assert!(s.read_if_cached(16, &mut buf));
    assert_eq!(buf, data);

    // A hole reads as zeros without any I/O.
    let mut hole = vec![0xFFu8; 4096];
    assert!(v.read_if_cached(1000, &mut hole));
    assert!(hole.iter().all(|&b| b == 0));

    // Out of range or not whole blocks: left to `read`, which says why.
    let blocks = v.geometry().blocks;
    assert!(!v.read_if_cached(blocks, &mut hole));
    assert!(!v.read_if_cached(0, &mut [0u8; 100]));
}

#[test]
fn direct_io_never_answers_from_the_cache() {
    let pool = pool("direct.pool", IoMode::UringDirect);
    let v = pool.create_volume("v", 1 << 20).unwrap();
    v.write(0, &vec![1u8; 4096], Durability::Cached).unwrap();
    let mut buf = vec![0u8; 4096];
    let direct = FileBackend::open_with(&temp("probe.pool"), true, IoMode::UringDirect)
        .unwrap()
        .mode();
    if direct == IoMode::UringDirect {
        assert!(!v.read_if_cached(0, &mut buf));
    }
    v.read(0, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; 4096]);
}

/// `write_if_cheap`: a 4 KiB-aligned write that needs only the page cache
/// and at most a record in the journal buffer: in place into an extent the
/// volume owns, a redirect of a shared or unmapped extent (just the granules
/// written), or the completion of a partial entry from cached data. What
/// it does is exactly what `write` would have done, records included.
#[test]
fn cheap_writes_go_in_place_redirect_and_fill() {
    let path = temp("cheap-write.pool");
    let backend = FileBackend::open_with(&path, true, IoMode::Uring).unwrap();
    let opts = PoolOptions {
        size: 16 << 20,
        extent_size: 64 << 10,
        ..PoolOptions::default()
    };
    let pool = Pool::create_on(Box::new(backend), Some(path.clone()), &opts).unwrap();
    let v = pool.create_volume("v", 1 << 20).unwrap();
    let old = vec![0x11u8; 64 << 10];
    v.write(0, &old, Durability::Cached).unwrap();
    let new = vec![0x22u8; 4096];
    let read = |dev: &dyn BlockDevice, lba: u64, len: usize| {
        let mut b = vec![0u8; len];
        dev.read(lba, &mut b).unwrap();
        b
    };
    let free = |pool: &Pool| pool.info().free_extents;

    assert!(v.write_if_cheap(8, &new), "owned, aligned: written here");
    assert_eq!(read(&v, 8, 4096), new);
    assert!(!v.write_if_cheap(1, &new[..512]), "not 4 KiB-aligned");
    assert_eq!(read(&v, 0, 4096), vec![0x11u8; 4096], "nothing written");

    // Unmapped: the write gets a new extent holding just its granules.
    let before = free(&pool);
    assert!(v.write_if_cheap(136, &new), "unmapped: a sparse redirect");
    assert_eq!(free(&pool), before - 1);
    let mut want = vec![0u8; 64 << 10];
    want[8 * 512..8 * 512 + 4096].copy_from_slice(&new);
    assert_eq!(read(&v, 128, 64 << 10), want, "the rest reads as zeros");

    // Shared with a snapshot: redirected, and the snapshot keeps the old data.
    let s = v.snapshot("s").unwrap();
    assert!(v.write_if_cheap(16, &new), "shared: a sparse redirect");
    assert_eq!(read(&s, 16, 4096), vec![0x11u8; 4096]);
    let mut head = old.clone();
    head[8 * 512..8 * 512 + 4096].copy_from_slice(&new);
    head[16 * 512..16 * 512 + 4096].copy_from_slice(&new);
    assert_eq!(read(&v, 0, 64 << 10), head);
    assert!(
        v.write_if_cheap(16, &[0x33u8; 4096]),
        "partial entry, granules it holds: in place"
    );
    head[16 * 512..16 * 512 + 4096].fill(0x33);
    // Granules the partial entry lacks: written in place, their fill
    // recorded (merged with the entry's other fills until a commit).
    assert!(v.write_if_cheap(40, &[0x44u8; 8192]), "partial: filled");
    head[40 * 512..40 * 512 + 8192].fill(0x44);
    assert!(v.write_if_cheap(56, &new), "partial: filled again");
    head[56 * 512..56 * 512 + 4096].copy_from_slice(&new);
    assert_eq!(read(&v, 0, 64 << 10), head);
    assert_eq!(read(&s, 0, 64 << 10), {
        let mut w = old.clone();
        w[8 * 512..8 * 512 + 4096].copy_from_slice(&new);
        w
    });
    // The background filler's copy leaves the data as it is.
    assert_eq!(pool.fill_partials(100).unwrap(), 2);
    assert_eq!(read(&v, 0, 64 << 10), head);
    assert_eq!(read(&v, 128, 64 << 10), want);
    assert!(v.write_if_cheap(48, &new), "a whole extent again: in place");
    head[48 * 512..48 * 512 + 4096].copy_from_slice(&new);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());

    // The records the cheap writes left are replayed after a reopen.
    v.flush().unwrap();
    drop((v, s));
    drop(pool);
    let pool = Pool::open(&path).unwrap();
    let v = pool.volume("v").unwrap();
    let s = pool.snapshot("s").unwrap();
    assert_eq!(read(&v, 0, 64 << 10), head);
    assert_eq!(read(&v, 128, 64 << 10), want);
    assert_eq!(read(&s, 16, 4096), vec![0x11u8; 4096]);
    assert!(pool.check().is_clean(), "{}", pool.check().summary());

    let direct = self::pool("cheap-direct.pool", IoMode::UringDirect);
    let d = direct.create_volume("d", 1 << 20).unwrap();
    d.write(0, &old, Durability::Cached).unwrap();
    let mode = FileBackend::open_with(&temp("probe2.pool"), true, IoMode::UringDirect)
        .unwrap()
        .mode();
    if mode == IoMode::UringDirect {
        assert!(
            !d.write_if_cheap(8, &new),
            "O_DIRECT writes wait for the disk"
        );
    } else {
        eprintln!("WARNING: no O_DIRECT on this file system; the O_DIRECT case was not checked");
    }
}
