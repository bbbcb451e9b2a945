//! The database around segments (in progress): for now the write-ahead
//! log every change will go through before it reaches a segment.
//!
//! | path   | what it holds |
//! |--------|---------------|
//! | `wal/` | [`wal::Wal`]: append-only log files with per-entry CRC-32C, durability modes, torn-tail repair, prefix truncation |

pub mod wal;

pub use wal::{Durability, Wal, WalOptions};
