//! CIM data types, values, object paths and instances (the typed model the
//! codec decodes into and the [`Provider`](crate::Provider) speaks).

use std::fmt;

/// A CIM intrinsic data type (DSP0004), plus `reference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CimType {
    Boolean,
    String,
    Char16,
    Uint8,
    Sint8,
    Uint16,
    Sint16,
    Uint32,
    Sint32,
    Uint64,
    Sint64,
    Real32,
    Real64,
    DateTime,
    Reference,
}

impl CimType {
    /// The DSP0201 `TYPE` / `PARAMTYPE` attribute spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::String => "string",
            CimType::Char16 => "char16",
            CimType::Uint8 => "uint8",
            CimType::Sint8 => "sint8",
            CimType::Uint16 => "uint16",
            CimType::Sint16 => "sint16",
            CimType::Uint32 => "uint32",
            CimType::Sint32 => "sint32",
            CimType::Uint64 => "uint64",
            CimType::Sint64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::DateTime => "datetime",
            CimType::Reference => "reference",
        }
    }

    /// Parses a `TYPE` / `PARAMTYPE` attribute (case-insensitive).
    pub fn parse(s: &str) -> Option<CimType> {
        let t = match s.to_ascii_lowercase().as_str() {
            "boolean" => CimType::Boolean,
            "string" => CimType::String,
            "char16" => CimType::Char16,
            "uint8" => CimType::Uint8,
            "sint8" => CimType::Sint8,
            "uint16" => CimType::Uint16,
            "sint16" => CimType::Sint16,
            "uint32" => CimType::Uint32,
            "sint32" => CimType::Sint32,
            "uint64" => CimType::Uint64,
            "sint64" => CimType::Sint64,
            "real32" => CimType::Real32,
            "real64" => CimType::Real64,
            "datetime" => CimType::DateTime,
            "reference" => CimType::Reference,
            _ => return None,
        };
        Some(t)
    }
}

/// A CIM value. Arrays hold scalar elements of one type.
#[derive(Clone, Debug, PartialEq)]
pub enum CimValue {
    Null,
    Boolean(bool),
    String(String),
    Char16(char),
    Uint8(u8),
    Sint8(i8),
    Uint16(u16),
    Sint16(i16),
    Uint32(u32),
    Sint32(i32),
    Uint64(u64),
    Sint64(i64),
    Real32(f32),
    Real64(f64),
    /// DSP0004 datetime string (timestamp `yyyymmddhhmmss.mmmmmmsutc` or
    /// interval `ddddddddhhmmss.mmmmmm:000`), already validated.
    DateTime(String),
    Reference(ObjectPath),
    /// An embedded instance (a string-typed property or parameter with the
    /// `EmbeddedInstance` qualifier).
    Instance(Box<Instance>),
    Array(Vec<CimValue>),
}

/// Why a text could not be read as a value of a CIM type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {ty}")]
pub struct ValueParseError {
    pub text: String,
    pub ty: &'static str,
}

impl CimValue {
    /// The type of a non-null scalar value (`None` for `Null` and arrays;
    /// embedded instances are `string` on the wire).
    pub fn cim_type(&self) -> Option<CimType> {
        Some(match self {
            CimValue::Null | CimValue::Array(_) => return None,
            CimValue::Boolean(_) => CimType::Boolean,
            CimValue::String(_) | CimValue::Instance(_) => CimType::String,
            CimValue::Char16(_) => CimType::Char16,
            CimValue::Uint8(_) => CimType::Uint8,
            CimValue::Sint8(_) => CimType::Sint8,
            CimValue::Uint16(_) => CimType::Uint16,
            CimValue::Sint16(_) => CimType::Sint16,
            CimValue::Uint32(_) => CimType::Uint32,
            CimValue::Sint32(_) => CimType::Sint32,
            CimValue::Uint64(_) => CimType::Uint64,
            CimValue::Sint64(_) => CimType::Sint64,
            CimValue::Real32(_) => CimType::Real32,
            CimValue::Real64(_) => CimType::Real64,
            CimValue::DateTime(_) => CimType::DateTime,
            CimValue::Reference(_) => CimType::Reference,
        })
    }

