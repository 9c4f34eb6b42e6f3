//! `ironlun serve` with its CIM-XML replication service driven by the real
//! clients: pywbemcli (PyPI pywbemtools, in <repo>/.venv) and wbemcli
//! (Debian sblim-wbemcli), on free loopback ports. Data is written and the
//! replicas are read back through iSCSI (the raw initiator in common/).
//!
//! Missing clients are installed with cim-shim/tests/install-clients.sh; if
//! they still cannot run, this test FAILS loudly (it never passes without
//! them).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cim::{ensure_clients, number_after, pywbemcli, run, unfold, Endpoint, NS};
use common::{free_port, read10, write10, Conn, Server, TARGET};

const SOURCE: &str = "default/default-lun0";
/// Blocks of the pattern written at LBA 0 (256 KiB: several 64 KiB extents).
const BLOCKS: u16 = 512;

fn job_id(text: &str) -> u64 {
    number_after(&unfold(text), "IRONLUN:job-")
        .unwrap_or_else(|| panic!("no job reference in:\n{text}"))
}

fn vol(id: &str) -> String {
    format!("MSISCSITARGET_StorageVolume.DeviceID=\"{id}\"")
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..BLOCKS as usize * 512)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8)
        .collect()
}

fn session(s: &Server, lun: u64) -> Conn {
    let mut c = Conn::connect(s.addr);
    c.lun = lun;
    c.login("iqn.2026-11.org.ironlun:cim-e2e", TARGET, &[]);
    // The first command may get a unit attention.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.scsi(&[0u8; 6], 0, None).unwrap().0 != 0 {
        assert!(Instant::now() < deadline, "LUN {lun} never became ready");
    }
    c
}

fn write_pattern(s: &Server, seed: u8) {
    let mut c = session(s, 0);
    let data = pattern(seed);
    let (st, _, sense) = c
        .scsi(&write10(0, BLOCKS), data.len() as u32, Some(&data))
        .unwrap();
    assert_eq!(st, 0, "WRITE failed, sense {sense:02x?}");
    assert_eq!(
        c.scsi(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, None)
            .unwrap()
            .0,
        0
    );
}

/// The LUN numbers REPORT LUNS lists over `c`.
fn report_luns(c: &mut Conn) -> Vec<u64> {
    let cdb = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let (st, data, sense) = c.scsi(&cdb, 4096, None).unwrap();
    assert_eq!(st, 0, "REPORT LUNS failed, sense {sense:02x?}");
    let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
    data[8..8 + len]
        .chunks(8)
        .map(|e| {
            ironlun_target::scsi::decode_lun(u64::from_be_bytes(e.try_into().unwrap()))
                .expect("a LUN we encode")
        })
        .collect()
}

/// The next command over `c` (a session open before the change) answers
/// REPORTED LUNS DATA HAS CHANGED (6/3F/0E); REPORT LUNS then lists
/// `luns` and clears it, so a TEST UNIT READY is GOOD again.
fn expect_luns_changed(c: &mut Conn, luns: &[u64]) {
    let (st, _, sense) = c.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(st, 2, "no unit attention after the LUN inventory changed");
    assert_eq!(
        (sense[2] & 0x0f, sense[12], sense[13]),
        (6, 0x3F, 0x0E),
        "sense {sense:02x?} is not REPORTED LUNS DATA HAS CHANGED"
    );
    assert_eq!(report_luns(c), luns, "REPORT LUNS after the change");
    let (st, _, sense) = c.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(
        st, 0,
        "REPORT LUNS did not clear the condition: {sense:02x?}"
    );
}

/// A session to `lun` whose TEST UNIT READY answers LOGICAL UNIT NOT
/// SUPPORTED (5/25/00): nothing is mapped there.
fn expect_no_lun(s: &Server, lun: u64) {
    let mut c = Conn::connect(s.addr);
    c.lun = lun;
    c.login("iqn.2026-11.org.ironlun:cim-e2e", TARGET, &[]);
    let (st, _, sense) = c.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(st, 2, "LUN {lun} still answers");
    assert_eq!(
        (sense[2] & 0x0f, sense[12], sense[13]),
        (5, 0x25, 0x00),
        "LUN {lun}: sense {sense:02x?}"
    );
}

