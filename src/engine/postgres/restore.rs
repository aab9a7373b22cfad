//! PostgreSQL restore: roles (tolerating existing ones), then drop and recreate the database
//! (terminating other sessions), drop the Patroni template schemas, grant the application
//! user, and stream the database section into psql with ON_ERROR_STOP (unless `-I`).
//!
//! The load commits asynchronously (a dump of many objects commits once per statement, and
//! each synchronous commit waits for a WAL flush); one synchronous commit at the end makes
//! all of them durable before the restore is reported done.
//!
//! Everything that can fail before data is lost (admin connection, a broken roles section) is
//! checked before the DROP.

use std::io::{BufRead, Cursor, Read};

use anyhow::Context;
use tracing::{debug, info, warn};

use super::sections::{split_roles, tolerate_existing_roles};
use super::{PostgresEngine, quote_ident, quote_literal};
use crate::cancel::Cancel;
use crate::engine::{Conn, RestoreReport, RestoreRequest, process};

/// Schemas Patroni's template puts in every new database; the dump brings its own copies.
const PATRONI_SCHEMAS: [&str; 2] = ["metric_helpers", "user_management"];
/// The maintenance database the admin connects to.
const MAINTENANCE_DB: &str = "postgres";

pub fn run(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    sql: &mut (dyn BufRead + Send),
    cancel: &Cancel,
) -> anyhow::Result<RestoreReport> {
    let admin = &req.admin;
    let major = engine
        .server_major(admin, MAINTENANCE_DB, cancel)
        .context("connecting as the admin user (set BACKUP_ADMIN_USER / BACKUP_ADMIN_PASSWORD, or -a)")?;
    let split = split_roles(sql).context("reading the backup")?;
    let mut report = RestoreReport::default();
    if let Some(roles) = &split.roles {
        report.warnings.extend(apply_roles(engine, admin, roles, cancel)?);
    }
    report.terminated_connections = recreate(engine, req, major, &mut report, cancel)?;
    let mut rest = Cursor::new(load_prelude().into_bytes()).chain(Cursor::new(split.replay)).chain(sql);
    debug!(database = %req.database, "Loading the database section.");
    report.warnings.extend(load(engine, req, &mut rest, cancel)?);
    debug!(database = %req.database, "Loaded; waiting for one synchronous commit.");
    engine.queries(admin, MAINTENANCE_DB, &DURABLE_COMMIT, cancel).with_context(|| {
        format!("database {} was loaded, but the server did not confirm it is on disk", req.database)
    })?;
    Ok(report)
}

/// Applies the roles section; failures other than "already exists" become warnings (e.g. a
/// non-superuser admin cannot `ALTER ROLE postgres WITH SUPERUSER`).
fn apply_roles(engine: &PostgresEngine, admin: &Conn, roles: &str, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
    let mut cmd = engine.psql(admin, MAINTENANCE_DB);
    cmd.args(["-v", "ON_ERROR_STOP=0"]);
    let sql = tolerate_existing_roles(roles);
    let fed = process::feed_stdin(cmd, "psql (roles)", &mut sql.as_bytes(), cancel).context("applying roles")?;
    let warnings: Vec<String> = fed
        .stderr
        .into_iter()
        .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
        .map(|l| format!("roles: {l}"))
        .collect();
    for w in &warnings {
        warn!(warning = %w, "A role statement failed; continuing.");
    }
    Ok(warnings)
}

/// Drops (terminating sessions) and recreates the database, and grants the application user
/// (as upstream does), in one psql session. Returns how many sessions had to be terminated.
fn recreate(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    major: u32,
    report: &mut RestoreReport,
    cancel: &Cancel,
) -> anyhow::Result<u64> {
    let db = &req.database;
    info!(database = %db, "Dropping and recreating the database.");
    let statements = recreate_statements(db, req.owner.as_deref(), major);
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    let out = engine
        .queries(&req.admin, MAINTENANCE_DB, &statements, cancel)
        .with_context(|| format!("dropping and recreating database {db} (the old copy may already be gone)"))?;
    let mut lines = out.lines().map(str::trim);
    let terminated: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    if terminated > 0 {
        warn!(database = %db, sessions = terminated, "Terminated sessions that were connected to the database.");
    }
    if let Some(owner) = &req.owner
        && lines.next() != Some("1")
    {
        let w = format!("role {owner} does not exist on the target server; GRANT skipped");
        warn!(warning = %w, "Grant skipped.");
        report.warnings.push(w);
    }
    Ok(terminated)
}

