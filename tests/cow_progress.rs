//! Progress bars of the long offline verbs (import, export, check, volume
//! delete): drawn on stderr when it is a terminal (run under a pty with
//! util-linux `script`), and absent when it is not (scripts, `--json`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ironlun")
}

/// Runs `cmd` to completion within [`TIMEOUT`]; returns (success, stdout,
/// stderr).
fn run(mut cmd: Command) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        readers.0.join().unwrap(),
        readers.1.join().unwrap(),
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs ironlun with `args` under a pseudo-terminal; returns the transcript
/// (stdout and stderr as the terminal saw them).
fn in_terminal(args: &[&str]) -> String {
    let line = std::iter::once(bin())
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let (ok, out, err) = run(cmd);
    assert!(ok, "ironlun {args:?} under script failed: {out}{err}");
    out
}

/// Runs ironlun with `args` with stdout and stderr piped (not terminals).
fn piped(args: &[&str]) -> (String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    let (ok, out, err) = run(cmd);
    assert!(ok, "ironlun {args:?} failed: {out}{err}");
    (out, err)
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironlun-cow-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn long_verbs_show_progress_only_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed to give the verbs a terminal");
    }
    let d = dir();
    let pool = d.join("p.pool");
    let raw = d.join("in.raw");
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i / 4096) as u8 ^ 0x5a).collect();
    std::fs::write(&raw, &data).unwrap();
    piped(&["pool", "create", s(&pool), "--size", "64M"]);

    let t = in_terminal(&["volume", "import", s(&pool), "a", s(&raw)]);
    assert!(t.contains("importing a"), "no import progress: {t:?}");
    assert!(t.contains("imported"), "import result missing: {t:?}");

    let (out, err) = piped(&["volume", "import", s(&pool), "b", s(&raw)]);
    assert!(out.contains("imported"), "{out}");
    assert!(
        !err.contains("importing"),
        "progress drawn on a pipe: {err:?}"
    );
    let (out, err) = piped(&["volume", "import", s(&pool), "c", s(&raw), "--json"]);
    assert!(out.trim_start().starts_with('{'), "{out}");
    assert!(err.is_empty(), "stderr not empty with --json: {err:?}");

    let t = in_terminal(&["volume", "export", s(&pool), "a", s(&d.join("out.raw"))]);
    assert!(t.contains("exporting a"), "no export progress: {t:?}");
    assert_eq!(std::fs::read(d.join("out.raw")).unwrap(), data);

    let t = in_terminal(&["pool", "check", s(&pool)]);
    assert!(t.contains("checking"), "no check progress: {t:?}");
    assert!(t.contains("clean"), "{t:?}");

    let t = in_terminal(&["volume", "delete", s(&pool), "b"]);
    assert!(t.contains("deleting b"), "no delete progress: {t:?}");
    let (_, err) = piped(&["volume", "delete", s(&pool), "c"]);
    assert!(
        !err.contains("deleting"),
        "progress drawn on a pipe: {err:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
