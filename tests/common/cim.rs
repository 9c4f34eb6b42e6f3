//! The real CIM clients (pywbemcli from PyPI in <repo>/.venv, wbemcli from
//! Debian's sblim-wbemcli) for the tests that drive `ironlun serve`'s
//! CIM-XML face: installing them, running them, reading their output, and
//! the connection settings of one server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Windows iSCSI Target namespace the replication classes live in.
pub const NS: &str = "root/cimv2/storage/iscsitarget";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn pywbemcli() -> PathBuf {
    repo().join(".venv/bin/pywbemcli")
}

fn wbemcli_runs() -> bool {
    Command::new("wbemcli").arg("-h").output().is_ok()
}

/// Installs the clients with cim-shim/tests/install-clients.sh when they
/// are missing; a test that still cannot run them FAILS (never passes).
pub fn ensure_clients() {
    if pywbemcli().exists() && wbemcli_runs() {
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("cim-shim/tests/install-clients.sh"))
        .output()
        .expect("run install-clients.sh");
    assert!(
        out.status.success() && pywbemcli().exists() && wbemcli_runs(),
        "\n\n*** REAL CIM CLIENTS UNAVAILABLE: pywbemcli ({}) and/or wbemcli could not be \
         installed; this test cannot run and therefore FAILS. ***\n{}\n{}\n",
        pywbemcli().display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a client (60 s limit) without the environment that would override
/// its TLS or proxy settings; returns stdout + stderr.
pub fn run(program: &Path, args: &[String]) -> String {
    let mut c = Command::new("timeout");
    c.arg("60").arg(program).args(args);
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
    let out = c.output().expect("run a CIM client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ {} {}\n{text}", program.display(), args.join(" "));
    text
}

/// pywbemcli folds long values over several quoted lines; join them.
pub fn unfold(text: &str) -> String {
    text.replace("\"\n\"", "")
}

/// The number right after `marker` in `text`.
pub fn number_after(text: &str, marker: &str) -> Option<u64> {
    let at = text.find(marker)? + marker.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// How both clients reach the CIM service of one server.
pub struct Endpoint {
    /// The admin password (from DATA_DIR/cim-admin.credential).
    pub password: String,
    /// pywbemcli's connection options.
    pub py: Vec<String>,
    /// wbemcli's URL prefix (credentials, port, namespace).
    pub wbem_base: String,
    /// The replication service's object path.
    pub svc: String,
}

impl Endpoint {
    /// The server whose data directory is `data_dir` (it holds the admin
    /// credential) and whose HTTP CIM port is `http`.
    pub fn of(data_dir: &Path, http: u16) -> std::io::Result<Endpoint> {
        let cred = std::fs::read_to_string(data_dir.join("cim-admin.credential"))?;
        let pw = cred
            .trim()
            .split_once(':')
            .map(|(_, pw)| pw.to_string())
            .ok_or_else(|| std::io::Error::other("credential is not user:password"))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "ironlun".into());
        Ok(Endpoint {
            py: [
                "-s",
                &format!("http://127.0.0.1:{http}"),
                "-u",
                "admin",
                "-p",
                &pw,
                "-d",
                NS,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            wbem_base: format!("http://admin:{pw}@127.0.0.1:{http}/{NS}"),
            password: pw.clone(),
            svc: format!(
                "MSISCSITARGET_ReplicationService.SystemCreationClassName=\"CIM_ComputerSystem\",\
                 SystemName=\"{host}\",CreationClassName=\"MSISCSITARGET_ReplicationService\",\
                 Name=\"ReplicationService\""
            ),
        })
    }
}
