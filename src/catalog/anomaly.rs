//! The anomaly guard: each new backup compared with the previous good backup of the same
//! database. A table that disappeared, a table that lost more than `BACKUP_ANOMALY_ROWS_PCT` %
//! of its rows, or a size change beyond `BACKUP_ANOMALY_SIZE_PCT` % is recorded in the new
//! backup's manifest (`Manifest::anomaly`); the run notifies at WARN, `/metrics` shows
//! `backup_anomaly`, and retention holds the baseline (`retention::plan_with_notes`).
//!
//! A dropped table or a mass `DELETE` is backed up faithfully like any other change; without
//! this guard, the rotation would push the last copy of the lost data out within days.

use crate::catalog::BackupFile;
use crate::catalog::manifest::{Anomaly, Finding, Manifest};

/// `BACKUP_ANOMALY_ROWS_PCT` and `BACKUP_ANOMALY_SIZE_PCT`; 0 disables a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A table losing more than this share of its rows (or disappearing) is an anomaly.
    pub rows_pct: u32,
    /// The dump growing or shrinking by more than this share is an anomaly.
    pub size_pct: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { rows_pct: 50, size_pct: 50 }
    }
}

/// What `current` lost or changed against `baseline`, beyond the thresholds.
pub fn compare(baseline: &Manifest, current: &Manifest, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    if t.rows_pct > 0 {
        for before in &baseline.tables {
            let found = current.tables.iter().find(|c| c.schema == before.schema && c.table == before.table);
            match found {
                None => out.push(Finding::TableDisappeared { table: before.qualified(), rows: before.rows }),
                Some(after) if baseline.rows_known && current.rows_known => {
                    let lost = before.rows.saturating_sub(after.rows);
                    if u128::from(lost) * 100 > u128::from(t.rows_pct) * u128::from(before.rows) {
                        out.push(Finding::RowsDropped {
                            table: before.qualified(),
                            before: before.rows,
                            after: after.rows,
                        });
                    }
                }
                Some(_) => {}
            }
        }
    }
    if t.size_pct > 0 {
        let (before, after) = match (baseline.uncompressed_bytes, current.uncompressed_bytes) {
            (Some(b), Some(a)) => (b, a),
            _ => (baseline.size_bytes, current.size_bytes),
        };
        if before > 0 && u128::from(before.abs_diff(after)) * 100 > u128::from(t.size_pct) * u128::from(before) {
            out.push(Finding::SizeChanged { before, after });
        }
    }
    out
}

/// The previous good backup of `current`'s database in `backups`: the newest older one that
/// is complete (its stream ended as a finished dump) and has a record to compare with.
pub fn baseline<'a>(backups: &'a [BackupFile], current: &BackupFile) -> Option<&'a BackupFile> {
    backups
        .iter()
        .filter(|b| b.core == current.core && !b.in_progress && b.sort_key() < current.sort_key())
        .filter(|b| b.manifest.as_ref().is_some_and(|m| m.complete == Some(true)))
        .max_by(|a, b| a.sort_key().cmp(&b.sort_key()))
}

/// The anomaly of `current` against the previous good backup, when there is one.
pub fn assess(backups: &[BackupFile], current: &BackupFile, t: &Thresholds) -> Option<Anomaly> {
    let base = baseline(backups, current)?;
    let findings = compare(base.manifest.as_ref()?, current.manifest.as_ref()?, t);
    (!findings.is_empty()).then(|| Anomaly { baseline: base.key().to_string(), findings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::manifest::Origin;
    use crate::stream::scan::TableData;

    fn manifest(tables: &[(&str, u64)], bytes: u64) -> Manifest {
        let mut m = Manifest::new("k", Origin::Written, bytes / 10);
        m.rows_known = true;
        m.complete = Some(true);
        m.uncompressed_bytes = Some(bytes);
        m.tables = tables
            .iter()
            .map(|(t, rows)| TableData { schema: "public".into(), table: (*t).into(), rows: *rows, bytes: 0 })
            .collect();
        m
    }

    #[test]
    fn a_dropped_table_and_a_mass_delete_are_found_and_named() {
        let before = manifest(&[("a", 1000), ("b", 1000), ("c", 10)], 100_000);
        let after = manifest(&[("a", 200), ("c", 10), ("d", 5)], 90_000);
        let found = compare(&before, &after, &Thresholds::default());
        assert_eq!(
            found,
            vec![
                Finding::RowsDropped { table: "public.a".into(), before: 1000, after: 200 },
                Finding::TableDisappeared { table: "public.b".into(), rows: 1000 },
            ]
        );
        assert_eq!(found[0].to_string(), "table public.a: 1000 → 200 rows (-80%)");
    }

    #[test]
    fn thresholds_are_exclusive_and_zero_disables() {
        let before = manifest(&[("a", 1000)], 100_000);
        let half = manifest(&[("a", 500)], 150_000);
        assert_eq!(compare(&before, &half, &Thresholds::default()), vec![], "exactly 50% is not beyond 50%");
        let t = Thresholds { rows_pct: 49, size_pct: 49 };
        assert_eq!(compare(&before, &half, &t).len(), 2);
        let off = Thresholds { rows_pct: 0, size_pct: 0 };
        assert_eq!(compare(&before, &manifest(&[], 1), &off), vec![]);
    }

    #[test]
    fn size_is_judged_both_ways_and_rows_only_when_counted() {
        let before = manifest(&[("a", 1000)], 100_000);
        let mut grown = manifest(&[("a", 10)], 400_000);
        grown.rows_known = false;
        assert_eq!(
            compare(&before, &grown, &Thresholds::default()),
            vec![Finding::SizeChanged { before: 100_000, after: 400_000 }],
            "uncounted rows (--inserts) are not compared; a table still present is fine"
        );
        let empty = manifest(&[], 0);
        assert_eq!(compare(&empty, &before, &Thresholds::default()), vec![], "a first backup of an empty database");
    }
}
