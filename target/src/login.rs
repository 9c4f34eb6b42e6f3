//! The login phase of one connection (RFC 7143 6.3, 11.12-11.13) as an
//! explicit state machine, free of sockets: the connection code feeds each
//! Login Request and its data segment to [`LoginMachine::step`] and sends
//! what comes back.
//!
//! States: `Start` (no complete text seen yet) → `Security` (AuthMethod,
//! CHAP) and/or `Operational` (key negotiation, see [`crate::negotiation`])
//! → `Done` (full feature phase), or `Failed` after any failure response.
//! A text continued over several PDUs (C bit) is assembled first, each
//! continuation being answered with an empty response.
//!
//! The final response ([`LoginStep::Complete`]) carries the TSIH the
//! request had; for a new session (TSIH 0) the connection code allocates
//! one and writes it with [`LoginStep::set_tsih`] / [`set_tsih`] before
//! sending.
//!
//! Failure statuses (class, detail): 0x0200 initiator error (malformed
//! text, bad stage transition, ISID/TSIH/CID/CmdSN changed between login
//! PDUs, a key sent twice), 0x0201 authentication failure, 0x0202
//! authorization failure (initiator not in the target's ACL), 0x0203
//! target not found, 0x0205 unsupported version, 0x0207 missing parameter,
//! 0x0209 session type not supported, 0x020b a non-login PDU during login
//! ([`LoginMachine::invalid_request`]), 0x0300 target error.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub use crate::chap::ChapPolicy;
use crate::chap::{ChapAuthenticator, ChapProgress};
use crate::negotiation::{is_login_identity_key, NegotiationSettings, Negotiator};
pub use crate::negotiation::{SessionParams, SessionType};
use crate::pdu::{LoginRequest, Stage, TargetPdu};
use crate::text::{self, KeyValue, TextAccumulator};

/// Login status codes (class, detail), RFC 7143 11.13.5.
pub mod status {
    pub const SUCCESS: (u8, u8) = (0x00, 0x00);
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    pub const AUTH_FAILURE: (u8, u8) = (0x02, 0x01);
    pub const AUTHORIZATION_FAILURE: (u8, u8) = (0x02, 0x02);
    pub const NOT_FOUND: (u8, u8) = (0x02, 0x03);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (0x02, 0x05);
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    pub const SESSION_TYPE_UNSUPPORTED: (u8, u8) = (0x02, 0x09);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (0x02, 0x0a);
    pub const INVALID_DURING_LOGIN: (u8, u8) = (0x02, 0x0b);
    pub const TARGET_ERROR: (u8, u8) = (0x03, 0x00);
}

/// The only iSCSI version (RFC 7143 11.12.4).
pub const ISCSI_VERSION: u8 = 0;
/// Longest iSCSI name (RFC 7143 6.6.1 / RFC 3722).
pub const MAX_NAME_LEN: usize = 223;
/// Most Login Requests one login may take.
pub const MAX_LOGIN_PDUS: u32 = 256;

/// Where logins find targets and their access rules.
pub trait LoginDirectory: Send + Sync {
    /// Targets visible through this portal (local_addr) -- for login and SendTargets.
    fn target(&self, name: &str, local_addr: SocketAddr) -> Option<TargetLoginInfo>;
    fn targets(&self, local_addr: SocketAddr) -> Vec<TargetLoginInfo>;
    /// CHAP required for discovery sessions, if any.
    fn discovery_auth(&self) -> Option<ChapPolicy>;
}

/// What login and discovery need to know of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLoginInfo {
    pub name: String,
    pub alias: Option<String>,
    pub portal_group_tag: u16,
    /// Configured portals; a wildcard address (0.0.0.0 / [::]) means "the
    /// address the initiator connected to".
    pub portals: Vec<SocketAddr>,
    /// Initiator names allowed in (`None` = all); compared ignoring ASCII case.
    pub allowed_initiators: Option<Vec<String>>,
    pub chap: Option<ChapPolicy>,
}

impl TargetLoginInfo {
    /// Whether `initiator` may log in to (and see) this target.
    pub fn allows(&self, initiator: &str) -> bool {
        match &self.allowed_initiators {
            None => true,
            Some(list) => list.iter().any(|i| i.eq_ignore_ascii_case(initiator)),
        }
    }
}

/// Login settings of the server.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub negotiation: NegotiationSettings,
    /// Cap on one assembled login text (C bit continuation).
    pub max_text_len: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            negotiation: NegotiationSettings::default(),
            max_text_len: text::DEFAULT_TEXT_CAP,
        }
    }
}

/// What the connection does with one step's answer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send, stay in login.
    Continue { response: TargetPdu, data: Bytes },
    /// Send (after [`set_tsih`](LoginStep::set_tsih) for a new session),
    /// enter full feature phase.
    Complete {
        response: TargetPdu,
        data: Bytes,
        outcome: LoginOutcome,
    },
    /// Send, then close the connection.
    Fail {
        response: TargetPdu,
        data: Bytes,
        reason: String,
    },
}

impl LoginStep {
    /// Writes the TSIH into the response (the connection code allocates it
    /// for a new session before sending the final response).
    pub fn set_tsih(&mut self, tsih: u16) {
        match self {
            LoginStep::Continue { response, .. }
            | LoginStep::Complete { response, .. }
            | LoginStep::Fail { response, .. } => set_tsih(response, tsih),
        }
    }

    /// The response PDU to send.
    pub fn response(&self) -> &TargetPdu {
        match self {
            LoginStep::Continue { response, .. }
            | LoginStep::Complete { response, .. }
            | LoginStep::Fail { response, .. } => response,
        }
    }

    /// The data segment to send.
    pub fn data(&self) -> &Bytes {
        match self {
            LoginStep::Continue { data, .. }
            | LoginStep::Complete { data, .. }
            | LoginStep::Fail { data, .. } => data,
        }
    }

