//! The `vecseg` command-line tool.

fn main() {}
