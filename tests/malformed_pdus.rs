//! Bad input never takes the server down: each case sends something no
//! correct initiator sends and checks that the target answers with a Reject
//! or closes that one connection, while another session keeps doing I/O.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{read10, text, write10, Conn, Server, TARGET};
use ironlun_target::pdu::{self, encode_initiator, InitiatorPdu, NopOut, RESERVED_TAG};

/// Writes and reads back distinct patterns until told to stop; counts
/// verified round trips. Any failure is recorded.
fn background_io(
    server: &Server,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> thread::JoinHandle<Result<(), String>> {
    let addr = server.addr;
    thread::spawn(move || {
        let mut c = Conn::connect(addr);
        let r = c.login("iqn.2026-11.test:background", TARGET, &[]);
        if (r.h.word36 >> 24) != 0 {
            return Err(format!("background login failed: {:#x}", r.h.word36));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut n: u32 = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let lba = 1000 + (n % 64) * 8;
            let pattern: Vec<u8> = (0..4096).map(|i| (i as u32 ^ n) as u8).collect();
            let (st, _, sense) = c
                .scsi(&write10(lba, 8), 4096, Some(&pattern))
                .map_err(|e| e.to_string())?;
            if st != 0 {
                return Err(format!("write status {st:#x} sense {sense:02x?}"));
            }
            let (st, data, _) = c
                .scsi(&read10(lba, 8), 4096, None)
                .map_err(|e| e.to_string())?;
            if st != 0 || data != pattern {
                return Err(format!("read back mismatch at round {n} (status {st:#x})"));
            }
            ok.fetch_add(1, Ordering::SeqCst);
            n += 1;
        }
        Ok(())
    })
}

/// Whether the connection was closed by the target (EOF or reset),
/// reading at most until `limit`.
fn closed_within(c: &mut Conn, limit: Duration) -> bool {
    c.s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    loop {
        match c.recv() {
            Ok(_) => {
                if start.elapsed() > limit {
                    return false;
                }
            }
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                )
            }
        }
    }
}

fn logged_in(server: &Server, name: &str) -> Conn {
    let mut c = Conn::connect(server.addr);
    let r = c.login(&format!("iqn.2026-11.test:{name}"), TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0, "login of {name} failed");
    c
}

