//! `ironlun`: the daemon (`ironlun serve`) and the offline CLI.

mod offline;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ironlun", version, about = "A userspace iSCSI target with a copy-on-write extent store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured (or the embedded default) LUNs over iSCSI.
    Serve,
    #[command(flatten)]
    Offline(offline::OfflineCommand),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve => 0,
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
