//! Offline verbs on a pool that no server holds (`ironlun pool|volume|snapshot|clone ...`),
//! like qemu-img. Each verb opens the pool file directly (taking its lock,
//! so a pool a server holds is refused with a clear message) and closes it
//! cleanly before returning.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use ironlun_cow::{BlockDevice, Durability, Pool, PoolOptions, Provisioning};

/// The offline verbs. Each runs against a pool file directly.
#[derive(Debug, Subcommand)]
pub enum OfflineCommand {
    /// Create, inspect and check pools.
    Pool {
        #[command(subcommand)]
        cmd: PoolCmd,
        /// Print machine-readable JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Create, list, delete, import and export volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
        /// Print machine-readable JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Create, list and delete snapshots.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
        /// Print machine-readable JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Create writable clones of snapshots.
    Clone {
        #[command(subcommand)]
        cmd: CloneCmd,
        /// Print machine-readable JSON.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Create a pool file (sparse) of SIZE bytes.
    Create {
        path: PathBuf,
        /// Total size, e.g. 64G (K, M, G, T suffixes are powers of 1024).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Extent size, a power of two from 4K to 64M.
        #[arg(long, value_parser = parse_size, default_value = "64K")]
        extent_size: u64,
        /// Logical block size of the pool's volumes (512 or 4096).
        #[arg(long, default_value_t = 512)]
        block_size: u32,
    },
    /// Show a pool's layout and usage.
    Info { path: PathBuf },
    /// Verify every metadata invariant; exit status 1 on damage.
    Check { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a thin volume.
    Create {
        pool: PathBuf,
        name: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// List volumes and clones.
    List { pool: PathBuf },
    /// Delete a volume (or clone) and its snapshots.
    Delete { pool: PathBuf, name: String },
    /// Create volume NAME from a raw image (zero extents are not stored).
    Import {
        pool: PathBuf,
        name: String,
        rawfile: PathBuf,
        /// Volume size; default: the raw file's size rounded up to a block.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
    },
    /// Write a volume or snapshot to a raw image (sparse: holes where unmapped or zero).
    Export {
        pool: PathBuf,
        /// A volume or snapshot name.
        name: String,
        rawfile: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Snapshot VOLUME as NAME (O(1): no walk or copy of the map; durable
    /// before the command exits).
    Create {
        pool: PathBuf,
        volume: String,
        name: String,
    },
    /// List snapshots.
    List { pool: PathBuf },
    /// Delete a snapshot (refused while clones use it).
    Delete { pool: PathBuf, name: String },
}

#[derive(Debug, Subcommand)]
pub enum CloneCmd {
    /// Create a writable clone NAME of SNAPSHOT.
    Create {
        pool: PathBuf,
        snapshot: String,
        name: String,
    },
}

/// Parses `4096`, `64K`, `512M`, `1G`, `2T`, `1GiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, suffix) = lower.split_at(num_end);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let shift = match suffix.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(format!("bad size suffix in {s:?} (use K, M, G, T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A tiny JSON value writer: the CLI's output is flat enough that a
/// dependency is not worth it.
enum J {
    S(String),
    N(u64),
    B(bool),
    Null,
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

impl J {
    fn render(&self, out: &mut String) {
        match self {
            J::S(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::N(n) => out.push_str(&n.to_string()),
            J::B(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Null => out.push_str("null"),
            J::A(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.render(out);
                }
                out.push(']');
            }
            J::O(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    J::S(k.to_string()).render(out);
                    out.push(':');
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn print(&self) {
        let mut s = String::new();
        self.render(&mut s);
        println!("{s}");
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr counting `total` bytes, for verbs that move
/// data (import, export). Hidden, printing nothing, unless stderr is a
/// terminal: scripts and `--json` output never see it.
fn byte_progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_message(what.to_string());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.force_draw();
    bar
}

/// A spinner on stderr with elapsed time, for verbs whose work happens in
/// one call (check, delete). Hidden unless stderr is a terminal.
fn spinner(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(what.to_string());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar.force_draw();
    bar
}

fn open_rw(path: &Path) -> anyhow::Result<Arc<Pool>> {
    Pool::open(path).with_context(|| format!("opening pool {}", path.display()))
}

fn open_ro(path: &Path) -> anyhow::Result<Arc<Pool>> {
    Pool::open_read_only(path).with_context(|| format!("opening pool {}", path.display()))
}

/// Runs one offline verb; returns the process exit code.
pub fn run(cmd: OfflineCommand) -> anyhow::Result<i32> {
    match cmd {
        OfflineCommand::Pool { cmd, json } => pool_cmd(cmd, json),
        OfflineCommand::Volume { cmd, json } => volume_cmd(cmd, json),
        OfflineCommand::Snapshot { cmd, json } => snapshot_cmd(cmd, json),
        OfflineCommand::Clone { cmd, json } => clone_cmd(cmd, json),
    }
}

fn done(json: bool, what: &'static str, name: &str) -> anyhow::Result<i32> {
    if json {
        J::O(vec![("ok", J::B(true)), (what, J::S(name.to_string()))]).print();
    } else {
        println!("{what} {name}");
    }
    Ok(0)
}

fn pool_cmd(cmd: PoolCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        PoolCmd::Create {
            path,
            size,
            extent_size,
            block_size,
        } => {
            let extent_size = u32::try_from(extent_size)
                .map_err(|_| anyhow::anyhow!("extent size {extent_size} is too large"))?;
            let pool = Pool::create_with(
                &path,
                &PoolOptions {
                    size,
                    extent_size,
                    block_size,
                    journal_len: None,
                },
            )
            .with_context(|| format!("creating pool {}", path.display()))?;
            let info = pool.info();
            drop(pool);
            if json {
                J::O(vec![
                    ("ok", J::B(true)),
                    ("path", J::S(path.display().to_string())),
                    ("extents", J::N(info.extents)),
                    ("extent_size", J::N(info.extent_size as u64)),
                ])
                .print();
            } else {
                println!(
                    "created pool {}: {} extents of {}, {} for data",
                    path.display(),
                    info.extents,
                    human(info.extent_size as u64),
                    human(info.extents * info.extent_size as u64)
                );
            }
            Ok(0)
        }
        PoolCmd::Info { path } => {
            let pool = open_ro(&path)?;
            let i = pool.info();
            if json {
                J::O(vec![
                    ("path", J::S(path.display().to_string())),
                    ("block_size", J::N(i.block_size as u64)),
                    ("extent_size", J::N(i.extent_size as u64)),
                    ("extents", J::N(i.extents)),
                    ("free_extents", J::N(i.free_extents)),
                    ("used_extents", J::N(i.extents - i.free_extents)),
                    ("data_offset", J::N(i.data_offset)),
                    ("journal_bytes", J::N(i.journal_bytes)),
                    ("checkpoint_area_bytes", J::N(i.checkpoint_area_bytes)),
                    ("generation", J::N(i.generation)),
                    ("volumes", J::N(i.volumes as u64)),
                    ("snapshots", J::N(i.snapshots as u64)),
                ])
                .print();
            } else {
                let e = i.extent_size as u64;
                println!("pool:        {}", path.display());
                println!("block size:  {}", i.block_size);
                println!("extent size: {}", human(e));
                println!(
                    "capacity:    {} ({} extents)",
                    human(i.extents * e),
                    i.extents
                );
                println!(
                    "used:        {} ({} extents)",
                    human((i.extents - i.free_extents) * e),
                    i.extents - i.free_extents
                );
                println!(
                    "free:        {} ({} extents)",
                    human(i.free_extents * e),
                    i.free_extents
                );
                println!("volumes:     {}", i.volumes);
                println!("snapshots:   {}", i.snapshots);
                println!("generation:  {}", i.generation);
            }
            Ok(0)
        }
        PoolCmd::Check { path } => {
            let pool = match Pool::open_read_only(&path) {
                Ok(p) => p,
                Err(e @ (ironlun_cow::Error::Corrupt(_) | ironlun_cow::Error::NotAPool(_))) => {
                    if json {
                        J::O(vec![("clean", J::B(false)), ("error", J::S(e.to_string()))]).print();
                    } else {
                        println!("{}: DAMAGED: {e}", path.display());
                    }
                    return Ok(1);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("opening pool {}", path.display()))
                }
            };
            let bar = spinner(&format!(
                "checking {} ({} extents)",
                path.display(),
                pool.layout().extent_count
            ));
            let r = pool.check();
            bar.finish_and_clear();
            let clean = r.is_clean();
            if json {
                let nums = |v: &[u64]| J::A(v.iter().map(|n| J::N(*n)).collect());
                J::O(vec![
                    ("clean", J::B(clean)),
                    ("extents", J::N(r.extents)),
                    ("free", J::N(r.free)),
                    ("mapped", J::N(r.mapped)),
                    ("leaked", nums(&r.leaked)),
                    ("doubly_mapped", nums(&r.doubly_mapped)),
                    ("mapped_and_free", nums(&r.mapped_and_free)),
                    ("out_of_range", nums(&r.out_of_range)),
                    ("unreachable", J::N(r.unreachable)),
                    (
                        "problems",
                        J::A(r.problems.iter().map(|p| J::S(p.clone())).collect()),
                    ),
                ])
                .print();
            } else {
                println!("{}: {}", path.display(), r.summary());
                for p in r.problems.iter().take(50) {
                    println!("  {p}");
                }
                println!("{}", if clean { "clean" } else { "DAMAGED" });
            }
            Ok(if clean { 0 } else { 1 })
        }
    }
}

fn volume_cmd(cmd: VolumeCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        VolumeCmd::Create { pool, name, size } => {
            let p = open_rw(&pool)?;
            p.create_volume(&name, size)?;
            done(json, "created", &name)
        }
        VolumeCmd::List { pool } => {
            let p = open_ro(&pool)?;
            let e = p.layout().extent_size as u64;
            let vols = p.volumes();
            if json {
                J::A(
                    vols.iter()
                        .map(|v| {
                            J::O(vec![
                                ("name", J::S(v.name.clone())),
                                ("id", J::N(v.id)),
                                ("size", J::N(v.size)),
                                ("mapped_bytes", J::N(v.mapped_extents * e)),
                                ("origin", v.origin.clone().map(J::S).unwrap_or(J::Null)),
                                (
                                    "snapshots",
                                    J::A(v.snapshots.iter().map(|s| J::S(s.clone())).collect()),
                                ),
                            ])
                        })
                        .collect(),
                )
                .print();
            } else {
                println!(
                    "{:<24} {:>12} {:>12}  {:<20} SNAPSHOTS",
                    "NAME", "SIZE", "MAPPED", "ORIGIN"
                );
                for v in &vols {
                    println!(
                        "{:<24} {:>12} {:>12}  {:<20} {}",
                        v.name,
                        human(v.size),
                        human(v.mapped_extents * e),
                        v.origin.as_deref().unwrap_or("-"),
                        v.snapshots.len()
                    );
                }
            }
            Ok(0)
        }
        VolumeCmd::Delete { pool, name } => {
            let p = open_rw(&pool)?;
            let bar = spinner(&format!("deleting {name}"));
            p.delete_volume(&name)?;
            // Closing the pool makes the delete durable and checkpoints.
            drop(p);
            bar.finish_and_clear();
            done(json, "deleted", &name)
        }
        VolumeCmd::Import {
            pool,
            name,
            rawfile,
            size,
        } => {
            let mut raw =
                File::open(&rawfile).with_context(|| format!("opening {}", rawfile.display()))?;
            let raw_len = raw.metadata()?.len();
            let p = open_rw(&pool)?;
            let bs = p.layout().block_size as u64;
            let size = size.unwrap_or(raw_len.div_ceil(bs) * bs);
            if size < raw_len {
                bail!(
                    "--size {size} is smaller than {} ({raw_len} bytes)",
                    rawfile.display()
                );
            }
            let vol = p.create_volume(&name, size)?;
            let chunk = p.layout().extent_size as usize;
            let mut buf = vec![0u8; chunk];
            let mut at = 0u64;
            let mut stored = 0u64;
            let bar = byte_progress(raw_len, &format!("importing {name}"));
            while at < raw_len {
                let n = ((raw_len - at) as usize).min(chunk);
                raw.read_exact(&mut buf[..n])?;
                let padded = (n as u64).div_ceil(bs) * bs;
                buf[n..padded as usize].fill(0);
                if buf[..padded as usize].iter().any(|&b| b != 0) {
                    vol.write(at / bs, &buf[..padded as usize], Durability::Cached)
                        .with_context(|| format!("writing at byte {at}"))?;
                    stored += padded;
                }
                at += n as u64;
                bar.set_position(at);
            }
            vol.flush()?;
            bar.finish_and_clear();
            if json {
                J::O(vec![
                    ("ok", J::B(true)),
                    ("imported", J::S(name.clone())),
                    ("size", J::N(size)),
                    ("stored_bytes", J::N(stored)),
                ])
                .print();
            } else {
                println!(
                    "imported {} into {name}: {} volume, {} stored",
                    rawfile.display(),
                    human(size),
                    human(stored)
                );
            }
            Ok(0)
        }
        VolumeCmd::Export {
            pool,
            name,
            rawfile,
        } => {
            let p = open_ro(&pool)?;
            let dev = p.device(&name)?;
            let g = dev.geometry();
            let bs = g.block_size as u64;
            let size = g.blocks * bs;
            let out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&rawfile)
                .with_context(|| format!("creating {}", rawfile.display()))?;
            out.set_len(size)?;
            let chunk_blocks = (p.layout().extent_size as u64 / bs).max(1);
            let mut buf = vec![0u8; (chunk_blocks * bs) as usize];
            let mut lba = 0u64;
            let mut written = 0u64;
            let bar = byte_progress(size, &format!("exporting {name}"));
            while lba < g.blocks {
                let run = dev.provisioning(lba)?;
                if run.state == Provisioning::Deallocated {
                    lba += run.blocks;
                    bar.set_position(lba * bs);
                    continue;
                }
                let end = lba + run.blocks;
                while lba < end {
                    let n = chunk_blocks.min(end - lba);
                    let b = &mut buf[..(n * bs) as usize];
                    dev.read(lba, b)?;
                    if b.iter().any(|&x| x != 0) {
                        out.write_all_at(b, lba * bs)?;
                        written += b.len() as u64;
                    }
                    lba += n;
                    bar.set_position(lba * bs);
                }
            }
            (&out).flush()?;
            out.sync_data()?;
            bar.finish_and_clear();
            if json {
                J::O(vec![
                    ("ok", J::B(true)),
                    ("exported", J::S(name.clone())),
                    ("size", J::N(size)),
                    ("written_bytes", J::N(written)),
                ])
                .print();
            } else {
                println!(
                    "exported {name} to {}: {}, {} written",
                    rawfile.display(),
                    human(size),
                    human(written)
                );
            }
            Ok(0)
        }
    }
}

fn snapshot_cmd(cmd: SnapshotCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        SnapshotCmd::Create { pool, volume, name } => {
            let p = open_rw(&pool)?;
            p.create_snapshot(&volume, &name)?;
            done(json, "created", &name)
        }
        SnapshotCmd::List { pool } => {
            let p = open_ro(&pool)?;
            let snaps = p.snapshots();
            if json {
                J::A(
                    snaps
                        .iter()
                        .map(|s| {
                            J::O(vec![
                                ("name", J::S(s.name.clone())),
                                ("volume", J::S(s.volume.clone())),
                                ("generation", J::N(s.generation)),
                                ("size", J::N(s.size)),
                                (
                                    "clones",
                                    J::A(s.clones.iter().map(|c| J::S(c.clone())).collect()),
                                ),
                            ])
                        })
                        .collect(),
                )
                .print();
            } else {
                println!(
                    "{:<24} {:<24} {:>10}  CLONES",
                    "NAME", "VOLUME", "GENERATION"
                );
                for s in &snaps {
                    println!(
                        "{:<24} {:<24} {:>10}  {}",
                        s.name,
                        s.volume,
                        s.generation,
                        s.clones.join(",")
                    );
                }
            }
            Ok(0)
        }
        SnapshotCmd::Delete { pool, name } => {
            let p = open_rw(&pool)?;
            p.delete_snapshot(&name)?;
            done(json, "deleted", &name)
        }
    }
}

fn clone_cmd(cmd: CloneCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        CloneCmd::Create {
            pool,
            snapshot,
            name,
        } => {
            let p = open_rw(&pool)?;
            p.create_clone(&snapshot, &name)?;
            done(json, "created", &name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
    }
}
