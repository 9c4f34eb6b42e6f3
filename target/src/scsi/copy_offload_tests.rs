//! Copy offload through the LUN map: EXTENDED COPY between two logical
//! units, RECEIVE COPY RESULTS, and the ROD-token copy, on in-memory
//! devices (data copies; sharing is tested with cow pools in tests/).

use std::sync::Arc;

use super::testutil::*;
use super::{LogicalUnit, LuIdentity, LuOptions};

const NAA2: [u8; 16] = [0x60, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn two_luns() -> (Harness, Arc<MemDevice>) {
    let t = Harness::new(4096, true);
    let dev = Arc::new(MemDevice::new(4096, true));
    let lu = LogicalUnit::new(
        dev.clone(),
        LuIdentity {
            vendor: "IRONLUN".into(),
            product: "second".into(),
            revision: "0001".into(),
            serial: "serial-1".into(),
            naa: NAA2,
        },
        LuOptions::default(),
    );
    t.map.insert(1, Arc::new(lu));
    (t, dev)
}

fn e4(naa: &[u8; 16], nul: bool) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xE4;
    // NUL and LU ID TYPE are obsolete (SPC-4): ignored.
    d[1] = if nul { 0xA0 } else { 0 };
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

fn xcopy_list(list_id: u8, targets: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = list_id;
    let tl: usize = targets.iter().map(Vec::len).sum();
    let sl: usize = segs.iter().map(Vec::len).sum();
    v[2..4].copy_from_slice(&(tl as u16).to_be_bytes());
    v[8..12].copy_from_slice(&(sl as u32).to_be_bytes());
    for t in targets {
        v.extend_from_slice(t);
    }
    for s in segs {
        v.extend_from_slice(s);
    }
    v
}

fn xcopy_cdb(len: usize) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&(len as u32).to_be_bytes());
    c
}

fn pattern(t: &Harness, lun: u64, lba: u64, blocks: usize, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..blocks * 512)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    let mut c = [0u8; 16];
    c[0] = 0x8A;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
    let o = t.exec(lun, &t.me, &c, &data, data.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    data
}

fn read(t: &Harness, lun: u64, lba: u64, blocks: usize) -> Vec<u8> {
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
    let o = t.exec(lun, &t.me, &c, &[], (blocks * 512) as u32);
    assert_eq!(o.status, 0, "{o:?}");
    o.data_in.to_vec()
}

#[test]
fn extended_copy_between_luns_and_copy_status() {
    let (t, _) = two_luns();
    let data = pattern(&t, 0, 10, 64, 7);
    // No copy yet: COPY STATUS for list 3 is an invalid field.
    let mut rcr = [0u8; 16];
    rcr[0] = 0x84;
    rcr[2] = 3;
    rcr[13] = 64;
    assert_sense(&t.run(&rcr), 5, 0x24, 0);
    let list = xcopy_list(
        3,
        &[e4(&NAA, false), e4(&NAA2, false)],
        &[b2b(0, 1, 64, 10, 100)],
    );
    let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(read(&t, 1, 100, 64), data);
    let o = t.run(&rcr);
    assert_eq!(o.status, 0);
    assert_eq!(o.data_in[4], 0x01); // completed without errors
    assert_eq!(&o.data_in[5..7], &[0, 1]); // one segment
    assert_eq!(&o.data_in[8..12], &(64u32 * 512).to_be_bytes());
    // Another nexus sees no status of ours.
    assert_sense(&t.run_as(&t.nexus(7), &rcr), 5, 0x24, 0);
    // Nexus loss forgets it.
    t.map.nexus_lost(t.me.id);
    assert_sense(&t.run(&rcr), 5, 0x24, 0);
}

#[test]
fn extended_copy_overlapping_within_one_lun() {
    let (t, _) = two_luns();
    let data = pattern(&t, 0, 0, 100, 3);
    let list = xcopy_list(1, &[e4(&NAA, false)], &[b2b(0, 0, 100, 0, 40)]);
    let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(read(&t, 0, 40, 100), data);
}

