//! Session life cycle: reinstatement by the same initiator name + ISID
//! closes the old session without hanging and without a spurious unit
//! attention on the new one; idle connections are pinged with NOP-In and a
//! dead one is dropped; several sessions run side by side.

mod common;

use std::time::{Duration, Instant};

use common::{read10, write10, Conn, Server, TARGET};
use ironlun_target::pdu::{self, InitiatorPdu, NopOut, RESERVED_TAG};

#[test]
fn reinstatement_closes_old_session_without_unit_attention() {
    let server = Server::start("reinstate", &[]);
    let mut first = Conn::connect(server.addr);
    let r = first.login("iqn.2026-11.test:reinstate", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0);
    let old_tsih = r.h.tsih;
    let (st, _, _) = first.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(st, 0);

    // Same initiator name and ISID, TSIH 0: session reinstatement.
    let mut second = Conn::connect(server.addr);
    second.isid = first.isid;
    let t0 = Instant::now();
    let r = second.login("iqn.2026-11.test:reinstate", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0, "reinstating login failed");
    assert!(t0.elapsed() < Duration::from_secs(6), "reinstatement hung");
    assert_ne!(r.h.tsih, old_tsih);
    // The first command of the new session is not greeted by a unit attention.
    let (st, _, sense) = second.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(
        st, 0,
        "TEST UNIT READY after reinstatement: sense {sense:02x?}"
    );
    // The old connection is closed.
    first
        .s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(first.recv().is_err(), "old session still open");
}

#[test]
fn idle_connection_is_pinged_and_dead_one_dropped() {
    let server = Server::start("nop", &["--nop-interval-secs", "1"]);
    let mut c = Conn::connect(server.addr);
    let r = c.login("iqn.2026-11.test:nop", TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0);
    // Answer the first ping; the connection stays.
    let ping = c.recv().expect("a NOP-In ping");
    assert_eq!(ping.h.opcode, pdu::opcode::NOP_IN);
    assert_eq!(ping.h.itt, RESERVED_TAG);
    assert_ne!(ping.h.ttt, RESERVED_TAG);
    let answer = InitiatorPdu::NopOut(NopOut {
        immediate: true,
        lun: 0,
        itt: RESERVED_TAG,
        ttt: ping.h.ttt,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    });
    c.send(&answer, &[]).unwrap();
    let (st, _, _) = c.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(st, 0);
    // Now play dead: ignore the pings; the target drops us.
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    while let Ok(r) = c.recv() {
        assert_eq!(r.h.opcode, pdu::opcode::NOP_IN);
        assert!(
            t0.elapsed() < Duration::from_secs(9),
            "dead connection not dropped"
        );
    }
    let t1 = Instant::now();
    while !server.log_text().contains("NOP-In ping not answered") {
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "no log line says why: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn several_sessions_share_a_lun() {
    let server = Server::start("multi", &[]);
    let mut conns: Vec<Conn> = (0..4)
        .map(|i| {
            let mut c = Conn::connect(server.addr);
            let r = c.login(&format!("iqn.2026-11.test:multi{i}"), TARGET, &[]);
            assert_eq!(r.h.word36 >> 16, 0);
            c
        })
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let data = vec![i as u8 + 1; 8192];
        let (st, _, _) = c
            .scsi(&write10(i as u32 * 16, 16), 8192, Some(&data))
            .unwrap();
        assert_eq!(st, 0);
    }
    // Each session reads every other session's writes.
    for c in conns.iter_mut() {
        for i in 0..4u32 {
            let (st, data, _) = c.scsi(&read10(i * 16, 16), 8192, None).unwrap();
            assert_eq!(st, 0);
            assert!(data.iter().all(|&b| b == i as u8 + 1));
        }
    }
    // A large write goes through R2T (beyond FirstBurstLength) and reads back.
    let big: Vec<u8> = (0..(2 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    let (st, _, sense) = conns[0]
        .scsi(&write10(4096, 4096), 2 << 20, Some(&big))
        .unwrap();
    assert_eq!(st, 0, "{sense:02x?}");
    let (st, back, _) = conns[1].scsi(&read10(4096, 4096), 2 << 20, None).unwrap();
    assert_eq!(st, 0);
    assert!(back == big, "2 MiB write did not read back");
}
