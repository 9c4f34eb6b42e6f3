//! Copy offload over iSCSI (EXTENDED COPY, POPULATE TOKEN + WRITE USING
//! TOKEN) between LUNs of a running `ironlun serve`:
//! - between two LUNs of one pool (and to a LUN of another target on that
//!   pool), extent-aligned: the pool allocates no data extent (its used
//!   extent count, read with `ironlun pool info --json` after a stop, does
//!   not move) and the destinations read back identical; a later write to
//!   a destination leaves the source alone;
//! - to a LUN of another pool, and unaligned within one pool: the data are
//!   copied (the other pool's allocation grows) and read back identical;
//! - both pools check clean at the end.
//!
//! The server listens on `COPY_OFFLOAD_TEST_PORT` when set (else a free
//! port).

mod common;

use std::path::Path;

use common::{free_port, ironlun, read10, write10, Conn, Server};

const TA: &str = "iqn.2026-11.org.ironlun:copya";
const TB: &str = "iqn.2026-11.org.ironlun:copyb";
/// 64 KiB extents of 512-byte blocks.
const EXT: u64 = 128;

fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * 512)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

fn login(server: &Server, target: &str, lun: u64) -> Conn {
    let mut c = Conn::connect(server.addr);
    let r = c.login("iqn.2026-11.test:copy", target, &[]);
    assert_eq!(r.h.word36 >> 16, 0, "login failed: {}", server.log_text());
    c.lun = lun;
    c
}

fn naa(c: &mut Conn) -> [u8; 16] {
    let (st, d, sense) = c.scsi(&[0x12, 1, 0x83, 0, 255, 0], 255, None).unwrap();
    assert_eq!(st, 0, "{sense:02x?}");
    assert_eq!(&d[4..8], &[0x01, 0x03, 0x00, 0x10], "NAA designator first");
    d[8..24].try_into().unwrap()
}

fn write(c: &mut Conn, lba: u32, data: &[u8]) {
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        let at = lba + (i * 2048) as u32;
        let (st, _, sense) = c
            .scsi(
                &write10(at, (chunk.len() / 512) as u16),
                chunk.len() as u32,
                Some(chunk),
            )
            .unwrap();
        assert_eq!(st, 0, "{sense:02x?}");
    }
}

fn read(c: &mut Conn, lba: u32, blocks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(2048);
        let (st, d, sense) = c
            .scsi(&read10(lba + done as u32, n as u16), (n * 512) as u32, None)
            .unwrap();
        assert_eq!(st, 0, "{sense:02x?}");
        out.extend_from_slice(&d);
        done += n;
    }
    out
}

/// Asserts equal contents, naming the first differing block (not dumping
/// megabytes).
#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let b = i / 512 * 512;
        let zero_blocks = got
            .chunks(512)
            .filter(|c| c.iter().all(|&x| x == 0))
            .count();
        let found = want.chunks(512).position(|c| c == &got[b..b + 512]);
        panic!(
            "{what}: first difference in block {} (byte {i}); {zero_blocks} blocks read as zeros; that block holds the wanted block {found:?}",
            i / 512
        );
    }
}

fn e4(naa: &[u8; 16]) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xE4;
    d[4] = 0x01;
    d[5] = 0x03;
    d[7] = 16;
    d[8..24].copy_from_slice(naa);
    d[30] = 0x02; // 512-byte blocks
    d
}

