//! Point-in-time recovery for PostgreSQL (docs/PITR.md, being built): WAL positions and names,
//! the archive's own index with its gaps and recoverable windows, and where the archive keeps
//! things, and what `--check` says about a server's readiness.

pub mod archive;
pub mod base;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod preflight;
pub mod slot;
pub mod stream;
pub mod wal;
