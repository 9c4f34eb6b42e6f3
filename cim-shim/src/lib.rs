//! # ironlun-cim
//!
//! Will own ironlun's management face: a CIM-XML server (DMTF DSP0200 /
//! DSP0201) over HTTP and HTTPS that `pywbemcli` and `wbemcli` drive. It
//! decodes CIM operations, calls the `ironlun-replication` engine and encodes
//! the answers; it holds no replication logic of its own.
//!
//! Not built yet: this crate is a placeholder until the cim-shim issue.
