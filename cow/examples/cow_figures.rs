//! Measures the extent store for `benches/cow-vs-qcow2.sh`, which runs the
//! same measurements on qcow2 with `qemu-img`/`qemu-io` side by side. Every
//! figure is printed as one `key=value` line so the script can collect it.
//!
//! ```text
//! cow_figures snapshot-create DIR SIZE COUNT   time COUNT snapshots of a fully mapped volume
//! cow_figures snapshot-series DIR COUNT        1st vs COUNTth snapshot of one 1 GiB volume
//! cow_figures write DIR ROUNDS COUNT PATTERN   4 KiB writes: overwrite vs first write after a snapshot
//! cow_figures read DIR ROUNDS COUNT SNAPSHOTS  4 KiB reads with 0 vs SNAPSHOTS snapshots
//! cow_figures delete DIR SIZE                  delete a fully mapped volume while another is read
//! ```
//! SIZE takes a K/M/G/T suffix. PATTERN is `random` (a random 4 KiB block
//! of a random extent, distinct extents per round) or `stride` (offset
//! `i * 68 KiB`, the pattern `qemu-img bench -S 69632` issues). Pools are
//! sparse files in DIR, removed at the end. Run it with the release build:
//! `cargo run -p ironlun-cow --release --example cow_figures -- ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlun_cow::format::{Superblock, SB_SLOT};
use ironlun_cow::sim::SplitMix;
use ironlun_cow::{BlockDevice, Durability, Pool, Volume};

const EXTENT: u64 = 64 << 10;
const SECTOR: u64 = 512;
const BLOCK: usize = 4096;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

fn parse_size(s: &str) -> Fallible<u64> {
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        Some('T' | 't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    Ok(num.parse::<u64>()? << shift)
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Fallible<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}: {what}").into())
}

/// A fresh pool file path in `dir` (any old file of that name removed).
fn fresh(dir: &Path, name: &str) -> Fallible<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join(name);
    if p.exists() {
        std::fs::remove_file(&p)?;
    }
    Ok(p)
}

/// Median, 99th percentile and maximum of `samples`, in microseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = samples.len();
    let pick = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    format!(
        "n={n} median_us={:.1} p99_us={:.1} max_us={:.1}",
        us(pick(0.5)),
        us(pick(0.99)),
        us(samples[n - 1])
    )
}

/// The data I/O mode asked for (`IRONLUN_COW_IO`; unset: the default).
fn io_mode() -> String {
    std::env::var("IRONLUN_COW_IO").unwrap_or_else(|_| "default".into())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes of the checkpoint the pool file's newest superblock names.
fn checkpoint_bytes(path: &Path) -> Fallible<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut best: Option<Superblock> = None;
    for slot in 0..2 {
        let mut buf = vec![0u8; SB_SLOT as usize];
        f.read_exact_at(&mut buf, slot * SB_SLOT)?;
        if let Ok(Some(sb)) = Superblock::decode(&buf, None) {
            if best.is_none_or(|b| sb.seq > b.seq) {
                best = Some(sb);
            }
        }
    }
    Ok(best.ok_or("no valid superblock")?.ckpt_bytes)
}

