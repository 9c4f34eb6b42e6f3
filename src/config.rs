//! The TOML configuration of `ironlun serve`, and the embedded default used
//! when no file is given.
//!
//! ```toml
//! data_dir = "./ironlun-data"          # optional; --data-dir overrides
//!
//! [cim]                                  # optional: CIM-XML replication service
//! http_listen = ["127.0.0.1:5988"]       # [] disables HTTP; --cim-listen overrides
//! https_listen = ["127.0.0.1:5989"]      # [] disables HTTPS; --cim-listen-https overrides
//!
//! [replication]                          # optional
//! expose_replicas = true                 # replicas made through CIM become LUNs at once
//!
//! [[pool]]                               # copy-on-write extent pools
//! name = "default"
//! path = "pool.img"                      # relative to data_dir; a file or block device
//! size = "64G"                           # created sparse when missing
//! extent_size = "64K"                    # optional, fixed at creation
//!
//! [[target]]
//! iqn = "iqn.2026-11.org.ironlun:default"
//! alias = "default"                      # optional
//! portals = ["127.0.0.1:3260"]           # optional; --iscsi-listen overrides
//! allowed_initiators = ["iqn.1994-05.com.redhat:client"]  # optional ACL
//! chap = { user = "u", secret = "secret12345678" }        # optional
//! mutual_chap = { user = "t", secret = "tgtsecret1234" }  # optional
//!
//! [[target.lun]]
//! id = 0
//! size = "1G"            # a thin volume in a pool, created on first start
//! pool = "default"       # optional (default: "default", made under data_dir if not configured)
//! volume = "lun0"        # optional (default: <target suffix>-lun<id>)
//! snapshot = "lun0-s1"   # optional: serve this snapshot instead, read-only
//! path = "/srv/lun0.img" # optional: serve a plain file or block device instead of a pool volume
//! block_size = 512       # optional: 512 or 4096
//! physical_block_size = 4096  # optional: reported physical block size (default: block_size)
//! read_only = false      # optional
//! removable = false      # optional
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    /// CHAP required on discovery sessions.
    pub discovery_chap: Option<ChapConfig>,
    /// The CIM-XML server (`[cim]`: listen addresses, TLS files, users, limits).
    pub cim: Option<ironlun_cim::CimSettings>,
    /// How replicas are served (`[replication]`).
    #[serde(default)]
    pub replication: ReplicationConfig,
}

/// `[replication]`: what happens to the replicas the engine makes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// A replica (clone or mirror target volume, snapshot) of a volume a
    /// target serves becomes a LUN of that target as soon as it is made,
    /// under the next free LUN number (snapshots read-only), and stops
    /// being one when it is deleted. The numbers are kept in
    /// `DATA_DIR/replica-luns.json`.
    #[serde(default = "default_true")]
    pub expose_replicas: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            expose_replicas: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// One copy-on-write extent pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    /// Relative paths are under the data directory.
    pub path: PathBuf,
    /// Size when the pool is created.
    pub size: Option<String>,
    pub extent_size: Option<String>,
}

/// Name of the pool LUNs use when they name none.
pub const DEFAULT_POOL: &str = "default";
/// Size of the implicit default pool (sparse: only written extents take space).
pub const DEFAULT_POOL_SIZE: u64 = 16 << 30;

/// One iSCSI target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub iqn: String,
    pub alias: Option<String>,
    #[serde(default)]
    pub portals: Vec<String>,
    pub allowed_initiators: Option<Vec<String>>,
    pub chap: Option<ChapConfig>,
    pub mutual_chap: Option<ChapConfig>,
    #[serde(default, rename = "lun")]
    pub luns: Vec<LunConfig>,
    /// Target portal group tag.
    #[serde(default = "default_tpgt")]
    pub tpgt: u16,
}

fn default_tpgt() -> u16 {
    1
}

/// CHAP credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapConfig {
    pub user: String,
    pub secret: String,
}

/// One LUN of a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunConfig {
    pub id: u64,
    pub size: Option<String>,
    pub path: Option<PathBuf>,
    pub pool: Option<String>,
    pub volume: Option<String>,
    pub snapshot: Option<String>,
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// The physical block size reported to initiators (READ CAPACITY (16)
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT), so they align I/O.
    #[serde(default)]
    pub physical_block_size: Option<u32>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub removable: bool,
}

fn default_block_size() -> u32 {
    512
}

impl LunConfig {
    /// log2(physical block / logical block): the configured physical block
    /// size, or one logical block.
    pub fn physical_block_exponent(&self) -> u8 {
        let pbs = self
            .physical_block_size
            .unwrap_or(self.block_size)
            .max(self.block_size);
        (pbs / self.block_size.max(1)).trailing_zeros() as u8
    }
}

