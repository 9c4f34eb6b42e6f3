//! A snapshot keeps its point-in-time content while the volume it was
//! taken of is overwritten over iSCSI: write, snapshot (offline verb),
//! write more, then serve the snapshot as a read-only LUN beside the volume
//! and read both; export the snapshot; the pool checks clean.

mod common;

use common::{ironlun, read10, write10, Conn, Server, TARGET};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

fn login(server: &Server) -> Conn {
    let mut c = Conn::connect(server.addr);
    let r = c.login("iqn.2026-11.test:snap", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0, "login failed: {}", server.log_text());
    c
}

#[test]
fn snapshot_reads_old_content_after_overwrite() {
    let dir = std::env::temp_dir().join(format!("ironlun-it-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pool = dir.join("data").join("pool.img");
    let len = 1 << 20; // 1 MiB: 2048 blocks, spanning 16 extents
    let old = pattern(1, len);
    let new = pattern(2, len / 2);

    // 1. Write the old content through iSCSI, stop cleanly.
    let mut s = Server::start_in(dir.clone(), &[]);
    s.keep = true;
    let mut c = login(&s);
    let (st, _, sense) = c.scsi(&write10(0, 2048), len as u32, Some(&old)).unwrap();
    assert_eq!(st, 0, "{sense:02x?}");
    drop(c);
    s.stop();
    drop(s);

    // 2. Snapshot the LUN's volume with the offline verb.
    let p = pool.to_str().unwrap();
    let (code, out, err) = ironlun(&["snapshot", "create", p, "default-lun0", "before"]);
    assert_eq!(code, 0, "snapshot create: {out}{err}");

    // 3. Overwrite the first half (partial-extent writes included).
    let mut s = Server::start_in(dir.clone(), &[]);
    s.keep = true;
    let mut c = login(&s);
    let (st, _, _) = c
        .scsi(&write10(3, 1024), (len / 2) as u32, Some(&new))
        .unwrap();
    assert_eq!(st, 0);
    drop(c);
    s.stop();
    drop(s);

    // 4. Serve the volume as LUN 0 and the snapshot as read-only LUN 1.
    let cfg = dir.join("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[target]]\niqn = \"{TARGET}\"\n\
             [[target.lun]]\nid = 0\nsize = \"1G\"\nvolume = \"default-lun0\"\n\
             [[target.lun]]\nid = 1\nsnapshot = \"before\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut s = Server::start_in(dir.clone(), &["--config", cfg.to_str().unwrap()]);
    s.keep = true;
    let mut c = login(&s);
    let mut expect_now = old.clone();
    expect_now[3 * 512..3 * 512 + new.len()].copy_from_slice(&new);
    let (st, now, _) = c.scsi(&read10(0, 2048), len as u32, None).unwrap();
    assert_eq!(st, 0);
    assert!(
        now == expect_now,
        "the volume does not read its newest content"
    );
    c.lun = 1;
    let (st, then, _) = c.scsi(&read10(0, 2048), len as u32, None).unwrap();
    assert_eq!(st, 0);
    assert!(
        then == old,
        "the snapshot does not read its point-in-time content"
    );
    // The snapshot LUN refuses writes: DATA PROTECT / WRITE PROTECTED.
    let (st, _, sense) = c.scsi(&write10(0, 1), 512, Some(&[0u8; 512])).unwrap();
    assert_eq!(st, 2);
    assert_eq!(sense[2] & 0x0f, 0x07, "{sense:02x?}");
    assert_eq!(sense[12], 0x27, "{sense:02x?}");
    drop(c);
    s.stop();
    drop(s);

    // 5. Export the snapshot offline and compare; the pool checks clean.
    let raw = dir.join("before.raw");
    let (code, out, err) = ironlun(&["volume", "export", p, "before", raw.to_str().unwrap()]);
    assert_eq!(code, 0, "export: {out}{err}");
    let exported = std::fs::read(&raw).unwrap();
    assert!(exported[..len] == old[..], "exported snapshot differs");
    assert!(exported[len..].iter().all(|&b| b == 0));
    let (code, out, err) = ironlun(&["pool", "check", p]);
    assert_eq!(code, 0, "pool check: {out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
