//! The persistent reservation state of one logical unit on disk.
//!
//! File `<state dir>/pr.state`, a small versioned text file, rewritten
//! whole and atomically on every change (write `pr.state.tmp`, fsync,
//! rename over `pr.state`, fsync the directory):
//!
//! ```text
//! ironlun-pr 1
//! generation 7
//! aptpl 1
//! reg <key hex> <initiator> <isid hex> <target> <rel port> <tpgt> <all_tg_pt 0|1>
//! res <type> <holder: index into the reg lines, or - for all-registrants types>
//! crc32c <hex, of every byte before this line>
//! ```
//!
//! Names are percent-encoded (anything but `A-Za-z0-9.:-_,`). A file that
//! does not parse or whose checksum does not match is moved aside to
//! `pr.state.corrupt` and the unit starts without reservations (logged);
//! it never panics.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::reservation::{PrState, Registration, Reservation};
use super::transport_id::PortId;

const FILE: &str = "pr.state";
const TMP: &str = "pr.state.tmp";
const CORRUPT: &str = "pr.state.corrupt";
const MAGIC: &str = "ironlun-pr 1";

/// Where one logical unit keeps its reservation state.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Reads the saved state: `Ok(None)` when there is none yet, `Err`
    /// (with the reason) when the file is unreadable or damaged; a damaged
    /// file has then been moved aside.
    pub fn load(&self) -> Result<Option<PrState>, String> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match decode(&text) {
            Ok(st) => Ok(Some(st)),
            Err(why) => {
                let aside = self.dir.join(CORRUPT);
                let moved = fs::rename(&path, &aside).is_ok();
                Err(format!(
                    "{}: {why}{}",
                    path.display(),
                    if moved {
                        format!(" (moved to {})", aside.display())
                    } else {
                        String::new()
                    }
                ))
            }
        }
    }

    /// Writes `st` atomically and durably.
    pub fn save(&self, st: &PrState) -> io::Result<()> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir)?;
            // Make the new directory's own entry durable too.
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        let tmp = self.dir.join(TMP);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(encode(st).as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.path())?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'_' | b',') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    if o.is_empty() {
        o.push('%');
    }
    o
}

