//! PostgreSQL verification: restore into a throwaway server (which counts every table's rows
//! and compares them with the dump's), then count tables per schema (every non-system schema
//! unless narrowed) and measure the size.

use std::io::BufRead;

use anyhow::{Context, bail};

use super::server::Throwaway;
use super::{PostgresEngine, quote_literal, restore};
use crate::engine::{Placement, RestoreRequest, SchemaStats, VerifyOptions, VerifyReport};
use crate::stream::scan::postgres::header::HeaderFilter;
use crate::system::cancel::Cancel;

pub fn run(
    engine: &PostgresEngine,
    database: &str,
    sql: &mut (dyn BufRead + Send),
    opts: &VerifyOptions,
    cancel: &Cancel,
) -> anyhow::Result<VerifyReport> {
    // The dump's source major, from its header: verified in a server of that major, else the
    // nearest higher one installed (`bin`).
    let mut sql = HeaderFilter::new(sql, u32::MAX);
    let source = sql.read_ahead().context("reading the backup")?.source_major;
    let (_, major) = super::server_bin_dir(&engine.options, opts.server_major.or(source))?;
    // The run's server of that major, shared with its other databases; this one is dropped
    // after its check.
    let drop_db = format!("DROP DATABASE {} WITH (FORCE)", super::quote_ident(database));
    let mut report = opts.pool.check_in(
        major,
        || Throwaway::start(&engine.options, opts, Some(major), cancel),
        |server| load_and_count(engine, server, database, &mut sql, opts, cancel),
        |server| engine.queries(&server.conn(), super::swap::MAINTENANCE_DB, &[&drop_db], cancel).map(drop),
    )?;
    report.server_major = Some(major);
    report.note = match (opts.server_major, source) {
        (Some(_), _) => None,
        (None, Some(s)) if s != major => Some(format!("verified in PostgreSQL {major}; source {s} not installed")),
        (None, None) => Some(format!("verified in PostgreSQL {major}; the dump does not name its source's version")),
        (None, Some(_)) => None,
    };
    Ok(report)
}

/// Loads the dump into `server` (counting every table's rows against the dump's), then the
/// tables per schema and the database's size.
fn load_and_count(
    engine: &PostgresEngine,
    server: &Throwaway,
    database: &str,
    sql: &mut (dyn BufRead + Send),
    opts: &VerifyOptions,
    cancel: &Cancel,
) -> anyhow::Result<VerifyReport> {
    let admin = server.conn();
    let req = RestoreRequest {
        database: database.to_string(),
        admin: admin.clone(),
        owner: None,
        ignore_errors: false,
        single_transaction: true,
        placement: Placement::Fresh,
        count_check: true,
        jobs: opts.jobs,
    };
    let restore = restore::run(engine, &req, sql, cancel).context("restoring into the verification server")?;
    // The last line is the database size; the lines before it, tables per schema.
    let stats = stats_query(opts.schemas.as_deref());
    let out = engine.queries(&admin, database, &[&stats, "SELECT pg_database_size(current_database())"], cancel)?;
    let (database_size, mut schemas) = match out.trim_end().rsplit_once('\n') {
        Some((stats, size)) => (size.trim().parse().unwrap_or(0), parse_stats(stats)),
        None => (out.trim().parse().unwrap_or(0), Vec::new()),
    };
    // Rows: the exact counts just compared with the dump (equal, or the restore failed).
    for s in &mut schemas {
        s.rows = restore.stream.tables.iter().filter(|t| t.schema == s.schema).map(|t| t.rows).sum();
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

/// Tables per schema, system schemas excluded.
pub fn stats_query(schemas: Option<&[String]>) -> String {
    let filter = match schemas {
        Some(list) => {
            format!(" AND n.nspname IN ({})", list.iter().map(|s| quote_literal(s)).collect::<Vec<_>>().join(", "))
        }
        None => String::new(),
    };
    format!(
        "SELECT n.nspname, count(*), 0 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'{filter} \
         GROUP BY 1 ORDER BY 1"
    )
}

fn parse_stats(out: &str) -> Vec<SchemaStats> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            Some(SchemaStats {
                schema: f.next()?.to_string(),
                tables: f.next()?.parse().ok()?,
                rows: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parsing_and_schema_filter() {
        let s = parse_stats("public|3|1200\nsales|1|50\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], SchemaStats { schema: "public".into(), tables: 3, rows: 1200 });
        let q = stats_query(Some(&["public".to_string(), "o'x".to_string()]));
        assert!(q.contains("n.nspname IN ('public', 'o''x')"), "{q}");
        assert!(!stats_query(None).contains(" IN ('public"));
    }
}
