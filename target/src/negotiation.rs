//! Operational parameter negotiation (RFC 7143 6.2, 13): what the target
//! answers to each key the initiator offers, and the [`SessionParams`] that
//! result.
//!
//! Semantics per key:
//! - list: `HeaderDigest`, `DataDigest` (`CRC32C`, `None`), `TaskReporter`
//!   — the first value of the initiator's list that we allow;
//! - numerical minimum: `MaxConnections`, `MaxBurstLength`,
//!   `FirstBurstLength` (also kept ≤ MaxBurstLength), `DefaultTime2Retain`,
//!   `MaxOutstandingR2T`, `ErrorRecoveryLevel`, `iSCSIProtocolLevel`;
//! - numerical maximum: `DefaultTime2Wait`;
//! - boolean AND: `ImmediateData`; boolean OR: `InitialR2T`,
//!   `DataPDUInOrder`, `DataSequenceInOrder` (RFC 7143 13.18/13.19 give OR
//!   for the last two);
//! - declarative: `MaxRecvDataSegmentLength` (the initiator's value bounds
//!   what we send; we declare ours in return).
//!
//! Answers: `Reject` for malformed or out-of-range values, target-only keys
//! and keys not negotiable here (leading-only keys on a non-leading login,
//! security keys outside the security stage, anything but declaratives in
//! full feature phase); `Irrelevant` for keys that mean nothing in a
//! discovery session; `NotUnderstood` for keys we do not know (including
//! `X-` and `X#` extension keys). A key sent twice is an error of the
//! initiator ([`NegotiationError::Duplicate`]).
//!
//! Pure: no I/O; [`Negotiator`] is driven by `login`.

use std::collections::HashSet;

use crate::text::KeyValue;

/// Smallest MaxRecvDataSegmentLength / burst length (RFC 7143 13.12-13.14).
pub const MIN_DATA_LEN: u32 = 512;
/// Largest MaxRecvDataSegmentLength / burst length: 2^24 - 1.
pub const MAX_DATA_LEN: u32 = 0x00ff_ffff;
/// The value used when the peer does not declare MaxRecvDataSegmentLength.
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;

/// The iSCSIProtocolLevel this implementation claims (RFC 7144: 1 = RFC 7143).
pub const PROTOCOL_LEVEL: u64 = 1;

/// Discovery or normal session (`SessionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    Discovery,
    #[default]
    Normal,
}

impl SessionType {
    pub fn parse(s: &str) -> Option<SessionType> {
        match s {
            "Discovery" => Some(SessionType::Discovery),
            "Normal" => Some(SessionType::Normal),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Discovery => "Discovery",
            SessionType::Normal => "Normal",
        }
    }
}

/// A header or data digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    #[default]
    None,
    Crc32c,
}

impl Digest {
    pub fn parse(s: &str) -> Option<Digest> {
        if s.eq_ignore_ascii_case("None") {
            Some(Digest::None)
        } else if s.eq_ignore_ascii_case("CRC32C") {
            Some(Digest::Crc32c)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }
}

/// What the target is willing to accept; defaults favour throughput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationSettings {
    /// Header digests we accept (the initiator's order of preference wins).
    /// Leave out `None` to require digests.
    pub header_digest: Vec<Digest>,
    pub data_digest: Vec<Digest>,
    /// What we declare we can receive per PDU.
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    /// Whether we allow immediate data (AND).
    pub immediate_data: bool,
    /// Whether we require an R2T before any unsolicited data (OR).
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    /// Whether we require Data PDUs in order (OR).
    pub data_pdu_in_order: bool,
    /// Whether we require data sequences in order (OR).
    pub data_sequence_in_order: bool,
}

impl Default for NegotiationSettings {
    fn default() -> Self {
        NegotiationSettings {
            header_digest: vec![Digest::Crc32c, Digest::None],
            data_digest: vec![Digest::Crc32c, Digest::None],
            max_recv_data_segment_length: 262_144,
            max_burst_length: 16_776_192,
            first_burst_length: 262_144,
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 8,
            error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
        }
    }
}

