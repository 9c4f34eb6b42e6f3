//! Persistent reservations over iSCSI: the state survives a restart of the
//! server (APTPL on by default, persisted under the data directory), it is
//! keyed by the I_T nexus (initiator name + ISID), and two initiators
//! contend for a reservation.

mod common;

use common::{read10, write10, Conn, Server, TARGET};

const NODE1: &str = "iqn.2026-11.test:node1";
const NODE2: &str = "iqn.2026-11.test:node2";
const K1: u64 = 0x1111_2222_3333_4444;
const K2: u64 = 0x5555_6666_7777_8888;
const CONFLICT: u8 = 0x18;

const WRITE_EXCLUSIVE: u8 = 1;
const REGISTER: u8 = 0;
const RESERVE: u8 = 1;
const RELEASE: u8 = 2;
const CLEAR: u8 = 3;

fn login(server: &Server, name: &str, isid: Option<[u8; 6]>) -> Conn {
    let mut c = Conn::connect(server.addr);
    if let Some(i) = isid {
        c.isid = i;
    }
    let r = c.login(name, TARGET, &[]);
    assert_eq!(r.h.word36 >> 16, 0, "login failed: {}", server.log_text());
    c
}

/// PERSISTENT RESERVE OUT; GOOD or RESERVATION CONFLICT, nothing else.
fn prout(c: &mut Conn, sa: u8, rtype: u8, rk: u64, sark: u64) -> u8 {
    let (st, sense) = common::prout(c, sa, rtype, rk, sark);
    assert!(
        st == 0 || st == CONFLICT,
        "PR OUT {sa}: {st:#x} {sense:02x?}"
    );
    st
}