    /// Parses the text of a `<VALUE>` as `ty` (not `reference`).
    pub fn parse_scalar(text: &str, ty: CimType) -> Result<CimValue, ValueParseError> {
        let err = || ValueParseError {
            text: text.chars().take(64).collect(),
            ty: ty.as_str(),
        };
        let t = text.trim();
        fn int<T: std::str::FromStr>(t: &str) -> Option<T> {
            // DSP0201 allows a leading '+'; hex (0x..) is also allowed by DSP0004.
            let t = t.strip_prefix('+').unwrap_or(t);
            t.parse().ok()
        }
        Ok(match ty {
            CimType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" => CimValue::Boolean(true),
                "false" => CimValue::Boolean(false),
                _ => return Err(err()),
            },
            CimType::String => CimValue::String(text.to_string()),
            CimType::Char16 => {
                let mut c = text.chars();
                match (c.next(), c.next()) {
                    (Some(ch), None) => CimValue::Char16(ch),
                    _ => return Err(err()),
                }
            }
            CimType::Uint8 => CimValue::Uint8(int(t).ok_or_else(err)?),
            CimType::Sint8 => CimValue::Sint8(int(t).ok_or_else(err)?),
            CimType::Uint16 => CimValue::Uint16(int(t).ok_or_else(err)?),
            CimType::Sint16 => CimValue::Sint16(int(t).ok_or_else(err)?),
            CimType::Uint32 => CimValue::Uint32(int(t).ok_or_else(err)?),
            CimType::Sint32 => CimValue::Sint32(int(t).ok_or_else(err)?),
            CimType::Uint64 => CimValue::Uint64(int(t).ok_or_else(err)?),
            CimType::Sint64 => CimValue::Sint64(int(t).ok_or_else(err)?),
            CimType::Real32 => CimValue::Real32(t.parse().map_err(|_| err())?),
            CimType::Real64 => CimValue::Real64(t.parse().map_err(|_| err())?),
            CimType::DateTime => {
                if is_datetime(t) {
                    CimValue::DateTime(t.to_string())
                } else {
                    return Err(err());
                }
            }
            CimType::Reference => return Err(err()),
        })
    }

    /// The `<VALUE>` text of a scalar (`None` for null, arrays, references
    /// and embedded instances, which have their own encodings).
    pub fn scalar_text(&self) -> Option<String> {
        Some(match self {
            CimValue::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
            CimValue::String(s) | CimValue::DateTime(s) => s.clone(),
            CimValue::Char16(c) => c.to_string(),
            CimValue::Uint8(v) => v.to_string(),
            CimValue::Sint8(v) => v.to_string(),
            CimValue::Uint16(v) => v.to_string(),
            CimValue::Sint16(v) => v.to_string(),
            CimValue::Uint32(v) => v.to_string(),
            CimValue::Sint32(v) => v.to_string(),
            CimValue::Uint64(v) => v.to_string(),
            CimValue::Sint64(v) => v.to_string(),
            CimValue::Real32(v) => v.to_string(),
            CimValue::Real64(v) => v.to_string(),
            _ => return None,
        })
    }

    /// Unsigned integer view of any integer value (for enums and counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            CimValue::Uint8(v) => Some(v.into()),
            CimValue::Uint16(v) => Some(v.into()),
            CimValue::Uint32(v) => Some(v.into()),
            CimValue::Uint64(v) => Some(v),
            CimValue::Sint8(v) => u64::try_from(v).ok(),
            CimValue::Sint16(v) => u64::try_from(v).ok(),
            CimValue::Sint32(v) => u64::try_from(v).ok(),
            CimValue::Sint64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            CimValue::String(s) | CimValue::DateTime(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            CimValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_reference(&self) -> Option<&ObjectPath> {
        match self {
            CimValue::Reference(p) => Some(p),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, CimValue::Null)
    }
}

/// DSP0004 datetime syntax check (timestamp or interval; `*` wildcards allowed).
pub fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 25 || b[14] != b'.' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit() || *c == b'*');
    match b[21] {
        b':' => digits(0..14) && digits(15..21) && &b[22..] == b"000",
        b'+' | b'-' => digits(0..14) && digits(15..21) && digits(22..25),
        _ => false,
    }
}

/// The value of one key binding.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// `VALUETYPE="string"` (the default), with the optional DSP0201 2.4 TYPE.
    String(String),
    Boolean(bool),
    /// `VALUETYPE="numeric"`, kept as text (its CIM type is the key's).
    Numeric(String),
    /// A key that is itself a reference (association keys).
    Reference(Box<ObjectPath>),
}

impl KeyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            KeyValue::String(s) | KeyValue::Numeric(s) => Some(s),
            _ => None,
        }
    }

    fn matches(&self, other: &KeyValue) -> bool {
        match (self, other) {
            (KeyValue::Reference(a), KeyValue::Reference(b)) => a.same_instance(b),
            (KeyValue::Numeric(a), KeyValue::Numeric(b)) => {
                a.trim().parse::<i128>().ok() == b.trim().parse::<i128>().ok()
            }
            (KeyValue::String(a), KeyValue::Numeric(b))
            | (KeyValue::Numeric(b), KeyValue::String(a)) => a == b,
            (a, b) => a == b,
        }
    }
}

/// A CIM instance path (or, with no keys, a class path): optional host and
/// namespace, class name, key bindings in the order given.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObjectPath {
    pub host: Option<String>,
    pub namespace: Option<String>,
    pub class_name: String,
    pub keys: Vec<(String, KeyValue)>,
}

