//! Sense data (SPC-4 4.5): one [`Sense`] value, rendered as fixed (70h) or
//! descriptor (72h) format depending on the D_SENSE bit of the control mode
//! page in force for the logical unit.

use ironlun_cow::BlockError;

/// Sense keys (SPC-4 table 28).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xB;
    pub const MISCOMPARE: u8 = 0xE;
}

/// Sense-key specific data: the field pointer of an ILLEGAL REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// The field is in the CDB (C/D = 1) rather than the parameter list.
    pub in_cdb: bool,
    /// Byte offset of the (first byte of the) offending field.
    pub byte: u16,
    /// Most significant bit of the offending field, when known.
    pub bit: Option<u8>,
}

impl FieldPointer {
    fn bytes(&self) -> [u8; 3] {
        let mut b0 = 0x80; // SKSV
        if self.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let fp = self.byte.to_be_bytes();
        [b0, fp[0], fp[1]]
    }
}

/// One sense condition: key, additional sense code and qualifier, and the
/// optional INFORMATION field and field pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sense {key:x}/{asc:02x}/{ascq:02x}")]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// INFORMATION field (VALID bit set when present).
    pub info: Option<u64>,
    pub field: Option<FieldPointer>,
}

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            info: None,
            field: None,
        }
    }

    pub fn with_info(mut self, info: u64) -> Sense {
        self.info = Some(info);
        self
    }

    /// 0/00/00: nothing to report.
    pub const fn no_sense() -> Sense {
        Sense::new(key::NO_SENSE, 0, 0)
    }
    /// 5/20/00 INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00)
    }
    /// 5/21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00)
    }
    /// 5/24/00 INVALID FIELD IN CDB with the field pointer.
    pub fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }
    /// 5/25/00 LOGICAL UNIT NOT SUPPORTED.
    pub const fn lun_not_supported() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00)
    }
    /// 5/26/00 INVALID FIELD IN PARAMETER LIST with the field pointer.
    pub fn invalid_param_field(byte: u16, bit: Option<u8>) -> Sense {
        let mut s = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
        s.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        s
    }
    /// 5/1A/00 PARAMETER LIST LENGTH ERROR.
    pub const fn param_list_length() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x1A, 0x00)
    }
    /// 5/39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const fn saving_not_supported() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00)
    }
    /// 5/53/02 MEDIUM REMOVAL PREVENTED.
    pub const fn removal_prevented() -> Sense {
        Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02)
    }
    /// 2/3A/00 MEDIUM NOT PRESENT.
    pub const fn medium_not_present() -> Sense {
        Sense::new(key::NOT_READY, 0x3A, 0x00)
    }
    /// 7/27/00 WRITE PROTECTED.
    pub const fn write_protected() -> Sense {
        Sense::new(key::DATA_PROTECT, 0x27, 0x00)
    }
    /// 7/27/07 SPACE ALLOCATION FAILED WRITE PROTECT.
    pub const fn no_space() -> Sense {
        Sense::new(key::DATA_PROTECT, 0x27, 0x07)
    }
    /// 3/11/00 UNRECOVERED READ ERROR.
    pub const fn read_error() -> Sense {
        Sense::new(key::MEDIUM_ERROR, 0x11, 0x00)
    }
    /// 3/0C/00 WRITE ERROR.
    pub const fn write_error() -> Sense {
        Sense::new(key::MEDIUM_ERROR, 0x0C, 0x00)
    }
    /// 4/44/00 INTERNAL TARGET FAILURE.
    pub const fn internal() -> Sense {
        Sense::new(key::HARDWARE_ERROR, 0x44, 0x00)
    }
    /// E/1D/00 MISCOMPARE DURING VERIFY OPERATION; `offset` is the byte
    /// offset into the Data-Out buffer of the first mismatch.
    pub fn miscompare(offset: u64) -> Sense {
        Sense::new(key::MISCOMPARE, 0x1D, 0x00).with_info(offset)
    }

    /// Maps a block-device error to sense data. `writing` chooses between
    /// the read and the write flavour of medium errors.
    pub fn from_block_error(e: &BlockError, writing: bool) -> Sense {
        match e {
            BlockError::OutOfRange { .. } => Sense::lba_out_of_range(),
            BlockError::Misaligned { .. } => Sense::internal(),
            BlockError::ReadOnly => Sense::write_protected(),
            BlockError::NoSpace => Sense::no_space(),
            BlockError::Unsupported(_) => Sense::invalid_opcode(),
            BlockError::Read(_) => Sense::read_error(),
            BlockError::Write(_) => Sense::write_error(),
            BlockError::Corrupt(_) => {
                if writing {
                    Sense::write_error()
                } else {
                    Sense::read_error()
                }
            }
        }
    }

    /// Fixed format sense data (response code 70h, 18 bytes).
    pub fn fixed(&self) -> Vec<u8> {
        let mut b = vec![0u8; 18];
        b[0] = 0x70;
        b[2] = self.key & 0x0F;
        if let Some(info) = self.info {
            // The fixed format holds 4 bytes of INFORMATION; VALID only when
            // the value fits.
            if info <= u32::MAX as u64 {
                b[0] |= 0x80;
                b[3..7].copy_from_slice(&(info as u32).to_be_bytes());
            }
        }
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        if let Some(fp) = self.field {
            b[15..18].copy_from_slice(&fp.bytes());
        }
        b
    }

    /// Descriptor format sense data (response code 72h) with an information
    /// descriptor and a sense-key specific descriptor when applicable.
    pub fn descriptor(&self) -> Vec<u8> {
        let mut b = vec![0x72, self.key & 0x0F, self.asc, self.ascq, 0, 0, 0, 0];
        if let Some(info) = self.info {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(fp) = self.field {
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            b.extend_from_slice(&fp.bytes());
            b.push(0);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }

    /// Renders in the format D_SENSE asks for.
    pub fn to_bytes(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            self.descriptor()
        } else {
            self.fixed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_invalid_field_has_pointer() {
        let s = Sense::invalid_cdb_field(2, Some(7)).fixed();
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 5);
        assert_eq!(s[7], 10);
        assert_eq!((s[12], s[13]), (0x24, 0));
        assert_eq!(&s[15..18], &[0xCF, 0x00, 0x02]);
    }

    #[test]
    fn descriptor_format() {
        let s = Sense::invalid_param_field(5, None).descriptor();
        assert_eq!(&s[..4], &[0x72, 5, 0x26, 0]);
        assert_eq!(s[7] as usize, s.len() - 8);
        assert_eq!(&s[8..10], &[0x02, 0x06]);
        assert_eq!(&s[12..15], &[0x80, 0x00, 0x05]);
        let m = Sense::miscompare(513).descriptor();
        assert_eq!(&m[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(u64::from_be_bytes(m[12..20].try_into().unwrap()), 513);
    }

    #[test]
    fn fixed_info_valid() {
        let s = Sense::miscompare(7).fixed();
        assert_eq!(s[0], 0xF0);
        assert_eq!(&s[3..7], &[0, 0, 0, 7]);
        assert_eq!(s[2], 0x0E);
    }

    #[test]
    fn block_errors_map() {
        assert_eq!(
            Sense::from_block_error(&BlockError::NoSpace, true),
            Sense::no_space()
        );
        assert_eq!(
            Sense::from_block_error(&BlockError::ReadOnly, true),
            Sense::write_protected()
        );
        let e = BlockError::Read(std::io::Error::other("x"));
        assert_eq!(Sense::from_block_error(&e, false), Sense::read_error());
    }
}