    /// Status class and detail of the response.
    pub fn status(&self) -> (u8, u8) {
        match self.response() {
            TargetPdu::LoginResponse {
                status_class,
                status_detail,
                ..
            } => (*status_class, *status_detail),
            _ => status::TARGET_ERROR,
        }
    }
}

/// Writes `tsih` into a Login Response (no effect on other PDUs).
pub fn set_tsih(response: &mut TargetPdu, tsih: u16) {
    if let TargetPdu::LoginResponse { tsih: t, .. } = response {
        *t = tsih;
    }
}

/// The result of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// `None` for discovery sessions.
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    /// As requested; 0 = new session.
    pub tsih: u16,
    pub cid: u16,
    /// The CmdSN of the login = ExpCmdSN entering full feature phase.
    pub exp_cmdsn: u32,
    pub params: SessionParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Security,
    Operational,
    Done,
    Failed,
}

enum Auth {
    /// No AuthMethod agreed yet.
    Undecided,
    /// CHAP running.
    Chap(Box<ChapAuthenticator>),
    /// Authenticated (CHAP done, or None agreed where allowed).
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Ident {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    cmdsn: u32,
}

/// A failure found while handling a request.
struct Failure {
    status: (u8, u8),
    reason: String,
    data: Vec<KeyValue>,
}

fn fail(status: (u8, u8), reason: impl Into<String>) -> Failure {
    Failure {
        status,
        reason: reason.into(),
        data: Vec::new(),
    }
}

/// The login of one connection.
pub struct LoginMachine {
    directory: Arc<dyn LoginDirectory>,
    local_addr: SocketAddr,
    settings: LoginSettings,
    state: State,
    ident: Option<Ident>,
    pdus: u32,
    acc: TextAccumulator,
    neg: Option<Negotiator>,
    auth: Auth,
    policy: Option<ChapPolicy>,
    session_type: SessionType,
    initiator_name: String,
    initiator_alias: Option<String>,
    target: Option<TargetLoginInfo>,
    /// TargetPortalGroupTag / TargetAlias sent.
    identity_declared: bool,
    /// Our offers were made in an earlier response.
    offers_pending_since: Option<u32>,
}

impl std::fmt::Debug for LoginMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginMachine")
            .field("state", &self.state)
            .field("local_addr", &self.local_addr)
            .field("session_type", &self.session_type)
            .field("initiator_name", &self.initiator_name)
            .field("target", &self.target.as_ref().map(|t| &t.name))
            .field("pdus", &self.pdus)
            .finish()
    }
}

impl LoginMachine {
    pub fn new(
        directory: Arc<dyn LoginDirectory>,
        local_addr: SocketAddr,
        settings: LoginSettings,
    ) -> LoginMachine {
        let cap = settings.max_text_len;
        LoginMachine {
            directory,
            local_addr,
            settings,
            state: State::Start,
            ident: None,
            pdus: 0,
            acc: TextAccumulator::new(cap),
            neg: None,
            auth: Auth::Undecided,
            policy: None,
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target: None,
            identity_declared: false,
            offers_pending_since: None,
        }
    }

    /// Whether the login has ended (completed or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    /// The answer to a PDU other than a Login Request during login:
    /// status 0x020b (invalid request during login); close afterwards.
    pub fn invalid_request(&mut self, itt: u32) -> LoginStep {
        self.state = State::Failed;
        let (isid, tsih) = self.ident.map(|i| (i.isid, i.tsih)).unwrap_or_default();
        LoginStep::Fail {
            response: TargetPdu::LoginResponse {
                transit: false,
                continue_: false,
                csg: Stage::Security,
                nsg: Stage::Security,
                version_max: ISCSI_VERSION,
                version_active: ISCSI_VERSION,
                isid,
                tsih,
                itt,
                status_class: status::INVALID_DURING_LOGIN.0,
                status_detail: status::INVALID_DURING_LOGIN.1,
            },
            data: Bytes::new(),
            reason: "non-login PDU during login".into(),
        }
    }

    /// Handles one Login Request and its data segment (padding removed).
    pub fn step(&mut self, req: &LoginRequest, data: &[u8]) -> LoginStep {
        match self.step_inner(req, data) {
            Ok(step) => step,
            Err(f) => {
                self.state = State::Failed;
                LoginStep::Fail {
                    response: response(req, false, req.csg, f.status),
                    data: Bytes::from(text::encode(&f.data)),
                    reason: f.reason,
                }
            }
        }
    }

    fn step_inner(&mut self, req: &LoginRequest, data: &[u8]) -> Result<LoginStep, Failure> {
        if self.is_finished() {
            return Err(fail(status::INITIATOR_ERROR, "login already finished"));
        }
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return Err(fail(status::INITIATOR_ERROR, "too many login PDUs"));
        }
        match self.ident {
            None => {
                if req.version_min > ISCSI_VERSION {
                    return Err(fail(
                        status::UNSUPPORTED_VERSION,
                        format!(
                            "version {}..{} unsupported",
                            req.version_min, req.version_max
                        ),
                    ));
                }
                self.ident = Some(Ident {
                    isid: req.isid,
                    tsih: req.tsih,
                    cid: req.cid,
                    cmdsn: req.cmdsn,
                });
            }
            Some(id) => {
                if id.isid != req.isid || id.tsih != req.tsih || id.cid != req.cid {
                    return Err(fail(
                        status::INITIATOR_ERROR,
                        "ISID, TSIH or CID changed during login",
                    ));
                }
                if id.cmdsn != req.cmdsn {
                    return Err(fail(status::INITIATOR_ERROR, "CmdSN changed during login"));
                }
            }
        }
        let expected = match self.state {
            State::Start => None,
            State::Security => Some(Stage::Security),
            State::Operational => Some(Stage::Operational),
            State::Done | State::Failed => {
                return Err(fail(status::INITIATOR_ERROR, "login already finished"))
            }
        };
        match (expected, req.csg) {
            (_, Stage::FullFeature) => {
                return Err(fail(status::INITIATOR_ERROR, "CSG is full feature phase"))
            }
            (Some(e), c) if e != c => {
                return Err(fail(
                    status::INITIATOR_ERROR,
                    format!("CSG {c:?} while in {e:?} stage"),
                ))
            }
            _ => {}
        }
        if req.transit && (req.nsg <= req.csg) {
            return Err(fail(
                status::INITIATOR_ERROR,
                format!("transition {:?} -> {:?}", req.csg, req.nsg),
            ));
        }
        if req.continue_ {
            self.acc
                .push(data)
                .map_err(|e| fail(status::INITIATOR_ERROR, e.to_string()))?;
            // RFC 7143 11.13: a continued request gets an empty response.
            return Ok(LoginStep::Continue {
                response: response(req, false, req.csg, status::SUCCESS),
                data: Bytes::new(),
            });
        }
        let pairs = self
            .acc
            .finish(data)
            .map_err(|e| fail(status::INITIATOR_ERROR, format!("login text: {e}")))?;

