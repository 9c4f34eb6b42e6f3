//! cim_request: the CIM-XML request decoder (and, for what decodes, the
//! operation dispatcher against the in-memory test provider) must never
//! panic, whatever the body.
#![no_main]

use ironlun_cim::ops::dispatch;
use ironlun_cim::testing::MemoryProvider;
use ironlun_cim::xml::decode::decode_request;
use ironlun_cim::xml::dom::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = decode_request(body, &Limits::default()) {
        let provider = MemoryProvider::demo();
        let _ = dispatch(&provider, &req, "fuzz");
    }
});
