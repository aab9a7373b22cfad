//! Exact row counts of restored tables, compared with the rows the dump stream held.
//!
//! Through one libpq session of our own (`pq`), no psql. The catalog picks the tables that exist (a missing one reads as not found instead of failing
//! the rest), and their `count(*)` run in batches, each its own transaction (`count_query`). `ONLY`, because inherited children have
//! their own COPY blocks; a partitioned table (its data loaded through the root with
//! `--load-via-partition-root`) is counted with its partitions. Row-level security is off for
//! the count: a policy that would hide rows makes the count fail instead of lie.

use anyhow::Context;

use super::{PostgresEngine, quote_literal};
use crate::engine::Conn;
use crate::engine::load::{CountCheck, compare, uncountable};
use crate::stream::scan::{Summary, TableData};
use crate::system::cancel::Cancel;

/// Counts each of `summary`'s tables in `database` and compares, in one session of our own.
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
    let mut session = engine.session(conn, database, "-c client_min_messages=warning").context(WHAT)?;
    let _watch = session.watch(cancel);
    let mut found = vec![None; summary.tables.len()];
    for statement in count_statements(&summary.tables, BATCH) {
        cancel.check()?;
        run(&mut session, &statement, &mut found)?;
    }
    Ok(compare(&summary.tables, &found))
}

/// Counts each of `tables` once `ready(i)` returns (its rows are in), one table per
/// statement: the session then holds one table's lock at a time and waits for none while
/// holding it, so it can never deadlock with index builds running beside it. No parallel
/// workers: the counts run beside the load's sessions, whose cores they would take.
///
/// # Errors
/// A count query fails, or `ready` was interrupted.
pub fn count_each(
    engine: &PostgresEngine,
    conn: &Conn,
    database: &str,
    tables: &[TableData],
    ready: &dyn Fn(usize) -> Result<(), crate::system::cancel::Interrupted>,
    cancel: &Cancel,
) -> anyhow::Result<Vec<Option<u64>>> {
    let mut session = engine
        .session(conn, database, "-c client_min_messages=warning -c max_parallel_workers_per_gather=0")
        .context(WHAT)?;
    let _watch = session.watch(cancel);
    let mut found = vec![None; tables.len()];
    let statements = count_statements(tables, 1);
    let (setup, counts) = statements.split_at(SETUP);
    for statement in setup {
        run(&mut session, statement, &mut found)?;
    }
    for (i, statement) in counts.iter().enumerate() {
        ready(i)?;
        cancel.check()?;
        run(&mut session, statement, &mut found)?;
    }
    Ok(found)
}

const WHAT: &str = "counting the restored tables' rows (RESTORE_COUNT_CHECK=false skips this)";

/// Runs one counting statement; each row it returns is (table number, rows).
fn run(
    session: &mut crate::engine::postgres::pq::Session,
    statement: &str,
    found: &mut [Option<u64>],
) -> anyhow::Result<()> {
    for row in session.query(statement).map_err(|e| anyhow::anyhow!("{e}")).context(WHAT)? {
        if let [Some(i), Some(n)] = row.as_slice()
            && let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<u64>())
            && i < found.len()
        {
            found[i] = Some(n);
        }
    }
    Ok(())
}

/// Tables per counting statement: each statement is its own transaction, so it holds at most
/// this many tables' locks (the lock table has room for `max_locks_per_transaction` ×
/// connections, 6 400 by default), and a database of thousands of tables or partitions is
/// counted in a few dozen statements of one session.
const BATCH: usize = 200;

/// Counts one table, by the dynamic SQL that plain SQL cannot do. A temporary function: it
/// lives in the session's own schema and is gone with the session; PL/pgSQL is in every
/// database. No optional server feature (the former `query_to_xml` needed libxml, which some
/// builds lack). Measured on 15 against that one statement for all tables: 0.05-0.08 s vs
/// 0.08 s for 500 tables, 0.20-0.25 s vs 0.26 s for 5 000 (`\gexec` of `UNION ALL`
/// batches took 0.14 s and 0.80 s).
const COUNT_FUNCTION: &str = "CREATE FUNCTION pg_temp.bc_count(r regclass, k \"char\") RETURNS bigint \
    LANGUAGE plpgsql AS $bc$ DECLARE n bigint; BEGIN \
    EXECUTE format('SELECT count(*) FROM %s %s', CASE WHEN k = 'p' THEN '' ELSE 'ONLY' END, r) INTO n; \
    RETURN n; END $bc$";

/// The statements before the counts (row security off, the function).
const SETUP: usize = 2;

/// The statements, in order: row security off, the function, then one query per `batch`
/// tables that finds each in the catalog (a missing table returns no row) and counts it.
fn count_statements(tables: &[TableData], batch: usize) -> Vec<String> {
    let mut statements = vec!["SET row_security = off".to_string(), COUNT_FUNCTION.to_string()];
    let numbered: Vec<(usize, &TableData)> = tables.iter().enumerate().collect();
    for batch in numbered.chunks(batch.max(1)) {
        let values: Vec<String> = batch
            .iter()
            .map(|(i, t)| format!("({i}, {}, {})", quote_literal(&t.schema), quote_literal(&t.table)))
            .collect();
        statements.push(format!(
            "SELECT v.i, pg_temp.bc_count(c.oid, c.relkind) FROM (VALUES {}) AS v(i, s, t) \
             JOIN pg_catalog.pg_namespace n ON n.nspname = v.s \
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.t \
             AND c.relkind IN ('r', 'p', 'f', 'm')",
            values.join(", ")
        ));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_quotes_names() {
        let t = TableData { schema: "s'x".into(), table: "Tåble".into(), rows: 1, bytes: 1 };
        let q = count_statements(&[t], BATCH).join(";\n");
        assert!(q.contains("(0, 's''x', 'Tåble')"), "{q}");
        assert!(q.starts_with("SET row_security = off;"));
        assert!(!q.contains("xml"), "{q}");
        let many: Vec<TableData> =
            (0..450).map(|i| TableData { schema: "s".into(), table: format!("t{i}"), rows: 1, bytes: 1 }).collect();
        assert_eq!(
            count_statements(&many, BATCH).iter().filter(|s| s.starts_with("SELECT v.i")).count(),
            3,
            "batches of 200"
        );
    }
}
