//! Encoding of CIM-XML responses (DSP0201 `<SIMPLERSP>`).
//!
//! Rules from the captured client behaviour (wire-protocol.md): every
//! `RETURNVALUE` and output `PARAMVALUE` carries `PARAMTYPE`; output
//! references are full `INSTANCEPATH`s with `HOST`; `PROPERTY*`,
//! `PARAMETER*` and `VALUE*` elements are never self-closed (wbemcli's
//! parser rejects `<PROPERTY .../>`).

use std::fmt::Write as _;

use crate::error::CimError;
use crate::schema::{ClassDecl, Dir, MethodDecl, ParamDecl, PropDecl};
use crate::value::{CimType, CimValue, Instance, KeyValue, ObjectPath};

/// Where references without host or namespace are anchored.
#[derive(Clone, Debug)]
pub struct EncodeCtx {
    /// Host (and port) clients reached us by.
    pub host: String,
    /// The request's namespace.
    pub namespace: String,
}

/// Escapes text content / attribute values. Characters XML 1.0 cannot
/// carry are replaced by U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Wraps a `<SIMPLERSP>` body into the full document.
pub fn document(message_id: &str, simplersp_body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"{}\" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>{}</SIMPLERSP></MESSAGE></CIM>",
        escape(message_id),
        simplersp_body
    )
}

/// `<ERROR CODE=.. DESCRIPTION=../>`.
pub fn error(e: &CimError) -> String {
    format!(
        "<ERROR CODE=\"{}\" DESCRIPTION=\"{}\"/>",
        e.status.code(),
        escape(&format!("{}: {}", e.status.name(), e.description))
    )
}

/// `<IMETHODRESPONSE NAME=..>` with either `<IRETURNVALUE>` content or an error.
pub fn imethod_response(name: &str, result: Result<&str, &CimError>) -> String {
    match result {
        Ok(body) => format!(
            "<IMETHODRESPONSE NAME=\"{}\"><IRETURNVALUE>{}</IRETURNVALUE></IMETHODRESPONSE>",
            escape(name),
            body
        ),
        Err(e) => format!(
            "<IMETHODRESPONSE NAME=\"{}\">{}</IMETHODRESPONSE>",
            escape(name),
            error(e)
        ),
    }
}

/// `<METHODRESPONSE NAME=..><ERROR/></METHODRESPONSE>`.
pub fn method_error(name: &str, e: &CimError) -> String {
    format!(
        "<METHODRESPONSE NAME=\"{}\">{}</METHODRESPONSE>",
        escape(name),
        error(e)
    )
}

/// `<METHODRESPONSE>` with `<RETURNVALUE PARAMTYPE=..>` and output
/// `<PARAMVALUE>`s (null outputs are left out).
pub fn method_response(
    ctx: &EncodeCtx,
    method: &MethodDecl,
    return_value: &CimValue,
    out_params: &[(String, CimValue)],
) -> String {
    let mut s = format!("<METHODRESPONSE NAME=\"{}\">", escape(method.name));
    let _ = write!(s, "<RETURNVALUE PARAMTYPE=\"{}\">", method.ret.as_str());
    if let Some(t) = return_value.scalar_text() {
        let _ = write!(s, "<VALUE>{}</VALUE>", escape(&t));
    }
    s.push_str("</RETURNVALUE>");
    for (name, v) in out_params {
        if v.is_null() {
            continue;
        }
        let decl = method.param(name);
        let name = decl.map(|d| d.name).unwrap_or(name);
        let ty = decl
            .map(|d| d.ty)
            .or_else(|| value_type(v))
            .unwrap_or(CimType::String);
        let embedded = decl.and_then(|d| d.embedded_instance).is_some() || contains_instance(v);
        let _ = write!(
            s,
            "<PARAMVALUE NAME=\"{}\" PARAMTYPE=\"{}\"",
            escape(name),
            ty.as_str()
        );
        if embedded {
            s.push_str(" EmbeddedObject=\"instance\"");
        }
        s.push('>');
        value(&mut s, ctx, v);
        s.push_str("</PARAMVALUE>");
    }
    s.push_str("</METHODRESPONSE>");
    s
}

