//! The `vecseg` command-line tool; see `vecseg --help`.

use clap::Parser;

fn main() {
    let cli = vecseg::cli::Cli::parse();
    if let Err(e) = vecseg::cli::run(&cli) {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
