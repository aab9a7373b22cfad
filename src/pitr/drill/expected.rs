//! What a PITR drill expects from the nightly dumps: every table the newest complete dump of a
//! database (taken on the archived server, started before the drill's target) holds must be
//! in the recovered copy of that database. Two independent backups agreeing is the point: a
//! table the archive lost is caught even when every `count(*)` works.

use anyhow::bail;
use chrono::{DateTime, Utc};

use crate::catalog::BackupFile;
use crate::model::spec::{DatabaseSpec, host_key};

/// A table of the recovered cluster: its quoted name, schema and name.
pub type Table = (String, String, String);

/// A complete dump of one of the server's databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub database: String,
    pub started_at: DateTime<Utc>,
    /// The backup's file name, to name it in an error.
    pub name: String,
    /// `(schema, table)`, unquoted.
    pub tables: Vec<(String, String)>,
}

/// The complete dumps in `backups` of databases on `server` (host as the audits compare it,
/// port): each record's spec read back.
pub fn dumps_of(backups: &[BackupFile], server: &DatabaseSpec) -> Vec<Dump> {
    let port = server.port.unwrap_or(5432);
    backups
        .iter()
        .filter(|b| !b.in_progress)
        .filter_map(|b| {
            let m = b.manifest.as_ref()?;
            let spec: DatabaseSpec = m.database.as_deref()?.parse().ok()?;
            let same = host_key(&spec.host) == host_key(&server.host) && spec.port.unwrap_or(5432) == port;
            let started = DateTime::parse_from_rfc3339(m.started_at.as_deref()?).ok()?.to_utc();
            (same && m.complete == Some(true) && m.engine.as_deref().is_none_or(|e| e == "postgres")).then(|| Dump {
                database: spec.database,
                started_at: started,
                name: b.rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                tables: m.tables.iter().map(|t| (t.schema.clone(), t.table.clone())).collect(),
            })
        })
        .collect()
}

/// Fails when a table of the newest dump of `db` started before `target` is not among
/// `recovered` (quoted, schema, name).
///
/// # Errors
/// The missing tables (the first ten) and the dump they were in.
pub fn check(dumps: &[Dump], db: &str, target: DateTime<Utc>, recovered: &[Table]) -> anyhow::Result<()> {
    let Some(dump) = dumps.iter().filter(|d| d.database == db && d.started_at <= target).max_by_key(|d| d.started_at)
    else {
        return Ok(());
    };
    let here: std::collections::HashSet<(&str, &str)> =
        recovered.iter().map(|(_, s, t)| (s.as_str(), t.as_str())).collect();
    let missing: Vec<String> = dump
        .tables
        .iter()
        .filter(|(schema, table)| !here.contains(&(schema.as_str(), table.as_str())))
        .map(|(schema, table)| format!("{schema}.{table}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "database {db}: {} table(s) of the newest dump before the target ({}) are missing from the recovered cluster: {}{}",
            missing.len(),
            dump.name,
            missing.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
            if missing.len() > 10 { ", …" } else { "" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z").unwrap().to_utc() + chrono::Duration::hours(hour)
    }

    fn dump(db: &str, hour: i64, tables: &[&str]) -> Dump {
        Dump {
            database: db.into(),
            started_at: at(hour),
            name: format!("localhost-{db}_{hour}.sql.gz"),
            tables: tables.iter().map(|t| ("public".to_string(), t.to_string())).collect(),
        }
    }

    fn recovered(tables: &[&str]) -> Vec<Table> {
        tables.iter().map(|t| (format!("public.{t}"), "public".into(), t.to_string())).collect()
    }

    #[test]
    fn the_newest_dump_before_the_target_names_the_tables_that_must_be_there() {
        let dumps = [dump("app", 1, &["a", "b"]), dump("app", 5, &["a", "b", "c"]), dump("other", 2, &["x"])];
        assert!(check(&dumps, "app", at(3), &recovered(&["a", "b"])).is_ok(), "the dump at 5 is after the target");
        let e = check(&dumps, "app", at(6), &recovered(&["a", "b"])).unwrap_err().to_string();
        assert!(e.contains("public.c") && e.contains("localhost-app_5.sql.gz") && e.contains("database app"), "{e}");
        assert!(check(&dumps, "app", at(0), &[]).is_ok(), "no dump before the target: nothing expected");
        assert!(check(&dumps, "fresh", at(9), &[]).is_ok(), "a database never dumped");
        let quoted = [("odd\nname".to_string(), "public".to_string(), "odd\nname".to_string())];
        assert!(check(&[dump("app", 1, &["odd\nname"])], "app", at(2), &quoted).is_ok(), "names are data");
    }
}