/// The default target's name.
pub const DEFAULT_IQN: &str = "iqn.2026-11.org.ironlun:default";
/// The default portal.
pub const DEFAULT_PORTAL: &str = "127.0.0.1:3260";

/// A configuration error, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("config {file}: {field}: {problem}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub problem: String,
}

impl Config {
    /// The embedded default: one 1 GiB thin LUN 0 on 127.0.0.1:3260.
    pub fn embedded_default() -> Config {
        Config {
            data_dir: None,
            discovery_chap: None,
            cim: None,
            replication: ReplicationConfig::default(),
            pools: Vec::new(),
            targets: vec![TargetConfig {
                iqn: DEFAULT_IQN.to_string(),
                alias: Some("ironlun default".to_string()),
                portals: vec![DEFAULT_PORTAL.to_string()],
                allowed_initiators: None,
                chap: None,
                mutual_chap: None,
                tpgt: 1,
                luns: vec![LunConfig {
                    id: 0,
                    size: Some("1G".to_string()),
                    path: None,
                    pool: None,
                    volume: None,
                    snapshot: None,
                    block_size: 512,
                    physical_block_size: None,
                    read_only: false,
                    removable: false,
                }],
            }],
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: "(file)".into(),
            problem: e.to_string(),
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            let field = e
                .span()
                .map(|s| {
                    let line = text[..s.start].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(document)".into());
            ConfigError {
                file: file.clone(),
                field,
                problem: e.message().to_string(),
            }
        })?;
        cfg.validate(&file)?;
        Ok(cfg)
    }

    /// Checks what serde cannot: names, sizes, duplicates, portals.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |field: String, problem: String| ConfigError {
            file: file.to_string(),
            field,
            problem,
        };
        if self.targets.is_empty() {
            return Err(err("target".into(), "no target is configured".into()));
        }
        let mut pool_names = HashSet::new();
        for (pi, p) in self.pools.iter().enumerate() {
            let f = |name: &str| format!("pool[{pi}].{name}");
            if p.name.is_empty() || !pool_names.insert(p.name.clone()) {
                return Err(err(
                    f("name"),
                    format!("{:?} is empty or configured twice", p.name),
                ));
            }
            if let Some(sz) = &p.size {
                parse_size(sz).map_err(|e| err(f("size"), e))?;
            }
            if let Some(es) = &p.extent_size {
                let n = parse_size(es).map_err(|e| err(f("extent_size"), e))?;
                if !n.is_power_of_two() || !(4096..=(64 << 20)).contains(&n) {
                    return Err(err(
                        f("extent_size"),
                        format!("{es} is not a power of two from 4K to 64M"),
                    ));
                }
            }
        }
        let mut iqns = HashSet::new();
        for (ti, t) in self.targets.iter().enumerate() {
            let f = |name: &str| format!("target[{ti}].{name}");
            if !valid_iscsi_name(&t.iqn) {
                return Err(err(
                    f("iqn"),
                    format!(
                        "{:?} is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id] or eui.16hex)",
                        t.iqn
                    ),
                ));
            }
            if !iqns.insert(t.iqn.clone()) {
                return Err(err(f("iqn"), format!("{} is configured twice", t.iqn)));
            }
            if let Some(other) = self.targets[..ti]
                .iter()
                .find(|o| file_stem(&o.iqn) == file_stem(&t.iqn))
            {
                return Err(err(
                    f("iqn"),
                    format!(
                        "{} and {} end in the same name {:?}, which names their default volumes and state; make the parts after the last ':' differ",
                        other.iqn,
                        t.iqn,
                        file_stem(&t.iqn)
                    ),
                ));
            }
            for (pi, p) in t.portals.iter().enumerate() {
                if p.parse::<SocketAddr>().is_err() {
                    return Err(err(
                        f(&format!("portals[{pi}]")),
                        format!("{p:?} is not ADDR:PORT (IPv6 as [::1]:3260)"),
                    ));
                }
            }
            for (name, c) in [("chap", &t.chap), ("mutual_chap", &t.mutual_chap)] {
                if let Some(c) = c {
                    if c.user.is_empty() {
                        return Err(err(f(&format!("{name}.user")), "must not be empty".into()));
                    }
                    if c.secret.len() < 12 {
                        return Err(err(
                            f(&format!("{name}.secret")),
                            "must be at least 12 characters (RFC 7143 requires 96 bits)".into(),
                        ));
                    }
                }
            }
            if t.mutual_chap.is_some() && t.chap.is_none() {
                return Err(err(f("mutual_chap"), "needs chap to be set as well".into()));
            }
            if t.luns.is_empty() {
                return Err(err(f("lun"), "a target needs at least one LUN".into()));
            }
            let mut ids = HashSet::new();
            for (li, l) in t.luns.iter().enumerate() {
                let lf = |name: &str| format!("target[{ti}].lun[{li}].{name}");
                if l.id >= 16384 {
                    return Err(err(lf("id"), format!("{} is over the maximum 16383", l.id)));
                }
                if !ids.insert(l.id) {
                    return Err(err(lf("id"), format!("LUN {} is configured twice", l.id)));
                }
                if l.block_size != 512 && l.block_size != 4096 {
                    return Err(err(
                        lf("block_size"),
                        format!("{} is not 512 or 4096", l.block_size),
                    ));
                }
                if let Some(pbs) = l.physical_block_size {
                    if pbs < l.block_size || !pbs.is_power_of_two() || pbs / l.block_size > 1 << 15
                    {
                        return Err(err(
                            lf("physical_block_size"),
                            format!(
                                "{pbs} is not a power of two from block_size ({}) up to 2^15 blocks",
                                l.block_size
                            ),
                        ));
                    }
                }
                if l.path.is_some()
                    && (l.pool.is_some() || l.volume.is_some() || l.snapshot.is_some())
                {
                    return Err(err(lf("path"), "a LUN is either a file (path) or a pool volume (pool/volume/snapshot), not both".into()));
                }
                if let Some(p) = &l.pool {
                    if p != DEFAULT_POOL && !pool_names.contains(p) {
                        return Err(err(
                            lf("pool"),
                            format!("no pool named {p:?} is configured"),
                        ));
                    }
                }
                if l.snapshot.is_some() && l.size.is_some() {
                    return Err(err(
                        lf("size"),
                        "a snapshot LUN takes its size from the snapshot".into(),
                    ));
                }
                match (&l.size, &l.path) {
                    (None, None) if l.snapshot.is_none() => {
                        return Err(err(
                            lf("size"),
                            "give a size (pool volume), a path (file), or a snapshot".into(),
                        ))
                    }
                    (Some(s), _) => {
                        let bytes = parse_size(s).map_err(|p| err(lf("size"), p))?;
                        if bytes == 0 || bytes % l.block_size as u64 != 0 {
                            return Err(err(
                                lf("size"),
                                format!(
                                    "{s} is not a positive multiple of the {}-byte block",
                                    l.block_size
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(acl) = &t.allowed_initiators {
                for (ai, a) in acl.iter().enumerate() {
                    if !valid_iscsi_name(a) {
                        return Err(err(
                            f(&format!("allowed_initiators[{ai}]")),
                            format!("{a:?} is not an iSCSI name"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The file-name-safe short form of a target name (the part after the last
/// `:`), used to name a target's default volumes and its state directory.
pub fn file_stem(iqn: &str) -> String {
    let tail = iqn.rsplit(':').next().unwrap_or(iqn);
    tail.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses "1G", "512M", "4096", "10GiB" into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 1G, 512M or 4096"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A loose check of RFC 7143 3.2.6 name forms.
pub fn valid_iscsi_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 223 {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("iqn.") {
        rest.len() > 8
            && rest.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[4] == b'-'
            && rest.as_bytes()[5..7].iter().all(u8::is_ascii_digit)
            && lower
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
    } else if let Some(rest) = lower.strip_prefix("eui.") {
        rest.len() == 16 && rest.chars().all(|c| c.is_ascii_hexdigit())
    } else if let Some(rest) = lower.strip_prefix("naa.") {
        (rest.len() == 16 || rest.len() == 32) && rest.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::embedded_default().validate("(default)").unwrap();
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn errors_name_file_and_field() {
        let dir = std::env::temp_dir().join(format!("ironlun-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(
            &p,
            "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\n[[target.lun]]\nid = 0\nsize = \"1Q\"\n",
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        assert!(e.contains("target[0].lun[0].size"), "{e}");
        std::fs::write(&p, "[[target]]\niqn = \"iqn.2026-11.org.x:t\"\nbogus = 1\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::write(
            &p,
            "[[target]]\niqn = \"not-a-name\"\n[[target.lun]]\nid=0\nsize=\"1M\"\n",
        )
        .unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("target[0].iqn"), "{e}");
    }

    #[test]
    fn targets_whose_names_end_alike_are_refused() {
        let mut cfg = Config::embedded_default();
        let mut other = cfg.targets[0].clone();
        other.iqn = "iqn.2026-11.org.elsewhere:default".into();
        cfg.targets.push(other);
        let e = cfg.validate("x.toml").unwrap_err().to_string();
        assert!(
            e.contains("target[1].iqn") && e.contains("\"default\""),
            "{e}"
        );
    }

    #[test]
    fn names() {
        assert!(valid_iscsi_name("iqn.2026-11.org.ironlun:default"));
        assert!(valid_iscsi_name("eui.0123456789abcdef"));
        assert!(!valid_iscsi_name("iqn.bad"));
        assert!(!valid_iscsi_name("foo"));
    }
}
