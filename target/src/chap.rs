//! CHAP authentication of the login security stage (RFC 1994, RFC 7143
//! 12.1.3), one-way and mutual, as the authenticating target.
//!
//! Exchange (after `AuthMethod=CHAP` was agreed):
//! 1. initiator `CHAP_A=<list>` → target `CHAP_A=<chosen>`, `CHAP_I=<id>`,
//!    `CHAP_C=<challenge>` (random, at least 16 bytes);
//! 2. initiator `CHAP_N=<user>`, `CHAP_R=<H(id‖secret‖challenge)>`, and for
//!    mutual CHAP its own `CHAP_I`, `CHAP_C` → the target verifies (in
//!    constant time) and, for mutual CHAP, answers `CHAP_N`, `CHAP_R`.
//!    A challenge equal to ours (reflection) is refused.
//!
//! Binary values are accepted in hex (`0x…`) and base64 (`0b…`); ours are
//! sent in hex. Algorithms (`CHAP_A`): SHA-256 (7), SHA-1 (6), MD5 (5); the
//! first of the initiator's list that we know is used. MD5 is what Windows,
//! ESXi and libiscsi send; open-iscsi proposes SHA3-256, SHA-256, SHA-1,
//! MD5 in that order, and in FIPS mode offers no MD5 at all, which is why
//! SHA-1/SHA-256 are here (crates sha1/sha2, same `digest` traits as md-5).
//! SHA3-256 (8) is not supported.

use base64::Engine as _;
use md5::{Digest, Md5};
use rand::Rng as _;

use crate::negotiation::parse_number;
use crate::text::KeyValue;

/// Shortest challenge we send (longer for digests longer than 16 bytes:
/// the challenge is as long as the digest).
pub const CHALLENGE_LEN: usize = 16;
/// Longest binary CHAP_C / CHAP_R accepted (RFC 7143 12.1.3).
pub const MAX_BINARY_LEN: usize = 1024;

/// A CHAP digest algorithm (`CHAP_A` value, IANA "PPP authentication
/// algorithms").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgorithm {
    Md5,
    Sha1,
    Sha256,
}

fn chap_hash<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut h = D::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().to_vec()
}

impl ChapAlgorithm {
    /// The `CHAP_A` code.
    pub fn code(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
        }
    }

    pub fn from_code(code: u64) -> Option<ChapAlgorithm> {
        match code {
            5 => Some(ChapAlgorithm::Md5),
            6 => Some(ChapAlgorithm::Sha1),
            7 => Some(ChapAlgorithm::Sha256),
            _ => None,
        }
    }

    /// Length of the digest in bytes.
    pub fn output_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 => 32,
        }
    }

    /// The CHAP response: H(id ‖ secret ‖ challenge).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        match self {
            ChapAlgorithm::Md5 => chap_hash::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha1 => chap_hash::<sha1::Sha1>(id, secret, challenge),
            ChapAlgorithm::Sha256 => chap_hash::<sha2::Sha256>(id, secret, challenge),
        }
    }
}

/// Credentials required of initiators logging in to a target (or to
/// discovery), and for mutual CHAP the target's own.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapPolicy {
    pub user: String,
    pub secret: Vec<u8>,
    /// (target user name, target secret) answered when the initiator
    /// challenges us.
    pub mutual: Option<(String, Vec<u8>)>,
}

