//! Point-in-time recovery for PostgreSQL (docs/PITR.md, being built): WAL positions and names,
//! and the archive's own index with its gaps and recoverable windows.

pub mod index;
pub mod wal;
