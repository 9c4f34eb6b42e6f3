//! Text Requests in full feature phase (RFC 7143 11.10-11.11, appendix C):
//! `SendTargets` discovery and the few other keys allowed there.
//!
//! [`TextExchange`] is pure: the connection code calls
//! [`TextExchange::step`] (or [`TextResponder::respond`]) once per Text
//! Request PDU and sends the PDU and data it returns.
//!
//! - `SendTargets=All` answers every visible target in a discovery session
//!   and the session's own target in a normal session;
//!   `SendTargets=<iqn.|eui.|naa. name>` that target (in a normal session
//!   only if it is the session's own: RFC 7143 appendix D lets operational
//!   sessions learn only about their target);
//!   `SendTargets=` (normal sessions) the session's own target. Each target
//!   is `TargetName=` then one `TargetAddress=<ip>:<port>,<tpgt>` per portal.
//!   A wildcard portal answers with the address the initiator connected to
//!   (IPv6 in brackets). Targets whose ACL does not list the initiator are
//!   invisible; an unknown or invisible name gets an empty answer.
//! - Other keys: `MaxRecvDataSegmentLength` (declarative) changes how much
//!   we put in one Text Response; other RFC 7143 keys are answered per
//!   [`crate::negotiation::answer_ffp_key`] (`Reject`: not negotiable in
//!   full feature phase); `X-`/`X#` keys `NotUnderstood`.
//! - A request we cannot answer in text -- malformed text, an unknown
//!   non-extension key, a SendTargets value that is none of the above, an
//!   unknown TTT, an oversize request -- gets a Reject PDU (reason Protocol
//!   Error / Invalid PDU Field) carrying the request's header. This is
//!   LIO's behaviour, and what libiscsi's `iSCSI.iSCSISendTargets.Invalid`
//!   conformance test expects (a text answer it cannot parse would tear
//!   its connection down instead).
//! - A request continued over several PDUs (C bit) is acknowledged with
//!   empty responses carrying a Target Transfer Tag; a response longer than
//!   the initiator's MaxRecvDataSegmentLength is split over several Text
//!   Responses with C=1 and a TTT, each next part asked for by an empty
//!   Text Request carrying that TTT.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::login::{LoginDirectory, SessionType, TargetLoginInfo};
use crate::negotiation::{answer_ffp_key, SessionParams, MIN_DATA_LEN};
use crate::pdu::{
    encode_initiator, InitiatorPdu, RejectReason, TargetPdu, TextRequest, RESERVED_TAG,
};
use crate::session::TextResponder;
use crate::text::{self, TextAccumulator};

/// Cap of one assembled Text Request.
pub const MAX_REQUEST_TEXT: usize = 64 * 1024;

struct PendingResponse {
    itt: u32,
    ttt: u32,
    rest: Bytes,
}

/// The text exchanges of one connection in full feature phase.
pub struct TextExchange {
    directory: Arc<dyn LoginDirectory>,
    local_addr: SocketAddr,
    session_type: SessionType,
    initiator_name: String,
    target_name: Option<String>,
    params: SessionParams,
    acc: TextAccumulator,
    /// (ITT, TTT) of a request being continued by the initiator.
    request_cont: Option<(u32, u32)>,
    pending: Option<PendingResponse>,
    next_ttt: u32,
}

impl TextExchange {
    /// `max_xmit`: the initiator's MaxRecvDataSegmentLength.
    pub fn new(
        directory: Arc<dyn LoginDirectory>,
        local_addr: SocketAddr,
        session_type: SessionType,
        initiator_name: String,
        target_name: Option<String>,
        max_xmit: u32,
    ) -> TextExchange {
        let params = SessionParams {
            max_xmit_data_segment_length: max_xmit.max(MIN_DATA_LEN),
            ..SessionParams::default()
        };
        TextExchange {
            directory,
            local_addr,
            session_type,
            initiator_name,
            target_name,
            params,
            acc: TextAccumulator::new(MAX_REQUEST_TEXT),
            request_cont: None,
            pending: None,
            next_ttt: 1,
        }
    }

    /// The initiator's current MaxRecvDataSegmentLength (it may declare a
    /// new one in full feature phase).
    pub fn max_xmit_data_segment_length(&self) -> u32 {
        self.params.max_xmit_data_segment_length
    }

