//! PostgreSQL restore: roles (tolerating existing ones), then drop and recreate the database
//! (terminating other sessions), drop the Patroni template schemas, grant the application
//! user, and stream the database section into psql with ON_ERROR_STOP (unless `-I`).
//!
//! Everything that can fail before data is lost (admin connection, a broken roles section) is
//! checked before the DROP.

use std::io::{BufRead, Cursor, Read};

use anyhow::Context;
use tracing::{info, warn};

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
    report.terminated_connections = recreate(engine, admin, &req.database, major, cancel)?;
    prepare(engine, req, &mut report, cancel)?;
    let mut rest = Cursor::new(split.replay).chain(sql);
    report.warnings.extend(load(engine, req, &mut rest, cancel)?);
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

/// Drops (terminating sessions) and recreates the database; returns how many sessions had
/// to be terminated.
fn recreate(engine: &PostgresEngine, admin: &Conn, db: &str, major: u32, cancel: &Cancel) -> anyhow::Result<u64> {
    let sessions = format!("FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()", quote_literal(db));
    let count: u64 = engine
        .query(admin, MAINTENANCE_DB, &format!("SELECT count(*) {sessions}"), cancel)?
        .trim()
        .parse()
        .unwrap_or(0);
    if count > 0 {
        warn!(database = db, sessions = count, "Terminating sessions connected to the database before dropping it.");
    }
    let drop = if major >= 13 {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db))
    } else {
        engine.query(admin, MAINTENANCE_DB, &format!("SELECT pg_terminate_backend(pid) {sessions}"), cancel)?;
        format!("DROP DATABASE IF EXISTS {}", quote_ident(db))
    };
    info!(database = db, "Dropping and recreating the database.");
    engine.query(admin, MAINTENANCE_DB, &drop, cancel).with_context(|| format!("dropping database {db}"))?;
    engine
        .query(admin, MAINTENANCE_DB, &format!("CREATE DATABASE {}", quote_ident(db)), cancel)
        .with_context(|| format!("creating database {db}"))?;
    Ok(count)
}

/// Drops the Patroni template schemas and grants the application user, as upstream does.
fn prepare(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    report: &mut RestoreReport,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let db = &req.database;
    for schema in PATRONI_SCHEMAS {
        engine.query(&req.admin, db, &format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema)), cancel)?;
    }
    let Some(owner) = &req.owner else { return Ok(()) };
    let exists = engine.query(
        &req.admin,
        MAINTENANCE_DB,
        &format!("SELECT 1 FROM pg_roles WHERE rolname = {}", quote_literal(owner)),
        cancel,
    )?;
    if exists.trim() == "1" {
        let grant = format!("GRANT ALL ON DATABASE {} TO {}", quote_ident(db), quote_ident(owner));
        engine.query(&req.admin, MAINTENANCE_DB, &grant, cancel).context("granting the application user")?;
    } else {
        let w = format!("role {owner} does not exist on the target server; GRANT skipped");
        warn!(warning = %w, "Grant skipped.");
        report.warnings.push(w);
    }
    Ok(())
}

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
