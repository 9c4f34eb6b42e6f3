//! A real kill -9 test: a child process (this test binary, re-run in child
//! mode) opens a pool file, writes self-describing blocks, flushes, takes
//! snapshots, and reports on stdout what was acknowledged durable. The
//! parent SIGKILLs it at a random moment, reopens the pool and checks that
//! every acknowledged write and snapshot is there, that no block holds
//! another block's data, and that `check()` finds no leak. Then it starts
//! the next cycle on the same pool.
//!
//! `IRONLUN_KILL_CYCLES` sets the number of cycles (default 100; the long
//! mode is 1,000).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ironlun_cow::sim::SplitMix;
use ironlun_cow::{BlockDevice, Durability, Pool};

const BS: usize = 512;
const VOL_BLOCKS: u64 = 8192; // 4 MiB, 64 extents of 64 KiB
const CHILD_ENV: &str = "IRONLUN_KILL_CHILD";

fn block(lba: u64, tag: u64) -> Vec<u8> {
    let mut b = vec![(tag as u8) ^ (lba as u8) ^ 0xa7; BS];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b[8..16].copy_from_slice(&tag.to_le_bytes());
    b
}

fn decode(lba: u64, b: &[u8]) -> Result<Option<u64>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[8..16]);
    let tag = u64::from_le_bytes(t);
    if b != block(lba, tag).as_slice() {
        return Err(format!(
            "block {lba} holds another block's data or a torn mix"
        ));
    }
    Ok(Some(tag))
}

/// The i-th operation of a cycle: (lba, blocks, kind) where kind 0 = cached
/// write, 1 = FUA write, 2 = cached write then flush, 3 = snapshot,
/// 4 = deferred snapshot (durable with the next commit).
fn op(rng: &mut SplitMix) -> (u64, u64, u8) {
    let lba = rng.below(VOL_BLOCKS);
    let n = 1 + rng.below((VOL_BLOCKS - lba).min(16));
    let kind = match rng.below(100) {
        0..=69 => 0,
        70..=84 => 1,
        85..=96 => 2,
        97..=98 => 3,
        _ => 4,
    };
    (lba, n, kind)
}

fn tag_of(cycle: u64, i: u64) -> u64 {
    (cycle << 32) | (i + 1)
}

/// Child mode: run operations until killed, reporting on stdout.
fn child(path: PathBuf, cycle: u64, seed: u64) {
    let pool = Pool::open(&path).expect("child open");
    let vol = pool.volume("v").expect("child volume");
    let mut rng = SplitMix(seed);
    println!("\n@@ READY");
    for i in 0.. {
        let (lba, n, kind) = op(&mut rng);
        if kind == 3 {
            let name = format!("c{cycle}-{i}");
            vol.snapshot(&name).expect("snapshot");
            println!("@@ SNAP {i}");
            continue;
        }
        if kind == 4 {
            let name = format!("c{cycle}-{i}");
            vol.snapshot_deferred(&name).expect("deferred snapshot");
            println!("@@ DSNAP {i}");
            continue;
        }
        let mut data = Vec::with_capacity(n as usize * BS);
        for b in lba..lba + n {
            data.extend(block(b, tag_of(cycle, i)));
        }
        let d = if kind == 1 {
            Durability::ForceUnitAccess
        } else {
            Durability::Cached
        };
        vol.write(lba, &data, d).expect("write");
        match kind {
            1 => println!("@@ FUA {i}"),
            2 => {
                vol.flush().expect("flush");
                println!("@@ FLUSH {i}");
            }
            _ => {}
        }
    }
}

#[derive(Clone, Default)]
struct Allowed {
    durable: Option<u64>,
    later: Vec<u64>,
}