    fn new_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG || self.next_ttt == 0 {
            self.next_ttt = 1;
        }
        t
    }

    fn reject(
        &mut self,
        req: &TextRequest,
        data_len: usize,
        reason: RejectReason,
    ) -> (TargetPdu, Bytes) {
        self.acc.clear();
        self.request_cont = None;
        self.pending = None;
        let bhs = encode_initiator(&InitiatorPdu::Text(req.clone()), 0, data_len);
        (
            TargetPdu::Reject {
                reason,
                datasn_r2tsn: 0,
            },
            Bytes::copy_from_slice(&bhs),
        )
    }

    fn text_response(req: &TextRequest, final_: bool, continue_: bool, ttt: u32) -> TargetPdu {
        TargetPdu::TextResponse {
            final_,
            continue_,
            lun: req.lun,
            itt: req.itt,
            ttt,
        }
    }

    /// Handles one Text Request PDU (data without padding); returns the
    /// PDU to send (a Text Response, or a Reject) and its data segment.
    pub fn step(&mut self, req: &TextRequest, data: &[u8]) -> (TargetPdu, Bytes) {
        if req.ttt != RESERVED_TAG {
            // Continuation of our response?
            if let Some(p) = self
                .pending
                .take_if(|p| p.itt == req.itt && p.ttt == req.ttt)
            {
                return self.send_part(req, p.rest);
            }
            // Continuation of the initiator's request?
            if self.request_cont == Some((req.itt, req.ttt)) {
                return self.request_part(req, data);
            }
            return self.reject(req, data.len(), RejectReason::InvalidPduField);
        }
        // A new request resets whatever exchange was in progress.
        self.pending = None;
        self.request_cont = None;
        self.acc.clear();
        self.request_part(req, data)
    }

    fn request_part(&mut self, req: &TextRequest, data: &[u8]) -> (TargetPdu, Bytes) {
        if req.continue_ {
            if self.acc.push(data).is_err() {
                return self.reject(req, data.len(), RejectReason::ProtocolError);
            }
            let ttt = match self.request_cont {
                Some((_, t)) => t,
                None => self.new_ttt(),
            };
            self.request_cont = Some((req.itt, ttt));
            return (Self::text_response(req, false, false, ttt), Bytes::new());
        }
        self.request_cont = None;
        let pairs = match self.acc.finish(data) {
            Ok(p) => p,
            Err(_) => return self.reject(req, data.len(), RejectReason::ProtocolError),
        };
        // Requests we cannot answer in text are rejected whole, as LIO does
        // and as libiscsi's iSCSI.iSCSISendTargets.Invalid test expects:
        // an unknown (non X-) key, or a SendTargets value that is neither
        // All, empty (normal sessions) nor an iSCSI name.
        let acceptable = pairs.iter().all(|kv| match kv.key.as_str() {
            "SendTargets" => self.send_targets_value_ok(&kv.value),
            k => k.starts_with("X-") || k.starts_with("X#") || is_rfc_key(k),
        });
        if !acceptable {
            return self.reject(req, data.len(), RejectReason::ProtocolError);
        }
        let mut out = Vec::new();
        for kv in &pairs {
            if kv.key == "SendTargets" {
                self.send_targets(&kv.value, &mut out);
            } else if let Some(a) = answer_ffp_key(kv, &mut self.params) {
                text::encode_pair(&mut out, &a.key, &a.value);
            }
        }
        self.send_part(req, Bytes::from(out))
    }

    /// Sends as much of `rest` as fits; keeps the remainder pending.
    fn send_part(&mut self, req: &TextRequest, mut rest: Bytes) -> (TargetPdu, Bytes) {
        let max = self.params.max_xmit_data_segment_length.max(MIN_DATA_LEN) as usize;
        if rest.len() <= max {
            return (Self::text_response(req, true, false, RESERVED_TAG), rest);
        }
        let part = rest.split_to(max);
        let ttt = self.new_ttt();
        self.pending = Some(PendingResponse {
            itt: req.itt,
            ttt,
            rest,
        });
        (Self::text_response(req, false, true, ttt), part)
    }

    fn visible(&self, t: &TargetLoginInfo) -> bool {
        t.allows(&self.initiator_name)
    }

    fn send_targets_value_ok(&self, value: &str) -> bool {
        match value {
            "All" => true,
            "" => self.session_type == SessionType::Normal,
            v => is_iscsi_name(v),
        }
    }

    fn send_targets(&self, value: &str, out: &mut Vec<u8>) {
        let targets: Vec<TargetLoginInfo> = match (value, self.session_type) {
            ("All", SessionType::Discovery) => self.directory.targets(self.local_addr),
            // In a normal session, only the session's own target (RFC 7143
            // appendix D; answering instead of refusing keeps libiscsi's
            // iSCSI.iSCSISendTargets.Simple test, run in a normal session, happy).
            ("All", SessionType::Normal) | ("", _) => self
                .target_name
                .as_deref()
                .and_then(|n| self.directory.target(n, self.local_addr))
                .into_iter()
                .collect(),
            // A normal session only ever learns about its own target.
            (name, SessionType::Normal) if self.target_name.as_deref() != Some(name) => Vec::new(),
            (name, _) => self
                .directory
                .target(name, self.local_addr)
                .into_iter()
                .collect(),
        };
        for t in targets.iter().filter(|t| self.visible(t)) {
            text::encode_pair(out, "TargetName", &t.name);
            for addr in portal_addresses(&t.portals, self.local_addr) {
                text::encode_pair(
                    out,
                    "TargetAddress",
                    &format!("{addr},{}", t.portal_group_tag),
                );
            }
        }
    }
}

