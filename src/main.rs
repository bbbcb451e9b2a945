//! The `vecseg` command-line tool; see `vecseg --help`.

use clap::Parser;
use vecseg::cli::limits::UsageError;

fn main() {
    let cli = vecseg::cli::Cli::parse();
    if let Err(e) = vecseg::cli::run(&cli) {
        eprintln!("error: {e}");
        if e.downcast_ref::<UsageError>().is_some() {
            // A bad argument value: exit like the argument parser does.
            eprintln!("\nFor more information, try '--help'.");
            std::process::exit(2);
        }
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
