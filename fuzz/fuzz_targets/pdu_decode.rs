//! InitiatorPdu::decode on arbitrary bytes: never panics, and whatever
//! decodes re-encodes to a header that decodes to the same PDU.
#![no_main]

use ironlun_target::pdu::{common, encode_initiator, InitiatorPdu, BHS_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bhs) = <&[u8; BHS_LEN]>::try_from(data.get(..BHS_LEN).unwrap_or(&[])) {
        let _ = common(bhs);
    }
    if let Ok(pdu) = InitiatorPdu::decode(data) {
        let _ = pdu.cmdsn();
        let _ = pdu.exp_statsn();
        let again = encode_initiator(&pdu, 0, 0);
        assert_eq!(InitiatorPdu::decode(&again), Ok(pdu));
    }
});
