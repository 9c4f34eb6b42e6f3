//! The replication engine inside a real `ironlun serve`, driven through its
//! CIM-XML face with the real clients (wbemcli, and pywbemcli for array
//! parameters) and read back over iSCSI with the raw initiator in common/:
//!
//! - kill -9 of the server during a clone's background copy and a mirror's
//!   resync: after each restart the same jobs resume and finish, the
//!   replicas compare equal to what they copy, and `ironlun pool check` on
//!   the stopped pool is clean (also straight after each kill);
//! - group snapshots with Sequential Consistency taken while an
//!   interleaved, sequence-stamped writer writes two LUNs: every snapshot
//!   pair shows exactly a prefix of the write sequence.
//!
//! Missing clients are installed with cim-shim/tests/install-clients.sh; if
//! they still cannot run these tests FAIL (they never pass without them).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cim::{ensure_clients, number_after, pywbemcli, run, Endpoint};
use common::{free_port, read10, write10, Conn, Server, TARGET};

const INITIATOR: &str = "iqn.2026-11.org.ironlun:repl-daemon";

fn vol(id: &str) -> String {
    format!("MSISCSITARGET_StorageVolume.DeviceID=\"default/{id}\"")
}

/// The CIM-XML service of one running server, reached with wbemcli.
struct Cim {
    base: String,
    svc: String,
    /// pywbemcli's connection options.
    py: Vec<String>,
}

impl Cim {
    fn new(data_dir: &Path, http: u16) -> Cim {
        let e = Endpoint::of(data_dir, http)
            .unwrap_or_else(|e| panic!("no CIM credential in {}: {e}", data_dir.display()));
        Cim {
            base: e.wbem_base,
            svc: e.svc,
            py: e.py,
        }
    }

    /// Invokes a method of the replication service; returns its return
    /// value and the client's output.
    fn call(&self, method: &str, params: &str) -> (u64, String) {
        let o = run(
            Path::new("wbemcli"),
            &[
                "cm".into(),
                format!("{}:{}", self.base, self.svc),
                format!("{method}.{params}"),
            ],
        );
        let rc = number_after(&o, &format!("{method}: "))
            .unwrap_or_else(|| panic!("{method}: no return value in:\n{o}"));
        (rc, o)
    }

    fn job(&self, id: u64) -> String {
        run(
            Path::new("wbemcli"),
            &[
                "gi".into(),
                format!(
                    "{}:MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{id}\"",
                    self.base
                ),
            ],
        )
    }

    /// Polls job `id` (bounded) until `done(JobState, PercentComplete)`;
    /// PercentComplete never goes back while polled (a copy that started
    /// over would).
    fn wait_job(&self, id: u64, what: &str, done: impl Fn(u64, u64) -> bool) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = 0;
        loop {
            let o = self.job(id);
            let state = number_after(&o, "JobState=");
            let pct = number_after(&o, "PercentComplete=");
            if let (Some(s), Some(p)) = (state, pct) {
                assert!(s != 10 && s != 8, "job {id} failed or was terminated: {o}");
                assert!(p >= last, "job {id} went back from {last}% to {p}%: {o}");
                last = p;
                if done(s, p) {
                    return (s, p);
                }
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: {what} never came: {o}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pywbemcli(&self, args: &[&str]) -> String {
        let mut a = self.py.clone();
        a.extend(args.iter().map(|s| s.to_string()));
        run(&pywbemcli(), &a)
    }
}

fn session(s: &Server, lun: u64) -> Conn {
    let mut c = Conn::connect(s.addr);
    c.lun = lun;
    c.login(INITIATOR, TARGET, &[]);
    // The first commands may get unit attentions.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.scsi(&[0u8; 6], 0, None).unwrap().0 != 0 {
        assert!(Instant::now() < deadline, "LUN {lun} never became ready");
    }
    c
}

/// Runs a command, sending it again (bounded) while it ends in UNIT
/// ATTENTION, as initiators do (e.g. REPORTED LUNS DATA HAS CHANGED when a
/// replica is exposed as a LUN meanwhile; such a command was not run).
fn scsi(c: &mut Conn, cdb: &[u8], edtl: u32, data: Option<&[u8]>) -> (u8, Vec<u8>, Vec<u8>) {
    for _ in 0..8 {
        let r = c.scsi(cdb, edtl, data).expect("iSCSI I/O");
        if r.0 == 2 && common::sense_code(&r.2).map(|(key, _, _)| key) == Some(6) {
            continue;
        }
        return r;
    }
    panic!("unit attentions without end on LUN {}", c.lun)
}

/// 1 MiB of 512-byte blocks per WRITE / READ.
const CHUNK_BLOCKS: u16 = 2048;
const CHUNK: usize = CHUNK_BLOCKS as usize * 512;

fn chunk_pattern(seed: u32, chunk: u32) -> Vec<u8> {
    let mut v = vec![0u8; CHUNK];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i as u32)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(seed.wrapping_mul(97))
            .wrapping_add(chunk.wrapping_mul(131)) as u8
            ^ (i >> 9) as u8;
    }
    v
}

