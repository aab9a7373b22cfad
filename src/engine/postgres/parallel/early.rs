//! Row counts beside the post-data builds: once the splitter has sent every table's rows
//! (`wire::DataSent`), a thread of our own counts each table as soon as the sessions that
//! load it have finished its rows — while other tables load and indexes build — instead of
//! after the whole load. One table per statement (`counts::count_each`): the counting session
//! holds one table's lock at a time and waits for none while holding it, so it cannot
//! deadlock with the builds. When nothing before the data can make a table hold other rows
//! than what the server stored from its COPYs (`Plan::replies_exact`, `rows::keeps_replies`),
//! the server's replies to those COPYs (`COPY n`, summed per table) are the counts, and no
//! table is read again; a COPY that failed sends it back to counting. Either way the counts
//! are used only when the splitter found nothing after the data that may change rows
//! (`Plan::rows_final_after_data`); else the restore counts at the end as before.

use std::sync::mpsc::Receiver;

use tracing::debug;

use super::super::{PostgresEngine, counts};
use super::lanes::Replies;
use super::wire::DataSent;
use crate::engine::Conn;
use crate::engine::load::{CountCheck, compare, uncountable};
use crate::stream::scan::postgres::parse_qualified;
use crate::stream::scan::{Summary, TableData};

/// Each table (schema and name, unquoted) with its rows as counted (`None`: not found), and
/// whether they are the server's replies to the COPYs (no table was read again).
#[derive(Debug, Clone, Default)]
pub struct Counted {
    pub tables: Vec<(TableData, Option<u64>)>,
    pub from_replies: bool,
}

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
    if let Some(replies) = &sent.replies {
        for i in 0..tables.len() {
            ready(i).ok()?;
        }
        if let Some(found) = from_replies(&sent.tables, replies) {
            return Some(Counted { tables: tables.into_iter().zip(found).collect(), from_replies: true });
        }
        debug!("A COPY failed: its table's rows are counted.");
    }
    let started = std::time::Instant::now();
    match counts::count_each(engine, conn, database, &tables, &ready, &sent.cancel) {
        Ok(found) => {
            debug!(
                tables = tables.len(),
                seconds = started.elapsed().as_secs_f64(),
                "Counted each table as its rows came in."
            );
            Some(Counted { tables: tables.into_iter().zip(found).collect(), from_replies: false })
        }
        Err(e) => {
            debug!(error = %format!("{e:#}"), "The counts beside the load stopped; the restore counts at the end.");
            None
        }
    }
}

/// Each table's rows as the server's replies to its COPYs say; `None` when one of a table's
/// COPYs failed or none replied (its rows are then counted).
fn from_replies(tables: &[(Vec<u8>, super::wire::Waits)], replies: &Replies) -> Option<Vec<Option<u64>>> {
    let replies = replies.lock().ok()?;
    tables.iter().map(|(copy, _)| replies.get(copy).copied().flatten().map(Some)).collect()
}

/// The count check of the whole stream from the counts taken beside the load; `None` when a
/// table of the stream was not counted there (or the stream's rows cannot be compared).
pub fn check(stream: &Summary, counted: &Counted) -> Option<CountCheck> {
    if uncountable(stream).is_some() {
        return None;
    }
    // By name: thousands of tables are looked up in a map, not one list search each.
    let by_name: std::collections::HashMap<(&str, &str), Option<u64>> =
        counted.tables.iter().map(|(c, n)| ((c.schema.as_str(), c.table.as_str()), *n)).collect();
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
        let of = |tables: Vec<(TableData, Option<u64>)>| Counted { tables, from_replies: false };
        let counted = of(vec![(table("Ünï sch", "T \"q\"", 0), Some(2)), (table("public", "a", 0), Some(3))]);
        let c = check(&stream, &counted).unwrap();
        assert!(c.mismatches.is_empty() && c.tables == 2 && c.rows == 5, "{c:?}");
        let fewer = of(vec![(table("public", "a", 0), Some(1)), (table("Ünï sch", "T \"q\"", 0), Some(2))]);
        assert_eq!(check(&stream, &fewer).unwrap().mismatches.len(), 1, "a real count that differs is a mismatch");
        let gone = of(vec![(table("public", "a", 0), None), (table("Ünï sch", "T \"q\"", 0), Some(2))]);
        assert_eq!(check(&stream, &gone).unwrap().mismatches.len(), 1, "a table not found is a mismatch");
        assert!(
            check(&stream, &of(counted.tables[..1].to_vec())).is_none(),
            "a table not counted beside the load: count at the end"
        );
        let inserts = Summary { rows_known: false, ..stream.clone() };
        assert!(check(&inserts, &counted).is_none());
    }

    /// The replies summed per table are its rows; a table with a failed COPY, or none that
    /// replied, is counted instead (the whole set then is).
    #[test]
    fn the_servers_replies_are_the_counts_unless_a_copy_failed() {
        let replies = Replies::default();
        super::super::lanes::add_reply(&replies, b"public.a", Some(2));
        super::super::lanes::add_reply(&replies, b"public.a", Some(3));
        super::super::lanes::add_reply(&replies, b"\"B\"", Some(0));
        let tables = |names: &[&[u8]]| names.iter().map(|n| (n.to_vec(), Vec::new())).collect::<Vec<_>>();
        assert_eq!(from_replies(&tables(&[b"public.a", b"\"B\""]), &replies), Some(vec![Some(5), Some(0)]));
        assert_eq!(from_replies(&tables(&[b"public.a", b"public.c"]), &replies), None, "no reply: count");
        super::super::lanes::add_reply(&replies, b"public.a", None);
        super::super::lanes::add_reply(&replies, b"public.a", Some(1));
        assert_eq!(from_replies(&tables(&[b"public.a"]), &replies), None, "a failed COPY: count");
        super::super::lanes::add_reply(&replies, b"big", Some(u64::MAX));
        super::super::lanes::add_reply(&replies, b"big", Some(1));
        assert_eq!(from_replies(&tables(&[b"big"]), &replies), None, "a sum past u64: count, never wrap");
    }

    #[test]
    fn copy_names_become_the_streams_names() {
        let (schema, table) = parse_qualified("\"Ünï sch\".\"T \"\"q\"\"\" (id) FROM stdin;");
        assert_eq!((schema.as_str(), table.as_str()), ("Ünï sch", "T \"q\""));
    }
}
