//! Operation dispatch: typed request → schema checks → provider → encoded
//! response document.

use crate::error::{CimError, CimStatus};
use crate::provider::{path_of, Params, Provider};
use crate::schema::{self, ClassDecl, MethodDecl, Ns, ParamDecl};
use crate::value::{CimType, CimValue, Instance, ObjectPath};
use crate::xml::decode::{
    self, Call, CimRequest, IMethodCall, IParamValue, MethodCall, RawParam, RawValue,
};
use crate::xml::dom::Limits;
use crate::xml::encode::{self, EncodeCtx};

/// Answers one decoded request with a complete CIM-XML response document.
/// `host` is what the client dialled (the HTTP `Host` header), used as the
/// HOST of returned instance paths.
pub fn dispatch(provider: &dyn Provider, req: &CimRequest, host: &str) -> String {
    let body = match &req.call {
        Call::Intrinsic(c) => {
            let ctx = EncodeCtx {
                host: host.to_string(),
                namespace: schema::normalize_namespace(&c.namespace),
            };
            let r = intrinsic(provider, c, &ctx);
            if let Err(e) = &r {
                tracing::debug!(op = %c.name, error = %e, "CIM operation failed");
            }
            encode::imethod_response(&c.name, r.as_deref())
        }
        Call::Extrinsic(c) => {
            let ctx = EncodeCtx {
                host: host.to_string(),
                namespace: schema::normalize_namespace(c.target.namespace.as_deref().unwrap_or("")),
            };
            match extrinsic(provider, c, &ctx) {
                Ok(xml) => xml,
                Err(e) => {
                    tracing::debug!(method = %c.name, error = %e, "CIM method failed");
                    encode::method_error(&c.name, &e)
                }
            }
        }
    };
    encode::document(&req.message_id, &body)
}

const PULL_OPS: &[&str] = &[
    "OpenEnumerateInstances",
    "OpenEnumerateInstancePaths",
    "OpenAssociatorInstances",
    "OpenAssociatorInstancePaths",
    "OpenReferenceInstances",
    "OpenReferenceInstancePaths",
    "OpenQueryInstances",
    "PullInstancesWithPath",
    "PullInstancePaths",
    "PullInstances",
    "CloseEnumeration",
    "EnumerationCount",
];

fn namespace(ns: &str) -> Result<Ns, CimError> {
    schema::namespace_kind(ns).ok_or_else(|| CimError::invalid_namespace(ns))
}

fn check_params(call: &IMethodCall, allowed: &[&str]) -> Result<(), CimError> {
    for p in &call.params {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&p.name)) {
            return Err(CimError::invalid_parameter(format!(
                "{} does not take parameter {}",
                call.name, p.name
            )));
        }
    }
    Ok(())
}

fn bool_param(call: &IMethodCall, name: &str, default: bool) -> Result<bool, CimError> {
    match call.param(name) {
        None | Some(IParamValue::Null) => Ok(default),
        Some(IParamValue::Value(v)) => match v.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(CimError::invalid_parameter(format!(
                "{name}: {v:?} is not a boolean"
            ))),
        },
        Some(_) => Err(CimError::invalid_parameter(format!(
            "{name} must be a boolean VALUE"
        ))),
    }
}