        let mut out = Vec::new();
        let first_pdu_text = self.state == State::Start;
        if self.state == State::Start {
            self.first_text(req, &pairs)?;
            self.state = if req.csg == Stage::Security {
                State::Security
            } else {
                State::Operational
            };
            if req.csg == Stage::Operational {
                // Security stage skipped: only allowed without CHAP.
                if self.policy.is_some() {
                    return Err(fail(
                        status::AUTH_FAILURE,
                        "authentication required but the security stage was skipped",
                    ));
                }
                self.auth = Auth::Done;
            }
        }
        if !self.identity_declared {
            self.identity_declared = true;
            if let (SessionType::Normal, Some(t)) = (self.session_type, &self.target) {
                out.push(KeyValue::new(
                    "TargetPortalGroupTag",
                    t.portal_group_tag.to_string(),
                ));
                if let Some(alias) = &t.alias {
                    out.push(KeyValue::new("TargetAlias", alias.clone()));
                }
            }
        }
        // Identity keys are consumed by first_text. libiscsi repeats them
        // (same values) in its operational PDU after AuthMethod=None, so a
        // repeat is accepted when it agrees with what the login already
        // holds; a different value is an initiator error.
        if !first_pdu_text {
            for kv in pairs.iter().filter(|k| is_login_identity_key(&k.key)) {
                self.check_identity_repeat(kv)?;
            }
        }
        if self.state == State::Security {
            self.security(&pairs, &mut out)?;
        }
        let neg = self
            .neg
            .as_mut()
            .ok_or_else(|| fail(status::TARGET_ERROR, "negotiator missing after first text"))?;
        let operational: Vec<KeyValue> = pairs
            .iter()
            .filter(|k| {
                !is_login_identity_key(&k.key)
                    && !(self.state == State::Security
                        && (k.key == "AuthMethod" || k.key.starts_with("CHAP_")))
            })
            .cloned()
            .collect();
        let answers = neg
            .respond(&operational)
            .map_err(|e| fail(status::INITIATOR_ERROR, e.to_string()))?;
        out.extend(answers);
        if self.state == State::Operational {
            out.extend(neg.declarations());
        }

        if let Some(since) = self.offers_pending_since {
            if !neg.is_done() && since < self.pdus {
                return Err(fail(
                    status::INITIATOR_ERROR,
                    "initiator did not answer the keys we offered",
                ));
            }
            if neg.is_done() {
                self.offers_pending_since = None;
            }
        }