impl ObjectPath {
    pub fn new(class_name: impl Into<String>) -> Self {
        ObjectPath {
            class_name: class_name.into(),
            ..Default::default()
        }
    }

    /// Builder: adds a string key.
    pub fn key(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.keys
            .push((name.into(), KeyValue::String(value.into())));
        self
    }

    /// Builder: adds a reference key.
    pub fn key_ref(mut self, name: impl Into<String>, value: ObjectPath) -> Self {
        self.keys
            .push((name.into(), KeyValue::Reference(Box::new(value))));
        self
    }

    pub fn with_namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// The key binding named `name` (case-insensitive).
    pub fn get_key(&self, name: &str) -> Option<&KeyValue> {
        self.keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The string (or numeric text) of key `name`.
    pub fn key_str(&self, name: &str) -> Option<&str> {
        self.get_key(name).and_then(KeyValue::as_str)
    }

    /// True when both paths name the same instance: class names and key
    /// names compare case-insensitively, key order, host and namespace are
    /// ignored (a reference is resolved against the target namespace).
    pub fn same_instance(&self, other: &ObjectPath) -> bool {
        self.class_name.eq_ignore_ascii_case(&other.class_name)
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .all(|(k, v)| other.get_key(k).is_some_and(|o| v.matches(o)))
    }

    /// Like [`same_instance`](Self::same_instance) but ignores the class
    /// name (a client may name a superclass, e.g. `CIM_StorageVolume`).
    pub fn same_keys(&self, other: &ObjectPath) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .all(|(k, v)| other.get_key(k).is_some_and(|o| v.matches(o)))
    }
}

impl fmt::Display for ObjectPath {
    /// WBEM URI form: `//host/ns:Class.k="v",...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "//{h}/")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}:")?;
        }
        f.write_str(&self.class_name)?;
        for (i, (k, v)) in self.keys.iter().enumerate() {
            f.write_str(if i == 0 { "." } else { "," })?;
            match v {
                KeyValue::String(s) => write!(
                    f,
                    "{k}=\"{}\"",
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                )?,
                KeyValue::Numeric(s) => write!(f, "{k}={s}")?,
                KeyValue::Boolean(b) => write!(f, "{k}={}", if *b { "TRUE" } else { "FALSE" })?,
                KeyValue::Reference(p) => {
                    let s = p.to_string();
                    write!(
                        f,
                        "{k}=\"{}\"",
                        s.replace('\\', "\\\\").replace('"', "\\\"")
                    )?
                }
            }
        }
        Ok(())
    }
}

/// A CIM instance: class name and named property values. Values are typed
/// by the schema's property declarations when encoded; properties the
/// schema does not declare are encoded with the value's own type.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Instance {
    pub class_name: String,
    pub properties: Vec<(String, CimValue)>,
}

impl Instance {
    pub fn new(class_name: impl Into<String>) -> Self {
        Instance {
            class_name: class_name.into(),
            properties: Vec::new(),
        }
    }

    /// Builder: sets a property (replacing a previous value of that name).
    pub fn with(mut self, name: impl Into<String>, value: CimValue) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: impl Into<String>, value: CimValue) {
        let name = name.into();
        if let Some(slot) = self
            .properties
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            slot.1 = value;
        } else {
            self.properties.push((name, value));
        }
    }

    /// The value of property `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&CimValue> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_parse() {
        assert_eq!(
            CimValue::parse_scalar("8", CimType::Uint16),
            Ok(CimValue::Uint16(8))
        );
        assert_eq!(
            CimValue::parse_scalar("TRUE", CimType::Boolean),
            Ok(CimValue::Boolean(true))
        );
        assert!(CimValue::parse_scalar("70000", CimType::Uint16).is_err());
        assert!(CimValue::parse_scalar("-1", CimType::Uint32).is_err());
        assert!(CimValue::parse_scalar("x", CimType::Boolean).is_err());
        assert!(CimValue::parse_scalar("20260101120000.000000+000", CimType::DateTime).is_ok());
        assert!(CimValue::parse_scalar("00000000000500.000000:000", CimType::DateTime).is_ok());
        assert!(CimValue::parse_scalar("yesterday", CimType::DateTime).is_err());
    }

    #[test]
    fn path_equality_ignores_case_and_order() {
        let a = ObjectPath::new("CIM_StorageVolume")
            .key("DeviceID", "v1")
            .key("SystemName", "h");
        let b = ObjectPath::new("cim_storagevolume")
            .key("systemname", "h")
            .key("deviceid", "v1");
        assert!(a.same_instance(&b));
        let c = ObjectPath::new("CIM_StorageVolume")
            .key("DeviceID", "V1")
            .key("SystemName", "h");
        assert!(!a.same_instance(&c));
        assert_eq!(
            a.to_string(),
            "CIM_StorageVolume.DeviceID=\"v1\",SystemName=\"h\""
        );
    }
}
