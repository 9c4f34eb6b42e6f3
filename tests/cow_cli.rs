//! The offline verbs (`ironlun pool|volume|snapshot|clone`) end to end:
//! create a pool, import a raw image, snapshot, clone, export the snapshot
//! back byte for byte, check, delete, and refuse a locked pool.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ironlun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironlun"))
        .args(args)
        .output()
        .expect("run ironlun")
}

fn ok(args: &[&str]) -> String {
    let out = ironlun(args);
    assert!(
        out.status.success(),
        "ironlun {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironlun-cow-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn offline_verbs_round_trip() {
    let d = dir();
    let pool = d.join("p.pool");
    let raw = d.join("in.raw");
    let out = d.join("out.raw");
    // 3 MiB of data with a hole in the middle, 6 MiB in all.
    let mut data = vec![0u8; 6 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        if !(1 << 20..4 << 20).contains(&i) {
            *b = (i / 512) as u8 ^ (i as u8);
        }
    }
    std::fs::write(&raw, &data).unwrap();

    ok(&[
        "pool",
        "create",
        s(&pool),
        "--size",
        "64M",
        "--extent-size",
        "64K",
    ]);
    let info = ok(&["pool", "info", s(&pool), "--json"]);
    assert!(info.contains("\"extent_size\":65536"), "{info}");
    ok(&["volume", "import", s(&pool), "disk", s(&raw)]);
    ok(&["snapshot", "create", s(&pool), "disk", "disk-s1"]);
    ok(&["clone", "create", s(&pool), "disk-s1", "disk-c1"]);
    let list = ok(&["volume", "list", s(&pool), "--json"]);
    assert!(
        list.contains("\"name\":\"disk-c1\"") && list.contains("\"origin\":\"disk-s1\""),
        "{list}"
    );
    let snaps = ok(&["snapshot", "list", s(&pool), "--json"]);
    assert!(snaps.contains("\"clones\":[\"disk-c1\"]"), "{snaps}");
    ok(&["volume", "export", s(&pool), "disk-s1", s(&out)]);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "snapshot export differs"
    );
    ok(&["volume", "export", s(&pool), "disk-c1", s(&out)]);
    assert!(std::fs::read(&out).unwrap() == data, "clone export differs");
    let check = ok(&["pool", "check", s(&pool), "--json"]);
    assert!(check.contains("\"clean\":true"), "{check}");

    // The origin snapshot is busy while the clone exists.
    assert!(!ironlun(&["snapshot", "delete", s(&pool), "disk-s1"])
        .status
        .success());
    ok(&["volume", "delete", s(&pool), "disk-c1"]);
    ok(&["snapshot", "delete", s(&pool), "disk-s1"]);
    ok(&["volume", "delete", s(&pool), "disk"]);
    let info = ok(&["pool", "info", s(&pool), "--json"]);
    assert!(info.contains("\"used_extents\":0"), "{info}");

    // Damage: a pool whose superblocks are gone fails check.
    let junk = d.join("junk.pool");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    let r = ironlun(&["pool", "check", s(&junk)]);
    assert_eq!(r.status.code(), Some(1));
    std::fs::remove_dir_all(&d).unwrap();
}