/// Snapshot create time on a volume of `size` bytes whose every extent is
/// mapped, durable on return and deferred (durable at the next commit).
fn snapshot_create(dir: &Path, size: u64, count: usize) -> Fallible<()> {
    let path = fresh(dir, "cow-snapshot-create.pool")?;
    let extents = size / EXTENT;
    {
        let pool = Pool::create(&path, size + size / 8 + (256 << 20), EXTENT as u32)?;
        pool.create_volume("v", size)?;
        let t = Instant::now();
        pool.bench_populate("v", extents)?;
        eprintln!(
            "populated {extents} extents in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // The checkpoint of a pool whose one volume maps `extents` extents:
    // the whole metadata a reopen reads.
    let ckpt = checkpoint_bytes(&path)?;
    println!(
        "cow metadata size={size} mapped_extents={extents} checkpoint_bytes={ckpt} bytes_per_tib_mapped={}",
        ckpt as u128 * (1u128 << 40) / (extents as u128 * EXTENT as u128)
    );
    let pool = Pool::open(&path)?;
    let vol = pool.volume("v")?;
    for (mode, deferred) in [("durable", false), ("deferred", true)] {
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{mode}{i}");
            let t = Instant::now();
            if deferred {
                vol.snapshot_deferred(&name)?;
            } else {
                vol.snapshot(&name)?;
            }
            samples.push(t.elapsed());
        }
        pool.flush()?;
        println!(
            "cow snapshot_create size={size} mode={mode} {}",
            summary(&mut samples)
        );
    }
    drop(vol);
    drop(pool);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Creates a pool holding volume "v" of 1 GiB with every extent written
/// (real data), flushed.
fn filled_pool(path: &Path, vol_size: u64, pool_size: u64) -> Fallible<(Arc<Pool>, Volume)> {
    let pool = Pool::create(path, pool_size, EXTENT as u32)?;
    let vol = pool.create_volume("v", vol_size)?;
    let chunk = vec![0xa5u8; 1 << 20];
    let mut lba = 0;
    while lba * SECTOR < vol_size {
        vol.write(lba, &chunk, Durability::Cached)?;
        lba += chunk.len() as u64 / SECTOR;
    }
    vol.flush()?;
    Ok((pool, vol))
}

/// The 1st vs the `count`th snapshot of one 1 GiB volume; between two
/// snapshots one random 4 KiB block is rewritten (untimed), so the retired
/// mappings the snapshots keep pile up as they would in use.
fn snapshot_series(dir: &Path, count: usize) -> Fallible<()> {
    let size = 1u64 << 30;
    let path = fresh(dir, "cow-snapshot-series.pool")?;
    let extra = count as u64 * EXTENT;
    let (pool, vol) = filled_pool(&path, size, size + extra + (512 << 20))?;
    let data = vec![0x3cu8; BLOCK];
    let mut rng = SplitMix(7);
    for (mode, deferred) in [("durable", false), ("deferred", true)] {
        let mut times = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{mode}{i}");
            let t = Instant::now();
            if deferred {
                vol.snapshot_deferred(&name)?;
            } else {
                vol.snapshot(&name)?;
            }
            times.push(t.elapsed());
            let lba = rng.below(size / BLOCK as u64) * (BLOCK as u64 / SECTOR);
            vol.write(lba, &data, Durability::Cached)?;
        }
        vol.flush()?;
        let k = (count / 100).max(1);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let first = us(times[0]);
        let last = us(times[count - 1]);
        let mut head: Vec<Duration> = times[..k].to_vec();
        let mut tail: Vec<Duration> = times[count - k..].to_vec();
        println!(
            "cow snapshot_series mode={mode} count={count} first_us={first:.1} last_us={last:.1} first{k}: {} last{k}: {}",
            summary(&mut head),
            summary(&mut tail)
        );
        // Delete this mode's snapshots (untimed) before the next mode.
        for i in 0..count {
            pool.delete_snapshot(&format!("{mode}{i}"))?;
        }
    }
    drop(vol);
    drop(pool);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Block offsets (in sectors) for `count` 4 KiB I/Os on a volume of
/// `extents` extents, each in a different extent.
fn offsets(pattern: &str, extents: u64, count: usize, rng: &mut SplitMix) -> Fallible<Vec<u64>> {
    let per = EXTENT / BLOCK as u64;
    if count as u64 > extents {
        return Err(format!("count {count} exceeds the {extents} extents").into());
    }
    Ok(match pattern {
        "random" => {
            // A random permutation's prefix: distinct extents.
            let mut ext: Vec<u64> = (0..extents).collect();
            for i in 0..count {
                let j = i + rng.below(extents - i as u64) as usize;
                ext.swap(i, j);
            }
            ext[..count]
                .iter()
                .map(|e| (e * per + rng.below(per)) * (BLOCK as u64 / SECTOR))
                .collect()
        }
        "stride" => (0..count as u64)
            .map(|i| i * (EXTENT + BLOCK as u64) / SECTOR)
            .collect(),
        other => return Err(format!("unknown pattern {other:?}").into()),
    })
}

/// Runs `lbas` as 4 KiB cached writes then one flush; returns IOPS.
fn write_run(vol: &Volume, lbas: &[u64], data: &[u8]) -> Fallible<f64> {
    let t = Instant::now();
    for &lba in lbas {
        vol.write(lba, data, Durability::Cached)?;
    }
    vol.flush()?;
    Ok(lbas.len() as f64 / t.elapsed().as_secs_f64())
}

/// 4 KiB write IOPS: plain overwrites of extents the volume owns vs the
/// first write into each extent after a snapshot. Rounds alternate the two
/// so drift in the disk affects both alike.
fn write_iops(dir: &Path, rounds: usize, count: usize, pattern: &str) -> Fallible<()> {
    let size = 1u64 << 30;
    let path = fresh(dir, "cow-write.pool")?;
    let (pool, vol) = filled_pool(&path, size, 2 * size + (512 << 20))?;
    let data = vec![0x5au8; BLOCK];
    let mut rng = SplitMix(11);
    let (mut plain, mut after, mut fill) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let lbas = offsets(pattern, size / EXTENT, count, &mut rng)?;
        plain.push(write_run(&vol, &lbas, &data)?);
        let lbas = offsets(pattern, size / EXTENT, count, &mut rng)?;
        let snap = format!("w{r}");
        vol.snapshot(&snap)?;
        after.push(write_run(&vol, &lbas, &data)?);
        // Timed apart: the deferred copy of the untouched granules (what
        // the background filler does once writes pause), through a flush.
        let t = Instant::now();
        while pool.fill_partials(1024)? > 0 {}
        pool.flush()?;
        fill.push(t.elapsed().as_secs_f64() * 1e3);
        // Untimed: the snapshot goes so the next round starts unshared.
        pool.delete_snapshot(&snap)?;
    }
    let (p, a, f) = (median(&mut plain), median(&mut after), median(&mut fill));
    // The writes plus their deferred fill, as if both ran back to back.
    let with_fill = count as f64 / (count as f64 / a + f / 1e3);
    println!(
        "cow write_4k io={} pattern={pattern} rounds={rounds} count={count} overwrite_iops={p:.0} after_snapshot_iops={a:.0} ratio={:.3} deferred_fill_ms={f:.1} after_snapshot_with_fill_iops={with_fill:.0} ratio_with_fill={:.3}",
        io_mode(),
        a / p,
        with_fill / p
    );
    drop(vol);
    drop(pool);
    std::fs::remove_file(&path)?;
    Ok(())
}

fn read_run(vol: &Volume, lbas: &[u64]) -> Fallible<f64> {
    let mut buf = vec![0u8; BLOCK];
    let t = Instant::now();
    for &lba in lbas {
        vol.read(lba, &mut buf)?;
    }
    Ok(lbas.len() as f64 / t.elapsed().as_secs_f64())
}

/// 4 KiB random read IOPS of a volume with no snapshot vs one with
/// `snapshots` snapshots, 16 random blocks rewritten after each (so about
/// `16 * snapshots` extents are redirected and the snapshots keep their
/// old copies). Both pools are open at once, both read whole once first
/// (untimed); rounds alternate.
fn read_iops(dir: &Path, rounds: usize, count: usize, snapshots: usize) -> Fallible<()> {
    let size = 1u64 << 30;
    let pool_size = 2 * size + (512 << 20);
    let (pool0, vol0) = filled_pool(&fresh(dir, "cow-read0.pool")?, size, pool_size)?;
    let (pool1, vol1) = filled_pool(&fresh(dir, "cow-read1.pool")?, size, pool_size)?;
    let data = vec![0x77u8; BLOCK];
    let mut rng = SplitMix(13);
    for i in 0..snapshots {
        vol1.snapshot_deferred(&format!("r{i}"))?;
        for _ in 0..16 {
            let lba = rng.below(size / BLOCK as u64) * (BLOCK as u64 / SECTOR);
            vol1.write(lba, &data, Durability::Cached)?;
        }
    }
    vol1.flush()?;
    // Warm pass: every block of both volumes once, so through the page
    // cache both read from memory and only the store's own path differs
    // (with O_DIRECT it changes nothing).
    let mut chunk = vec![0u8; 1 << 20];
    for vol in [&vol0, &vol1] {
        for mib in 0..size >> 20 {
            vol.read(mib << 11, &mut chunk)?;
        }
    }
    let (mut none, mut many) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let lbas = offsets("random", size / EXTENT, count, &mut rng)?;
        none.push(read_run(&vol0, &lbas)?);
        many.push(read_run(&vol1, &lbas)?);
    }
    let (a, b) = (median(&mut none), median(&mut many));
    println!(
        "cow read_4k io={} rounds={rounds} count={count} snapshots=0 iops={a:.0} snapshots={snapshots} iops={b:.0} ratio={:.3}",
        io_mode(),
        b / a
    );
    for (pool, vol, name) in [
        (pool0, vol0, "cow-read0.pool"),
        (pool1, vol1, "cow-read1.pool"),
    ] {
        drop(vol);
        drop(pool);
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(())
}

/// A thread doing random 4 KiB I/O on the first `size` bytes of `vol`
/// until `stop`: reads, or reads and cached writes alternating. Returns the
/// longest single I/O and the count.
fn io_loop(
    vol: &Volume,
    size: u64,
    writes: bool,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<(Duration, u64), String>> {
    let (vol, stop) = (vol.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; BLOCK];
        let mut rng = SplitMix(17);
        let (mut worst, mut n) = (Duration::ZERO, 0u64);
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let lba = rng.below(size / BLOCK as u64) * (BLOCK as u64 / SECTOR);
            let t = Instant::now();
            if writes && n % 2 == 1 {
                vol.write(lba, &buf, Durability::Cached)
                    .map_err(|e| e.to_string())?;
            } else {
                vol.read(lba, &mut buf).map_err(|e| e.to_string())?;
            }
            worst = worst.max(t.elapsed());
            n += 1;
        }
        Ok((worst, n))
    })
}

