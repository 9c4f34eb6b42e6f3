//! iSCSI text data segments (RFC 7143 6.1): ordered `key=value` pairs,
//! each terminated by a NUL byte.
//!
//! Pure: [`parse`] turns the bytes of a Login or Text Request data segment
//! into [`KeyValue`]s or a typed [`TextError`]; [`encode`] does the reverse.
//! [`TextAccumulator`] assembles text that spans several PDUs (C bit), with
//! a size cap so that a peer cannot make us buffer without bound.

use std::collections::HashSet;

/// Longest key name (RFC 7143 6.1: 63 bytes).
pub const MAX_KEY_LEN: usize = 63;
/// Longest ordinary value (RFC 7143 6.1: 255 bytes).
pub const MAX_VALUE_LEN: usize = 255;
/// Longest value of a key allowed to be longer: CHAP_C / CHAP_R carry up to
/// 1024 binary bytes (RFC 7143 12.1.3), i.e. 2 + 2048 characters in hex.
pub const MAX_LONG_VALUE_LEN: usize = 8192;
/// Most pairs accepted in one text (generous: RFC 7143 asks every side to
/// accept at least 8192 bytes of text, i.e. fewer than 4096 pairs).
pub const MAX_PAIRS: usize = 8192;
/// Default cap of an assembled multi-PDU text.
pub const DEFAULT_TEXT_CAP: usize = 64 * 1024;

/// One `key=value` pair, in the order it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Why a text segment was refused. Every variant is an initiator error
/// (login status 0x0200, or a Reject in full feature phase).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("pair {index} has no '='")]
    MissingEquals { index: usize },
    #[error("pair {index} has an empty key")]
    EmptyKey { index: usize },
    #[error("key of {len} bytes at pair {index} exceeds {MAX_KEY_LEN}")]
    KeyTooLong { index: usize, len: usize },
    #[error("key at pair {index} has a character outside the key alphabet")]
    InvalidKey { index: usize },
    #[error("value of {key} is {len} bytes, more than {max}")]
    ValueTooLong { key: String, len: usize, max: usize },
    #[error("pair {index} is not UTF-8")]
    NotUtf8 { index: usize },
    #[error("key {0} appears twice")]
    DuplicateKey(String),
    #[error("more than {MAX_PAIRS} pairs")]
    TooManyPairs,
    #[error("text of {len} bytes exceeds the cap of {cap}")]
    TooLarge { len: usize, cap: usize },
}

/// The longest value accepted for `key`.
pub fn max_value_len(key: &str) -> usize {
    match key {
        "CHAP_C" | "CHAP_R" => MAX_LONG_VALUE_LEN,
        _ => MAX_VALUE_LEN,
    }
}

fn key_char_ok(c: u8) -> bool {
    // RFC 7143 6.1: letters, digits, '.', '-', '+', '@', '_'; plus '#' for
    // the X#<IANA-registered-string> form and ':' seen in vendor keys.
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'@' | b'_' | b'#' | b':')
}

/// Parses a text data segment into ordered pairs. Empty entries (runs of
/// NULs, e.g. padding) are skipped; the last pair may lack its NUL. A key
/// appearing twice is an error.
pub fn parse(data: &[u8]) -> Result<Vec<KeyValue>, TextError> {
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (index, raw) in data.split(|&b| b == 0).enumerate() {
        if raw.is_empty() {
            continue;
        }
        if out.len() >= MAX_PAIRS {
            return Err(TextError::TooManyPairs);
        }
        let eq = raw
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TextError::MissingEquals { index })?;
        let (k, v) = (&raw[..eq], &raw[eq + 1..]);
        if k.is_empty() {
            return Err(TextError::EmptyKey { index });
        }
        if k.len() > MAX_KEY_LEN {
            return Err(TextError::KeyTooLong {
                index,
                len: k.len(),
            });
        }
        if !k.iter().all(|&c| key_char_ok(c)) {
            return Err(TextError::InvalidKey { index });
        }
        // The key alphabet is ASCII, so this cannot fail.
        let key = std::str::from_utf8(k).map_err(|_| TextError::InvalidKey { index })?;
        let max = max_value_len(key);
        if v.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_string(),
                len: v.len(),
                max,
            });
        }
        let value = std::str::from_utf8(v).map_err(|_| TextError::NotUtf8 { index })?;
        if !seen.insert(key) {
            return Err(TextError::DuplicateKey(key.to_string()));
        }
        out.push(KeyValue::new(key, value));
    }
    Ok(out)
}

/// Appends `key=value\0` to `out`.
pub fn encode_pair(out: &mut Vec<u8>, key: &str, value: &str) {
    out.reserve(key.len() + value.len() + 2);
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// Encodes pairs as a text data segment (each pair NUL-terminated).
pub fn encode(pairs: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.iter().map(|p| p.key.len() + p.value.len() + 2).sum());
    for p in pairs {
        encode_pair(&mut out, &p.key, &p.value);
    }
    out
}

