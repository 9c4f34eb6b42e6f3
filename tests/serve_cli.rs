//! `ironlun serve` as an operator meets it: bad configurations name the
//! file, the field and the problem and exit non-zero before listening;
//! a busy port, a missing backing file and a LUN larger than its file get
//! clear messages; SIGTERM stops the server cleanly with exit status 0.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{read10, write10, Conn, Server, TARGET};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ironlun-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `ironlun serve ARGS` expecting it to fail quickly; returns stderr.
fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlun"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ironlun");
    assert!(!out.status.success(), "expected failure for {args:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_config_names_file_field_and_problem() {
    let d = scratch("badcfg");
    let cfg = d.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\nportals = [\"127.0.0.1:1\"]\n[[target.lun]]\nid = 0\nsize = \"ten gigs\"\n",
    )
    .unwrap();
    let err = serve_fails(&[
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        d.join("data").to_str().unwrap(),
    ]);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("target[0].lun[0].size"), "{err}");
    assert!(err.contains("ten gigs"), "{err}");
    // Nothing listened on the configured portal.
    assert!(TcpStream::connect("127.0.0.1:1").is_err());

    std::fs::write(
        &cfg,
        "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\nportalz = []\n",
    )
    .unwrap();
    let err = serve_fails(&["--config", cfg.to_str().unwrap()]);
    assert!(err.contains("bad.toml") && err.contains("portalz"), "{err}");
}

#[test]
fn missing_backing_file_and_lun_larger_than_file() {
    let d = scratch("backing");
    let cfg = d.join("c.toml");
    let missing = d.join("nope.img");
    std::fs::write(
        &cfg,
        format!(
            "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\n[[target.lun]]\nid = 0\npath = \"{}\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let err = serve_fails(&[
        "--config",
        cfg.to_str().unwrap(),
        "--iscsi-listen",
        "127.0.0.1:0",
    ]);
    assert!(
        err.contains("nope.img") && err.contains("does not exist"),
        "{err}"
    );

    let small = d.join("small.img");
    std::fs::write(&small, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\n[[target.lun]]\nid = 0\nsize = \"2M\"\npath = \"{}\"\n",
            small.display()
        ),
    )
    .unwrap();
    let err = serve_fails(&[
        "--config",
        cfg.to_str().unwrap(),
        "--iscsi-listen",
        "127.0.0.1:0",
    ]);
    assert!(
        err.contains("small.img") && err.contains("smaller than the LUN"),
        "{err}"
    );
}

#[test]
fn port_in_use_is_reported() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let d = scratch("busy");
    let err = serve_fails(&["--data-dir", d.to_str().unwrap(), "--iscsi-listen", &addr]);
    assert!(
        err.contains(&addr) && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut server = Server::start("sigterm", &[]);
    let mut c = Conn::connect(server.addr);
    let r = c.login("iqn.2026-11.test:sigterm", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0);
    let data = vec![0x5au8; 4096];
    let (st, _, _) = c.scsi(&write10(8, 8), 4096, Some(&data)).unwrap();
    assert_eq!(st, 0);
    server.stop();
    let log = server.log_text();
    assert!(log.contains("stopped"), "{log}");
    // The write survived: a new server on the same data reads it back.
    server.keep = true;
    let dir = server.dir.clone();
    drop(server);
    let again = Server::start_in(dir, &[]);
    let mut c = Conn::connect(again.addr);
    let r = c.login("iqn.2026-11.test:sigterm", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0);
    let (st, back, _) = c.scsi(&read10(8, 8), 4096, None).unwrap();
    assert_eq!(st, 0);
    assert_eq!(back, data, "data written before SIGTERM is gone");
}
