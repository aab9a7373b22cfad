//! Database engines: how to dump, restore and verify one kind of server.
//!
//! One trait, one implementation per engine, one factory (`for_kind`). Engines build their
//! commands purely (unit-tested) and run them through `process`.

pub mod mariadb;
pub mod postgres;
pub mod process;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::config::{Database, Secret};
use crate::spec::EngineKind;

/// Settings every engine may need, taken from `Settings`.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folder holding the client tools (`PG_BIN_DIR`); `None` = search `PATH`.
    pub pg_bin_dir: Option<PathBuf>,
    /// Seconds a client waits for a connection (`DATABASE_CONNECT_TIMEOUT`).
    pub connect_timeout_secs: u32,
}

/// Per-database dump options (backup.toml): extra arguments and excluded tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// Appended to the dump command (e.g. `--no-owner`).
    pub extra_args: Vec<String>,
    /// Tables left out entirely (`pg_dump --exclude-table`).
    pub exclude_tables: Vec<String>,
    /// Tables whose rows are left out, schema kept (`--exclude-table-data`; upstream #122).
    pub exclude_table_data: Vec<String>,
}

/// How to reach a server, as whom.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Host name, IP, or a unix socket folder (absolute path).
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// A restore into `database` on the server `admin` reaches.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub database: String,
    /// The administrative connection that drops, creates and fills the database.
    pub admin: Conn,
    /// The application user granted access to the new database (upstream's GRANT step).
    pub owner: Option<String>,
    /// `-I`: continue past SQL errors in the database part.
    pub ignore_errors: bool,
    /// Load the database part in one transaction (throwaway servers: with `wal_level=minimal`
    /// the data then skips the WAL; all or nothing).
    pub single_transaction: bool,
}

/// What a restore noticed without failing.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Role statements that failed (other than "already exists"), SQL errors ignored with `-I`.
    pub warnings: Vec<String>,
    /// Sessions that were connected to the database and had to be terminated.
    pub terminated_connections: u64,
}

/// How to run a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Folder in which the throwaway server's temporary directory is created.
    pub work_dir: PathBuf,
    /// How long the throwaway server may take to start (`DATABASE_SERVER_TIMEOUT`).
    pub start_timeout: Duration,
    /// Schemas to check; `None` = every non-system schema (`TABLE_SCHEMA` narrows).
    pub schemas: Option<Vec<String>>,
    /// Extra server settings (`VERIFY_SERVER_OPTIONS`, `name=value` each).
    pub server_options: Vec<String>,
}

/// Per-schema figures of a verified restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaStats {
    pub schema: String,
    pub tables: u64,
    /// Row estimate after ANALYZE.
    pub rows: u64,
}

/// What a successful verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub tables: u64,
    pub schemas: Vec<SchemaStats>,
    pub database_size: u64,
    pub restore: RestoreReport,
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

    /// Drops and recreates `req.database` and fills it from the plain SQL in `sql`.
    ///
    /// # Errors
    /// Connection or SQL failures (with the tool's message); a read error on `sql`.
    fn restore(
        &self,
        req: &RestoreRequest,
        sql: &mut (dyn BufRead + Send),
        cancel: &Cancel,
    ) -> anyhow::Result<RestoreReport>;

    /// Restores `sql` into a throwaway local server, checks the result, and removes the
    /// server and its files on every path.
    ///
    /// # Errors
    /// The server does not start, the restore fails, or no table is found.
    fn verify(
        &self,
        database: &str,
        sql: &mut (dyn BufRead + Send),
        opts: &VerifyOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<VerifyReport>;

    /// Runs SQL in `db` with its credentials (SQL hooks such as `CHECKPOINT;`), stopping it
    /// after `timeout`; returns its output.
    ///
    /// # Errors
    /// Connection or SQL errors, with the tool's message.
    fn execute_sql(
        &self,
        db: &Database,
        sql: &str,
        timeout: std::time::Duration,
        cancel: &Cancel,
    ) -> anyhow::Result<String>;
}

/// The engine for `kind`, or `None` when this build cannot handle it.
pub fn for_kind(kind: &EngineKind, options: &EngineOptions) -> Option<Box<dyn Engine>> {
    match kind {
        EngineKind::Postgres => Some(Box::new(postgres::PostgresEngine::new(options.clone()))),
        EngineKind::MariaDb => Some(Box::new(mariadb::MariaDbEngine::new(options.clone()))),
        EngineKind::Foreign(_) => None,
    }
}
