//! PostgreSQL: a backup is the `pg_dumpall --roles-only --no-role-passwords` output, our
//! database settings section (`settings`), then the `pg_dump -Fp` output, in one stream
//! (contract C4: what upstream wrote, plus a section plain psql also accepts).
//! A load feeds that stream back through `psql` (serially or in parallel sessions).
//!
//! Passwords go to the children through `PGPASSWORD` in their environment, never argv; `-w`
//! makes the tools fail instead of prompting on a terminal.

mod bin;
pub use bin::Installed;
mod counts;
mod datadir;
mod parallel;
mod pq;
mod preflight;
mod restore;
mod sections;
mod server;
mod settings;
mod stats;
mod swap;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, anyhow};

use super::{
    Conn, DataDir, DumpInfo, Engine, EngineOptions, Loaded, Recovery, RestoreReport, RestoreRequest, Server,
    ServerOptions, load, process,
};
use crate::model::database::Database;
use crate::model::spec::EngineKind;
use crate::model::stats::SchemaStats;
use crate::stream::scan::Summary;
use crate::stream::scan::postgres::header::{HeaderFilter, HeaderRewriter};
use crate::system::cancel::{Cancel, Interrupted};

/// The PostgreSQL engine.
#[derive(Debug)]
pub struct PostgresEngine {
    options: EngineOptions,
    /// The installed majors, looked up on first use (`bin`).
    installed: std::sync::OnceLock<Installed>,
}

impl PostgresEngine {
    pub fn new(options: EngineOptions) -> Self {
        PostgresEngine { options, installed: std::sync::OnceLock::new() }
    }

    /// Every installed major's programs, looked up once.
    pub fn installed(&self) -> &Installed {
        self.installed.get_or_init(|| Installed::look_up(&self.options))
    }

    /// A client tool of the newest installed client (`bin`); psql of any supported major
    /// talks to every server we support. The dump picks its client by the server (`dump`).
    fn tool(&self, name: &str) -> PathBuf {
        match self.installed().newest_client() {
            Some(folder) => folder.dir.join(name),
            // Spawning it fails with an error that names the program and the folder.
            None => self.options.pg_bin_dirs.first().map_or_else(|| PathBuf::from(name), |d| d.join(name)),
        }
    }

    /// This engine with only `folder`'s programs: the client chosen for one server.
    fn with_client(&self, folder: &bin::Folder) -> PostgresEngine {
        PostgresEngine {
            options: EngineOptions { pg_bin_dirs: vec![folder.dir.clone()], ..self.options.clone() },
            installed: Installed { folders: vec![folder.clone()] }.into(),
        }
    }

    /// A client command connected to `database` as `conn`. Every name (host, user, database)
    /// goes into one quoted connection string (`-d "host='..' dbname='..'"`), so that no tool
    /// can read a database named `--schema-only` as an option or `a=b` as a connection string.
    fn client(&self, tool: &str, conn: &Conn, database: &str) -> Command {
        self.client_to(tool, conn, &conninfo(conn, database))
    }

    /// `client` with a whole connection string (made by `conninfo`, plus keywords).
    fn client_to(&self, tool: &str, conn: &Conn, conninfo: &str) -> Command {
        libpq_command(&self.tool(tool), conn, conninfo, self.options.connect_timeout_secs)
    }

    /// `psql` in a database, quiet, no psqlrc, unaligned tuples only.
    fn psql(&self, conn: &Conn, database: &str) -> Command {
        let mut cmd = self.client("psql", conn, database);
        cmd.args(["-X", "-q", "-A", "-t"]);
        cmd
    }

    /// `pg_dumpall --roles-only --no-role-passwords`, connecting to the database being backed
    /// up, which the backup user can certainly reach.
    pub fn roles_command(&self, db: &Database, conn: &Conn) -> Command {
        let mut cmd = self.client("pg_dumpall", conn, &db.spec.database);
        cmd.args(["--roles-only", "--no-role-passwords"]);
        cmd
    }