/// Every negotiated value of a session (and this connection's data
/// segment lengths). [`Default`] gives the RFC 7143 defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// CRC32C header digest negotiated.
    pub header_digest: bool,
    /// CRC32C data digest negotiated.
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the most we may send in one PDU.
    pub max_xmit_data_segment_length: u32,
    /// What we declared: the most the initiator may send us in one PDU.
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_connections: u16,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            header_digest: false,
            data_digest: false,
            max_xmit_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            max_connections: 1,
        }
    }
}

/// A negotiation the login cannot survive (login status 0x0200).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("key {0} negotiated twice")]
    Duplicate(String),
    #[error("initiator answered our {key} with unacceptable {value:?}")]
    BadAnswer { key: String, value: String },
}

/// The reserved answer constants (RFC 7143 6.2).
pub const REJECT: &str = "Reject";
pub const IRRELEVANT: &str = "Irrelevant";
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";

/// Parses a numerical value: decimal or `0x` hex (RFC 7143 5.1).
pub fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Keys carried by the login machinery itself, never answered here.
pub fn is_login_identity_key(key: &str) -> bool {
    matches!(
        key,
        "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType"
    )
}

/// Security negotiation keys (RFC 7143 12).
pub fn is_security_key(key: &str) -> bool {
    key == "AuthMethod"
        || key.starts_with("CHAP_")
        || key.starts_with("SRP_")
        || key.starts_with("KRB_")
        || key.starts_with("SPKM_")
}

/// Leading-only (LO) session-wide keys.
fn is_leading_only(key: &str) -> bool {
    matches!(
        key,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "ErrorRecoveryLevel"
            | "TaskReporter"
            | "iSCSIProtocolLevel"
    )
}

/// Keys irrelevant in a discovery session.
fn irrelevant_in_discovery(key: &str) -> bool {
    matches!(
        key,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "TaskReporter"
    )
}

/// Keys only a target may send.
fn is_target_only(key: &str) -> bool {
    matches!(
        key,
        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag"
    )
}

fn is_reserved_constant(v: &str) -> bool {
    matches!(v, REJECT | IRRELEVANT | NOT_UNDERSTOOD)
}

/// Drives one login's operational negotiation.
#[derive(Debug, Clone)]
pub struct Negotiator {
    settings: NegotiationSettings,
    session_type: SessionType,
    leading: bool,
    params: SessionParams,
    received: HashSet<String>,
    /// Keys we offered ourselves, with the value offered, awaiting an answer.
    offered: Vec<(&'static str, u64)>,
    offers_made: bool,
    declared: bool,
}

impl Negotiator {
    /// `leading`: the login creates a session (TSIH 0); only then may
    /// session-wide (LO) keys be negotiated.
    pub fn new(settings: NegotiationSettings, session_type: SessionType, leading: bool) -> Self {
        let mut settings = settings;
        settings.max_recv_data_segment_length = settings
            .max_recv_data_segment_length
            .clamp(MIN_DATA_LEN, MAX_DATA_LEN);
        Negotiator {
            settings,
            session_type,
            leading,
            params: SessionParams::default(),
            received: HashSet::new(),
            offered: Vec::new(),
            offers_made: false,
            declared: false,
        }
    }

    pub fn session_type(&self) -> SessionType {
        self.session_type
    }

    /// The values negotiated so far.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// Whether `key` is the initiator's answer to an offer of ours.
    pub fn is_answer_to_offer(&self, key: &str) -> bool {
        self.offered.iter().any(|(k, _)| *k == key)
    }

    /// Whether the initiator has already sent `key` in this login.
    pub fn has_received(&self, key: &str) -> bool {
        self.received.contains(key)
    }

    /// Records that the login layer consumed `key` itself (so a second
    /// occurrence is caught as a duplicate).
    pub fn note_received(&mut self, key: &str) -> Result<(), NegotiationError> {
        if !self.received.insert(key.to_string()) {
            return Err(NegotiationError::Duplicate(key.to_string()));
        }
        Ok(())
    }

    /// Whether nothing we offered is still unanswered.
    pub fn is_done(&self) -> bool {
        self.offered.is_empty()
    }

