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