impl std::fmt::Debug for ChapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapPolicy")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .field("mutual", &self.mutual.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Why CHAP failed. [`status`](ChapError::status) gives the login status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    #[error("no supported CHAP algorithm in {0:?}")]
    NoCommonAlgorithm(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {key}: {reason}")]
    Malformed { key: String, reason: &'static str },
    #[error("unknown CHAP user {0:?}")]
    UnknownUser(String),
    #[error("wrong CHAP response")]
    WrongResponse,
    #[error("initiator reflected our challenge")]
    Reflection,
    #[error("initiator asked for mutual CHAP, none configured")]
    MutualNotConfigured,
    #[error("unexpected {0} at this point of CHAP")]
    Unexpected(String),
}

impl ChapError {
    /// Login status class and detail (0x0207 missing parameter, 0x0200
    /// initiator error for malformed values, else 0x0201 authentication
    /// failure).
    pub fn status(&self) -> (u8, u8) {
        match self {
            ChapError::Missing(_) => (2, 0x07),
            ChapError::Malformed { .. } | ChapError::Unexpected(_) => (2, 0x00),
            _ => (2, 0x01),
        }
    }
}

/// Decodes a binary value: `0x`/`0X` hex (an odd digit count is allowed)
/// or `0b`/`0B` base64.
pub fn decode_binary(s: &str) -> Result<Vec<u8>, &'static str> {
    // `get` (not `split_at`): byte 2 may fall inside a multi-byte character.
    let (prefix, body) = match (s.get(..2), s.get(2..)) {
        (Some(p), Some(b)) => (p, b),
        _ => return Err("binary values start with 0x or 0b"),
    };
    let out = match prefix {
        "0x" | "0X" => {
            if !body.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("bad hex digit");
            }
            let digits = body.as_bytes();
            let mut out = Vec::with_capacity(digits.len().div_ceil(2));
            let nib = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            let mut i = 0;
            if digits.len() % 2 == 1 {
                out.push(nib(digits[0]));
                i = 1;
            }
            while i + 1 < digits.len() {
                out.push(nib(digits[i]) << 4 | nib(digits[i + 1]));
                i += 2;
            }
            out
        }
        "0b" | "0B" => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "bad base64")?,
        _ => return Err("binary values start with 0x or 0b"),
    };
    if out.is_empty() {
        return Err("empty");
    }
    if out.len() > MAX_BINARY_LEN {
        return Err("longer than 1024 bytes");
    }
    Ok(out)
}

/// Encodes bytes as `0x` followed by lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Compares without an early exit (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What one CHAP step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChapProgress {
    /// Nothing to do yet (the initiator has not sent CHAP_A).
    Pending,
    /// Send these keys (CHAP_A, CHAP_I, CHAP_C) and wait for the response.
    Challenge(Vec<KeyValue>),
    /// The initiator is authenticated; send these keys (our CHAP_N/CHAP_R
    /// for mutual CHAP, else none).
    Authenticated(Vec<KeyValue>),
}

#[derive(Debug, Clone)]
enum ChapState {
    WaitAlgorithm,
    WaitResponse {
        alg: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
}

/// The target side of one CHAP exchange.
#[derive(Debug, Clone)]
pub struct ChapAuthenticator {
    policy: ChapPolicy,
    state: ChapState,
    fixed: Option<(u8, Vec<u8>)>,
}

fn get<'a>(keys: &'a [KeyValue], key: &str) -> Option<&'a str> {
    keys.iter().find(|k| k.key == key).map(|k| k.value.as_str())
}

impl ChapAuthenticator {
    pub fn new(policy: ChapPolicy) -> ChapAuthenticator {
        ChapAuthenticator {
            policy,
            state: ChapState::WaitAlgorithm,
            fixed: None,
        }
    }

    /// Uses a given identifier and challenge instead of random ones (tests
    /// and known-answer vectors only).
    pub fn with_challenge(policy: ChapPolicy, id: u8, challenge: Vec<u8>) -> ChapAuthenticator {
        ChapAuthenticator {
            policy,
            state: ChapState::WaitAlgorithm,
            fixed: Some((id, challenge)),
        }
    }

