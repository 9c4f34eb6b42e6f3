//! Fuzzes the copy-offload parameter-list decoders: EXTENDED COPY (LID1),
//! POPULATE TOKEN and WRITE USING TOKEN. They must never panic, and a list
//! they accept must respect the limits they advertise.
//!
//! Input: `[selector u8][parameter list length u32 BE][parameter data]`.

#![no_main]

use ironlun_target::scsi::{rod_token, xcopy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (len, list) = match rest {
        [a, b, c, d, tail @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), tail),
        _ => (rest.len() as u32, rest),
    };
    // Most of the time the CDB length matches the data, as initiators do.
    let len = if sel & 0x80 == 0 {
        list.len() as u32
    } else {
        len
    };
    match sel % 3 {
        0 => {
            if let Ok(Some(l)) = xcopy::parse(len, list) {
                assert!(l.targets.len() <= xcopy::MAX_CSCD_DESCRIPTORS as usize);
                assert!(l.segments.len() <= xcopy::MAX_SEGMENT_DESCRIPTORS as usize);
            }
        }
        1 => {
            if let Ok(p) = rod_token::parse_populate(len, list) {
                assert!(p.ranges.len() <= rod_token::MAX_RANGE_DESCRIPTORS as usize);
                assert!(!p.ranges.is_empty());
            }
        }
        _ => {
            if let Ok(p) = rod_token::parse_write(len, list) {
                assert_eq!(p.token.len(), rod_token::TOKEN_LEN);
                assert!(p.ranges.len() <= rod_token::MAX_RANGE_DESCRIPTORS as usize);
            }
        }
    }
});
