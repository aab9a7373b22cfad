//! What the daemon knows about each database — last attempt, last success, last verification —
//! seeded from the backup folder at start and updated after every run; rendered as Prometheus
//! metrics and as the `/status` JSON. Staleness is judged here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::evidence::Evidence;
use crate::backup::{Outcome, RunReport};
use crate::catalog::BackupFile;
use crate::restore::verify::Outcome as VerifyOutcome;

/// The last backup attempt of one database.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub size_bytes: u64,
}

/// The last verification of one database.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One database's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbState {
    pub last_attempt: Option<Attempt>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_success_size_bytes: u64,
    pub last_verification: Option<Verification>,
    /// What the manifests prove (rows, anomaly, RPO held, RTO measured).
    pub evidence: Evidence,
    /// Each mirror's result for this database in the last run: (mirror, error if it failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<(String, Option<String>)>,
}

/// Everything `/metrics` and `/status` report.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub started: DateTime<Utc>,
    pub databases: BTreeMap<String, DbState>,
    pub runs_succeeded: u64,
    pub runs_failed: u64,
    pub runs_skipped: u64,
    /// Copies to mirrors that failed (the local backups were kept).
    pub mirror_failures: u64,
    /// Copies the last run's mirror retention had to keep because they are still locked.
    pub mirror_locked: u64,
    /// The last coverage audit: uncovered databases per server.
    pub uncovered: BTreeMap<String, u64>,
    pub run_in_progress: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    /// The interval the schedule implies; `None` when no line runs backups.
    #[serde(skip)]
    pub interval: Option<Duration>,
    #[serde(skip)]
    pub stale_factor: f64,
    /// `RPO_TARGET` and `RTO_TARGET`.
    #[serde(skip)]
    pub rpo_target: Option<Duration>,
    #[serde(skip)]
    pub rto_target: Option<Duration>,
    /// Notifications that could not be delivered (shared with `Notifiers`).
    #[serde(skip)]
    pub notify_failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Each archived server's point-in-time archive (written by the archivers).
    #[serde(serialize_with = "board")]
    pub pitr: std::sync::Arc<crate::pitr::status::Board>,
}

fn board<S: serde::Serializer>(b: &std::sync::Arc<crate::pitr::status::Board>, s: S) -> Result<S::Ok, S::Error> {
    b.serialize(s)
}