fn contains_instance(v: &CimValue) -> bool {
    match v {
        CimValue::Instance(_) => true,
        CimValue::Array(a) => a.iter().any(contains_instance),
        _ => false,
    }
}

fn value_type(v: &CimValue) -> Option<CimType> {
    match v {
        CimValue::Array(a) => a.iter().find_map(CimValue::cim_type),
        other => other.cim_type(),
    }
}

/// Encodes a value's content: `VALUE`, `VALUE.ARRAY`, `VALUE.REFERENCE`
/// or `VALUE.REFARRAY` (nothing for null).
pub fn value(s: &mut String, ctx: &EncodeCtx, v: &CimValue) {
    match v {
        CimValue::Null => {}
        CimValue::Reference(p) => {
            s.push_str("<VALUE.REFERENCE>");
            instance_path(s, ctx, p);
            s.push_str("</VALUE.REFERENCE>");
        }
        CimValue::Instance(i) => {
            let mut inner = String::new();
            instance(&mut inner, ctx, None, i);
            let _ = write!(s, "<VALUE>{}</VALUE>", escape(&inner));
        }
        CimValue::Array(items) => {
            if items.iter().any(|i| matches!(i, CimValue::Reference(_))) {
                s.push_str("<VALUE.REFARRAY>");
                for i in items {
                    match i {
                        CimValue::Reference(p) => {
                            s.push_str("<VALUE.REFERENCE>");
                            instance_path(s, ctx, p);
                            s.push_str("</VALUE.REFERENCE>");
                        }
                        _ => s.push_str("<VALUE.NULL></VALUE.NULL>"),
                    }
                }
                s.push_str("</VALUE.REFARRAY>");
            } else {
                s.push_str("<VALUE.ARRAY>");
                for i in items {
                    match i {
                        CimValue::Instance(inst) => {
                            let mut inner = String::new();
                            instance(&mut inner, ctx, None, inst);
                            let _ = write!(s, "<VALUE>{}</VALUE>", escape(&inner));
                        }
                        other => match other.scalar_text() {
                            Some(t) => {
                                let _ = write!(s, "<VALUE>{}</VALUE>", escape(&t));
                            }
                            None => s.push_str("<VALUE.NULL></VALUE.NULL>"),
                        },
                    }
                }
                s.push_str("</VALUE.ARRAY>");
            }
        }
        scalar => {
            if let Some(t) = scalar.scalar_text() {
                let _ = write!(s, "<VALUE>{}</VALUE>", escape(&t));
            }
        }
    }
}

fn local_namespace_path(s: &mut String, ns: &str) {
    s.push_str("<LOCALNAMESPACEPATH>");
    for part in ns.split('/').filter(|p| !p.is_empty()) {
        let _ = write!(s, "<NAMESPACE NAME=\"{}\"/>", escape(part));
    }
    s.push_str("</LOCALNAMESPACEPATH>");
}

/// `<INSTANCEPATH>` with `HOST` and namespace (defaults from `ctx`).
pub fn instance_path(s: &mut String, ctx: &EncodeCtx, p: &ObjectPath) {
    s.push_str("<INSTANCEPATH><NAMESPACEPATH>");
    let _ = write!(
        s,
        "<HOST>{}</HOST>",
        escape(p.host.as_deref().unwrap_or(&ctx.host))
    );
    local_namespace_path(s, p.namespace.as_deref().unwrap_or(&ctx.namespace));
    s.push_str("</NAMESPACEPATH>");
    instance_name(s, ctx, p);
    s.push_str("</INSTANCEPATH>");
}