    /// Our MaxRecvDataSegmentLength declaration, once per login. Call when
    /// building the first operational-stage response (or the response that
    /// moves to full feature phase).
    pub fn declarations(&mut self) -> Vec<KeyValue> {
        if self.declared {
            return Vec::new();
        }
        self.declared = true;
        self.params.max_recv_data_segment_length = self.settings.max_recv_data_segment_length;
        vec![KeyValue::new(
            "MaxRecvDataSegmentLength",
            self.settings.max_recv_data_segment_length.to_string(),
        )]
    }

    /// Offers of our own for keys the initiator did not send and whose
    /// RFC default we cannot accept (e.g. a configured MaxBurstLength below
    /// the default 262144). Made once, when the initiator asks to leave the
    /// operational stage; [`is_done`](Self::is_done) is false until answered.
    pub fn offers(&mut self) -> Vec<KeyValue> {
        if self.offers_made || self.session_type == SessionType::Discovery {
            self.offers_made = true;
            return Vec::new();
        }
        self.offers_made = true;
        let mut out = Vec::new();
        let s = self.settings.clone();
        let d = SessionParams::default();
        let mut offer = |me: &mut Self, key: &'static str, value: u64, text: String| {
            if !me.received.contains(key) {
                me.offered.push((key, value));
                out.push(KeyValue::new(key, text));
            }
        };
        if !s.header_digest.contains(&Digest::None) && !s.header_digest.is_empty() {
            offer(self, "HeaderDigest", 0, list_text(&s.header_digest));
        }
        if !s.data_digest.contains(&Digest::None) && !s.data_digest.is_empty() {
            offer(self, "DataDigest", 0, list_text(&s.data_digest));
        }
        if self.leading {
            let mb = s.max_burst_length.clamp(MIN_DATA_LEN, MAX_DATA_LEN);
            if mb < d.max_burst_length {
                offer(self, "MaxBurstLength", mb as u64, mb.to_string());
            }
            let fb = s.first_burst_length.clamp(MIN_DATA_LEN, mb);
            if fb < d.first_burst_length {
                offer(self, "FirstBurstLength", fb as u64, fb.to_string());
            }
            if !s.immediate_data {
                offer(self, "ImmediateData", 0, "No".into());
            }
        }
        out
    }

