//! MariaDB load: drop and recreate the database, grant the application user, stream the
//! dump into `mariadb` (`--force` with `-I`), counting every SQL error and each table's rows;
//! `count_check` compares those rows with `COUNT(*)` of the restored tables.
//!
//! MariaDB cannot rename a database (and `RENAME TABLE` refuses tables with triggers across
//! databases), so this restore is always in place; the caller proves the file complete
//! (a full scan) before calling it, so only a server-side failure can stop it half-way.

use std::io::{BufRead, Cursor};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::{MariaDbEngine, quote_account, quote_ident};
use crate::engine::load::{CountCheck, SqlErrors, compare, parse_counts, snapshot, uncountable};
use crate::engine::{Conn, Loaded, RestoreReport, RestoreRequest, process};
use crate::stream::scan::{ScanReader, Summary, mariadb::MariaScanner};
use crate::system::cancel::Cancel;

/// The database, loaded in place: nothing is left to do but the checks.
struct InPlace<'a>(&'a str);

impl Loaded for InPlace<'_> {
    fn database(&self) -> &str {
        self.0
    }

    fn finish(self: Box<Self>, _report: &mut RestoreReport, _cancel: &Cancel) -> anyhow::Result<()> {
        Ok(())
    }
}

pub fn load<'a>(
    engine: &'a MariaDbEngine,
    req: &'a RestoreRequest,
    sql: &mut (dyn BufRead + Send),
    cancel: &Cancel,
) -> anyhow::Result<(Box<dyn Loaded + 'a>, RestoreReport)> {
    let admin = &req.admin;
    engine
        .query(admin, None, "SELECT 1", cancel)
        .context("connecting as the admin user (BACKUP_ADMIN_USER / BACKUP_ADMIN_PASSWORD, or -a)")?;
    let db = quote_ident(&req.database);
    info!(database = %req.database, "Dropping and recreating the database.");
    engine
        .query(admin, None, &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"), cancel)
        .with_context(|| format!("recreating database {}", req.database))?;
    let mut report = RestoreReport::default();
    if let Some(owner) = &req.owner {
        let grant = format!("GRANT ALL PRIVILEGES ON {db}.* TO {}", quote_account(owner));
        if let Err(e) = engine.query(admin, None, &grant, cancel) {
            let w = format!("GRANT to {owner} skipped: {e:#}");
            warn!(warning = %w, "Grant skipped.");
            report.warnings.push(w);
        }
    }
    let (errors, stream) = feed(engine, req, sql, cancel)?;
    report.errors = errors;
    report.stream = stream;
    Ok((Box::new(InPlace(&req.database)), report))
}

fn feed(
    engine: &MariaDbEngine,
    req: &RestoreRequest,
    sql: &mut (dyn BufRead + Send),
    cancel: &Cancel,
) -> anyhow::Result<(SqlErrors, Summary)> {
    let mut cmd = engine.client(&["mariadb", "mysql"], &req.admin);
    if req.ignore_errors {
        cmd.arg("--force");
    }
    cmd.arg(format!("--database={}", req.database));
    let tally = Arc::new(Mutex::new(SqlErrors::default()));
    let tap = {
        let tally = Arc::clone(&tally);
        Box::new(move |line: &str| {
            if let Ok(mut t) = tally.lock() {
                t.observe_mariadb(line);
            }
        })
    };
    let mut scanned = ScanReader::new(sql, Box::new(MariaScanner::new()));
    let fed = process::feed_stdin_tapped(cmd, "mariadb", &mut scanned, Some(tap), cancel);
    let errors = snapshot(&tally);
    let summary = scanned.finish();
    let database = &req.database;
    if let Err(e) = fed {
        if errors.count > 0 && !req.ignore_errors {
            bail!(
                "the restore of {database} stopped at the first SQL error (-I continues past errors); the database is \
                 incomplete: {}",
                errors.first.first().map(String::as_str).unwrap_or_default()
            );
        }
        return Err(e).with_context(|| format!("the restore of {database} stopped; the database is incomplete"));
    }
    Ok((errors, summary))
}

pub fn count_check(
    engine: &MariaDbEngine,
    admin: &Conn,
    database: &str,
    summary: &Summary,
    cancel: &Cancel,
) -> anyhow::Result<CountCheck> {
    if let Some(why) = uncountable(summary) {
        return Ok(CountCheck::skipped(why));
    }
    let existing = engine.query(
        admin,
        None,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema = '{}'",
            database.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        cancel,
    )?;
    let existing: std::collections::HashSet<&str> = existing.lines().collect();
    let script: String = summary
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| existing.contains(t.table.as_str()))
        .map(|(i, t)| format!("SELECT {i}, COUNT(*) FROM {};\n", quote_ident(&t.table)))
        .collect();
    let mut cmd = engine.client(&["mariadb", "mysql"], admin);
    cmd.args(["--batch", "--skip-column-names"]).arg(format!("--database={database}"));
    let fed = process::feed_stdin(cmd, "mariadb (row counts)", &mut Cursor::new(script.into_bytes()), cancel)
        .context("counting the restored tables' rows (RESTORE_COUNT_CHECK=false skips this)")?;
    Ok(compare(&summary.tables, &parse_counts(&fed.stdout, '\t', summary.tables.len())))
}
