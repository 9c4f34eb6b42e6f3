//! Replication figures measured through the engine on real pool files (no
//! iSCSI, no CIM in the path), printed as a Markdown table:
//!
//! 1. synchronous-mirror write latency against the same writes to a volume
//!    with no mirror (4 KiB random writes, one at a time, alternating
//!    between the two volumes in rounds so the machine's load hits both);
//! 2. asynchronous-mirror lag under load: dirty extents pending while a
//!    writer writes as fast as it can, sampled every 5 ms, and the time to
//!    drain once the writer stops;
//! 3. resync time against the dirty fraction: Fracture, dirty a fraction
//!    of the extents on the source, Resync Replica (waited for) timed, with
//!    the bytes the engine's own counter says it moved.
//!
//! Run: `cargo bench -p ironlun-replication --bench replication`
//! Env: REPL_BENCH_DIR (where the pool files go; default a directory under
//! the system temp dir; put it on the disk you want to measure),
//! REPL_BENCH_MIB [256] volume size, REPL_BENCH_WRITES [4000] writes per
//! volume for the latency figure, REPL_BENCH_LOAD_SECS [5].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlun_cow::{BlockDevice, Durability, Pool};
use ironlun_replication::model::{CopyState, Mode, Operation, ReturnCode, SyncType};
use ironlun_replication::{ElementRef, ElementReplicaRequest, ReplicationService, WaitFor};