#[test]
fn extended_copy_aborts() {
    let (t, _) = two_luns();
    let unknown = [0x60u8; 16];
    let list = xcopy_list(1, &[e4(&NAA, true)], &[b2b(0, 0, 1, 0, 1)]);
    let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    for (targets, seg) in [
        (vec![e4(&unknown, false)], b2b(0, 0, 1, 0, 1)),
        (vec![e4(&NAA, false)], b2b(0, 1, 1, 0, 1)),
        (vec![e4(&NAA, false)], b2b(0, 0, 2048, 0, 4095)),
    ] {
        let list = xcopy_list(1, &targets, &[seg]);
        let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
        assert_sense(&o, 0x0A, 0x0D, 0x02);
    }
    // Zero-length parameter list: nothing happens.
    assert_eq!(t.run(&xcopy_cdb(0)).status, 0);
}

#[test]
fn operating_parameters_report_the_limits() {
    let (t, _) = two_luns();
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = 0x03;
    c[13] = 255;
    let o = t.run(&c);
    assert_eq!(o.status, 0);
    let d = &o.data_in;
    assert_eq!(
        u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize,
        d.len() - 4
    );
    assert_eq!(&d[8..10], &super::xcopy::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    assert_eq!(d[43], 2);
    assert_eq!(&d[44..46], &[0x02, 0xE4]);
}

fn populate(list_id: u32, ranges: &[(u64, u32)]) -> ([u8; 16], Vec<u8>) {
    let mut v = vec![0u8; 16];
    v[14..16].copy_from_slice(&((ranges.len() * 16) as u16).to_be_bytes());
    for (lba, n) in ranges {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&lba.to_be_bytes());
        d[8..12].copy_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&d);
    }
    let l = (v.len() - 2) as u16;
    v[0..2].copy_from_slice(&l.to_be_bytes());
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[1] = 0x10;
    c[6..10].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&(v.len() as u32).to_be_bytes());
    (c, v)
}

fn write_using(
    list_id: u32,
    token: &[u8],
    offset: u64,
    ranges: &[(u64, u32)],
) -> ([u8; 16], Vec<u8>) {
    let mut v = vec![0u8; 536];
    v[8..16].copy_from_slice(&offset.to_be_bytes());
    v[16..528].copy_from_slice(token);
    v[534..536].copy_from_slice(&((ranges.len() * 16) as u16).to_be_bytes());
    for (lba, n) in ranges {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&lba.to_be_bytes());
        d[8..12].copy_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&d);
    }
    let l = (v.len() - 2) as u16;
    v[0..2].copy_from_slice(&l.to_be_bytes());
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[1] = 0x11;
    c[6..10].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&(v.len() as u32).to_be_bytes());
    (c, v)
}

fn rrti(list_id: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = 0x07;
    c[2..6].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&1024u32.to_be_bytes());
    c
}

