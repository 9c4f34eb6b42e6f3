//! Task management while the backend is slow: `ironlun serve` runs with
//! `IRONLUN_TEST_BACKEND_DELAY_MS` (every backend read and write takes that
//! much longer), and the tests check what an initiator's error recovery
//! relies on: ABORT TASK and LOGICAL UNIT RESET are answered while the
//! backend still holds the command, an aborted command never answers, a
//! LUN reset also ends the commands other sessions have on that LUN (SAM-5:
//! every task in the logical unit's task sets; they learn of it through a
//! unit attention), a write aborted while its data is still arriving
//! leaves the blocks untouched and the connection usable, and PREEMPT AND
//! ABORT ends the preempted session's commands.

mod common;

use std::time::{Duration, Instant};

use common::{read10, sense_code, write10, Conn, Server, TARGET};
use ironlun_target::pdu::{
    self, InitiatorPdu, ScsiCommand, TaskAttr, TaskMgmtRequest, TmfFunction,
};

const DELAY_MS: u64 = 3000;
/// An answer that waited for the backend would take at least `DELAY_MS`.
const PROMPT: Duration = Duration::from_millis(DELAY_MS / 2);

fn login(server: &Server, name: &str) -> Conn {
    let mut c = Conn::connect(server.addr);
    c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = c.login(name, TARGET, &[]);
    assert_eq!((r.h.word36 >> 24) & 0xff, 0, "login of {name} failed");
    c
}

/// Sends a SCSI command without waiting; returns its ITT.
fn send_command(c: &mut Conn, cdb: &[u8], edtl: u32, write: Option<(&[u8], bool)>) -> u32 {
    let itt = c.next_itt();
    let mut cdb16 = [0u8; 16];
    cdb16[..cdb.len()].copy_from_slice(cdb);
    let (imm, final_) = write.unwrap_or((&[], true));
    let cmd = InitiatorPdu::ScsiCommand(ScsiCommand {
        immediate: false,
        final_,
        read: write.is_none() && edtl > 0,
        write: write.is_some(),
        attr: TaskAttr::Simple,
        lun: ironlun_target::scsi::encode_lun(c.lun),
        itt,
        edtl,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
        cdb: cdb16,
    });
    c.cmdsn = c.cmdsn.wrapping_add(1);
    c.send(&cmd, imm).unwrap();
    itt
}

fn send_tmf(c: &mut Conn, function: TmfFunction, referenced: (u32, u32)) -> u32 {
    let itt = c.next_itt();
    let p = InitiatorPdu::TaskMgmt(TaskMgmtRequest {
        immediate: true,
        function,
        lun: ironlun_target::scsi::encode_lun(c.lun),
        itt,
        referenced_tag: referenced.0,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
        ref_cmdsn: referenced.1,
        exp_datasn: 0,
    });
    c.send(&p, &[]).unwrap();
    itt
}

/// Reads PDUs until the TMF response `tmf_itt`; returns its response code
/// and how long it took. Panics if a PDU for any of `never` arrives.
fn await_tmf(c: &mut Conn, tmf_itt: u32, never: &[u32], sent: Instant) -> (u8, Duration) {
    loop {
        let r = c.recv().expect("no task management response");
        assert!(
            !never.contains(&r.h.itt),
            "an aborted command answered (opcode {:#x}) before the TMF response",
            r.h.opcode
        );
        if r.h.opcode == pdu::opcode::TASK_MGMT_RESPONSE && r.h.itt == tmf_itt {
            return (r.h.byte2, sent.elapsed());
        }
    }
}

/// Waits until every held command would have finished, then pings: no PDU
/// for an aborted command may arrive before the ping's answer.
fn assert_never_answered(c: &mut Conn, aborted: &[u32]) {
    std::thread::sleep(Duration::from_millis(DELAY_MS + 1000));
    let itt = c.next_itt();
    let p = InitiatorPdu::NopOut(pdu::NopOut {
        immediate: true,
        lun: 0,
        itt,
        ttt: pdu::RESERVED_TAG,
        cmdsn: c.cmdsn,
        exp_statsn: c.exp_statsn,
    });
    c.send(&p, b"ping").unwrap();
    loop {
        let r = c.recv().expect("no NOP-In");
        assert!(
            !aborted.contains(&r.h.itt),
            "an aborted command answered later (opcode {:#x})",
            r.h.opcode
        );
        if r.h.opcode == pdu::opcode::NOP_IN && r.h.itt == itt {
            return;
        }
    }
}

