//! Fuzzes the SCSI layer: `cdb::decode` on raw bytes, and a sequence of
//! commands through `LunMap::execute` against an in-memory thin LUN (state
//! such as mode pages and unit attentions carries over within one input).
//!
//! Input: records of `[flags u8][cdb len u8][cdb][edtl u16 BE][data len u16 BE][data]`.
//! `flags` bit 0 picks an unmapped LUN, bit 1 a second nexus, bits 2-3 a
//! task-management reset before the command. Bit 7 of the first byte makes
//! the LUN removable, bit 6 allows SANITIZE.

#![no_main]

use std::sync::Arc;

use ironlun_target::scsi::mem::MemDevice;
use ironlun_target::scsi::{
    cdb, status, CommandRequest, LogicalUnit, LuIdentity, LuOptions, LunMap, Nexus, ResetKind,
    TargetPort,
};
use libfuzzer_sys::fuzz_target;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).first().copied()
    }
    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        match b {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => *a as u16,
            _ => 0,
        }
    }
}

fn nexus(id: u64) -> Nexus {
    Nexus {
        id,
        initiator_name: "iqn.2026-11.org.ironlun:fuzz".into(),
        isid: [0x80, 0, 0, 0, 0, id as u8],
        target_port: Arc::new(TargetPort {
            target_name: "iqn.2026-11.org.ironlun:fuzz-target".into(),
            tpgt: 1,
            relative_port_id: 1,
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    // The decoder alone, on the whole input.
    let _ = cdb::decode(data);

    let lu = LogicalUnit::new(
        Arc::new(MemDevice::new(256, true)),
        LuIdentity {
            vendor: "IRONLUN".into(),
            product: "fuzz".into(),
            revision: "0001".into(),
            serial: "fuzz-0".into(),
            naa: [0x60; 16],
        },
        LuOptions {
            read_only: false,
            removable: data.first().is_some_and(|b| b & 0x80 != 0),
            allow_sanitize: data.first().is_some_and(|b| b & 0x40 != 0),
            state_dir: None,
            ..LuOptions::default()
        },
    );
    let map = LunMap::new();
    map.insert(0, Arc::new(lu));
    let nexuses = [nexus(1), nexus(2)];
    map.register_nexus(&nexuses[0]);

    let mut r = Reader(data);
    for _ in 0..64 {
        let Some(flags) = r.u8() else { break };
        let cdb_len = r.u8().unwrap_or(0) as usize;
        let cdb = r.take(cdb_len.min(32));
        let edtl = r.u16() as u32 * 8;
        let dlen = r.u16() as usize;
        let data_out = r.take(dlen.min(edtl as usize));
        let lun = (flags & 0x01) as u64 * 7;
        let n = &nexuses[((flags >> 1) & 1) as usize];
        match (flags >> 2) & 0x03 {
            1 => {
                map.logical_unit_reset(lun, n);
            }
            2 => map.target_reset(ResetKind::TargetWarm, n),
            3 => map.target_reset(ResetKind::TargetCold, n),
            _ => {}
        }
        let _ = map.data_out_len(lun, cdb);
        let req = CommandRequest {
            cdb,
            edtl,
            read: data_out.is_empty(),
            write: !data_out.is_empty(),
            data_out,
        };
        let out = map.execute(lun, n, &req);
        if out.status == status::GOOD || out.status == status::RESERVATION_CONFLICT {
            assert!(out.sense.is_none());
        } else {
            assert_eq!(out.status, status::CHECK_CONDITION);
            let sense = out.sense.as_ref().expect("CHECK CONDITION carries sense");
            assert!(sense.len() >= 8);
            assert!(out.data_in.is_empty());
        }
        assert!(out.data_in.len() as u64 <= out.transfer_len as u64);
    }
});
