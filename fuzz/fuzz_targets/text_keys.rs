//! The text-key parser on arbitrary bytes: never panics; what parses
//! re-encodes to the same pairs; the parsed pairs drive the operational
//! negotiator and a full-feature-phase text exchange without panicking.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use ironlun_target::discovery::TextExchange;
use ironlun_target::login::{ChapPolicy, LoginDirectory, SessionType, TargetLoginInfo};
use ironlun_target::negotiation::{NegotiationSettings, Negotiator};
use ironlun_target::pdu::{TextRequest, RESERVED_TAG};
use ironlun_target::text::{self, TextAccumulator};
use libfuzzer_sys::fuzz_target;

struct Dir;

impl LoginDirectory for Dir {
    fn target(&self, name: &str, local: SocketAddr) -> Option<TargetLoginInfo> {
        self.targets(local).into_iter().find(|t| t.name == name)
    }
    fn targets(&self, _local: SocketAddr) -> Vec<TargetLoginInfo> {
        vec![TargetLoginInfo {
            name: "iqn.2026-11.org.ironlun:fuzz".into(),
            alias: None,
            portal_group_tag: 1,
            portals: vec!["0.0.0.0:3260".parse().unwrap(), "[::]:3260".parse().unwrap()],
            allowed_initiators: None,
            chap: None,
        }]
    }
    fn discovery_auth(&self) -> Option<ChapPolicy> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = text::parse(data) {
        assert_eq!(text::parse(&text::encode(&pairs)), Ok(pairs.clone()));
        for kind in [SessionType::Normal, SessionType::Discovery] {
            let mut n = Negotiator::new(NegotiationSettings::default(), kind, true);
            let _ = n.respond(&pairs);
            let _ = n.offers();
            let _ = n.declarations();
            let p = n.finish();
            assert!(p.first_burst_length <= p.max_burst_length);
        }
    }
    // The same bytes split at every 7th byte through the accumulator.
    let mut acc = TextAccumulator::new(4096);
    let mut chunks = data.chunks(7).peekable();
    while let Some(c) = chunks.next() {
        if chunks.peek().is_none() {
            let _ = acc.finish(c);
        } else if acc.push(c).is_err() {
            break;
        }
    }
    let mut x = TextExchange::new(
        Arc::new(Dir),
        "[::ffff:127.0.0.1]:3260".parse().unwrap(),
        SessionType::Discovery,
        "iqn.fuzz".into(),
        None,
        512,
    );
    let req = TextRequest {
        immediate: true,
        final_: true,
        continue_: false,
        lun: 0,
        itt: 1,
        ttt: RESERVED_TAG,
        cmdsn: 1,
        exp_statsn: 1,
    };
    let _ = x.step(&req, data);
});