/// `<INSTANCENAME>` with key bindings (nested references as full paths).
pub fn instance_name(s: &mut String, ctx: &EncodeCtx, p: &ObjectPath) {
    let _ = write!(s, "<INSTANCENAME CLASSNAME=\"{}\">", escape(&p.class_name));
    for (k, v) in &p.keys {
        let _ = write!(s, "<KEYBINDING NAME=\"{}\">", escape(k));
        match v {
            KeyValue::String(t) => {
                let _ = write!(s, "<KEYVALUE VALUETYPE=\"string\">{}</KEYVALUE>", escape(t));
            }
            KeyValue::Numeric(t) => {
                let _ = write!(
                    s,
                    "<KEYVALUE VALUETYPE=\"numeric\">{}</KEYVALUE>",
                    escape(t)
                );
            }
            KeyValue::Boolean(b) => {
                let _ = write!(
                    s,
                    "<KEYVALUE VALUETYPE=\"boolean\">{}</KEYVALUE>",
                    if *b { "TRUE" } else { "FALSE" }
                );
            }
            KeyValue::Reference(r) => {
                s.push_str("<VALUE.REFERENCE>");
                instance_path(s, ctx, r);
                s.push_str("</VALUE.REFERENCE>");
            }
        }
        s.push_str("</KEYBINDING>");
    }
    s.push_str("</INSTANCENAME>");
}

fn property(s: &mut String, ctx: &EncodeCtx, name: &str, decl: Option<&PropDecl>, v: &CimValue) {
    let ty = decl
        .map(|d| d.ty)
        .or_else(|| value_type(v))
        .unwrap_or(CimType::String);
    let is_array = decl
        .map(|d| d.array)
        .unwrap_or(matches!(v, CimValue::Array(_)));
    let embedded = decl.and_then(|d| d.embedded_instance).is_some() || contains_instance(v);
    let emb = if embedded {
        " EmbeddedObject=\"instance\""
    } else {
        ""
    };
    if ty == CimType::Reference && !is_array {
        let rc = decl
            .and_then(|d| d.ref_class)
            .map(|c| format!(" REFERENCECLASS=\"{}\"", escape(c)))
            .unwrap_or_default();
        let _ = write!(s, "<PROPERTY.REFERENCE NAME=\"{}\"{rc}>", escape(name));
        value(s, ctx, v);
        s.push_str("</PROPERTY.REFERENCE>");
    } else if is_array {
        let _ = write!(
            s,
            "<PROPERTY.ARRAY NAME=\"{}\" TYPE=\"{}\"{emb}>",
            escape(name),
            ty.as_str()
        );
        value(s, ctx, v);
        s.push_str("</PROPERTY.ARRAY>");
    } else {
        let _ = write!(
            s,
            "<PROPERTY NAME=\"{}\" TYPE=\"{}\"{emb}>",
            escape(name),
            ty.as_str()
        );
        value(s, ctx, v);
        s.push_str("</PROPERTY>");
    }
}

/// `<INSTANCE>`: the class's declared properties in declaration order
/// (null ones included, as explicit empty elements), then any others the
/// instance carries. `property_list` filters (case-insensitive).
pub fn instance(s: &mut String, ctx: &EncodeCtx, class: Option<&ClassDecl>, inst: &Instance) {
    instance_filtered(s, ctx, class, inst, None)
}

pub fn instance_filtered(
    s: &mut String,
    ctx: &EncodeCtx,
    class: Option<&ClassDecl>,
    inst: &Instance,
    property_list: Option<&[String]>,
) {
    let wanted =
        |n: &str| property_list.is_none_or(|l| l.iter().any(|w| w.eq_ignore_ascii_case(n)));
    let _ = write!(s, "<INSTANCE CLASSNAME=\"{}\">", escape(&inst.class_name));
    if let Some(c) = class {
        for d in c.properties {
            if wanted(d.name) {
                let v = inst.get(d.name).unwrap_or(&CimValue::Null);
                property(s, ctx, d.name, Some(d), v);
            }
        }
    }
    for (n, v) in &inst.properties {
        if class.is_some_and(|c| c.property(n).is_some()) || !wanted(n) || v.is_null() {
            continue;
        }
        property(s, ctx, n, None, v);
    }
    s.push_str("</INSTANCE>");
}

fn qualifier_bool(s: &mut String, name: &str) {
    let _ = write!(
        s,
        "<QUALIFIER NAME=\"{name}\" TYPE=\"boolean\"><VALUE>true</VALUE></QUALIFIER>"
    );
}

fn qualifier_str(s: &mut String, name: &str, v: &str) {
    let _ = write!(
        s,
        "<QUALIFIER NAME=\"{name}\" TYPE=\"string\"><VALUE>{}</VALUE></QUALIFIER>",
        escape(v)
    );
}

