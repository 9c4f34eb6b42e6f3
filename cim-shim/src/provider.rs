//! The interface between the CIM-XML front end and whatever holds the
//! state (the replication engine; [`crate::testing::MemoryProvider`] in
//! tests).
//!
//! The shim decodes a request, checks namespace, class, method and
//! parameter types against [`crate::schema`], then calls the provider with
//! typed values; the provider answers with instances or a
//! [`MethodOutcome`]. Calls are made from a blocking thread pool
//! (`tokio::task::spawn_blocking`), so implementations may block.
//!
//! Instance paths are derived by the shim from each instance's key
//! properties (as declared in the schema), so providers return plain
//! [`Instance`]s. Reference values a provider returns may omit host and
//! namespace; the shim fills both in (host = what the client dialled,
//! namespace = the request's).

use crate::error::CimError;
use crate::schema::{ClassDecl, MethodDecl};
use crate::value::{CimValue, Instance, ObjectPath};

/// Typed input parameters of an extrinsic method call: only the
/// parameters the client sent, each typed from the method declaration.
/// Embedded-instance parameters arrive as [`CimValue::Instance`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub Vec<(String, CimValue)>);

impl Params {
    /// The value of parameter `name` (case-insensitive); `None` if absent
    /// or NULL.
    pub fn get(&self, name: &str) -> Option<&CimValue> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(CimValue::as_u64)
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(CimValue::as_str)
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(CimValue::as_bool)
    }
    pub fn reference(&self, name: &str) -> Option<&ObjectPath> {
        self.get(name).and_then(CimValue::as_reference)
    }
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        match self.get(name) {
            Some(CimValue::Instance(i)) => Some(i),
            _ => None,
        }
    }
}

/// The result of an extrinsic method: its return value (e.g.
/// `CimValue::Uint32(4096)`) and output parameters (NULL ones are not
/// sent).
#[derive(Clone, Debug, PartialEq)]
pub struct MethodOutcome {
    pub return_value: CimValue,
    pub out_params: Vec<(String, CimValue)>,
}

impl MethodOutcome {
    /// A `uint32` return value with no output parameters.
    pub fn code(rc: u32) -> Self {
        MethodOutcome {
            return_value: CimValue::Uint32(rc),
            out_params: Vec::new(),
        }
    }
    /// Builder: adds an output parameter.
    pub fn with(mut self, name: impl Into<String>, v: CimValue) -> Self {
        self.out_params.push((name.into(), v));
        self
    }
}

/// Source of instances and executor of methods for the schema's classes.
///
/// `namespace` is the normalised request namespace (lower case). `class` is
/// always a class declared in [`crate::schema`] for that namespace: the
/// shim expands a request for a superclass (e.g. `CIM_StorageVolume`) into
/// one call per declared subclass. Errors become `<ERROR>` responses;
/// return [`CimStatus::NotFound`](crate::CimStatus::NotFound) for a
/// missing instance.
pub trait Provider: Send + Sync + 'static {
    /// All instances of exactly `class`.
    fn enumerate_instances(
        &self,
        namespace: &str,
        class: &'static ClassDecl,
    ) -> Result<Vec<Instance>, CimError>;

    /// The instance named by `path` (whose keys the shim has not checked
    /// beyond decoding). Default: enumerate and match keys.
    fn get_instance(
        &self,
        namespace: &str,
        class: &'static ClassDecl,
        path: &ObjectPath,
    ) -> Result<Instance, CimError> {
        for inst in self.enumerate_instances(namespace, class)? {
            if path_of(class, &inst).same_keys(path) {
                return Ok(inst);
            }
        }
        Err(CimError::not_found(format!("no instance {path}")))
    }

    /// Instances of association class `assoc` that reference `object`
    /// (in any role; the shim applies Role filters). Default: enumerate
    /// `assoc` and keep those with a reference property naming `object`.
    fn references(
        &self,
        namespace: &str,
        assoc: &'static ClassDecl,
        object: &ObjectPath,
    ) -> Result<Vec<Instance>, CimError> {
        let all = self.enumerate_instances(namespace, assoc)?;
        Ok(all
            .into_iter()
            .filter(|i| {
                assoc.references().any(|r| {
                    i.get(r.name)
                        .and_then(CimValue::as_reference)
                        .is_some_and(|p| p.same_instance(object) || p.same_keys(object))
                })
            })
            .collect())
    }

    /// Runs `method` of `class` on `target` (an instance path, or a class
    /// path with no keys for static calls) with parameters already typed
    /// from the declaration. Semantic checks (required combinations,
    /// enumeration values, states) and their return codes (5 Invalid
    /// Parameter, 1 Not Supported, 6 In Use, 4096 Job Started...) belong
    /// here.
    fn invoke_method(
        &self,
        namespace: &str,
        class: &'static ClassDecl,
        target: &ObjectPath,
        method: &'static MethodDecl,
        params: &Params,
    ) -> Result<MethodOutcome, CimError>;
}

/// The instance path of `inst` (keys as declared by `class`, in
/// declaration order; key properties that are references become reference
/// key bindings). Host and namespace are left empty.
pub fn path_of(class: &ClassDecl, inst: &Instance) -> ObjectPath {
    use crate::value::KeyValue;
    let mut p = ObjectPath::new(inst.class_name.clone());
    for k in class.keys() {
        let kv = match inst.get(k.name) {
            Some(CimValue::Reference(r)) => KeyValue::Reference(Box::new(r.clone())),
            Some(CimValue::Boolean(b)) => KeyValue::Boolean(*b),
            Some(v @ (CimValue::String(_) | CimValue::DateTime(_) | CimValue::Char16(_))) => {
                KeyValue::String(v.scalar_text().unwrap_or_default())
            }
            Some(v) => match v.scalar_text() {
                Some(t) => KeyValue::Numeric(t),
                None => continue,
            },
            None => continue,
        };
        p.keys.push((k.name.to_string(), kv));
    }
    p
}
