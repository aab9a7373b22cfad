//! What a database to back up is, and how to reach a server: the leaf types that
//! configuration builds and engines, hooks and commands use (so that none of them needs the
//! others to name a database).

use std::path::PathBuf;

use crate::model::secret::Secret;
use crate::model::spec::DatabaseSpec;

/// Credentials for one database, with the variable names they came from (for `-c`).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: Option<String>,
    /// The variables consulted for the user, e.g. `DB_USER, DATABASE_USER, POSTGRESQL_USER`,
    /// or the one that supplied it.
    pub user_source: String,
    pub password: Option<PasswordSource>,
    pub password_source: Option<String>,
}

/// Where a password comes from. A file (`*_FILE`: a mounted Kubernetes or Vault secret) is
/// read each time it is used, so that a long-running daemon picks up a rotated secret.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    Value(Secret),
    File(PathBuf),
}

impl PasswordSource {
    /// The password now (a file's content without its final line break).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read(&self) -> anyhow::Result<Secret> {
        match self {
            PasswordSource::Value(s) => Ok(s.clone()),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|t| Secret::new(t.trim_end_matches(['\n', '\r'])))
                .map_err(|e| anyhow::anyhow!("cannot read the password file {}: {e}", path.display())),
        }
    }
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
    /// How the engine connects for a backup: the spec's host and port, these credentials
    /// (a password file is read now).
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn conn(&self) -> anyhow::Result<Conn> {
        Ok(Conn {
            host: self.spec.host.clone(),
            port: self.spec.port,
            user: self.credentials.user.clone(),
            password: self.credentials.password.as_ref().map(PasswordSource::read).transpose()?,
        })
    }
}

/// Settings every engine may need, taken from `Settings`.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folders of PostgreSQL programs (`PG_BIN_DIR`, `:`-separated); empty: every
    /// `/usr/lib/postgresql/*/bin` (`engine::postgres::bin`).
    pub pg_bin_dirs: Vec<PathBuf>,
    /// Seconds a client waits for a connection (`DATABASE_CONNECT_TIMEOUT`).
    pub connect_timeout_secs: u32,
    /// `PATH`, taken at load: where client and server programs are looked for.
    pub search_path: Vec<PathBuf>,
    /// `RESTORE_LOADER`: what sends a PostgreSQL dump to the server.
    pub restore_loader: RestoreLoader,
    /// `RESTORE_SPILL_MB`, in bytes: how much of a load's COPY rows may wait in TMPDIR while
    /// their session is busy (0: none; rows then wait in memory only).
    pub restore_spill_bytes: u64,
}

/// `RESTORE_LOADER`: how a PostgreSQL load reaches the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestoreLoader {
    /// Our own libpq sessions: statements and COPY rows straight from the scanned stream.
    #[default]
    Libpq,
    /// `psql -f -` sessions fed the text (the loader before; kept to compare and fall back).
    Psql,
}

impl EngineOptions {
    /// The first of `names` found in `PATH` or in `extra` folders, in that order: the one
    /// program lookup of the engines.
    pub fn find(&self, names: &[&str], extra: &[&str]) -> Option<PathBuf> {
        let dirs: Vec<PathBuf> = self.search_path.iter().cloned().chain(extra.iter().map(PathBuf::from)).collect();
        names.iter().find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
    }
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
