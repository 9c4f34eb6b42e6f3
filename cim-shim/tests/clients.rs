//! The server driven by the real clients: pywbemcli (PyPI pywbemtools, in
//! <repo>/.venv) and wbemcli (Debian sblim-wbemcli), over HTTP and HTTPS,
//! against the in-memory test provider.
//!
//! Missing clients are installed with tests/install-clients.sh; if they
//! still cannot run, this test FAILS (it never passes without them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

const NS: &str = "root/cimv2/storage/iscsitarget";
const SVC: &str = "MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",SystemName=\"host1\",CreationClassName=\"MSISCSITARGET_ReplicationService\",Name=\"ReplicationService\"";
const VOLK: &str = "SystemCreationClassName=\"CIM_ComputerSystem\",SystemName=\"host1\",CreationClassName=\"MSISCSITARGET_StorageVolume\"";

fn vol(id: &str) -> String {
    format!("MSISCSITARGET_StorageVolume.{VOLK},DeviceID=\"{id}\"")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pywbemcli_path() -> PathBuf {
    repo_root().join(".venv/bin/pywbemcli")
}

fn wbemcli_available() -> bool {
    Command::new("wbemcli").arg("-h").output().is_ok()
}

fn ensure_clients() {
    if pywbemcli_path().exists() && wbemcli_available() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/install-clients.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run install-clients.sh");
    assert!(
        out.status.success() && pywbemcli_path().exists() && wbemcli_available(),
        "\n\n*** REAL CIM CLIENTS UNAVAILABLE: pywbemcli ({}) and/or wbemcli could not be installed; \
         the client tests cannot run and therefore FAIL. ***\ninstall-clients.sh stdout:\n{}\nstderr:\n{}\n",
        pywbemcli_path().display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Run {
    log: String,
    failures: Vec<String>,
    cwd: PathBuf,
}

impl Run {
    /// Runs a client command (60 s limit) and returns stdout+stderr.
    fn cmd(&mut self, program: &Path, args: &[String]) -> String {
        let mut c = Command::new("timeout");
        c.arg("60").arg(program).args(args).current_dir(&self.cwd);
        // requests lets these override pywbem's verify setting (--no-verify).
        for v in [
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            c.env_remove(v);
        }
        c.env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        c.env("PYWBEMCLI_TERMWIDTH", "400");
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.log.push_str(&format!(
            "$ {} {}\n{}\n",
            program.display(),
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" "),
            text.trim_end()
        ));
        text
    }

    fn expect(&mut self, what: &str, out: &str, needles: &[&str]) {
        for n in needles {
            if !out.contains(n) {
                self.failures.push(format!("{what}: output lacks {n:?}"));
            }
        }
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn real_pywbemcli_and_wbemcli() {
    ensure_clients();
    let srv = TestServer::start("clients", |_| {});
    let cwd = srv.dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut r = Run {
        log: String::new(),
        failures: Vec::new(),
        cwd,
    };
    let py = pywbemcli_path();
    let wbem = PathBuf::from("wbemcli");
    let http = format!("http://127.0.0.1:{}", srv.http.port());
    let https = format!("https://127.0.0.1:{}", srv.https.port());
    let pw = srv.password.clone();
    let py_args = |rest: &[&str]| -> Vec<String> {
        let mut a = s(&["-s", &http, "-u", "admin", "-p", &pw, "-d", NS]);
        a.extend(s(rest));
        a
    };

    // ---- pywbemcli ------------------------------------------------------
    let o = r.cmd(
        &py,
        &py_args(&["class", "get", "MSISCSITARGET_ReplicationService"]),
    );
    r.expect(
        "pywbemcli class get",
        &o,
        &[
            "class MSISCSITARGET_ReplicationService : CIM_ReplicationService",
            "uint32 CreateElementReplica(",
            "CIM_LogicalElement REF SourceElement",
            "uint32 CreateGroupReplica(",
            "uint32 CreateSynchronizationAspect(",
            "uint32 ModifyReplicaSynchronization(",
            "EmbeddedInstance ( \"CIM_ReplicationSettingData\" )",
        ],
    );
    let o = r.cmd(&py, &py_args(&["class", "enumerate", "--no"]));
    r.expect(
        "pywbemcli class enumerate --no",
        &o,
        &["MSISCSITARGET_StorageVolume", "MSISCSITARGET_ConcreteJob"],
    );
    let o = r.cmd(
        &py,
        &py_args(&["instance", "enumerate", "MSISCSITARGET_StorageVolume"]),
    );
    r.expect(
        "pywbemcli instance enumerate",
        &o,
        &[
            "instance of MSISCSITARGET_StorageVolume",
            "DeviceID = \"vol-1\"",
            "DeviceID = \"vol-2\"",
        ],
    );
    let o = r.cmd(
        &py,
        &py_args(&["instance", "enumerate", "CIM_StorageVolume", "--no"]),
    );
    r.expect(
        "pywbemcli instance enumerate --no (superclass)",
        &o,
        &["DeviceID=\"vol-2\""],
    );
    let o = r.cmd(&py, &py_args(&["instance", "get", &vol("vol-1")]));
    r.expect(
        "pywbemcli instance get",
        &o,
        &["ElementName = \"base\"", "NumberOfBlocks = 2048"],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "invokemethod",
            SVC,
            "CreateElementReplica",
            "-p",
            "ElementName=snap1",
            "-p",
            "SyncType=7",
            "-p",
            &format!("SourceElement={}", vol("vol-1")),
            "-p",
            "WaitForCopyState=4",
        ]),
    );
    r.expect(
        "pywbemcli instance invokemethod CreateElementReplica",
        &o,
        &["ReturnValue=0", "TargetElement=", "Synchronization="],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "invokemethod",
            SVC,
            "CreateElementReplica",
            "-p",
            "SyncType=8",
            "-p",
            &format!("SourceElement={NS}:{}", vol("vol-1")),
        ]),
    );
    r.expect(
        "pywbemcli invokemethod -> job",
        &o,
        &["ReturnValue=4096", "Job=", "MSISCSITARGET_ConcreteJob"],
    );
    let o = r.cmd(
        &py,
        &py_args(&["instance", "enumerate", "MSISCSITARGET_ConcreteJob"]),
    );
    r.expect(
        "pywbemcli job",
        &o,
        &["JobState = 7", "OperationalStatus = { 2, 17 }"],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "references",
            &vol("vol-1"),
            "--rc",
            "CIM_StorageSynchronized",
        ]),
    );
    r.expect(
        "pywbemcli instance references",
        &o,
        &[
            "instance of MSISCSITARGET_StorageSynchronized",
            "SyncType = 7",
        ],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "associators",
            &vol("vol-1"),
            "--ac",
            "CIM_StorageSynchronized",
            "--rc",
            "CIM_StorageVolume",
        ]),
    );
    r.expect(
        "pywbemcli instance associators",
        &o,
        &["ElementName = \"snap1\""],
    );
    // Follow the job the way libstoragemgmt does: its path, then
    // AffectedJobElement to the created volume; RequestStateChange on it.
    let o = r.cmd(
        &py,
        &py_args(&["instance", "enumerate", "MSISCSITARGET_ConcreteJob", "--no"]),
    );
    let job_path = o
        .lines()
        .map(str::trim)
        .find(|l| l.contains("MSISCSITARGET_ConcreteJob."))
        .unwrap_or("")
        .to_string();
    if job_path.is_empty() {
        r.failures
            .push("pywbemcli instance enumerate ConcreteJob --no: no job path".into());
    }
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "associators",
            &job_path,
            "--ac",
            "CIM_AffectedJobElement",
            "--rc",
            "CIM_StorageVolume",
        ]),
    );
    r.expect(
        "pywbemcli job -> AffectedJobElement -> volume",
        &o,
        &[
            "instance of MSISCSITARGET_StorageVolume",
            "DeviceID = \"vol-1-r2\"",
        ],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "invokemethod",
            &job_path,
            "RequestStateChange",
            "-p",
            "RequestedState=4",
        ]),
    );
    r.expect(
        "pywbemcli job RequestStateChange",
        &o,
        &["ReturnValue=4097"],
    );
    // ModifyReplicaSynchronization with a (quoted, nested) association path.
    let sync = format!(
        "MSISCSITARGET_StorageSynchronized.SystemElement=\"{}\",SyncedElement=\"{}\"",
        vol("vol-1").replace('"', "\\\""),
        vol("vol-1-r1").replace('"', "\\\"")
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "instance",
            "invokemethod",
            SVC,
            "ModifyReplicaSynchronization",
            "-p",
            "Operation=8",
            "-p",
            &format!("Synchronization={sync}"),
        ]),
    );
    r.expect(
        "pywbemcli ModifyReplicaSynchronization Detach",
        &o,
        &["ReturnValue=0"],
    );
    let o = r.cmd(
        &py,
        &py_args(&[
            "class",
            "invokemethod",
            "MSISCSITARGET_ReplicationServiceCapabilities",
            "GetSupportedOperations",
            "-p",
            "ReplicationType=7",
        ]),
    );
    r.expect(
        "pywbemcli class invokemethod",
        &o,
        &["ReturnValue=0", "SupportedOperations="],
    );
    let o = r.cmd(
        &py,
        &s(&[
            "-s",
            &http,
            "-u",
            "admin",
            "-p",
            &pw,
            "-d",
            "root/nope",
            "class",
            "enumerate",
            "--no",
        ]),
    );
    r.expect(
        "pywbemcli unknown namespace",
        &o,
        &["CIM_ERR_INVALID_NAMESPACE"],
    );
    let o = r.cmd(
        &py,
        &s(&[
            "-s",
            &http,
            "-u",
            "admin",
            "-p",
            "wrong",
            "-d",
            NS,
            "class",
            "enumerate",
            "--no",
        ]),
    );
    r.expect("pywbemcli wrong password", &o, &["401"]);
    let o = r.cmd(
        &py,
        &s(&["-s", &http, "-d", NS, "class", "enumerate", "--no"]),
    );
    r.expect("pywbemcli no password", &o, &["401"]);
    let o = r.cmd(
        &py,
        &s(&[
            "-s",
            &https,
            "--no-verify",
            "-u",
            "admin",
            "-p",
            &pw,
            "-d",
            NS,
            "class",
            "enumerate",
            "--no",
        ]),
    );
    r.expect(
        "pywbemcli https --no-verify",
        &o,
        &["MSISCSITARGET_StorageVolume"],
    );
    let cert = srv.cert.display().to_string();
    let o = r.cmd(
        &py,
        &s(&[
            "-s",
            &https,
            "--ca-certs",
            &cert,
            "-u",
            "admin",
            "-p",
            &pw,
            "-d",
            NS,
            "class",
            "enumerate",
            "--no",
        ]),
    );
    r.expect(
        "pywbemcli https --ca-certs",
        &o,
        &["MSISCSITARGET_StorageVolume"],
    );

    // ---- wbemcli ----------------------------------------------------------
    let base = format!("http://admin:{pw}@127.0.0.1:{}/{NS}", srv.http.port());
    let o = r.cmd(&wbem, &[String::from("ecn"), base.clone()]);
    r.expect(
        "wbemcli ecn",
        &o,
        &[
            ":MSISCSITARGET_ReplicationService",
            ":MSISCSITARGET_StorageVolume",
        ],
    );
    let o = r.cmd(
        &wbem,
        &[String::from("ec"), format!("{base}:CIM_StorageVolume")],
    );
    r.expect("wbemcli ec", &o, &[":MSISCSITARGET_StorageVolume "]);
    let o = r.cmd(
        &wbem,
        &[
            String::from("gc"),
            format!("{base}:MSISCSITARGET_ReplicationService"),
        ],
    );
    r.expect("wbemcli gc", &o, &[":MSISCSITARGET_ReplicationService "]);
    let o = r.cmd(
        &wbem,
        &[
            String::from("ei"),
            format!("{base}:MSISCSITARGET_StorageVolume"),
        ],
    );
    r.expect(
        "wbemcli ei",
        &o,
        &["DeviceID=\"vol-1\"", "ElementName=\"base\""],
    );
    let o = r.cmd(
        &wbem,
        &[String::from("ein"), format!("{base}:CIM_StorageVolume")],
    );
    r.expect("wbemcli ein", &o, &["DeviceID=\"vol-2\""]);
    let o = r.cmd(
        &wbem,
        &[String::from("gi"), format!("{base}:{}", vol("vol-2"))],
    );
    r.expect("wbemcli gi", &o, &["ElementName=\"data\""]);
    let o = r.cmd(
        &wbem,
        &[
            String::from("cm"),
            format!("{base}:{SVC}"),
            format!(
                "CreateElementReplica.ElementName=\"w1\",SyncType=7,SourceElement={}",
                vol("vol-2")
            ),
        ],
    );
    r.expect(
        "wbemcli cm CreateElementReplica",
        &o,
        &["CreateElementReplica: 0", "TargetElement (reference)"],
    );
    let o = r.cmd(
        &wbem,
        &[
            String::from("ain"),
            String::from("-ac"),
            String::from("CIM_StorageSynchronized"),
            format!("{base}:{}", vol("vol-2")),
        ],
    );
    r.expect("wbemcli ain", &o, &["DeviceID=\"vol-2-r"]);
    let replica = o
        .split("DeviceID=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or("vol-2-r?")
        .to_string();
    let o = r.cmd(
        &wbem,
        &[
            String::from("rin"),
            String::from("-arc"),
            String::from("CIM_StorageSynchronized"),
            format!("{base}:{}", vol("vol-2")),
        ],
    );
    r.expect(
        "wbemcli rin",
        &o,
        &["MSISCSITARGET_StorageSynchronized.SystemElement="],
    );
    let o = r.cmd(
        &wbem,
        &[
            String::from("cm"),
            format!("{base}:{SVC}"),
            format!(
                "ModifyReplicaSynchronization.Operation=8,Synchronization=MSISCSITARGET_StorageSynchronized.SystemElement={},SyncedElement={}",
                vol("vol-2"),
                vol(&replica)
            ),
        ],
    );
    r.expect(
        "wbemcli cm ModifyReplicaSynchronization (nested ref)",
        &o,
        &["ModifyReplicaSynchronization: 0"],
    );
    let o = r.cmd(
        &wbem,
        &[
            String::from("ecn"),
            format!("http://admin:wrong@127.0.0.1:{}/{NS}", srv.http.port()),
        ],
    );
    r.expect("wbemcli wrong password", &o, &["Invalid username/password"]);
    let o = r.cmd(
        &wbem,
        &[
            String::from("ecn"),
            format!("http://127.0.0.1:{}/{NS}", srv.http.port()),
        ],
    );
    r.expect("wbemcli no password", &o, &["Username/password required"]);
    let https_base = format!("https://admin:{pw}@127.0.0.1:{}/{NS}", srv.https.port());
    let o = r.cmd(
        &wbem,
        &[
            String::from("-noverify"),
            String::from("ecn"),
            https_base.clone(),
        ],
    );
    r.expect(
        "wbemcli https -noverify",
        &o,
        &[":MSISCSITARGET_StorageVolume"],
    );
    let o = r.cmd(
        &wbem,
        &[
            String::from("-cacert"),
            cert.clone(),
            String::from("ecn"),
            https_base,
        ],
    );
    r.expect(
        "wbemcli https -cacert",
        &o,
        &[":MSISCSITARGET_StorageVolume"],
    );

    if let Ok(p) = std::env::var("CIM_CLIENT_LOG") {
        let _ = std::fs::write(p, &r.log);
    }
    assert!(
        r.failures.is_empty(),
        "client checks failed:\n  {}\n\nfull transcript:\n{}",
        r.failures.join("\n  "),
        r.log
    );
}
