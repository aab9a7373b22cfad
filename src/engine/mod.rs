//! Database engines: how to dump, restore and verify one kind of server.
//!
//! One trait, one implementation per engine, one factory (`for_kind`). Engines build their
//! commands purely (unit-tested) and run them through `process`.

pub mod load;
pub mod mariadb;
pub mod postgres;
pub mod process;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::database::Database;
pub use crate::model::database::{Conn, DumpOptions, EngineOptions};
use crate::model::spec::EngineKind;
use crate::system::cancel::Cancel;

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
    /// transaction on the serial path; on the parallel path one per table (`TRUNCATE` first,
    /// rows not cut in pieces), which skips the WAL just the same.
    pub single_transaction: bool,
    pub placement: Placement,
    /// Compare each table's rows with the dump's after the load (`RESTORE_COUNT_CHECK`).
    pub count_check: bool,
    /// Parallel sessions of the load (`RESTORE_JOBS`); 1 = one psql session.
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
    pub stream: crate::stream::scan::Summary,
    /// Rows compared after the load.
    pub counts: load::CountCheck,
    /// The previous database, renamed and kept (`RESTORE_KEEP_PREVIOUS=true`).
    pub kept_previous: Option<String>,
    /// What the parallel load ran where (`None`: one psql session).
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
    /// Parallel sessions of the load (`RESTORE_JOBS`).
    pub jobs: usize,
    /// Throwaway servers kept for the rest of one verification run (`-v all`).
    pub pool: ServerPool,
    /// The PostgreSQL major to verify in; `None`: the dump's source major (an upgrade
    /// rehearsal names the newest installed).
    pub server_major: Option<u32>,
}

/// Throwaway servers shared by the databases of one verification run, one per engine and
/// major (PostgreSQL verifies in the source's major, `engine::postgres::bin`): each
/// database loads into the run's server and is dropped after its check, instead of an
/// initdb and a start per database; with `VERIFY_JOBS`, several at once. A server that
/// misbehaved is discarded (the next database gets a fresh one). Servers stop and their
/// folders are removed when the pool and the last database using one let go (the end of
/// the run, on every path).
#[derive(Clone, Default)]
pub struct ServerPool(Arc<Mutex<Vec<(u32, Shared)>>>);

/// A running throwaway server of some engine (the pool downcasts it to the engine's type).
type Shared = Arc<dyn std::any::Any + Send + Sync>;

impl std::fmt::Debug for ServerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerPool")
    }
}

impl ServerPool {
    /// The run's server of type `T` (the engine) for `major` (0 where versions do not
    /// matter) and whether it was already running; `start` makes it when there is none (one
    /// start at a time: databases arriving meanwhile wait for it rather than each starting one).
    ///
    /// # Errors
    /// `start`'s.
    fn get_or_start<T: Send + Sync + 'static>(
        &self,
        major: u32,
        start: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<(Arc<T>, bool)> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept.iter().filter(|(m, _)| *m == major).find_map(|(_, s)| Arc::clone(s).downcast::<T>().ok());
        if let Some(server) = found {
            return Ok((server, true));
        }
        let server = Arc::new(start()?);
        kept.push((major, server.clone()));
        Ok((server, false))
    }

    /// Runs `check` in the run's server of type `T` (started by `start` when there is none),
    /// then `clean` (drop the database); a failed check or clean-up takes the server out of
    /// use for the rest of the run (it stops when the checks still using it end).
    ///
    /// # Errors
    /// `start`'s, or `check`'s.
    pub fn check_in<T: Send + Sync + 'static, R>(
        &self,
        major: u32,
        start: impl FnOnce() -> anyhow::Result<T>,
        check: impl FnOnce(&T) -> anyhow::Result<R>,
        clean: impl FnOnce(&T) -> anyhow::Result<()>,
    ) -> anyhow::Result<R> {
        let (server, reused) = self.get_or_start(major, start)?;
        tracing::debug!(reused, "Verification server.");
        let checked = check(&server);
        if checked.is_err() || clean(&server).is_err() {
            self.discard(&server);
        }
        checked
    }

    /// Forgets `server`: it stops when the databases still using it are done.
    pub fn discard<T: Send + Sync + 'static>(&self, server: &Arc<T>) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(_, s)| !Arc::clone(s).downcast::<T>().is_ok_and(|t| Arc::ptr_eq(&t, server)));
    }
}

/// Per-schema figures of a verified restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaStats {
    pub schema: String,
    pub tables: u64,
    /// Rows counted (`count(*)`) in the tables that have data in the dump.
    pub rows: u64,
}

/// What a successful verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub tables: u64,
    pub schemas: Vec<SchemaStats>,
    pub database_size: u64,
    pub restore: RestoreReport,
    /// The major of the server it ran in (PostgreSQL), and a note when that is not the
    /// source's (`verified in 18; source 14 not installed`).
    pub server_major: Option<u32>,
    pub note: Option<String>,
}

/// What `--check` found about one database.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    pub findings: Vec<crate::model::finding::Finding>,
    /// The database's size on the server, when it could be read (for the space estimate).
    pub database_bytes: Option<u64>,
}

/// A database engine.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Checks what a backup of `db` needs without writing one (`--check`): connection,
    /// client version, privileges; never changes anything on the server.
    fn preflight(&self, db: &Database, cancel: &Cancel) -> Preflight;

    /// Whether `restore` can load beside the target and swap it in (`Placement::Swap`);
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

/// The engine for `kind`, or `None` when this build cannot handle it.
pub fn for_kind(kind: &EngineKind, options: &EngineOptions) -> Option<Box<dyn Engine>> {
    match kind {
        EngineKind::Postgres => Some(Box::new(postgres::PostgresEngine::new(options.clone()))),
        EngineKind::MariaDb => Some(Box::new(mariadb::MariaDbEngine::new(options.clone()))),
        EngineKind::Foreign(_) => None,
    }
}

#[cfg(test)]
mod pool_tests {
    use super::ServerPool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_server_serves_every_check_until_one_fails() {
        struct Server(usize);
        let pool = ServerPool::default();
        let started = AtomicUsize::new(0);
        let start = || Ok(Server(started.fetch_add(1, Ordering::SeqCst)));
        let used = |pool: &ServerPool, ok: bool| {
            pool.check_in(15, start, |s: &Server| if ok { Ok(s.0) } else { anyhow::bail!("load failed") }, |_| Ok(()))
        };
        assert_eq!(used(&pool, true).unwrap(), 0);
        assert_eq!(used(&pool, true).unwrap(), 0, "reused");
        assert!(used(&pool, false).is_err());
        assert_eq!(used(&pool, true).unwrap(), 1, "a failed check takes the server out of use");
        // A failed clean-up too.
        assert!(pool.check_in(15, start, |s: &Server| Ok(s.0), |_| anyhow::bail!("drop failed")).is_ok());
        assert_eq!(used(&pool, true).unwrap(), 2);
        assert_eq!(started.load(Ordering::SeqCst), 3);
        // Another major gets its own server; each is reused for its own major.
        assert_eq!(pool.check_in(13, start, |s: &Server| Ok(s.0), |_| Ok(())).unwrap(), 3);
        assert_eq!(pool.check_in(13, start, |s: &Server| Ok(s.0), |_| Ok(())).unwrap(), 3);
        assert_eq!(used(&pool, true).unwrap(), 2);
    }
}
