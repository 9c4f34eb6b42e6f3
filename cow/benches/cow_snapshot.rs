//! Criterion benchmarks of the extent store on a real (sparse) pool file:
//!
//! - `snapshot_create/<size>`: time to create one snapshot of a volume whose
//!   map is fully populated (64 KiB extents), including its durable commit
//!   (two fdatasyncs). Sizes: 1 GiB and 32 GiB; set `IRONLUN_BENCH_TB=1` to
//!   add 1 TiB (16M map entries, several GB of RAM).
//! - `snapshot_meta/<size>`: the same without any I/O (the metadata work
//!   alone: record the generation, no walk of the map).
//! - `write_4k/overwrite` vs `write_4k/after_snapshot`: a 4 KiB cached write
//!   into an extent the volume owns (in place) versus the first write into
//!   an extent shared with a fresh snapshot (redirect + copy of the other
//!   60 KiB).
//!
//! `IRONLUN_BENCH_DIR` picks the directory for pool files (default: the
//! system temp dir). Run: `cargo bench -p ironlun-cow --bench cow_snapshot`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ironlun_cow::{BlockDevice, Durability, Pool};

const EXT: u64 = 64 << 10;

fn pool_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("IRONLUN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("ironlun-cow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn snapshot_create(c: &mut Criterion) {
    let mut sizes: Vec<(&str, u64)> = vec![("1GiB", 1 << 30), ("32GiB", 32 << 30)];
    if std::env::var_os("IRONLUN_BENCH_TB").is_some() {
        sizes.push(("1TiB", 1 << 40));
    }
    let mut group = c.benchmark_group("snapshot_create");
    group.sample_size(30);
    for (label, size) in sizes {
        let path = pool_path(&format!("snap-{label}.pool"));
        // Pool data area a little larger than the volume.
        let pool = Pool::create(&path, size + size / 8 + (64 << 20), EXT as u32).unwrap();
        pool.create_volume("v", size).unwrap();
        pool.bench_populate("v", size / EXT).unwrap();
        let vol = pool.volume("v").unwrap();
        let mut n = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(label), &size, |b, _| {
            b.iter(|| {
                n += 1;
                vol.snapshot(&format!("s{n}")).unwrap();
            })
        });
        drop(vol);
        drop(pool);
        let _ = std::fs::remove_file(&path);
    }
    group.finish();
}

fn write_4k(c: &mut Criterion) {
    let size: u64 = 256 << 20;
    let extents = size / EXT;
    let path = pool_path("write.pool");
    let pool = Pool::create(&path, 2 << 30, EXT as u32).unwrap();
    let vol = pool.create_volume("v", size).unwrap();
    let data = vec![0x5au8; 4096];
    let chunk = vec![0xa5u8; EXT as usize];
    for e in 0..extents {
        vol.write(e * (EXT / 512), &chunk, Durability::Cached)
            .unwrap();
    }
    vol.flush().unwrap();
    let mut group = c.benchmark_group("write_4k");
    // Extent i, block offset varying, so each write hits a different extent.
    let lba_of = |i: u64| (i % extents) * (EXT / 512) + (i * 8) % (EXT / 512);
    let mut i = 0u64;
    group.bench_function("overwrite", |b| {
        b.iter(|| {
            i += 1;
            vol.write(lba_of(i), &data, Durability::Cached).unwrap();
        })
    });
    let mut snaps = 0u64;
    group.bench_function("after_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                // A fresh snapshot makes every extent shared again; time
                // only the writes, each the first into its extent.
                snaps += 1;
                vol.snapshot(&format!("w{snaps}")).unwrap();
                let n = (iters - done).min(extents);
                let start = Instant::now();
                for k in 0..n {
                    vol.write(lba_of(k), &data, Durability::Cached).unwrap();
                }
                total += start.elapsed();
                done += n;
                // Drop the old snapshot so the pool does not fill up.
                pool.delete_snapshot(&format!("w{snaps}")).unwrap();
            }
            total
        })
    });
    group.finish();
    drop(vol);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

/// The metadata side of a snapshot alone (no I/O): applying the Snapshot
/// record to a state whose map holds every extent of the volume.
fn snapshot_meta(c: &mut Criterion) {
    use ironlun_cow::format::{Layout, Record};
    use ironlun_cow::meta::Meta;
    let mut sizes: Vec<(&str, u64)> = vec![("1GiB", 1 << 30), ("32GiB", 32 << 30)];
    if std::env::var_os("IRONLUN_BENCH_TB").is_some() {
        sizes.push(("1TiB", 1 << 40));
    }
    let mut group = c.benchmark_group("snapshot_meta");
    for (label, size) in sizes {
        let extents = size / EXT;
        let layout = Layout::plan(size + size / 8 + (1 << 30), EXT as u32, 512, None).unwrap();
        let mut m = Meta::new(layout);
        m.apply(
            &Record::CreateVolume {
                id: 1,
                name: "v".into(),
                size,
                base: None,
            },
            true,
        )
        .unwrap();
        for vext in 0..extents {
            let birth = m.gen;
            m.apply(
                &Record::Map {
                    vol: 1,
                    vext,
                    pext: vext,
                    birth,
                },
                true,
            )
            .unwrap();
        }
        let mut n = 0u64;
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                n += 1;
                let gen = m.gen;
                m.apply(
                    &Record::Snapshot {
                        vol: 1,
                        gen,
                        name: format!("s{n}"),
                    },
                    false,
                )
                .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot_create, snapshot_meta, write_4k);
criterion_main!(benches);
