//! CIM-XML (DSP0201) codec.

pub mod decode;
pub mod dom;
pub mod encode;