impl State {
    /// State for `databases` (spec text → core name), seeded from the newest complete backup
    /// of each (its file time) and its verification record.
    pub fn new(
        databases: &[(String, String)],
        backups: &[BackupFile],
        interval: Option<Duration>,
        stale_factor: f64,
        now: DateTime<Utc>,
    ) -> State {
        let mut map = BTreeMap::new();
        for (spec, core) in databases {
            let mut db = DbState::default();
            if let Some(newest) =
                backups.iter().filter(|b| &b.core == core && !b.in_progress).max_by_key(|b| b.sort_key())
            {
                db.last_success = Some(DateTime::<Utc>::from(newest.modified));
                db.last_success_size_bytes = newest.size;
                if let Some(r) = newest.manifest.as_ref().and_then(|m| m.last_verification()).cloned() {
                    let at = DateTime::parse_from_rfc3339(&r.verified_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
                    db.last_verification = Some(Verification { at, ok: r.ok, error: r.error });
                }
            }
            db.evidence = Evidence::of(core, backups);
            map.insert(spec.clone(), db);
        }
        State {
            started: now,
            databases: map,
            runs_succeeded: 0,
            runs_failed: 0,
            runs_skipped: 0,
            mirror_failures: 0,
            mirror_locked: 0,
            uncovered: BTreeMap::new(),
            run_in_progress: None,
            next_run: None,
            interval,
            stale_factor,
            rpo_target: None,
            rto_target: None,
            notify_failures: Default::default(),
            pitr: Default::default(),
        }
    }

    /// Takes the evidence of every database again from the catalog (after each job).
    pub fn refresh_evidence(&mut self, cores: &[(String, String)], backups: &[BackupFile]) {
        for (spec, core) in cores {
            self.databases.entry(spec.clone()).or_default().evidence = Evidence::of(core, backups);
        }
    }

    /// Whether `db` misses the RPO target now.
    pub fn rpo_exceeded(&self, db: &DbState, now: DateTime<Utc>) -> bool {
        db.evidence.rpo_exceeded(self.rpo_target, self.started, now)
    }

    /// Records a backup run's outcome per database.
    pub fn record_run(&mut self, report: &RunReport, finished: DateTime<Utc>) {
        if !report.coverage.is_empty() {
            self.uncovered = report
                .coverage
                .iter()
                .filter(|c| c.error.is_none())
                .map(|c| (c.server.clone(), c.uncovered.len() as u64))
                .collect();
        }
        self.mirror_locked = report.databases.iter().flat_map(|d| &d.mirrors).map(|m| m.locked.len() as u64).sum();
        for d in &report.databases {
            self.mirror_failures += d.mirrors.iter().filter(|m| m.error.is_some()).count() as u64;
            let db = self.databases.entry(d.spec.to_string()).or_default();
            db.mirrors = d.mirrors.iter().map(|m| (m.mirror.clone(), m.error.clone())).collect();
            match &d.outcome {
                Outcome::Written(w) => {
                    db.last_attempt = Some(Attempt {
                        at: finished,
                        ok: true,
                        error: None,
                        duration_seconds: w.duration.as_secs_f64(),
                        size_bytes: w.bytes,
                    });
                    db.last_success = Some(finished);
                    db.last_success_size_bytes = w.bytes;
                }
                Outcome::Failed(e) => {
                    db.last_attempt = Some(Attempt {
                        at: finished,
                        ok: false,
                        error: Some(e.to_string()),
                        duration_seconds: 0.0,
                        size_bytes: 0,
                    })
                }
                // Another process backed it up: the evidence refresh reads its backup.
                Outcome::NotAttempted | Outcome::Skipped { .. } => {}
            }
        }
        if report.succeeded() {
            self.runs_succeeded += 1;
        } else {
            self.runs_failed += 1;
        }
    }

    /// Records verification outcomes.
    pub fn record_verify(&mut self, outcomes: &[VerifyOutcome], at: DateTime<Utc>) {
        for o in outcomes {
            let db = self.databases.entry(o.spec.to_string()).or_default();
            let error = o.result.as_ref().err().map(ToString::to_string);
            db.last_verification = Some(Verification { at, ok: o.result.is_ok(), error });
        }
    }

    /// The allowed age of the newest good backup, or `None` when there is no backup schedule.
    pub fn stale_after(&self) -> Option<Duration> {
        // Settings bound both factors; a product too large for a Duration means "never stale".
        self.interval.map(|i| Duration::try_from_secs_f64(i.as_secs_f64() * self.stale_factor).unwrap_or(Duration::MAX))
    }

    /// Whether `db`'s newest good backup (or, before the first one, the daemon's start) is
    /// older than the schedule's interval times the tolerance.
    pub fn is_stale(&self, db: &DbState, now: DateTime<Utc>) -> bool {
        let Some(limit) = self.stale_after() else { return false };
        let since = db.last_success.unwrap_or(self.started);
        (now - since).to_std().unwrap_or_default() > limit
    }

    /// Databases that are stale now.
    pub fn stale_databases(&self, now: DateTime<Utc>) -> Vec<String> {
        self.databases.iter().filter(|(_, d)| self.is_stale(d, now)).map(|(k, _)| k.clone()).collect()
    }

    /// The Prometheus text exposition.
    pub fn render_metrics(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let ts = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        type Metric<'a> = (&'a str, &'a str, &'a str, Box<dyn Fn(&DbState) -> Option<f64> + 'a>);
        let per_db: Vec<Metric> = vec![
            (
                "backup_last_success_timestamp_seconds",
                "gauge",
                "Time of the newest good backup.",
                Box::new(|d| d.last_success.map(ts)),
            ),
            (
                "backup_last_attempt_timestamp_seconds",
                "gauge",
                "Time of the last backup attempt.",
                Box::new(|d| d.last_attempt.as_ref().map(|a| ts(a.at))),
            ),
            (
                "backup_last_attempt_success",
                "gauge",
                "1 when the last backup attempt succeeded.",
                Box::new(|d| d.last_attempt.as_ref().map(|a| f64::from(u8::from(a.ok)))),
            ),
            (
                "backup_last_duration_seconds",
                "gauge",
                "Duration of the last successful backup.",
                Box::new(|d| d.last_attempt.as_ref().filter(|a| a.ok).map(|a| a.duration_seconds)),
            ),
            (
                "backup_last_size_bytes",
                "gauge",
                "Compressed size of the newest good backup.",
                Box::new(|d| d.last_success.map(|_| d.last_success_size_bytes as f64)),
            ),
            (
                "backup_last_verification_timestamp_seconds",
                "gauge",
                "Time of the last verification.",
                Box::new(|d| d.last_verification.as_ref().map(|v| ts(v.at))),
            ),
            (
                "backup_last_verification_success",
                "gauge",
                "1 when the last verification succeeded.",
                Box::new(|d| d.last_verification.as_ref().map(|v| f64::from(u8::from(v.ok)))),
            ),
            (
                "backup_last_upgrade_rehearsal_success",
                "gauge",
                "1 when the last upgrade rehearsal (a restore into the newest installed PostgreSQL major) succeeded.",
                Box::new(|d| d.evidence.last_upgrade_rehearsal_ok.map(|ok| f64::from(u8::from(ok)))),
            ),
            (
                "backup_newest_rows",
                "gauge",
                "Rows in the newest complete backup, counted from its stream.",
                Box::new(|d| d.evidence.newest_rows.map(|r| r as f64)),
            ),
            (
                "backup_newest_tables",
                "gauge",
                "Tables in the newest complete backup.",
                Box::new(|d| d.evidence.newest_tables.map(|r| r as f64)),
            ),
            (
                "backup_anomaly",
                "gauge",
                "1 when the newest backup differs sharply from the previous good one (see -l).",
                Box::new(|d| Some(f64::from(u8::from(!d.evidence.anomaly.is_empty())))),
            ),
            (
                "backup_rpo_seconds",
                "gauge",
                "Age of the newest verified backup: the recovery point actually held.",
                Box::new(|d| {
                    d.evidence.newest_verified_backup_at.map(|_| d.evidence.rpo(self.started, now).as_secs_f64())
                }),
            ),
            (
                "backup_rto_seconds",
                "gauge",
                "Duration of the last verification restore: the recovery time measured.",
                Box::new(|d| d.evidence.last_verification_seconds),
            ),
            (
                "backup_rpo_target_exceeded",
                "gauge",
                "1 when the newest verified backup is older than RPO_TARGET.",
                Box::new(|d| self.rpo_target.map(|_| f64::from(u8::from(self.rpo_exceeded(d, now))))),
            ),
            (
                "backup_rto_target_exceeded",
                "gauge",
                "1 when the last verification restore took longer than RTO_TARGET.",
                Box::new(|d| self.rto_target.map(|_| f64::from(u8::from(d.evidence.rto_exceeded(self.rto_target))))),
            ),
            (
                "backup_stale",
                "gauge",
                "1 when the newest good backup is older than the schedule allows.",
                Box::new(|d| Some(f64::from(u8::from(self.is_stale(d, now))))),
            ),
        ];
        for (name, kind, help, value) in &per_db {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (db, state) in &self.databases {
                if let Some(v) = value(state) {
                    let _ = writeln!(out, "{name}{{database=\"{}\"}} {v}", escape_label(db));
                }
            }
        }
        let _ = writeln!(out, "# HELP backup_runs_total Backup runs by result.\n# TYPE backup_runs_total counter");
        let _ = writeln!(out, "backup_runs_total{{result=\"success\"}} {}", self.runs_succeeded);
        let _ = writeln!(out, "backup_runs_total{{result=\"failure\"}} {}", self.runs_failed);
        let _ = writeln!(
            out,
            "# HELP backup_scheduled_runs_skipped_total Scheduled runs skipped because a run was in progress.\n\
             # TYPE backup_scheduled_runs_skipped_total counter\nbackup_scheduled_runs_skipped_total {}",
            self.runs_skipped
        );
        let _ = writeln!(
            out,
            "# HELP backup_mirror_failures_total Copies to mirrors that failed (local backups kept).\n\
             # TYPE backup_mirror_failures_total counter\nbackup_mirror_failures_total {}",
            self.mirror_failures
        );
        let _ = writeln!(
            out,
            "# HELP backup_notifications_failed_total Notifications that could not be delivered.\n\
             # TYPE backup_notifications_failed_total counter\nbackup_notifications_failed_total {}",
            self.notify_failures.load(std::sync::atomic::Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP backup_mirror_locked_copies Copies that mirror retention keeps because they are still locked (S3 Object Lock).\n\
             # TYPE backup_mirror_locked_copies gauge\nbackup_mirror_locked_copies {}",
            self.mirror_locked
        );
        let _ = writeln!(
            out,
            "# HELP backup_uncovered_databases Databases on a configured server that no line of the configuration covers.\n\
             # TYPE backup_uncovered_databases gauge"
        );
        for (server, n) in &self.uncovered {
            let _ = writeln!(out, "backup_uncovered_databases{{server=\"{}\"}} {n}", escape_label(server));
        }
        out.push_str(&self.pitr.metrics(now));
        if let Some(limit) = self.stale_after() {
            let _ = writeln!(
                out,
                "# HELP backup_stale_after_seconds Age at which a database's newest backup counts as stale.\n\
                 # TYPE backup_stale_after_seconds gauge\nbackup_stale_after_seconds {}",
                limit.as_secs_f64()
            );
        }
        for (name, help, target) in [
            ("backup_rpo_target_seconds", "RPO_TARGET.", self.rpo_target),
            ("backup_rto_target_seconds", "RTO_TARGET.", self.rto_target),
        ] {
            if let Some(t) = target {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", t.as_secs_f64());
            }
        }
        if let Some(next) = self.next_run {
            let _ = writeln!(
                out,
                "# HELP backup_next_run_timestamp_seconds Next scheduled run.\n\
                 # TYPE backup_next_run_timestamp_seconds gauge\nbackup_next_run_timestamp_seconds {}",
                ts(next)
            );
        }
        out
    }

    /// The `/status` document.
    pub fn status_json(&self, now: DateTime<Utc>) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(dbs) = v.get_mut("databases").and_then(|d| d.as_object_mut()) {
            for (name, db) in dbs.iter_mut() {
                let stale = self.databases.get(name).is_some_and(|d| self.is_stale(d, now));
                db["stale"] = serde_json::Value::Bool(stale);
            }
        }
        v
    }
}

/// Escapes a Prometheus label value.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