/// Whether `v` looks like an iSCSI name (RFC 7143 4.2.7: `iqn.`, `eui.`
/// or `naa.` format).
pub fn is_iscsi_name(v: &str) -> bool {
    v.len() > 4 && (v.starts_with("iqn.") || v.starts_with("eui.") || v.starts_with("naa."))
}

/// Keys RFC 7143 defines (answered per [`answer_ffp_key`]): the operational
/// keys negotiation knows, plus the login identity and security keys.
fn is_rfc_key(k: &str) -> bool {
    crate::negotiation::is_known(k)
        || matches!(
            k,
            "InitiatorName"
                | "InitiatorAlias"
                | "TargetName"
                | "TargetAlias"
                | "TargetAddress"
                | "TargetPortalGroupTag"
                | "SessionType"
                | "AuthMethod"
        )
        || k.starts_with("CHAP_")
}

/// The addresses to advertise for `portals` to an initiator connected to
/// `local`: wildcards become `local`'s address (IPv4-mapped IPv6 shown as
/// IPv4); no portal at all advertises `local` itself. Duplicates dropped.
pub fn portal_addresses(portals: &[SocketAddr], local: SocketAddr) -> Vec<SocketAddr> {
    let local_ip = local.ip().to_canonical();
    let mut out: Vec<SocketAddr> = Vec::new();
    let configured: Vec<SocketAddr> = if portals.is_empty() {
        vec![local]
    } else {
        portals.to_vec()
    };
    for p in configured {
        let ip = if p.ip().is_unspecified() {
            local_ip
        } else {
            p.ip().to_canonical()
        };
        let a = SocketAddr::new(ip, p.port());
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

impl TextResponder for TextExchange {
    fn respond(&mut self, req: &TextRequest, data: &[u8]) -> (TargetPdu, Bytes) {
        self.step(req, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::tests::{target, Dir, INI, TGT};
    use crate::text::KeyValue;

    fn dir() -> Arc<Dir> {
        let mut hidden = target(None);
        hidden.name = "iqn.2026-11.org.ironlun:hidden".into();
        hidden.allowed_initiators = Some(vec!["iqn.someone-else".into()]);
        let mut fixed = target(None);
        fixed.name = "iqn.2026-11.org.ironlun:fixed".into();
        fixed.portal_group_tag = 7;
        fixed.portals = vec![
            "192.0.2.1:3260".parse().unwrap(),
            "[2001:db8::1]:3261".parse().unwrap(),
        ];
        Arc::new(Dir {
            targets: vec![target(None), hidden, fixed],
            discovery: None,
        })
    }

    fn exchange(kind: SessionType, local: &str, max: u32) -> TextExchange {
        TextExchange::new(
            dir(),
            local.parse().unwrap(),
            kind,
            INI.into(),
            (kind == SessionType::Normal).then(|| TGT.to_string()),
            max,
        )
    }

    fn req(itt: u32, ttt: u32) -> TextRequest {
        TextRequest {
            immediate: true,
            final_: true,
            continue_: false,
            lun: 0,
            itt,
            ttt,
            cmdsn: 1,
            exp_statsn: 1,
        }
    }

    fn pairs(b: &[u8]) -> Vec<(String, String)> {
        // TargetName/TargetAddress repeat, so split by hand.
        b.split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = std::str::from_utf8(s).unwrap();
                let (k, v) = s.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn st(value: &str) -> Vec<u8> {
        text::encode(&[KeyValue::new("SendTargets", value)])
    }

    #[test]
    fn send_targets_all_in_discovery() {
        let mut x = exchange(SessionType::Discovery, "10.0.0.5:3260", 8192);
        let (pdu, data) = x.step(&req(1, RESERVED_TAG), &st("All"));
        assert!(matches!(
            pdu,
            TargetPdu::TextResponse {
                final_: true,
                continue_: false,
                ttt: RESERVED_TAG,
                itt: 1,
                ..
            }
        ));
        let p = pairs(&data);
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            p,
            vec![
                s("TargetName", TGT),
                s("TargetAddress", "10.0.0.5:3260,1"),
                s("TargetName", "iqn.2026-11.org.ironlun:fixed"),
                s("TargetAddress", "192.0.2.1:3260,7"),
                s("TargetAddress", "[2001:db8::1]:3261,7"),
            ]
        );
    }

    #[test]
    fn wildcard_answers_connected_address_ipv6_and_mapped() {
        let mut x = exchange(SessionType::Discovery, "[fd00::5]:3260", 8192);
        let (_, data) = x.step(&req(1, RESERVED_TAG), &st(TGT));
        assert_eq!(
            pairs(&data)[1],
            ("TargetAddress".to_string(), "[fd00::5]:3260,1".to_string())
        );
        let mut x = exchange(SessionType::Discovery, "[::ffff:10.1.2.3]:3260", 8192);
        let (_, data) = x.step(&req(1, RESERVED_TAG), &st(TGT));
        assert_eq!(pairs(&data)[1].1, "10.1.2.3:3260,1");
    }

    #[test]
    fn acl_hides_targets() {
        let mut x = exchange(SessionType::Discovery, "10.0.0.5:3260", 8192);
        let (_, data) = x.step(&req(1, RESERVED_TAG), &st("All"));
        assert!(!String::from_utf8_lossy(&data).contains("hidden"));
        let (_, data) = x.step(&req(2, RESERVED_TAG), &st("iqn.2026-11.org.ironlun:hidden"));
        assert!(data.is_empty());
        let (_, data) = x.step(&req(3, RESERVED_TAG), &st("iqn.unknown"));
        assert!(data.is_empty());
    }

    #[test]
    fn normal_session_rules() {
        let mut x = exchange(SessionType::Normal, "127.0.0.1:3260", 8192);
        let (_, data) = x.step(&req(1, RESERVED_TAG), &st(""));
        let p = pairs(&data);
        assert_eq!(p[0].1, TGT);
        assert_eq!(p[1].1, "127.0.0.1:3260,1");
        assert_eq!(p.len(), 2);
        // All in a normal session: the session's own target only
        let (_, all) = x.step(&req(2, RESERVED_TAG), &st("All"));
        assert_eq!(all, data);
        let (_, data) = x.step(&req(3, RESERVED_TAG), &st("iqn.2026-11.org.ironlun:fixed"));
        assert!(data.is_empty(), "another target, from a normal session");
        let (_, data) = x.step(&req(4, RESERVED_TAG), &st(TGT));
        assert_eq!(pairs(&data).len(), 2);
        let mut d = exchange(SessionType::Discovery, "127.0.0.1:3260", 8192);
        let (_, data) = d.step(&req(3, RESERVED_TAG), &st("iqn.2026-11.org.ironlun:fixed"));
        assert_eq!(pairs(&data).len(), 3);

        let mut d = exchange(SessionType::Discovery, "127.0.0.1:3260", 8192);
        let (pdu, _) = d.step(&req(1, RESERVED_TAG), &st(""));
        assert!(matches!(pdu, TargetPdu::Reject { .. }));
    }

    #[test]
    fn libiscsi_sendtargets_invalid_sequence() {
        // iscsi-test-cu iSCSI.iSCSISendTargets.Invalid, in a normal session:
        // four requests must fail (Reject PDU), then All must succeed.
        let mut x = exchange(SessionType::Normal, "127.0.0.1:3260", 262144);
        for (i, body) in [
            "SendTargetsPlease=All",
            "SendTargets=Alle",
            "SendTargets=A",
            "sENDtARGETS=aLL",
        ]
        .iter()
        .enumerate()
        {
            let mut b = body.as_bytes().to_vec();
            b.push(0);
            let (pdu, data) = x.step(&req(i as u32, RESERVED_TAG), &b);
            assert!(
                matches!(
                    pdu,
                    TargetPdu::Reject {
                        reason: RejectReason::ProtocolError,
                        ..
                    }
                ),
                "{body}: {pdu:?}"
            );
            // the rejected header names the request's ITT at bytes 16..20
            assert_eq!(&data[16..20], &(i as u32).to_be_bytes());
        }
        let (pdu, data) = x.step(&req(9, RESERVED_TAG), &st("All"));
        assert!(matches!(
            pdu,
            TargetPdu::TextResponse {
                final_: true,
                continue_: false,
                ..
            }
        ));
        let p = pairs(&data);
        assert!(p
            .iter()
            .all(|(k, _)| k == "TargetName" || k == "TargetAddress"));
        assert_eq!(p[0].1, TGT);
    }

    #[test]
    fn other_keys_in_ffp() {
        let mut x = exchange(SessionType::Normal, "127.0.0.1:3260", 8192);
        let body = text::encode(&[
            KeyValue::new("MaxRecvDataSegmentLength", "1024"),
            KeyValue::new("X-vendor", "1"),
            KeyValue::new("MaxBurstLength", "512"),
        ]);
        let (pdu, _) = x.step(&req(7, RESERVED_TAG), b"Bogus=1\0");
        assert!(matches!(pdu, TargetPdu::Reject { .. }));
        let (_, data) = x.step(&req(1, RESERVED_TAG), &body);
        assert_eq!(
            pairs(&data),
            vec![
                ("X-vendor".into(), "NotUnderstood".into()),
                ("MaxBurstLength".into(), "Reject".into())
            ]
        );
        assert_eq!(x.max_xmit_data_segment_length(), 1024);
    }

    #[test]
    fn long_response_is_split_and_continued() {
        let mut many = Vec::new();
        for i in 0..60 {
            let mut t = target(None);
            t.name = format!("iqn.2026-11.org.ironlun:target-number-{i:03}");
            many.push(t);
        }
        let mut x = TextExchange::new(
            Arc::new(Dir {
                targets: many,
                discovery: None,
            }),
            "127.0.0.1:3260".parse().unwrap(),
            SessionType::Discovery,
            INI.into(),
            None,
            512,
        );
        let (mut pdu, first) = x.step(&req(9, RESERVED_TAG), &st("All"));
        let mut all = first.to_vec();
        let mut parts = 1;
        loop {
            let TargetPdu::TextResponse {
                final_,
                continue_,
                ttt,
                itt,
                ..
            } = pdu
            else {
                panic!("{pdu:?}")
            };
            assert_eq!(itt, 9);
            if final_ {
                assert!(!continue_);
                assert_eq!(ttt, RESERVED_TAG);
                break;
            }
            assert!(continue_);
            assert_ne!(ttt, RESERVED_TAG);
            // a wrong TTT is rejected without losing the exchange? No: RFC
            // says reject; the initiator then starts over.
            let (p, d) = x.step(&req(9, ttt), b"");
            assert!(d.len() <= 512);
            all.extend_from_slice(&d);
            pdu = p;
            parts += 1;
        }
        assert!(parts > 3);
        let p = pairs(&all);
        assert_eq!(p.len(), 120);
        assert_eq!(p[119].1, "127.0.0.1:3260,1");

        // unknown TTT: Reject carrying the request header
        let (pdu, data) = x.step(&req(9, 12345), b"");
        assert!(matches!(
            pdu,
            TargetPdu::Reject {
                reason: RejectReason::InvalidPduField,
                ..
            }
        ));
        assert_eq!(data.len(), 48);
    }

    #[test]
    fn continued_request_is_assembled() {
        let mut x = exchange(SessionType::Discovery, "127.0.0.1:3260", 8192);
        let body = st("All");
        let (a, b) = body.split_at(5);
        let mut r = req(4, RESERVED_TAG);
        r.continue_ = true;
        r.final_ = false;
        let (pdu, data) = x.step(&r, a);
        let TargetPdu::TextResponse { final_, ttt, .. } = pdu else {
            panic!()
        };
        assert!(!final_ && data.is_empty() && ttt != RESERVED_TAG);
        let (pdu, data) = x.step(&req(4, ttt), b);
        assert!(matches!(pdu, TargetPdu::TextResponse { final_: true, .. }));
        assert!(String::from_utf8_lossy(&data).contains(TGT));

        // malformed text: Reject
        let (pdu, _) = x.step(&req(5, RESERVED_TAG), b"novalue\0");
        assert!(matches!(pdu, TargetPdu::Reject { .. }));
        let (pdu, _) = x.step(&req(5, RESERVED_TAG), b"A=1\0A=2\0");
        assert!(matches!(pdu, TargetPdu::Reject { .. }));
    }
}