#[test]
fn kill9_cycles() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let cycle: u64 = std::env::var("IRONLUN_KILL_CYCLE")
            .unwrap()
            .parse()
            .unwrap();
        let seed: u64 = std::env::var("IRONLUN_KILL_SEED").unwrap().parse().unwrap();
        child(PathBuf::from(path), cycle, seed);
        return;
    }
    let cycles: u64 = std::env::var("IRONLUN_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("ironlun-cow-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.pool");
    let _ = std::fs::remove_file(&path);
    {
        let pool = Pool::create(&path, 32 << 20, 64 << 10).unwrap();
        pool.create_volume("v", VOL_BLOCKS * BS as u64).unwrap();
    }
    // Current durable content per block, and snapshot images.
    let mut current: Vec<Option<u64>> = vec![None; VOL_BLOCKS as usize];
    let mut snaps: HashMap<String, Vec<Option<u64>>> = HashMap::new();
    let mut rng = SplitMix(0x6b11_1999);
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0u64;
    let mut deferred_checked = 0u64;
    for cycle in 1..=cycles {
        let seed = rng.next_u64();
        let mut child = Command::new(&exe)
            .args(["kill9_cycles", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env("IRONLUN_KILL_CYCLE", cycle.to_string())
            .env("IRONLUN_KILL_SEED", seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    let ready = l == "@@ READY";
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(e) => panic!("cycle {cycle}: child never got ready ({e}): {lines:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5 + rng.below(100)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        // Replay the child's operations on the model.
        let mut durable_upto: Option<u64> = None; // all ops <= this are durable
        let mut fua: Vec<u64> = Vec::new();
        let mut snap_done: Vec<u64> = Vec::new();
        let mut dsnap_done: Vec<u64> = Vec::new();
        let mut last_seen = 0u64;
        for l in &lines {
            let Some(msg) = l.strip_prefix("@@ ") else {
                continue;
            };
            let mut it = msg.split_whitespace();
            let (Some(kind), Some(i)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            last_seen = last_seen.max(i);
            match kind {
                "FLUSH" | "SNAP" => {
                    durable_upto = Some(i);
                    if kind == "SNAP" {
                        snap_done.push(i);
                    }
                }
                "FUA" => fua.push(i),
                "DSNAP" => dsnap_done.push(i),
                _ => {}
            }
        }
        let mut allowed: Vec<Allowed> = current
            .iter()
            .map(|c| Allowed {
                durable: *c,
                later: Vec::new(),
            })
            .collect();
        let mut crng = SplitMix(seed);
        let mut snap_images: Vec<(String, Vec<Option<u64>>)> = Vec::new();
        // Deferred snapshots: (name, image, certain). Certain once a later
        // flush, FUA write or durable snapshot was acknowledged (each
        // commits the whole journal buffer); else it may be gone, but if it
        // survived its image is exact.
        let mut dsnap_images: Vec<(String, Vec<Option<u64>>, bool)> = Vec::new();
        // Ops beyond the last reported one may have run too (unreported);
        // walk far enough past it.
        for i in 0..last_seen + 64 {
            let (lba, n, kind) = op(&mut crng);
            if kind == 4 {
                if dsnap_done.contains(&i) {
                    let img = allowed
                        .iter()
                        .map(|a| a.later.last().copied().or(a.durable))
                        .collect();
                    let certain = durable_upto.is_some_and(|d| d > i) || fua.iter().any(|&j| j > i);
                    dsnap_images.push((format!("c{cycle}-{i}"), img, certain));
                }
                continue;
            }
            if kind == 3 {
                if snap_done.contains(&i) {
                    let img = allowed
                        .iter()
                        .map(|a| a.later.last().copied().or(a.durable))
                        .collect();
                    snap_images.push((format!("c{cycle}-{i}"), img));
                }
                if durable_upto == Some(i) || snap_done.contains(&i) {
                    for a in allowed.iter_mut() {
                        if let Some(v) = a.later.last().copied() {
                            a.durable = Some(v);
                        }
                        a.later.clear();
                    }
                }
                continue;
            }
            let tag = tag_of(cycle, i);
            let is_durable =
                fua.contains(&i) || (kind == 2 && durable_upto.is_some_and(|d| d >= i));
            for b in lba..lba + n {
                let a = &mut allowed[b as usize];
                if is_durable && kind == 1 {
                    a.durable = Some(tag);
                    a.later.clear();
                } else {
                    a.later.push(tag);
                }
            }
            if kind == 2 && durable_upto.is_some_and(|d| d >= i) {
                for a in allowed.iter_mut() {
                    if let Some(v) = a.later.last().copied() {
                        a.durable = Some(v);
                    }
                    a.later.clear();
                }
            }
        }
        acked_total += fua.len() as u64 + snap_done.len() as u64;
        // Verify.
        let pool = Pool::open(&path).unwrap_or_else(|e| panic!("cycle {cycle}: reopen: {e}"));
        let report = pool.check();
        assert!(report.is_clean(), "cycle {cycle}: {}", report.summary());
        let vol = pool.volume("v").unwrap();
        let mut buf = vec![0u8; VOL_BLOCKS as usize * BS];
        vol.read(0, &mut buf).unwrap();
        for lba in 0..VOL_BLOCKS {
            let got = decode(lba, &buf[lba as usize * BS..(lba as usize + 1) * BS])
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            let a = &allowed[lba as usize];
            assert!(
                got == a.durable || got.is_some_and(|t| a.later.contains(&t)),
                "cycle {cycle}: block {lba} reads {got:?}, durable {:?}, later {:?}",
                a.durable,
                a.later
            );
            current[lba as usize] = got;
        }
        for (name, img) in snap_images {
            snaps.insert(name, img);
        }
        for (name, img, certain) in dsnap_images {
            if certain || pool.snapshot(&name).is_ok() {
                acked_total += certain as u64;
                deferred_checked += 1;
                snaps.insert(name, img);
            }
        }
        for (name, img) in &snaps {
            let s = pool
                .snapshot(name)
                .unwrap_or_else(|e| panic!("cycle {cycle}: snapshot {name}: {e}"));
            s.read(0, &mut buf).unwrap();
            for lba in 0..VOL_BLOCKS {
                let got = decode(lba, &buf[lba as usize * BS..(lba as usize + 1) * BS]).unwrap();
                assert_eq!(
                    got, img[lba as usize],
                    "cycle {cycle}: snapshot {name} block {lba}"
                );
            }
        }
        // Keep the snapshot count bounded: delete a random half beyond 4.
        let mut names: Vec<String> = snaps.keys().cloned().collect();
        names.sort();
        while names.len() > 4 {
            let k = rng.below(names.len() as u64) as usize;
            let name = names.remove(k);
            pool.delete_snapshot(&name).unwrap();
            snaps.remove(&name);
        }
        // Snapshots the child created but never reported may exist: they
        // are legal (their image was durable); drop them so the next cycle's
        // bookkeeping stays exact.
        for info in pool.snapshots() {
            if !snaps.contains_key(&info.name) {
                pool.delete_snapshot(&info.name).unwrap();
            }
        }
        assert!(pool.check().is_clean());
    }
    eprintln!(
        "kill -9: {cycles} cycles, {acked_total} acknowledged FUA writes and snapshots verified \
         ({deferred_checked} deferred snapshots)"
    );
    assert!(
        cycles < 20 || deferred_checked > 0,
        "no deferred snapshot was checked in {cycles} cycles"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
