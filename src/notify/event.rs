//! Notification events: what happened, at which level, for which database, with a message a
//! person can read in a chat and figures a machine can use. Built here, in one place, from
//! the results of runs, verifications, mirrors and the daemon.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::Written;
use crate::model::human;

pub use crate::model::severity::Level;

/// One notification.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub level: Level,
    /// Machine name, e.g. `backup_succeeded`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// One line.
    pub title: String,
    /// The text for people (several lines, upstream's wording where it had one).
    pub message: String,
    pub time: DateTime<Utc>,
    /// Figures: file, sizes, durations, error text, mirror name...
    pub details: Map<String, Value>,
}

fn event(
    level: Level,
    kind: &'static str,
    database: Option<String>,
    title: String,
    message: String,
    details: Value,
) -> Event {
    let details = match details {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Event { level, kind, database, title, message, time: Utc::now(), details }
}

pub fn backup_succeeded(db: &str, w: &Written, pruned: &[String]) -> Event {
    let mut message = format!(
        "Successfully backed up {db}.\nBackup written to {}.\nBackup size: {}\nSHA-256: {}\nElapsed time: {}",
        w.path.display(),
        human::bytes(w.bytes),
        w.sha256,
        human::age(w.duration)
    );
    if !pruned.is_empty() {
        message.push_str(&format!("\nPruned {} old backup(s).", pruned.len()));
    }
    let details = json!({"file": w.path.display().to_string(), "size_bytes": w.bytes, "sha256": w.sha256, "duration_ms": w.duration.as_millis() as u64, "pruned": pruned});
    event(Level::Info, "backup_succeeded", Some(db.into()), format!("Backup of {db} succeeded"), message, details)
}

pub fn backup_failed(db: &str, error: &str) -> Event {
    let message =
        format!("Failed to backup {db}.\nReason: {error}\nNo partial file was kept; older backups are untouched.");
    event(
        Level::Error,
        "backup_failed",
        Some(db.into()),
        format!("Backup of {db} FAILED"),
        message,
        json!({"error": error}),
    )
}

pub fn retention_failed(db: &str, error: &str) -> Event {
    let message = format!("Backup of {db} succeeded, but pruning old backups failed: {error}");
    event(
        Level::Error,
        "retention_failed",
        Some(db.into()),
        format!("Pruning {db} failed"),
        message,
        json!({"error": error}),
    )
}

pub fn verification(db: &str, result: &Result<String, String>) -> Event {
    match result {
        Ok(summary) => event(
            Level::Info,
            "verification_succeeded",
            Some(db.into()),
            format!("Verification of {db} succeeded"),
            format!("Successfully verified backup of {db}.\n{summary}"),
            json!({"summary": summary}),
        ),
        Err(reason) => event(
            Level::Error,
            "verification_failed",
            Some(db.into()),
            format!("Verification of {db} FAILED"),
            format!("Backup verification failed for {db}.\nReason: {reason}"),
            json!({"error": reason}),
        ),
    }
}

/// A restore's outcome: done, done with errors (`-I`), or failed (target untouched unless the
/// message says otherwise).
pub fn restore(db: &str, result: &Result<String, String>, problems: &[String]) -> Event {
    match (result, problems.is_empty()) {
        (Ok(summary), true) => event(
            Level::Info,
            "restore_succeeded",
            Some(db.into()),
            format!("Restore of {db} complete"),
            format!("Restored {db}.\n{summary}"),
            json!({"summary": summary}),
        ),
        (Ok(summary), false) => event(
            Level::Error,
            "restore_with_errors",
            Some(db.into()),
            format!("Restore of {db} finished WITH ERRORS"),
            format!("Restored {db}, but the load had problems (-I):\n{}\n{summary}", problems.join("\n")),
            json!({"summary": summary, "errors": problems}),
        ),
        (Err(reason), _) => event(
            Level::Error,
            "restore_failed",
            Some(db.into()),
            format!("Restore of {db} FAILED"),
            format!("Restore of {db} failed.\nReason: {reason}"),
            json!({"error": reason}),
        ),
    }
}

pub fn mirror_succeeded(db: &str, file: &str, mirror: &str) -> Event {
    event(
        Level::Info,
        "mirror_succeeded",
        Some(db.into()),
        format!("Copied {file} to {mirror}"),
        format!("Successfully transferred {file} to {mirror}."),
        json!({"file": file, "mirror": mirror}),
    )
}

pub fn mirror_failed(db: &str, file: &str, mirror: &str, error: &str) -> Event {
    event(
        Level::Warn,
        "mirror_failed",
        Some(db.into()),
        format!("Copy of {file} to {mirror} failed"),
        format!(
            "Failed to transfer {file} to {mirror}: {error}\nThe local backup is kept; the copy is retried on the next run."
        ),
        json!({"file": file, "mirror": mirror, "error": error}),
    )
}

pub fn daemon_started(mode: &str, schedule: &[String], databases: &[String]) -> Event {
    let message = format!(
        "Starting backup server in {mode} mode ...\nSchedule:\n{}\nDatabases:\n{}",
        schedule.iter().map(|s| format!("- {s}")).collect::<Vec<_>>().join("\n"),
        databases.iter().map(|s| format!("- {s}")).collect::<Vec<_>>().join("\n")
    );
    event(
        Level::Info,
        "daemon_started",
        None,
        format!("Backup server started ({mode} mode)"),
        message,
        json!({"mode": mode, "schedule": schedule, "databases": databases}),
    )
}

pub fn run_skipped(job: &str, running: &str) -> Event {
    event(
        Level::Warn,
        "run_skipped",
        None,
        format!("Scheduled {job} skipped"),
        format!("Skipped the scheduled {job}: the previous {running} is still in progress."),
        json!({"job": job, "running": running}),
    )
}

pub fn anomaly(db: &str, a: &crate::catalog::manifest::Anomaly) -> Event {
    let lines: Vec<String> = a.findings.iter().map(|f| format!("- {f}")).collect();
    event(
        Level::Warn,
        "backup_anomaly",
        Some(db.into()),
        format!("Backup of {db} differs sharply from the previous one"),
        format!(
            "The new backup of {db} was written, but compared with the previous good backup ({}):\n{}\n\
             If this was not intended, restore from that backup: retention keeps it until a later backup is verified \
             or enough good backups follow.",
            a.baseline,
            lines.join("\n")
        ),
        json!({"baseline": a.baseline, "findings": a.findings}),
    )
}

/// A recovery objective missed: `what` ("RPO"/"RTO") is `actual`, the target `target`.
pub fn target_missed(
    db: &str,
    what: &str,
    actual: std::time::Duration,
    target: std::time::Duration,
    measure: &str,
) -> Event {
    event(
        Level::Warn,
        if what == "RPO" { "rpo_target_missed" } else { "rto_target_missed" },
        Some(db.into()),
        format!("{what} target missed for {db}"),
        format!("The {measure} of {db} is {}, beyond the {what} target of {}.", human::age(actual), human::age(target)),
        json!({"actual_seconds": actual.as_secs_f64(), "target_seconds": target.as_secs_f64()}),
    )
}

/// The daemon's start-up check found problems a scheduled run would hit.
pub fn check_failed(problems: &[String]) -> Event {
    let lines: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
    event(
        Level::Warn,
        "check_failed",
        None,
        format!("{} problem(s) will make backups fail", problems.len()),
        format!("The start-up check (backup-container --check) found:\n{}", lines.join("\n")),
        json!({"problems": problems}),
    )
}

/// The coverage audit found databases on a configured server that nothing backs up.
pub fn uncovered(server: &str, names: &[String]) -> Event {
    event(
        Level::Warn,
        "databases_uncovered",
        None,
        format!("{} database(s) on {server} are not backed up", names.len()),
        format!(
            "These databases exist on {server} but no line of the configuration covers them: {}. Add a line \
             for each, a host/* line for the whole server, or list them in BACKUP_EXCLUDE_DATABASES.",
            names.join(", ")
        ),
        json!({"server": server, "databases": names}),
    )
}

/// The test message of `--check --notify`.
pub fn check_test() -> Event {
    event(
        Level::Info,
        "check_test",
        None,
        "backup-container test message".into(),
        "This is a test message from backup-container --check --notify: notifications reach this channel.".into(),
        json!({}),
    )
}

pub fn stale(db: &str, since: Option<DateTime<Utc>>, limit: std::time::Duration) -> Event {
    let since_text = since.map_or("never (since the daemon started)".to_string(), |t| t.to_rfc3339());
    event(
        Level::Warn,
        "backup_stale",
        Some(db.into()),
        format!("No recent backup of {db}"),
        format!(
            "The newest good backup of {db} is older than {}: last success {since_text}. Backups may have stopped.",
            human::age(limit)
        ),
        json!({"last_success": since, "limit_seconds": limit.as_secs()}),
    )
}

pub fn command_failed(command: &str, reason: &str) -> Event {
    event(
        Level::Error,
        "command_failed",
        None,
        "Scheduled command failed".into(),
        format!("The scheduled command `{command}` failed: {reason}"),
        json!({"command": command, "error": reason}),
    )
}

/// Something about a server's point-in-time archive: `kind` is `pitr_gap`,
/// `pitr_slot_dropped`, `pitr_streamer_down`, `pitr_streamer_up`, `pitr_base_succeeded`,
/// `pitr_base_failed`, `pitr_retention_failed`, `pitr_drill_succeeded`, `pitr_drill_failed`,
/// `pitr_mirror_failing`, `pitr_mirror_ok`, `pitr_over_max_bytes` or `pitr_not_archiving`.
pub fn pitr(level: Level, kind: &'static str, server: &str, title: String, message: String) -> Event {
    event(level, kind, None, title, message, json!({"server": server}))
}

/// The summary of what an earlier run could not deliver to this endpoint (sent first by the
/// next run): the highest missed level, the counts, the newest titles.
pub fn notifications_missed(m: &super::missed::Missed) -> Event {
    let when =
        |t: Option<DateTime<Utc>>| t.map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
    let counts: Vec<String> = m.by_level.iter().rev().map(|(level, n)| format!("{n} {level}")).collect();
    let mut message = format!(
        "{} notifications ({}) between {} and {} could not be delivered to this endpoint: {}.",
        m.events,
        counts.join(", "),
        when(m.first),
        when(m.last),
        if m.reason.is_empty() { "unknown reason" } else { &m.reason },
    );
    if !m.titles.is_empty() {
        message.push_str("\nThe latest:");
        for t in &m.titles {
            message.push_str(&format!("\n- {t}"));
        }
    }
    event(
        m.highest.unwrap_or(Level::Warn),
        "notifications_missed",
        None,
        format!("{} notifications were not delivered", m.events),
        message,
        json!({"missed": m.events, "by_level": m.by_level, "first": m.first, "last": m.last, "reason": m.reason}),
    )
}

pub fn config_error(errors: &str) -> Event {
    event(
        Level::Error,
        "config_error",
        None,
        "Configuration error".into(),
        format!("Configuration error! Nothing was done.\n{errors}"),
        json!({"error": errors}),
    )
}
