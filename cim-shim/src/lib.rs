//! # ironlun-cim
//!
//! ironlun's management face: a CIM-XML server (DMTF DSP0200 operations,
//! DSP0201 encoding) over HTTP and HTTPS that `pywbemcli` and `wbemcli`
//! drive. It decodes CIM operations, checks them against the class
//! [`schema`], calls a [`Provider`] (the replication engine implements it)
//! and encodes the answers; it holds no replication logic of its own.
//!
//! * [`xml`]: request decoder (bounded, no DOCTYPE / entity expansion) and
//!   response encoder.
//! * [`schema`]: the class declarations, as data.
//! * [`ops`]: intrinsic operations and extrinsic method dispatch.
//! * [`server`]: HTTP/HTTPS front end ([`CimServer`]).
//! * [`engine_provider`]: [`EngineProvider`], the real provider over the
//!   replication engine.
//! * [`testing`]: an in-memory provider — a **test aid**, not the engine.

pub mod credentials;
pub mod engine_provider;
pub mod error;
pub mod ops;
pub mod provider;
pub mod schema;
pub mod server;
pub mod testing;
pub mod tls;
pub mod value;
pub mod xml;

pub use credentials::CimUser;
pub use engine_provider::EngineProvider;
pub use error::{CimError, CimStatus};
pub use provider::{path_of, MethodOutcome, Params, Provider};
pub use server::{CimConfig, CimServer, CimSettings, ServerError};
pub use value::{CimType, CimValue, Instance, KeyValue, ObjectPath};
