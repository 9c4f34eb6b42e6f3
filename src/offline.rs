//! Offline verbs on a pool that no server holds (`ironlun pool|volume|snapshot|clone ...`),
//! like qemu-img. Filled in with the cow extent store.

use clap::Subcommand;

/// The offline verbs. Each runs against a pool file directly.
#[derive(Debug, Subcommand)]
pub enum OfflineCommand {}

/// Runs one offline verb; returns the process exit code.
pub fn run(cmd: OfflineCommand) -> anyhow::Result<i32> {
    match cmd {}
}
