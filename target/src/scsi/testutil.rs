//! Test doubles: an in-memory thin block device and a harness that runs
//! CDBs through a one-LUN map.

use std::sync::Arc;

pub use super::mem::MemDevice;

use super::{
    CommandOutcome, CommandRequest, LogicalUnit, LuIdentity, LuOptions, LunMap, Nexus, TargetPort,
};

pub const NAA: [u8; 16] = [
    0x60, 0x01, 0x40, 0x50, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x11, 0x22, 0x33, 0x44,
];

pub struct Harness {
    pub dev: Arc<MemDevice>,
    pub map: LunMap,
    pub me: Nexus,
}

impl Harness {
    pub fn new(blocks: u64, thin: bool) -> Harness {
        Harness::with_options(blocks, thin, false, false)
    }

    pub fn with_options(blocks: u64, thin: bool, read_only: bool, removable: bool) -> Harness {
        Harness::with_lu_options(
            blocks,
            thin,
            LuOptions {
                read_only,
                removable,
                allow_sanitize: false,
                sanitize_overwrite_rate: 0,
                physical_block_exponent: 0,
                state_dir: None,
            },
        )
    }

    pub fn with_lu_options(blocks: u64, thin: bool, options: LuOptions) -> Harness {
        let dev = Arc::new(MemDevice::new(blocks, thin));
        let lu = LogicalUnit::new(
            dev.clone(),
            LuIdentity {
                vendor: "IRONLUN".into(),
                product: "test lun".into(),
                revision: "0001".into(),
                serial: "serial-0".into(),
                naa: NAA,
            },
            options,
        );
        let map = LunMap::new();
        map.insert(0, Arc::new(lu));
        Harness {
            dev,
            map,
            me: Nexus {
                id: 1,
                initiator_name: "iqn.2026-11.test:init".into(),
                isid: [0x80, 0, 0, 0, 0, 1],
                target_port: Arc::new(TargetPort {
                    target_name: "iqn.2026-11.org.ironlun:test".into(),
                    tpgt: 1,
                    relative_port_id: 1,
                }),
            },
        }
    }

    pub fn nexus(&self, id: u64) -> Nexus {
        Nexus {
            id,
            isid: [0x80, 0, 0, 0, 0, id as u8],
            ..self.me.clone()
        }
    }

    pub fn exec(
        &self,
        lun: u64,
        nexus: &Nexus,
        cdb: &[u8],
        out: &[u8],
        edtl: u32,
    ) -> CommandOutcome {
        let req = CommandRequest {
            cdb,
            edtl,
            read: out.is_empty(),
            write: !out.is_empty(),
            data_out: out,
        };
        self.map.execute(lun, nexus, &req)
    }

    /// A command with a generous EDTL and no Data-Out.
    pub fn run(&self, cdb: &[u8]) -> CommandOutcome {
        self.exec(0, &self.me, cdb, &[], 65536)
    }
    pub fn run_edtl(&self, cdb: &[u8], edtl: u32) -> CommandOutcome {
        self.exec(0, &self.me, cdb, &[], edtl)
    }
    pub fn run_out(&self, cdb: &[u8], out: &[u8], edtl: u32) -> CommandOutcome {
        self.exec(0, &self.me, cdb, out, edtl)
    }
    pub fn run_as(&self, nexus: &Nexus, cdb: &[u8]) -> CommandOutcome {
        self.exec(0, nexus, cdb, &[], 65536)
    }
    pub fn run_lun(&self, lun: u64, cdb: &[u8]) -> CommandOutcome {
        self.exec(lun, &self.me, cdb, &[], 65536)
    }
}

/// Asserts CHECK CONDITION with the given key/ASC/ASCQ (either format).
#[track_caller]
/// A PERSISTENT RESERVE OUT CDB and its basic 24-byte parameter list
/// (reservation key, service action reservation key, flags byte 20).
pub fn prout(sa: u8, rtype: u8, rk: u64, sark: u64, flags: u8) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, sa, rtype, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[20] = flags;
    (cdb, p)
}

pub fn assert_sense(o: &CommandOutcome, key: u8, asc: u8, ascq: u8) {
    assert_eq!(o.status, 2, "expected CHECK CONDITION, got {o:?}");
    let s = o.sense.as_ref().expect("sense data");
    let got = match s[0] & 0x7F {
        0x72 | 0x73 => (s[1] & 0x0F, s[2], s[3]),
        _ => (s[2] & 0x0F, s[12], s[13]),
    };
    assert_eq!(got, (key, asc, ascq), "sense {s:02x?}");
}
