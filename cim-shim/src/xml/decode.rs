//! Decoding of CIM-XML requests (DSP0201 `<CIM><MESSAGE><SIMPLEREQ>`) into
//! typed calls, and of `<INSTANCE>` documents (embedded instances).

use super::dom::{self, Element, Limits, XmlError};
use crate::value::{CimType, CimValue, Instance, KeyValue, ObjectPath};

/// Why a request body could not be decoded. `Xml` maps to the HTTP
/// `CIMError: request-not-well-formed`, `Invalid` to `request-not-valid`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("not a valid CIM-XML request: {0}")]
    Invalid(String),
    #[error("multiple requests are not supported")]
    MultipleRequests,
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Invalid(msg.into()))
}

/// A decoded request message.
#[derive(Clone, Debug, PartialEq)]
pub struct CimRequest {
    /// `MESSAGE ID`, echoed in the response.
    pub message_id: String,
    /// `MESSAGE PROTOCOLVERSION`.
    pub protocol_version: String,
    pub call: Call,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `<IMETHODCALL>`: an intrinsic operation on a namespace.
    Intrinsic(IMethodCall),
    /// `<METHODCALL>`: an extrinsic method on an instance or class.
    Extrinsic(MethodCall),
}

impl Call {
    pub fn name(&self) -> &str {
        match self {
            Call::Intrinsic(c) => &c.name,
            Call::Extrinsic(c) => &c.name,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct IMethodCall {
    pub name: String,
    /// Namespace from `LOCALNAMESPACEPATH`, `/`-joined.
    pub namespace: String,
    pub params: Vec<IParam>,
}

impl IMethodCall {
    /// Parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&IParamValue> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| &p.value)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct IParam {
    pub name: String,
    pub value: IParamValue,
}

/// The content of one `<IPARAMVALUE>`.
#[derive(Clone, Debug, PartialEq)]
pub enum IParamValue {
    /// No content (NULL).
    Null,
    /// `<VALUE>` text.
    Value(String),
    /// `<VALUE.ARRAY>` (NULL elements as `None`).
    Array(Vec<Option<String>>),
    /// `<VALUE.REFERENCE>`.
    Reference(ObjectPath),
    /// `<INSTANCENAME>`.
    InstanceName(ObjectPath),
    /// `<CLASSNAME>`.
    ClassName(String),
    /// Anything else (e.g. `INSTANCE`, `CLASS` for the create/modify
    /// operations, which are not supported): the element name.
    Other(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodCall {
    pub name: String,
    /// The target: an instance path (keys present) or a class path (no
    /// keys); `namespace` always set.
    pub target: ObjectPath,
    pub params: Vec<RawParam>,
}

/// One `<PARAMVALUE>` as sent; typed later from the method declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct RawParam {
    pub name: String,
    /// `PARAMTYPE` (pywbem sends it, wbemcli does not).
    pub param_type: Option<String>,
    /// `EmbeddedObject` attribute (`instance` / `object`), if any.
    pub embedded_object: Option<String>,
    pub value: RawValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    Null,
    Scalar(String),
    Array(Vec<Option<String>>),
    Reference(ObjectPath),
    RefArray(Vec<ObjectPath>),
}

/// Decodes a request body with `limits`.
pub fn decode_request(body: &str, limits: &Limits) -> Result<CimRequest, DecodeError> {
    let root = dom::parse(body, limits)?;
    if root.name != "CIM" {
        return invalid(format!("root element is <{}>, expected <CIM>", root.name));
    }
    let msg = root
        .child("MESSAGE")
        .ok_or(DecodeError::Invalid("no <MESSAGE>".into()))?;
    let message_id = msg
        .attr("ID")
        .ok_or(DecodeError::Invalid("<MESSAGE> has no ID".into()))?
        .to_string();
    let protocol_version = msg.attr("PROTOCOLVERSION").unwrap_or("1.0").to_string();
    if msg.child("MULTIREQ").is_some() {
        return Err(DecodeError::MultipleRequests);
    }
    let req = msg
        .child("SIMPLEREQ")
        .ok_or(DecodeError::Invalid("no <SIMPLEREQ>".into()))?;
    let call = if let Some(im) = req.child("IMETHODCALL") {
        Call::Intrinsic(decode_imethodcall(im)?)
    } else if let Some(m) = req.child("METHODCALL") {
        Call::Extrinsic(decode_methodcall(m)?)
    } else {
        return invalid("<SIMPLEREQ> holds neither <IMETHODCALL> nor <METHODCALL>");
    };
    Ok(CimRequest {
        message_id,
        protocol_version,
        call,
    })
}

fn name_attr(el: &Element) -> Result<String, DecodeError> {
    match el.attr("NAME") {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => invalid(format!("<{}> has no NAME", el.name)),
    }
}

fn decode_imethodcall(el: &Element) -> Result<IMethodCall, DecodeError> {
    let name = name_attr(el)?;
    let ns = el.child("LOCALNAMESPACEPATH").ok_or(DecodeError::Invalid(
        "<IMETHODCALL> has no <LOCALNAMESPACEPATH>".into(),
    ))?;
    let namespace = local_namespace(ns)?;
    let mut params = Vec::new();
    for p in el.children_named("IPARAMVALUE") {
        let pname = name_attr(p)?;
        if params
            .iter()
            .any(|q: &IParam| q.name.eq_ignore_ascii_case(&pname))
        {
            return invalid(format!("parameter {pname} given twice"));
        }
        let value = match p.children.first() {
            None => IParamValue::Null,
            Some(c) => match c.name.as_str() {
                "VALUE" => IParamValue::Value(c.text.clone()),
                "VALUE.ARRAY" => IParamValue::Array(value_array(c)?),
                "VALUE.REFERENCE" => IParamValue::Reference(value_reference(c)?),
                "INSTANCENAME" => IParamValue::InstanceName(instance_name(c)?),
                "CLASSNAME" => IParamValue::ClassName(name_attr(c)?),
                other => IParamValue::Other(other.to_string()),
            },
        };
        params.push(IParam { name: pname, value });
    }
    Ok(IMethodCall {
        name,
        namespace,
        params,
    })
}

fn decode_methodcall(el: &Element) -> Result<MethodCall, DecodeError> {
    let name = name_attr(el)?;
    let target = if let Some(lip) = el.child("LOCALINSTANCEPATH") {
        local_instance_path(lip)?
    } else if let Some(lcp) = el.child("LOCALCLASSPATH") {
        let ns = lcp.child("LOCALNAMESPACEPATH").ok_or(DecodeError::Invalid(
            "<LOCALCLASSPATH> has no namespace".into(),
        ))?;
        let cn = lcp.child("CLASSNAME").ok_or(DecodeError::Invalid(
            "<LOCALCLASSPATH> has no <CLASSNAME>".into(),
        ))?;
        ObjectPath {
            namespace: Some(local_namespace(ns)?),
            class_name: name_attr(cn)?,
            ..Default::default()
        }
    } else {
        return invalid("<METHODCALL> has no <LOCALINSTANCEPATH> or <LOCALCLASSPATH>");
    };
    let mut params = Vec::new();
    for p in el.children_named("PARAMVALUE") {
        let pname = name_attr(p)?;
        if params
            .iter()
            .any(|q: &RawParam| q.name.eq_ignore_ascii_case(&pname))
        {
            return invalid(format!("parameter {pname} given twice"));
        }
        let value = match p.children.first() {
            None => RawValue::Null,
            Some(c) => match c.name.as_str() {
                "VALUE" => RawValue::Scalar(c.text.clone()),
                "VALUE.ARRAY" => RawValue::Array(value_array(c)?),
                "VALUE.REFERENCE" => RawValue::Reference(value_reference(c)?),
                "VALUE.REFARRAY" => RawValue::RefArray(
                    c.children
                        .iter()
                        .filter(|r| r.name == "VALUE.REFERENCE")
                        .map(value_reference)
                        .collect::<Result<_, _>>()?,
                ),
                // Some clients send an embedded instance as raw XML rather
                // than escaped text; keep it as its string form is lost.
                other => return invalid(format!("unexpected <{other}> in <PARAMVALUE>")),
            },
        };
        params.push(RawParam {
            name: pname,
            param_type: p.attr("PARAMTYPE").map(str::to_string),
            embedded_object: p
                .attr("EmbeddedObject")
                .or_else(|| p.attr("EMBEDDEDOBJECT"))
                .map(str::to_string),
            value,
        });
    }
    Ok(MethodCall {
        name,
        target,
        params,
    })
}

fn value_array(el: &Element) -> Result<Vec<Option<String>>, DecodeError> {
    el.children
        .iter()
        .map(|c| match c.name.as_str() {
            "VALUE" => Ok(Some(c.text.clone())),
            "VALUE.NULL" => Ok(None),
            other => invalid(format!("unexpected <{other}> in <VALUE.ARRAY>")),
        })
        .collect()
}

/// `LOCALNAMESPACEPATH` → `root/cimv2/...`.
fn local_namespace(el: &Element) -> Result<String, DecodeError> {
    let parts: Vec<String> = el
        .children_named("NAMESPACE")
        .map(name_attr)
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return invalid("empty <LOCALNAMESPACEPATH>");
    }
    Ok(parts.join("/"))
}

fn local_instance_path(el: &Element) -> Result<ObjectPath, DecodeError> {
    let ns = el.child("LOCALNAMESPACEPATH").ok_or(DecodeError::Invalid(
        "<LOCALINSTANCEPATH> has no namespace".into(),
    ))?;
    let inst = el.child("INSTANCENAME").ok_or(DecodeError::Invalid(
        "<LOCALINSTANCEPATH> has no <INSTANCENAME>".into(),
    ))?;
    let mut p = instance_name(inst)?;
    p.namespace = Some(local_namespace(ns)?);
    Ok(p)
}

fn namespace_path(el: &Element) -> Result<(String, String), DecodeError> {
    let host = el
        .child("HOST")
        .ok_or(DecodeError::Invalid("<NAMESPACEPATH> has no <HOST>".into()))?
        .text
        .trim()
        .to_string();
    let ns = el.child("LOCALNAMESPACEPATH").ok_or(DecodeError::Invalid(
        "<NAMESPACEPATH> has no namespace".into(),
    ))?;
    Ok((host, local_namespace(ns)?))
}

/// `<VALUE.REFERENCE>` holding `INSTANCENAME`, `LOCALINSTANCEPATH` or
/// `INSTANCEPATH` (or the class-path forms).
pub fn value_reference(el: &Element) -> Result<ObjectPath, DecodeError> {
    let c = match el.children.first() {
        Some(c) => c,
        None => return invalid("empty <VALUE.REFERENCE>"),
    };
    match c.name.as_str() {
        "INSTANCENAME" => instance_name(c),
        "LOCALINSTANCEPATH" => local_instance_path(c),
        "INSTANCEPATH" => {
            let np = c.child("NAMESPACEPATH").ok_or(DecodeError::Invalid(
                "<INSTANCEPATH> has no <NAMESPACEPATH>".into(),
            ))?;
            let (host, ns) = namespace_path(np)?;
            let inst = c.child("INSTANCENAME").ok_or(DecodeError::Invalid(
                "<INSTANCEPATH> has no <INSTANCENAME>".into(),
            ))?;
            let mut p = instance_name(inst)?;
            p.host = (!host.is_empty()).then_some(host);
            p.namespace = Some(ns);
            Ok(p)
        }
        "CLASSNAME" => Ok(ObjectPath::new(name_attr(c)?)),
        "LOCALCLASSPATH" => {
            let ns = c.child("LOCALNAMESPACEPATH").ok_or(DecodeError::Invalid(
                "<LOCALCLASSPATH> has no namespace".into(),
            ))?;
            let cn = c.child("CLASSNAME").ok_or(DecodeError::Invalid(
                "<LOCALCLASSPATH> has no <CLASSNAME>".into(),
            ))?;
            Ok(ObjectPath::new(name_attr(cn)?).with_namespace(local_namespace(ns)?))
        }
        "CLASSPATH" => {
            let np = c.child("NAMESPACEPATH").ok_or(DecodeError::Invalid(
                "<CLASSPATH> has no <NAMESPACEPATH>".into(),
            ))?;
            let (host, ns) = namespace_path(np)?;
            let cn = c.child("CLASSNAME").ok_or(DecodeError::Invalid(
                "<CLASSPATH> has no <CLASSNAME>".into(),
            ))?;
            let mut p = ObjectPath::new(name_attr(cn)?).with_namespace(ns);
            p.host = (!host.is_empty()).then_some(host);
            Ok(p)
        }
        other => invalid(format!("unexpected <{other}> in <VALUE.REFERENCE>")),
    }
}

/// `<INSTANCENAME CLASSNAME=..>` with `KEYBINDING`s (each a `KEYVALUE` or a
/// nested `VALUE.REFERENCE`).
pub fn instance_name(el: &Element) -> Result<ObjectPath, DecodeError> {
    let class_name = match el.attr("CLASSNAME") {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => return invalid("<INSTANCENAME> has no CLASSNAME"),
    };
    let mut keys = Vec::new();
    for kb in el.children_named("KEYBINDING") {
        let kname = name_attr(kb)?;
        let v = kb.children.first().ok_or(DecodeError::Invalid(format!(
            "key binding {kname} is empty"
        )))?;
        let kv = match v.name.as_str() {
            "KEYVALUE" => key_value(v)?,
            "VALUE.REFERENCE" => KeyValue::Reference(Box::new(value_reference(v)?)),
            other => return invalid(format!("unexpected <{other}> in <KEYBINDING>")),
        };
        keys.push((kname, kv));
    }
    if keys.is_empty() {
        // Single-key shorthand: a bare KEYVALUE / VALUE.REFERENCE.
        if el.child("KEYVALUE").is_some() || el.child("VALUE.REFERENCE").is_some() {
            return invalid("unnamed key values are not supported; use <KEYBINDING>");
        }
    }
    Ok(ObjectPath {
        host: None,
        namespace: None,
        class_name,
        keys,
    })
}

fn key_value(el: &Element) -> Result<KeyValue, DecodeError> {
    let vt = el.attr("VALUETYPE").unwrap_or("string");
    Ok(match vt.to_ascii_lowercase().as_str() {
        "string" => KeyValue::String(el.text.clone()),
        "boolean" => match el.text.trim().to_ascii_lowercase().as_str() {
            "true" => KeyValue::Boolean(true),
            "false" => KeyValue::Boolean(false),
            _ => return invalid(format!("bad boolean key value {:?}", el.text)),
        },
        "numeric" => {
            let t = el.text.trim();
            if t.parse::<i128>().is_err() && t.parse::<f64>().is_err() {
                return invalid(format!("bad numeric key value {t:?}"));
            }
            KeyValue::Numeric(t.to_string())
        }
        other => return invalid(format!("bad VALUETYPE {other:?}")),
    })
}

/// Decodes an `<INSTANCE>` document (an embedded instance's text).
/// Property values are typed by their `TYPE` attributes.
pub fn decode_instance(xml: &str, limits: &Limits) -> Result<Instance, DecodeError> {
    let el = dom::parse(xml, limits)?;
    instance_element(&el, 0)
}

fn instance_element(el: &Element, depth: usize) -> Result<Instance, DecodeError> {
    if el.name != "INSTANCE" {
        return invalid(format!("expected <INSTANCE>, found <{}>", el.name));
    }
    let class_name = match el.attr("CLASSNAME") {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => return invalid("<INSTANCE> has no CLASSNAME"),
    };
    let mut inst = Instance::new(class_name);
    for p in &el.children {
        let ty = || -> Result<CimType, DecodeError> {
            let t = p.attr("TYPE").unwrap_or("string");
            CimType::parse(t).ok_or_else(|| DecodeError::Invalid(format!("unknown TYPE {t:?}")))
        };
        let (name, value) = match p.name.as_str() {
            "QUALIFIER" => continue,
            "PROPERTY" => {
                let ty = ty()?;
                let v = match p.child("VALUE") {
                    None => CimValue::Null,
                    Some(v) => {
                        let embedded = p
                            .attr("EmbeddedObject")
                            .or_else(|| p.attr("EMBEDDEDOBJECT"));
                        if embedded.is_some() && depth < 2 && v.text.trim_start().starts_with('<') {
                            let l = Limits::default();
                            let inner = dom::parse(&v.text, &l)?;
                            CimValue::Instance(Box::new(instance_element(&inner, depth + 1)?))
                        } else {
                            CimValue::parse_scalar(&v.text, ty)
                                .map_err(|e| DecodeError::Invalid(e.to_string()))?
                        }
                    }
                };
                (name_attr(p)?, v)
            }
            "PROPERTY.ARRAY" => {
                let ty = ty()?;
                let v = match p.child("VALUE.ARRAY") {
                    None => CimValue::Null,
                    Some(a) => CimValue::Array(
                        value_array(a)?
                            .into_iter()
                            .map(|e| match e {
                                None => Ok(CimValue::Null),
                                Some(t) => CimValue::parse_scalar(&t, ty)
                                    .map_err(|e| DecodeError::Invalid(e.to_string())),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                };
                (name_attr(p)?, v)
            }
            "PROPERTY.REFERENCE" => {
                let v = match p.child("VALUE.REFERENCE") {
                    None => CimValue::Null,
                    Some(r) => CimValue::Reference(value_reference(r)?),
                };
                (name_attr(p)?, v)
            }
            other => return invalid(format!("unexpected <{other}> in <INSTANCE>")),
        };
        inst.set(name, value);
    }
    Ok(inst)
}
