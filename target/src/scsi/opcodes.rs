//! REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the all-commands form and
//! the one-command forms (reporting options 001b, 010b, 011b), with CDB
//! usage masks that say exactly which bits this device server looks at, and
//! command timeouts descriptors when RCTD is set.

use super::sanitize;
use super::sense::Sense;
use super::{Ctx, Reply, ScsiResult};

/// One supported command.
pub struct Descriptor {
    pub opcode: u8,
    /// Service action, for commands that have one.
    pub sa: Option<u16>,
    /// CDB usage data; its length is the CDB length.
    pub usage: &'static [u8],
    /// Recommended timeout in seconds.
    pub timeout: u32,
}

const fn d(opcode: u8, sa: Option<u16>, usage: &'static [u8], timeout: u32) -> Descriptor {
    Descriptor {
        opcode,
        sa,
        usage,
        timeout,
    }
}

/// Every command `execute` implements, in opcode order.
pub static SUPPORTED: &[Descriptor] = &[
    d(0x00, None, &[0x00, 0, 0, 0, 0, 0x05], 10),
    d(0x03, None, &[0x03, 0x01, 0, 0, 0xFF, 0x05], 10),
    d(0x08, None, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x05], 60),
    d(0x0A, None, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x05], 60),
    d(0x12, None, &[0x12, 0x03, 0xFF, 0xFF, 0xFF, 0x05], 10),
    d(0x15, None, &[0x15, 0x11, 0, 0, 0xFF, 0x05], 30),
    d(0x16, None, &[0x16, 0, 0, 0, 0, 0x05], 10),
    d(0x17, None, &[0x17, 0, 0, 0, 0, 0x05], 10),
    d(0x1A, None, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x05], 10),
    d(0x1B, None, &[0x1B, 0x01, 0, 0, 0xF7, 0x05], 60),
    d(0x1E, None, &[0x1E, 0, 0, 0, 0x03, 0x05], 10),
    d(
        0x25,
        None,
        &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x05],
        10,
    ),
    d(
        0x28,
        None,
        &[0x28, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x2A,
        None,
        &[0x2A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x2E,
        None,
        &[0x2E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x2F,
        None,
        &[0x2F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x34,
        None,
        &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x35,
        None,
        &[0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x37,
        None,
        &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x41,
        None,
        &[0x41, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0xFF, 0xFF, 0x05],
        120,
    ),
    d(
        0x42,
        None,
        &[0x42, 0x01, 0, 0, 0, 0, 0x1F, 0xFF, 0xFF, 0x05],
        120,
    ),
    d(
        0x48,
        Some(0x01),
        &[0x48, 0xA1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        3600,
    ),
    d(
        0x48,
        Some(0x02),
        &[0x48, 0xA2, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        3600,
    ),
    d(
        0x48,
        Some(0x03),
        &[0x48, 0xA3, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        3600,
    ),
    d(
        0x48,
        Some(0x1F),
        &[0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        60,
    ),
    d(
        0x55,
        None,
        &[0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        30,
    ),
    d(0x56, None, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x05], 10),
    d(0x57, None, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x05], 10),
    d(
        0x5A,
        None,
        &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5E,
        Some(0x00),
        &[0x5E, 0x00, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5E,
        Some(0x01),
        &[0x5E, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5E,
        Some(0x02),
        &[0x5E, 0x02, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5E,
        Some(0x03),
        &[0x5E, 0x03, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x00),
        &[0x5F, 0x00, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x01),
        &[0x5F, 0x01, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x02),
        &[0x5F, 0x02, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x03),
        &[0x5F, 0x03, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x04),
        &[0x5F, 0x04, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x05),
        &[0x5F, 0x05, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x06),
        &[0x5F, 0x06, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    d(
        0x5F,
        Some(0x07),
        &[0x5F, 0x07, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05],
        10,
    ),
    // THIRD-PARTY COPY OUT: EXTENDED COPY (LID1), POPULATE TOKEN, WRITE
    // USING TOKEN (the list identifier and parameter list length).
    d(
        0x83,
        Some(0x00),
        &[
            0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        300,
    ),
    d(
        0x83,
        Some(0x10),
        &[
            0x83, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        60,
    ),
    d(
        0x83,
        Some(0x11),
        &[
            0x83, 0x11, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        300,
    ),
    // THIRD-PARTY COPY IN: RECEIVE COPY RESULTS (COPY STATUS, OPERATING
    // PARAMETERS), RECEIVE ROD TOKEN INFORMATION.
    d(
        0x84,
        Some(0x00),
        &[
            0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
    d(
        0x84,
        Some(0x03),
        &[
            0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
    d(
        0x84,
        Some(0x07),
        &[
            0x84, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
    d(
        0x88,
        None,
        &[
            0x88, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x89,
        None,
        &[
            0x89, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x8A,
        None,
        &[
            0x8A, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x8B,
        None,
        &[
            0x8B, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x8E,
        None,
        &[
            0x8E, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x8F,
        None,
        &[
            0x8F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x90,
        None,
        &[
            0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x91,
        None,
        &[
            0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x93,
        None,
        &[
            0x93, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        120,
    ),
    d(
        0x9C,
        None,
        &[
            0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0x1F, 0x05,
        ],
        60,
    ),
    d(
        0x9E,
        Some(0x10),
        &[
            0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
    d(
        0x9E,
        Some(0x12),
        &[
            0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0,
            0x05,
        ],
        10,
    ),
    d(
        0xA0,
        None,
        &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05],
        10,
    ),
    d(
        0xA3,
        Some(0x0A),
        &[0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05],
        10,
    ),
    d(
        0xA3,
        Some(0x0C),
        &[
            0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
    d(
        0xA8,
        None,
        &[
            0xA8, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x05,
        ],
        60,
    ),
    d(
        0xAA,
        None,
        &[
            0xAA, 0xFA, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x05,
        ],
        60,
    ),
    d(
        0xAE,
        None,
        &[
            0xAE, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x05,
        ],
        60,
    ),
    d(
        0xAF,
        None,
        &[
            0xAF, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F, 0x05,
        ],
        60,
    ),
    d(
        0xB7,
        None,
        &[
            0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05,
        ],
        10,
    ),
];

/// Whether this logical unit serves the command (SANITIZE only when
/// allowed, its erase methods only on thin devices).
fn available(ctx: &Ctx<'_>, c: &Descriptor) -> bool {
    match (c.opcode, c.sa) {
        (0x48, Some(sa)) => sanitize::offered(ctx, sa as u8),
        _ => true,
    }
}

/// Whether an opcode uses service actions (among those we implement).
fn has_service_actions(list: &[&Descriptor], opcode: u8) -> bool {
    list.iter().any(|c| c.opcode == opcode && c.sa.is_some())
}

fn timeouts(c: &Descriptor) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[1] = 0x0A;
    // Nominal processing timeout unknown (0); recommended timeout.
    t[8..12].copy_from_slice(&c.timeout.to_be_bytes());
    t
}

pub fn report(
    ctx: &Ctx<'_>,
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    alloc: u32,
) -> ScsiResult {
    let list: Vec<&Descriptor> = SUPPORTED.iter().filter(|c| available(ctx, c)).collect();
    let data = match options {
        0 => {
            let mut d = vec![0u8; 4];
            for c in &list {
                d.push(c.opcode);
                d.push(0);
                d.extend_from_slice(&c.sa.unwrap_or(0).to_be_bytes());
                d.push(0);
                d.push((if rctd { 0x02 } else { 0 }) | u8::from(c.sa.is_some()));
                d.extend_from_slice(&(c.usage.len() as u16).to_be_bytes());
                if rctd {
                    d.extend_from_slice(&timeouts(c));
                }
            }
            let len = (d.len() - 4) as u32;
            d[0..4].copy_from_slice(&len.to_be_bytes());
            d
        }
        1..=3 => {
            let with_sa = has_service_actions(&list, opcode);
            let found = match options {
                1 => {
                    if with_sa {
                        return Err(Sense::invalid_cdb_field(2, Some(2)));
                    }
                    list.iter().find(|c| c.opcode == opcode)
                }
                2 => {
                    if !with_sa && list.iter().any(|c| c.opcode == opcode) {
                        return Err(Sense::invalid_cdb_field(2, Some(2)));
                    }
                    list.iter().find(|c| c.opcode == opcode && c.sa == Some(sa))
                }
                _ => list
                    .iter()
                    .find(|c| c.opcode == opcode && (c.sa.is_none() || c.sa == Some(sa))),
            };
            let mut d = vec![0u8; 4];
            match found {
                Some(c) => {
                    d[1] = 0x03 | if rctd { 0x80 } else { 0 };
                    d[2..4].copy_from_slice(&(c.usage.len() as u16).to_be_bytes());
                    d.extend_from_slice(c.usage);
                    if rctd {
                        d.extend_from_slice(&timeouts(c));
                    }
                }
                None => d[1] = 0x01, // not supported
            }
            d
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(2))),
    };
    Ok(Reply::alloc(data, alloc))
}

#[cfg(test)]
mod tests {
    use super::super::cdb;
    use super::super::testutil::*;
    use super::super::LuOptions;
    use super::*;

    fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16) -> Vec<u8> {
        let s = sa.to_be_bytes();
        vec![
            0xA3,
            0x0C,
            (if rctd { 0x80 } else { 0 }) | options,
            opcode,
            s[0],
            s[1],
            0,
            0,
            0xFF,
            0xFF,
            0,
            0,
        ]
    }

    #[test]
    fn usage_masks_are_consistent() {
        for c in SUPPORTED {
            assert_eq!(c.usage[0], c.opcode);
            assert_eq!(Some(c.usage.len()), cdb::cdb_len(c.opcode));
            if let Some(sa) = c.sa {
                assert_eq!((c.usage[1] & 0x1F) as u16, sa);
            }
            // Every listed command decodes (not "invalid opcode").
            let mut raw = vec![0u8; c.usage.len()];
            raw[0] = c.opcode;
            if let Some(sa) = c.sa {
                raw[1] = sa as u8;
            }
            assert_ne!(
                cdb::decode(&raw),
                Err(Sense::invalid_opcode()),
                "{:x}",
                c.opcode
            );
        }
    }

    #[test]
    fn all_and_one_command_forms() {
        let t = Harness::with_lu_options(
            64,
            true,
            LuOptions {
                allow_sanitize: true,
                ..LuOptions::default()
            },
        );
        let o = t.run(&rsoc(false, 0, 0, 0));
        assert_eq!(o.status, 0);
        let len = u32::from_be_bytes(o.data_in[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, SUPPORTED.len() * 8);
        let o = t.run(&rsoc(true, 0, 0, 0));
        assert_eq!(o.data_in.len(), 4 + SUPPORTED.len() * 20);
        assert_eq!(o.data_in[4 + 5] & 0x02, 0x02);
        assert_eq!(&o.data_in[4 + 8..4 + 10], &[0, 0x0A]);
        for c in SUPPORTED {
            let good = if c.sa.is_some() { 2 } else { 1 };
            let bad = if c.sa.is_some() { 1 } else { 2 };
            let o = t.run(&rsoc(false, good, c.opcode, c.sa.unwrap_or(0)));
            assert_eq!(o.status, 0);
            assert_eq!(o.data_in[1] & 0x07, 3);
            assert_eq!(&o.data_in[4..], c.usage);
            let o = t.run(&rsoc(false, bad, c.opcode, c.sa.unwrap_or(0)));
            assert_sense(&o, 5, 0x24, 0);
        }
        let o = t.run(&rsoc(false, 1, 0x28, 0));
        assert_eq!(o.data_in[5] & 0x18, 0x18, "DPO/FUA in READ(10) usage");
        let o = t.run(&rsoc(false, 1, 0xC0, 0));
        assert_eq!((o.status, o.data_in[1] & 7), (0, 1));
        for op in [0x89u8, 0x8B, 0x9C] {
            let o = t.run(&rsoc(false, 1, op, 0));
            assert_eq!(o.data_in[5] & 0x18, 0x18, "DPO/FUA in {op:x} usage");
        }
    }

    #[test]
    fn sanitize_listed_only_where_served() {
        let count = |t: &Harness| {
            let o = t.run(&rsoc(false, 0, 0, 0));
            o.data_in[4..].chunks(8).filter(|d| d[0] == 0x48).count()
        };
        assert_eq!(count(&Harness::new(64, true)), 0);
        let opts = LuOptions {
            allow_sanitize: true,
            ..LuOptions::default()
        };
        assert_eq!(count(&Harness::with_lu_options(64, true, opts.clone())), 4);
        // Thick: OVERWRITE and EXIT FAILURE MODE only.
        let t = Harness::with_lu_options(64, false, opts);
        assert_eq!(count(&t), 2);
        let o = t.run(&rsoc(false, 2, 0x48, 2));
        assert_eq!(o.data_in[1] & 7, 1);
    }
}
