//! Point-in-time recovery for PostgreSQL (docs/PITR.md; the archive is kept, restores are
//! being built): WAL positions and names, the archive's own index with its gaps and
//! recoverable windows, where the archive keeps things, storing WAL and base backups, the
//! streamer and the slot guard, the daemon's archiver per server, its copies on the mirrors
//! and its status, and what `--check` says about a server's readiness.

pub mod archive;
pub mod archiver;
pub mod base;
pub mod drill;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod mirror;
pub mod preflight;
pub mod recover;
pub mod report;
pub mod retention;
pub mod slot;
pub mod source;
pub mod status;
pub mod stream;
pub mod wal;