#[test]
fn rod_token_copy_to_another_lun() {
    let (t, _) = two_luns();
    let a = pattern(&t, 0, 0, 16, 5);
    let b = pattern(&t, 0, 200, 8, 9);
    let (c, v) = populate(0x1234, &[(0, 16), (200, 8)]);
    let o = t.run_out(&c, &v, v.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    let o = t.run(&rrti(0x1234));
    assert_eq!(o.status, 0);
    let d = &o.data_in;
    assert_eq!(d[4], 0x10);
    assert_eq!(d[5], 0x01);
    assert_eq!(u64::from_be_bytes(d[16..24].try_into().unwrap()), 24);
    let sense_len = d[13] as usize;
    let at = 32 + sense_len;
    assert_eq!(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()), 514);
    let token = d[at + 6..at + 6 + 512].to_vec();
    // Another nexus writes with it to LUN 1, skipping 4 blocks of the ROD.
    let other = t.nexus(5);
    let (c, v) = write_using(9, &token, 4, &[(1000, 10), (2000, 30)]);
    let o = t.exec(1, &other, &c, &v, v.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    let got: Vec<u8> = [read(&t, 1, 1000, 10), read(&t, 1, 2000, 10)].concat();
    let mut want = a[4 * 512..].to_vec();
    want.extend_from_slice(&b);
    assert_eq!(got, want);
    let o = t.exec(1, &other, &rrti(9), &[], 1024);
    assert_eq!(o.status, 0);
    assert_eq!(o.data_in[4], 0x11);
    assert_eq!(
        u64::from_be_bytes(o.data_in[16..24].try_into().unwrap()),
        20
    );
    // A forged token and an unknown one are refused.
    let mut forged = token.clone();
    forged[300] ^= 1;
    let (c, v) = write_using(10, &forged, 0, &[(0, 1)]);
    assert_sense(&t.exec(1, &other, &c, &v, v.len() as u32), 5, 0x23, 0x05);
    let mut unknown = token.clone();
    unknown[15] ^= 0x40;
    let (c, v) = write_using(10, &unknown, 0, &[(0, 1)]);
    assert_sense(&t.exec(1, &other, &c, &v, v.len() as u32), 5, 0x23, 0x04);
    // Out-of-range destination.
    let (c, v) = write_using(10, &token, 0, &[(4095, 2)]);
    assert_sense(&t.exec(1, &other, &c, &v, v.len() as u32), 5, 0x21, 0x00);
    // The block device zero ROD token zeroes.
    let mut zero = vec![0u8; 512];
    zero[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    let (c, v) = write_using(11, &zero, 0, &[(1000, 4)]);
    assert_eq!(t.exec(1, &other, &c, &v, v.len() as u32).status, 0);
    assert_eq!(read(&t, 1, 1000, 4), vec![0u8; 4 * 512]);
}

#[test]
fn extended_copy_between_pool_volumes_shares_extents() {
    use ironlun_cow::Pool;
    let dir = std::env::temp_dir().join(format!("ironlun-scsi-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.pool");
    let _ = std::fs::remove_file(&path);
    let pool = Pool::create(&path, 64 << 20, 64 << 10).unwrap();
    let a = Arc::new(pool.create_volume("a", 16 << 20).unwrap());
    let b = Arc::new(pool.create_volume("b", 16 << 20).unwrap());
    let t = Harness::new(16, true);
    let ident = |naa: [u8; 16]| LuIdentity {
        vendor: "IRONLUN".into(),
        product: "pool".into(),
        revision: "0001".into(),
        serial: format!("{:02x}", naa[15]),
        naa,
    };
    t.map.insert(
        0,
        Arc::new(LogicalUnit::new(a, ident(NAA), LuOptions::default())),
    );
    t.map.insert(
        1,
        Arc::new(LogicalUnit::new(b, ident(NAA2), LuOptions::default())),
    );
    let data: Vec<u8> = [pattern(&t, 0, 0, 2048, 3), pattern(&t, 0, 2048, 2048, 5)].concat();
    let free = pool.info().free_extents;
    let list = xcopy_list(
        1,
        &[e4(&NAA, false), e4(&NAA2, false)],
        &[b2b(0, 1, 2048, 0, 0), b2b(0, 1, 2048, 2048, 2048)],
    );
    let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(pool.info().free_extents, free, "no data extent allocated");
    let got = [read(&t, 1, 0, 2048), read(&t, 1, 2048, 2048)].concat();
    assert!(got == data, "destination differs");
    assert!(pool.check().is_clean());
    drop(t);
    drop(pool);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn copies_reach_other_targets_only_as_their_login_would() {
    use super::copy_domain::{CopyAccess, CopyDomain};
    use super::LunMap;
    const NAA3: [u8; 16] = [0x60, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
    for (allowed, chap, reachable) in [
        (None, false, true),
        (Some(vec!["IQN.2026-11.TEST:INIT".to_string()]), false, true),
        (
            Some(vec!["iqn.2026-11.test:someone-else".to_string()]),
            false,
            false,
        ),
        (None, true, false),
    ] {
        let (t, _) = two_luns();
        let domain = CopyDomain::new();
        t.map.join_copy_domain(
            &domain,
            CopyAccess {
                target: t.me.target_port.target_name.clone(),
                ..CopyAccess::default()
            },
        );
        let other = LunMap::new();
        let dev = Arc::new(MemDevice::new(4096, true));
        other.insert(
            0,
            Arc::new(LogicalUnit::new(
                dev,
                LuIdentity {
                    vendor: "IRONLUN".into(),
                    product: "other".into(),
                    revision: "0001".into(),
                    serial: "serial-3".into(),
                    naa: NAA3,
                },
                LuOptions::default(),
            )),
        );
        other.join_copy_domain(
            &domain,
            CopyAccess {
                target: "iqn.2026-11.org.ironlun:other".into(),
                allowed_initiators: allowed,
                chap,
            },
        );
        let data = pattern(&t, 0, 0, 8, 4);
        let list = xcopy_list(
            1,
            &[e4(&NAA, false), e4(&NAA3, false)],
            &[b2b(0, 1, 8, 0, 0)],
        );
        let o = t.run_out(&xcopy_cdb(list.len()), &list, list.len() as u32);
        if reachable {
            assert_eq!(o.status, 0, "{o:?}");
            let mut c = [0u8; 16];
            c[0] = 0x88;
            c[13] = 8;
            let nexus = super::Nexus {
                target_port: Arc::new(super::TargetPort {
                    target_name: "iqn.2026-11.org.ironlun:other".into(),
                    tpgt: 1,
                    relative_port_id: 1,
                }),
                ..t.me.clone()
            };
            let req = super::CommandRequest {
                cdb: &c,
                edtl: 4096,
                read: true,
                write: false,
                data_out: &[],
            };
            assert_eq!(other.execute(0, &nexus, &req).data_in.to_vec(), data);
        } else {
            assert_sense(&o, 0x0A, 0x0D, 0x02);
        }
    }
}

/// PERSISTENT RESERVE OUT from `nexus` to `lun`, which must succeed.
fn pr_out_ok(t: &Harness, lun: u64, nexus: &super::Nexus, sa: u8, rtype: u8, rk: u64, sark: u64) {
    let (cdb, p) = prout(sa, rtype, rk, sark, 0);
    let o = t.exec(lun, nexus, &cdb, &p, 24);
    assert_eq!(o.status, 0, "PR OUT {sa}: {o:?}");
}

#[test]
fn copies_meet_the_other_units_reservations_and_medium() {
    let (t, _) = two_luns();
    let data = pattern(&t, 0, 0, 8, 5);
    let before = read(&t, 1, 0, 8);
    // Another initiator holds WRITE EXCLUSIVE on LUN 1.
    let other = t.nexus(7);
    pr_out_ok(&t, 1, &other, 0, 0, 0, 0x77);
    pr_out_ok(&t, 1, &other, 1, 1, 0x77, 0);
    // A copy into LUN 1 is refused like a WRITE from us would be, and
    // changes nothing; reading from LUN 1 stays allowed (WRITE EXCLUSIVE).
    let into = xcopy_list(
        1,
        &[e4(&NAA, false), e4(&NAA2, false)],
        &[b2b(0, 1, 8, 0, 0)],
    );
    let o = t.run_out(&xcopy_cdb(into.len()), &into, into.len() as u32);
    assert_sense(&o, 0x0A, 0x0D, 0x02);
    assert_eq!(read(&t, 1, 0, 8), before);
    let from = xcopy_list(
        2,
        &[e4(&NAA, false), e4(&NAA2, false)],
        &[b2b(1, 0, 8, 0, 100)],
    );
    let o = t.run_out(&xcopy_cdb(from.len()), &from, from.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(read(&t, 0, 100, 8), before);
    // The holder itself may copy into it.
    let o = t.exec(0, &other, &xcopy_cdb(into.len()), &into, into.len() as u32);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(read(&t, 1, 0, 8), data);
}
