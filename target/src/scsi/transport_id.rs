//! I_T nexus identities for reservations, and the iSCSI TransportID
//! (SPC-4 7.6.4.6) that names an initiator port on the wire.
//!
//! An iSCSI initiator port is the initiator name plus the ISID; its SCSI
//! name is `<initiator name>,i,0x<ISID as 12 hex digits>`. A target port is
//! the target name plus the relative target port identifier (the portal
//! group tag is kept for display). Persistent reservations are keyed by the
//! pair, so a relogin with a new ISID is a new I_T nexus (spdk#989).

use super::Nexus;

/// SCSI protocol identifier of iSCSI.
pub const PROTOCOL_ISCSI: u8 = 0x5;

/// One I_T nexus, as reservations identify it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortId {
    /// Initiator name, lower-cased (iSCSI names compare case-insensitively).
    pub initiator: String,
    pub isid: [u8; 6],
    /// Target name, lower-cased.
    pub target: String,
    /// Relative target port identifier.
    pub rel_port: u16,
    /// Target portal group tag (informational).
    pub tpgt: u16,
}

impl PortId {
    pub fn from_nexus(n: &Nexus) -> PortId {
        PortId {
            initiator: n.initiator_name.to_ascii_lowercase(),
            isid: n.isid,
            target: n.target_port.target_name.to_ascii_lowercase(),
            rel_port: n.target_port.relative_port_id,
            tpgt: n.target_port.tpgt,
        }
    }

    /// Same initiator port (name and ISID).
    pub fn same_initiator_port(&self, other: &PortId) -> bool {
        self.isid == other.isid && self.initiator == other.initiator
    }

    /// Same target port.
    pub fn same_target_port(&self, other: &PortId) -> bool {
        self.rel_port == other.rel_port && self.target == other.target
    }

    /// `iqn...,i,0x<isid>`: the SCSI initiator port name.
    pub fn initiator_port_name(&self) -> String {
        format!("{},i,0x{}", self.initiator, hex_isid(&self.isid))
    }

    /// The TransportID naming this initiator port (format 01b, with ISID).
    pub fn transport_id(&self) -> Vec<u8> {
        encode(&self.initiator, self.isid)
    }
}

fn hex_isid(isid: &[u8; 6]) -> String {
    isid.iter().map(|b| format!("{b:02x}")).collect()
}

/// An iSCSI TransportID of format 01b (initiator port name with ISID),
/// NUL-terminated and padded to a multiple of four bytes.
pub fn encode(initiator: &str, isid: [u8; 6]) -> Vec<u8> {
    let name = format!("{initiator},i,0x{}", hex_isid(&isid));
    let mut body = name.into_bytes();
    body.push(0);
    while body.len() & 3 != 0 || body.len() < 20 {
        body.push(0);
    }
    let mut t = vec![0x40 | PROTOCOL_ISCSI, 0];
    t.extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_be_bytes());
    t.extend_from_slice(&body);
    t
}

/// What a TransportID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// Format 00b: every initiator port of this initiator name.
    Name(String),
    /// Format 01b: one initiator port.
    Port(String, [u8; 6]),
}

/// Why a TransportID was refused; the offset is relative to its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub byte: u16,
}

/// Decodes the TransportID at the start of `buf`; returns what it names
/// and its length in bytes.
pub fn decode(buf: &[u8]) -> Result<(Named, usize), Invalid> {
    if buf.len() < 4 {
        return Err(Invalid { byte: 0 });
    }
    if buf[0] & 0x0F != PROTOCOL_ISCSI {
        return Err(Invalid { byte: 0 });
    }
    let format = buf[0] >> 6;
    if format > 1 || buf[0] & 0x30 != 0 {
        return Err(Invalid { byte: 0 });
    }
    let add = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let total = 4 + add;
    if add < 4 || add & 3 != 0 || total > buf.len() {
        return Err(Invalid { byte: 2 });
    }
    let body = &buf[4..total];
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let Ok(text) = std::str::from_utf8(&body[..end]) else {
        return Err(Invalid { byte: 4 });
    };
    if text.is_empty() {
        return Err(Invalid { byte: 4 });
    }
    if format == 0 {
        if text.contains(',') {
            return Err(Invalid { byte: 4 });
        }
        return Ok((Named::Name(text.to_ascii_lowercase()), total));
    }
    let lower = text.to_ascii_lowercase();
    let Some((name, isid)) = lower.split_once(",i,0x") else {
        return Err(Invalid { byte: 4 });
    };
    if name.is_empty() || isid.len() != 12 {
        return Err(Invalid { byte: 4 });
    }
    let mut out = [0u8; 6];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&isid[2 * i..2 * i + 2], 16).map_err(|_| Invalid { byte: 4 })?;
    }
    Ok((Named::Port(name.to_string(), out), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_isid() {
        let t = encode("iqn.2026-11.test:a", [0x80, 0, 0x12, 0x34, 0, 1]);
        assert_eq!(t.len() % 4, 0);
        assert_eq!(t[0], 0x45);
        let (named, len) = decode(&t).unwrap();
        assert_eq!(len, t.len());
        assert_eq!(
            named,
            Named::Port("iqn.2026-11.test:a".into(), [0x80, 0, 0x12, 0x34, 0, 1])
        );
    }

    #[test]
    fn name_only_and_errors() {
        let mut t = vec![0x05, 0, 0, 20];
        t.extend_from_slice(b"iqn.2026-11.test:b\0\0");
        assert_eq!(
            decode(&t).unwrap(),
            (Named::Name("iqn.2026-11.test:b".into()), 24)
        );
        assert!(decode(&t[..10]).is_err());
        assert!(decode(&[0x01, 0, 0, 4, b'a', 0, 0, 0]).is_err()); // not iSCSI
        assert!(decode(&[0x45, 0, 0, 8, b'a', b',', b'i', 0, 0, 0, 0, 0]).is_err());
        for n in 0..40 {
            let _ = decode(&vec![0x45; n]);
        }
    }
}
