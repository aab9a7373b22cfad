//! Exact row counts of restored tables, compared with the rows the dump stream held.
//!
//! Through one libpq session of our own (`pq`), no psql, and plain SQL only: the catalog says
//! which tables exist and which are partitioned (`lookup`; a missing one reads as not found
//! instead of failing the rest), then each is counted by a plain `SELECT count(*)` built from
//! its name (`counts`). No function, no temporary object, no optional server feature: it works
//! on any build (the former `query_to_xml` needed libxml) and for a role that may not create
//! temporary objects. `ONLY`, because inherited children have their own COPY blocks; a
//! partitioned table (its data loaded through the root with `--load-via-partition-root`) is
//! counted with its partitions. Row-level security is off for the count: a policy that would
//! hide rows makes the count fail instead of lie.

use anyhow::Context;

use super::{PostgresEngine, quote_ident, quote_literal};
use crate::engine::Conn;
use crate::engine::load::{CountCheck, compare, uncountable};
use crate::engine::postgres::pq::Session;
use crate::stream::scan::{Summary, TableData};
use crate::system::cancel::Cancel;

/// Counts each of `summary`'s tables in `database` and compares, in one session of our own:
/// per batch of tables, one catalog lookup and one text of their counts (two round trips).
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
    run(&mut session, NO_ROW_SECURITY, &mut [])?;
    let mut found = vec![None; summary.tables.len()];
    let numbered: Vec<(usize, &TableData)> = summary.tables.iter().enumerate().collect();
    for batch in numbered.chunks(BATCH) {
        cancel.check()?;
        let found_kinds = kinds(&mut session, batch)?;
        let statements: Vec<String> =
            batch.iter().zip(&found_kinds).filter_map(|((i, t), k)| Some(count(*i, t, (*k)?))).collect();
        if !statements.is_empty() {
            run(&mut session, &statements.join(";\n"), &mut found)?;
        }
    }
    Ok(compare(&summary.tables, &found))
}

/// Counts each of `tables` once `ready(i)` returns (its rows are in), one table per
/// statement: the session then holds one table's lock at a time and waits for none while
/// holding it, so it can never deadlock with index builds running beside it. The catalog is
/// read per batch of tables when the first of them is ready (the data comes after every table
/// was created); a table it did not find is looked up again when its turn comes. No parallel
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
    run(&mut session, NO_ROW_SECURITY, &mut [])?;
    let mut found = vec![None; tables.len()];
    let numbered: Vec<(usize, &TableData)> = tables.iter().enumerate().collect();
    for batch in numbered.chunks(BATCH) {
        let mut looked_up = None;
        for (n, &(i, table)) in batch.iter().enumerate() {
            ready(i)?;
            cancel.check()?;
            let batch_kinds = match &looked_up {
                Some(found) => found,
                None => looked_up.insert(kinds(&mut session, batch)?),
            };
            let kind = match batch_kinds[n] {
                Some(kind) => Some(kind),
                None => kinds(&mut session, &[(i, table)])?[0],
            };
            if let Some(kind) = kind {
                run(&mut session, &count(i, table, kind), &mut found)?;
            }
        }
    }
    Ok(found)
}

const WHAT: &str = "counting the restored tables' rows (RESTORE_COUNT_CHECK=false skips this)";

const NO_ROW_SECURITY: &str = "SET row_security = off";

/// Tables per batch: a batch's counts run as one text, one implicit transaction, so it holds
/// at most this many tables' locks (the lock table has room for `max_locks_per_transaction` ×
/// connections, 6 400 by default), and a database of thousands of tables or partitions is
/// counted in a few dozen round trips.
const BATCH: usize = 200;

/// Runs one text; each row it returns is (table number, rows).
fn run(session: &mut Session, sql: &str, found: &mut [Option<u64>]) -> anyhow::Result<()> {
    for row in session.query(sql).map_err(|e| anyhow::anyhow!("{e}")).context(WHAT)? {
        if let [Some(i), Some(n)] = row.as_slice()
            && let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<u64>())
            && i < found.len()
        {
            found[i] = Some(n);
        }
    }
    Ok(())
}

/// Each of `batch`'s tables' kind as the catalog says (`p`: partitioned), `None` when the
/// database has no such table.
fn kinds(session: &mut Session, batch: &[(usize, &TableData)]) -> anyhow::Result<Vec<Option<char>>> {
    let mut kinds = vec![None; batch.len()];
    for row in session.query(&lookup(batch)).map_err(|e| anyhow::anyhow!("{e}")).context(WHAT)? {
        if let [Some(n), Some(kind)] = row.as_slice()
            && let Ok(n) = n.parse::<usize>()
            && n < kinds.len()
        {
            kinds[n] = kind.chars().next();
        }
    }
    Ok(kinds)
}

/// The catalog query for `batch`: (position in the batch, relkind) of each table that exists.
fn lookup(batch: &[(usize, &TableData)]) -> String {
    let values: Vec<String> = batch
        .iter()
        .enumerate()
        .map(|(n, (_, t))| format!("({n}, {}, {})", quote_literal(&t.schema), quote_literal(&t.table)))
        .collect();
    format!(
        "SELECT v.n, c.relkind FROM (VALUES {}) AS v(n, s, t) \
         JOIN pg_catalog.pg_namespace ns ON ns.nspname = v.s \
         JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = v.t \
         AND c.relkind IN ('r', 'p', 'f', 'm')",
        values.join(", ")
    )
}

/// The count of table number `i`, from the same name the catalog found: `ONLY` unless it is
/// partitioned.
fn count(i: usize, table: &TableData, kind: char) -> String {
    let only = if kind == 'p' { "" } else { "ONLY " };
    format!("SELECT {i}, count(*) FROM {only}{}.{}", quote_ident(&table.schema), quote_ident(&table.table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> TableData {
        TableData { schema: schema.into(), table: name.into(), rows: 1, bytes: 1 }
    }

    #[test]
    fn names_are_quoted_as_literals_and_identifiers() {
        let t = table("s'x", "Tå\"ble");
        let q = lookup(&[(7, &t)]);
        assert!(q.contains("(0, 's''x', 'Tå\"ble')"), "{q}");
        assert!(!q.contains("xml") && !q.contains("pg_temp"), "{q}");
        assert_eq!(count(7, &t, 'r'), "SELECT 7, count(*) FROM ONLY \"s'x\".\"Tå\"\"ble\"");
        assert_eq!(
            count(3, &t, 'p'),
            "SELECT 3, count(*) FROM \"s'x\".\"Tå\"\"ble\"",
            "a partitioned table with its partitions"
        );
    }
}
