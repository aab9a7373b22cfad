//! What the daemon knows about each archived server — the streamer, the slot, the base
//! backups, the gaps and the recoverable window — written by the archivers, read by
//! `/metrics` and `/status`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One server's archive as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// `pg_receivewal` is running.
    pub streamer_up: bool,
    pub slot: String,
    /// WAL the slot holds back on the server (bytes), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_retained_bytes: Option<u64>,
    pub base_backups: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_base_backup: Option<DateTime<Utc>>,
    /// Missing WAL, described (`timeline 1: 000000010000000000000007 to …08`).
    pub gaps: Vec<String>,
    /// Gaps before the newest full base backup: they only split off older windows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub healed_gaps: Vec<String>,
    /// The window that reaches the newest WAL: any moment in it can be recovered to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earliest_recovery: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_wal: Option<DateTime<Utc>>,
    /// Older windows a gap cut off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub older_windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The proven window: the targets of the PITR drills since the last failed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven_earliest: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven_latest: Option<DateTime<Utc>>,
    /// The last PITR drill: whether it passed, how long it took (the RTO measured), its error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill_ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill_error: Option<String>,
    /// How many mirrors copy the archive.
    #[serde(skip_serializing_if = "is_zero")]
    pub mirrors: usize,
    /// When the oldest file not yet on every mirror was stored (none: the mirrors hold all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_behind_since: Option<DateTime<Utc>>,
    /// Why the last copy to a mirror failed, when the next has not succeeded yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_problem: Option<String>,
    /// The last thing that went wrong, when it has not been put right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every archived server's status, by `host:port`.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, Status>>);

impl Board {
    /// Changes `server`'s status.
    pub fn update(&self, server: &str, change: impl FnOnce(&mut Status)) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        change(all.entry(server.to_string()).or_default());
    }

    pub fn snapshot(&self) -> BTreeMap<String, Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `backup_pitr_*` metrics (Prometheus text), one series per server.
    pub fn metrics(&self, now: DateTime<Utc>) -> String {
        let all = self.snapshot();
        let mut out = String::new();
        if all.is_empty() {
            return out;
        }
        let ts = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        type Value = Box<dyn Fn(&Status) -> Option<f64>>;
        let series: [(&str, &str, Value); 11] = [
            (
                "backup_pitr_earliest_recovery_timestamp_seconds",
                "The earliest moment the archive can recover to (in the window that reaches the newest WAL).",
                Box::new(move |s| s.earliest_recovery.map(ts)),
            ),
            (
                "backup_pitr_latest_wal_timestamp_seconds",
                "When the newest durable WAL in the archive was received.",
                Box::new(move |s| s.latest_wal.map(ts)),
            ),
            (
                "backup_pitr_rpo_seconds",
                "Age of the newest durable WAL in the archive: the point-in-time recovery point held.",
                Box::new(move |s| s.latest_wal.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)),
            ),
            (
                "backup_pitr_streamer_up",
                "1 when pg_receivewal is running for the server.",
                Box::new(|s| Some(f64::from(u8::from(s.streamer_up)))),
            ),
            (
                "backup_pitr_slot_retained_bytes",
                "WAL the archive's replication slot holds back on the server.",
                Box::new(|s| s.slot_retained_bytes.map(|b| b as f64)),
            ),
            (
                "backup_pitr_proven_earliest_timestamp_seconds",
                "The earliest target a PITR drill since the last failed one recovered to.",
                Box::new(move |s| s.proven_earliest.map(ts)),
            ),
            (
                "backup_pitr_proven_latest_timestamp_seconds",
                "The latest target a PITR drill since the last failed one recovered to.",
                Box::new(move |s| s.proven_latest.map(ts)),
            ),
            (
                "backup_pitr_last_drill_success",
                "1 when the last PITR drill passed.",
                Box::new(|s| s.last_drill_ok.map(|ok| f64::from(u8::from(ok)))),
            ),
            (
                "backup_pitr_drill_duration_seconds",
                "How long the last PITR drill's restore took: the recovery time measured.",
                Box::new(|s| s.drill_duration_seconds),
            ),
            (
                "backup_pitr_mirror_lag_seconds",
                "Age of the oldest archived file not yet on every mirror (0: the mirrors hold the whole archive).",
                Box::new(move |s| {
                    (s.mirrors > 0).then(|| {
                        s.mirror_behind_since.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    })
                }),
            ),
            (
                "backup_pitr_gaps",
                "Gaps in the archive's WAL after the newest full base backup (a full base backup heals them).",
                Box::new(|s| Some(s.gaps.len() as f64)),
            ),
        ];
        for (name, help, value) in &series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (server, status) in &all {
                if let Some(v) = value(status) {
                    let label = server.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = writeln!(out, "{name}{{server=\"{label}\"}} {v}");
                }
            }
        }
        out
    }
}

impl Serialize for Board {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.snapshot().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_each_server_and_say_only_what_is_known() {
        let board = Board::default();
        assert_eq!(board.metrics(Utc::now()), "", "no servers, no series");
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc();
        board.update("wallet-db:5432", |s| {
            s.streamer_up = true;
            s.latest_wal = Some(now - chrono::Duration::seconds(3));
            s.earliest_recovery = Some(now - chrono::Duration::days(7));
            s.slot_retained_bytes = Some(4096);
        });
        board.update("a\"b:5432", |s| (s.gaps, s.mirrors) = (vec!["timeline 1".into()], 1));
        board.update("wallet-db:5432", |s| {
            (s.mirrors, s.mirror_behind_since) = (2, Some(now - chrono::Duration::seconds(40)))
        });
        let text = board.metrics(now);
        assert!(text.contains("backup_pitr_rpo_seconds{server=\"wallet-db:5432\"} 3\n"), "{text}");
        assert!(text.contains("backup_pitr_streamer_up{server=\"a\\\"b:5432\"} 0\n"), "{text}");
        assert!(text.contains("backup_pitr_gaps{server=\"a\\\"b:5432\"} 1\n"), "{text}");
        assert!(text.contains("backup_pitr_slot_retained_bytes{server=\"wallet-db:5432\"} 4096\n"));
        assert!(!text.contains("backup_pitr_latest_wal_timestamp_seconds{server=\"a"), "unknown is not 0: {text}");
        assert!(text.contains("backup_pitr_mirror_lag_seconds{server=\"wallet-db:5432\"} 40\n"), "{text}");
        assert!(text.contains("backup_pitr_mirror_lag_seconds{server=\"a\\\"b:5432\"} 0\n"), "caught up: {text}");
        let json = serde_json::to_value(&board).unwrap();
        assert_eq!(json["wallet-db:5432"]["streamer_up"], true);
    }
}
