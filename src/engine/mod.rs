//! Database engines: how to dump (and later restore and verify) one kind of server.
//!
//! One trait, one implementation per engine, one factory (`for_kind`). Engines build their
//! commands purely (unit-tested) and run them through `process`.

pub mod postgres;
pub mod process;

use std::io::Write;
use std::path::PathBuf;

use crate::cancel::Cancel;
use crate::config::Database;
use crate::spec::EngineKind;

/// Settings every engine may need, taken from `Settings`.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folder holding the client tools (`PG_BIN_DIR`); `None` = search `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Seconds a client waits for a connection (`DATABASE_CONNECT_TIMEOUT`).
    pub connect_timeout_secs: u32,
}

/// A database engine.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Writes the complete plain-SQL backup of `db` into `out`, streaming.
    ///
    /// # Errors
    /// Any client failure (with its stderr tail), a write error on `out`, or `Interrupted`.
    /// On error, what was written to `out` is garbage and must be discarded.
    fn dump(&self, db: &Database, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<()>;
}

/// The engine for `kind`, or `None` when this build cannot handle it.
pub fn for_kind(kind: &EngineKind, options: &EngineOptions) -> Option<Box<dyn Engine>> {
    match kind {
        EngineKind::Postgres => Some(Box::new(postgres::PostgresEngine::new(options.clone()))),
        EngineKind::MariaDb | EngineKind::Foreign(_) => None,
    }
}