#[test]
fn malformed_input_is_rejected_and_other_sessions_keep_working() {
    let mut server = Server::start("malformed", &["--login-timeout-secs", "3"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bg = background_io(&server, stop.clone(), ok.clone());

    // 1. Unknown opcode: Reject with reason 0x05 (command not supported),
    //    and the connection stays usable.
    {
        let mut c = logged_in(&server, "unknown-opcode");
        let mut bhs = [0u8; 48];
        bhs[0] = 0x1d; // a vendor-specific initiator opcode we do not know
        bhs[1] = 0x80;
        c.send_raw(&bhs, &[]).unwrap();
        let r = c.recv().expect("a Reject");
        assert_eq!(r.h.opcode, pdu::opcode::REJECT);
        assert_eq!(r.h.byte2, 0x05);
        assert_eq!(&r.data[..48], &bhs[..]);
        c.ping().expect("connection still usable after the Reject");
    }

    // 2. A data segment longer than MaxRecvDataSegmentLength: Reject
    //    (protocol error) and that connection is closed.
    {
        let mut c = logged_in(&server, "too-long");
        let nop = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 77,
            ttt: RESERVED_TAG,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
        });
        let bhs = encode_initiator(&nop, 0, 4 << 20);
        c.send_raw(&bhs, &[]).unwrap();
        let r = c.recv().expect("a Reject");
        assert_eq!(r.h.opcode, pdu::opcode::REJECT);
        assert_eq!(r.h.byte2, 0x04);
        assert!(closed_within(&mut c, Duration::from_secs(5)));
    }

    // 3. A length that lies: the header announces 1000 bytes, 10 arrive,
    //    then the client goes away. Nothing to answer; the server lives on.
    {
        let mut c = logged_in(&server, "liar");
        let nop = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 78,
            ttt: RESERVED_TAG,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
        });
        let bhs = encode_initiator(&nop, 0, 1000);
        c.send_raw(&bhs, &[0u8; 10]).unwrap();
        drop(c);
    }

    // 4. CmdSN outside the window is ignored (RFC 7143 4.2.2.1); the
    //    session goes on.
    {
        let mut c = logged_in(&server, "cmdsn");
        let saved = c.cmdsn;
        c.cmdsn = saved.wrapping_add(100_000);
        let itt = c.next_itt();
        let mut cdb = [0u8; 16];
        cdb[0] = 0x00; // TEST UNIT READY
        let cmd = InitiatorPdu::ScsiCommand(pdu::ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: false,
            attr: pdu::TaskAttr::Simple,
            lun: 0,
            itt,
            edtl: 0,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
            cdb,
        });
        c.send(&cmd, &[]).unwrap();
        c.cmdsn = saved;
        c.ping().expect("ping after an out-of-window command");
        let (st, _, _) = c.scsi(&[0u8; 6], 0, None).expect("TUR in window");
        assert_eq!(st, 0);
    }

    // 5. Bad data digest: Reject (reason 0x02) or close.
    {
        let mut c = Conn::connect(server.addr);
        c.header_digest = true;
        c.data_digest = true;
        let r = c.login("iqn.2026-11.test:digest", TARGET, &[]);
        assert_eq!(r.h.word36 >> 16, 0);
        let pairs = common::parse_text(&r.data);
        assert!(
            pairs.contains(&("DataDigest".into(), "CRC32C".into())),
            "{pairs:?}"
        );
        c.ping().expect("ping with digests on");
        let nop = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 99,
            ttt: RESERVED_TAG,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
        });
        let bhs = encode_initiator(&nop, 0, 4);
        let mut raw = bhs.to_vec();
        raw.extend_from_slice(&crc32c::crc32c(&bhs).to_le_bytes());
        raw.extend_from_slice(b"data");
        raw.extend_from_slice(&0xdead_beefu32.to_le_bytes());
        use std::io::Write;
        c.s.write_all(&raw).unwrap();
        c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A Reject (reason 0x02); a closed connection is also allowed at
        // ErrorRecoveryLevel 0.
        if let Ok(r) = c.recv() {
            assert_eq!(r.h.opcode, pdu::opcode::REJECT, "{r:?}");
            assert_eq!(r.h.byte2, 0x02);
        }
    }

    // 6. Bad header digest: the framing cannot be trusted; the connection closes.
    {
        let mut c = Conn::connect(server.addr);
        c.header_digest = true;
        let r = c.login("iqn.2026-11.test:hdigest", TARGET, &[]);
        assert_eq!(r.h.word36 >> 16, 0);
        let nop = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: 5,
            ttt: RESERVED_TAG,
            cmdsn: c.cmdsn,
            exp_statsn: c.exp_statsn,
        });
        let bhs = encode_initiator(&nop, 0, 0);
        let mut raw = bhs.to_vec();
        raw.extend_from_slice(&[1, 2, 3, 4]);
        use std::io::Write;
        c.s.write_all(&raw).unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(5)));
    }

    // 7. Garbage before login: the connection is closed.
    {
        let mut c = Conn::connect(server.addr);
        use std::io::Write;
        c.s.write_all(&[0x55u8; 200]).unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(5)));
    }

    // 8. A login that never finishes: closed after the login timeout (3 s here).
    {
        let mut c = Conn::connect(server.addr);
        let req = text(&[("InitiatorName", "iqn.2026-11.test:slow")]);
        let login = InitiatorPdu::Login(pdu::LoginRequest {
            transit: false,
            continue_: false,
            csg: pdu::Stage::Security,
            nsg: pdu::Stage::Security,
            version_max: 0,
            version_min: 0,
            isid: c.isid,
            tsih: 0,
            itt: 0,
            cid: 0,
            cmdsn: 1,
            exp_statsn: 0,
        });
        // Only half of the header, then silence.
        let bhs = encode_initiator(&login, 0, req.len());
        use std::io::Write;
        c.s.write_all(&bhs[..20]).unwrap();
        let t0 = Instant::now();
        assert!(closed_within(&mut c, Duration::from_secs(10)));
        assert!(t0.elapsed() < Duration::from_secs(9));
    }

    // 9. A client that stops reading: it queues large reads and never reads
    //    the answers. The background session must not notice.
    {
        let mut c = logged_in(&server, "no-reader");
        let before = ok.load(Ordering::SeqCst);
        for _ in 0..64 {
            let itt = c.next_itt();
            let mut cdb = [0u8; 16];
            cdb[..10].copy_from_slice(&read10(0, 2048));
            let cmd = InitiatorPdu::ScsiCommand(pdu::ScsiCommand {
                immediate: false,
                final_: true,
                read: true,
                write: false,
                attr: pdu::TaskAttr::Simple,
                lun: 0,
                itt,
                edtl: 2048 * 512,
                cmdsn: c.cmdsn,
                exp_statsn: c.exp_statsn,
                cdb,
            });
            c.cmdsn += 1;
            if c.send(&cmd, &[]).is_err() {
                break;
            }
        }
        let t0 = Instant::now();
        while ok.load(Ordering::SeqCst) < before + 20 && t0.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            ok.load(Ordering::SeqCst) >= before + 20,
            "background I/O stalled while a client stopped reading"
        );
        drop(c);
    }

    stop.store(true, Ordering::SeqCst);
    let res = bg.join().expect("background thread");
    assert!(
        res.is_ok(),
        "background session failed: {res:?}\n{}",
        server.log_text()
    );
    assert!(
        ok.load(Ordering::SeqCst) > 0,
        "background session did no I/O"
    );
    assert!(server.alive(), "server died:\n{}", server.log_text());
    let log = server.log_text();
    // The server says why it closed connections.
    assert!(
        log.contains("MaxRecvDataSegmentLength"),
        "no log line for the oversize segment"
    );
    assert!(log.contains("login"), "no log line for the failed logins");
}