/// Deletes a volume of `size` bytes whose every extent is mapped while a
/// second thread reads 4 KiB blocks of another volume in a loop: how long
/// the delete call takes, and the longest a read waited meanwhile.
fn delete_while_reading(dir: &Path, size: u64) -> Fallible<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let path = fresh(dir, "cow-delete.pool")?;
    let small = 64u64 << 20;
    let pool = Pool::create(&path, size + size / 8 + small + (256 << 20), EXTENT as u32)?;
    pool.create_volume("big", size)?;
    pool.bench_populate("big", size / EXTENT)?;
    let vol = pool.create_volume("small", small)?;
    vol.write(0, &vec![0x11u8; small as usize], Durability::Cached)?;
    vol.flush()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = io_loop(&vol, small, false, &stop);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    pool.delete_volume("big")?;
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Release);
    let (worst, reads) = reader.join().map_err(|_| "reader panicked")??;
    let t = Instant::now();
    drop(vol);
    drop(pool);
    let close = t.elapsed();
    println!(
        "cow delete size={size} extents={} delete_ms={:.1} worst_read_ms={:.1} reads={reads} close_ms={:.1}",
        size / EXTENT,
        took.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        close.as_secs_f64() * 1e3
    );
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Deletes a snapshot whose volume (`size` bytes, every extent mapped)
/// was rewritten after it, so all its extents are the snapshot's alone,
/// while a second thread alternates 4 KiB reads and writes of another
/// volume (writes drive the batched reclaim): how long the delete call
/// takes, the longest a read or write waited meanwhile, and how long until
/// every extent is back. `batch` = "all" frees everything inside the
/// delete (the behaviour before batched snapshot deletes).
fn snapshot_delete_while_io(dir: &Path, size: u64, batch: &str) -> Fallible<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let path = fresh(dir, "cow-snapdelete.pool")?;
    let small = 64u64 << 20;
    let pool = Pool::create(
        &path,
        2 * size + size / 4 + small + (256 << 20),
        EXTENT as u32,
    )?;
    pool.create_volume("big", size)?;
    pool.bench_populate("big", size / EXTENT)?;
    pool.create_snapshot("big", "old")?;
    pool.bench_remap("big")?;
    if batch == "all" {
        pool.set_reclaim_batch(usize::MAX);
    }
    let vol = pool.create_volume("small", small)?;
    vol.write(0, &vec![0x11u8; small as usize], Durability::Cached)?;
    vol.flush()?;
    let free_before = pool.info().free_extents;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = io_loop(&vol, small, true, &stop);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    pool.delete_snapshot("old")?;
    let took = t.elapsed();
    // Until every extent the snapshot held is free again (the worker's
    // writes and the flushes here drive the batches).
    let deadline = Instant::now() + Duration::from_secs(600);
    while pool.reclaim_pending() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        pool.flush()?;
    }
    let all_back = t.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    let (worst, ops) = worker.join().map_err(|_| "worker panicked")??;
    pool.flush()?;
    let freed = pool.info().free_extents.saturating_sub(free_before);
    println!(
        "cow snapshot_delete size={size} extents={} batch={batch} delete_ms={:.1} worst_io_ms={:.1} ops={ops} all_free_ms={:.1} freed_extents={freed}",
        size / EXTENT,
        took.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        all_back.as_secs_f64() * 1e3,
    );
    drop(vol);
    drop(pool);
    std::fs::remove_file(&path)?;
    Ok(())
}