fn b2b(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[3] = 0x18;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

/// EXTENDED COPY (LID1) of `segs` between the LUs named by `targets`.
fn xcopy(c: &mut Conn, list_id: u8, targets: &[[u8; 16]], segs: &[Vec<u8>]) {
    let mut v = vec![0u8; 16];
    v[0] = list_id;
    v[2..4].copy_from_slice(&((targets.len() * 32) as u16).to_be_bytes());
    let sl: usize = segs.iter().map(Vec::len).sum();
    v[8..12].copy_from_slice(&(sl as u32).to_be_bytes());
    for t in targets {
        v.extend(e4(t));
    }
    for s in segs {
        v.extend_from_slice(s);
    }
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[10..14].copy_from_slice(&(v.len() as u32).to_be_bytes());
    let (st, _, sense) = c.scsi(&cdb, v.len() as u32, Some(&v)).unwrap();
    assert_eq!(st, 0, "EXTENDED COPY: {sense:02x?}");
    // RECEIVE COPY RESULTS, COPY STATUS: completed, every segment done.
    let mut rcr = [0u8; 16];
    rcr[0] = 0x84;
    rcr[2] = list_id;
    rcr[13] = 32;
    let (st, d, sense) = c.scsi(&rcr, 32, None).unwrap();
    assert_eq!(st, 0, "COPY STATUS: {sense:02x?}");
    assert_eq!(d[4], 0x01, "completed without errors");
    assert_eq!(u16::from_be_bytes([d[5], d[6]]) as usize, segs.len());
}

fn ranges(list: &[(u64, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (lba, n) in list {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&lba.to_be_bytes());
        d[8..12].copy_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&d);
    }
    v
}

/// POPULATE TOKEN then RECEIVE ROD TOKEN INFORMATION: the token.
fn populate(c: &mut Conn, list_id: u32, list: &[(u64, u32)]) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[14..16].copy_from_slice(&((list.len() * 16) as u16).to_be_bytes());
    v.extend(ranges(list));
    let l = (v.len() - 2) as u16;
    v[0..2].copy_from_slice(&l.to_be_bytes());
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[1] = 0x10;
    cdb[6..10].copy_from_slice(&list_id.to_be_bytes());
    cdb[10..14].copy_from_slice(&(v.len() as u32).to_be_bytes());
    let (st, _, sense) = c.scsi(&cdb, v.len() as u32, Some(&v)).unwrap();
    assert_eq!(st, 0, "POPULATE TOKEN: {sense:02x?}");
    let d = rrti(c, list_id);
    assert_eq!((d[4], d[5]), (0x10, 0x01));
    let at = 32 + d[13] as usize;
    assert_eq!(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()), 514);
    d[at + 6..at + 6 + 512].to_vec()
}

fn rrti(c: &mut Conn, list_id: u32) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x84;
    cdb[1] = 0x07;
    cdb[2..6].copy_from_slice(&list_id.to_be_bytes());
    cdb[10..14].copy_from_slice(&1024u32.to_be_bytes());
    let (st, d, sense) = c.scsi(&cdb, 1024, None).unwrap();
    assert_eq!(st, 0, "RECEIVE ROD TOKEN INFORMATION: {sense:02x?}");
    d
}

/// WRITE USING TOKEN; returns the blocks RRTI says were written.
fn write_using(c: &mut Conn, list_id: u32, token: &[u8], list: &[(u64, u32)]) -> u64 {
    let mut v = vec![0u8; 536];
    v[16..528].copy_from_slice(token);
    v[534..536].copy_from_slice(&((list.len() * 16) as u16).to_be_bytes());
    v.extend(ranges(list));
    let l = (v.len() - 2) as u16;
    v[0..2].copy_from_slice(&l.to_be_bytes());
    let mut cdb = [0u8; 16];
    cdb[0] = 0x83;
    cdb[1] = 0x11;
    cdb[6..10].copy_from_slice(&list_id.to_be_bytes());
    cdb[10..14].copy_from_slice(&(v.len() as u32).to_be_bytes());
    let (st, _, sense) = c.scsi(&cdb, v.len() as u32, Some(&v)).unwrap();
    assert_eq!(st, 0, "WRITE USING TOKEN: {sense:02x?}");
    let d = rrti(c, list_id);
    assert_eq!((d[4], d[5]), (0x11, 0x01));
    u64::from_be_bytes(d[16..24].try_into().unwrap())
}

