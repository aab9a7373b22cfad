//! What a database to back up is, and how to reach a server: the leaf types that
//! configuration builds and engines, hooks and commands use (so that none of them needs the
//! others to name a database).

use std::path::PathBuf;

use crate::secret::Secret;
use crate::spec::DatabaseSpec;

/// Credentials for one database, with the variable names they came from (for `-c`).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: Option<String>,
    /// The variables consulted for the user, e.g. `DB_USER, DATABASE_USER, POSTGRESQL_USER`,
    /// or the one that supplied it.
    pub user_source: String,
    pub password: Option<Secret>,
    pub password_source: Option<String>,
}

/// A database to back up: its spec and credentials.
#[derive(Debug, Clone)]
pub struct Database {
    pub spec: DatabaseSpec,
    pub credentials: Credentials,
    /// Engine options (backup.toml): extra dump arguments, excluded tables.
    pub options: DumpOptions,
}

impl Database {
    /// How the engine connects for a backup: the spec's host and port, these credentials.
    pub fn conn(&self) -> Conn {
        Conn {
            host: self.spec.host.clone(),
            port: self.spec.port,
            user: self.credentials.user.clone(),
            password: self.credentials.password.clone(),
        }
    }
}

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