/// Writes chunks `range` of pattern `seed` to `lun` and flushes.
fn write_chunks(s: &Server, lun: u64, seed: u32, range: std::ops::Range<u32>) {
    let mut c = session(s, lun);
    for i in range {
        let d = chunk_pattern(seed, i);
        let (st, _, sense) = scsi(
            &mut c,
            &write10(i * CHUNK_BLOCKS as u32, CHUNK_BLOCKS),
            CHUNK as u32,
            Some(&d),
        );
        assert_eq!(st, 0, "WRITE LUN {lun} chunk {i}: sense {sense:02x?}");
    }
    let (st, _, _) = scsi(&mut c, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, None);
    assert_eq!(st, 0, "SYNCHRONIZE CACHE LUN {lun}");
}

/// Reads `chunks` MiB from LUN `lun`.
fn read_chunks(s: &Server, lun: u64, chunks: u32) -> Vec<u8> {
    let mut c = session(s, lun);
    let mut out = Vec::with_capacity(chunks as usize * CHUNK);
    for i in 0..chunks {
        let (st, d, sense) = scsi(
            &mut c,
            &read10(i * CHUNK_BLOCKS as u32, CHUNK_BLOCKS),
            CHUNK as u32,
            None,
        );
        assert_eq!(st, 0, "READ LUN {lun} chunk {i}: sense {sense:02x?}");
        assert_eq!(d.len(), CHUNK);
        out.extend_from_slice(&d);
    }
    out
}

/// The first differing MiB chunk of two images, for messages.
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.chunks(CHUNK)
        .zip(b.chunks(CHUNK))
        .position(|(x, y)| x != y)
}

/// `ironlun pool check --json` on a pool no server holds: clean.
fn assert_pool_clean(pool: &Path, when: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlun"))
        .args(["pool", "check"])
        .arg(pool)
        .arg("--json")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"clean\":true"),
        "pool check {when}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sigkill(s: &mut Server) {
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
}

// ---- kill -9 during a clone copy and a mirror resync -------------------

/// MiB written to each source.
const SOURCE_MIB: u32 = 48;
/// kill -9 rounds while the copies run.
const KILLS: usize = 2;