/// The statements `recreate` runs, one `-c` each (DROP DATABASE cannot run in a transaction
/// block). Output: the number of other sessions, then (with an owner) 1 if the owner exists.
fn recreate_statements(db: &str, owner: Option<&str>, major: u32) -> Vec<String> {
    let sessions = format!("FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()", quote_literal(db));
    let mut sql = Vec::new();
    if major >= 13 {
        sql.push(format!("SELECT count(*) {sessions}"));
        sql.push(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db)));
    } else {
        sql.push(format!("SELECT count(pg_terminate_backend(pid)) {sessions}"));
        sql.push(format!("DROP DATABASE IF EXISTS {}", quote_ident(db)));
    }
    sql.push(format!("CREATE DATABASE {}", quote_ident(db)));
    if let Some(owner) = owner {
        let exists = format!("SELECT 1 FROM pg_roles WHERE rolname = {}", quote_literal(owner));
        let grant = format!("GRANT ALL ON DATABASE {} TO {}", quote_ident(db), quote_ident(owner));
        sql.push(format!("SELECT count(*) FROM ({exists}) AS owner"));
        sql.push(format!("DO {}", quote_literal(&format!("BEGIN IF EXISTS ({exists}) THEN {grant}; END IF; END"))));
    }
    sql
}

/// Run first in the new database, in the same session as the load: commits stop waiting for
/// WAL flushes one by one (`DURABLE_COMMIT` follows the load), and the schemas Patroni's
/// template puts in every new database are dropped (the dump brings its own copies).
fn load_prelude() -> String {
    let drops = PATRONI_SCHEMAS.iter().map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE;\n", quote_ident(s)));
    std::iter::once("SET synchronous_commit = off;\n".to_string()).chain(drops).collect()
}

/// A synchronous commit (assigning a transaction id makes it write a commit record) flushes
/// the WAL up to its own record, which covers every asynchronous commit of the load before it.
const DURABLE_COMMIT: [&str; 2] = ["SET synchronous_commit = on", "SELECT txid_current()"];

/// Streams the database section into psql.
fn load(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    sql: &mut (dyn Read + Send),
    cancel: &Cancel,
) -> anyhow::Result<Vec<String>> {
    let mut cmd = engine.psql(&req.admin, &req.database);
    let stop = if req.ignore_errors { "ON_ERROR_STOP=0" } else { "ON_ERROR_STOP=1" };
    cmd.args(["-v", stop]);
    if req.single_transaction {
        cmd.arg("--single-transaction");
    }
    let fed = process::feed_stdin(cmd, "psql", sql, cancel).with_context(|| {
        format!("database {} was recreated but the restore stopped; it is incomplete", req.database)
    })?;
    // With -I psql exits 0 despite errors; report them rather than hide them.
    Ok(fed.stderr.into_iter().filter(|l| l.contains("ERROR")).map(|l| format!("ignored (-I): {l}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recreate_statements_quote_names_and_grant_only_an_existing_owner() {
        let sql = recreate_statements("app\"db", Some("o'wner"), 15);
        assert_eq!(sql[1], "DROP DATABASE IF EXISTS \"app\"\"db\" WITH (FORCE)");
        assert_eq!(sql[2], "CREATE DATABASE \"app\"\"db\"");
        assert_eq!(sql[3], "SELECT count(*) FROM (SELECT 1 FROM pg_roles WHERE rolname = 'o''wner') AS owner");
        assert_eq!(
            sql[4],
            "DO 'BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ''o''''wner'') \
             THEN GRANT ALL ON DATABASE \"app\"\"db\" TO \"o''wner\"; END IF; END'"
        );
        let old = recreate_statements("db", None, 12);
        assert_eq!(old.len(), 3);
        assert!(old[0].starts_with("SELECT count(pg_terminate_backend(pid))"), "{}", old[0]);
        assert_eq!(old[1], "DROP DATABASE IF EXISTS \"db\"");
    }

    #[test]
    fn load_prelude_turns_off_synchronous_commit_before_anything_else() {
        let prelude = load_prelude();
        let lines: Vec<&str> = prelude.lines().collect();
        assert_eq!(lines[0], "SET synchronous_commit = off;");
        assert!(lines[1..].iter().all(|l| l.starts_with("DROP SCHEMA IF EXISTS ")), "{prelude}");
        assert_eq!(lines.len(), 1 + PATRONI_SCHEMAS.len());
    }
}
