//! `ironlun`: the daemon (`ironlun serve`) and the offline CLI.

mod config;
mod exposure;
mod fault;
mod offline;
mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ironlun",
    version,
    about = "A userspace iSCSI target with a copy-on-write extent store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured (or the embedded default) LUNs over iSCSI.
    Serve(ServeArgs),
    #[command(flatten)]
    Offline(offline::OfflineCommand),
}

/// Options of `ironlun serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; without it an embedded default is served
    /// (one 1 GiB thin LUN 0 of iqn.2026-11.org.ironlun:default on 127.0.0.1:3260).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where LUN data lives (overrides the config's data_dir; default ./ironlun-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// iSCSI portal(s) to listen on, replacing every target's portals.
    #[arg(long, value_name = "ADDR:PORT")]
    pub iscsi_listen: Vec<String>,
    /// Allow SANITIZE on every LUN (it erases the LUN).
    #[arg(long)]
    pub allow_sanitize: bool,
    /// Pace of SANITIZE OVERWRITE in MiB/s (0: as fast as the disk goes),
    /// so erasing one LUN leaves the pool's disk to the others.
    #[arg(long, value_name = "MIB_PER_SEC", default_value_t = 128)]
    pub sanitize_rate_mib: u64,
    /// A connection must finish its login within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub login_timeout_secs: u64,
    /// Ping an idle initiator (NOP-In) after this many seconds, and drop a
    /// connection that does not answer within as many again.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub nop_interval_secs: u64,
    /// CIM-XML (HTTP) listen address(es) of the replication service
    /// (default 127.0.0.1:5988, or the config's [cim] section). When this or
    /// --cim-listen-https is given, the CIM listeners are exactly those given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub cim_listen: Vec<String>,
    /// CIM-XML over HTTPS listen address(es) (default 127.0.0.1:5989).
    #[arg(long, value_name = "ADDR:PORT")]
    pub cim_listen_https: Vec<String>,
    /// Do not serve CIM-XML (the replication engine still runs).
    #[arg(long)]
    pub no_cim: bool,
    /// Pause this long between batches of a background replication copy
    /// (clone copy, resync, restore): a rate limit.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub replication_copy_delay_ms: u64,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Offline(cmd) => match offline::run(cmd) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ironlun: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