#[test]
fn task_management_is_answered_while_the_backend_holds_commands() {
    // One test function: the environment is set once, before any server starts.
    std::env::set_var("IRONLUN_TEST_BACKEND_DELAY_MS", DELAY_MS.to_string());
    let mut server = Server::start("tmf-slow", &[]);

    // Prepare a known block 100 (the write itself is slow too).
    let mut a = login(&server, "iqn.2026-11.test:tmf-a");
    let block = vec![0x5Au8; 512];
    let (st, _, _) = a.scsi(&write10(100, 1), 512, Some(&block)).unwrap();
    assert_eq!(st, 0, "preparing block 100");

    // 1. ABORT TASK of a READ the backend holds.
    let read_itt = send_command(&mut a, &read10(100, 1), 512, None);
    let read_cmdsn = a.cmdsn.wrapping_sub(1);
    std::thread::sleep(Duration::from_millis(200)); // the read is in the backend now
    let sent = Instant::now();
    let tmf = send_tmf(&mut a, TmfFunction::AbortTask, (read_itt, read_cmdsn));
    let (resp, took) = await_tmf(&mut a, tmf, &[read_itt], sent);
    assert_eq!(resp, 0, "ABORT TASK: Function complete expected");
    assert!(
        took < PROMPT,
        "ABORT TASK took {took:?}: it waited for the backend ({DELAY_MS} ms)"
    );
    assert_never_answered(&mut a, &[read_itt]);

    // 2. LOGICAL UNIT RESET with commands held from two sessions.
    let mut b = login(&server, "iqn.2026-11.test:tmf-b");
    // Clear b's unit attention for its new nexus, if any, before the reset.
    let _ = b.scsi(&[0u8; 6], 0, None).unwrap();
    let a_itt = send_command(&mut a, &read10(100, 1), 512, None);
    let b_itt = send_command(&mut b, &read10(100, 1), 512, None);
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    let tmf = send_tmf(&mut a, TmfFunction::LogicalUnitReset, (0, 0));
    let (resp, took) = await_tmf(&mut a, tmf, &[a_itt], sent);
    assert_eq!(resp, 0, "LUN RESET: Function complete expected");
    assert!(
        took < PROMPT,
        "LUN RESET took {took:?}: it waited for the backend"
    );
    assert_never_answered(&mut a, &[a_itt]);
    assert_never_answered(&mut b, &[b_itt]);
    // Session b learns of the reset through a unit attention (29/xx).
    let (st, _, sense) = b.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(
        st, 2,
        "TEST UNIT READY on b after the reset: CHECK CONDITION expected"
    );
    let (key, asc, _) = sense_code(&sense).unwrap_or_default();
    assert_eq!(
        (key, asc),
        (6, 0x29),
        "b's unit attention after the LUN reset"
    );

    // 3. ABORT TASK of a WRITE whose data is still arriving: 64 KiB, only
    //    the first 4 KiB as immediate data.
    let _ = a.scsi(&[0u8; 6], 0, None).unwrap(); // a's reset unit attention
    let new_data = vec![0xC3u8; 128 * 512];
    let w_itt = send_command(
        &mut a,
        &write10(96, 128),
        new_data.len() as u32,
        Some((&new_data[..4096], false)),
    );
    let w_cmdsn = a.cmdsn.wrapping_sub(1);
    let sent = Instant::now();
    let tmf = send_tmf(&mut a, TmfFunction::AbortTask, (w_itt, w_cmdsn));
    let (resp, took) = await_tmf(&mut a, tmf, &[w_itt], sent);
    assert_eq!(
        resp, 0,
        "ABORT TASK of a collecting write: Function complete"
    );
    assert!(
        took < PROMPT,
        "ABORT TASK of a collecting write took {took:?}"
    );
    // The rest of its data arrives anyway (it was in flight): ignored.
    let mut off = 4096;
    let mut datasn = 0;
    while off < new_data.len() {
        let n = (new_data.len() - off).min(16384);
        let d = InitiatorPdu::DataOut(pdu::DataOut {
            final_: off + n == new_data.len(),
            lun: ironlun_target::scsi::encode_lun(a.lun),
            itt: w_itt,
            ttt: pdu::RESERVED_TAG,
            exp_statsn: a.exp_statsn,
            datasn,
            buffer_offset: off as u32,
        });
        a.send(&d, &new_data[off..off + n]).unwrap();
        off += n;
        datasn += 1;
    }
    assert_never_answered(&mut a, &[w_itt]);
    // Same connection, still usable, and block 100 was never written.
    let (st, data, sense) = a.scsi(&read10(100, 1), 512, None).unwrap();
    assert_eq!(st, 0, "READ after the aborted write: sense {sense:02x?}");
    assert_eq!(data, block, "the aborted write reached the medium");

    // 4. PREEMPT AND ABORT: a preempts b's registration while the backend
    //    holds a READ of b's; that READ is aborted, and b hears of it.
    let _ = b.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(prout(&mut a, PR_REGISTER, 0, 0, 0xA), 0);
    assert_eq!(prout(&mut b, PR_REGISTER, 0, 0, 0xB), 0);
    assert_eq!(prout(&mut b, PR_RESERVE, PR_WRITE_EXCLUSIVE, 0xB, 0), 0);
    let b_itt = send_command(&mut b, &read10(100, 1), 512, None);
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    assert_eq!(
        prout(&mut a, PR_PREEMPT_AND_ABORT, PR_WRITE_EXCLUSIVE, 0xA, 0xB),
        0
    );
    assert!(
        sent.elapsed() < PROMPT,
        "PREEMPT AND ABORT waited for the backend"
    );
    assert_never_answered(&mut b, &[b_itt]);
    let (st, _, sense) = b.scsi(&[0u8; 6], 0, None).unwrap();
    assert_eq!(st, 2, "TEST UNIT READY on b after being preempted");
    assert_eq!(
        sense_code(&sense),
        Some((6, 0x2A, 0x05)),
        "b's unit attention: REGISTRATIONS PREEMPTED"
    );

    assert!(server.alive(), "server died: {}", server.log_text());
    server.stop();
}

const PR_REGISTER: u8 = 0;
const PR_RESERVE: u8 = 1;
const PR_PREEMPT_AND_ABORT: u8 = 5;
const PR_WRITE_EXCLUSIVE: u8 = 1;

/// PERSISTENT RESERVE OUT that must succeed; returns the status.
fn prout(c: &mut Conn, sa: u8, rtype: u8, rk: u64, sark: u64) -> u8 {
    let (st, sense) = common::prout(c, sa, rtype, rk, sark);
    assert!(st == 0, "PR OUT {sa}: status {st:#x}, sense {sense:02x?}");
    st
}