fn class_param(call: &IMethodCall, name: &str) -> Result<Option<String>, CimError> {
    match call.param(name) {
        None | Some(IParamValue::Null) => Ok(None),
        Some(IParamValue::ClassName(c)) => Ok(Some(c.clone())),
        // Some clients send a class name as a plain VALUE.
        Some(IParamValue::Value(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
        Some(_) => Err(CimError::invalid_parameter(format!(
            "{name} must be a CLASSNAME"
        ))),
    }
}

fn string_param(call: &IMethodCall, name: &str) -> Result<Option<String>, CimError> {
    match call.param(name) {
        None | Some(IParamValue::Null) => Ok(None),
        Some(IParamValue::Value(v)) => Ok(Some(v.clone())),
        Some(_) => Err(CimError::invalid_parameter(format!(
            "{name} must be a string VALUE"
        ))),
    }
}

fn property_list(call: &IMethodCall) -> Result<Option<Vec<String>>, CimError> {
    match call.param("PropertyList") {
        None | Some(IParamValue::Null) => Ok(None),
        Some(IParamValue::Array(a)) => Ok(Some(a.iter().flatten().cloned().collect())),
        Some(IParamValue::Value(v)) => Ok(Some(vec![v.clone()])),
        Some(_) => Err(CimError::invalid_parameter(
            "PropertyList must be a VALUE.ARRAY",
        )),
    }
}

fn instance_name_param(call: &IMethodCall, name: &str) -> Result<ObjectPath, CimError> {
    match call.param(name) {
        Some(IParamValue::InstanceName(p)) | Some(IParamValue::Reference(p))
            if !p.keys.is_empty() =>
        {
            Ok(p.clone())
        }
        Some(IParamValue::ClassName(_)) => Err(CimError::not_supported(format!(
            "{}: class-level {name} is not supported",
            call.name
        ))),
        None => Err(CimError::invalid_parameter(format!(
            "{} requires {name}",
            call.name
        ))),
        Some(_) => Err(CimError::invalid_parameter(format!(
            "{name} must be an INSTANCENAME"
        ))),
    }
}

fn require_class(call: &IMethodCall) -> Result<String, CimError> {
    class_param(call, "ClassName")?
        .ok_or_else(|| CimError::invalid_parameter(format!("{} requires ClassName", call.name)))
}

fn named_instance(
    s: &mut String,
    ctx: &EncodeCtx,
    class: &ClassDecl,
    inst: &Instance,
    pl: Option<&[String]>,
) {
    s.push_str("<VALUE.NAMEDINSTANCE>");
    encode::instance_name(s, ctx, &instance_path(class, inst));
    encode::instance_filtered(s, ctx, Some(class), inst, pl);
    s.push_str("</VALUE.NAMEDINSTANCE>");
}

fn instance_path(class: &ClassDecl, inst: &Instance) -> ObjectPath {
    let mut p = path_of(class, inst);
    if p.class_name.is_empty() {
        p.class_name = class.name.to_string();
    }
    p
}

fn with_class_name(class: &ClassDecl, mut inst: Instance) -> Instance {
    if inst.class_name.is_empty() {
        inst.class_name = class.name.to_string();
    }
    inst
}

fn intrinsic(p: &dyn Provider, call: &IMethodCall, ctx: &EncodeCtx) -> Result<String, CimError> {
    let op = call.name.as_str();
    if PULL_OPS.iter().any(|o| o.eq_ignore_ascii_case(op)) {
        return Err(CimError::not_supported(format!(
            "{op}: pull operations are not supported"
        )));
    }
    let ns = namespace(&call.namespace)?;
    let nsname = ctx.namespace.as_str();
    let mut out = String::new();
    match op {
        "GetClass" => {
            check_params(
                call,
                &[
                    "ClassName",
                    "LocalOnly",
                    "IncludeQualifiers",
                    "IncludeClassOrigin",
                    "PropertyList",
                ],
            )?;
            let cn = require_class(call)?;
            bool_param(call, "LocalOnly", true)?;
            bool_param(call, "IncludeQualifiers", true)?;
            bool_param(call, "IncludeClassOrigin", false)?;
            let c = schema::class(ns, &cn).ok_or_else(|| {
                CimError::not_found(format!("class {cn:?} does not exist in this namespace"))
            })?;
            encode::class(&mut out, c);
        }
        "EnumerateClasses" | "EnumerateClassNames" => {
            let names = op == "EnumerateClassNames";
            if names {
                check_params(call, &["ClassName", "DeepInheritance"])?;
            } else {
                check_params(
                    call,
                    &[
                        "ClassName",
                        "DeepInheritance",
                        "LocalOnly",
                        "IncludeQualifiers",
                        "IncludeClassOrigin",
                    ],
                )?;
                bool_param(call, "LocalOnly", true)?;
                bool_param(call, "IncludeQualifiers", true)?;
                bool_param(call, "IncludeClassOrigin", false)?;
            }
            let deep = bool_param(call, "DeepInheritance", false)?;
            let cn = class_param(call, "ClassName")?;
            if let Some(cn) = &cn {
                if !schema::known_class_name(ns, cn) {
                    return Err(CimError::invalid_class(cn));
                }
            }
            for c in schema::classes_in(ns) {
                let include = match &cn {
                    None => deep || c.superclass.is_none_or(|s| schema::class(ns, s).is_none()),
                    Some(cn) => {
                        !c.name.eq_ignore_ascii_case(cn)
                            && if deep {
                                c.is_a(cn)
                            } else {
                                c.superclass.is_some_and(|s| s.eq_ignore_ascii_case(cn))
                            }
                    }
                };
                if include {
                    if names {
                        out.push_str(&format!("<CLASSNAME NAME=\"{}\"/>", c.name));
                    } else {
                        encode::class(&mut out, c);
                    }
                }
            }
        }
        "EnumerateInstances" | "EnumerateInstanceNames" => {
            let names = op == "EnumerateInstanceNames";
            if names {
                check_params(call, &["ClassName"])?;
            } else {
                check_params(
                    call,
                    &[
                        "ClassName",
                        "LocalOnly",
                        "DeepInheritance",
                        "IncludeQualifiers",
                        "IncludeClassOrigin",
                        "PropertyList",
                    ],
                )?;
                bool_param(call, "LocalOnly", true)?;
                bool_param(call, "DeepInheritance", true)?;
                bool_param(call, "IncludeQualifiers", false)?;
                bool_param(call, "IncludeClassOrigin", false)?;
            }
            let pl = property_list(call)?;
            let cn = require_class(call)?;
            let classes = schema::classes_derived_from(ns, &cn);
            if classes.is_empty() {
                return Err(CimError::invalid_class(&cn));
            }
            for c in classes {
                for inst in p.enumerate_instances(nsname, c)? {
                    let inst = with_class_name(c, inst);
                    if names {
                        encode::instance_name(&mut out, ctx, &instance_path(c, &inst));
                    } else {
                        named_instance(&mut out, ctx, c, &inst, pl.as_deref());
                    }
                }
            }
        }
        "GetInstance" => {
            check_params(
                call,
                &[
                    "InstanceName",
                    "LocalOnly",
                    "IncludeQualifiers",
                    "IncludeClassOrigin",
                    "PropertyList",
                ],
            )?;
            bool_param(call, "LocalOnly", true)?;
            bool_param(call, "IncludeQualifiers", false)?;
            bool_param(call, "IncludeClassOrigin", false)?;
            let pl = property_list(call)?;
            let path = instance_name_param(call, "InstanceName")?;
            let (c, inst) = find_instance(p, ns, nsname, &path)?;
            encode::instance_filtered(&mut out, ctx, Some(c), &inst, pl.as_deref());
        }
        "Associators" | "AssociatorNames" | "References" | "ReferenceNames" => {
            let assoc_op = op.starts_with("Associator");
            let names = op.ends_with("Names");
            let mut allowed: Vec<&str> = vec!["ObjectName", "ResultClass", "Role"];
            if assoc_op {
                allowed.extend(["AssocClass", "ResultRole"]);
            }
            if !names {
                allowed.extend(["IncludeQualifiers", "IncludeClassOrigin", "PropertyList"]);
                bool_param(call, "IncludeQualifiers", false)?;
                bool_param(call, "IncludeClassOrigin", false)?;
            }
            check_params(call, &allowed)?;
            let pl = if names { None } else { property_list(call)? };
            let object = instance_name_param(call, "ObjectName")?;
            if !schema::known_class_name(ns, &object.class_name) {
                return Err(CimError::invalid_parameter(format!(
                    "ObjectName: class {:?} does not exist in this namespace",
                    object.class_name
                )));
            }
            // A name with only some keys (e.g. only DeviceID) stands for the
            // instance the provider resolves it to.
            let object = match find_instance(p, ns, nsname, &object) {
                Ok((c, i)) => {
                    let mut full = instance_path(c, &i);
                    full.host = object.host.clone();
                    full.namespace = object.namespace.clone();
                    full
                }
                Err(_) => object,
            };
            let assoc_class = if assoc_op {
                class_param(call, "AssocClass")?
            } else {
                None
            };
            let result_class = class_param(call, "ResultClass")?;
            let role = string_param(call, "Role")?;
            let result_role = if assoc_op {
                string_param(call, "ResultRole")?
            } else {
                None
            };
            let filter = if assoc_op {
                assoc_class.as_deref()
            } else {
                result_class.as_deref()
            };
            let mut seen: Vec<ObjectPath> = Vec::new();
            for a in schema::classes_in(ns).filter(|c| c.association) {
                if filter.is_some_and(|f| !a.is_a(f)) {
                    continue;
                }
                for inst in p.references(nsname, a, &object)? {
                    let inst = with_class_name(a, inst);
                    let my_roles: Vec<&str> = a
                        .references()
                        .filter(|r| {
                            inst.get(r.name)
                                .and_then(CimValue::as_reference)
                                .is_some_and(|v| refers_to(ns, v, &object))
                        })
                        .map(|r| r.name)
                        .filter(|r| {
                            role.as_deref()
                                .is_none_or(|want| want.eq_ignore_ascii_case(r))
                        })
                        .collect();
                    if my_roles.is_empty() {
                        continue;
                    }
                    if !assoc_op {
                        let path = instance_path(a, &inst);
                        if names {
                            out.push_str("<OBJECTPATH>");
                            encode::instance_path(&mut out, ctx, &path);
                            out.push_str("</OBJECTPATH>");
                        } else {
                            out.push_str("<VALUE.OBJECTWITHPATH>");
                            encode::instance_path(&mut out, ctx, &path);
                            encode::instance_filtered(&mut out, ctx, Some(a), &inst, pl.as_deref());
                            out.push_str("</VALUE.OBJECTWITHPATH>");
                        }
                        continue;
                    }
                    for r in a.references() {
                        if my_roles.contains(&r.name) && my_roles.len() == 1 {
                            continue;
                        }
                        if result_role
                            .as_deref()
                            .is_some_and(|w| !w.eq_ignore_ascii_case(r.name))
                        {
                            continue;
                        }
                        let Some(target) = inst.get(r.name).and_then(CimValue::as_reference) else {
                            continue;
                        };
                        if refers_to(ns, target, &object) {
                            continue;
                        }
                        let tkind = target
                            .namespace
                            .as_deref()
                            .and_then(schema::namespace_kind)
                            .unwrap_or(ns);
                        if let Some(rc) = &result_class {
                            let ok = match schema::class(tkind, &target.class_name) {
                                Some(tc) => tc.is_a(rc),
                                None => target.class_name.eq_ignore_ascii_case(rc),
                            };
                            if !ok {
                                continue;
                            }
                        }
                        if seen.iter().any(|s| s.same_instance(target)) {
                            continue;
                        }
                        seen.push(target.clone());
                        if names {
                            out.push_str("<OBJECTPATH>");
                            encode::instance_path(&mut out, ctx, target);
                            out.push_str("</OBJECTPATH>");
                        } else {
                            // The associated object may live in the other served
                            // namespace (interop profile -> service); objects in
                            // unknown namespaces or of undeclared classes are skipped.
                            let tns = target
                                .namespace
                                .as_deref()
                                .map(schema::normalize_namespace)
                                .unwrap_or_else(|| nsname.to_string());
                            let Some(tkind) = schema::namespace_kind(&tns) else {
                                continue;
                            };
                            let Ok((tc, ti)) = find_instance(p, tkind, &tns, target) else {
                                continue;
                            };
                            out.push_str("<VALUE.OBJECTWITHPATH>");
                            encode::instance_path(
                                &mut out,
                                ctx,
                                &instance_path(tc, &ti).with_namespace(tns),
                            );
                            encode::instance_filtered(&mut out, ctx, Some(tc), &ti, pl.as_deref());
                            out.push_str("</VALUE.OBJECTWITHPATH>");
                        }
                    }
                }
            }
        }
        "CreateInstance"
        | "ModifyInstance"
        | "DeleteInstance"
        | "CreateClass"
        | "ModifyClass"
        | "DeleteClass"
        | "ExecQuery"
        | "GetProperty"
        | "SetProperty"
        | "GetQualifier"
        | "SetQualifier"
        | "DeleteQualifier"
        | "EnumerateQualifiers" => {
            return Err(CimError::not_supported(format!("{op} is not supported")));
        }
        other => {
            return Err(CimError::not_supported(format!(
                "unknown intrinsic operation {other}"
            )));
        }
    }
    Ok(out)
}

/// True when reference `a` names the same instance as `b`: same keys and
/// class names equal or related by inheritance in the schema.
fn refers_to(ns: Ns, a: &ObjectPath, b: &ObjectPath) -> bool {
    if !a.same_keys(b) {
        return false;
    }
    if a.class_name.eq_ignore_ascii_case(&b.class_name) {
        return true;
    }
    schema::class(ns, &a.class_name).is_some_and(|c| c.is_a(&b.class_name))
        || schema::class(ns, &b.class_name).is_some_and(|c| c.is_a(&a.class_name))
}

/// Finds the instance named by `path`, trying every declared class the
/// path's class name covers (a client may name `CIM_StorageVolume`).
fn find_instance(
    p: &dyn Provider,
    ns: Ns,
    nsname: &str,
    path: &ObjectPath,
) -> Result<(&'static ClassDecl, Instance), CimError> {
    let classes = schema::classes_derived_from(ns, &path.class_name);
    if classes.is_empty() {
        return Err(CimError::invalid_class(&path.class_name));
    }
    for c in classes {
        match p.get_instance(nsname, c, path) {
            Ok(i) => return Ok((c, with_class_name(c, i))),
            Err(e) if e.status == CimStatus::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CimError::not_found(format!("no instance {path}")))
}

/// The outcome of typing the request's parameters.
enum Typed {
    Ok(Params),
    /// An embedded instance that is not an `<INSTANCE>` document: answered
    /// with method return value 5 (Invalid Parameter) without calling the
    /// provider, as the captures' analysis recommends.
    BadEmbedded(String),
}

fn extrinsic(p: &dyn Provider, call: &MethodCall, ctx: &EncodeCtx) -> Result<String, CimError> {
    let ns = namespace(call.target.namespace.as_deref().unwrap_or(""))?;
    let nsname = ctx.namespace.as_str();
    let class = match schema::class(ns, &call.target.class_name) {
        Some(c) => c,
        None => {
            // A superclass name (e.g. CIM_ReplicationService): the unique
            // declared subclass with this method.
            let mut cands = schema::classes_derived_from(ns, &call.target.class_name)
                .into_iter()
                .filter(|c| c.method(&call.name).is_some());
            match (cands.next(), cands.next()) {
                (Some(c), None) => c,
                _ => return Err(CimError::invalid_class(&call.target.class_name)),
            }
        }
    };
    let method = class
        .method(&call.name)
        .ok_or_else(|| CimError::method_not_found(class.name, &call.name))?;
    let params = match type_params(method, &call.params, nsname)? {
        Typed::Ok(p) => p,
        Typed::BadEmbedded(name) => {
            tracing::info!(method = method.name, param = %name, "embedded instance parameter is not an INSTANCE document");
            return Ok(encode::method_response(
                ctx,
                method,
                &CimValue::Uint32(5),
                &[],
            ));
        }
    };
    let mut target = call.target.clone();
    target.namespace = Some(nsname.to_string());
    if !target.keys.is_empty() {
        p.get_instance(nsname, class, &target).map_err(|e| {
            if e.status == CimStatus::NotFound {
                CimError::not_found(format!("no instance {}", call.target))
            } else {
                e
            }
        })?;
    }
    let outcome = p.invoke_method(nsname, class, &target, method, &params)?;
    for (n, _) in &outcome.out_params {
        if !method.param(n).is_some_and(|d| d.dir.is_out()) {
            tracing::warn!(method = method.name, param = %n, "provider returned an undeclared output parameter");
        }
    }
    Ok(encode::method_response(
        ctx,
        method,
        &outcome.return_value,
        &outcome.out_params,
    ))
}

fn bad(param: &str, why: impl std::fmt::Display) -> CimError {
    CimError::invalid_parameter(format!("parameter {param}: {why}"))
}

fn type_params(method: &MethodDecl, raw: &[RawParam], nsname: &str) -> Result<Typed, CimError> {
    let mut out = Vec::new();
    for r in raw {
        let d = method
            .param(&r.name)
            .ok_or_else(|| bad(&r.name, format!("{} has no such parameter", method.name)))?;
        if !d.dir.is_in() {
            return Err(bad(d.name, "is an output parameter"));
        }
        if let Some(pt) = &r.param_type {
            let t = CimType::parse(pt)
                .ok_or_else(|| bad(d.name, format!("unknown PARAMTYPE {pt:?}")))?;
            let numeric = |t: CimType| {
                matches!(
                    t,
                    CimType::Uint8
                        | CimType::Sint8
                        | CimType::Uint16
                        | CimType::Sint16
                        | CimType::Uint32
                        | CimType::Sint32
                        | CimType::Uint64
                        | CimType::Sint64
                )
            };
            let compatible = t == d.ty || (numeric(t) && numeric(d.ty));
            if !compatible {
                return Err(bad(
                    d.name,
                    format!("declared {}, sent {}", d.ty.as_str(), t.as_str()),
                ));
            }
        }
        let v = match type_value(d, &r.value, nsname)? {
            Some(v) => v,
            None => return Ok(Typed::BadEmbedded(d.name.to_string())),
        };
        out.push((d.name.to_string(), v));
    }
    for d in method.params.iter().filter(|d| d.required && d.dir.is_in()) {
        if !out.iter().any(|(n, v)| n == d.name && !v.is_null()) {
            return Err(bad(d.name, format!("is required by {}", method.name)));
        }
    }
    Ok(Typed::Ok(Params(out)))
}

/// Types one raw value by its declaration; `Ok(None)` = unparseable
/// embedded instance.
fn type_value(d: &ParamDecl, raw: &RawValue, nsname: &str) -> Result<Option<CimValue>, CimError> {
    let scalar = |text: &str| -> Result<Option<CimValue>, CimError> {
        if d.ty == CimType::Reference {
            return Err(bad(d.name, "expects a reference (VALUE.REFERENCE)"));
        }
        if d.embedded_instance.is_some() {
            let t = text.trim_start();
            if !t.starts_with('<') {
                return Ok(None);
            }
            return match decode::decode_instance(t, &Limits::default()) {
                Ok(i) => Ok(Some(CimValue::Instance(Box::new(i)))),
                Err(_) => Ok(None),
            };
        }
        CimValue::parse_scalar(text, d.ty)
            .map(Some)
            .map_err(|e| bad(d.name, e))
    };
    let reference = |p: &ObjectPath| -> Result<CimValue, CimError> {
        let mut p = p.clone();
        match &p.namespace {
            None => p.namespace = Some(nsname.to_string()),
            Some(ns) if schema::namespace_kind(ns).is_none() => {
                return Err(bad(d.name, format!("namespace {ns:?} does not exist")));
            }
            Some(ns) => p.namespace = Some(schema::normalize_namespace(ns)),
        }
        if p.keys.is_empty() {
            return Err(bad(d.name, "expects an instance reference, got a class"));
        }
        Ok(CimValue::Reference(p))
    };
    Ok(Some(match raw {
        RawValue::Null => CimValue::Null,
        RawValue::Scalar(t) => {
            if d.array {
                match scalar(t)? {
                    Some(v) => CimValue::Array(vec![v]),
                    None => return Ok(None),
                }
            } else {
                return scalar(t);
            }
        }
        RawValue::Array(items) => {
            if !d.array {
                return Err(bad(d.name, "is not an array"));
            }
            let mut v = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    None => v.push(CimValue::Null),
                    Some(t) => match scalar(t)? {
                        Some(x) => v.push(x),
                        None => return Ok(None),
                    },
                }
            }
            CimValue::Array(v)
        }
        RawValue::Reference(p) => {
            if d.ty != CimType::Reference {
                return Err(bad(
                    d.name,
                    format!("expects {}, got a reference", d.ty.as_str()),
                ));
            }
            if d.array {
                CimValue::Array(vec![reference(p)?])
            } else {
                reference(p)?
            }
        }
        RawValue::RefArray(ps) => {
            if d.ty != CimType::Reference || !d.array {
                return Err(bad(d.name, "is not a reference array"));
            }
            CimValue::Array(ps.iter().map(reference).collect::<Result<_, _>>()?)
        }
    }))
}