/// A replica just made is LUN `lun` (the next free number): `watch` is
/// told, REPORT LUNS lists it, and it reads back as `pattern(seed)`.
fn exposed(s: &Server, watch: &mut Conn, luns: &mut Vec<u64>, lun: u64, what: &str, seed: u8) {
    luns.push(lun);
    expect_luns_changed(watch, luns);
    assert!(
        read_lun(s, lun) == pattern(seed),
        "{what} (LUN {lun}) does not hold its data right after it was made"
    );
}

fn read_lun(s: &Server, lun: u64) -> Vec<u8> {
    let mut c = session(s, lun);
    let (st, data, sense) = c
        .scsi(&read10(0, BLOCKS), BLOCKS as u32 * 512, None)
        .unwrap();
    assert_eq!(st, 0, "READ LUN {lun} failed, sense {sense:02x?}");
    data
}

struct Cim {
    /// The admin password (the HTTPS calls build their own URL).
    pw: String,
    py: Vec<String>,
    wbem_base: String,
    svc: String,
}

impl Cim {
    fn py(&self, args: &[&str]) -> String {
        let mut a = self.py.clone();
        a.extend(args.iter().map(|s| s.to_string()));
        run(&pywbemcli(), &a)
    }
    fn wbem(&self, args: &[String]) -> String {
        run(Path::new("wbemcli"), args)
    }
    fn job_state(&self, id: u64) -> String {
        unfold(&self.py(&[
            "instance",
            "get",
            &format!("MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{id}\""),
        ]))
    }
    fn wait_job(&self, id: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = self.job_state(id);
            if !o.contains("JobState = 2;")
                && !o.contains("JobState = 3;")
                && !o.contains("JobState = 4;")
            {
                return o;
            }
            assert!(Instant::now() < deadline, "job {id} still running:\n{o}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn replicas_made_through_the_real_cim_clients_hold_the_data() {
    ensure_clients();
    let (http, https) = (free_port(), free_port());
    let mut s = Server::start(
        "cim-e2e",
        &[
            "--cim-listen",
            &format!("127.0.0.1:{http}"),
            "--cim-listen-https",
            &format!("127.0.0.1:{https}"),
            // The watching session below stays idle while the clients run.
            "--nop-interval-secs",
            "600",
        ],
    );
    s.keep = true;
    let data = s.dir.join("data");
    let cim = cim_for(&s, http);
    let pw = cim.pw.clone();

    write_pattern(&s, 0xA0);
    // A session open before any replica exists: every replica made below
    // becomes a LUN of this target at once (the next free number), and
    // this session is told so by a unit attention.
    let mut watch = session(&s, 0);
    let mut luns: Vec<u64> = vec![0];

    // List volumes (both clients; pywbemcli also over HTTPS).
    let o = cim.py(&["instance", "enumerate", "CIM_StorageVolume"]);
    assert!(o.contains(&format!("DeviceID = \"{SOURCE}\"")), "{o}");
    let o = run(
        &pywbemcli(),
        &[
            "-s",
            &format!("https://127.0.0.1:{https}"),
            "--no-verify",
            "-u",
            "admin",
            "-p",
            &pw,
            "-d",
            NS,
            "instance",
            "enumerate",
            "MSISCSITARGET_StorageVolume",
            "--names-only",
        ]
        .map(String::from),
    );
    assert!(o.contains(SOURCE), "{o}");
    let o = cim.wbem(&[
        String::from("ein"),
        format!("{}:CIM_StorageVolume", cim.wbem_base),
    ]);
    assert!(o.contains(&format!("DeviceID=\"{SOURCE}\"")), "{o}");

    let o = cim.wbem(&[
        String::from("-cacert"),
        data.join("cim-tls-cert.pem").display().to_string(),
        String::from("ein"),
        format!("https://admin:{pw}@127.0.0.1:{https}/{NS}:CIM_StorageVolume"),
    ]);
    assert!(
        o.contains(&format!("DeviceID=\"{SOURCE}\"")),
        "wbemcli over HTTPS: {o}"
    );

    // Wrong or no password: 401.
    let o = cim.wbem(&[
        String::from("ecn"),
        format!("http://admin:wrong@127.0.0.1:{http}/{NS}"),
    ]);
    assert!(o.contains("Invalid username/password"), "{o}");
    let o = cim.wbem(&[String::from("ecn"), format!("http://127.0.0.1:{http}/{NS}")]);
    assert!(o.contains("Username/password required"), "{o}");
    let o = run(
        &pywbemcli(),
        &[
            "-s",
            &format!("http://127.0.0.1:{http}"),
            "-u",
            "admin",
            "-p",
            "wrong",
            "-d",
            NS,
            "instance",
            "enumerate",
            "CIM_StorageVolume",
        ]
        .map(String::from),
    );
    assert!(o.contains("401"), "{o}");

    // Snapshot (7) with WaitForCopyState=4 Synchronized: completes at once.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateElementReplica",
        "-p",
        "ElementName=snapA",
        "-p",
        "SyncType=7",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
        "-p",
        "WaitForCopyState=4",
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    assert!(unfold(&o).contains("default/snapA"), "{o}");
    exposed(&s, &mut watch, &mut luns, 1, "snapA", 0xA0);

    // Snapshot (7) without WaitForCopyState, through wbemcli.
    let o = cim.wbem(&[
        String::from("cm"),
        format!("{}:{}", cim.wbem_base, cim.svc),
        format!(
            "CreateElementReplica.ElementName=\"snapW\",SyncType=7,SourceElement={}",
            vol(SOURCE)
        ),
    ]);
    assert!(o.contains("CreateElementReplica: 0"), "{o}");
    exposed(&s, &mut watch, &mut luns, 2, "snapW", 0xA0);

    // Clone (8) without WaitForCopyState: 4096 + Job, polled to completion;
    // the clone is a LUN (with the data) while its job still runs.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateElementReplica",
        "-p",
        "ElementName=cloneA",
        "-p",
        "SyncType=8",
        "-p",
        &format!("SourceElement={NS}:{}", vol(SOURCE)),
    ]);
    assert!(o.contains("ReturnValue=4096"), "{o}");
    exposed(&s, &mut watch, &mut luns, 3, "cloneA", 0xA0);
    let job = job_id(&o);
    let j = cim.wait_job(job);
    assert!(j.contains("JobState = 7;"), "{j}");
    assert!(j.contains("OperationalStatus = { 2, 17 };"), "{j}");
    assert!(j.contains("PercentComplete = 100;"), "{j}");
    let o = cim.py(&[
        "instance",
        "associators",
        &format!("MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{job}\""),
        "--assoc-class",
        "CIM_AffectedJobElement",
        "--result-class",
        "CIM_StorageVolume",
        "--names-only",
    ]);
    assert!(o.contains("default/cloneA"), "{o}");
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &format!("MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{job}\""),
        "GetErrors",
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");

