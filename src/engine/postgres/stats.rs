//! Figures of a restored database: tables per schema (every non-system schema unless
//! narrowed) and its size.

use super::{PostgresEngine, quote_literal};
use crate::engine::Conn;
use crate::model::stats::SchemaStats;
use crate::system::cancel::Cancel;

/// Tables per schema (rows left 0: the workflow fills them from the counts it compared) and
/// the database's size.
///
/// # Errors
/// The queries failed.
pub fn schema_stats(
    engine: &PostgresEngine,
    conn: &Conn,
    database: &str,
    schemas: Option<&[String]>,
    cancel: &Cancel,
) -> anyhow::Result<(Vec<SchemaStats>, u64)> {
    // The last line is the database size; the lines before it, tables per schema.
    let stats = stats_query(schemas);
    let out = engine.queries(conn, database, &[&stats, "SELECT pg_database_size(current_database())"], cancel)?;
    Ok(match out.trim_end().rsplit_once('\n') {
        Some((stats, size)) => (parse_stats(stats), size.trim().parse().unwrap_or(0)),
        None => (Vec::new(), out.trim().parse().unwrap_or(0)),
    })
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
