//! What the backups of one database prove, read from their manifests after every job: the
//! rows and tables of the newest backup, whether it is an anomaly, when the newest verified
//! backup was taken (the recovery point actually held) and how long the last verification
//! restore took (the recovery time measured). `state` renders them; RPO/RTO targets are
//! judged here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::BackupFile;

/// One database's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// Rows in the newest complete backup (when the dump's rows are counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_tables: Option<u64>,
    /// The anomaly guard's findings on the newest backup (empty: none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomaly: Vec<String>,
    /// When the newest backup whose last verification passed was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_verified_backup_at: Option<DateTime<Utc>>,
    /// How long the most recent verification restore took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verification_seconds: Option<f64>,
    /// Whether the most recent upgrade rehearsal (`VERIFY_UPGRADE`) loaded, and into which
    /// PostgreSQL major.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_rehearsal_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upgrade_rehearsal_major: Option<u32>,
    /// The backups on disk, oldest first (at most `HISTORY`), for the status page's charts.
    #[serde(skip)]
    pub history: Vec<Point>,
}

/// One backup on disk, as the status page draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub bytes: u64,
    pub rows: Option<u64>,
    /// How long its dump took (manifest start to end).
    pub seconds: Option<f64>,
    /// Cut short, or flagged by the anomaly guard.
    pub bad: bool,
}

/// Backups drawn per database.
pub const HISTORY: usize = 60;

impl Evidence {
    /// The evidence of the backups of `core` in `backups`.
    pub fn of(core: &str, backups: &[BackupFile]) -> Evidence {
        let mine: Vec<&BackupFile> = backups.iter().filter(|b| b.core == core && !b.in_progress).collect();
        let mut e = Evidence::default();
        if let Some(newest) =
            mine.iter().filter(|b| !b.known_incomplete()).max_by(|a, b| a.sort_key().cmp(&b.sort_key()))
            && let Some(m) = &newest.manifest
        {
            e.newest_rows = m.rows();
            e.newest_tables = m.complete.is_some().then_some(m.tables.len() as u64);
            e.anomaly = m.anomaly.iter().flat_map(|a| a.findings.iter().map(ToString::to_string)).collect();
        }
        e.newest_verified_backup_at =
            mine.iter().filter(|b| b.verified()).max_by(|a, b| a.sort_key().cmp(&b.sort_key())).map(|b| taken_at(b));
        e.last_verification_seconds = mine
            .iter()
            .filter_map(|b| b.manifest.as_ref()?.last_verification())
            .max_by(|a, b| a.verified_at.cmp(&b.verified_at))
            .map(|v| v.duration_ms as f64 / 1000.0);
        let rehearsal = mine
            .iter()
            .filter_map(|b| b.manifest.as_ref()?.upgrade_rehearsals.last())
            .max_by(|a, b| a.verified_at.cmp(&b.verified_at));
        e.last_upgrade_rehearsal_ok = rehearsal.map(|r| r.ok);
        e.last_upgrade_rehearsal_major = rehearsal.and_then(|r| r.server_major);
        let mut sorted = mine.clone();
        sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        e.history = sorted[sorted.len().saturating_sub(HISTORY)..]
            .iter()
            .map(|b| {
                let m = b.manifest.as_ref();
                let seconds = m.and_then(|m| {
                    let at = |t: Option<&str>| DateTime::parse_from_rfc3339(t?).ok();
                    Some((at(m.finished_at.as_deref())? - at(m.started_at.as_deref())?).as_seconds_f64())
                });
                let anomalous = m.is_some_and(|m| m.anomaly.iter().any(|a| !a.findings.is_empty()));
                Point { bytes: b.size, rows: m.and_then(|m| m.rows()), seconds, bad: b.known_incomplete() || anomalous }
            })
            .collect();
        e
    }

    /// The age of the newest verified backup, counted from `since` (the daemon's start) when
    /// no backup was ever verified.
    pub fn rpo(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        (now - self.newest_verified_backup_at.unwrap_or(since)).to_std().unwrap_or_default()
    }

    /// Whether the recovery point held is older than `target`.
    pub fn rpo_exceeded(&self, target: Option<Duration>, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        target.is_some_and(|t| self.rpo(since, now) > t)
    }

