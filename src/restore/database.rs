//! The restore and verify workflows, written once for every engine on the engine's
//! primitives (`engine::Engine`):
//!
//! - **restore**: load (beside the target, or in place), judge the stream complete, compare
//!   every table's rows with the dump's, then put the database in place; any failure before
//!   the last step leaves the target as it was;
//! - **verify**: pick the throwaway server's major from the dump (its source's, else the
//!   nearest higher installed), restore into the run's server of that major, count tables per
//!   schema, drop the database.

use std::io::BufRead;

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::pool::ServerPool;
use crate::engine::{Engine, Placement, RestoreReport, RestoreRequest, Server, ServerOptions};
use crate::model::spec::EngineKind;
use crate::model::stats::SchemaStats;
use crate::system::cancel::Cancel;

/// Restores `sql` as `req` asks.
///
/// # Errors
/// A failed load, an incomplete stream, rows that differ from the dump's (without `-I`), a
/// failed swap; the target is then as it was, except for an in-place load.
pub fn restore_into(
    engine: &dyn Engine,
    req: &RestoreRequest,
    sql: &mut (dyn BufRead + Send),
    cancel: &Cancel,
) -> anyhow::Result<RestoreReport> {
    let (loaded, mut report) = engine.load(req, sql, cancel)?;
    report.stream.check_complete().with_context(|| match req.placement {
        Placement::InPlace => format!("the backup is incomplete; database {} is incomplete", req.database),
        Placement::Swap { .. } | Placement::Fresh => "the backup is incomplete; what was loaded is discarded".into(),
    })?;
    if report.errors.count > 0 {
        let first = report.errors.first.first().map(String::as_str).unwrap_or_default();
        warn!(errors = report.errors.count, first = %first, "SQL errors during the load (-I): continuing.");
    }
    info!(stream = %report.stream, "Backup stream loaded.");
    if req.count_check && report.counted_from_replies {
        info!(
            tables = report.stream.tables.len(),
            "Took every table's rows from the server's replies to its COPYs (nothing before or after the data could change them)."
        );
    } else if req.count_check && report.counted_while_loading {
        info!(
            tables = report.stream.tables.len(),
            "Counted every table's rows as they came in, beside the index builds."
        );
    } else if req.count_check {
        let started = std::time::Instant::now();
        report.counts = engine.count_rows(&req.admin, loaded.database(), &report.stream, cancel)?;
        info!(
            tables = report.stream.tables.len(),
            count_seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
            "Counted every table's rows."
        );
    }
    if req.count_check && !report.counts.mismatches.is_empty() && !req.ignore_errors {
        let list: Vec<String> = report.counts.mismatches.iter().map(ToString::to_string).collect();
        bail!("the restored tables do not hold the backup's rows: {}", list.join("; "));
    }
    loaded.finish(&mut report, cancel)?;
    Ok(report)
}

/// How to run a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub server: ServerOptions,
    /// Schemas to check; `None` = every non-system schema (`TABLE_SCHEMA` narrows).
    pub schemas: Option<Vec<String>>,
    /// Parallel sessions of the load (`RESTORE_JOBS`).
    pub jobs: usize,
    /// The major to verify in; `None`: the dump's source major (an upgrade rehearsal names
    /// the newest installed).
    pub server_major: Option<u32>,
}

/// What a successful verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub tables: u64,
    pub schemas: Vec<SchemaStats>,
    pub database_size: u64,
    pub restore: RestoreReport,
    /// The major of the server it ran in (where versions matter), and a note when that is not
    /// the source's (`verified in PostgreSQL 18; source 14 not installed`).
    pub server_major: Option<u32>,
    pub note: Option<String>,
}

/// Restores `sql` as `database` into the run's throwaway server (`pool`) and checks it.
///
/// # Errors
/// The server does not start, the restore fails, or no table is found.
pub fn verify_in<'a>(
    engine: &dyn Engine,
    pool: &ServerPool,
    database: &str,
    sql: Box<dyn BufRead + Send + 'a>,
    opts: &VerifyOptions,
    cancel: &Cancel,
) -> anyhow::Result<VerifyReport> {
    let (source, mut sql) = engine.source_major(sql)?;
    let major = engine.throwaway_major(opts.server_major.or(source))?;
    let mut report = pool.check_in(
        engine.kind(),
        major,
        || engine.start_server(major, &opts.server, cancel),
        |server| load_and_count(engine, server, database, &mut sql, opts, cancel),
        |server| engine.drop_database(&server.conn(), database, cancel),
    )?;
    report.server_major = major;
    report.note = note(&engine.kind(), major, source, opts.server_major.is_some());
    Ok(report)
}

/// Why the server's major is not the source's, when it is not and nobody asked for it.
fn note(kind: &EngineKind, major: Option<u32>, source: Option<u32>, asked: bool) -> Option<String> {
    let (Some(major), false) = (major, asked) else { return None };
    let product = match kind {
        EngineKind::Postgres => "PostgreSQL",
        _ => kind.name(),
    };
    match source {
        Some(s) if s != major => Some(format!("verified in {product} {major}; source {s} not installed")),
        None => Some(format!("verified in {product} {major}; the dump does not name its source's version")),
        Some(_) => None,
    }
}

/// Loads the dump into `server` (counting every table's rows against the dump's), then the
/// tables per schema and the database's size.
fn load_and_count(
    engine: &dyn Engine,
    server: &dyn Server,
    database: &str,
    sql: &mut (dyn BufRead + Send),
    opts: &VerifyOptions,
    cancel: &Cancel,
) -> anyhow::Result<VerifyReport> {
    let req = RestoreRequest {
        database: database.to_string(),
        admin: server.conn(),
        owner: None,
        ignore_errors: false,
        single_transaction: true,
        placement: Placement::Fresh,
        count_check: true,
        jobs: opts.jobs,
    };
    let restore = restore_into(engine, &req, sql, cancel).context("restoring into the verification server")?;
    let (mut schemas, database_size) = engine.schema_stats(&req.admin, database, opts.schemas.as_deref(), cancel)?;
    // Rows: the exact counts just compared with the dump (equal, or the restore failed). A
    // stream that does not name schemas (MariaDB) holds the database's own tables.
    for s in &mut schemas {
        let own = |schema: &str| schema == s.schema || (schema.is_empty() && s.schema == database);
        s.rows = restore.stream.tables.iter().filter(|t| own(&t.schema)).map(|t| t.rows).sum();
    }
    let tables: u64 = schemas.iter().map(|s| s.tables).sum();
    if tables == 0 {
        let scope = match &opts.schemas {
            Some(list) => format!("schemas {} (TABLE_SCHEMA)", list.join(", ")),
            None => "any non-system schema".to_string(),
        };
        bail!("the restored database has no tables in {scope}");
    }
    Ok(VerifyReport { tables, schemas, database_size, restore, ..VerifyReport::default() })
}

#[cfg(test)]
mod tests {
    use super::note;
    use crate::model::spec::EngineKind;

    #[test]
    fn a_note_says_why_the_server_is_not_the_sources_major() {
        let pg = EngineKind::Postgres;
        assert_eq!(note(&pg, Some(15), Some(15), false), None);
        assert_eq!(
            note(&pg, Some(18), Some(14), false).as_deref(),
            Some("verified in PostgreSQL 18; source 14 not installed")
        );
        assert!(note(&pg, Some(18), None, false).is_some_and(|n| n.contains("does not name its source")));
        assert_eq!(note(&pg, Some(18), Some(14), true), None, "asked for (a rehearsal)");
        assert_eq!(note(&EngineKind::MariaDb, None, None, false), None, "no versions");
    }
}