    /// `pg_dump -Fp [options]` of the database.
    pub fn dump_command(&self, db: &Database, conn: &Conn) -> Command {
        let mut cmd = self.client("pg_dump", conn, &db.spec.database);
        cmd.arg("-Fp");
        for t in &db.options.exclude_tables {
            cmd.arg(format!("--exclude-table={t}"));
        }
        for t in &db.options.exclude_table_data {
            cmd.arg(format!("--exclude-table-data={t}"));
        }
        cmd.args(&db.options.extra_args);
        cmd
    }

    /// The server's major version (e.g. 15), after connecting as `conn`.
    ///
    /// # Errors
    /// The connection failure as libpq reports it (refused, timeout, authentication: the
    /// server's own message).
    pub fn server_major(&self, conn: &Conn, database: &str, cancel: &Cancel) -> anyhow::Result<u32> {
        Ok(self.server_version(conn, database, cancel)?.0)
    }

    /// The server's major version and its full version text (`15.18 (Debian ...)`).
    ///
    /// # Errors
    /// As `server_major`.
    pub fn server_version(&self, conn: &Conn, database: &str, cancel: &Cancel) -> anyhow::Result<(u32, String)> {
        parse_version(&self.query(conn, database, VERSION_QUERY, cancel)?)
    }

    /// Runs one query in `database` as `conn` and returns its output (unaligned, tuples only):
    /// for callers that read server facts (the point-in-time readiness checks).
    ///
    /// # Errors
    /// Connection or SQL errors, with psql's message.
    pub fn query(&self, conn: &Conn, database: &str, sql: &str, cancel: &Cancel) -> anyhow::Result<String> {
        self.queries(conn, database, &[sql], cancel)
    }

    /// `IDENTIFY_SYSTEM` over a physical replication connection as `conn`: proves pg_hba lets the
    /// role replicate and that it may; returns `systemid|timeline|xlogpos|dbname`.
    ///
    /// # Errors
    /// The server's refusal, as psql reports it.
    pub fn identify_system(&self, conn: &Conn, cancel: &Cancel) -> anyhow::Result<String> {
        let mut cmd =
            self.client_to("psql", conn, &format!("{} replication=true", conninfo(conn, swap::MAINTENANCE_DB)));
        cmd.args(["-X", "-A", "-t", "-c", "IDENTIFY_SYSTEM"]);
        Ok(process::capture(cmd, "psql (replication)", cancel)?.trim().to_string())
    }

    /// A session of our own in `database` as `conn`, with `options` (`-c name=value ...`).
    fn session(&self, conn: &Conn, database: &str, options: &str) -> anyhow::Result<pq::Session> {
        pq::Session::connect(conn, database, options, self.options.connect_timeout_secs)
    }

