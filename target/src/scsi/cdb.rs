//! Typed decoding of CDBs. [`decode`] accepts any byte string and returns
//! either a [`Cdb`] or the exact sense data to answer with; it never panics.
//! Field checks that do not depend on logical unit state (reserved
//! protection fields, invalid combinations) are done here, with the field
//! pointer of the offending bits.

use super::sense::Sense;

/// Operation codes this device server knows.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const SYNC_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8A;
    pub const WRITE_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const SYNC_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const SANITIZE: u8 = 0x48;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    /// THIRD-PARTY COPY OUT: EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN.
    pub const THIRD_PARTY_COPY_OUT: u8 = 0x83;
    /// THIRD-PARTY COPY IN: RECEIVE COPY RESULTS, RECEIVE ROD TOKEN INFORMATION.
    pub const THIRD_PARTY_COPY_IN: u8 = 0x84;

    /// SERVICE ACTION IN (16) service actions.
    pub const SA_READ_CAPACITY_16: u16 = 0x10;
    pub const SA_GET_LBA_STATUS: u16 = 0x12;
    /// MAINTENANCE IN service action.
    pub const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
    /// MAINTENANCE IN service action REPORT TARGET PORT GROUPS.
    pub const SA_REPORT_TARGET_PORT_GROUPS: u16 = 0x0A;
    /// THIRD-PARTY COPY OUT service actions.
    pub const SA_EXTENDED_COPY_LID1: u8 = 0x00;
    pub const SA_POPULATE_TOKEN: u8 = 0x10;
    pub const SA_WRITE_USING_TOKEN: u8 = 0x11;
    /// THIRD-PARTY COPY IN service actions.
    pub const SA_COPY_STATUS_LID1: u8 = 0x00;
    pub const SA_OPERATING_PARAMETERS: u8 = 0x03;
    pub const SA_RECEIVE_ROD_TOKEN_INFORMATION: u8 = 0x07;
}

/// Which CDB size a read/write-family command came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    W6,
    W10,
    W12,
    W16,
}

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cdb {
    TestUnitReady,
    RequestSense {
        desc: bool,
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        len: u32,
    },
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        no_flush: bool,
        loej: bool,
        start: bool,
    },
    PreventAllow {
        prevent: u8,
    },
    ReadCapacity10 {
        lba: u32,
        pmi: bool,
    },
    ReadCapacity16 {
        alloc: u32,
    },
    GetLbaStatus {
        lba: u64,
        alloc: u32,
    },
    Read {
        width: Width,
        lba: u64,
        blocks: u32,
        dpo: bool,
        fua: bool,
    },
    Write {
        width: Width,
        lba: u64,
        blocks: u32,
        dpo: bool,
        fua: bool,
    },
    WriteAndVerify {
        width: Width,
        lba: u64,
        blocks: u32,
        dpo: bool,
        bytchk: u8,
    },
    Verify {
        width: Width,
        lba: u64,
        blocks: u32,
        dpo: bool,
        bytchk: u8,
    },
    SyncCache {
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    WriteSame {
        ten: bool,
        lba: u64,
        blocks: u32,
        unmap: bool,
        anchor: bool,
        ndob: bool,
    },
    Unmap {
        anchor: bool,
        len: u32,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        sa: u16,
        alloc: u32,
    },
    /// COMPARE AND WRITE: `blocks` is NUMBER OF LOGICAL BLOCKS.
    CompareAndWrite {
        lba: u64,
        blocks: u8,
        fua: bool,
    },
    OrWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    WriteAtomic {
        lba: u64,
        boundary: u16,
        blocks: u16,
        fua: bool,
    },
    PreFetch {
        ten: bool,
        lba: u64,
        blocks: u32,
        immed: bool,
    },
    ReadDefectData {
        twelve: bool,
        plist: bool,
        glist: bool,
        format: u8,
        alloc: u32,
    },
    Sanitize {
        immed: bool,
        ause: bool,
        sa: u8,
        len: u32,
    },
    /// REPORT TARGET PORT GROUPS; `format` is PARAMETER DATA FORMAT.
    ReportTargetPortGroups {
        format: u8,
        alloc: u32,
    },
    /// PERSISTENT RESERVE IN (service action 0..=3).
    PersistentReserveIn {
        sa: u8,
        alloc: u32,
    },
    /// PERSISTENT RESERVE OUT (service action 0..=7); `len` is the
    /// parameter list length.
    PersistentReserveOut {
        sa: u8,
        scope: u8,
        rtype: u8,
        len: u32,
    },
    /// SPC-2 RESERVE (6) / (10), third-party and extents refused.
    Reserve {
        ten: bool,
    },
    /// SPC-2 RELEASE (6) / (10).
    Release {
        ten: bool,
    },
    /// EXTENDED COPY (LID1); `len` is the parameter list length.
    ExtendedCopy {
        len: u32,
    },
    /// POPULATE TOKEN; `len` is the parameter list length.
    PopulateToken {
        list_id: u32,
        len: u32,
    },
    /// WRITE USING TOKEN; `len` is the parameter list length.
    WriteUsingToken {
        list_id: u32,
        len: u32,
    },
    /// RECEIVE COPY RESULTS, COPY STATUS (LID1).
    ReceiveCopyStatus {
        list_id: u8,
        alloc: u32,
    },
    /// RECEIVE COPY RESULTS, OPERATING PARAMETERS.
    ReceiveCopyOperatingParameters {
        alloc: u32,
    },
    /// RECEIVE ROD TOKEN INFORMATION.
    ReceiveRodTokenInformation {
        list_id: u32,
        alloc: u32,
    },
}