#[test]
fn clone_copy_and_mirror_resync_resume_after_kill_9() {
    ensure_clients();
    let dir = std::env::temp_dir().join(format!("ironlun-it-repl-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let pool = data.join("pool.img");
    // Before: the two sources. After the first kill: also the clone (LUN 2,
    // readable and writable while its copy runs) and the mirror target
    // (LUN 3, fenced while the mirror flows).
    let before = dir.join("sources.toml");
    let after = dir.join("replicas.toml");
    let luns = |names: &[&str]| {
        let mut t = format!("[[target]]\niqn = \"{TARGET}\"\n");
        for (i, n) in names.iter().enumerate() {
            t.push_str(&format!(
                "[[target.lun]]\nid = {i}\nsize = \"64M\"\nvolume = \"{n}\"\n"
            ));
        }
        t
    };
    std::fs::write(&before, luns(&["csrc", "msrc"])).unwrap();
    std::fs::write(&after, luns(&["csrc", "msrc", "cdst", "mdst"])).unwrap();
    let start = |cfg: &Path, http: u16| {
        let mut s = Server::start_in(
            dir.clone(),
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--cim-listen",
                &format!("127.0.0.1:{http}"),
                // 16 extents (1 MiB) per batch, one batch per 250 ms: each
                // copy of 48 MiB takes about 12 s, so the kills land mid-copy.
                "--replication-copy-delay-ms",
                "250",
            ],
        );
        s.keep = true;
        s
    };

    let http = free_port();
    let mut s = start(&before, http);
    let cim = Cim::new(&data, http);
    write_chunks(&s, 0, 1, 0..SOURCE_MIB);

    // The mirror: synchronous, made on the empty source (nothing to copy),
    // then fractured; the source's writes while fractured are what Resync
    // copies.
    let (rc, o) = cim.call(
        "CreateElementReplica",
        &format!(
            "ElementName=\"mdst\",SyncType=6,Mode=2,WaitForCopyState=4,SourceElement={}",
            vol("msrc")
        ),
    );
    assert_eq!(rc, 0, "{o}");
    let sync = format!(
        "Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement={},SyncedElement={}",
        vol("msrc"),
        vol("mdst")
    );
    let (rc, o) = cim.call(
        "ModifyReplicaSynchronization",
        &format!("Operation=12,{sync}"),
    );
    assert_eq!(rc, 0, "Fracture: {o}");
    write_chunks(&s, 1, 2, 0..SOURCE_MIB);

    // The clone: 4096 and a job.
    let (rc, o) = cim.call(
        "CreateElementReplica",
        &format!(
            "ElementName=\"cdst\",SyncType=8,SourceElement={}",
            vol("csrc")
        ),
    );
    assert_eq!(rc, 4096, "{o}");
    let clone_job = number_after(&o, "IRONLUN:job-").expect("a clone job");
    // The source moves on after the point in time: the clone keeps the old.
    write_chunks(&s, 0, 3, 0..8);

    // Resync Replica (14): 4096 and a job.
    let (rc, o) = cim.call(
        "ModifyReplicaSynchronization",
        &format!("Operation=14,{sync}"),
    );
    assert_eq!(rc, 4096, "Resync: {o}");
    let resync_job = number_after(&o, "IRONLUN:job-").expect("a resync job");

    let mut floor = 0;
    for kill in 0..KILLS {
        // Let both copies get further than at the last restart, then kill.
        let want = floor + 15;
        let mut at = Vec::new();
        for (job, what) in [(clone_job, "clone copy"), (resync_job, "mirror resync")] {
            let (state, pct) = cim.wait_job(job, &format!("{what} at {want}%"), |_, p| p >= want);
            assert_eq!(
                state, 4,
                "kill {kill}: the {what} finished before the kill could land mid-copy \
                 ({pct}%); slow it further"
            );
            at.push(pct);
        }
        // The state file records progress every 500 ms; let it catch up.
        std::thread::sleep(Duration::from_millis(700));
        sigkill(&mut s);
        eprintln!("kill -9 #{kill}: clone at {}%, resync at {}%", at[0], at[1]);
        drop(s);
        assert_pool_clean(&pool, &format!("after kill -9 #{kill}"));

        s = start(&after, http);
        let log = s.log_text();
        for job in [clone_job, resync_job] {
            assert!(
                log.contains(&format!("resuming IRONLUN:job-{job}")),
                "job {job} was not resumed at restart:\n{log}"
            );
        }
        // Resumed where it stopped (the recorded progress), not from 0.
        // The state file was written after the progress seen before the
        // kill (it records every 500 ms and the kill waited 700 ms).
        let mut resumed = Vec::new();
        for (job, seen) in [clone_job, resync_job].into_iter().zip(&at) {
            let o = cim.job(job);
            let pct = number_after(&o, "PercentComplete=").unwrap_or(0);
            assert!(
                pct >= *seen && pct > 0,
                "job {job} was at {seen}% before the kill, resumes at {pct}%: {o}"
            );
            resumed.push(pct);
        }
        eprintln!(
            "restart #{kill}: clone resumes at {}%, resync at {}%",
            resumed[0], resumed[1]
        );
        floor = resumed.into_iter().max().unwrap().max(floor);
        if kill == 0 {
            // The clone is usable while its copy runs: the initiator's
            // newer data in the clone must survive the copy.
            write_chunks(&s, 2, 4, SOURCE_MIB - 2..SOURCE_MIB);
        }
    }

    for (job, what) in [(clone_job, "clone copy"), (resync_job, "mirror resync")] {
        let (state, pct) = cim.wait_job(job, &format!("the {what} to complete"), |s, _| s == 7);
        assert_eq!((state, pct), (7, 100), "{what}");
        let o = cim.job(job);
        assert!(o.contains("OperationalStatus=2,17"), "{what}: {o}");
    }
    let o = run(
        Path::new("wbemcli"),
        &[
            "ei".into(),
            format!("{}:MSISCSITARGET_StorageSynchronized", cim.base),
        ],
    );
    assert_eq!(
        o.matches("CopyState=4").count(),
        2,
        "both Synchronized: {o}"
    );

    // The clone: the source's point in time, with the initiator's own
    // writes on top; the mirror target equals its source.
    let mut want_clone: Vec<u8> = Vec::new();
    for i in 0..SOURCE_MIB {
        let seed = if i >= SOURCE_MIB - 2 { 4 } else { 1 };
        want_clone.extend_from_slice(&chunk_pattern(seed, i));
    }
    let got_clone = read_chunks(&s, 2, SOURCE_MIB);
    assert!(
        got_clone == want_clone,
        "the clone differs from the source's point in time at MiB {:?}",
        first_diff(&got_clone, &want_clone)
    );
    let msrc = read_chunks(&s, 1, SOURCE_MIB);
    let mdst = read_chunks(&s, 3, SOURCE_MIB);
    assert!(
        msrc == mdst,
        "the mirror target differs from its source at MiB {:?}",
        first_diff(&msrc, &mdst)
    );
    // And the resumed mirror flows again (synchronous): a new write shows.
    write_chunks(&s, 1, 5, 0..2);
    assert!(
        read_chunks(&s, 3, 2) == read_chunks(&s, 1, 2),
        "the mirror no longer follows its source after the resync"
    );
    s.stop();
    assert_pool_clean(&pool, "after the jobs finished and the server stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- group snapshot consistency ---------------------------------------

/// Blocks written per LUN by the sequence-stamped writer (cycled over).
const SEQ_BLOCKS: u64 = 1024;
const SEQ_MAGIC: &[u8; 8] = b"IRLNSEQ\0";

/// Write number `seq` (from 1) goes to LUN (seq - 1) % 2 at block
/// ((seq - 1) / 2) % SEQ_BLOCKS: writes alternate A, B, A, B ...
fn seq_place(seq: u64) -> (usize, u64) {
    (((seq - 1) % 2) as usize, ((seq - 1) / 2) % SEQ_BLOCKS)
}

fn seq_block(seq: u64, lun: usize) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..8].copy_from_slice(SEQ_MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16] = lun as u8;
    for (i, x) in b[17..].iter_mut().enumerate() {
        *x = (seq as u8).wrapping_add(i as u8);
    }
    b
}

/// The sequence number a block holds (0: never written); `Err` for a block
/// that is neither (torn or foreign).
fn seq_of(block: &[u8], lun: usize) -> Result<u64, String> {
    if block.iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let seq = u64::from_le_bytes(block[8..16].try_into().unwrap());
    if block[..8] != SEQ_MAGIC[..] || seq == 0 || seq_block(seq, lun) != block {
        return Err(format!(
            "LUN {lun}: a block that no write wrote: {block:02x?}"
        ));
    }
    Ok(seq)
}

/// Checks that two images (LUN A, LUN B; SEQ_BLOCKS blocks each) show
/// exactly the writes 1..=M for some M: every block holds the last write
/// to it up to M. Returns M.
fn check_prefix(images: [&[u8]; 2]) -> Result<u64, String> {
    let mut seen = [
        vec![0u64; SEQ_BLOCKS as usize],
        vec![0u64; SEQ_BLOCKS as usize],
    ];
    for (lun, img) in images.iter().enumerate() {
        if img.len() != SEQ_BLOCKS as usize * 512 {
            return Err(format!("LUN {lun}: {} bytes read", img.len()));
        }
        for (b, block) in img.chunks(512).enumerate() {
            let seq = seq_of(block, lun)?;
            if seq != 0 && seq_place(seq) != (lun, b as u64) {
                return Err(format!(
                    "LUN {lun} block {b}: write {seq} belongs elsewhere"
                ));
            }
            seen[lun][b] = seq;
        }
    }
    let m = seen.iter().flatten().copied().max().unwrap_or(0);
    let mut want = [
        vec![0u64; SEQ_BLOCKS as usize],
        vec![0u64; SEQ_BLOCKS as usize],
    ];
    for seq in 1..=m {
        let (lun, b) = seq_place(seq);
        want[lun][b as usize] = seq;
    }
    for lun in 0..2 {
        if let Some(b) = (0..SEQ_BLOCKS as usize).find(|&b| seen[lun][b] != want[lun][b]) {
            return Err(format!(
                "not a prefix of the write sequence: write {m} is visible, but LUN {} \
                 block {b} holds write {} instead of write {}",
                ["A", "B"][lun],
                seen[lun][b],
                want[lun][b]
            ));
        }
    }
    Ok(m)
}

/// The images two LUNs would hold after writes 1..=`a` on A and 1..=`b`
/// on B (a consistent pair when they are one cut).
fn images_after(a: u64, b: u64) -> [Vec<u8>; 2] {
    let mut img = [
        vec![0u8; SEQ_BLOCKS as usize * 512],
        vec![0u8; SEQ_BLOCKS as usize * 512],
    ];
    for seq in 1..=a.max(b) {
        let (lun, blk) = seq_place(seq);
        if seq <= [a, b][lun] {
            let at = blk as usize * 512;
            img[lun][at..at + 512].copy_from_slice(&seq_block(seq, lun));
        }
    }
    img
}

#[test]
fn the_prefix_checker_flags_inconsistent_pairs() {
    for m in [0, 1, 2, 7, 2048, 5001] {
        let [a, b] = images_after(m, m);
        assert_eq!(check_prefix([&a, &b]), Ok(m));
    }
    // B missing one earlier write that A's later write follows.
    let [a, b] = images_after(5001, 4998);
    assert!(check_prefix([&a, &b]).is_err());
    // B ahead of A by more than the one write that may follow A's last.
    let [a, b] = images_after(3001, 3010);
    assert!(check_prefix([&a, &b]).is_err());
    // An older version of one block on A (a lost overwrite after the wrap).
    let [mut a, b] = images_after(4001, 4001);
    a[..512].copy_from_slice(&seq_block(1, 0));
    assert!(check_prefix([&a, &b]).is_err());
    // A torn block.
    let [mut a, b] = images_after(101, 101);
    a[20] ^= 0xff;
    assert!(check_prefix([&a, &b]).is_err());
}

/// Snapshot rounds taken while the writer runs.
const ROUNDS: usize = 4;

#[test]
fn group_snapshots_with_sequential_consistency_show_a_prefix_of_the_writes() {
    ensure_clients();
    let dir = std::env::temp_dir().join(format!("ironlun-it-repl-seq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let mut cfg = format!(
        "[[target]]\niqn = \"{TARGET}\"\n\
         [[target.lun]]\nid = 0\nsize = \"16M\"\nvolume = \"seqa\"\n\
         [[target.lun]]\nid = 1\nsize = \"16M\"\nvolume = \"seqb\"\n"
    );
    let sources = dir.join("sources.toml");
    std::fs::write(&sources, &cfg).unwrap();
    let http = free_port();
    let mut s = Server::start_in(
        dir.clone(),
        &[
            "--config",
            sources.to_str().unwrap(),
            "--cim-listen",
            &format!("127.0.0.1:{http}"),
        ],
    );
    s.keep = true;
    let cim = Cim::new(&data, http);

    // The source group {seqa, seqb}: a group snapshot of seqa, then seqb's
    // snapshot relationship added to it (AddSyncPair, 5).
    let (rc, o) = cim.call(
        "CreateGroupReplica",
        &format!(
            "RelationshipName=\"base\",SyncType=7,TargetElementCount=1,SourceElement={}",
            vol("seqa")
        ),
    );
    assert_eq!(rc, 0, "{o}");
    let group = number_after(&o, "IRONLUN:group-").expect("the group");
    let (rc, o) = cim.call(
        "CreateElementReplica",
        &format!(
            "ElementName=\"baseb\",SyncType=7,SourceElement={}",
            vol("seqb")
        ),
    );
    assert_eq!(rc, 0, "{o}");
    let o = cim.pywbemcli(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifyReplicaSynchronization",
        "-p",
        "Operation=5",
        "-p",
        &format!(
            "Synchronization=CIM_GroupSynchronized.SystemElement=\"CIM_ReplicationGroup.InstanceID=\\\"IRONLUN:group-{group}-source\\\"\",SyncedElement=\"CIM_ReplicationGroup.InstanceID=\\\"IRONLUN:group-{group}-target\\\"\""
        ),
        "-p",
        &format!(
            "SyncPair=MSISCSITARGET_StorageSynchronized.SystemElement=\"{}\"\\,SyncedElement=\"{}\"",
            vol("seqb").replace('"', "\\\""),
            vol("baseb").replace('"', "\\\"")
        ),
    ]);
    assert!(o.contains("ReturnValue=0"), "AddSyncPair: {o}");

    // The writer: one session per LUN, strictly alternating, each write
    // acknowledged before the next is sent.
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, last) = (stop.clone(), last.clone());
        let mut conns = [session(&s, 0), session(&s, 1)];
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                seq += 1;
                let (lun, blk) = seq_place(seq);
                let (st, _, sense) = scsi(
                    &mut conns[lun],
                    &write10(blk as u32, 1),
                    512,
                    Some(&seq_block(seq, lun)),
                );
                assert_eq!(st, 0, "write {seq}: sense {sense:02x?}");
                last.store(seq, Ordering::SeqCst);
            }
            seq
        })
    };

    let group_ref = format!("CIM_ReplicationGroup.InstanceID=\"IRONLUN:group-{group}-source\"");
    let mut taken = Vec::new();
    for round in 0..ROUNDS {
        // Let the writer get well past the last round (and wrap the blocks).
        let from = last.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while last.load(Ordering::SeqCst) < from + 600 {
            assert!(!writer.is_finished(), "the writer stopped");
            assert!(Instant::now() < deadline, "the writer makes no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = last.load(Ordering::SeqCst);
        let (rc, o) = cim.call(
            "CreateGroupReplica",
            &format!(
                "RelationshipName=\"round{round}\",SyncType=7,Consistency=3,SourceGroup={group_ref}"
            ),
        );
        let after = last.load(Ordering::SeqCst);
        assert_eq!(rc, 0, "round {round}: {o}");
        taken.push((before, after));
    }
    stop.store(true, Ordering::SeqCst);
    let total = writer.join().expect("the writer failed");
    s.stop();
    let base_lun = 2;
    for round in 0..ROUNDS {
        for m in 1..=2 {
            cfg.push_str(&format!(
                "[[target.lun]]\nid = {}\nsnapshot = \"round{round}_{m}\"\n",
                base_lun + round * 2 + m - 1
            ));
        }
    }
    let snapshots = dir.join("snapshots.toml");
    std::fs::write(&snapshots, &cfg).unwrap();
    drop(s);
    let mut s = Server::start_in(dir.clone(), &["--config", snapshots.to_str().unwrap()]);
    s.keep = true;
    let blocks = SEQ_BLOCKS as u16;
    let read = |lun: u64| {
        let mut c = session(&s, lun);
        let (st, d, sense) = scsi(&mut c, &read10(0, blocks), blocks as u32 * 512, None);
        assert_eq!(st, 0, "READ LUN {lun}: sense {sense:02x?}");
        d
    };
    // The live LUNs end with the writer's last write: the checker agrees.
    let (a, b) = (read(0), read(1));
    assert_eq!(check_prefix([&a, &b]), Ok(total), "the sources");
    let mut prev = 0;
    for (round, (before, after)) in taken.iter().enumerate() {
        let lun = (base_lun + round * 2) as u64;
        let (a, b) = (read(lun), read(lun + 1));
        let m = check_prefix([&a, &b])
            .unwrap_or_else(|e| panic!("group snapshot round {round} is inconsistent: {e}"));
        eprintln!("round {round}: snapshot holds writes 1..={m} (writer at {before}..{after} around the call)");
        assert!(
            m >= *before && m <= *after + 1 && m > prev,
            "round {round}: writes 1..={m} is not a point in time of the call \
             (writer at {before}..{after}, previous round {prev})"
        );
        prev = m;
    }
    s.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