    /// Runs statements in order in one session of our own (`pq`: each its own transaction),
    /// stopping at the first error; returns their rows as psql printed them (`-A -t`: fields
    /// joined by `|`, a line per row), concatenated. A cancellation cancels what runs.
    fn queries(&self, conn: &Conn, database: &str, sql: &[&str], cancel: &Cancel) -> anyhow::Result<String> {
        cancel.check()?;
        let mut session = self.session(conn, database, "")?;
        let _watch = session.watch(cancel);
        let mut out = String::new();
        for statement in sql {
            let rows = session.query(statement).map_err(|e| query_error(&e, cancel))?;
            out.push_str(&pq::psql_text(&rows));
        }
        Ok(out)
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn preflight(&self, db: &Database, cancel: &Cancel) -> super::Preflight {
        self.check(db, cancel)
    }

    fn dump(&self, db: &Database, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<DumpInfo> {
        let conn = db.conn()?;
        // One session: the server's version and the database's own settings.
        let answer = self
            .queries(&conn, &db.spec.database, &[VERSION_QUERY, settings::CAPTURE_QUERY], cancel)
            .context("connecting to the database")?;
        let (version, captured) = answer.trim().split_once('\n').unwrap_or((answer.trim(), ""));
        let (server, server_text) = parse_version(version)?;
        // The client of the server's major, else the lowest above it (`bin`).
        let folder = self.installed().client_for(server)?;
        let (client, client_text) = folder.client.clone().unwrap_or_default();
        let chosen = self.with_client(folder);
        let captured: settings::Captured = serde_json::from_str(captured.trim())
            .with_context(|| format!("reading the database's own settings from {:?}", captured.trim()))?;
        let dump = chosen.dump_command(db, &conn);
        // The options it ran with, without the connection (`-w -d <conninfo>`).
        let options: Vec<String> = dump.get_args().skip(3).map(|a| a.to_string_lossy().into_owned()).collect();
        // A newer client's header settings, written so that the source's major takes them.
        let mut out = HeaderRewriter::new(out, server * 10_000);
        process::stream_stdout(chosen.roles_command(db, &conn), "pg_dumpall", &mut out, cancel)
            .context("dumping roles")?;
        out.write_all(settings::render(&captured).as_bytes()).context("writing the backup")?;
        process::stream_stdout(dump, "pg_dump", &mut out, cancel).context("dumping the database")?;
        let portable_header_lines = out.rewritten;
        out.finish().context("writing the backup")?;
        Ok(DumpInfo {
            server_version: Some(format!("PostgreSQL {server_text}")),
            client_version: Some(client_text),
            options,
            server_major: Some(server),
            client_major: Some(client),
            portable_header_lines,
        })
    }

    fn load<'a>(
        &'a self,
        req: &'a RestoreRequest,
        sql: &mut (dyn BufRead + Send),
        cancel: &Cancel,
    ) -> anyhow::Result<(Box<dyn Loaded + 'a>, RestoreReport)> {
        restore::load(self, req, sql, cancel)
    }

    fn count_rows(
        &self,
        conn: &Conn,
        database: &str,
        stream: &Summary,
        cancel: &Cancel,
    ) -> anyhow::Result<load::CountCheck> {
        counts::check(self, conn, database, stream, cancel)
    }

    fn schema_stats(
        &self,
        conn: &Conn,
        database: &str,
        schemas: Option<&[String]>,
        cancel: &Cancel,
    ) -> anyhow::Result<(Vec<SchemaStats>, u64)> {
        stats::schema_stats(self, conn, database, schemas, cancel)
    }

    fn drop_database(&self, conn: &Conn, database: &str, cancel: &Cancel) -> anyhow::Result<()> {
        let sql = format!("DROP DATABASE {} WITH (FORCE)", quote_ident(database));
        self.queries(conn, swap::MAINTENANCE_DB, &[&sql], cancel).map(drop)
    }

    /// From the dump's header (`-- Dumped from database version 14.x`).
    fn source_major<'a>(
        &self,
        sql: Box<dyn BufRead + Send + 'a>,
    ) -> anyhow::Result<(Option<u32>, Box<dyn BufRead + Send + 'a>)> {
        let mut sql = HeaderFilter::new(sql, u32::MAX);
        let source = sql.read_ahead().context("reading the backup")?.source_major;
        Ok((source, Box::new(sql)))
    }

    fn throwaway_major(&self, wanted: Option<u32>) -> anyhow::Result<Option<u32>> {
        Ok(Some(self.installed().server_dir(wanted)?.1))
    }