/// CDB length implied by the operation code's group (SPC-4 4.2.5.1), or
/// `None` for the reserved / vendor-specific groups.
pub fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

fn be16(b: &[u8]) -> u32 {
    u16::from_be_bytes([b[0], b[1]]) as u32
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The opcode and service action a CDB names (for UA exemptions and RSOC).
pub fn opcode_of(cdb: &[u8]) -> Option<u8> {
    cdb.first().copied()
}

/// Decodes a CDB. Missing trailing bytes read as zero; extra bytes are
/// ignored.
pub fn decode(cdb: &[u8]) -> Result<Cdb, Sense> {
    let Some(&opcode) = cdb.first() else {
        return Err(Sense::invalid_opcode());
    };
    let mut b = [0u8; 32];
    let n = cdb.len().min(b.len());
    b[..n].copy_from_slice(&cdb[..n]);
    let Some(len) = cdb_len(opcode) else {
        return Err(Sense::invalid_opcode());
    };
    let control = len - 1;
    let decoded = match opcode {
        op::TEST_UNIT_READY => Cdb::TestUnitReady,
        op::REQUEST_SENSE => Cdb::RequestSense {
            desc: b[1] & 0x01 != 0,
            alloc: b[4] as u32,
        },
        op::INQUIRY => {
            if b[1] & 0x02 != 0 {
                // CMDDT is obsolete.
                return Err(Sense::invalid_cdb_field(1, Some(1)));
            }
            let evpd = b[1] & 0x01 != 0;
            if !evpd && b[2] != 0 {
                return Err(Sense::invalid_cdb_field(2, Some(7)));
            }
            Cdb::Inquiry {
                evpd,
                page: b[2],
                alloc: be16(&b[3..]),
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = opcode == op::MODE_SENSE_10;
            Cdb::ModeSense {
                ten,
                dbd: b[1] & 0x08 != 0,
                llbaa: ten && b[1] & 0x10 != 0,
                pc: b[2] >> 6,
                page: b[2] & 0x3F,
                subpage: b[3],
                alloc: if ten { be16(&b[7..]) } else { b[4] as u32 },
            }
        }
        op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
            let ten = opcode == op::MODE_SELECT_10;
            Cdb::ModeSelect {
                ten,
                pf: b[1] & 0x10 != 0,
                sp: b[1] & 0x01 != 0,
                len: if ten { be16(&b[7..]) } else { b[4] as u32 },
            }
        }
        op::START_STOP_UNIT => Cdb::StartStopUnit {
            immed: b[1] & 0x01 != 0,
            power_condition: b[4] >> 4,
            no_flush: b[4] & 0x04 != 0,
            loej: b[4] & 0x02 != 0,
            start: b[4] & 0x01 != 0,
        },
        op::PREVENT_ALLOW => Cdb::PreventAllow {
            prevent: b[4] & 0x03,
        },
        op::READ_CAPACITY_10 => {
            let lba = be32(&b[2..]);
            let pmi = b[8] & 0x01 != 0;
            if !pmi && lba != 0 {
                return Err(Sense::invalid_cdb_field(2, None));
            }
            Cdb::ReadCapacity10 { lba, pmi }
        }
        op::SERVICE_ACTION_IN_16 => match (b[1] & 0x1F) as u16 {
            op::SA_READ_CAPACITY_16 => Cdb::ReadCapacity16 {
                alloc: be32(&b[10..]),
            },
            op::SA_GET_LBA_STATUS => Cdb::GetLbaStatus {
                lba: be64(&b[2..]),
                alloc: be32(&b[10..]),
            },
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        },
        op::MAINTENANCE_IN => match (b[1] & 0x1F) as u16 {
            op::SA_REPORT_SUPPORTED_OPCODES => Cdb::ReportSupportedOpcodes {
                rctd: b[2] & 0x80 != 0,
                options: b[2] & 0x07,
                opcode: b[3],
                sa: be16(&b[4..]) as u16,
                alloc: be32(&b[6..]),
            },
            op::SA_REPORT_TARGET_PORT_GROUPS => Cdb::ReportTargetPortGroups {
                format: b[1] >> 5,
                alloc: be32(&b[6..]),
            },
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        },
        op::REPORT_LUNS => Cdb::ReportLuns {
            select: b[2],
            alloc: be32(&b[6..]),
        },
        op::READ_6 | op::WRITE_6 => {
            let lba = (((b[1] & 0x1F) as u64) << 16) | ((b[2] as u64) << 8) | b[3] as u64;
            let blocks = if b[4] == 0 { 256 } else { b[4] as u32 };
            if opcode == op::READ_6 {
                Cdb::Read {
                    width: Width::W6,
                    lba,
                    blocks,
                    dpo: false,
                    fua: false,
                }
            } else {
                Cdb::Write {
                    width: Width::W6,
                    lba,
                    blocks,
                    dpo: false,
                    fua: false,
                }
            }
        }
        op::READ_10
        | op::READ_12
        | op::READ_16
        | op::WRITE_10
        | op::WRITE_12
        | op::WRITE_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::WRITE_VERIFY_10
        | op::WRITE_VERIFY_12
        | op::WRITE_VERIFY_16 => {
            let (width, lba, blocks) = match len {
                10 => (Width::W10, be32(&b[2..]) as u64, be16(&b[7..])),
                12 => (Width::W12, be32(&b[2..]) as u64, be32(&b[6..])),
                _ => (Width::W16, be64(&b[2..]), be32(&b[10..])),
            };
            // RDPROTECT / WRPROTECT / VRPROTECT: no protection information.
            if b[1] & 0xE0 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(7)));
            }
            let dpo = b[1] & 0x10 != 0;
            let fua = b[1] & 0x08 != 0;
            let bytchk = (b[1] >> 1) & 0x03;
            match opcode {
                op::READ_10 | op::READ_12 | op::READ_16 => Cdb::Read {
                    width,
                    lba,
                    blocks,
                    dpo,
                    fua,
                },
                op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => Cdb::Write {
                    width,
                    lba,
                    blocks,
                    dpo,
                    fua,
                },
                op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
                    if bytchk == 2 {
                        return Err(Sense::invalid_cdb_field(1, Some(2)));
                    }
                    Cdb::Verify {
                        width,
                        lba,
                        blocks,
                        dpo,
                        bytchk,
                    }
                }
                _ => {
                    if bytchk >= 2 {
                        return Err(Sense::invalid_cdb_field(1, Some(2)));
                    }
                    Cdb::WriteAndVerify {
                        width,
                        lba,
                        blocks,
                        dpo,
                        bytchk,
                    }
                }
            }
        }
        op::SYNC_CACHE_10 => Cdb::SyncCache {
            lba: be32(&b[2..]) as u64,
            blocks: be16(&b[7..]),
            immed: b[1] & 0x02 != 0,
        },
        op::SYNC_CACHE_16 => Cdb::SyncCache {
            lba: be64(&b[2..]),
            blocks: be32(&b[10..]),
            immed: b[1] & 0x02 != 0,
        },
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            if b[1] & 0xE0 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(7)));
            }
            let ten = opcode == op::WRITE_SAME_10;
            let (lba, blocks) = if ten {
                (be32(&b[2..]) as u64, be16(&b[7..]))
            } else {
                (be64(&b[2..]), be32(&b[10..]))
            };
            Cdb::WriteSame {
                ten,
                lba,
                blocks,
                unmap: b[1] & 0x08 != 0,
                anchor: b[1] & 0x10 != 0,
                ndob: !ten && b[1] & 0x01 != 0,
            }
        }
        op::UNMAP => Cdb::Unmap {
            anchor: b[1] & 0x01 != 0,
            len: be16(&b[7..]),
        },
        op::COMPARE_AND_WRITE | op::ORWRITE_16 | op::WRITE_ATOMIC_16 => {
            // WRPROTECT / ORPROTECT: no protection information.
            if b[1] & 0xE0 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(7)));
            }
            let lba = be64(&b[2..]);
            let fua = b[1] & 0x08 != 0;
            match opcode {
                op::COMPARE_AND_WRITE => Cdb::CompareAndWrite {
                    lba,
                    blocks: b[13],
                    fua,
                },
                op::ORWRITE_16 => Cdb::OrWrite {
                    lba,
                    blocks: be32(&b[10..]),
                    fua,
                },
                _ => Cdb::WriteAtomic {
                    lba,
                    boundary: be16(&b[10..]) as u16,
                    blocks: be16(&b[12..]) as u16,
                    fua,
                },
            }
        }
        op::PRE_FETCH_10 => Cdb::PreFetch {
            ten: true,
            lba: be32(&b[2..]) as u64,
            blocks: be16(&b[7..]),
            immed: b[1] & 0x02 != 0,
        },
        op::PRE_FETCH_16 => Cdb::PreFetch {
            ten: false,
            lba: be64(&b[2..]),
            blocks: be32(&b[10..]),
            immed: b[1] & 0x02 != 0,
        },
        op::READ_DEFECT_DATA_10 => Cdb::ReadDefectData {
            twelve: false,
            plist: b[2] & 0x10 != 0,
            glist: b[2] & 0x08 != 0,
            format: b[2] & 0x07,
            alloc: be16(&b[7..]),
        },
        op::READ_DEFECT_DATA_12 => Cdb::ReadDefectData {
            twelve: true,
            plist: b[1] & 0x10 != 0,
            glist: b[1] & 0x08 != 0,
            format: b[1] & 0x07,
            alloc: be32(&b[6..]),
        },
        op::SANITIZE => {
            if b[1] & 0x40 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(6)));
            }
            if let Some(i) = (2..7).find(|&i| b[i] != 0) {
                return Err(Sense::invalid_cdb_field(i as u16, Some(7)));
            }
            Cdb::Sanitize {
                immed: b[1] & 0x80 != 0,
                ause: b[1] & 0x20 != 0,
                sa: b[1] & 0x1F,
                len: be16(&b[7..]),
            }
        }
        op::PERSISTENT_RESERVE_IN => {
            if b[1] & 0x1F > 3 {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            Cdb::PersistentReserveIn {
                sa: b[1] & 0x1F,
                alloc: be16(&b[7..]),
            }
        }
        op::PERSISTENT_RESERVE_OUT => {
            if b[1] & 0x1F > 7 {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            Cdb::PersistentReserveOut {
                sa: b[1] & 0x1F,
                scope: b[2] >> 4,
                rtype: b[2] & 0x0F,
                len: be32(&b[5..]),
            }
        }
        op::RESERVE_6 | op::RELEASE_6 | op::RESERVE_10 | op::RELEASE_10 => {
            let ten = opcode == op::RESERVE_10 || opcode == op::RELEASE_10;
            // 3RDPTY (and LONGID with it) and the obsolete extent bit: no
            // third-party or extent reservations.
            if b[1] & 0x10 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            if ten && b[1] & 0x02 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(1)));
            }
            if !ten && b[1] & 0x01 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(0)));
            }
            if opcode == op::RESERVE_6 || opcode == op::RESERVE_10 {
                Cdb::Reserve { ten }
            } else {
                Cdb::Release { ten }
            }
        }
        op::THIRD_PARTY_COPY_OUT => {
            let len = be32(&b[10..]);
            let list_id = be32(&b[6..]);
            match b[1] & 0x1F {
                op::SA_EXTENDED_COPY_LID1 => Cdb::ExtendedCopy { len },
                op::SA_POPULATE_TOKEN => Cdb::PopulateToken { list_id, len },
                op::SA_WRITE_USING_TOKEN => Cdb::WriteUsingToken { list_id, len },
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            }
        }
        op::THIRD_PARTY_COPY_IN => {
            let alloc = be32(&b[10..]);
            match b[1] & 0x1F {
                op::SA_COPY_STATUS_LID1 => Cdb::ReceiveCopyStatus {
                    list_id: b[2],
                    alloc,
                },
                op::SA_OPERATING_PARAMETERS => Cdb::ReceiveCopyOperatingParameters { alloc },
                op::SA_RECEIVE_ROD_TOKEN_INFORMATION => Cdb::ReceiveRodTokenInformation {
                    list_id: be32(&b[2..]),
                    alloc,
                },
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            }
        }
        _ => return Err(Sense::invalid_opcode()),
    };
    // NACA is not supported (SAM-5 5.9.1.2); the obsolete LINK bit neither.
    if b[control] & 0x04 != 0 {
        return Err(Sense::invalid_cdb_field(control as u16, Some(2)));
    }
    if b[control] & 0x01 != 0 {
        return Err(Sense::invalid_cdb_field(control as u16, Some(0)));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read10() {
        let c = decode(&[0x28, 0x18, 0, 0, 1, 0, 0, 0, 8, 0]).unwrap();
        assert_eq!(
            c,
            Cdb::Read {
                width: Width::W10,
                lba: 256,
                blocks: 8,
                dpo: true,
                fua: true
            }
        );
    }

    #[test]
    fn read6_zero_means_256() {
        let c = decode(&[0x08, 0x01, 0x02, 0x03, 0, 0]).unwrap();
        assert_eq!(
            c,
            Cdb::Read {
                width: Width::W6,
                lba: 0x010203,
                blocks: 256,
                dpo: false,
                fua: false
            }
        );
    }

    #[test]
    fn rdprotect_rejected_with_pointer() {
        let e = decode(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!((e.key, e.asc), (5, 0x24));
        let f = e.field.unwrap();
        assert!(f.in_cdb);
        assert_eq!((f.byte, f.bit), (1, Some(7)));
    }

    #[test]
    fn inquiry_page_without_evpd() {
        let e = decode(&[0x12, 0, 1, 1, 0, 0]).unwrap_err();
        assert_eq!(e.asc, 0x24);
        assert_eq!(e.field.unwrap().byte, 2);
    }

    #[test]
    fn unknown_opcode_and_short_cdbs() {
        assert_eq!(decode(&[0xFF]).unwrap_err(), Sense::invalid_opcode());
        assert_eq!(decode(&[]).unwrap_err(), Sense::invalid_opcode());
        assert_eq!(decode(&[0x02]).unwrap_err(), Sense::invalid_opcode());
        // Short CDBs decode with zeros.
        assert_eq!(decode(&[0x00]).unwrap(), Cdb::TestUnitReady);
    }

    #[test]
    fn third_party_copy_service_actions() {
        let mut c = [0u8; 16];
        c[0] = 0x83;
        c[13] = 44;
        assert_eq!(decode(&c).unwrap(), Cdb::ExtendedCopy { len: 44 });
        c[1] = 0x10;
        c[9] = 7;
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::PopulateToken {
                list_id: 7,
                len: 44
            }
        );
        c[1] = 0x01; // EXTENDED COPY (LID4) is not implemented
        let e = decode(&c).unwrap_err();
        assert_eq!((e.asc, e.field.unwrap().byte), (0x24, 1));
        let mut c = [0u8; 16];
        c[0] = 0x84;
        c[1] = 0x07;
        c[5] = 9;
        c[13] = 0xFF;
        assert_eq!(
            decode(&c).unwrap(),
            Cdb::ReceiveRodTokenInformation {
                list_id: 9,
                alloc: 255
            }
        );
        c[1] = 0x01; // RECEIVE DATA: no held data
        assert_eq!(decode(&c).unwrap_err().asc, 0x24);
    }

    #[test]
    fn naca_rejected() {
        let e = decode(&[0, 0, 0, 0, 0, 0x04]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 5);
    }

    #[test]
    fn never_panics_on_any_short_input() {
        for op in 0..=255u8 {
            for len in 0..20 {
                let mut v = vec![0xFFu8; len];
                if len > 0 {
                    v[0] = op;
                }
                let _ = decode(&v);
                let v0: Vec<u8> = (0..len as u8)
                    .map(|i| if i == 0 { op } else { 0 })
                    .collect();
                let _ = decode(&v0);
            }
        }
    }
}