fn unesc(s: &str) -> Result<String, String> {
    if s == "%" {
        return Ok(String::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("bad name {s:?}"))
}

/// The file contents for `st`.
pub fn encode(st: &PrState) -> String {
    let mut s = format!(
        "{MAGIC}\ngeneration {}\naptpl {}\n",
        st.generation,
        u8::from(st.aptpl)
    );
    for r in &st.regs {
        let p = &r.port;
        s.push_str(&format!(
            "reg {:016x} {} {} {} {} {} {}\n",
            r.key,
            esc(&p.initiator),
            p.isid
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            esc(&p.target),
            p.rel_port,
            p.tpgt,
            u8::from(r.all_tg_pt)
        ));
    }
    if let Some(res) = &st.res {
        let holder = res
            .holder
            .as_ref()
            .and_then(|h| st.regs.iter().position(|r| &r.port == h))
            .map_or_else(|| "-".to_string(), |i| i.to_string());
        s.push_str(&format!("res {} {holder}\n", res.rtype));
    }
    let crc = crc32c::crc32c(s.as_bytes());
    s.push_str(&format!("crc32c {crc:08x}\n"));
    s
}

/// Parses file contents; every inconsistency is an error.
pub fn decode(raw: &[u8]) -> Result<PrState, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let body_end = text
        .rfind("crc32c ")
        .ok_or_else(|| "no checksum line".to_string())?;
    let (body, tail) = text.split_at(body_end);
    let want = tail
        .strip_prefix("crc32c ")
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|h| h.len() == 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| "bad checksum line".to_string())?;
    if crc32c::crc32c(body.as_bytes()) != want {
        return Err("checksum mismatch".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC) {
        return Err("not an ironlun PR state file (or another version)".into());
    }
    let mut st = PrState::default();
    let mut res_line: Option<(u8, Option<usize>)> = None;
    for (n, line) in lines.enumerate() {
        let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 2);
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["generation", g] => st.generation = g.parse().map_err(|_| bad("generation"))?,
            ["aptpl", a] => st.aptpl = *a == "1",
            ["reg", key, ini, isid, tgt, rel, tpgt, atp] => {
                let key = u64::from_str_radix(key, 16).map_err(|_| bad("key"))?;
                if key == 0 {
                    return Err(bad("zero key"));
                }
                if isid.len() != 12 {
                    return Err(bad("isid"));
                }
                let mut id = [0u8; 6];
                for (i, o) in id.iter_mut().enumerate() {
                    *o = isid
                        .get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| bad("isid"))?;
                }
                st.regs.push(Registration {
                    key,
                    port: PortId {
                        initiator: unesc(ini).map_err(|e| bad(&e))?,
                        isid: id,
                        target: unesc(tgt).map_err(|e| bad(&e))?,
                        rel_port: rel.parse().map_err(|_| bad("relative port"))?,
                        tpgt: tpgt.parse().map_err(|_| bad("tpgt"))?,
                    },
                    all_tg_pt: *atp == "1",
                });
            }
            ["res", t, h] => {
                let t: u8 = t.parse().map_err(|_| bad("type"))?;
                let h = if *h == "-" {
                    None
                } else {
                    Some(h.parse::<usize>().map_err(|_| bad("holder"))?)
                };
                res_line = Some((t, h));
            }
            [""] => {}
            _ => return Err(bad("unknown line")),
        }
    }
    if let Some((t, h)) = res_line {
        if !super::reservation::valid_type(t) {
            return Err(format!("reservation type {t} invalid"));
        }
        let all = super::reservation::all_registrants(t);
        let holder = match (all, h) {
            (true, None) if !st.regs.is_empty() => None,
            (false, Some(i)) if i < st.regs.len() => Some(st.regs[i].port.clone()),
            _ => return Err("reservation holder inconsistent".into()),
        };
        st.res = Some(Reservation { rtype: t, holder });
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PrState {
        let p = |i: &str, n: u8| PortId {
            initiator: i.into(),
            isid: [0x80, 0, 0, 0, 0, n],
            target: "iqn.2026-11.org.ironlun:t x".into(),
            rel_port: 1,
            tpgt: 1,
        };
        PrState {
            generation: 9,
            aptpl: true,
            regs: vec![
                Registration {
                    key: 0xABCD,
                    port: p("iqn.a", 1),
                    all_tg_pt: false,
                },
                Registration {
                    key: 7,
                    port: p("iqn.b%", 2),
                    all_tg_pt: true,
                },
            ],
            res: Some(Reservation {
                rtype: 1,
                holder: Some(p("iqn.b%", 2)),
            }),
        }
    }

    #[test]
    fn round_trip() {
        let st = sample();
        let text = encode(&st);
        assert_eq!(decode(text.as_bytes()).unwrap(), st);
        let mut ar = st.clone();
        ar.res = Some(Reservation {
            rtype: 8,
            holder: None,
        });
        assert_eq!(decode(encode(&ar).as_bytes()).unwrap(), ar);
        assert_eq!(
            decode(encode(&PrState::default()).as_bytes()).unwrap(),
            PrState::default()
        );
    }

    #[test]
    fn damage_is_detected_not_panicked_on() {
        let text = encode(&sample()).into_bytes();
        for i in 0..text.len() {
            let mut t = text.clone();
            t[i] ^= 0x01;
            assert!(decode(&t).is_err(), "flip at {i} accepted");
            let _ = decode(&text[..i]);
        }
        assert!(decode(b"").is_err());
        assert!(decode(&[0xFF, 0xFE]).is_err());
    }

    #[test]
    fn store_saves_loads_and_sets_damage_aside() {
        let dir = std::env::temp_dir().join(format!("ironlun-pr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Store::new(dir.join("lu"));
        assert_eq!(s.load().unwrap(), None);
        s.save(&sample()).unwrap();
        assert_eq!(s.load().unwrap(), Some(sample()));
        fs::write(s.path(), b"garbage").unwrap();
        assert!(s.load().is_err());
        assert!(dir.join("lu").join(CORRUPT).exists());
        assert_eq!(s.load().unwrap(), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