const MIB: u64 = 1 << 20;
const EXTENT: u64 = 64 << 10;
const BLOCK: usize = 4096;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a fixed, dependency-free sequence of offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn wait_synchronized() -> Option<WaitFor> {
    Some(WaitFor {
        state: CopyState::Synchronized,
        timeout: Duration::from_secs(600),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn fill(dev: &dyn BlockDevice, tag: u8) {
    let chunk = vec![tag; MIB as usize];
    let blocks = dev.geometry().blocks;
    let per = MIB / 512;
    let mut lba = 0;
    while lba < blocks {
        dev.write(lba, &chunk, Durability::Cached).unwrap();
        lba += per;
    }
    dev.flush().unwrap();
}

fn mirror(svc: &Arc<ReplicationService>, src: &ElementRef, name: &str, mode: Mode) -> u64 {
    let mut r = ElementReplicaRequest::new(SyncType::Mirror, src.clone());
    r.element_name = Some(name.into());
    r.mode = Some(mode);
    r.target_pool = Some("mirror".into());
    r.wait_for = wait_synchronized();
    let reply = svc.create_element_replica(r).unwrap();
    assert_eq!(reply.code(), ReturnCode::Completed);
    reply.synchronization.unwrap()
}

fn modify(svc: &Arc<ReplicationService>, id: u64, op: Operation) {
    let wait = matches!(op, Operation::ResyncReplica)
        .then(wait_synchronized)
        .flatten();
    let code = svc
        .modify_replica_synchronization(id, op, wait)
        .unwrap()
        .code();
    assert_eq!(code, ReturnCode::Completed, "{op}");
}

fn main() {
    let mib = env_u64("REPL_BENCH_MIB", 256);
    let writes = env_u64("REPL_BENCH_WRITES", 4000);
    let load_secs = env_u64("REPL_BENCH_LOAD_SECS", 5);
    let dir = std::env::var_os("REPL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ironlun-repl-bench-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let size = mib * MIB;
    // The source pool and the mirror-target pool: two files (as a mirror
    // to another pool on the same disk).
    let pool = Pool::create(dir.join("pool.img"), 4 * size + 256 * MIB, EXTENT as u32).unwrap();
    let mpool = Pool::create(dir.join("mirror.img"), 4 * size + 256 * MIB, EXTENT as u32).unwrap();
    let svc = ReplicationService::open(
        [
            ("p".to_string(), pool.clone()),
            ("mirror".to_string(), mpool.clone()),
        ],
        dir.join("repl.json"),
    )
    .unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "replication bench: {mib} MiB volumes, 64 KiB extents, pools in {} (load average at start: {})",
        dir.display(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // ---- 1. synchronous-mirror write latency vs no mirror -------------
    for name in ["plain", "msrc"] {
        pool.create_volume(name, size).unwrap();
    }
    let plain_ref = ElementRef::new("p", "plain");
    let msrc_ref = ElementRef::new("p", "msrc");
    let plain = svc.device(&plain_ref).unwrap();
    let msrc = svc.device(&msrc_ref).unwrap();
    // Every extent allocated first, so no write measures an allocation.
    fill(plain.as_ref(), 1);
    fill(msrc.as_ref(), 1);
    let sync_id = mirror(&svc, &msrc_ref, "mdst", Mode::Synchronous);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let buf = vec![0x5au8; BLOCK];
    let slots = size / BLOCK as u64;
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for durability in [Durability::Cached, Durability::ForceUnitAccess] {
        lat = [Vec::new(), Vec::new()];
        let rounds = 20;
        for round in 0..rounds {
            // Alternate which volume goes first in each round.
            for k in 0..2 {
                let which = ((k + round) % 2) as usize;
                let dev = if which == 0 { &plain } else { &msrc };
                for _ in 0..writes / rounds {
                    let lba = (rng.next() % slots) * (BLOCK as u64 / 512);
                    let t = Instant::now();
                    dev.write(lba, &buf, durability).unwrap();
                    lat[which].push(t.elapsed());
                }
            }
        }
        for l in lat.iter_mut() {
            l.sort();
        }
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        println!(
            "\n1. synchronous mirror, 4 KiB random writes QD1 ({durability:?}), {} writes per volume:",
            lat[0].len()
        );
        println!("| volume | mean us | p50 us | p99 us |");
        println!("| --- | --- | --- | --- |");
        for (i, what) in ["no mirror", "synchronous mirror"].iter().enumerate() {
            println!(
                "| {what} | {} | {} | {} |",
                us(mean(&lat[i])),
                us(percentile(&lat[i], 0.5)),
                us(percentile(&lat[i], 0.99))
            );
        }
        println!(
            "overhead: p50 x{:.2}, mean x{:.2}",
            percentile(&lat[1], 0.5).as_secs_f64() / percentile(&lat[0], 0.5).as_secs_f64(),
            mean(&lat[1]).as_secs_f64() / mean(&lat[0]).as_secs_f64()
        );
    }
    drop(lat);

    // ---- 2. asynchronous-mirror lag under load ------------------------
    modify(&svc, sync_id, Operation::ResetToAsync);
    let link = svc.mirror_link(sync_id).expect("the mirror's link");
    println!(
        "\n2. asynchronous mirror under a 4 KiB random writer ({load_secs} s per load; pending \
         extents sampled every 5 ms; the bound is {} extents, beyond it writes go through \
         synchronously):",
        ironlun_replication::mirror::DEFAULT_MAX_DIRTY
    );
    println!(
        "| writer | writes/s reached | pending p50 | pending p99 | pending max | drain after the load stops |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    // Paced loads (writes per second; 0 = as fast as it can).
    for rate in [2000u64, 20000, 0] {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, written, dev) = (stop.clone(), written.clone(), msrc.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x0fed_cba9_8765_4321 ^ rate);
                let buf = vec![0xa5u8; BLOCK];
                let t0 = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rate > 0 {
                        // Keep to `rate` writes per second.
                        let due = Duration::from_secs_f64(n as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(t0.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let lba = (rng.next() % slots) * (BLOCK as u64 / 512);
                    dev.write(lba, &buf, Durability::Cached).unwrap();
                    n += 1;
                    written.store(n, Ordering::Relaxed);
                }
            })
        };
        let t0 = Instant::now();
        let mut samples = Vec::new();
        while t0.elapsed() < Duration::from_secs(load_secs) {
            samples.push(link.dirty().len());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        let loaded = t0.elapsed();
        let stopped = Instant::now();
        let deadline = stopped + Duration::from_secs(300);
        while !link.dirty().is_empty() {
            assert!(Instant::now() < deadline, "the async mirror never drained");
            std::thread::sleep(Duration::from_millis(1));
        }
        let drain = stopped.elapsed();
        samples.sort();
        let n = written.load(Ordering::SeqCst);
        let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        let what = if rate == 0 {
            "full speed".to_string()
        } else {
            format!("paced at {rate}/s")
        };
        println!(
            "| {what} | {:.0} | {} | {} | {} | {:.1} ms |",
            n as f64 / loaded.as_secs_f64(),
            pick(0.5),
            pick(0.99),
            samples.last().copied().unwrap_or(0),
            drain.as_secs_f64() * 1e3
        );
    }

    // ---- 3. resync time vs dirty fraction -----------------------------
    modify(&svc, sync_id, Operation::ResetToSync);
    let extents = size / EXTENT;
    println!("\n3. Fracture, dirty a fraction of the source's {extents} extents, Resync Replica (waited for):");
    println!("| dirty | dirty MiB | resync ms | MiB moved (engine counter) | moved / dirty |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rng = Rng(0x5555_aaaa_3333_cccc);
    for pct in [1u64, 5, 10, 25, 50, 100] {
        modify(&svc, sync_id, Operation::Fracture);
        // A random pct% of the extents, one 4 KiB write each.
        let mut order: Vec<u64> = (0..extents).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let dirty = (extents * pct).div_ceil(100);
        for x in &order[..dirty as usize] {
            msrc.write(x * EXTENT / 512, &buf, Durability::Cached)
                .unwrap();
        }
        msrc.flush().unwrap();
        let before = svc.bytes_copied();
        let t = Instant::now();
        modify(&svc, sync_id, Operation::ResyncReplica);
        let took = t.elapsed();
        let moved = svc.bytes_copied() - before;
        println!(
            "| {pct}% | {:.1} | {:.0} | {:.1} | {:.3} |",
            (dirty * EXTENT) as f64 / MIB as f64,
            took.as_secs_f64() * 1e3,
            moved as f64 / MIB as f64,
            moved as f64 / (dirty * EXTENT) as f64
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    svc.shutdown();
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
}