/// Assembles the text of a sequence of PDUs with the C bit, refusing to
/// hold more than `cap` bytes.
#[derive(Debug, Clone)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    cap: usize,
}

impl Default for TextAccumulator {
    fn default() -> Self {
        TextAccumulator::new(DEFAULT_TEXT_CAP)
    }
}

impl TextAccumulator {
    pub fn new(cap: usize) -> TextAccumulator {
        TextAccumulator {
            buf: Vec::new(),
            cap,
        }
    }

    /// Adds one PDU's data segment.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.cap {
            return Err(TextError::TooLarge { len, cap: self.cap });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes held so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the assembled text, leaving the accumulator empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Adds the last PDU's data and parses the whole text.
    pub fn finish(&mut self, last: &[u8]) -> Result<Vec<KeyValue>, TextError> {
        let pushed = self.push(last);
        let all = self.take();
        pushed?;
        parse(&all)
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_trailing_nul() {
        let a = parse(b"InitiatorName=iqn.x\0SessionType=Normal\0").unwrap();
        let b = parse(b"InitiatorName=iqn.x\0SessionType=Normal").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], KeyValue::new("InitiatorName", "iqn.x"));
        assert_eq!(a[1].value, "Normal");
        assert!(parse(b"").unwrap().is_empty());
        // padding NULs are ignored; '=' inside a value is kept
        let c = parse(b"X-a=b=c\0\0\0\0").unwrap();
        assert_eq!(c, vec![KeyValue::new("X-a", "b=c")]);
        // empty values are allowed (SendTargets=)
        assert_eq!(parse(b"SendTargets=\0").unwrap()[0].value, "");
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            parse(b"A=1\0novalue\0"),
            Err(TextError::MissingEquals { index: 1 })
        );
        assert_eq!(parse(b"=1\0"), Err(TextError::EmptyKey { index: 0 }));
        let long_key = format!("{}=1", "K".repeat(64));
        assert!(matches!(
            parse(long_key.as_bytes()),
            Err(TextError::KeyTooLong { len: 64, .. })
        ));
        let ok_key = format!("{}=1", "K".repeat(63));
        assert!(parse(ok_key.as_bytes()).is_ok());
        let long_val = format!("TargetName={}", "v".repeat(256));
        assert!(matches!(
            parse(long_val.as_bytes()),
            Err(TextError::ValueTooLong { .. })
        ));
        let chap = format!("CHAP_R=0x{}", "ab".repeat(1024));
        assert!(parse(chap.as_bytes()).is_ok());
        assert_eq!(
            parse(b"A=1\0A=2\0"),
            Err(TextError::DuplicateKey("A".into()))
        );
        assert_eq!(parse(b"A=\xff\0"), Err(TextError::NotUtf8 { index: 0 }));
        assert_eq!(parse(b"A B=1"), Err(TextError::InvalidKey { index: 0 }));
        let many: Vec<u8> = (0..MAX_PAIRS + 1)
            .flat_map(|i| format!("X-k{i}=1\0").into_bytes())
            .collect();
        assert_eq!(parse(&many), Err(TextError::TooManyPairs));
    }

    #[test]
    fn encode_roundtrips() {
        let pairs = vec![
            KeyValue::new("HeaderDigest", "None"),
            KeyValue::new("MaxRecvDataSegmentLength", "262144"),
        ];
        let bytes = encode(&pairs);
        assert_eq!(
            bytes,
            b"HeaderDigest=None\0MaxRecvDataSegmentLength=262144\0".to_vec()
        );
        assert_eq!(parse(&bytes).unwrap(), pairs);
    }

    #[test]
    fn accumulator_joins_split_pairs_and_caps() {
        let mut acc = TextAccumulator::new(32);
        acc.push(b"HeaderDig").unwrap();
        let pairs = acc.finish(b"est=None\0").unwrap();
        assert_eq!(pairs, vec![KeyValue::new("HeaderDigest", "None")]);
        assert!(acc.is_empty());
        acc.push(&[b'a'; 30]).unwrap();
        assert_eq!(
            acc.push(&[b'a'; 3]),
            Err(TextError::TooLarge { len: 33, cap: 32 })
        );
        assert!(matches!(
            acc.finish(&[b'a'; 5]),
            Err(TextError::TooLarge { .. })
        ));
        assert!(acc.is_empty());
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::Rng;
        let mut rng = rand::rng();
        let alphabet = b"=\0AaZz09-._#X\xff\xc3";
        for _ in 0..2000 {
            let len = rng.next_u32() as usize % 300;
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.next_u32() as usize % alphabet.len()])
                .collect();
            if let Ok(pairs) = parse(&data) {
                assert_eq!(parse(&encode(&pairs)).unwrap(), pairs);
            }
        }
    }
}