fn used_extents(pool: &Path) -> u64 {
    let (code, out, err) = ironlun(&["pool", "info", "--json", pool.to_str().unwrap()]);
    assert_eq!(code, 0, "pool info: {out}{err}");
    let key = "\"used_extents\":";
    let at = out
        .find(key)
        .unwrap_or_else(|| panic!("no used_extents in {out}"))
        + key.len();
    out[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn pool_check(pool: &Path) {
    let (code, out, err) = ironlun(&["pool", "check", pool.to_str().unwrap()]);
    assert_eq!(code, 0, "pool check {}: {out}{err}", pool.display());
}

#[test]
fn copy_offload_shares_within_a_pool_and_copies_across_pools() {
    let dir = std::env::temp_dir().join(format!("ironlun-it-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let (p1, p2) = (data.join("p1.img"), data.join("p2.img"));
    let cfg = dir.join("copy.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n\
             [[pool]]\nname = \"p1\"\npath = \"p1.img\"\nsize = \"1G\"\n\
             [[pool]]\nname = \"p2\"\npath = \"p2.img\"\nsize = \"1G\"\n\
             [[target]]\niqn = \"{TA}\"\n\
             [[target.lun]]\nid = 0\nsize = \"64M\"\npool = \"p1\"\nvolume = \"src\"\n\
             [[target.lun]]\nid = 1\nsize = \"64M\"\npool = \"p1\"\nvolume = \"dst\"\n\
             [[target.lun]]\nid = 2\nsize = \"64M\"\npool = \"p2\"\nvolume = \"far\"\n\
             [[target]]\niqn = \"{TB}\"\n\
             [[target.lun]]\nid = 0\nsize = \"64M\"\npool = \"p1\"\nvolume = \"dstb\"\n",
            data.display()
        ),
    )
    .unwrap();
    let port = std::env::var("COPY_OFFLOAD_TEST_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(free_port);
    let listen = format!("127.0.0.1:{port}");
    let args = ["--config", cfg.to_str().unwrap(), "--iscsi-listen", &listen];

    // 1. The source: 4 MiB (64 extents) at LBA 0 of LUN 0.
    let src = pattern(1, 8192);
    let mut s = Server::start_in(dir.clone(), &args);
    s.keep = true;
    let mut c0 = login(&s, TA, 0);
    write(&mut c0, 0, &src);
    drop(c0);
    s.stop();
    drop(s);
    let used0 = used_extents(&p1);
    assert!(used0 >= 64, "source written: {used0} extents used");

    // 2. Within pool p1, extent-aligned: EXTENDED COPY LUN 0 -> LUN 1, and
    //    a ROD token of LUN 0 written to LUN 1 elsewhere and to a LUN of
    //    the other target. No data extent may be allocated.
    let mut s = Server::start_in(dir.clone(), &args);
    s.keep = true;
    let mut c0 = login(&s, TA, 0);
    let mut c1 = login(&s, TA, 1);
    let mut cb = login(&s, TB, 0);
    let (n0, n1) = (naa(&mut c0), naa(&mut c1));
    same(&read(&mut c0, 0, 8192), &src, "source before the copies");
    xcopy(
        &mut c0,
        1,
        &[n0, n1],
        &[b2b(0, 1, 4096, 0, 0), b2b(0, 1, 4096, 4096, 4096)],
    );
    let token = populate(&mut c0, 0x0D0D, &[(0, 4096), (4096, 4096)]);
    assert_eq!(write_using(&mut c1, 7, &token, &[(128 * EXT, 8192)]), 8192);
    assert_eq!(write_using(&mut cb, 8, &token, &[(0, 8192)]), 8192);
    same(&read(&mut c1, 0, 8192), &src, "EXTENDED COPY destination");
    same(
        &read(&mut c1, 128 * EXT as u32, 8192),
        &src,
        "token destination",
    );
    same(&read(&mut cb, 0, 8192), &src, "other target's destination");
    drop((c0, c1, cb));
    s.stop();
    drop(s);
    let used1 = used_extents(&p1);
    assert_eq!(used1, used0, "sharing copies allocated data extents");
    pool_check(&p1);

    // 3. The copies diverge: a write to a destination leaves the source.
    let mut s = Server::start_in(dir.clone(), &args);
    s.keep = true;
    let mut c0 = login(&s, TA, 0);
    let mut c1 = login(&s, TA, 1);
    write(&mut c1, 5, &pattern(9, 16));
    same(
        &read(&mut c0, 0, 8192),
        &src,
        "source changed by a write to its copy",
    );
    let mut want = src.clone();
    want[5 * 512..21 * 512].copy_from_slice(&pattern(9, 16));
    same(&read(&mut c1, 0, 8192), &want, "read back");

    // 4. Data copies: to pool p2, and unaligned within p1.
    let mut c2 = login(&s, TA, 2);
    let n0 = naa(&mut c0);
    let (n1, n2) = (naa(&mut c1), naa(&mut c2));
    xcopy(&mut c0, 2, &[n0, n2], &[b2b(0, 1, 4096, 0, 3)]);
    let token = populate(&mut c0, 0x0E0E, &[(1, 1000)]);
    assert_eq!(write_using(&mut c1, 9, &token, &[(60000, 1000)]), 1000);
    same(&read(&mut c2, 3, 4096), &src[..4096 * 512], "read back");
    same(
        &read(&mut c1, 60000, 1000),
        &src[512..1001 * 512],
        "read back",
    );
    xcopy(&mut c2, 3, &[n2, n1], &[b2b(0, 1, 100, 3, 90001)]);
    same(&read(&mut c1, 90001, 100), &src[..100 * 512], "read back");
    drop((c0, c1, c2));
    s.stop();
    drop(s);
    assert!(used_extents(&p2) >= 32, "the cross-pool copy wrote data");
    pool_check(&p1);
    pool_check(&p2);
    let _ = std::fs::remove_dir_all(&dir);
}
