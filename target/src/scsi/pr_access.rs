//! Which commands a reservation lets through (SPC-4 5.13.1 table 63 with
//! SBC-3 4.17 table 13 for block commands, and SPC-2 5.5.1 for RESERVE(6)
//! / RESERVE(10) reservations).
//!
//! Under a persistent reservation, the holder (every registrant for an
//! all-registrants type) and, for registrants-only / all-registrants
//! types, every registered I_T nexus may do anything. Anyone else gets what
//! the command's [`Access`] class allows: `Any` always, `Read` only under a
//! WRITE EXCLUSIVE type, `Write` never.
//!
//! PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE are not classified here:
//! their own processing rules decide (see `reservation`).

/// How a command is treated when it comes from an I_T nexus that is not a
/// reservation holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed under every reservation type.
    Any,
    /// Allowed under WRITE EXCLUSIVE types, conflicts under EXCLUSIVE ACCESS.
    Read,
    /// Conflicts under every type.
    Write,
}

fn sa(cdb: &[u8]) -> u8 {
    cdb.get(1).map_or(0, |b| b & 0x1F)
}

/// The class of the command in `cdb` (non-empty).
pub fn classify(cdb: &[u8]) -> Access {
    use Access::*;
    let op = cdb[0];
    match op {
        // SPC: always allowed.
        0x00 // TEST UNIT READY (ALLOW COMMANDS 001b)
        | 0x03 // REQUEST SENSE
        | 0x12 // INQUIRY
        | 0x4D // LOG SENSE
        | 0xA0 // REPORT LUNS
        | 0x25 // READ CAPACITY (10)
        | 0x86 // ACCESS CONTROL IN
        | 0x87 // ACCESS CONTROL OUT
        => Any,
        // SERVICE ACTION IN (16): READ CAPACITY (16) is allowed, GET LBA
        // STATUS and the rest read the medium's metadata.
        0x9E => {
            if sa(cdb) == 0x10 {
                Any
            } else {
                Read
            }
        }
        // READ MEDIA SERIAL NUMBER.
        0xAB if sa(cdb) == 0x01 => Any,
        // MAINTENANCE IN: REPORT TARGET PORT GROUPS, ALIASES, IDENTIFYING
        // INFORMATION, PRIORITY, TIMESTAMP are allowed; REPORT SUPPORTED
        // OPERATION CODES / TASK MANAGEMENT FUNCTIONS read like MODE SENSE.
        0xA3 => match sa(cdb) {
            0x05 | 0x0A | 0x0B | 0x0E | 0x0F => Any,
            _ => Read,
        },
        // START STOP UNIT: starting (power condition 0) is allowed,
        // stopping, ejecting and power conditions conflict.
        0x1B => {
            let b4 = cdb.get(4).copied().unwrap_or(0);
            if b4 >> 4 == 0 && b4 & 0x03 == 0x01 {
                Any
            } else {
                Write
            }
        }
        // PREVENT ALLOW MEDIUM REMOVAL: ALLOW is allowed, PREVENT conflicts.
        0x1E => {
            if cdb.get(4).copied().unwrap_or(0) & 0x03 == 0 {
                Any
            } else {
                Write
            }
        }
        // Reading the medium or device data.
        0x08 | 0x28 | 0xA8 | 0x88 // READ
        | 0x2F | 0xAF | 0x8F // VERIFY
        | 0x34 | 0x90 // PRE-FETCH
        | 0x37 | 0xB7 // READ DEFECT DATA
        | 0x1A | 0x5A // MODE SENSE
        | 0x3C // READ BUFFER
        | 0x1C // RECEIVE DIAGNOSTIC RESULTS
        | 0x8C // READ ATTRIBUTE
        | 0x84 // RECEIVE COPY RESULTS / RECEIVE ROD TOKEN INFORMATION
        | 0xA2 // SECURITY PROTOCOL IN
        | 0x3E | 0x3F // READ LONG
        => Read,
        // Everything that changes the medium or the device's state, and
        // anything not named above.
        _ => Write,
    }
}

/// Commands another initiator may still send while an SPC-2 reservation
/// is held (SPC-2 5.5.1): INQUIRY, REQUEST SENSE, REPORT LUNS, and RELEASE
/// (which then does nothing).
pub fn spc2_allowed(cdb: &[u8]) -> bool {
    matches!(cdb[0], 0x12 | 0x03 | 0xA0 | 0x17 | 0x57)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Access::Read);
        assert_eq!(classify(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Access::Write);
        assert_eq!(classify(&[0x89]), Access::Write);
        assert_eq!(classify(&[0x00]), Access::Any);
        assert_eq!(classify(&[0x9E, 0x10]), Access::Any);
        assert_eq!(classify(&[0x9E, 0x12]), Access::Read);
        assert_eq!(classify(&[0x1B, 0, 0, 0, 0x01, 0]), Access::Any);
        assert_eq!(classify(&[0x1B, 0, 0, 0, 0x00, 0]), Access::Write);
        assert_eq!(classify(&[0x1E, 0, 0, 0, 0x00, 0]), Access::Any);
        assert_eq!(classify(&[0x1E, 0, 0, 0, 0x01, 0]), Access::Write);
        assert_eq!(classify(&[0xA3, 0x0A]), Access::Any);
        assert_eq!(classify(&[0xA3, 0x0C]), Access::Read);
        assert!(spc2_allowed(&[0x12]));
        assert!(!spc2_allowed(&[0x00]));
        assert!(!spc2_allowed(&[0x5E]));
    }
}
