//! Database engines: the primitives of one kind of server — dump, load a scanned stream into a
//! connection, count rows, schema statistics, drop a database, the server's version, and
//! throwaway servers of a chosen major. The restore and verify workflows are written once
//! above them (`restore::database`), for every engine.
//!
//! One trait, one implementation per engine, built once per process (`Engines`). Engines
//! build their commands purely (unit-tested) and run them through `process`.

pub mod load;
pub mod mariadb;
pub mod postgres;
pub mod process;
pub mod server;

use std::io::{BufRead, Write};
use std::sync::{Arc, OnceLock};

use crate::model::database::Database;
pub use crate::model::database::{Conn, DumpOptions, EngineOptions};
use crate::model::spec::EngineKind;
use crate::model::stats::SchemaStats;
use crate::stream::scan::Summary;
use crate::system::cancel::Cancel;
pub use server::{DataDir, Recovery, Server, ServerOptions};

/// What a dump ran against and with (for the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpInfo {
    pub server_version: Option<String>,
    pub client_version: Option<String>,
    /// The dump tool's options, connection options left out.
    pub options: Vec<String>,
    /// The server's and the dump client's major versions (PostgreSQL: 15; MariaDB: 1011 for
    /// the 10.11 series), when known.
    pub server_major: Option<u32>,
    pub client_major: Option<u32>,
    /// Header lines written in their portable form because the client was newer than the
    /// server (`scan::postgres::header`): the file loads into the source's major by plain psql.
    pub portable_header_lines: u64,
}

/// Where a restore puts the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Load into a temporary database beside the target, check it, then swap it in by rename;
    /// on any failure the target is as it was (the default).
    Swap { keep_previous: bool },
    /// Drop the target and load into it (`RESTORE_IN_PLACE=true`; MariaDB always: it cannot
    /// rename a database).
    InPlace,
    /// A new database on a throwaway server (verification).
    Fresh,
}

/// A restore into `database` on the server `admin` reaches.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub database: String,
    /// The administrative connection that creates, fills and swaps the database.
    pub admin: Conn,
    /// The application user granted access to the new database (upstream's GRANT step).
    pub owner: Option<String>,
    /// `-I`: continue past SQL errors in the database part (they are still counted).
    pub ignore_errors: bool,
    /// Load so that the data skips the WAL (throwaway servers with `wal_level=minimal`): one
    /// transaction on the serial path; on the parallel path tables are not cut in pieces, and
    /// each big one the dump made loads in the transaction that truncates it, which skips the
    /// WAL just the same (`parallel::split::fresh`).
    pub single_transaction: bool,
    pub placement: Placement,
    /// Compare each table's rows with the dump's after the load (`RESTORE_COUNT_CHECK`).
    pub count_check: bool,
    /// Parallel sessions of the load (`RESTORE_JOBS`); 1 = one session.
    pub jobs: usize,
}

/// What a restore did and found. A restore that returns a report loaded everything it could;
/// `problems()` says whether it is nevertheless a failure (errors with `-I`, missing rows).
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Role statements that failed (other than "already exists"), skipped grants.
    pub warnings: Vec<String>,
    /// SQL errors of the load (only possible with `-I`: without it the first one stops it).
    pub errors: load::SqlErrors,
    /// Sessions that were connected to the database and had to be terminated.
    pub terminated_connections: u64,
    /// What the scanner saw in the stream.
    pub stream: Summary,
    /// Rows compared after the load.
    pub counts: load::CountCheck,
    /// `counts` were taken beside the load (each table once its rows were in), not after it.
    pub counted_while_loading: bool,
    /// ... and they are the server's replies to the COPYs (no table was read again).
    pub counted_from_replies: bool,
    /// The previous database, renamed and kept (`RESTORE_KEEP_PREVIOUS=true`).
    pub kept_previous: Option<String>,
    /// What the parallel load ran where (`None`: one session).
    pub parallel: Option<String>,
}

impl RestoreReport {
    /// What makes this restore a failure although it ran to the end.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.errors.count > 0 {
            out.push(self.errors.describe());
        }
        out.extend(self.counts.mismatches.iter().map(|m| m.to_string()));
        out
    }
}

/// What `--check` found about one database.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    pub findings: Vec<crate::model::finding::Finding>,
    /// The database's size on the server, when it could be read (for the space estimate).
    pub database_bytes: Option<u64>,
}

/// A database an engine has loaded and not yet put in place. Dropped without `finish`, it
/// leaves the target as it was (a temporary database is removed).
pub trait Loaded {
    /// The database the rows went into (a temporary name when it is to be swapped in).
    fn database(&self) -> &str;

    /// Puts it in place: the database's own settings, a durable commit, the swap (PostgreSQL);
    /// nothing more where the load was already in place. Fills `report`'s swap fields.
    ///
    /// # Errors
    /// The settings, commit or rename failed; the target is then as it was.
    fn finish(self: Box<Self>, report: &mut RestoreReport, cancel: &Cancel) -> anyhow::Result<()>;
}

