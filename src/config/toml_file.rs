//! `backup.toml`: an optional file that can say everything backup.conf and the environment
//! can, plus per-database options, schedules and hooks.
//!
//! Scalar settings become a layer under the environment (each maps to the variable of the
//! same meaning, so precedence is simply defaults < backup.toml < env); databases, schedules
//! and hooks are merged with backup.conf's. Unknown keys are errors naming the key and line.
//! The commented reference is `config/backup.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::backup_conf::CronLine;
use super::hooks::{Action, Hook, Phase, Stage};
use crate::model::schedule::{Schedule, parse_duration};
use crate::model::spec::DatabaseSpec;
use crate::system::command::Program;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    backup: Section,
    retention: Section,
    verify: Section,
    restore: Section,
    health: Section,
    daemon: Section,
    notify: Section,
    encryption: Section,
    pitr: Section,
    mirrors: Mirrors,
    database: Vec<RawDatabase>,
    schedule: Vec<RawSchedule>,
    hook: Vec<RawHook>,
}

/// A table of scalar settings; keys are checked against `KEYS`.
type Section = BTreeMap<String, toml::Value>;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct Mirrors {
    attempts: Option<i64>,
    catchup: Option<i64>,
    ftp: Section,
    s3: Section,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDatabase {
    spec: String,
    user: Option<String>,
    user_env: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default)]
    dump_args: Vec<String>,
    #[serde(default)]
    exclude_tables: Vec<String>,
    #[serde(default)]
    exclude_table_data: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSchedule {
    cron: Option<String>,
    every: Option<String>,
    run: Option<String>,
    target: Option<String>,
    command: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHook {
    name: Option<String>,
    phase: String,
    stage: String,
    command: Option<Vec<String>>,
    shell: Option<String>,
    sql: Option<String>,
    timeout: Option<String>,
    on_error: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    user: Option<String>,
    databases: Option<Vec<String>>,
}

/// `[section] key` → the environment variable it stands for.
const KEYS: &[(&str, &str, &str)] = &[
    ("backup", "dir", "BACKUP_DIR"),
    ("backup", "strategy", "BACKUP_STRATEGY"),
    ("backup", "period", "BACKUP_PERIOD"),
    ("backup", "timezone", "TZ"),
    ("backup", "compression", "BACKUP_COMPRESSION"),
    ("backup", "compression-level", "BACKUP_COMPRESSION_LEVEL"),
    ("backup", "compression-threads", "BACKUP_COMPRESSION_THREADS"),
    ("backup", "connect-timeout", "DATABASE_CONNECT_TIMEOUT"),
    ("backup", "pg-bin-dir", "PG_BIN_DIR"),
    ("backup", "log-level", "BACKUP_LOG_LEVEL"),
    ("retention", "num-backups", "NUM_BACKUPS"),
    ("retention", "daily", "DAILY_BACKUPS"),
    ("retention", "weekly", "WEEKLY_BACKUPS"),
    ("retention", "monthly", "MONTHLY_BACKUPS"),
    ("verify", "dir", "VERIFY_DIR"),
    ("verify", "max-age", "VERIFY_MAX_AGE"),
    ("verify", "server-timeout", "DATABASE_SERVER_TIMEOUT"),
    ("verify", "table-schemas", "TABLE_SCHEMA"),
    ("verify", "server-options", "VERIFY_SERVER_OPTIONS"),
    ("verify", "admin-user", "BACKUP_ADMIN_USER"),
    ("verify", "drill", "VERIFY_DRILL"),
    ("verify", "upgrade", "VERIFY_UPGRADE"),
    ("verify", "jobs", "VERIFY_JOBS"),
    ("restore", "in-place", "RESTORE_IN_PLACE"),
    ("restore", "keep-previous", "RESTORE_KEEP_PREVIOUS"),
    ("restore", "count-check", "RESTORE_COUNT_CHECK"),
    ("restore", "accept-errors", "RESTORE_ACCEPT_ERRORS"),
    ("restore", "jobs", "RESTORE_JOBS"),
    ("restore", "loader", "RESTORE_LOADER"),
    ("restore", "spill_mb", "RESTORE_SPILL_MB"),
    ("verify", "admin-password-file", "BACKUP_ADMIN_PASSWORD_FILE"),
    ("health", "addr", "HEALTH_ADDR"),
    ("health", "fail-when-stale", "HEALTH_FAIL_WHEN_STALE"),
    ("health", "stale-factor", "STALE_FACTOR"),
    ("health", "page-cache", "STATUS_PAGE_CACHE"),
    ("health", "rpo-target", "RPO_TARGET"),
    ("encryption", "recipients", "BACKUP_ENCRYPTION_RECIPIENTS"),
    ("encryption", "identity-file", "BACKUP_ENCRYPTION_IDENTITY_FILE"),
    ("health", "rto-target", "RTO_TARGET"),
    ("retention", "anomaly-rows-pct", "BACKUP_ANOMALY_ROWS_PCT"),
    ("retention", "anomaly-size-pct", "BACKUP_ANOMALY_SIZE_PCT"),
    ("retention", "anomaly-hold", "BACKUP_ANOMALY_HOLD"),
    ("daemon", "shutdown-grace", "SHUTDOWN_GRACE"),
    ("daemon", "command-timeout", "CRON_COMMAND_TIMEOUT"),
    ("daemon", "startup-check", "STARTUP_CHECK"),
    ("notify", "webhook-url-file", "WEBHOOK_URL_FILE"),
    ("notify", "format", "WEBHOOK_FORMAT"),
    ("notify", "level", "WEBHOOK_LEVEL"),
    ("notify", "timeout", "WEBHOOK_TIMEOUT"),
    ("notify", "attempts", "WEBHOOK_ATTEMPTS"),
    ("notify", "flush-timeout", "NOTIFY_FLUSH_TIMEOUT"),
    ("notify", "friendly-name", "ENVIRONMENT_FRIENDLY_NAME"),
    ("notify", "environment-name", "ENVIRONMENT_NAME"),
    ("notify", "pagerduty-key-file", "PGDUTY_SVC_KEY_FILE"),
    ("notify", "pagerduty-url", "PGDUTY_URL"),
    ("ftp", "url", "FTP_URL"),
    ("ftp", "user", "FTP_USER"),
    ("ftp", "password-file", "FTP_PASSWORD_FILE"),
    ("ftp", "ca-file", "FTP_CA_FILE"),
    ("ftp", "allow-plaintext", "FTP_ALLOW_PLAINTEXT"),
    ("ftp", "prune", "FTP_PRUNE_BACKUPS"),
    ("ftp", "timeout", "FTP_TIMEOUT"),
    ("s3", "endpoint", "S3_ENDPOINT"),
    ("s3", "bucket", "S3_BUCKET"),
    ("s3", "region", "S3_REGION"),
    ("s3", "access-key", "S3_USER"),
    ("s3", "secret-key-file", "S3_PASSWORD_FILE"),
    ("s3", "prefix", "S3_PREFIX"),
    ("s3", "path-style", "S3_PATH_STYLE"),
    ("s3", "part-size-mb", "S3_PART_SIZE_MB"),
    ("s3", "prune", "S3_PRUNE_BACKUPS"),
    ("s3", "timeout", "S3_TIMEOUT"),
    ("s3", "object-lock", "S3_OBJECT_LOCK"),
    ("s3", "object-lock-min-days", "S3_OBJECT_LOCK_MIN_DAYS"),
    ("pitr", "servers", "PITR_SERVERS"),
    ("pitr", "spool-dir", "PITR_SPOOL_DIR"),
    ("pitr", "slot-name", "PITR_SLOT_NAME"),
    ("pitr", "chains", "PITR_CHAINS"),
    ("pitr", "slot-max-retained", "PITR_SLOT_MAX_RETAINED"),
    ("pitr", "max-bytes", "PITR_MAX_BYTES"),
    ("pitr", "base-schedule", "PITR_BASE_SCHEDULE"),
    ("pitr", "incremental-schedule", "PITR_INCREMENTAL_SCHEDULE"),
    ("pitr", "drill-schedule", "PITR_DRILL_SCHEDULE"),
    ("pitr", "drill-counts", "PITR_DRILL_COUNTS"),
];

/// A database from backup.toml, with its options.
#[derive(Debug, Clone)]
pub struct TomlDatabase {
    pub source: String,
    pub spec: DatabaseSpec,
    pub user: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub options: crate::model::database::DumpOptions,
}

/// Everything backup.toml contributes.
#[derive(Debug, Default)]
pub struct TomlConfig {
    /// Variable name → (value, "backup.toml:12 [retention] daily").
    pub layer: BTreeMap<String, (String, String)>,
    pub databases: Vec<TomlDatabase>,
    pub schedules: Vec<CronLine>,
    pub hooks: Vec<Hook>,
}

/// Reads `path`; a missing file is an empty configuration.
///
/// # Errors
/// Every problem, each as `file:line: message` (with the key).
pub fn load(path: &Path) -> Result<Option<TomlConfig>, Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(vec![format!("{}: cannot be read: {e}", path.display())]),
    };
    parse(&path.display().to_string(), &text).map(Some)
}

