//! # ironlun-target
//!
//! Owns ironlun's iSCSI face: the RFC 7143 PDU server and the SPC-4 / SBC-3
//! block-device emulation that answers SCSI commands from an
//! `ironlun_cow::BlockDevice`.
//!
//! ## Layout
//! - [`pdu`]: the wire form; 48-byte headers decoded into typed initiator
//!   PDUs and encoded from typed target PDUs. Pure, fuzzed.
//! - [`connection`]: framed PDU I/O on one TCP connection (AHS, digests,
//!   data segments read straight into their final buffers, vectored sends).
//! - [`session`]: the full feature phase: CmdSN window, R2T / Data-Out,
//!   Data-In with status, task management, NOP, text, logout.
//! - [`scsi`]: SCSI command emulation per logical unit, and the LUN map.
//! - [`login`]: the login phase as an explicit state machine (stages,
//!   status codes, ACLs); pure, driven per Login Request by the server.
//! - [`text`]: `key=value` text segments: parser, encoder, multi-PDU
//!   accumulator. Pure, fuzzed.
//! - [`negotiation`]: RFC 7143 operational keys (list / min / max / and /
//!   or / declarative semantics) and the resulting `SessionParams`.
//! - [`chap`]: CHAP (SHA-256, SHA-1, MD5), one-way and mutual, as the
//!   authenticator.
//! - [`server`]: listening portals, the login phase of each connection,
//!   the session table (reinstatement), orderly shutdown.
//! - [`discovery`]: Text Requests in full feature phase: SendTargets,
//!   split responses, FFP key answers.
//!
//! Dependencies point one way: this crate uses `ironlun-cow`, never the
//! other way round.

pub mod chap;
pub mod connection;
pub mod discovery;
pub mod login;
pub mod negotiation;
pub mod pdu;
pub mod scsi;
pub mod server;
pub mod session;
pub mod text;
