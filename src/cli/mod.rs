//! The `vecseg` command line: `compare`, `tenants`, `migrate`, `quantize`, `inspect`,
//! `cold-reads`.
//!
//! Errors are returned to `main`, which prints them and exits with code 1,
//! or with code 2 (like the argument parser) for a [`limits::UsageError`].

pub mod cold_reads;
pub mod compare;
pub mod inspect;
pub mod limits;
pub mod migrate;
pub mod progress;
pub mod quantize;
pub mod tenants;

use std::error::Error;

use clap::{Parser, Subcommand};

/// vecseg: compare storage backends, migrate and inspect segments.
#[derive(Debug, Parser)]
#[command(name = "vecseg", version, about)]
pub struct Cli {
    /// No progress bars or chatter (for scripts).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the same workload on every backend configuration and print them side by side.
    Compare(compare::CompareArgs),
    /// Tenant-filtered search throughput of a segment defragmented by tenant vs not, under a memory limit.
    Tenants(tenants::TenantsArgs),
    /// Move a segment directory from RocksDB onto chunked or mmap storage, verified.
    Migrate(migrate::MigrateArgs),
    /// Train a quantization codec on an mmap segment and write its codes beside it.
    Quantize(quantize::QuantizeArgs),
    /// Show what a segment directory holds: backends, counts, versions, files.
    Inspect(inspect::InspectArgs),
    /// Measure random reads that miss the page cache: io_uring, pread and mmap page faults.
    ColdReads(cold_reads::ColdReadsArgs),
}

/// Run a parsed command line.
pub fn run(cli: &Cli) -> Result<(), Box<dyn Error>> {
    match &cli.command {
        CliCommand::Compare(args) => compare::run(args, cli.quiet),
        CliCommand::Tenants(args) => tenants::run(args, cli.quiet),
        CliCommand::Inspect(args) => inspect::run(args),
        CliCommand::Migrate(args) => migrate::run(args, cli.quiet),
        CliCommand::Quantize(args) => quantize::run(args, cli.quiet),
        CliCommand::ColdReads(args) => cold_reads::run(args, cli.quiet),
    }
}