    /// Answers one PDU's (or one assembled text's) operational keys.
    /// `pairs` must already be stripped of the identity and security keys
    /// the login layer handles. Keys are answered in the order received.
    pub fn respond(&mut self, pairs: &[KeyValue]) -> Result<Vec<KeyValue>, NegotiationError> {
        // MaxBurstLength first, so a FirstBurstLength in the same text is
        // bounded by the burst length actually negotiated.
        let mut answers: Vec<Option<KeyValue>> = vec![None; pairs.len()];
        let order = pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.key == "MaxBurstLength")
            .chain(
                pairs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.key != "MaxBurstLength"),
            )
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        for i in order {
            answers[i] = self.respond_one(&pairs[i])?;
        }
        Ok(answers.into_iter().flatten().collect())
    }

    fn respond_one(&mut self, kv: &KeyValue) -> Result<Option<KeyValue>, NegotiationError> {
        let key = kv.key.as_str();
        let value = kv.value.as_str();
        if let Some(pos) = self.offered.iter().position(|(k, _)| *k == key) {
            let (k, offered) = self.offered.remove(pos);
            self.received.insert(key.to_string());
            self.apply_answer(k, offered, value)?;
            return Ok(None);
        }
        if !self.received.insert(key.to_string()) {
            return Err(NegotiationError::Duplicate(key.to_string()));
        }
        let answer = |v: &str| Ok(Some(KeyValue::new(key, v)));
        if is_login_identity_key(key) {
            return Ok(None);
        }
        if is_security_key(key) || is_target_only(key) || key == "SendTargets" {
            return answer(REJECT);
        }
        if !is_known(key) {
            return answer(NOT_UNDERSTOOD);
        }
        if is_reserved_constant(value) {
            // An answer to something we never offered: nothing to say.
            return Ok(None);
        }
        if self.session_type == SessionType::Discovery && irrelevant_in_discovery(key) {
            return answer(IRRELEVANT);
        }
        if is_leading_only(key) && !self.leading {
            return answer(REJECT);
        }
        let s = &self.settings;
        let p = &mut self.params;
        let result: Option<String> = match key {
            "HeaderDigest" | "DataDigest" => {
                let allowed = if key == "HeaderDigest" {
                    &s.header_digest
                } else {
                    &s.data_digest
                };
                let chosen = value
                    .split(',')
                    .filter_map(Digest::parse)
                    .find(|d| allowed.contains(d));
                chosen.map(|d| {
                    if key == "HeaderDigest" {
                        p.header_digest = d == Digest::Crc32c;
                    } else {
                        p.data_digest = d == Digest::Crc32c;
                    }
                    d.as_str().to_string()
                })
            }
            "TaskReporter" => value
                .split(',')
                .find(|v| *v == "RFC3720")
                .map(str::to_string),
            "MaxRecvDataSegmentLength" => {
                // Declarative: no answer needed beyond our own declaration.
                match parse_number(value) {
                    Some(v) if (MIN_DATA_LEN as u64..=MAX_DATA_LEN as u64).contains(&v) => {
                        p.max_xmit_data_segment_length = v as u32;
                        if self.declared {
                            return Ok(None);
                        }
                        self.declared = true;
                        p.max_recv_data_segment_length = s.max_recv_data_segment_length;
                        Some(s.max_recv_data_segment_length.to_string())
                    }
                    _ => None,
                }
            }
            "MaxConnections" => min_num(value, 1, 65535, s.max_connections as u64).map(|v| {
                p.max_connections = v as u16;
                v.to_string()
            }),
            "MaxBurstLength" => min_num(
                value,
                MIN_DATA_LEN as u64,
                MAX_DATA_LEN as u64,
                s.max_burst_length.clamp(MIN_DATA_LEN, MAX_DATA_LEN) as u64,
            )
            .map(|v| {
                p.max_burst_length = v as u32;
                if p.first_burst_length > p.max_burst_length {
                    p.first_burst_length = p.max_burst_length;
                }
                v.to_string()
            }),
            "FirstBurstLength" => {
                let ours = s.first_burst_length.clamp(MIN_DATA_LEN, p.max_burst_length);
                min_num(value, MIN_DATA_LEN as u64, MAX_DATA_LEN as u64, ours as u64).map(|v| {
                    p.first_burst_length = v as u32;
                    v.to_string()
                })
            }
            "DefaultTime2Retain" => min_num(value, 0, 3600, s.default_time2retain.min(3600) as u64)
                .map(|v| {
                    p.default_time2retain = v as u16;
                    v.to_string()
                }),
            "DefaultTime2Wait" => match parse_number(value) {
                Some(v) if v <= 3600 => {
                    let r = v.max(s.default_time2wait.min(3600) as u64);
                    p.default_time2wait = r as u16;
                    Some(r.to_string())
                }
                _ => None,
            },
            "MaxOutstandingR2T" => min_num(
                value,
                1,
                65535,
                s.max_outstanding_r2t.clamp(1, 65535) as u64,
            )
            .map(|v| {
                p.max_outstanding_r2t = v as u32;
                v.to_string()
            }),
            "ErrorRecoveryLevel" => {
                min_num(value, 0, 2, s.error_recovery_level.min(2) as u64).map(|v| {
                    p.error_recovery_level = v as u8;
                    v.to_string()
                })
            }
            "iSCSIProtocolLevel" => min_num(value, 0, 31, PROTOCOL_LEVEL).map(|v| v.to_string()),
            "ImmediateData" => parse_bool(value).map(|v| {
                p.immediate_data = v && s.immediate_data;
                yes_no(p.immediate_data).to_string()
            }),
            "InitialR2T" => parse_bool(value).map(|v| {
                p.initial_r2t = v || s.initial_r2t;
                yes_no(p.initial_r2t).to_string()
            }),
            "DataPDUInOrder" => parse_bool(value).map(|v| {
                p.data_pdu_in_order = v || s.data_pdu_in_order;
                yes_no(p.data_pdu_in_order).to_string()
            }),
            "DataSequenceInOrder" => parse_bool(value).map(|v| {
                p.data_sequence_in_order = v || s.data_sequence_in_order;
                yes_no(p.data_sequence_in_order).to_string()
            }),
            // RFC 7143 13.25: obsolete markers; "No" may be answered with
            // "No", everything else with Reject, never NotUnderstood.
            "IFMarker" | "OFMarker" => (value == "No").then(|| "No".to_string()),
            "IFMarkInt" | "OFMarkInt" => None,
            // iSER (RFC 7147): we are TCP only.
            "RDMAExtensions" => parse_bool(value).map(|_| "No".to_string()),
            _ => Some(NOT_UNDERSTOOD.to_string()),
        };
        Ok(Some(KeyValue::new(
            key,
            result.unwrap_or_else(|| REJECT.to_string()),
        )))
    }

    fn apply_answer(
        &mut self,
        key: &'static str,
        offered: u64,
        value: &str,
    ) -> Result<(), NegotiationError> {
        let bad = || NegotiationError::BadAnswer {
            key: key.to_string(),
            value: value.to_string(),
        };
        let p = &mut self.params;
        match key {
            "HeaderDigest" | "DataDigest" => {
                let allowed = if key == "HeaderDigest" {
                    &self.settings.header_digest
                } else {
                    &self.settings.data_digest
                };
                let d = Digest::parse(value)
                    .filter(|d| allowed.contains(d))
                    .ok_or_else(bad)?;
                if key == "HeaderDigest" {
                    p.header_digest = d == Digest::Crc32c;
                } else {
                    p.data_digest = d == Digest::Crc32c;
                }
            }
            "MaxBurstLength" | "FirstBurstLength" => {
                let v = parse_number(value)
                    .filter(|v| (MIN_DATA_LEN as u64..=offered).contains(v))
                    .ok_or_else(bad)?;
                if key == "MaxBurstLength" {
                    p.max_burst_length = v as u32;
                } else {
                    p.first_burst_length = v as u32;
                }
                p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
            }
            "ImmediateData" => {
                if value != "No" {
                    return Err(bad());
                }
                p.immediate_data = false;
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// The negotiated parameters. FirstBurstLength is kept ≤ MaxBurstLength.
    pub fn finish(&self) -> SessionParams {
        let mut p = self.params.clone();
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        p
    }
}

fn list_text(list: &[Digest]) -> String {
    list.iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Numerical-minimum: the offered value if in range, bounded by ours.
fn min_num(value: &str, lo: u64, hi: u64, ours: u64) -> Option<u64> {
    let v = parse_number(value)?;
    (lo..=hi).contains(&v).then(|| v.min(ours))
}

/// Operational keys defined by RFC 7143 (and the few we answer for
/// compatibility).
pub fn is_known(key: &str) -> bool {
    matches!(
        key,
        "HeaderDigest"
            | "DataDigest"
            | "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxRecvDataSegmentLength"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "DefaultTime2Wait"
            | "DefaultTime2Retain"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "ErrorRecoveryLevel"
            | "TaskReporter"
            | "iSCSIProtocolLevel"
            | "IFMarker"
            | "OFMarker"
            | "IFMarkInt"
            | "OFMarkInt"
            | "RDMAExtensions"
    )
}

/// Answers the non-SendTargets keys of a Text Request in full feature
/// phase. Only `MaxRecvDataSegmentLength` (declarative, Use: ALL) may
/// change there; it updates `params.max_xmit_data_segment_length` and needs
/// no answer. Other RFC keys are answered `Reject`, unknown keys
/// `NotUnderstood`. `SendTargets` is not handled here.
pub fn answer_ffp_key(kv: &KeyValue, params: &mut SessionParams) -> Option<KeyValue> {
    let key = kv.key.as_str();
    match key {
        "MaxRecvDataSegmentLength" => match parse_number(&kv.value) {
            Some(v) if (MIN_DATA_LEN as u64..=MAX_DATA_LEN as u64).contains(&v) => {
                params.max_xmit_data_segment_length = v as u32;
                None
            }
            _ => Some(KeyValue::new(key, REJECT)),
        },
        // Declarations an initiator may repeat: nothing to answer.
        "InitiatorAlias" => None,
        _ if is_reserved_constant(&kv.value) => None,
        _ if is_known(key)
            || is_login_identity_key(key)
            || is_security_key(key)
            || is_target_only(key) =>
        {
            Some(KeyValue::new(key, REJECT))
        }
        _ => Some(KeyValue::new(key, NOT_UNDERSTOOD)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k, v)
    }

    fn normal() -> Negotiator {
        Negotiator::new(NegotiationSettings::default(), SessionType::Normal, true)
    }

    fn answer(n: &mut Negotiator, k: &str, v: &str) -> Option<String> {
        n.respond(&[kv(k, v)])
            .unwrap()
            .into_iter()
            .find(|a| a.key == k)
            .map(|a| a.value)
    }

    #[test]
    fn list_keys_pick_initiators_first_allowed() {
        let mut n = normal();
        assert_eq!(
            answer(&mut n, "HeaderDigest", "CRC32C,None").as_deref(),
            Some("CRC32C")
        );
        assert_eq!(
            answer(&mut n, "DataDigest", "MD5,None,CRC32C").as_deref(),
            Some("None")
        );
        let p = n.finish();
        assert!(p.header_digest);
        assert!(!p.data_digest);

        let s = NegotiationSettings {
            header_digest: vec![Digest::None],
            ..Default::default()
        };
        let mut n = Negotiator::new(s, SessionType::Normal, true);
        assert_eq!(
            answer(&mut n, "HeaderDigest", "CRC32C").as_deref(),
            Some("Reject")
        );
        assert!(!n.finish().header_digest);
        assert_eq!(
            answer(&mut n, "TaskReporter", "FastAbort,RFC3720").as_deref(),
            Some("RFC3720")
        );
    }

    #[test]
    fn numerical_min_and_max() {
        let mut n = normal();
        assert_eq!(
            answer(&mut n, "MaxBurstLength", "16776192").as_deref(),
            Some("16776192")
        );
        assert_eq!(
            answer(&mut n, "FirstBurstLength", "1048576").as_deref(),
            Some("262144")
        );
        assert_eq!(
            answer(&mut n, "MaxOutstandingR2T", "16").as_deref(),
            Some("8")
        );
        assert_eq!(
            answer(&mut n, "DefaultTime2Wait", "5").as_deref(),
            Some("5")
        );
        let p = n.finish();
        assert_eq!(
            (
                p.max_burst_length,
                p.first_burst_length,
                p.max_outstanding_r2t
            ),
            (16776192, 262144, 8)
        );
        assert_eq!(p.default_time2wait, 5);
    }

    #[test]
    fn numerical_values_and_ranges() {
        let mut n = normal();
        let r = n
            .respond(&[
                kv("MaxConnections", "8"),
                kv("ErrorRecoveryLevel", "2"),
                kv("DefaultTime2Wait", "0"),
                kv("DefaultTime2Retain", "60"),
                kv("MaxOutstandingR2T", "1"),
                kv("MaxBurstLength", "0x10000"),
                kv("FirstBurstLength", "262144"),
            ])
            .unwrap();
        let vals: Vec<&str> = r.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(vals, ["1", "0", "2", "20", "1", "65536", "65536"]);
        let p = n.finish();
        assert_eq!(p.max_connections, 1);
        assert_eq!(p.error_recovery_level, 0);
        assert_eq!(p.default_time2wait, 2);
        assert_eq!(p.default_time2retain, 20);
        assert_eq!(p.max_outstanding_r2t, 1);
        assert_eq!(p.max_burst_length, 65536);
        assert_eq!(p.first_burst_length, 65536);

        let mut n = normal();
        let r = n
            .respond(&[
                kv("MaxBurstLength", "511"),
                kv("FirstBurstLength", "16777216"),
                kv("MaxConnections", "0"),
                kv("ErrorRecoveryLevel", "3"),
                kv("DefaultTime2Wait", "3601"),
                kv("MaxOutstandingR2T", "abc"),
                kv("ImmediateData", "yes"),
                kv("MaxRecvDataSegmentLength", "511"),
            ])
            .unwrap();
        assert!(r.iter().all(|a| a.value == REJECT), "{r:?}");
        assert_eq!(n.finish(), SessionParams::default());
    }

    #[test]
    fn booleans_and_or() {
        let mut n = normal();
        let r = n
            .respond(&[
                kv("InitialR2T", "No"),
                kv("ImmediateData", "Yes"),
                kv("DataPDUInOrder", "No"),
                kv("DataSequenceInOrder", "Yes"),
            ])
            .unwrap();
        let vals: Vec<&str> = r.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(vals, ["No", "Yes", "Yes", "Yes"]);
        let p = n.finish();
        assert!(!p.initial_r2t && p.immediate_data && p.data_pdu_in_order);

        let s = NegotiationSettings {
            immediate_data: false,
            initial_r2t: true,
            ..Default::default()
        };
        let mut n = Negotiator::new(s, SessionType::Normal, true);
        let r = n
            .respond(&[kv("InitialR2T", "No"), kv("ImmediateData", "Yes")])
            .unwrap();
        assert_eq!(r[0].value, "Yes");
        assert_eq!(r[1].value, "No");
    }

    #[test]
    fn declarative_max_recv() {
        let mut n = normal();
        let r = n
            .respond(&[kv("MaxRecvDataSegmentLength", "65536")])
            .unwrap();
        assert_eq!(r, vec![kv("MaxRecvDataSegmentLength", "262144")]);
        assert!(n.declarations().is_empty());
        let p = n.finish();
        assert_eq!(p.max_xmit_data_segment_length, 65536);
        assert_eq!(p.max_recv_data_segment_length, 262144);

        // Not sent by the initiator: we still declare ours, and send 8192.
        let mut n = normal();
        assert_eq!(
            n.declarations(),
            vec![kv("MaxRecvDataSegmentLength", "262144")]
        );
        assert!(n.declarations().is_empty());
        assert_eq!(n.finish().max_xmit_data_segment_length, 8192);
    }

    #[test]
    fn not_understood_irrelevant_reject() {
        let mut n = normal();
        let r = n
            .respond(&[
                kv("X-com.example.Foo", "1"),
                kv("X#org.example", "2"),
                kv("Bogus", "3"),
                kv("TargetAlias", "x"),
                kv("TargetPortalGroupTag", "1"),
                kv("AuthMethod", "None"),
                kv("CHAP_A", "5"),
                kv("SendTargets", "All"),
                kv("IFMarker", "No"),
                kv("OFMarker", "Yes"),
                kv("OFMarkInt", "2048~8192"),
                kv("InitiatorAlias", "host"),
            ])
            .unwrap();
        let vals: Vec<&str> = r.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(
            vals,
            [
                "NotUnderstood",
                "NotUnderstood",
                "NotUnderstood",
                "Reject",
                "Reject",
                "Reject",
                "Reject",
                "Reject",
                "No",
                "Reject",
                "Reject"
            ]
        );

        let mut d = Negotiator::new(NegotiationSettings::default(), SessionType::Discovery, true);
        let r = d
            .respond(&[
                kv("ImmediateData", "Yes"),
                kv("InitialR2T", "No"),
                kv("MaxBurstLength", "1000"),
                kv("HeaderDigest", "None"),
                kv("DefaultTime2Wait", "2"),
            ])
            .unwrap();
        let vals: Vec<&str> = r.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(
            vals,
            ["Irrelevant", "Irrelevant", "Irrelevant", "None", "2"]
        );

        // leading-only keys on a connection joining a session
        let mut j = Negotiator::new(NegotiationSettings::default(), SessionType::Normal, false);
        assert_eq!(
            answer(&mut j, "MaxBurstLength", "65536").as_deref(),
            Some("Reject")
        );
        assert_eq!(
            answer(&mut j, "HeaderDigest", "None").as_deref(),
            Some("None")
        );
    }

    #[test]
    fn duplicates_are_errors() {
        let mut n = normal();
        n.respond(&[kv("MaxConnections", "1")]).unwrap();
        assert_eq!(
            n.respond(&[kv("MaxConnections", "1")]),
            Err(NegotiationError::Duplicate("MaxConnections".into()))
        );
    }

    #[test]
    fn target_offers_when_default_unacceptable() {
        let s = NegotiationSettings {
            max_burst_length: 65536,
            first_burst_length: 8192,
            immediate_data: false,
            header_digest: vec![Digest::Crc32c],
            ..Default::default()
        };
        let mut n = Negotiator::new(s.clone(), SessionType::Normal, true);
        let offers = n.offers();
        assert_eq!(
            offers,
            vec![
                kv("HeaderDigest", "CRC32C"),
                kv("MaxBurstLength", "65536"),
                kv("FirstBurstLength", "8192"),
                kv("ImmediateData", "No")
            ]
        );
        assert!(!n.is_done());
        n.respond(&[
            kv("HeaderDigest", "CRC32C"),
            kv("MaxBurstLength", "32768"),
            kv("FirstBurstLength", "8192"),
            kv("ImmediateData", "No"),
        ])
        .unwrap();
        assert!(n.is_done());
        let p = n.finish();
        assert!(p.header_digest);
        assert_eq!(p.max_burst_length, 32768);
        assert_eq!(p.first_burst_length, 8192);
        assert!(!p.immediate_data);

        let mut n = Negotiator::new(s, SessionType::Normal, true);
        n.offers();
        assert!(matches!(
            n.respond(&[kv("MaxBurstLength", "1048576")]),
            Err(NegotiationError::BadAnswer { .. })
        ));

        // Defaults need no offers.
        assert!(normal().offers().is_empty());
    }

    #[test]
    fn ffp_keys() {
        let mut p = SessionParams::default();
        assert_eq!(
            answer_ffp_key(&kv("MaxRecvDataSegmentLength", "16384"), &mut p),
            None
        );
        assert_eq!(p.max_xmit_data_segment_length, 16384);
        assert_eq!(
            answer_ffp_key(&kv("MaxBurstLength", "16384"), &mut p)
                .unwrap()
                .value,
            "Reject"
        );
        assert_eq!(
            answer_ffp_key(&kv("X-foo", "1"), &mut p).unwrap().value,
            "NotUnderstood"
        );
    }

    #[test]
    fn random_offers_respect_result_functions() {
        use rand::Rng;
        let mut rng = rand::rng();
        let s = NegotiationSettings::default();
        // (key, lo, hi, ours, is_max)
        let keys: [(&str, u64, u64, u64, bool); 7] = [
            ("MaxConnections", 1, 65535, 1, false),
            (
                "MaxBurstLength",
                512,
                16777215,
                s.max_burst_length as u64,
                false,
            ),
            ("DefaultTime2Retain", 0, 3600, 20, false),
            ("MaxOutstandingR2T", 1, 65535, 8, false),
            ("ErrorRecoveryLevel", 0, 2, 0, false),
            ("DefaultTime2Wait", 0, 3600, 2, true),
            ("iSCSIProtocolLevel", 0, 31, PROTOCOL_LEVEL, false),
        ];
        for _ in 0..3000 {
            let (key, lo, hi, ours, is_max) = keys[rng.next_u32() as usize % keys.len()];
            let offer = match rng.next_u32() % 3 {
                0 => rng.next_u64() % (hi + 2),
                1 => lo + rng.next_u64() % (hi - lo + 1),
                _ => rng.next_u64(),
            };
            let mut n = normal();
            let a = answer(&mut n, key, &offer.to_string()).unwrap();
            if !(lo..=hi).contains(&offer) {
                assert_eq!(a, REJECT, "{key}={offer}");
                continue;
            }
            let v: u64 = a.parse().unwrap();
            let want = if is_max {
                offer.max(ours)
            } else {
                offer.min(ours)
            };
            assert_eq!(v, want, "{key}={offer}");
            assert!((lo..=hi).contains(&v));
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("010"), Some(10));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("99999999999999999999999"), None);
    }
}