/// A database engine: the primitives the workflows above it are made of.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Checks what a backup of `db` needs without writing one (`--check`): connection,
    /// client version, privileges; never changes anything on the server.
    fn preflight(&self, db: &Database, cancel: &Cancel) -> Preflight;

    /// Whether `load` can load beside the target and swap it in (`Placement::Swap`);
    /// engines that cannot always restore in place, after a full check of the file.
    fn restores_beside_target(&self) -> bool {
        true
    }

    /// Writes the complete plain-SQL backup of `db` into `out`, streaming; says what dumped it.
    ///
    /// # Errors
    /// Any client failure (with its stderr tail), a write error on `out`, or `Interrupted`.
    /// On error, what was written to `out` is garbage and must be discarded.
    fn dump(&self, db: &Database, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<DumpInfo>;

    /// Creates the database `req` restores into (the roles first, where the engine keeps
    /// them in the stream) and streams `sql` into it through the engine's scanner. Returns the
    /// loaded database, not yet in place, and what the load saw (SQL errors, the stream's
    /// summary); completeness and counts are judged by the caller.
    ///
    /// # Errors
    /// Connection or SQL failures (with the tool's message); a read error on `sql`.
    fn load<'a>(
        &'a self,
        req: &'a RestoreRequest,
        sql: &mut (dyn BufRead + Send),
        cancel: &Cancel,
    ) -> anyhow::Result<(Box<dyn Loaded + 'a>, RestoreReport)>;

    /// `count(*)` of each of `stream`'s tables in `database`, compared with the dump's rows.
    ///
    /// # Errors
    /// The count failed (permissions, row-level security).
    fn count_rows(
        &self,
        conn: &Conn,
        database: &str,
        stream: &Summary,
        cancel: &Cancel,
    ) -> anyhow::Result<load::CountCheck>;

    /// Tables per schema (`schemas`, else every non-system schema; rows left 0) and the
    /// database's size in bytes.
    ///
    /// # Errors
    /// The query failed.
    fn schema_stats(
        &self,
        conn: &Conn,
        database: &str,
        schemas: Option<&[String]>,
        cancel: &Cancel,
    ) -> anyhow::Result<(Vec<SchemaStats>, u64)>;

    /// Drops `database`, ending its sessions.
    ///
    /// # Errors
    /// The server refused.
    fn drop_database(&self, conn: &Conn, database: &str, cancel: &Cancel) -> anyhow::Result<()>;

    /// The major of the server a backup was dumped from, read from the stream's header when
    /// it says; returns the stream, unconsumed. `None` where versions do not matter.
    ///
    /// # Errors
    /// A read error.
    fn source_major<'a>(
        &self,
        sql: Box<dyn BufRead + Send + 'a>,
    ) -> anyhow::Result<(Option<u32>, Box<dyn BufRead + Send + 'a>)> {
        Ok((None, sql))
    }

    /// The installed server major a throwaway server for `wanted` runs (the same, else the
    /// nearest higher); `None` where versions do not matter.
    ///
    /// # Errors
    /// No server program that can take it is installed.
    fn throwaway_major(&self, wanted: Option<u32>) -> anyhow::Result<Option<u32>> {
        let _ = wanted;
        Ok(None)
    }

    /// Starts a throwaway server (of `major`, where versions matter) on a private socket
    /// under `opts.work_dir`; it stops and its files go when the handle is dropped.
    ///
    /// # Errors
    /// The folder is unusable, or the server does not start (its log's tail is quoted).
    fn start_server(
        &self,
        major: Option<u32>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Box<dyn Server>>;

    /// Starts a throwaway server on an existing data directory (its own major's programs),
    /// with the source's settings overridden (its own socket, no network, no archiving, no
    /// primary, no preloaded libraries, its own pg_hba), recovering as `recovery` says; it
    /// stops and the data directory goes when the handle is dropped.
    ///
    /// # Errors
    /// Not a data directory, its major not installed, or the server does not start or recover
    /// (its log's tail is quoted).
    fn start_server_on(
        &self,
        data: DataDir,
        recovery: Option<&Recovery>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Box<dyn Server>> {
        let _ = (data, recovery, opts, cancel);
        anyhow::bail!("this engine cannot start a server on an existing data directory")
    }

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

    /// The databases on `db`'s server that a `*` spec covers (templates, databases that refuse
    /// connections and the engine's system databases left out), with `db`'s credentials.
    ///
    /// # Errors
    /// The server cannot be reached, or this engine cannot list databases.
    fn list_databases(&self, db: &Database, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
        let _ = (db, cancel);
        anyhow::bail!("listing databases is not supported for this engine")
    }

    /// Proves what it can about SQL hook `sql` in `db` without running it (`--check`):
    /// `Ok(Some(what was proven))`, `Ok(None)` when this engine cannot check SQL.
    ///
    /// # Errors
    /// The server's error (a syntax error, a missing table), or a connection error.
    fn check_sql(&self, db: &Database, sql: &str, cancel: &Cancel) -> anyhow::Result<Option<String>> {
        let _ = (db, sql, cancel);
        Ok(None)
    }
}

/// The engines of this process, each built once on first use (PostgreSQL's installed majors
/// are looked up then, and kept). Cloning shares them.
#[derive(Clone, Default)]
pub struct Engines(Arc<Built>);

#[derive(Default)]
struct Built {
    options: EngineOptions,
    postgres: OnceLock<postgres::PostgresEngine>,
    mariadb: OnceLock<mariadb::MariaDbEngine>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engines")
    }
}

impl Engines {
    pub fn new(options: EngineOptions) -> Engines {
        Engines(Arc::new(Built { options, ..Built::default() }))
    }

    /// The engine for `kind`, or `None` when this build cannot handle it.
    pub fn get(&self, kind: &EngineKind) -> Option<&dyn Engine> {
        match kind {
            EngineKind::Postgres => Some(self.postgres()),
            EngineKind::MariaDb => {
                Some(self.0.mariadb.get_or_init(|| mariadb::MariaDbEngine::new(self.0.options.clone())))
            }
            EngineKind::Foreign(_) => None,
        }
    }

    /// The PostgreSQL engine (its installed majors: `postgres::Installed`).
    pub fn postgres(&self) -> &postgres::PostgresEngine {
        self.0.postgres.get_or_init(|| postgres::PostgresEngine::new(self.0.options.clone()))
    }

    /// The options they were built with.
    pub fn options(&self) -> &EngineOptions {
        &self.0.options
    }
}