fn prin(c: &mut Conn, sa: u8) -> Vec<u8> {
    let (st, d, sense) = c
        .scsi(&[0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0], 4096, None)
        .unwrap();
    assert_eq!(st, 0, "PR IN {sa}: {sense:02x?}");
    d
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// READ KEYS: (PRGENERATION, keys).
fn read_keys(c: &mut Conn) -> (u32, Vec<u64>) {
    let d = prin(c, 0);
    let n = be32(&d[4..]) as usize;
    (be32(&d), d[8..8 + n].chunks(8).map(be64).collect())
}

/// READ RESERVATION: (key, type) of the reservation, if any.
fn read_reservation(c: &mut Conn) -> Option<(u64, u8)> {
    let d = prin(c, 1);
    (be32(&d[4..]) == 16).then(|| (be64(&d[8..]), d[21] & 0x0F))
}

fn write(c: &mut Conn) -> u8 {
    c.scsi(&write10(16, 1), 512, Some(&[0xA5; 512])).unwrap().0
}
fn read(c: &mut Conn) -> u8 {
    c.scsi(&read10(16, 1), 512, None).unwrap().0
}

#[test]
fn reservation_survives_restart() {
    let dir = std::env::temp_dir().join(format!("ironlun-it-pr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let isid1 = [0x80, 0x12, 0x34, 0, 0, 1];
    let isid2 = [0x80, 0x12, 0x34, 0, 0, 2];

    let mut s = Server::start_in(dir.clone(), &[]);
    s.keep = true;
    let mut a = login(&s, NODE1, Some(isid1));
    let mut b = login(&s, NODE2, Some(isid2));
    assert_eq!(prout(&mut a, REGISTER, 0, 0, K1), 0);
    assert_eq!(prout(&mut b, REGISTER, 0, 0, K2), 0);
    assert_eq!(prout(&mut a, RESERVE, WRITE_EXCLUSIVE, K1, 0), 0);
    assert_eq!(write(&mut b), CONFLICT);
    assert_eq!(write(&mut a), 0);
    let before = read_keys(&mut b);
    assert_eq!(before.1, vec![K1, K2]);
    drop(a);
    drop(b);
    s.stop();
    let state = dir.join("data/state/default-lun0/pr.state");
    assert!(state.exists(), "no state file at {}", state.display());
    drop(s);

    let s = Server::start_in(dir.clone(), &[]);
    let mut b = login(&s, NODE2, Some(isid2));
    assert_eq!(read_keys(&mut b), before, "registrations after restart");
    assert_eq!(
        read_reservation(&mut b),
        Some((K1, WRITE_EXCLUSIVE)),
        "reservation after restart"
    );
    // READ FULL STATUS names the holder's I_T nexus.
    let d = prin(&mut b, 3);
    let holder = format!("{NODE1},i,0x801234000001");
    let text = String::from_utf8_lossy(&d);
    assert!(
        text.contains(&holder),
        "full status lacks {holder}: {d:02x?}"
    );
    // Still enforced: the other node may read but not write...
    assert_eq!(read(&mut b), 0);
    assert_eq!(write(&mut b), CONFLICT);
    // ... the holder's I_T nexus (same name and ISID) may ...
    let mut a = login(&s, NODE1, Some(isid1));
    assert_eq!(write(&mut a), 0);
    // ... and the same initiator under another ISID is another nexus.
    let mut a2 = login(&s, NODE1, Some([0x80, 0x12, 0x34, 0, 0, 9]));
    assert_eq!(write(&mut a2), CONFLICT);
    assert_eq!(prout(&mut a2, RESERVE, WRITE_EXCLUSIVE, K1, 0), CONFLICT);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_initiators_contend() {
    let s = Server::start("pr-contend", &[]);
    let mut a = login(&s, NODE1, None);
    let mut b = login(&s, NODE2, None);
    assert_eq!(prout(&mut a, REGISTER, 0, 0, K1), 0);
    assert_eq!(prout(&mut b, REGISTER, 0, 0, K2), 0);
    assert_eq!(prout(&mut a, RESERVE, WRITE_EXCLUSIVE, K1, 0), 0);
    // The second initiator cannot take it, nor write, but reads.
    assert_eq!(prout(&mut b, RESERVE, WRITE_EXCLUSIVE, K2, 0), CONFLICT);
    assert_eq!(write(&mut b), CONFLICT);
    assert_eq!(read(&mut b), 0);
    // A wrong key conflicts too.
    assert_eq!(prout(&mut a, RELEASE, WRITE_EXCLUSIVE, K2, 0), CONFLICT);
    // Once released, the second initiator wins it and the first loses.
    assert_eq!(prout(&mut a, RELEASE, WRITE_EXCLUSIVE, K1, 0), 0);
    assert_eq!(prout(&mut b, RESERVE, WRITE_EXCLUSIVE, K2, 0), 0);
    assert_eq!(write(&mut a), CONFLICT);
    assert_eq!(write(&mut b), 0);
    assert_eq!(read_reservation(&mut a), Some((K2, WRITE_EXCLUSIVE)));
    // CLEAR drops everything (and tells the other registrant).
    assert_eq!(prout(&mut b, CLEAR, 0, K2, 0), 0);
    let (st, _, sense) = a.scsi(&[0; 6], 0, None).unwrap();
    assert_eq!((st, sense.get(12..14)), (2, Some(&[0x2A, 0x03][..])));
    assert_eq!(write(&mut a), 0);
    // SPC-2 RESERVE(6): the other initiator conflicts until the holder's
    // nexus ends.
    let (st, _, _) = a.scsi(&[0x16, 0, 0, 0, 0, 0], 0, None).unwrap();
    assert_eq!(st, 0);
    let (st, _, _) = b.scsi(&[0x16, 0, 0, 0, 0, 0], 0, None).unwrap();
    assert_eq!(st, CONFLICT);
    assert_eq!(read(&mut b), CONFLICT);
    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (st, _, _) = b.scsi(&[0x16, 0, 0, 0, 0, 0], 0, None).unwrap();
        if st == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "RESERVE(6) still held after the holder left"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(write(&mut b), 0);
}

#[test]
fn damaged_state_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("ironlun-it-prbad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("data/state/default-lun0");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("pr.state"), b"ironlun-pr 1\ngeneration x\n").unwrap();
    let s = Server::start_in(dir.clone(), &[]);
    let mut c = login(&s, NODE1, None);
    assert_eq!(read_keys(&mut c), (0, vec![]));
    assert_eq!(read_reservation(&mut c), None);
    assert!(state.join("pr.state.corrupt").exists());
    assert!(s.log_text().contains("unusable"), "{}", s.log_text());
    // New registrations are saved again.
    assert_eq!(prout(&mut c, REGISTER, 0, 0, K1), 0);
    assert!(state.join("pr.state").exists());
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