fn parameter(s: &mut String, p: &ParamDecl) {
    let (open, close) = match (p.ty == CimType::Reference, p.array) {
        (true, false) => (
            format!(
                "<PARAMETER.REFERENCE NAME=\"{}\" REFERENCECLASS=\"{}\">",
                p.name,
                p.ref_class.unwrap_or("")
            ),
            "</PARAMETER.REFERENCE>",
        ),
        (true, true) => (
            format!(
                "<PARAMETER.REFARRAY NAME=\"{}\" REFERENCECLASS=\"{}\">",
                p.name,
                p.ref_class.unwrap_or("")
            ),
            "</PARAMETER.REFARRAY>",
        ),
        (false, true) => (
            format!(
                "<PARAMETER.ARRAY NAME=\"{}\" TYPE=\"{}\">",
                p.name,
                p.ty.as_str()
            ),
            "</PARAMETER.ARRAY>",
        ),
        (false, false) => (
            format!("<PARAMETER NAME=\"{}\" TYPE=\"{}\">", p.name, p.ty.as_str()),
            "</PARAMETER>",
        ),
    };
    s.push_str(&open);
    match p.dir {
        Dir::In => {
            qualifier_bool(s, "IN");
        }
        Dir::Out => {
            s.push_str("<QUALIFIER NAME=\"IN\" TYPE=\"boolean\"><VALUE>false</VALUE></QUALIFIER>");
            qualifier_bool(s, "OUT");
        }
        Dir::InOut => {
            qualifier_bool(s, "IN");
            qualifier_bool(s, "OUT");
        }
    }
    if p.required {
        qualifier_bool(s, "Required");
    }
    if let Some(e) = p.embedded_instance {
        qualifier_str(s, "EmbeddedInstance", e);
    }
    s.push_str(close);
}

/// `<CLASS>` with qualifiers, properties and methods (with parameters).
pub fn class(s: &mut String, c: &ClassDecl) {
    let _ = write!(s, "<CLASS NAME=\"{}\"", c.name);
    if let Some(sup) = c.superclass {
        let _ = write!(s, " SUPERCLASS=\"{sup}\"");
    }
    s.push('>');
    if c.association {
        qualifier_bool(s, "Association");
    }
    for p in c.properties {
        let (open, close) = match (p.ty == CimType::Reference, p.array) {
            (true, _) => (
                format!(
                    "<PROPERTY.REFERENCE NAME=\"{}\" REFERENCECLASS=\"{}\">",
                    p.name,
                    p.ref_class.unwrap_or("")
                ),
                "</PROPERTY.REFERENCE>",
            ),
            (false, true) => (
                format!(
                    "<PROPERTY.ARRAY NAME=\"{}\" TYPE=\"{}\">",
                    p.name,
                    p.ty.as_str()
                ),
                "</PROPERTY.ARRAY>",
            ),
            (false, false) => (
                format!("<PROPERTY NAME=\"{}\" TYPE=\"{}\">", p.name, p.ty.as_str()),
                "</PROPERTY>",
            ),
        };
        s.push_str(&open);
        if p.key {
            qualifier_bool(s, "Key");
        }
        if let Some(e) = p.embedded_instance {
            qualifier_str(s, "EmbeddedInstance", e);
        }
        s.push_str(close);
    }
    for m in c.methods {
        let _ = write!(
            s,
            "<METHOD NAME=\"{}\" TYPE=\"{}\">",
            m.name,
            m.ret.as_str()
        );
        for p in m.params {
            parameter(s, p);
        }
        s.push_str("</METHOD>");
    }
    s.push_str("</CLASS>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    #[test]
    fn no_self_closing_property_or_parameter() {
        for c in schema::CLASSES {
            let mut s = String::new();
            class(&mut s, c);
            for tag in ["PROPERTY", "PARAMETER", "VALUE"] {
                let re_open = format!("<{tag}");
                for (i, _) in s.match_indices(&re_open) {
                    let end = s[i..].find('>').unwrap();
                    assert!(
                        !s[i..i + end].ends_with('/'),
                        "self-closed {tag} in {}",
                        c.name
                    );
                }
            }
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape("a<b>&\"'\u{1}"),
            "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}"
        );
    }
}