fn run(args: &[String]) -> Fallible<()> {
    let verb = arg(args, 1, "verb")?;
    let dir = PathBuf::from(arg(args, 2, "DIR")?);
    let num = |i: usize, what: &str| -> Fallible<usize> { Ok(arg(args, i, what)?.parse()?) };
    match verb {
        "snapshot-create" => {
            snapshot_create(&dir, parse_size(arg(args, 3, "SIZE")?)?, num(4, "COUNT")?)
        }
        "snapshot-series" => snapshot_series(&dir, num(3, "COUNT")?),
        "write" => write_iops(
            &dir,
            num(3, "ROUNDS")?,
            num(4, "COUNT")?,
            arg(args, 5, "PATTERN")?,
        ),
        "read" => read_iops(
            &dir,
            num(3, "ROUNDS")?,
            num(4, "COUNT")?,
            num(5, "SNAPSHOTS")?,
        ),
        "delete" => delete_while_reading(&dir, parse_size(arg(args, 3, "SIZE")?)?),
        "snapshot-delete" => snapshot_delete_while_io(
            &dir,
            parse_size(arg(args, 3, "SIZE")?)?,
            arg(args, 4, "BATCH (all|steps)")?,
        ),
        other => Err(format!("unknown verb {other:?}").into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cow_figures: {e}");
            ExitCode::FAILURE
        }
    }
}
