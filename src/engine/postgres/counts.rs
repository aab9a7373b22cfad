//! Exact row counts of restored tables, compared with the rows the dump stream held.
//!
//! The catalog picks the tables that exist (a missing one reads as not found instead of failing
//! the rest), and their `count(*)` run in batches, each its own transaction (`count_query`). `ONLY`, because inherited children have
//! their own COPY blocks; a partitioned table (its data loaded through the root with
//! `--load-via-partition-root`) is counted with its partitions. Row-level security is off for
//! the count: a policy that would hide rows makes the count fail instead of lie.

use std::io::Cursor;

use anyhow::Context;

use super::{PostgresEngine, quote_literal};
use crate::cancel::Cancel;
use crate::engine::load::{CountCheck, compare, uncountable};
use crate::engine::{Conn, process};
use crate::scan::{Summary, TableData};

/// Counts each of `summary`'s tables in `database` and compares.
///
/// # Errors
/// The count query fails (permissions, row-level security without BYPASSRLS).
pub fn check(
    engine: &PostgresEngine,
    conn: &Conn,
    database: &str,
    summary: &Summary,
    cancel: &Cancel,
) -> anyhow::Result<CountCheck> {
    if let Some(why) = uncountable(summary) {
        return Ok(CountCheck::skipped(why));
    }
    let mut cmd = engine.psql(conn, database);
    cmd.args(["-v", "ON_ERROR_STOP=1", "-F", "|", "-f", "-"]);
    let sql = count_query(&summary.tables);
    let fed = process::feed_stdin(cmd, "psql (row counts)", &mut Cursor::new(sql.into_bytes()), cancel)
        .context("counting the restored tables' rows (RESTORE_COUNT_CHECK=false skips this)")?;
    let mut found = vec![None; summary.tables.len()];
    for line in fed.stdout.lines() {
        if let Some((i, n)) = line.split_once('|')
            && let (Ok(i), Ok(n)) = (i.trim().parse::<usize>(), n.trim().parse::<u64>())
            && i < found.len()
        {
            found[i] = Some(n);
        }
    }
    Ok(compare(&summary.tables, &found))
}

/// Tables per counting statement: each statement is its own transaction, so it holds at most
/// this many tables' locks (the lock table has room for `max_locks_per_transaction` ×
/// connections, 6 400 by default), and a database of thousands of tables or partitions is
/// counted in a few dozen round trips of one session.
const BATCH: usize = 200;

/// One psql script: the catalog says which tables exist and builds one `count(*)` statement
/// per `BATCH` of them, which `\gexec` runs one after the other. Plain SQL only: no optional
/// server feature (`query_to_xml` needs libxml, which some builds lack).
fn count_query(tables: &[TableData]) -> String {
    let values: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("({i}, {}, {})", quote_literal(&t.schema), quote_literal(&t.table)))
        .collect();
    format!(
        "SET row_security = off;\n\
         SELECT string_agg(format('SELECT %s, count(*) FROM %s %I.%I', v.i, \
         CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY' END, v.s, v.t), ' UNION ALL ') \
         FROM (VALUES {}) AS v(i, s, t) \
         JOIN pg_catalog.pg_namespace n ON n.nspname = v.s \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.t AND c.relkind IN ('r', 'p', 'f', 'm') \
         GROUP BY v.i / {BATCH} ORDER BY v.i / {BATCH}\n\\gexec\n",
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_quotes_names() {
        let t = TableData { schema: "s'x".into(), table: "Tåble".into(), rows: 1, bytes: 1 };
        let q = count_query(&[t]);
        assert!(q.contains("(0, 's''x', 'Tåble')"), "{q}");
        assert!(q.starts_with("SET row_security = off;"));
        assert!(q.ends_with("\\gexec\n") && !q.contains("xml"), "{q}");
    }
}