/// Parses backup.toml text; `file` names it in messages.
///
/// # Errors
/// As `load`.
pub fn parse(file: &str, text: &str) -> Result<TomlConfig, Vec<String>> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_at(text, s.start));
        vec![format!("{file}:{line}: {}", e.message().trim())]
    })?;
    let mut errors = Vec::new();
    let mut out = TomlConfig::default();
    let sections: [(&str, &Section); 10] = [
        ("backup", &raw.backup),
        ("retention", &raw.retention),
        ("verify", &raw.verify),
        ("restore", &raw.restore),
        ("health", &raw.health),
        ("daemon", &raw.daemon),
        ("notify", &raw.notify),
        ("encryption", &raw.encryption),
        ("pitr", &raw.pitr),
        ("ftp", &raw.mirrors.ftp),
    ];
    for (section, table) in sections.iter().copied().chain([("s3", &raw.mirrors.s3)]) {
        let header = if matches!(section, "ftp" | "s3") { format!("mirrors.{section}") } else { section.to_string() };
        for (key, value) in table {
            let line = line_of_key(text, &header, key);
            let Some((_, _, var)) = KEYS.iter().find(|(s, k, _)| *s == section && k == key) else {
                let known: Vec<&str> = KEYS.iter().filter(|(s, _, _)| *s == section).map(|(_, k, _)| *k).collect();
                errors.push(format!("{file}:{line}: unknown key [{header}] {key} (known: {})", known.join(", ")));
                continue;
            };
            match scalar(value, var) {
                Some(v) => {
                    out.layer.insert(var.to_string(), (v, format!("{file}:{line} [{header}] {key}")));
                }
                None => {
                    errors.push(format!("{file}:{line}: [{header}] {key}: expected a string, number, boolean or list"))
                }
            }
        }
    }
    for (name, value) in [("MIRROR_ATTEMPTS", raw.mirrors.attempts), ("MIRROR_CATCHUP", raw.mirrors.catchup)] {
        if let Some(v) = value {
            let key = if name == "MIRROR_ATTEMPTS" { "attempts" } else { "catchup" };
            out.layer.insert(
                name.into(),
                (v.to_string(), format!("{file}:{} [mirrors] {key}", line_of_key(text, "mirrors", key))),
            );
        }
    }
    for (i, d) in raw.database.into_iter().enumerate() {
        let line = nth_table_line(text, "database", i);
        match d.spec.parse::<DatabaseSpec>() {
            Ok(spec) => out.databases.push(TomlDatabase {
                source: format!("{file}:{line}"),
                spec,
                user: d.user,
                user_env: d.user_env,
                password_env: d.password_env,
                password_file: d.password_file,
                options: crate::model::database::DumpOptions {
                    extra_args: d.dump_args,
                    exclude_tables: d.exclude_tables,
                    exclude_table_data: d.exclude_table_data,
                },
            }),
            Err(e) => errors.push(format!("{file}:{line}: [[database]] spec \"{}\": {e}", d.spec)),
        }
    }
    for (i, s) in raw.schedule.into_iter().enumerate() {
        let line = nth_table_line(text, "schedule", i);
        match schedule(s) {
            Ok((schedule, command)) => out.schedules.push(CronLine { line, schedule, user: "default".into(), command }),
            Err(e) => errors.push(format!("{file}:{line}: [[schedule]] {e}")),
        }
    }
    for (i, h) in raw.hook.into_iter().enumerate() {
        let line = nth_table_line(text, "hook", i);
        match hook(h, i) {
            Ok(h) => out.hooks.push(h),
            Err(e) => errors.push(format!("{file}:{line}: [[hook]] {e}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// A TOML value as the variable's text: lists joined as the variable expects.
fn scalar(value: &toml::Value, var: &str) -> Option<String> {
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(|v| v.as_str().map(str::to_string)).collect();
            parts?.join(if matches!(var, "TABLE_SCHEMA" | "PITR_SERVERS") { "," } else { " " })
        }
        _ => return None,
    })
}

fn schedule(s: RawSchedule) -> Result<(Schedule, String), String> {
    let schedule: Schedule = match (&s.cron, &s.every) {
        (Some(c), None) => c.parse()?,
        (None, Some(e)) => Schedule::Every(parse_duration(e)?),
        _ => return Err("needs exactly one of cron = \"m h dom mon dow\" or every = \"6h\"".into()),
    };
    let command = match (s.run.as_deref(), s.command) {
        (Some("backup"), None) => "backup-container -s".to_string(),
        (Some("verify"), None) => format!("backup-container -s -v {}", s.target.as_deref().unwrap_or("all")),
        (Some("prune"), None) => "backup-container -p".to_string(),
        (Some("pitr-base"), None) => crate::config::backup_conf::PITR_BASE_COMMAND.to_string(),
        (Some("pitr-incremental"), None) => crate::config::backup_conf::PITR_INCREMENTAL_COMMAND.to_string(),
        (Some("pitr-drill"), None) => crate::config::backup_conf::PITR_DRILL_COMMAND.to_string(),
        (None, Some(c)) => c,
        (Some(other), None) => {
            return Err(format!(
                "run = \"{other}\" (expected backup, verify, prune, pitr-base, pitr-incremental or pitr-drill)"
            ));
        }
        _ => {
            return Err(
                "needs exactly one of run = \"backup\" | \"verify\" | \"prune\" | \"pitr-base\" | \"pitr-incremental\" | \"pitr-drill\" or command = \"...\"".into(),
            );
        }
    };
    Ok((schedule, command))
}

fn hook(h: RawHook, index: usize) -> Result<Hook, String> {
    let phase = Phase::parse(&h.phase)
        .ok_or_else(|| format!("phase \"{}\" (expected run, backup, copy, prune, verify or restore)", h.phase))?;
    let stage = Stage::parse(&h.stage)
        .ok_or_else(|| format!("stage \"{}\" (expected pre, post, on-error or finally)", h.stage))?;
    let action = match (h.command, h.shell, h.sql) {
        (Some(argv), None, None) if !argv.is_empty() => Action::Command(Program::Argv(argv)),
        (None, Some(sh), None) => Action::Command(Program::Shell(sh)),
        (None, None, Some(sql)) => Action::Sql(sql),
        _ => return Err("needs exactly one of command = [\"argv\", ...], shell = \"...\" or sql = \"...\"".into()),
    };
    let timeout = match &h.timeout {
        None => Duration::from_secs(30),
        Some(t) => parse_duration(t).map_err(|e| format!("timeout: {e}"))?,
    };
    let fail_on_error = match h.on_error.as_deref() {
        None | Some("fail") => true,
        Some("continue") => false,
        Some(other) => return Err(format!("on-error = \"{other}\" (expected fail or continue)")),
    };
    Ok(Hook {
        name: h.name.unwrap_or_else(|| format!("{}-{}-{}", phase.name(), stage.name(), index + 1)),
        phase,
        stage,
        action,
        timeout,
        fail_on_error,
        env: h.env,
        cwd: h.cwd,
        user: h.user,
        databases: h.databases,
    })
}

/// 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The line of `key = ...` inside `[header]` (best effort; 0 when not found).
fn line_of_key(text: &str, header: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_start_matches('[').trim_end_matches(']').trim() == header;
        } else if in_section && t.split('=').next().is_some_and(|k| k.trim().trim_matches('"') == key) {
            return i + 1;
        }
    }
    0
}

/// The line of the `n`-th `[[name]]` header.
fn nth_table_line(text: &str, name: &str, n: usize) -> usize {
    let header = format!("[[{name}]]");
    text.lines().enumerate().filter(|(_, l)| l.trim() == header).nth(n).map_or(0, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests;