    fn start_server(
        &self,
        major: Option<u32>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Box<dyn Server>> {
        let (bin_dir, _) = self.installed().server_dir(major)?;
        Ok(Box::new(server::Throwaway::start(bin_dir, opts, cancel)?))
    }

    fn start_server_on(
        &self,
        data: DataDir,
        recovery: Option<&Recovery>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Box<dyn Server>> {
        // Its own major's programs, never a newer one's: a server refuses another major's files.
        let major = datadir::major(&data.folder.path().join("data"))?;
        let bin_dir = self.installed().server_dir_exact(major)?;
        Ok(Box::new(server::Throwaway::start_on(bin_dir, data, recovery, opts, cancel)?))
    }

    fn list_databases(&self, db: &Database, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
        // One JSON array, never lines: a name may hold a newline (`safe_name`).
        let sql = "SELECT coalesce(json_agg(datname ORDER BY datname), '[]') \
                   FROM pg_database WHERE NOT datistemplate AND datallowconn";
        let out = self.queries(&db.conn()?, swap::MAINTENANCE_DB, &[sql], cancel)?;
        serde_json::from_str(out.trim()).with_context(|| format!("unexpected list of databases: {:?}", out.trim()))
    }

    fn check_sql(&self, db: &Database, sql: &str, cancel: &Cancel) -> anyhow::Result<Option<String>> {
        preflight::check_sql(self, db, sql, cancel)
    }

    fn execute_sql(
        &self,
        db: &Database,
        sql: &str,
        timeout: std::time::Duration,
        cancel: &Cancel,
    ) -> anyhow::Result<String> {
        let options = format!("-c statement_timeout={}", timeout.as_millis().max(1));
        let mut session = self.session(&db.conn()?, &db.spec.database, &options)?;
        let _watch = session.watch(cancel);
        let rows = session.query(sql).map_err(|e| query_error(&e, cancel))?;
        Ok(pq::psql_text(&rows))
    }
}

/// The server's version: `150018 15.18 (Debian 15.18-0+deb12u1)`.
/// `VERSION_QUERY`'s answer (`150018 15.18 (Debian ...)`): the major version and the text.
fn parse_version(out: &str) -> anyhow::Result<(u32, String)> {
    let (num, text) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
    let num: u32 = num.parse().map_err(|_| anyhow!("unexpected server_version_num {:?}", out.trim()))?;
    Ok((num / 10000, text.to_string()))
}

/// `program` (any libpq client) connected by `conninfo` as `conn`: the password in its
/// environment, never argv (`-w`: fail instead of prompting), inherited libpq variables that
/// could redirect it removed, the connect timeout and our application name set.
pub fn libpq_command(program: &std::path::Path, conn: &Conn, conninfo: &str, connect_timeout_secs: u32) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("-w").arg("-d").arg(conninfo);
    libpq_environment(&mut cmd, conn, connect_timeout_secs);
    cmd
}

/// The environment of every libpq client we run: `conn`'s password (or none, never an
/// inherited one), inherited variables that could redirect it removed, the connect timeout
/// and our application name. For a tool whose `-d` is not a connection (`pg_amcheck`).
pub fn libpq_environment(cmd: &mut Command, conn: &Conn, connect_timeout_secs: u32) {
    match &conn.password {
        Some(password) => cmd.env("PGPASSWORD", password.expose()),
        // NOTE: never let an inherited PGPASSWORD meant for another user leak into this one.
        None => cmd.env_remove("PGPASSWORD"),
    };
    for var in ["PGSERVICE", "PGDATABASE", "PGHOST", "PGPORT", "PGOPTIONS"] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", connect_timeout_secs.max(1).to_string());
    cmd.env("PGAPPNAME", "backup-container");
}

/// A query's error: the server's, or an interruption when the statement was cancelled.
fn query_error(e: &pq::PgError, cancel: &Cancel) -> anyhow::Error {
    if cancel.is_cancelled() { anyhow::Error::new(Interrupted) } else { anyhow!("{e}") }
}

const VERSION_QUERY: &str = "SELECT current_setting('server_version_num') || ' ' || current_setting('server_version')";

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A libpq connection string naming everything: each value in single quotes with `\\` and
/// `'` escaped, as libpq's conninfo parser reads them.
pub(crate) fn conninfo(conn: &Conn, database: &str) -> String {
    let value = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![format!("host={}", value(&conn.host))];
    if let Some(port) = conn.port {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = &conn.user {
        parts.push(format!("user={}", value(user)));
    }
    parts.push(format!("dbname={}", value(database)));
    parts.join(" ")
}

/// `'text'` with embedded quotes doubled.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests;
