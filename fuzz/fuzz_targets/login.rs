//! Drives a LoginMachine with arbitrary PDUs and data segments. Input:
//! records of [48-byte BHS][2-byte data length][data]. Never panics; after
//! a failure or completion the machine keeps refusing politely.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use ironlun_target::login::{
    ChapPolicy, LoginDirectory, LoginMachine, LoginSettings, LoginStep, TargetLoginInfo,
};
use ironlun_target::pdu::{InitiatorPdu, TargetPdu, BHS_LEN};
use libfuzzer_sys::fuzz_target;

struct Dir;

fn policy() -> ChapPolicy {
    ChapPolicy {
        user: "user".into(),
        secret: b"initiator-secret".to_vec(),
        mutual: Some(("target".into(), b"target-secret-99".to_vec())),
    }
}

impl LoginDirectory for Dir {
    fn target(&self, name: &str, local: SocketAddr) -> Option<TargetLoginInfo> {
        self.targets(local).into_iter().find(|t| t.name == name)
    }
    fn targets(&self, _local: SocketAddr) -> Vec<TargetLoginInfo> {
        vec![
            TargetLoginInfo {
                name: "iqn.t:open".into(),
                alias: Some("open".into()),
                portal_group_tag: 1,
                portals: vec!["0.0.0.0:3260".parse().unwrap()],
                allowed_initiators: None,
                chap: None,
            },
            TargetLoginInfo {
                name: "iqn.t:chap".into(),
                alias: None,
                portal_group_tag: 2,
                portals: vec!["127.0.0.1:3260".parse().unwrap()],
                allowed_initiators: Some(vec!["iqn.i:a".into()]),
                chap: Some(policy()),
            },
        ]
    }
    fn discovery_auth(&self) -> Option<ChapPolicy> {
        Some(policy())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut m = LoginMachine::new(
        Arc::new(Dir),
        "127.0.0.1:3260".parse().unwrap(),
        LoginSettings::default(),
    );
    let mut rest = data;
    while rest.len() >= BHS_LEN + 2 {
        let (bhs, r) = rest.split_at(BHS_LEN);
        let len = u16::from_be_bytes([r[0], r[1]]) as usize;
        let r = &r[2..];
        let (seg, r) = r.split_at(len.min(r.len()));
        rest = r;
        let step = match InitiatorPdu::decode(bhs) {
            Ok(InitiatorPdu::Login(req)) => m.step(&req, seg),
            Ok(other) => m.invalid_request(match other {
                InitiatorPdu::NopOut(p) => p.itt,
                _ => 0,
            }),
            Err(_) => continue,
        };
        assert!(matches!(step.response(), TargetPdu::LoginResponse { .. }));
        match step {
            LoginStep::Continue { .. } => {}
            LoginStep::Complete { outcome, .. } => {
                assert!(outcome.params.first_burst_length <= outcome.params.max_burst_length);
                assert!(m.is_finished());
            }
            LoginStep::Fail { .. } => assert!(m.is_finished()),
        }
    }
});
