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

/// `write_if_cheap`: only a 4 KiB-aligned write in place into an extent the
/// volume owns whole; anything that would allocate, redirect or merge is
/// refused with nothing written, and the slow path then does it.
#[test]
fn cheap_writes_land_in_owned_extents_only() {
    let pool = pool("cheap-write.pool", IoMode::Uring);
    let v = pool.create_volume("v", 1 << 20).unwrap();
    let old = vec![0x11u8; 64 << 10];
    v.write(0, &old, Durability::Cached).unwrap();
    let new = vec![0x22u8; 4096];
    let read = |dev: &dyn BlockDevice, lba: u64| {
        let mut b = vec![0u8; 4096];
        dev.read(lba, &mut b).unwrap();
        b
    };

    assert!(v.write_if_cheap(8, &new), "owned, aligned: written here");
    assert_eq!(read(&v, 8), new);
    assert!(!v.write_if_cheap(1, &new[..512]), "not 4 KiB-aligned");
    assert!(
        !v.write_if_cheap(128, &new),
        "unmapped: needs an allocation"
    );
    assert_eq!(read(&v, 128), vec![0u8; 4096]);

    let s = v.snapshot("s").unwrap();
    assert!(!v.write_if_cheap(16, &new), "shared with a snapshot");
    assert_eq!(read(&v, 16), vec![0x11u8; 4096], "nothing written");
    // The slow path redirects (a partial entry), which is not cheap either.
    v.write(16, &new, Durability::Cached).unwrap();
    assert!(
        !v.write_if_cheap(24, &new),
        "partial entry, granules it lacks"
    );
    assert!(
        v.write_if_cheap(16, &new),
        "partial entry, granules it holds"
    );
    assert_eq!(read(&s, 16), vec![0x11u8; 4096]);
    assert_eq!(read(&s, 8), new, "the snapshot has the earlier cheap write");
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
