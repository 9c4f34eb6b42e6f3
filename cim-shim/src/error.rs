//! CIM status codes (DSP0200 / DSP0004) and the operation error type.

use std::fmt;

/// CIM status codes carried in `<ERROR CODE="n">`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CimStatus {
    Failed = 1,
    AccessDenied = 2,
    InvalidNamespace = 3,
    InvalidParameter = 4,
    InvalidClass = 5,
    NotFound = 6,
    NotSupported = 7,
    ClassHasChildren = 8,
    ClassHasInstances = 9,
    InvalidSuperclass = 10,
    AlreadyExists = 11,
    NoSuchProperty = 12,
    TypeMismatch = 13,
    QueryLanguageNotSupported = 14,
    InvalidQuery = 15,
    MethodNotAvailable = 16,
    MethodNotFound = 17,
    InvalidEnumerationContext = 21,
    ServerLimitsExceeded = 27,
}

impl CimStatus {
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The symbolic name (`CIM_ERR_...`).
    pub fn name(self) -> &'static str {
        match self {
            CimStatus::Failed => "CIM_ERR_FAILED",
            CimStatus::AccessDenied => "CIM_ERR_ACCESS_DENIED",
            CimStatus::InvalidNamespace => "CIM_ERR_INVALID_NAMESPACE",
            CimStatus::InvalidParameter => "CIM_ERR_INVALID_PARAMETER",
            CimStatus::InvalidClass => "CIM_ERR_INVALID_CLASS",
            CimStatus::NotFound => "CIM_ERR_NOT_FOUND",
            CimStatus::NotSupported => "CIM_ERR_NOT_SUPPORTED",
            CimStatus::ClassHasChildren => "CIM_ERR_CLASS_HAS_CHILDREN",
            CimStatus::ClassHasInstances => "CIM_ERR_CLASS_HAS_INSTANCES",
            CimStatus::InvalidSuperclass => "CIM_ERR_INVALID_SUPERCLASS",
            CimStatus::AlreadyExists => "CIM_ERR_ALREADY_EXISTS",
            CimStatus::NoSuchProperty => "CIM_ERR_NO_SUCH_PROPERTY",
            CimStatus::TypeMismatch => "CIM_ERR_TYPE_MISMATCH",
            CimStatus::QueryLanguageNotSupported => "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
            CimStatus::InvalidQuery => "CIM_ERR_INVALID_QUERY",
            CimStatus::MethodNotAvailable => "CIM_ERR_METHOD_NOT_AVAILABLE",
            CimStatus::MethodNotFound => "CIM_ERR_METHOD_NOT_FOUND",
            CimStatus::InvalidEnumerationContext => "CIM_ERR_INVALID_ENUMERATION_CONTEXT",
            CimStatus::ServerLimitsExceeded => "CIM_ERR_SERVER_LIMITS_EXCEEDED",
        }
    }
}

/// An operation failure answered as `<ERROR CODE=.. DESCRIPTION=..>` inside
/// a 200 response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CimError {
    pub status: CimStatus,
    pub description: String,
}

impl CimError {
    pub fn new(status: CimStatus, description: impl Into<String>) -> Self {
        CimError {
            status,
            description: description.into(),
        }
    }
    pub fn failed(d: impl Into<String>) -> Self {
        Self::new(CimStatus::Failed, d)
    }
    pub fn invalid_namespace(ns: &str) -> Self {
        Self::new(
            CimStatus::InvalidNamespace,
            format!("namespace {ns:?} does not exist"),
        )
    }
    pub fn invalid_parameter(d: impl Into<String>) -> Self {
        Self::new(CimStatus::InvalidParameter, d)
    }
    pub fn invalid_class(class: &str) -> Self {
        Self::new(
            CimStatus::InvalidClass,
            format!("class {class:?} does not exist in this namespace"),
        )
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(CimStatus::NotFound, d)
    }
    pub fn not_supported(d: impl Into<String>) -> Self {
        Self::new(CimStatus::NotSupported, d)
    }
    pub fn method_not_found(class: &str, method: &str) -> Self {
        Self::new(
            CimStatus::MethodNotFound,
            format!("class {class:?} has no method {method:?}"),
        )
    }
}

impl fmt::Display for CimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.code(),
            self.status.name(),
            self.description
        )
    }
}

impl std::error::Error for CimError {}
