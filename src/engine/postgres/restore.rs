//! PostgreSQL load, in the order that never loses the target (the workflow above it,
//! `restore::database`, judges completeness and counts between the load and `finish`):
//!
//! 1. connect as the admin; read the roles and database settings sections off the front of
//!    the stream; apply the roles (existing roles tolerated);
//! 2. create the database to load into (`swap::LoadDatabase`: a temporary one by default),
//!    with the backup's encoding and locale;
//! 3. stream the database section into `psql -f -` (ON_ERROR_STOP unless `-I`), counting
//!    every SQL error with its line in the file, while the scanner checks that the dump is
//!    complete and counts each table's rows;
//! 4. (`finish`) apply the database's own settings, comment and privileges; make the load
//!    durable; swap the loaded copy in by rename.
//!
//! Any failure before the swap drops the temporary database: the target is as it was.
//!
//! The load commits asynchronously (a dump of many objects commits once per statement, and
//! each synchronous commit waits for a WAL flush); one synchronous commit before the swap makes
//! all of them durable.

use std::io::{BufRead, Cursor, Read};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use tracing::{debug, info, warn};

use super::sections::{split_front, statements};
use super::swap::{LoadDatabase, MAINTENANCE_DB};
use super::{PostgresEngine, parallel, settings};
use crate::engine::load::{SqlErrors, snapshot};
use crate::engine::{Conn, Loaded, RestoreReport, RestoreRequest, process};
use crate::model::database::RestoreLoader;
use crate::stream::scan::postgres::{PgScanner, header::HeaderFilter};
use crate::stream::scan::{ScanReader, Scanner, Summary};
use crate::system::cancel::Cancel;

/// A database loaded beside (or in place of) the target, with what `finish` still applies.
struct PgLoaded<'a> {
    engine: &'a PostgresEngine,
    target: LoadDatabase<'a>,
    /// The backup's database settings section, applied after the counts.
    settings: Option<String>,
}

pub fn load<'a>(
    engine: &'a PostgresEngine,
    req: &'a RestoreRequest,
    sql: &mut (dyn BufRead + Send),
    cancel: &Cancel,
) -> anyhow::Result<(Box<dyn Loaded + 'a>, RestoreReport)> {
    let admin = &req.admin;
    let major = engine
        .server_major(admin, MAINTENANCE_DB, cancel)
        .context("connecting as the admin user (set BACKUP_ADMIN_USER / BACKUP_ADMIN_PASSWORD, or -a)")?;
    // Header settings the target lacks (a newer pg_dump's) reach psql as empty lines.
    let mut sql = HeaderFilter::new(sql, major * 10_000);
    let front = split_front(&mut sql).context("reading the backup")?;
    let origin = sql.read_ahead().context("reading the backup")?;
    if let Some(source) = origin.source_major
        && source > major
    {
        bail!(
            "this backup was taken from a PostgreSQL {source} server and cannot be restored into PostgreSQL {major} \
             (a dump loads into its source's major or a newer one): restore it into a PostgreSQL {source} or newer server"
        );
    }
    let mut report = RestoreReport::default();
    // The scanner sees the whole file, front sections included, to judge it complete.
    let mut scanner = PgScanner::new();
    scanner.feed(&front.consumed);
    let offset = front.consumed.iter().filter(|b| **b == b'\n').count() as u64;
    if let Some(roles) = &front.roles {
        report.warnings.extend(apply_roles(engine, admin, roles, cancel)?);
    }
    let locale = front.settings.as_deref().and_then(settings::parse_locale);
    let (target, terminated) = LoadDatabase::create(engine, req, major, locale.as_ref(), cancel)?;
    report.terminated_connections = terminated;
    if let Some(owner) = front.settings.as_deref().and_then(settings::parse_owner) {
        report.warnings.extend(target.set_owner(&owner, cancel)?);
    }
    report.warnings.extend(target.grant_owner(cancel)?);
    debug!(database = %target.name, "Loading the database section.");
    let mut rest = Cursor::new(front.replay).chain(&mut sql);
    let (errors, stream, counted) = if req.jobs > 1 || engine.options.restore_loader == RestoreLoader::Libpq {
        let (errors, stream, plan, counted) =
            parallel::load(engine, req, &target.name, &mut rest, scanner, offset, cancel)?;
        if req.jobs > 1 {
            info!(sessions = req.jobs, plan = %plan, "Loaded in parallel.");
            report.parallel = Some(plan.to_string());
        } else {
            debug!(plan = %plan, "Loaded in one session.");
        }
        (errors, stream, counted.filter(|_| plan.rows_final_after_data))
    } else {
        let mut rest = ScanReader::new(rest, Box::new(scanner));
        let (errors, stream) = serial(engine, req, &target.name, &mut rest, offset, cancel)?;
        (errors, stream, None)
    };
    if let Some(c) = counted
        && let Some(check) = parallel::early::check(&stream, &c)
    {
        report.counts = check;
        report.counted_while_loading = true;
        report.counted_from_replies = c.from_replies;
    }
    if let Some((line, setting)) = sql.blanked.first() {
        info!(
            setting,
            line,
            lines = sql.blanked.len(),
            server = major,
            "Header settings this server lacks were skipped (written by a newer pg_dump)."
        );
    }
    report.errors = errors;
    report.stream = stream;
    Ok((Box::new(PgLoaded { engine, target, settings: front.settings }), report))
}