    // Clone (8) with WaitForCopyState=4, through wbemcli: 0 once synchronized.
    let o = cim.wbem(&[
        String::from("cm"),
        format!("{}:{}", cim.wbem_base, cim.svc),
        format!(
            "CreateElementReplica.ElementName=\"cloneW\",SyncType=8,WaitForCopyState=4,SourceElement={}",
            vol(SOURCE)
        ),
    ]);
    assert!(o.contains("CreateElementReplica: 0"), "{o}");
    exposed(&s, &mut watch, &mut luns, 4, "cloneW", 0xA0);
    let o = cim.py(&["instance", "enumerate", "MSISCSITARGET_StorageSynchronized"]);
    let u = unfold(&o);
    assert_eq!(u.matches("CopyState = 4;").count(), 4, "{o}");

    // An operation the state table refuses for a snapshot (Fracture): 1.
    let sync = |target: &str| {
        format!(
            "Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement=\"{}\",SyncedElement=\"{}\"",
            vol(SOURCE).replace('"', "\\\""),
            vol(target).replace('"', "\\\"")
        )
    };
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifyReplicaSynchronization",
        "-p",
        "Operation=12",
        "-p",
        &sync("default/snapW"),
    ]);
    assert!(o.contains("ReturnValue=1"), "{o}");
    // Detach the synchronized clone: 0, and the relationship is gone.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifyReplicaSynchronization",
        "-p",
        "Operation=8",
        "-p",
        &sync("default/cloneW"),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");

    // Group replica: one source, TargetElementCount 2 (nightly_1, nightly_2).
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateGroupReplica",
        "-p",
        "RelationshipName=nightly",
        "-p",
        "SyncType=7",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
        "-p",
        "TargetElementCount=2",
        "-p",
        "Consistency=3",
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    luns.push(5);
    exposed(
        &s,
        &mut watch,
        &mut luns,
        6,
        "nightly_1 and nightly_2",
        0xA0,
    );
    assert!(read_lun(&s, 5) == pattern(0xA0), "nightly_1 (LUN 5)");
    let group = number_after(&unfold(&o), "IRONLUN:group-").expect("the TargetGroup");
    let o = cim.py(&["instance", "enumerate", "CIM_GroupSynchronized"]);
    assert!(
        o.contains("SyncType = 7;") && o.contains("CopyState = 4;"),
        "{o}"
    );

    // RemoveSyncPair (13) and AddSyncPair (5) with a SyncPair array
    // (pywbemcli splits array values at unescaped commas).
    let gsync = format!(
        "Synchronization=CIM_GroupSynchronized.SystemElement=\"CIM_ReplicationGroup.InstanceID=\\\"IRONLUN:group-{group}-source\\\"\",SyncedElement=\"CIM_ReplicationGroup.InstanceID=\\\"IRONLUN:group-{group}-target\\\"\""
    );
    let pair = format!(
        "SyncPair=MSISCSITARGET_StorageSynchronized.SystemElement=\"{}\"\\,SyncedElement=\"{}\"",
        vol(SOURCE).replace('"', "\\\""),
        vol("default/nightly_2").replace('"', "\\\"")
    );
    let members = || {
        cim.py(&[
            "instance",
            "associators",
            &format!("CIM_ReplicationGroup.InstanceID=\"IRONLUN:group-{group}-target\""),
            "--assoc-class",
            "CIM_OrderedMemberOfCollection",
            "--names-only",
        ])
    };
    for (op, in_group) in [("13", false), ("5", true)] {
        let o = cim.py(&[
            "instance",
            "invokemethod",
            &cim.svc,
            "ModifyReplicaSynchronization",
            "-p",
            &format!("Operation={op}"),
            "-p",
            &gsync,
            "-p",
            &pair,
        ]);
        assert!(o.contains("ReturnValue=0"), "{o}");
        let m = members();
        assert!(m.contains("default/nightly_1"), "{m}");
        assert_eq!(m.contains("default/nightly_2"), in_group, "{m}");
    }

    // An aspect (a point in time with no target), copied to a target later.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateSynchronizationAspect",
        "-p",
        "Name=pit",
        "-p",
        "SyncType=7",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    let u = unfold(&o);
    let at = u
        .find("IRONLUN:aspect-")
        .expect("SettingsState names the aspect");
    let aspect: String = u[at + 15..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifySettingsDefineState",
        "-p",
        "Operation=5",
        "-p",
        &format!(
            "SettingsState=CIM_SettingsDefineState.ManagedElement=\"{}\",SettingData=\"CIM_SynchronizationAspect.InstanceID=\\\"IRONLUN:aspect-{aspect}\\\"\"",
            vol(SOURCE).replace('"', "\\\"")
        ),
        "-p",
        "TargetPool=MSISCSITARGET_StoragePool.InstanceID=\"IRONLUN:pool-default\"",
        "-p",
        "WaitForCopyState=4",
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    assert!(unfold(&o).contains("default/pit_1"), "{o}");
    exposed(&s, &mut watch, &mut luns, 7, "pit_1", 0xA0);

    // Mirror (6), synchronous, waiting for Synchronized: the target then
    // follows every write of the source.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateElementReplica",
        "-p",
        "ElementName=mirrorA",
        "-p",
        "SyncType=6",
        "-p",
        "Mode=2",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
        "-p",
        "WaitForCopyState=4",
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    exposed(&s, &mut watch, &mut luns, 8, "mirrorA", 0xA0);

    // CreateGroup makes a group of existing volumes; as the TargetGroup of
    // CreateGroupReplica its members become the targets. cloneW (detached
    // above, still LUN 4) receives a clone of the source's new data.
    let create_group = |name: &str, members: &[&str]| {
        let list: Vec<String> = members.iter().map(|m| vol(m)).collect();
        let o = cim.py(&[
            "instance",
            "invokemethod",
            &cim.svc,
            "CreateGroup",
            "-p",
            &format!("GroupName={name}"),
            "-p",
            &format!("Members={}", list.join(",")),
        ]);
        assert!(o.contains("ReturnValue=0"), "{o}");
        let id = number_after(&unfold(&o), "IRONLUN:group-").expect("the ReplicationGroup");
        format!("TargetGroup=CIM_ReplicationGroup.InstanceID=\"IRONLUN:group-{id}-elements\"")
    };
    let two = create_group("two", &["default/cloneW", "default/cloneA"]);
    let one = create_group("one", &["default/cloneW"]);
    let o = cim.py(&["instance", "enumerate", "CIM_ReplicationGroup"]);
    assert!(o.contains("ElementName = \"one\""), "{o}");
    let group_onto = |target_group: &str| {
        cim.py(&[
            "instance",
            "invokemethod",
            &cim.svc,
            "CreateGroupReplica",
            "-p",
            "RelationshipName=onto",
            "-p",
            "SyncType=8",
            "-p",
            &format!("SourceElement={}", vol(SOURCE)),
            "-p",
            target_group,
            "-p",
            "WaitForCopyState=4",
        ])
    };
    // Two targets for one source: 5 Invalid Parameter, the reason naming
    // TargetGroup.
    let o = group_onto(&two);
    assert!(o.contains("ReturnValue=5"), "{o}");
    assert!(
        s.log_text()
            .contains("why=TargetGroup: 2 elements for 1 source elements"),
        "the refusal does not name TargetGroup"
    );
    write_pattern(&s, 0x3C);
    let o = group_onto(&one);
    assert!(o.contains("ReturnValue=0"), "{o}");
    assert!(
        read_lun(&s, 4) == pattern(0x3C),
        "the TargetGroup member cloneW (LUN 4) does not hold the group clone"
    );
    assert!(read_lun(&s, 8) == pattern(0x3C), "the mirror (LUN 8)");

    // An aspect attached to a target (Attach To Target, 8): the new target
    // view_1 presents the point in time at once, as LUN 9.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateSynchronizationAspect",
        "-p",
        "Name=view",
        "-p",
        "SyncType=7",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    let view = number_after(&unfold(&o), "IRONLUN:aspect-").expect("the aspect");
    write_pattern(&s, 0x4D);
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifySettingsDefineState",
        "-p",
        "Operation=8",
        "-p",
        &format!(
            "SettingsState=CIM_SettingsDefineState.ManagedElement=\"{}\",SettingData=\"CIM_SynchronizationAspect.InstanceID=\\\"IRONLUN:aspect-{view}\\\"\"",
            vol(SOURCE).replace('"', "\\\"")
        ),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    assert!(unfold(&o).contains("default/view_1"), "{o}");
    exposed(&s, &mut watch, &mut luns, 9, "view_1", 0x3C);

    // Return To ResourcePool (19) deletes snapW: its LUN goes away.
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "ModifyReplicaSynchronization",
        "-p",
        "Operation=19",
        "-p",
        &sync("default/snapW"),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    luns.retain(|l| *l != 2);
    expect_luns_changed(&mut watch, &luns);
    expect_no_lun(&s, 2);

    // The source moves on; the point-in-time replicas keep their data, the
    // mirror follows, all read where they were exposed.
    write_pattern(&s, 0x5B);
    let check = |s: &Server| {
        assert!(
            read_lun(s, 0) == pattern(0x5B),
            "the source has its new data"
        );
        assert!(
            read_lun(s, 8) == pattern(0x5B),
            "the mirror (LUN 8) does not follow the source"
        );
        for (lun, what, seed) in [
            (1, "snapA", 0xA0),
            (3, "cloneA", 0xA0),
            (4, "cloneW (the group clone)", 0x3C),
            (5, "nightly_1", 0xA0),
            (6, "nightly_2", 0xA0),
            (7, "pit_1", 0xA0),
            (9, "view_1", 0x3C),
        ] {
            assert!(
                read_lun(s, lun) == pattern(seed),
                "{what} (LUN {lun}) does not hold the point-in-time data"
            );
        }
    };
    check(&s);
    drop(watch);
    s.stop();

    // After a restart every replica is served under the same number.
    let dir = s.dir.clone();
    drop(s);
    let mut s = Server::start_in(dir, &[]);
    let mut c = session(&s, 0);
    assert_eq!(report_luns(&mut c), luns, "LUNs after the restart");
    drop(c);
    check(&s);
    expect_no_lun(&s, 2);
    s.stop();

    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The CIM clients' settings for a server whose HTTP CIM port is `http`.
fn cim_for(s: &Server, http: u16) -> Cim {
    let e = Endpoint::of(&s.dir.join("data"), http)
        .unwrap_or_else(|e| panic!("no CIM credential ({e}): {}", s.log_text()));
    Cim {
        pw: e.password,
        py: e.py,
        wbem_base: e.wbem_base,
        svc: e.svc,
    }
}

/// `[replication] expose_replicas = false`: a replica made through CIM is
/// not added to the running target; the configuration alone decides what
/// is served.
#[test]
fn replicas_stay_unexposed_when_the_configuration_says_so() {
    ensure_clients();
    let http = free_port();
    let cfg = std::env::temp_dir().join(format!("ironlun-noexpose-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "[replication]\nexpose_replicas = false\n\
             [[target]]\niqn = \"{TARGET}\"\n[[target.lun]]\nid = 0\nsize = \"1G\"\n"
        ),
    )
    .unwrap();
    let mut s = Server::start(
        "cim-noexpose",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--cim-listen",
            &format!("127.0.0.1:{http}"),
        ],
    );
    let cim = cim_for(&s, http);
    let mut watch = session(&s, 0);
    let o = cim.py(&[
        "instance",
        "invokemethod",
        &cim.svc,
        "CreateElementReplica",
        "-p",
        "ElementName=snapN",
        "-p",
        "SyncType=7",
        "-p",
        &format!("SourceElement={}", vol(SOURCE)),
    ]);
    assert!(o.contains("ReturnValue=0"), "{o}");
    let (st, _, sense) = watch.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(
        st, 0,
        "a unit attention although nothing was exposed: {sense:02x?}"
    );
    assert_eq!(report_luns(&mut watch), vec![0]);
    expect_no_lun(&s, 1);
    assert!(
        s.log_text().contains("replicas are not exposed as LUNs"),
        "the log does not say exposure is off"
    );
    drop(watch);
    s.stop();
    let _ = std::fs::remove_file(&cfg);
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Every ModifyReplicaSynchronization operation, through wbemcli, on a
/// Snapshot, Clone and Mirror in CopyState Synchronized and in every state
/// one operation leads to from there: the return code is what the engine's
/// state table says (0, or 4096 with a job that completes, or the
/// documented refusal code), and the server keeps serving.
#[test]
fn every_operation_answers_the_table_through_wbemcli() {
    use ironlun_replication::model::{CimValue as _, CopyState, Operation, SyncType};
    use ironlun_replication::table::{decide, Decision, Effect, Next};

    ensure_clients();
    let ops = Operation::ALL;
    // (type, preparing operation, the state it leads to)
    let mut scenarios: Vec<(SyncType, Option<Operation>, CopyState)> = Vec::new();
    for t in [SyncType::Snapshot, SyncType::Clone, SyncType::Mirror] {
        scenarios.push((t, None, CopyState::Synchronized));
        for op in ops {
            if let Decision::Allowed(r) = decide(t, CopyState::Synchronized, *op) {
                let to = match r.next {
                    Next::To(s) => s,
                    Next::Job { done, .. } => done,
                    _ => continue,
                };
                if r.effect != Effect::Group && !scenarios.iter().any(|x| x.0 == t && x.2 == to) {
                    scenarios.push((t, Some(*op), to));
                }
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("ironlun-it-cim-ops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // One source volume per (scenario, operation): a source has at most one
    // mirror, and a relationship left in some states cannot be removed.
    let sources = scenarios.len() * ops.len();
    let mut cfg = format!("[[target]]\niqn = \"{TARGET}\"\n");
    for i in 0..sources {
        cfg.push_str(&format!(
            "[[target.lun]]\nid = {i}\nsize = \"4M\"\nvolume = \"src{i}\"\n"
        ));
    }
    std::fs::write(dir.join("ops.toml"), cfg).unwrap();
    let http = free_port();
    let mut s = Server::start_in(
        dir.clone(),
        &[
            "--config",
            dir.join("ops.toml").to_str().unwrap(),
            "--cim-listen",
            &format!("127.0.0.1:{http}"),
        ],
    );
    let cred = std::fs::read_to_string(dir.join("data/cim-admin.credential")).unwrap();
    let pw = cred.trim().split_once(':').unwrap().1.to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ironlun".into());
    let base = format!("http://admin:{pw}@127.0.0.1:{http}/{NS}");
    let svc = format!(
        "{base}:MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",\
         SystemName=\"{host}\",CreationClassName=\"MSISCSITARGET_ReplicationService\",\
         Name=\"ReplicationService\""
    );
    let wbem = |args: Vec<String>| run(Path::new("wbemcli"), &args);
    let wait_job = |text: &str| {
        let Some(job) = number_after(text, "IRONLUN:job-") else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = wbem(vec![
                "gi".into(),
                format!("{base}:MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{job}\""),
            ]);
            if o.contains("JobState=7") {
                assert!(o.contains("OperationalStatus=2,17"), "{o}");
                return;
            }
            assert!(
                !o.contains("JobState=10") && Instant::now() < deadline,
                "job {job} did not complete: {o}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let modify = |op: u32, src: &str, name: &str| {
        let o = wbem(vec![
            "cm".into(),
            svc.clone(),
            format!(
                "ModifyReplicaSynchronization.Operation={op},Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement={},SyncedElement={}",
                vol(src),
                vol(&format!("default/{name}"))
            ),
        ]);
        let got = number_after(&o, "ModifyReplicaSynchronization: ");
        if got == Some(4096) {
            wait_job(&o);
        }
        (got, o)
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for (si, (t, prep, state)) in scenarios.iter().enumerate() {
        for (i, op) in ops.iter().enumerate() {
            let src = format!("default/src{}", si * ops.len() + i);
            let name = format!("r{}-{si}-{}", t.cim(), op.cim());
            // Every other replica is made without WaitForCopyState: then a
            // clone or mirror answers 4096 and its job is followed.
            let wait = if i % 2 == 0 {
                "WaitForCopyState=4,"
            } else {
                ""
            };
            let o = wbem(vec![
                "cm".into(),
                svc.clone(),
                format!(
                    "CreateElementReplica.ElementName=\"{name}\",SyncType={},{wait}SourceElement={}",
                    t.cim(),
                    vol(&src)
                ),
            ]);
            let want = if wait.is_empty() && *t != SyncType::Snapshot {
                "CreateElementReplica: 4096"
            } else {
                "CreateElementReplica: 0"
            };
            assert!(o.contains(want), "{t} for {op}: {o}");
            if want.ends_with("4096") {
                wait_job(&o);
            }
            if let Some(p) = prep {
                let (got, o) = modify(p.cim(), &src, &name);
                if !matches!(got, Some(0) | Some(4096)) {
                    failures.push(format!("{t}: preparing {p} failed: {o}"));
                    continue;
                }
            }
            let expected = match decide(*t, *state, *op) {
                Decision::Allowed(r) if r.effect == Effect::Group => 5,
                d => d.code().cim(),
            };
            let (got, o) = modify(op.cim(), &src, &name);
            checked += 1;
            if got != Some(u64::from(expected)) {
                failures.push(format!(
                    "{t} {state} {op}: expected {expected}, got {got:?}: {o}"
                ));
            }
        }
    }
    let pairs: Vec<String> = scenarios
        .iter()
        .map(|(t, _, st)| format!("{} {}", t.label(), st.label()))
        .collect();
    eprintln!(
        "{checked} operations checked in {} (type, state) pairs: {}",
        scenarios.len(),
        pairs.join(", ")
    );
    assert!(s.alive(), "the server died: {}", s.log_text());
    assert!(
        failures.is_empty(),
        "{} operation(s) did not answer the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
    s.stop();
}

/// A running copy job controlled through CIM: RequestStateChange Suspend
/// (3) and Start (2) through wbemcli, the job followed to completion; a
/// second one Terminated (4). Copies are slowed with
/// --replication-copy-delay-ms so the job is still running when asked.
#[test]
fn a_running_job_is_suspended_resumed_and_terminated_through_cim() {
    ensure_clients();
    let http = free_port();
    let mut s = Server::start(
        "cim-jobs",
        &[
            "--cim-listen",
            &format!("127.0.0.1:{http}"),
            "--replication-copy-delay-ms",
            "300",
        ],
    );
    // 8 MiB of data: 128 extents of 64 KiB, 8 copy batches.
    {
        let mut c = session(&s, 0);
        let chunk = pattern(0x11);
        for i in 0..16u32 {
            let (st, _, _) = c
                .scsi(
                    &write10(i * BLOCKS as u32, BLOCKS),
                    chunk.len() as u32,
                    Some(&chunk),
                )
                .unwrap();
            assert_eq!(st, 0);
        }
    }
    let cred = std::fs::read_to_string(s.dir.join("data/cim-admin.credential")).unwrap();
    let pw = cred.trim().split_once(':').unwrap().1.to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ironlun".into());
    let base = format!("http://admin:{pw}@127.0.0.1:{http}/{NS}");
    let svc = format!(
        "{base}:MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",\
         SystemName=\"{host}\",CreationClassName=\"MSISCSITARGET_ReplicationService\",\
         Name=\"ReplicationService\""
    );
    let wbem = |args: Vec<String>| run(Path::new("wbemcli"), &args);
    let clone = |name: &str| {
        let o = wbem(vec![
            "cm".into(),
            svc.clone(),
            format!(
                "CreateElementReplica.ElementName=\"{name}\",SyncType=8,SourceElement={}",
                vol(SOURCE)
            ),
        ]);
        assert!(o.contains("CreateElementReplica: 4096"), "{o}");
        number_after(&o, "IRONLUN:job-").expect("a job reference")
    };
    let job = |id: u64| format!("{base}:MSISCSITARGET_ConcreteJob.InstanceID=\"IRONLUN:job-{id}\"");
    let request = |id: u64, state: u32| {
        let o = wbem(vec![
            "cm".into(),
            job(id),
            format!("RequestStateChange.RequestedState={state}"),
        ]);
        number_after(&o, "RequestStateChange: ").unwrap_or_else(|| panic!("no return value: {o}"))
    };
    let wait_state = |id: u64, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = wbem(vec!["gi".into(), job(id)]);
            if o.contains(want) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never reached {want}: {o}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let a = clone("slow1");
    assert_eq!(request(a, 3), 0, "Suspend");
    wait_state(a, "JobState=5");
    // The batch in flight finishes; then the copy stands still.
    std::thread::sleep(Duration::from_millis(700));
    let o = wbem(vec!["gi".into(), job(a)]);
    let pct = number_after(&o, "PercentComplete=").unwrap();
    assert!(pct < 100, "{o}");
    std::thread::sleep(Duration::from_millis(800));
    let o = wbem(vec!["gi".into(), job(a)]);
    assert!(
        o.contains("JobState=5"),
        "a suspended job stays suspended: {o}"
    );
    assert_eq!(number_after(&o, "PercentComplete="), Some(pct), "{o}");
    assert_eq!(request(a, 2), 0, "Start (resume)");
    let o = wait_state(a, "JobState=7");
    assert!(
        o.contains("OperationalStatus=2,17") && o.contains("PercentComplete=100"),
        "{o}"
    );
    assert_eq!(request(a, 4), 4097, "a finished job cannot change state");

    let b = clone("slow2");
    assert_eq!(request(b, 4), 0, "Terminate");
    let o = wait_state(b, "JobState=8");
    assert!(!o.contains("JobState=7"), "{o}");
    assert!(s.alive(), "{}", s.log_text());
    s.stop();
}

/// A CIM port already taken: `ironlun serve` exits at once, naming the
/// address and the flags that change it.
#[test]
fn a_busy_cim_port_is_reported() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("ironlun-it-cim-busy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_ironlun"))
        .args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--iscsi-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--cim-listen", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--no-cim"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
