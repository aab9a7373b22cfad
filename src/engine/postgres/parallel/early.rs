//! Row counts beside the post-data builds: once the splitter has sent every table's rows
//! (`wire::DataSent`), a thread of our own counts each table as soon as the sessions that
//! load it have finished its rows — while other tables load and indexes build — instead of
//! after the whole load. One table per statement (`counts::count_each`): the counting session
//! holds one table's lock at a time and waits for none while holding it, so it cannot
//! deadlock with the builds. The counts are used only when the splitter found nothing after
//! the data that may change rows (`Plan::rows_final_after_data`); else the restore counts at
//! the end as before.

use std::sync::mpsc::Receiver;

use tracing::debug;

use super::super::{PostgresEngine, counts};
use super::wire::DataSent;
use crate::engine::Conn;
use crate::engine::load::{CountCheck, compare, uncountable};
use crate::stream::scan::postgres::parse_qualified;
use crate::stream::scan::{Summary, TableData};

/// Each table (schema and name, unquoted) with its rows as counted (`None`: not found).
pub type Counted = Vec<(TableData, Option<u64>)>;

/// Waits for the splitter's word, then counts; `None` when the data never all went out, a
/// session failed, or a count failed (the restore then counts at the end, and reports).
pub fn count(engine: &PostgresEngine, conn: &Conn, database: &str, sent: &Receiver<DataSent>) -> Option<Counted> {
    let sent = sent.recv().ok()?;
    let tables: Vec<TableData> = sent
        .tables
        .iter()
        .map(|(copy, _)| {
            let (schema, table) = parse_qualified(&String::from_utf8_lossy(copy));
            TableData { schema, table, rows: 0, bytes: 0 }
        })
        .collect();
    let ready = |i: usize| {
        for (progress, unit) in &sent.tables[i].1 {
            progress.wait(*unit, &sent.cancel)?;
        }
        Ok(())
    };
    let started = std::time::Instant::now();
    match counts::count_each(engine, conn, database, &tables, &ready, &sent.cancel) {
        Ok(found) => {
            debug!(
                tables = tables.len(),
                seconds = started.elapsed().as_secs_f64(),
                "Counted each table as its rows came in."
            );
            Some(tables.into_iter().zip(found).collect())
        }
        Err(e) => {
            debug!(error = %format!("{e:#}"), "The counts beside the load stopped; the restore counts at the end.");
            None
        }
    }
}

/// The count check of the whole stream from the counts taken beside the load; `None` when a
/// table of the stream was not counted there (or the stream's rows cannot be compared).
pub fn check(stream: &Summary, counted: &Counted) -> Option<CountCheck> {
    if uncountable(stream).is_some() {
        return None;
    }
    // By name: thousands of tables are looked up in a map, not one list search each.
    let by_name: std::collections::HashMap<(&str, &str), Option<u64>> =
        counted.iter().map(|(c, n)| ((c.schema.as_str(), c.table.as_str()), *n)).collect();
    let found = stream
        .tables
        .iter()
        .map(|t| by_name.get(&(t.schema.as_str(), t.table.as_str())).copied())
        .collect::<Option<Vec<Option<u64>>>>()?;
    Some(compare(&stream.tables, &found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str, rows: u64) -> TableData {
        TableData { schema: schema.into(), table: name.into(), rows, bytes: 0 }
    }

    #[test]
    fn the_stream_is_judged_by_the_counts_taken_beside_the_load() {
        let stream = Summary {
            tables: vec![table("public", "a", 3), table("Ünï sch", "T \"q\"", 2)],
            rows_known: true,
            ..Summary::default()
        };
        let counted = vec![(table("Ünï sch", "T \"q\"", 0), Some(2)), (table("public", "a", 0), Some(3))];
        let c = check(&stream, &counted).unwrap();
        assert!(c.mismatches.is_empty() && c.tables == 2 && c.rows == 5, "{c:?}");
        let fewer = vec![(table("public", "a", 0), Some(1)), (table("Ünï sch", "T \"q\"", 0), Some(2))];
        assert_eq!(check(&stream, &fewer).unwrap().mismatches.len(), 1, "a real count that differs is a mismatch");
        let gone = vec![(table("public", "a", 0), None), (table("Ünï sch", "T \"q\"", 0), Some(2))];
        assert_eq!(check(&stream, &gone).unwrap().mismatches.len(), 1, "a table not found is a mismatch");
        assert!(
            check(&stream, &counted[..1].to_vec()).is_none(),
            "a table not counted beside the load: count at the end"
        );
        let inserts = Summary { rows_known: false, ..stream.clone() };
        assert!(check(&inserts, &counted).is_none());
    }

    #[test]
    fn copy_names_become_the_streams_names() {
        let (schema, table) = parse_qualified("\"Ünï sch\".\"T \"\"q\"\"\" (id) FROM stdin;");
        assert_eq!((schema.as_str(), table.as_str()), ("Ünï sch", "T \"q\""));
    }
}