        // Transit only when the initiator asks and our side is done.
        let authenticated = matches!(self.auth, Auth::Done);
        if !req.transit || !authenticated {
            if req.transit && self.state == State::Security && matches!(self.auth, Auth::Undecided)
            {
                // T=1 out of security without any AuthMethod.
                if self.policy.is_some() {
                    return Err(fail(
                        status::AUTH_FAILURE,
                        "authentication required, no AuthMethod offered",
                    ));
                }
                self.auth = Auth::Done;
                return self.transit(req, out);
            }
            return Ok(self.cont(req, out));
        }
        self.transit(req, out)
    }

    /// The initiator asked to move to `req.nsg` and authentication is done.
    fn transit(
        &mut self,
        req: &LoginRequest,
        mut out: Vec<KeyValue>,
    ) -> Result<LoginStep, Failure> {
        let neg = self
            .neg
            .as_mut()
            .ok_or_else(|| fail(status::TARGET_ERROR, "negotiator missing after first text"))?;
        if req.nsg == Stage::Operational {
            self.state = State::Operational;
            return Ok(LoginStep::Continue {
                response: response(req, true, Stage::Operational, status::SUCCESS),
                data: Bytes::from(text::encode(&out)),
            });
        }
        // To full feature phase: make our own offers first if needed.
        let offers = neg.offers();
        if !offers.is_empty() {
            out.extend(neg.declarations());
            out.extend(offers);
            self.offers_pending_since = Some(self.pdus);
            return Ok(self.cont(req, out));
        }
        if !neg.is_done() {
            return Ok(self.cont(req, out));
        }
        out.extend(neg.declarations());
        let params = neg.finish();
        self.state = State::Done;
        let ident = self.ident.unwrap_or(Ident {
            isid: req.isid,
            tsih: req.tsih,
            cid: req.cid,
            cmdsn: req.cmdsn,
        });
        let outcome = LoginOutcome {
            session_type: self.session_type,
            initiator_name: self.initiator_name.clone(),
            initiator_alias: self.initiator_alias.clone(),
            target_name: self.target.as_ref().map(|t| t.name.clone()),
            isid: ident.isid,
            tsih: ident.tsih,
            cid: ident.cid,
            exp_cmdsn: ident.cmdsn,
            params,
        };
        Ok(LoginStep::Complete {
            response: response(req, true, Stage::FullFeature, status::SUCCESS),
            data: Bytes::from(text::encode(&out)),
            outcome,
        })
    }

    fn cont(&self, req: &LoginRequest, out: Vec<KeyValue>) -> LoginStep {
        LoginStep::Continue {
            response: response(req, false, req.csg, status::SUCCESS),
            data: Bytes::from(text::encode(&out)),
        }
    }

    /// The leading keys of the first complete text.
    fn first_text(&mut self, req: &LoginRequest, pairs: &[KeyValue]) -> Result<(), Failure> {
        let get = |k: &str| pairs.iter().find(|p| p.key == k).map(|p| p.value.as_str());
        let name = get("InitiatorName")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| fail(status::MISSING_PARAMETER, "no InitiatorName"))?;
        if name.len() > MAX_NAME_LEN {
            return Err(fail(status::INITIATOR_ERROR, "InitiatorName too long"));
        }
        self.initiator_name = name.to_string();
        self.initiator_alias = get("InitiatorAlias").map(str::to_string);
        self.session_type = match get("SessionType") {
            None => SessionType::Normal,
            Some(s) => SessionType::parse(s).ok_or_else(|| {
                fail(
                    status::SESSION_TYPE_UNSUPPORTED,
                    format!("SessionType {s:?}"),
                )
            })?,
        };
        match self.session_type {
            SessionType::Normal => {
                let tname = get("TargetName")
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| fail(status::MISSING_PARAMETER, "no TargetName"))?;
                let target = self
                    .directory
                    .target(tname, self.local_addr)
                    .ok_or_else(|| fail(status::NOT_FOUND, format!("no target {tname:?}")))?;
                if !target.allows(name) {
                    return Err(fail(
                        status::AUTHORIZATION_FAILURE,
                        format!("{name} is not allowed to log in to {tname}"),
                    ));
                }
                self.policy = target.chap.clone();
                self.target = Some(target);
            }
            SessionType::Discovery => {
                self.policy = self.directory.discovery_auth();
            }
        }
        self.neg = Some(Negotiator::new(
            self.settings.negotiation.clone(),
            self.session_type,
            req.tsih == 0,
        ));
        Ok(())
    }

    /// A login identity key seen again after the first text.
    fn check_identity_repeat(&mut self, kv: &KeyValue) -> Result<(), Failure> {
        let same = match kv.key.as_str() {
            "InitiatorName" => kv.value == self.initiator_name,
            "SessionType" => SessionType::parse(&kv.value) == Some(self.session_type),
            "TargetName" => match &self.target {
                Some(t) => kv.value == t.name,
                None => true,
            },
            "InitiatorAlias" => match &self.initiator_alias {
                Some(a) => kv.value == *a,
                None => {
                    self.initiator_alias = Some(kv.value.clone());
                    true
                }
            },
            _ => true,
        };
        if same {
            Ok(())
        } else {
            Err(fail(
                status::INITIATOR_ERROR,
                format!("{} changed during login", kv.key),
            ))
        }
    }

    /// AuthMethod and CHAP keys of a security-stage text.
    fn security(&mut self, pairs: &[KeyValue], out: &mut Vec<KeyValue>) -> Result<(), Failure> {
        let neg = self
            .neg
            .as_mut()
            .ok_or_else(|| fail(status::TARGET_ERROR, "negotiator missing after first text"))?;
        for kv in pairs
            .iter()
            .filter(|k| k.key == "AuthMethod" || k.key.starts_with("CHAP_"))
        {
            neg.note_received(&kv.key)
                .map_err(|e| fail(status::INITIATOR_ERROR, e.to_string()))?;
        }
        if let Some(am) = pairs.iter().find(|k| k.key == "AuthMethod") {
            if !matches!(self.auth, Auth::Undecided) {
                return Err(fail(status::INITIATOR_ERROR, "AuthMethod renegotiated"));
            }
            let offered: Vec<&str> = am.value.split(',').collect();
            match &self.policy {
                Some(policy) => {
                    if !offered.contains(&"CHAP") {
                        return Err(Failure {
                            status: status::AUTH_FAILURE,
                            reason: format!("CHAP required, initiator offered {:?}", am.value),
                            data: vec![KeyValue::new("AuthMethod", "Reject")],
                        });
                    }
                    out.push(KeyValue::new("AuthMethod", "CHAP"));
                    self.auth = Auth::Chap(Box::new(ChapAuthenticator::new(policy.clone())));
                }
                None => {
                    if !offered.contains(&"None") {
                        return Err(Failure {
                            status: status::AUTH_FAILURE,
                            reason: format!(
                                "no authentication configured, initiator offered {:?}",
                                am.value
                            ),
                            data: vec![KeyValue::new("AuthMethod", "Reject")],
                        });
                    }
                    out.push(KeyValue::new("AuthMethod", "None"));
                    self.auth = Auth::Done;
                }
            }
        }
        let chap_keys: Vec<KeyValue> = pairs
            .iter()
            .filter(|k| k.key.starts_with("CHAP_"))
            .cloned()
            .collect();
        if !chap_keys.is_empty() {
            let Auth::Chap(chap) = &mut self.auth else {
                return Err(fail(
                    status::INITIATOR_ERROR,
                    "CHAP keys without AuthMethod=CHAP",
                ));
            };
            match chap.step(&chap_keys) {
                Ok(ChapProgress::Pending) => {}
                Ok(ChapProgress::Challenge(kvs)) => out.extend(kvs),
                Ok(ChapProgress::Authenticated(kvs)) => {
                    out.extend(kvs);
                    self.auth = Auth::Done;
                }
                Err(e) => {
                    return Err(fail(
                        e.status(),
                        format!("CHAP for {}: {e}", self.initiator_name),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn response(req: &LoginRequest, transit: bool, nsg: Stage, st: (u8, u8)) -> TargetPdu {
    TargetPdu::LoginResponse {
        transit,
        continue_: false,
        csg: req.csg,
        nsg: if transit { nsg } else { req.csg },
        version_max: ISCSI_VERSION,
        version_active: ISCSI_VERSION,
        isid: req.isid,
        tsih: req.tsih,
        itt: req.itt,
        status_class: st.0,
        status_detail: st.1,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chap::{decode_binary, encode_hex, ChapAlgorithm};
    use crate::negotiation::parse_number;

    pub(crate) struct Dir {
        pub targets: Vec<TargetLoginInfo>,
        pub discovery: Option<ChapPolicy>,
    }

    impl LoginDirectory for Dir {
        fn target(&self, name: &str, _local: SocketAddr) -> Option<TargetLoginInfo> {
            self.targets.iter().find(|t| t.name == name).cloned()
        }
        fn targets(&self, _local: SocketAddr) -> Vec<TargetLoginInfo> {
            self.targets.clone()
        }
        fn discovery_auth(&self) -> Option<ChapPolicy> {
            self.discovery.clone()
        }
    }

    pub(crate) const TGT: &str = "iqn.2026-11.org.ironlun:default";
    pub(crate) const INI: &str = "iqn.1993-08.org.debian:01:abc";

    pub(crate) fn target(chap: Option<ChapPolicy>) -> TargetLoginInfo {
        TargetLoginInfo {
            name: TGT.into(),
            alias: Some("disk".into()),
            portal_group_tag: 1,
            portals: vec!["0.0.0.0:3260".parse().unwrap()],
            allowed_initiators: None,
            chap,
        }
    }

    fn policy(mutual: bool) -> ChapPolicy {
        ChapPolicy {
            user: "user".into(),
            secret: b"initiator-secret".to_vec(),
            mutual: mutual.then(|| ("tuser".to_string(), b"target-secret-99".to_vec())),
        }
    }

    fn machine(targets: Vec<TargetLoginInfo>, discovery: Option<ChapPolicy>) -> LoginMachine {
        LoginMachine::new(
            Arc::new(Dir { targets, discovery }),
            "127.0.0.1:3260".parse().unwrap(),
            LoginSettings::default(),
        )
    }

    fn req(csg: Stage, nsg: Option<Stage>) -> LoginRequest {
        LoginRequest {
            transit: nsg.is_some(),
            continue_: false,
            csg,
            nsg: nsg.unwrap_or(csg),
            version_max: 0,
            version_min: 0,
            isid: [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01],
            tsih: 0,
            itt: 0,
            cid: 0,
            cmdsn: 1,
            exp_statsn: 0,
        }
    }

    fn txt(pairs: &[(&str, &str)]) -> Vec<u8> {
        let kv: Vec<KeyValue> = pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
        text::encode(&kv)
    }

    fn keys(step: &LoginStep) -> Vec<KeyValue> {
        text::parse(step.data()).unwrap()
    }

    fn get(step: &LoginStep, k: &str) -> Option<String> {
        keys(step).into_iter().find(|p| p.key == k).map(|p| p.value)
    }

    fn flags(step: &LoginStep) -> (bool, Stage, Stage) {
        match step.response() {
            TargetPdu::LoginResponse {
                transit, csg, nsg, ..
            } => (*transit, *csg, *nsg),
            _ => panic!(),
        }
    }

    const OPEN_ISCSI_OP: &[(&str, &str)] = &[
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("MaxOutstandingR2T", "1"),
        ("MaxConnections", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
    ];

    /// Runs the CHAP part as open-iscsi does; returns the machine after the
    /// security stage, or the failing step.
    #[allow(clippy::result_large_err)]
    fn open_iscsi_chap(
        mutual: bool,
        secret: &[u8],
    ) -> Result<(LoginMachine, LoginStep), LoginStep> {
        let mut m = machine(vec![target(Some(policy(mutual)))], None);
        let s1 = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&[
                ("InitiatorName", INI),
                ("InitiatorAlias", "host"),
                ("TargetName", TGT),
                ("SessionType", "Normal"),
                ("AuthMethod", "CHAP,None"),
            ]),
        );
        assert!(matches!(s1, LoginStep::Continue { .. }), "{s1:?}");
        assert!(!flags(&s1).0, "no transit while CHAP is pending");
        assert_eq!(get(&s1, "AuthMethod").as_deref(), Some("CHAP"));
        assert_eq!(get(&s1, "TargetPortalGroupTag").as_deref(), Some("1"));
        assert_eq!(get(&s1, "TargetAlias").as_deref(), Some("disk"));

        let s2 = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&[("CHAP_A", "7,6,5")]),
        );
        // open-iscsi's preference: SHA-256 first among those we know
        assert_eq!(get(&s2, "CHAP_A").as_deref(), Some("7"));
        let alg = ChapAlgorithm::Sha256;
        assert!(!flags(&s2).0);
        let id = parse_number(&get(&s2, "CHAP_I").unwrap()).unwrap() as u8;
        let c = decode_binary(&get(&s2, "CHAP_C").unwrap()).unwrap();
        let r = alg.response(id, secret, &c);
        let mut resp = vec![("CHAP_N", "user".to_string()), ("CHAP_R", encode_hex(&r))];
        let my_c = vec![0x5au8; 16];
        if mutual {
            resp.push(("CHAP_I", "77".into()));
            resp.push(("CHAP_C", encode_hex(&my_c)));
        }
        let resp: Vec<(&str, &str)> = resp.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let s3 = m.step(&req(Stage::Security, Some(Stage::Operational)), &txt(&resp));
        if !matches!(s3, LoginStep::Continue { .. }) {
            return Err(s3);
        }
        assert_eq!(
            flags(&s3),
            (true, Stage::Security, Stage::Operational),
            "{s3:?}"
        );
        if mutual {
            assert_eq!(get(&s3, "CHAP_N").as_deref(), Some("tuser"));
            let want = alg.response(77, b"target-secret-99", &my_c);
            assert_eq!(get(&s3, "CHAP_R"), Some(encode_hex(&want)));
        }
        Ok((m, s3))
    }

    #[test]
    fn open_iscsi_transcript_with_chap() {
        for mutual in [false, true] {
            let (mut m, _) = open_iscsi_chap(mutual, b"initiator-secret").unwrap();
            let s4 = m.step(
                &req(Stage::Operational, Some(Stage::FullFeature)),
                &txt(OPEN_ISCSI_OP),
            );
            let LoginStep::Complete { outcome, .. } = &s4 else {
                panic!("{s4:?}")
            };
            assert_eq!(flags(&s4), (true, Stage::Operational, Stage::FullFeature));
            // every offered key answered, in order, then nothing else
            let k = keys(&s4);
            let answered: Vec<&str> = k.iter().map(|p| p.key.as_str()).collect();
            let offered: Vec<&str> = OPEN_ISCSI_OP.iter().map(|p| p.0).collect();
            assert_eq!(answered, offered);
            assert_eq!(
                get(&s4, "MaxRecvDataSegmentLength").as_deref(),
                Some("262144")
            );
            assert_eq!(get(&s4, "InitialR2T").as_deref(), Some("No"));
            assert_eq!(get(&s4, "DefaultTime2Retain").as_deref(), Some("0"));
            assert_eq!(outcome.session_type, SessionType::Normal);
            assert_eq!(outcome.initiator_name, INI);
            assert_eq!(outcome.initiator_alias.as_deref(), Some("host"));
            assert_eq!(outcome.target_name.as_deref(), Some(TGT));
            assert_eq!(outcome.exp_cmdsn, 1);
            assert_eq!(outcome.tsih, 0);
            let p = &outcome.params;
            assert!(!p.initial_r2t && p.immediate_data);
            assert_eq!(p.max_burst_length, 16776192);
            assert_eq!(p.first_burst_length, 262144);
            assert_eq!(p.max_outstanding_r2t, 1);
            assert_eq!(p.max_xmit_data_segment_length, 262144);
            assert_eq!(p.max_recv_data_segment_length, 262144);
            assert!(m.is_finished());
            let mut s4 = s4;
            s4.set_tsih(0x1234);
            assert!(matches!(
                s4.response(),
                TargetPdu::LoginResponse { tsih: 0x1234, .. }
            ));
        }
    }

    #[test]
    fn wrong_chap_secret_is_auth_failure() {
        let s = open_iscsi_chap(false, b"wrong-secret-000").unwrap_err();
        assert!(matches!(s, LoginStep::Fail { .. }));
        assert_eq!(s.status(), status::AUTH_FAILURE);
    }

    #[test]
    fn libiscsi_transcript_no_auth() {
        let mut m = machine(vec![target(None)], None);
        let s1 = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&[
                (
                    "InitiatorName",
                    "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-ls",
                ),
                ("TargetName", TGT),
                ("SessionType", "Normal"),
                ("HeaderDigest", "None,CRC32C"),
                ("AuthMethod", "None"),
            ]),
        );
        assert_eq!(flags(&s1), (true, Stage::Security, Stage::Operational));
        assert_eq!(get(&s1, "AuthMethod").as_deref(), Some("None"));
        assert_eq!(get(&s1, "HeaderDigest").as_deref(), Some("None"));
        let s2 = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[
                ("DataDigest", "None"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "262144"),
                ("MaxRecvDataSegmentLength", "262144"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
            ]),
        );
        let LoginStep::Complete { outcome, .. } = &s2 else {
            panic!("{s2:?}")
        };
        assert!(outcome.params.initial_r2t);
        assert_eq!(outcome.params.max_burst_length, 262144);
        assert!(!outcome.params.header_digest);

        // Operational stage straight away, no MaxRecvDataSegmentLength sent:
        // we still declare ours.
        let mut m = machine(vec![target(None)], None);
        let s = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[("InitiatorName", INI), ("TargetName", TGT)]),
        );
        let LoginStep::Complete { outcome, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(
            get(&s, "MaxRecvDataSegmentLength").as_deref(),
            Some("262144")
        );
        assert_eq!(get(&s, "TargetPortalGroupTag").as_deref(), Some("1"));
        assert_eq!(outcome.params.max_xmit_data_segment_length, 8192);
    }

    #[test]
    fn libiscsi_with_credentials_against_open_target() {
        // libiscsi offers CHAP,None; we pick None; its operational PDU then
        // carries InitiatorName/TargetName/SessionType again.
        let mut m = machine(vec![target(None)], None);
        let ident = [
            (
                "InitiatorName",
                "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
            ),
            ("TargetName", TGT),
            ("SessionType", "Normal"),
        ];
        let mut first: Vec<(&str, &str)> = ident.to_vec();
        first.push(("AuthMethod", "CHAP,None"));
        let s1 = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&first),
        );
        assert_eq!(flags(&s1), (true, Stage::Security, Stage::Operational));
        assert_eq!(get(&s1, "AuthMethod").as_deref(), Some("None"));
        let mut op: Vec<(&str, &str)> = ident.to_vec();
        op.extend_from_slice(&[
            ("HeaderDigest", "None,CRC32C"),
            ("DataDigest", "None"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("MaxConnections", "1"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ]);
        let s2 = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&op),
        );
        let LoginStep::Complete { .. } = &s2 else {
            panic!("{s2:?}")
        };
        // identity keys are not answered; every operational key is
        let answered: Vec<String> = keys(&s2).into_iter().map(|k| k.key).collect();
        let expect: Vec<&str> = op[3..].iter().map(|p| p.0).collect();
        assert_eq!(answered, expect);
    }

    #[test]
    fn discovery_login() {
        let mut m = machine(vec![target(Some(policy(false)))], None);
        let s1 = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&[
                ("InitiatorName", INI),
                ("SessionType", "Discovery"),
                ("AuthMethod", "None"),
            ]),
        );
        assert!(flags(&s1).0);
        assert_eq!(get(&s1, "TargetPortalGroupTag"), None);
        let s2 = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("ImmediateData", "Yes"),
                ("MaxRecvDataSegmentLength", "32768"),
            ]),
        );
        assert_eq!(get(&s2, "ImmediateData").as_deref(), Some("Irrelevant"));
        let LoginStep::Complete { outcome, .. } = &s2 else {
            panic!("{s2:?}")
        };
        assert_eq!(outcome.session_type, SessionType::Discovery);
        assert_eq!(outcome.target_name, None);
        assert_eq!(outcome.params.max_xmit_data_segment_length, 32768);

        // discovery CHAP required: None refused
        let mut m = machine(vec![], Some(policy(false)));
        let s = m.step(
            &req(Stage::Security, Some(Stage::Operational)),
            &txt(&[
                ("InitiatorName", INI),
                ("SessionType", "Discovery"),
                ("AuthMethod", "None"),
            ]),
        );
        assert_eq!(s.status(), status::AUTH_FAILURE);
        assert_eq!(get(&s, "AuthMethod").as_deref(), Some("Reject"));
    }

    fn first(m: &mut LoginMachine, pairs: &[(&str, &str)]) -> LoginStep {
        m.step(&req(Stage::Security, Some(Stage::Operational)), &txt(pairs))
    }

    #[test]
    fn failure_statuses() {
        let t = || vec![target(None)];
        let s = first(&mut machine(t(), None), &[("TargetName", TGT)]);
        assert_eq!(s.status(), status::MISSING_PARAMETER);
        let s = first(&mut machine(t(), None), &[("InitiatorName", INI)]);
        assert_eq!(s.status(), status::MISSING_PARAMETER);
        let s = first(
            &mut machine(t(), None),
            &[("InitiatorName", INI), ("TargetName", "iqn.nope")],
        );
        assert_eq!(s.status(), status::NOT_FOUND);
        let s = first(
            &mut machine(t(), None),
            &[("InitiatorName", INI), ("SessionType", "Weird")],
        );
        assert_eq!(s.status(), status::SESSION_TYPE_UNSUPPORTED);

        let mut acl = target(None);
        acl.allowed_initiators = Some(vec!["iqn.other".into(), INI.to_uppercase()]);
        let s = first(
            &mut machine(vec![acl.clone()], None),
            &[
                ("InitiatorName", INI),
                ("TargetName", TGT),
                ("AuthMethod", "None"),
            ],
        );
        assert!(
            matches!(s, LoginStep::Continue { .. }),
            "case-insensitive ACL"
        );
        acl.allowed_initiators = Some(vec!["iqn.other".into()]);
        let s = first(
            &mut machine(vec![acl], None),
            &[("InitiatorName", INI), ("TargetName", TGT)],
        );
        assert_eq!(s.status(), status::AUTHORIZATION_FAILURE);

        let mut m = machine(t(), None);
        let mut r = req(Stage::Security, None);
        r.version_min = 1;
        r.version_max = 2;
        assert_eq!(m.step(&r, b"").status(), status::UNSUPPORTED_VERSION);

        // CHAP configured: None refused, skipping security refused
        let s = first(
            &mut machine(vec![target(Some(policy(false)))], None),
            &[
                ("InitiatorName", INI),
                ("TargetName", TGT),
                ("AuthMethod", "None"),
            ],
        );
        assert_eq!(s.status(), status::AUTH_FAILURE);
        let mut m = machine(vec![target(Some(policy(false)))], None);
        let s = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[("InitiatorName", INI), ("TargetName", TGT)]),
        );
        assert_eq!(s.status(), status::AUTH_FAILURE);
        let s = first(
            &mut machine(vec![target(Some(policy(false)))], None),
            &[("InitiatorName", INI), ("TargetName", TGT)],
        );
        assert_eq!(s.status(), status::AUTH_FAILURE, "T=1 without AuthMethod");

        // No CHAP configured, initiator insists on CHAP
        let s = first(
            &mut machine(t(), None),
            &[
                ("InitiatorName", INI),
                ("TargetName", TGT),
                ("AuthMethod", "CHAP"),
            ],
        );
        assert_eq!(s.status(), status::AUTH_FAILURE);

        // malformed text
        let mut m = machine(t(), None);
        let s = m.step(&req(Stage::Security, None), b"InitiatorName\0");
        assert_eq!(s.status(), status::INITIATOR_ERROR);
        assert!(m.is_finished());
        assert_eq!(
            m.step(&req(Stage::Security, None), b"").status(),
            status::INITIATOR_ERROR
        );

        // CSG full feature, bad transition, wrong stage
        let mut m = machine(t(), None);
        let mut r = req(Stage::Security, None);
        r.csg = Stage::FullFeature;
        assert_eq!(m.step(&r, b"").status(), status::INITIATOR_ERROR);
        let mut m = machine(t(), None);
        let r = req(Stage::Operational, Some(Stage::Security));
        assert_eq!(m.step(&r, b"").status(), status::INITIATOR_ERROR);
        let mut m = machine(t(), None);
        let s = m.step(
            &req(Stage::Operational, None),
            &txt(&[("InitiatorName", INI), ("TargetName", TGT)]),
        );
        assert!(matches!(s, LoginStep::Continue { .. }));
        let s = m.step(&req(Stage::Security, None), b"");
        assert_eq!(s.status(), status::INITIATOR_ERROR);

        // non-login PDU during login
        let mut m = machine(t(), None);
        assert_eq!(m.invalid_request(5).status(), status::INVALID_DURING_LOGIN);
    }

    #[test]
    fn consistency_and_duplicates() {
        let base = [("InitiatorName", INI), ("TargetName", TGT)];
        for change in 0..4 {
            let mut m = machine(vec![target(None)], None);
            let s = m.step(&req(Stage::Operational, None), &txt(&base));
            assert!(matches!(s, LoginStep::Continue { .. }));
            let mut r = req(Stage::Operational, None);
            match change {
                0 => r.isid[5] ^= 1,
                1 => r.tsih = 9,
                2 => r.cid = 3,
                _ => r.cmdsn = 2,
            }
            assert_eq!(m.step(&r, b"").status(), status::INITIATOR_ERROR);
        }
        // key repeated in a later PDU
        let mut m = machine(vec![target(None)], None);
        m.step(
            &req(Stage::Operational, None),
            &txt(&[
                ("InitiatorName", INI),
                ("TargetName", TGT),
                ("MaxConnections", "1"),
            ]),
        );
        let s = m.step(
            &req(Stage::Operational, None),
            &txt(&[("MaxConnections", "1")]),
        );
        assert_eq!(s.status(), status::INITIATOR_ERROR);
        // identity keys may be repeated unchanged (libiscsi does), not changed
        let mut m = machine(vec![target(None)], None);
        m.step(&req(Stage::Operational, None), &txt(&base));
        let s = m.step(
            &req(Stage::Operational, None),
            &txt(&[
                ("TargetName", TGT),
                ("InitiatorName", INI),
                ("SessionType", "Normal"),
            ]),
        );
        assert!(matches!(s, LoginStep::Continue { .. }), "{s:?}");
        let s = m.step(
            &req(Stage::Operational, None),
            &txt(&[("TargetName", "iqn.2026-11.org.ironlun:other")]),
        );
        assert_eq!(s.status(), status::INITIATOR_ERROR);
        let mut m = machine(vec![target(None)], None);
        m.step(&req(Stage::Operational, None), &txt(&base));
        let s = m.step(
            &req(Stage::Operational, None),
            &txt(&[("SessionType", "Discovery")]),
        );
        assert_eq!(s.status(), status::INITIATOR_ERROR);
        // in the same PDU
        let mut m = machine(vec![target(None)], None);
        let s = m.step(
            &req(Stage::Operational, None),
            b"InitiatorName=a\0TargetName=b\0InitiatorName=a\0",
        );
        assert_eq!(s.status(), status::INITIATOR_ERROR);
    }

    #[test]
    fn continuation_assembles_text() {
        let mut m = machine(vec![target(None)], None);
        let all = txt(&[
            ("InitiatorName", INI),
            ("TargetName", TGT),
            ("AuthMethod", "None"),
        ]);
        let (a, b) = all.split_at(17);
        let mut r = req(Stage::Security, None);
        r.continue_ = true;
        let s = m.step(&r, a);
        assert!(matches!(s, LoginStep::Continue { .. }));
        assert!(s.data().is_empty());
        assert!(!flags(&s).0);
        let s = m.step(&req(Stage::Security, Some(Stage::FullFeature)), b);
        // Security -> full feature directly: declarations included.
        let LoginStep::Complete { .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(get(&s, "AuthMethod").as_deref(), Some("None"));
        assert_eq!(
            get(&s, "MaxRecvDataSegmentLength").as_deref(),
            Some("262144")
        );
        assert_eq!(get(&s, "TargetPortalGroupTag").as_deref(), Some("1"));

        // a continued text larger than the cap fails
        let mut m = LoginMachine::new(
            Arc::new(Dir {
                targets: vec![target(None)],
                discovery: None,
            }),
            "127.0.0.1:3260".parse().unwrap(),
            LoginSettings {
                max_text_len: 100,
                ..Default::default()
            },
        );
        let mut r = req(Stage::Security, None);
        r.continue_ = true;
        assert!(matches!(
            m.step(&r, &[b'a'; 80]),
            LoginStep::Continue { .. }
        ));
        assert_eq!(m.step(&r, &[b'a'; 80]).status(), status::INITIATOR_ERROR);
    }

    #[test]
    fn target_offers_hold_the_transit() {
        let mut m = LoginMachine::new(
            Arc::new(Dir {
                targets: vec![target(None)],
                discovery: None,
            }),
            "127.0.0.1:3260".parse().unwrap(),
            LoginSettings {
                negotiation: NegotiationSettings {
                    max_burst_length: 65536,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let s = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[("InitiatorName", INI), ("TargetName", TGT)]),
        );
        assert!(matches!(s, LoginStep::Continue { .. }), "{s:?}");
        assert!(!flags(&s).0);
        assert_eq!(get(&s, "MaxBurstLength").as_deref(), Some("65536"));
        let s = m.step(
            &req(Stage::Operational, Some(Stage::FullFeature)),
            &txt(&[("MaxBurstLength", "65536")]),
        );
        let LoginStep::Complete { outcome, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(outcome.params.max_burst_length, 65536);
        assert!(outcome.params.first_burst_length <= 65536);
    }

    #[test]
    fn random_logins_never_panic() {
        use rand::Rng;
        let mut rng = rand::rng();
        let keys = [
            "InitiatorName=iqn.x",
            "TargetName=iqn.2026-11.org.ironlun:default",
            "SessionType=Discovery",
            "SessionType=Normal",
            "AuthMethod=CHAP,None",
            "AuthMethod=None",
            "CHAP_A=5",
            "CHAP_N=user",
            "CHAP_R=0x00",
            "CHAP_I=1",
            "CHAP_C=0x1234",
            "MaxBurstLength=512",
            "HeaderDigest=CRC32C",
            "X-foo=bar",
            "garbage",
            "=",
        ];
        for round in 0..500 {
            let chap = (round % 2 == 0).then(|| policy(round % 4 == 0));
            let mut m = machine(vec![target(chap)], None);
            for _ in 0..8 {
                let stage = |v: u32| match v % 3 {
                    0 => Stage::Security,
                    1 => Stage::Operational,
                    _ => Stage::FullFeature,
                };
                let mut r = req(stage(rng.next_u32()), None);
                r.transit = rng.next_u32().is_multiple_of(2);
                r.nsg = stage(rng.next_u32());
                r.continue_ = !r.transit && rng.next_u32().is_multiple_of(5);
                let mut data = Vec::new();
                for _ in 0..rng.next_u32() % 5 {
                    data.extend_from_slice(keys[rng.next_u32() as usize % keys.len()].as_bytes());
                    data.push(0);
                }
                let s = m.step(&r, &data);
                if !matches!(s, LoginStep::Continue { .. }) {
                    break;
                }
            }
        }
    }
}