    /// Whether the initiator has been authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChapState::Done)
    }

    /// Feeds the CHAP_* keys of one request (other keys are ignored).
    pub fn step(&mut self, keys: &[KeyValue]) -> Result<ChapProgress, ChapError> {
        let chap: Vec<&KeyValue> = keys.iter().filter(|k| k.key.starts_with("CHAP_")).collect();
        match &self.state {
            ChapState::WaitAlgorithm => {
                if let Some(k) = chap.iter().find(|k| k.key != "CHAP_A") {
                    return Err(ChapError::Unexpected(k.key.clone()));
                }
                let Some(list) = get(keys, "CHAP_A") else {
                    return Ok(ChapProgress::Pending);
                };
                let alg = list
                    .split(',')
                    .filter_map(parse_number)
                    .find_map(ChapAlgorithm::from_code)
                    .ok_or_else(|| ChapError::NoCommonAlgorithm(list.to_string()))?;
                let (id, challenge) = match &self.fixed {
                    Some((id, c)) => (*id, c.clone()),
                    None => {
                        let mut rng = rand::rng();
                        let mut c = vec![0u8; CHALLENGE_LEN.max(alg.output_len())];
                        rng.fill_bytes(&mut c);
                        let mut id = [0u8; 1];
                        rng.fill_bytes(&mut id);
                        (id[0], c)
                    }
                };
                let out = vec![
                    KeyValue::new("CHAP_A", alg.code().to_string()),
                    KeyValue::new("CHAP_I", id.to_string()),
                    KeyValue::new("CHAP_C", encode_hex(&challenge)),
                ];
                self.state = ChapState::WaitResponse { alg, id, challenge };
                Ok(ChapProgress::Challenge(out))
            }
            ChapState::WaitResponse { alg, id, challenge } => {
                if let Some(k) = chap
                    .iter()
                    .find(|k| !matches!(k.key.as_str(), "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C"))
                {
                    return Err(ChapError::Unexpected(k.key.clone()));
                }
                if chap.is_empty() {
                    return Ok(ChapProgress::Pending);
                }
                let name = get(keys, "CHAP_N").ok_or(ChapError::Missing("CHAP_N"))?;
                let r = get(keys, "CHAP_R").ok_or(ChapError::Missing("CHAP_R"))?;
                let r = decode_binary(r).map_err(|reason| ChapError::Malformed {
                    key: "CHAP_R".into(),
                    reason,
                })?;
                // Compute first so that a wrong user costs the same time.
                let expected = alg.response(*id, &self.policy.secret, challenge);
                let response_ok = ct_eq(&expected, &r);
                if name != self.policy.user {
                    return Err(ChapError::UnknownUser(name.to_string()));
                }
                if !response_ok {
                    return Err(ChapError::WrongResponse);
                }
                let mut out = Vec::new();
                match (get(keys, "CHAP_I"), get(keys, "CHAP_C")) {
                    (None, None) => {}
                    (Some(_), None) => return Err(ChapError::Missing("CHAP_C")),
                    (None, Some(_)) => return Err(ChapError::Missing("CHAP_I")),
                    (Some(i), Some(c)) => {
                        let i = parse_number(i).filter(|v| *v <= 255).ok_or_else(|| {
                            ChapError::Malformed {
                                key: "CHAP_I".into(),
                                reason: "not a number 0..255",
                            }
                        })? as u8;
                        let c = decode_binary(c).map_err(|reason| ChapError::Malformed {
                            key: "CHAP_C".into(),
                            reason,
                        })?;
                        if ct_eq(&c, challenge) {
                            return Err(ChapError::Reflection);
                        }
                        let (tuser, tsecret) = self
                            .policy
                            .mutual
                            .as_ref()
                            .ok_or(ChapError::MutualNotConfigured)?;
                        out.push(KeyValue::new("CHAP_N", tuser.clone()));
                        out.push(KeyValue::new(
                            "CHAP_R",
                            encode_hex(&alg.response(i, tsecret, &c)),
                        ));
                    }
                }
                self.state = ChapState::Done;
                Ok(ChapProgress::Authenticated(out))
            }
            ChapState::Done => match chap.first() {
                Some(k) => Err(ChapError::Unexpected(k.key.clone())),
                None => Ok(ChapProgress::Pending),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k, v)
    }

    fn policy(mutual: bool) -> ChapPolicy {
        ChapPolicy {
            user: "alice".into(),
            secret: b"alice-secret-123".to_vec(),
            mutual: mutual.then(|| ("target".to_string(), b"target-secret-45".to_vec())),
        }
    }

    #[test]
    fn md5_known_answer() {
        // RFC 1994: MD5(identifier || secret || challenge). Known answer
        // computed independently: printf '\x01secret\x00\x01...' | md5sum.
        let r = ChapAlgorithm::Md5.response(1, b"secret", &[0u8, 1, 2, 3]);
        let mut h = Md5::new();
        h.update(b"\x01secret\x00\x01\x02\x03");
        assert_eq!(r, h.finalize().to_vec());
        // MD5("") vector, to pin the primitive itself
        assert_eq!(
            encode_hex(&Md5::digest(b"")),
            "0xd41d8cd98f00b204e9800998ecf8427e"
        );
        // id 0x07, secret "abc", challenge "xyz" = MD5("\x07abcxyz")
        assert_eq!(
            encode_hex(&ChapAlgorithm::Md5.response(7, b"abc", b"xyz")),
            encode_hex(&Md5::digest(b"\x07abcxyz"))
        );
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0102ff").unwrap(), vec![1, 2, 255]);
        assert_eq!(decode_binary("0XABC").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(decode_binary("0bAQL/").unwrap(), vec![1, 2, 255]);
        assert!(decode_binary("0x").is_err());
        assert!(decode_binary("0xzz").is_err());
        assert!(decode_binary("1234").is_err());
        assert!(decode_binary("0b!!").is_err());
        assert!(decode_binary("").is_err());
        assert!(decode_binary("0é00").is_err());
        assert!(decode_binary("é").is_err());
        assert!(decode_binary(&format!("0x{}", "00".repeat(1025))).is_err());
        assert_eq!(encode_hex(&[0, 0xab]), "0x00ab");
        assert!(ct_eq(b"ab", b"ab") && !ct_eq(b"ab", b"ac") && !ct_eq(b"a", b"ab"));
    }

    fn challenge_of(out: &[KeyValue]) -> (u8, Vec<u8>) {
        let id = parse_number(get(out, "CHAP_I").unwrap()).unwrap() as u8;
        let c = decode_binary(get(out, "CHAP_C").unwrap()).unwrap();
        (id, c)
    }

    #[test]
    fn one_way_success_and_failure() {
        let mut a = ChapAuthenticator::new(policy(false));
        assert_eq!(a.step(&[]).unwrap(), ChapProgress::Pending);
        let ChapProgress::Challenge(out) = a.step(&[kv("CHAP_A", "9,5")]).unwrap() else {
            panic!()
        };
        assert_eq!(get(&out, "CHAP_A"), Some("5"));
        let (id, c) = challenge_of(&out);
        assert!(c.len() >= 16);
        let r = ChapAlgorithm::Md5.response(id, b"alice-secret-123", &c);
        let mut wrong = a.clone();
        let res = wrong
            .step(&[
                kv("CHAP_N", "alice"),
                kv(
                    "CHAP_R",
                    &encode_hex(&ChapAlgorithm::Md5.response(id, b"nope", &c)),
                ),
            ])
            .unwrap_err();
        assert_eq!(res, ChapError::WrongResponse);
        assert_eq!(res.status(), (2, 1));
        let mut who = a.clone();
        assert_eq!(
            who.step(&[kv("CHAP_N", "bob"), kv("CHAP_R", &encode_hex(&r))])
                .unwrap_err(),
            ChapError::UnknownUser("bob".into())
        );
        let mut missing = a.clone();
        assert_eq!(
            missing.step(&[kv("CHAP_N", "alice")]).unwrap_err().status(),
            (2, 7)
        );
        // base64 response accepted too
        let b64 = format!("0b{}", base64::engine::general_purpose::STANDARD.encode(&r));
        assert_eq!(
            a.step(&[kv("CHAP_N", "alice"), kv("CHAP_R", &b64)])
                .unwrap(),
            ChapProgress::Authenticated(vec![])
        );
        assert!(a.is_done());
        assert!(a.step(&[kv("CHAP_A", "5")]).is_err());
    }

    #[test]
    fn sha_known_answers_and_choice() {
        // SHA-1("abc") and SHA-256("abc") (FIPS 180 examples) pin the
        // primitives; CHAP hashes id ‖ secret ‖ challenge.
        assert_eq!(
            encode_hex(&sha1::Sha1::digest(b"abc")),
            "0xa9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            encode_hex(&sha2::Sha256::digest(b"abc")),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // id 'a' (0x61), secret "b", challenge "c" hashes "abc"
        assert_eq!(
            ChapAlgorithm::Sha256.response(b'a', b"b", b"c"),
            sha2::Sha256::digest(b"abc").to_vec()
        );
        assert_eq!(
            ChapAlgorithm::Sha1.response(b'a', b"b", b"c"),
            sha1::Sha1::digest(b"abc").to_vec()
        );
        // open-iscsi's list: SHA3-256 unknown, SHA-256 chosen, 32-byte challenge
        let mut a = ChapAuthenticator::new(policy(false));
        let ChapProgress::Challenge(out) = a.step(&[kv("CHAP_A", "8,7,6,5")]).unwrap() else {
            panic!()
        };
        assert_eq!(get(&out, "CHAP_A"), Some("7"));
        let (id, c) = challenge_of(&out);
        assert_eq!(c.len(), 32);
        let r = ChapAlgorithm::Sha256.response(id, b"alice-secret-123", &c);
        assert_eq!(r.len(), 32);
        assert_eq!(
            a.step(&[kv("CHAP_N", "alice"), kv("CHAP_R", &encode_hex(&r))])
                .unwrap(),
            ChapProgress::Authenticated(vec![])
        );
        // an MD5 response to a SHA-256 challenge fails
        let mut a = ChapAuthenticator::new(policy(false));
        let ChapProgress::Challenge(out) = a.step(&[kv("CHAP_A", "6,5")]).unwrap() else {
            panic!()
        };
        assert_eq!(get(&out, "CHAP_A"), Some("6"));
        let (id, c) = challenge_of(&out);
        let r = ChapAlgorithm::Md5.response(id, b"alice-secret-123", &c);
        assert_eq!(
            a.step(&[kv("CHAP_N", "alice"), kv("CHAP_R", &encode_hex(&r))])
                .unwrap_err(),
            ChapError::WrongResponse
        );
    }

    #[test]
    fn unsupported_algorithm() {
        let mut a = ChapAuthenticator::new(policy(false));
        let e = a.step(&[kv("CHAP_A", "8,9")]).unwrap_err();
        assert_eq!(e.status(), (2, 1));
        let mut a = ChapAuthenticator::new(policy(false));
        assert!(matches!(
            a.step(&[kv("CHAP_N", "alice")]),
            Err(ChapError::Unexpected(_))
        ));
    }

    #[test]
    fn mutual_known_answer_and_reflection() {
        let ours = vec![0x11u8; 16];
        let mut a = ChapAuthenticator::with_challenge(policy(true), 9, ours.clone());
        let ChapProgress::Challenge(out) = a.step(&[kv("CHAP_A", "5")]).unwrap() else {
            panic!()
        };
        assert_eq!(get(&out, "CHAP_I"), Some("9"));
        assert_eq!(get(&out, "CHAP_C"), Some(encode_hex(&ours).as_str()));
        let r = ChapAlgorithm::Md5.response(9, b"alice-secret-123", &ours);
        let their_c = vec![0x22u8; 20];

        let mut refl = a.clone();
        assert_eq!(
            refl.step(&[
                kv("CHAP_N", "alice"),
                kv("CHAP_R", &encode_hex(&r)),
                kv("CHAP_I", "9"),
                kv("CHAP_C", &encode_hex(&ours)),
            ])
            .unwrap_err(),
            ChapError::Reflection
        );

        let got = a
            .step(&[
                kv("CHAP_N", "alice"),
                kv("CHAP_R", &encode_hex(&r)),
                kv("CHAP_I", "200"),
                kv("CHAP_C", &encode_hex(&their_c)),
            ])
            .unwrap();
        let mut h = Md5::new();
        h.update([200u8]);
        h.update(b"target-secret-45");
        h.update(&their_c);
        assert_eq!(
            got,
            ChapProgress::Authenticated(vec![
                kv("CHAP_N", "target"),
                kv("CHAP_R", &encode_hex(&h.finalize()))
            ])
        );

        // mutual asked, none configured
        let mut one = ChapAuthenticator::with_challenge(policy(false), 9, ours.clone());
        one.step(&[kv("CHAP_A", "5")]).unwrap();
        assert_eq!(
            one.step(&[
                kv("CHAP_N", "alice"),
                kv("CHAP_R", &encode_hex(&r)),
                kv("CHAP_I", "1"),
                kv("CHAP_C", "0x1234"),
            ])
            .unwrap_err(),
            ChapError::MutualNotConfigured
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let s = format!("{:?}", policy(true));
        assert!(!s.contains("secret-1") && !s.contains("secret-4"), "{s}");
    }
}