    /// Whether the last verification restore took longer than `target`.
    pub fn rto_exceeded(&self, target: Option<Duration>) -> bool {
        match (target, self.last_verification_seconds) {
            (Some(t), Some(s)) => s > t.as_secs_f64(),
            _ => false,
        }
    }
}

/// When a backup was taken: its manifest's end time, else its file's time.
fn taken_at(b: &BackupFile) -> DateTime<Utc> {
    b.manifest
        .as_ref()
        .and_then(|m| m.finished_at.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(|| DateTime::<Utc>::from(b.modified), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::manifest::{Anomaly, Finding, Manifest, Origin, Verification};
    use crate::stream::scan::TableData;
    use chrono::TimeZone;
    use std::path::Path;

    fn backup(day: u32, verified_ms: Option<u64>, anomaly: bool) -> BackupFile {
        let rel = format!("daily/2026-11-{day}/db-app_2026-11-{day}_01-00-00.sql.gz");
        let p = crate::catalog::layout::parse_relative(Path::new(&rel)).unwrap();
        let mut b = BackupFile::new(Path::new("/b").join(&rel), rel.clone().into(), p, 1, std::time::UNIX_EPOCH);
        let mut m = Manifest::new(&rel, Origin::Written, 1);
        m.complete = Some(true);
        m.rows_known = true;
        m.finished_at = Some(format!("2026-11-{day}T01:00:10Z"));
        m.tables = vec![TableData { schema: "public".into(), table: "t".into(), rows: u64::from(day), bytes: 1 }];
        if let Some(ms) = verified_ms {
            m.verifications.push(Verification {
                verified_at: format!("2026-11-{day}T03:00:00Z"),
                ok: true,
                error: None,
                tables: 1,
                rows: 1,
                schemas: vec![],
                database_size_bytes: 1,
                duration_ms: ms,
                integrity: "checksum".into(),
                server_major: None,
                note: None,
            });
        }
        if anomaly {
            m.anomaly = Some(Anomaly {
                baseline: "x".into(),
                findings: vec![Finding::TableDisappeared { table: "public.u".into(), rows: 3 }],
            });
        }
        b.manifest = Some(m);
        b
    }

    #[test]
    fn rpo_is_the_age_of_the_newest_verified_backup_and_rto_the_last_restore() {
        let backups = vec![backup(20, Some(4000), false), backup(21, Some(9000), false), backup(22, None, true)];
        let e = Evidence::of("db-app", &backups);
        assert_eq!(e.newest_rows, Some(22));
        assert_eq!(e.newest_tables, Some(1));
        assert_eq!(e.anomaly, ["table public.u disappeared (had 3 rows)"]);
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 13, 0, 10).unwrap();
        assert_eq!(e.rpo(now, now), Duration::from_secs(36 * 3600), "the 21st's backup, taken at 01:00:10");
        assert_eq!(e.last_verification_seconds, Some(9.0));
        assert!(e.rpo_exceeded(Some(Duration::from_secs(24 * 3600)), now, now));
        assert!(!e.rpo_exceeded(Some(Duration::from_secs(48 * 3600)), now, now));
        assert!(!e.rpo_exceeded(None, now, now));
        assert!(e.rto_exceeded(Some(Duration::from_secs(5))));
        assert!(!e.rto_exceeded(Some(Duration::from_secs(10))));
        assert_eq!(Evidence::of("db-other", &backups), Evidence::default());
        assert_eq!(e.last_upgrade_rehearsal_ok, None, "no rehearsal yet");
    }

    #[test]
    fn the_most_recent_upgrade_rehearsal_counts() {
        let mut backups = vec![backup(20, Some(1), false), backup(21, Some(1), false)];
        for (b, ok, at) in [(0, true, "2026-11-22T03:00:00Z"), (1, false, "2026-11-21T03:00:00Z")] {
            let m = backups[b].manifest.as_mut().unwrap();
            let mut r = m.verifications[0].clone();
            (r.ok, r.verified_at, r.server_major) = (ok, at.into(), Some(18));
            m.upgrade_rehearsals.push(r);
        }
        let e = Evidence::of("db-app", &backups);
        assert_eq!((e.last_upgrade_rehearsal_ok, e.last_upgrade_rehearsal_major), (Some(true), Some(18)));
    }
}