impl Loaded for PgLoaded<'_> {
    fn database(&self) -> &str {
        &self.target.name
    }

    fn finish(self: Box<Self>, report: &mut RestoreReport, cancel: &Cancel) -> anyhow::Result<()> {
        let PgLoaded { engine, target, settings } = *self;
        let admin = target.admin();
        if let Some(section) = &settings {
            report.warnings.extend(apply_settings(engine, admin, &target.name, section, cancel)?);
        }
        debug!(database = %target.name, "Loaded; waiting for one synchronous commit.");
        engine.queries(admin, MAINTENANCE_DB, &DURABLE_COMMIT, cancel).with_context(|| {
            format!("database {} was loaded, but the server did not confirm it is on disk", target.name)
        })?;
        let (terminated, kept) = target.finish(cancel)?;
        report.terminated_connections += terminated;
        report.kept_previous = kept;
        Ok(())
    }
}

/// Applies the roles section, one statement at a time in a session of our own; failures other
/// than "already exists" (`duplicate_object`, whatever the server's language) become warnings
/// (e.g. a non-superuser admin cannot `ALTER ROLE postgres WITH SUPERUSER`).
fn apply_roles(engine: &PostgresEngine, admin: &Conn, roles: &str, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
    let mut session =
        engine.session(admin, MAINTENANCE_DB, "-c client_min_messages=warning").context("applying roles")?;
    let _watch = session.watch(cancel);
    let mut warnings = Vec::new();
    for (_, statement) in statements(roles) {
        cancel.check()?;
        if let Err(e) = session.exec(statement.as_bytes())
            && e.sqlstate != DUPLICATE_OBJECT
        {
            warnings.push(format!("roles: {}", e.lines().join(" ")));
        }
    }
    for w in &warnings {
        warn!(warning = %w, "A role statement failed; continuing.");
    }
    Ok(warnings)
}

/// SQLSTATE of `CREATE ROLE` for a role that exists.
const DUPLICATE_OBJECT: &str = "42710";

/// Applies the database settings section in the loaded database (after the load and the
/// counts, so that settings such as `default_transaction_read_only` affect neither); each
/// statement that could not be applied is a warning (the section's own blocks turn a setting
/// the server lacks into one), an error stops.
fn apply_settings(
    engine: &PostgresEngine,
    admin: &Conn,
    database: &str,
    section: &str,
    cancel: &Cancel,
) -> anyhow::Result<Vec<String>> {
    let what = "applying the database's own settings";
    let mut session = engine.session(admin, database, "-c client_min_messages=warning").context(what)?;
    let _watch = session.watch(cancel);
    for (line, statement) in statements(section) {
        cancel.check()?;
        session
            .exec(statement.as_bytes())
            .map_err(|e| anyhow!("line {line} of the settings section: {}", e.lines().join(" ")))
            .context(what)?;
    }
    let warnings: Vec<String> = session
        .take_notices()
        .into_iter()
        .filter(|l| l.starts_with("WARNING"))
        .map(|l| format!("settings: {l}"))
        .collect();
    for w in &warnings {
        warn!(warning = %w, "A database setting could not be restored; continuing.");
    }
    Ok(warnings)
}

/// A synchronous commit (assigning a transaction id makes it write a commit record) flushes
/// the WAL up to its own record, which covers every asynchronous commit of the load before it.
const DURABLE_COMMIT: [&str; 2] = ["SET synchronous_commit = on", "SELECT txid_current()"];

/// Streams the database section into `psql -f -` (so that its errors carry line numbers) in
/// database `into`. Returns the SQL errors (only possible with `-I`) and the stream's summary.
///
/// # Errors
/// The first SQL error without `-I`, a read error, an interruption.
fn serial(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    into: &str,
    sql: &mut ScanReader<impl Read + Send>,
    offset: u64,
    cancel: &Cancel,
) -> anyhow::Result<(SqlErrors, Summary)> {
    let mut cmd = engine.psql(&req.admin, into);
    let stop = if req.ignore_errors { "ON_ERROR_STOP=0" } else { "ON_ERROR_STOP=1" };
    cmd.args(["-v", stop, "-f", "-"]);
    if req.single_transaction {
        cmd.arg("--single-transaction");
    }
    // Session settings that are not part of the stream, so that line numbers stay the file's.
    cmd.env("PGOPTIONS", "-c synchronous_commit=off -c client_min_messages=warning");
    let tally = Arc::new(Mutex::new(SqlErrors::default()));
    let tap = {
        let tally = Arc::clone(&tally);
        Box::new(move |line: &str| {
            if let Ok(mut t) = tally.lock() {
                t.observe_psql(line, offset);
            }
        })
    };
    let fed = process::feed_stdin_tapped(cmd, "psql", sql, Some(tap), cancel);
    let errors = snapshot(&tally);
    let summary = sql.finish();
    if let Err(e) = fed {
        if errors.count > 0 && !req.ignore_errors && e.downcast_ref::<crate::system::cancel::Interrupted>().is_none() {
            bail!(
                "the restore stopped at the first SQL error (-I continues past errors): {}",
                errors.first.first().map(String::as_str).unwrap_or_default()
            );
        }
        return Err(e).context("the restore stopped before the end of the backup");
    }
    Ok((errors, summary))
}
