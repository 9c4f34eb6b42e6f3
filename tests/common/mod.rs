//! A small blocking iSCSI initiator for integration tests: it speaks raw
//! PDUs so tests can also send what no real initiator would.
//! Real-client coverage (libiscsi, the Linux kernel initiator) lives in
//! tests/e2e; this is the fault-injection side.
#![allow(dead_code)]

pub mod cim;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironlun_target::pdu::{
    self, encode_initiator, InitiatorPdu, LoginRequest, NopOut, ScsiCommand, Stage,
    TargetHeaderView, TaskAttr, BHS_LEN, RESERVED_TAG,
};

pub const TARGET: &str = "iqn.2026-11.org.ironlun:default";

/// A running `ironlun serve` on a free loopback port; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Keep `dir` when dropped (a later server reuses the data).
    pub keep: bool,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Server {
    /// Starts the server binary with `extra` arguments.
    pub fn start(name: &str, extra: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("ironlun-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Server::start_in(dir, extra)
    }

    /// Starts the server on the data under `dir` (kept from an earlier run).
    /// It listens on a free loopback port unless `extra` names
    /// `--iscsi-listen` itself (a wildcard there is reached through 127.0.0.1).
    pub fn start_in(dir: PathBuf, extra: &[&str]) -> Server {
        std::fs::create_dir_all(&dir).unwrap();
        let given = extra
            .iter()
            .position(|a| *a == "--iscsi-listen")
            .and_then(|i| extra.get(i + 1))
            .map(|a| a.replace("0.0.0.0", "127.0.0.1"));
        let listen_args: Vec<String>;
        let addr: SocketAddr = match given {
            Some(a) => {
                listen_args = Vec::new();
                a.parse().unwrap()
            }
            None => {
                let a = format!("127.0.0.1:{}", free_port());
                listen_args = vec!["--iscsi-listen".into(), a.clone()];
                a.parse().unwrap()
            }
        };
        // CIM-XML is off unless the test asks for it (its default ports are
        // fixed; parallel servers would collide).
        let wants_cim = extra
            .iter()
            .any(|a| a.starts_with("--cim-listen") || *a == "--cim");
        let cim_args: &[&str] = if wants_cim { &[] } else { &["--no-cim"] };
        let log = dir.join(format!("server-{}.log", addr.port()));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ironlun"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(&listen_args)
            .args(cim_args)
            .args(extra)
            .env("IRONLUN_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start ironlun serve");
        let s = Server {
            child,
            addr,
            dir,
            log,
            keep: false,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Server {
    /// Stops the server with SIGTERM and waits (bounded) for exit status 0.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { kill(self.child.id() as i32, 15) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert_eq!(s.code(), Some(0), "unclean exit: {}", self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Runs the `ironlun` binary with `args`; returns (exit code, stdout, stderr).
pub fn ironlun(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlun"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ironlun");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A received target PDU.
#[derive(Debug)]
pub struct Reply {
    pub h: TargetHeaderView,
    pub data: Vec<u8>,
}

/// A raw initiator connection.
pub struct Conn {
    pub s: TcpStream,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub itt: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    pub isid: [u8; 6],
    /// LUN that `scsi` addresses.
    pub lun: u64,
}

pub fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        v.extend_from_slice(k.as_bytes());
        v.push(b'=');
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

pub fn parse_text(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        let n: u32 = rand::random();
        Conn {
            s,
            cmdsn: 1,
            exp_statsn: 0,
            itt: 1,
            header_digest: false,
            data_digest: false,
            isid: [0x80, 0x12, 0x34, (n >> 16) as u8, (n >> 8) as u8, n as u8],
            lun: 0,
        }
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    /// Sends a BHS (with AHS words 0) and data, digests as negotiated.
    pub fn send_raw(&mut self, bhs: &[u8; BHS_LEN], data: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(BHS_LEN + data.len() + 12);
        out.extend_from_slice(bhs);
        if self.header_digest {
            out.extend_from_slice(&crc32c::crc32c(bhs).to_le_bytes());
        }
        out.extend_from_slice(data);
        let pad = pdu::pad_len(data.len());
        out.extend_from_slice(&[0u8; 3][..pad]);
        if self.data_digest && !data.is_empty() {
            out.extend_from_slice(
                &crc32c::crc32c(&out[out.len() - data.len() - pad..]).to_le_bytes(),
            );
        }
        self.s.write_all(&out)
    }

    pub fn send(&mut self, pdu: &InitiatorPdu, data: &[u8]) -> std::io::Result<()> {
        let bhs = encode_initiator(pdu, 0, data.len());
        self.send_raw(&bhs, data)
    }

    /// Receives one PDU; `Err` on timeout or close.
    pub fn recv(&mut self) -> std::io::Result<Reply> {
        let mut bhs = [0u8; BHS_LEN];
        self.s.read_exact(&mut bhs)?;
        let h = TargetHeaderView::parse(&bhs);
        if self.header_digest {
            let mut d = [0u8; 4];
            self.s.read_exact(&mut d)?;
            assert_eq!(
                u32::from_le_bytes(d),
                crc32c::crc32c(&bhs),
                "target header digest"
            );
        }
        let mut data = vec![0u8; h.data_len + pdu::pad_len(h.data_len)];
        self.s.read_exact(&mut data)?;
        if self.data_digest && h.data_len > 0 {
            let mut d = [0u8; 4];
            self.s.read_exact(&mut d)?;
            assert_eq!(
                u32::from_le_bytes(d),
                crc32c::crc32c(&data),
                "target data digest"
            );
        }
        data.truncate(h.data_len);
        if matches!(
            h.opcode,
            pdu::opcode::SCSI_RESPONSE
                | pdu::opcode::NOP_IN
                | pdu::opcode::LOGOUT_RESPONSE
                | pdu::opcode::TASK_MGMT_RESPONSE
                | pdu::opcode::TEXT_RESPONSE
                | pdu::opcode::LOGIN_RESPONSE
        ) || (h.opcode == pdu::opcode::SCSI_DATA_IN && h.flags & 1 != 0)
        {
            self.exp_statsn = h.statsn.wrapping_add(1);
        }
        Ok(Reply { h, data })
    }

    /// Logs in to `target` with AuthMethod=None straight to full feature
    /// phase, offering `extra` operational keys. Returns the final response.
    pub fn login(&mut self, initiator: &str, target: &str, extra: &[(&str, &str)]) -> Reply {
        let mut keys = vec![
            ("InitiatorName", initiator),
            ("TargetName", target),
            ("SessionType", "Normal"),
            ("AuthMethod", "None"),
        ];
        let (hd, dd) = (self.header_digest, self.data_digest);
        self.header_digest = false;
        self.data_digest = false;
        let r = self.login_step(Stage::Security, Stage::Operational, &keys);
        assert_eq!(
            (r.h.word36 >> 24) & 0xff,
            0,
            "security stage failed: {:?}",
            parse_text(&r.data)
        );
        keys = vec![
            ("HeaderDigest", if hd { "CRC32C" } else { "None" }),
            ("DataDigest", if dd { "CRC32C" } else { "None" }),
            ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "1048576"),
            ("FirstBurstLength", "262144"),
        ];
        keys.extend_from_slice(extra);
        let r = self.login_step(Stage::Operational, Stage::FullFeature, &keys);
        self.header_digest = hd;
        self.data_digest = dd;
        r
    }

    pub fn login_step(&mut self, csg: Stage, nsg: Stage, keys: &[(&str, &str)]) -> Reply {
        let req = InitiatorPdu::Login(LoginRequest {
            transit: true,
            continue_: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: 0,
            itt: 0,
            cid: 0,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
        });
        self.send(&req, &text(keys)).unwrap();
        let r = self.recv().expect("login response");
        assert_eq!(r.h.opcode, pdu::opcode::LOGIN_RESPONSE);
        r
    }

    /// Sends a NOP-Out ping and waits for its NOP-In.
    pub fn ping(&mut self) -> std::io::Result<()> {
        let itt = self.next_itt();
        let p = InitiatorPdu::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
        });
        self.send(&p, b"ping")?;
        loop {
            let r = self.recv()?;
            if r.h.opcode == pdu::opcode::NOP_IN && r.h.itt == itt {
                assert_eq!(r.data, b"ping");
                return Ok(());
            }
        }
    }

    /// Runs one SCSI command; returns (status, data-in, sense).
    pub fn scsi(
        &mut self,
        cdb: &[u8],
        edtl: u32,
        write: Option<&[u8]>,
    ) -> std::io::Result<(u8, Vec<u8>, Vec<u8>)> {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        let imm = write.map(|d| &d[..d.len().min(262144)]).unwrap_or(&[]);
        let cmd = InitiatorPdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: write.map(|d| d.len() <= imm.len()).unwrap_or(true),
            read: write.is_none() && edtl > 0,
            write: write.is_some(),
            attr: TaskAttr::Simple,
            lun: ironlun_target::scsi::encode_lun(self.lun),
            itt,
            edtl,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
            cdb: c,
        });
        self.cmdsn = self.cmdsn.wrapping_add(1);
        self.send(&cmd, imm)?;
        let mut data = Vec::new();
        loop {
            let r = self.recv()?;
            if r.h.itt != itt {
                continue;
            }
            match r.h.opcode {
                pdu::opcode::SCSI_DATA_IN => {
                    let off = r.h.word40 as usize;
                    if data.len() < off + r.data.len() {
                        data.resize(off + r.data.len(), 0);
                    }
                    data[off..off + r.data.len()].copy_from_slice(&r.data);
                    if r.h.flags & 1 != 0 {
                        return Ok((r.h.byte3, data, Vec::new()));
                    }
                }
                pdu::opcode::R2T => {
                    let wd = write.expect("R2T for a read");
                    let off = r.h.word40 as usize;
                    let len = r.h.word44 as usize;
                    let mut sent = 0;
                    let mut datasn = 0;
                    while sent < len {
                        let n = (len - sent).min(262144);
                        let d = InitiatorPdu::DataOut(pdu::DataOut {
                            final_: sent + n == len,
                            lun: ironlun_target::scsi::encode_lun(self.lun),
                            itt,
                            ttt: r.h.ttt,
                            exp_statsn: self.exp_statsn,
                            datasn,
                            buffer_offset: (off + sent) as u32,
                        });
                        self.send(&d, &wd[off + sent..off + sent + n])?;
                        sent += n;
                        datasn += 1;
                    }
                }
                pdu::opcode::SCSI_RESPONSE => {
                    let sense = if r.data.len() >= 2 {
                        r.data[2..].to_vec()
                    } else {
                        Vec::new()
                    };
                    return Ok((r.h.byte3, data, sense));
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }
}

pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x2a, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list (reservation
/// key, service action reservation key); returns (status, sense).
pub fn prout(c: &mut Conn, sa: u8, rtype: u8, rk: u64, sark: u64) -> (u8, Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    let cdb = [0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0];
    let (st, _, sense) = c.scsi(&cdb, 24, Some(&p)).unwrap();
    (st, sense)
}

/// Sense key, ASC and ASCQ of fixed or descriptor format sense data (ASC
/// and ASCQ 0 when the data stops short of them); `None` if it is neither.
pub fn sense_code(sense: &[u8]) -> Option<(u8, u8, u8)> {
    let at = |i: usize| sense.get(i).copied().unwrap_or(0);
    match sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) if sense.len() > 2 => Some((at(2) & 0x0f, at(12), at(13))),
        Some(0x72 | 0x73) if sense.len() > 1 => Some((at(1) & 0x0f, at(2), at(3))),
        _ => None,
    }
}
