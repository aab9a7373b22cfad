//! Verification of backups (`-v`, and the daemon's scheduled verifications): restore the
//! newest backup of each database into a throwaway local server and check it. Fails on no
//! backup, a stale newest backup (`VERIFY_MAX_AGE`), a checksum mismatch, an incomplete dump
//! (no trailer), a server that will not start, any SQL error, a table whose restored rows
//! differ from the dump's, or no tables. The result is recorded in the backup's manifest and
//! shown by `-l`; with `VERIFY_DRILL=true` one older backup is drilled too. Returns results;
//! printing is the caller's.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use tracing::{error, info, info_span, warn};

use super::database::{VerifyOptions, VerifyReport, verify_in};
use super::pool::ServerPool;
use super::{fetch, open};
use crate::backup::hooks::{self, HookFailure, Phase, Phases};
use crate::catalog::checksum::Integrity;
use crate::catalog::layout;
use crate::catalog::lock::RunLock;
use crate::catalog::manifest::{self, Verification};
use crate::catalog::selection::{Choice, choose};
use crate::catalog::{self, BackupFile};
use crate::config::Rehearsal;
use crate::config::Settings;
use crate::model::error::UsageError;
use crate::model::human;
use crate::model::spec::DatabaseSpec;
use crate::notify::{Notifiers, event};
use crate::system::cancel::Cancel;

/// Why a database's verification failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Hook(#[from] HookFailure),
    #[error("interrupted by a shutdown signal")]
    Interrupted,
    /// No backup, a stale or corrupt one, a server that would not start, a failed load or
    /// count (the full error chain).
    #[error("{0}")]
    Check(String),
}

/// One database's verification: a summary line, or why it failed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub spec: DatabaseSpec,
    pub result: Result<String, Failure>,
}

/// Verifies each database named by `target` (`VERIFY_JOBS` at once) and logs each result.
///
/// # Errors
/// As `run`.
pub fn verify_all(
    settings: &Settings,
    notifiers: &Notifiers,
    target: &str,
    filter: Option<&str>,
    remote: Option<&str>,
    cancel: &Cancel,
) -> anyhow::Result<Vec<Outcome>> {
    let specs: Vec<DatabaseSpec> = if target == "all" {
        // `*` specs expanded and the shard applied, as for a backup run.
        crate::fleet::resolve(settings, cancel).databases.iter().map(|d| d.spec.clone()).collect()
    } else {
        vec![target.parse().map_err(|e| UsageError(format!("-v {target}: {e}")))?]
    };
    let root = &settings.backup_dir;
    let _lock = RunLock::acquire(root, "verification")?;
    let backups = catalog::scan(root)?;
    let mirrors = match remote {
        Some(_) => crate::storage::from_settings(settings, cancel)?,
        None => Vec::new(),
    };
    let mirror = remote.map(|name| fetch::pick_mirror(&mirrors, name)).transpose()?;
    let run_id = crate::model::run::run_id("verify-", Utc::now());
    let phases = Phases::new(&settings.hooks, &settings.engines, cancel);
    // One throwaway server per engine and major for the whole run, shared by the databases
    // checked at once (`VERIFY_JOBS`); stopped when the pool and the last check let go.
    let pool = ServerPool::default();
    // A staged download folder serves one database at a time: --remote checks one by one.
    let at_once = if mirror.is_some() { 1 } else { settings.restore.verify_databases };
    let run = VerifyRun {
        settings,
        notifiers,
        filter,
        mirror,
        backups: &backups,
        run_id: &run_id,
        phases,
        pool,
        at_once,
        cancel,
    };
    // Two databases of one name (on two hosts) never load into the shared server at once.
    let name = |s: &DatabaseSpec| format!("{}/{}", s.engine.name(), s.database);
    Ok(crate::system::workers::run_capped(&specs, at_once, 1, name, |spec| run.database(spec))
        .into_iter()
        .flatten()
        .collect())
}

/// What the databases of one verification run share.
struct VerifyRun<'a> {
    settings: &'a Settings,
    notifiers: &'a Notifiers,
    filter: Option<&'a str>,
    mirror: Option<&'a dyn crate::storage::Storage>,
    backups: &'a [BackupFile],
    run_id: &'a str,
    phases: Phases<'a>,
    pool: ServerPool,
    /// Databases checked at once (`VERIFY_JOBS`; 1 with `--remote`).
    at_once: usize,
    cancel: &'a Cancel,
}

impl VerifyRun<'_> {
    /// One database, inside its verify hooks; `None` when the run was interrupted before it.
    fn database(&self, spec: &DatabaseSpec) -> Option<Outcome> {
        let (settings, root, filter, cancel) = (self.settings, &self.settings.backup_dir, self.filter, self.cancel);
        let _span = info_span!("verify", database = %spec).entered();
        if cancel.is_cancelled() {
            return None;
        }
        let db = settings.database_for(spec);
        let ctx = hooks::Context { run_id: self.run_id, database: Some(&db), ..Default::default() };
        let result = self.phases.around(Phase::Verify, &ctx, || {
            let checks = || -> anyhow::Result<String> {
                let fetched = match self.mirror {
                    Some(m) => Some(fetch::fetch(root, m, &spec.core_name(), filter, false)?),
                    None => None,
                };
                let choice = match &fetched {
                    Some(f) => f.choice.clone(),
                    None => choose(self.backups, root, &spec.core_name(), filter)?,
                };
                let (mut summary, verified_in) = self.one(spec, &choice, filter.is_none())?;
                summary.push_str(&self.rehearse(spec, &choice, verified_in));
                if settings.restore.verify_drill && filter.is_none() && fetched.is_none() {
                    summary.push_str(&self.drill(spec, choice.path())?);
                }
                Ok(summary)
            };
            checks().map_err(|e| {
                if cancel.is_cancelled() { Failure::Interrupted } else { Failure::Check(format!("{e:#}")) }
            })
        });
        match &result {
            Ok(summary) => {
                info!(summary = %summary, peak_rss_kb = crate::system::usage::peak_rss_kb(), "Verification succeeded.")
            }
            Err(reason) => error!(error = %reason, "Verification failed."),
        }
        let text = result.clone().map_err(|e| e.to_string());
        self.notifiers.notify(event::verification(&spec.to_string(), &text));
        Some(Outcome { spec: spec.clone(), result })
    }
}

impl VerifyRun<'_> {
    /// A restore drill (`VERIFY_DRILL=true`): besides the newest, one older backup of the
    /// database is verified each run — the one whose last verification is oldest, or that was
    /// never verified — across daily, weekly and monthly, so long-kept backups are proved again.
    fn drill(&self, spec: &DatabaseSpec, newest: &Path) -> anyhow::Result<String> {
        let Some(older) = drill_candidate(self.backups, &spec.core_name(), newest) else {
            return Ok("; no older backup to drill".into());
        };
        info!(path = %older.path.display(), "Restore drill of an older backup.");
        let (summary, _) = self
            .one(spec, &Choice::Catalog(Box::new(older.clone())), false)
            .with_context(|| format!("restore drill of {}", older.path.display()))?;
        Ok(format!("; restore drill: {summary}"))
    }

    /// Checks one backup: freshness, checksum, completeness, then a restore into the run's
    /// throwaway server; the result is recorded in its manifest. Returns the summary and the
    /// major it was verified in.
    fn one(&self, spec: &DatabaseSpec, choice: &Choice, fresh_check: bool) -> anyhow::Result<(String, Option<u32>)> {
        let settings = self.settings;
        let path = choice.path().to_path_buf();
        if fresh_check {
            check_fresh(settings, &path)?;
        }
        info!(path = %path.display(), "Verifying backup.");
        let started = Instant::now();
        let root = &settings.backup_dir;
        let result = open::check(root, choice, &spec.engine, false, &settings.keys)
            .and_then(|checked| Ok((checked.integrity, self.load(spec, &checked.path, checked.size, None)?)));
        let duration_ms = started.elapsed().as_millis() as u64;
        if let Choice::Catalog(b) = choice
            && let Err(e) = manifest::add_verification(root, b.key(), b.size, {
                let integrity = match &result {
                    Ok((Integrity::ChecksumMatched, _)) => "checksum",
                    Ok((Integrity::StreamDecoded, _)) => "stream",
                    Err(_) => "",
                };
                record_for(result.as_ref().map(|(_, r)| r).map_err(|e| format!("{e:#}")), integrity, duration_ms)
            })
        {
            error!(error = %format!("{e:#}"), "Could not record the verification in the manifest.");
        }
        let (_, report) = result.with_context(|| format!("backup {}", path.display()))?;
        let server = match (report.server_major, &report.note) {
            (_, Some(note)) => format!(" ({note})"),
            (Some(major), None) => format!(" (in PostgreSQL {major}, the source's major)"),
            (None, None) => String::new(),
        };
        let summary = format!(
            "{}: {} tables in {} schemas, {}, {} restored, errors=0, {} warnings, {}{server}",
            path.display(),
            report.tables,
            report.schemas.len(),
            report.restore.counts.describe(),
            human::bytes(report.database_size),
            report.restore.warnings.len(),
            human::age(std::time::Duration::from_millis(duration_ms))
        );
        Ok((summary, report.server_major))
    }

    /// The upgrade rehearsal (`VERIFY_UPGRADE`): the backup just verified in `verified_in`
    /// is restored again into the newest installed PostgreSQL major, when that is newer, at
    /// most once per database per day unless `always`. Recorded apart in the manifest
    /// (`upgrade_rehearsals`); a failure is a WARN naming the first error, never a failed
    /// verification. Returns the summary's tail.
    fn rehearse(&self, spec: &DatabaseSpec, choice: &Choice, verified_in: Option<u32>) -> String {
        let settings = self.settings;
        let (Some(verified_in), Choice::Catalog(b)) = (verified_in, choice) else { return String::new() };
        let newest = settings.engines.postgres().installed().server_majors().last().copied();
        let Some(newest) = newest.filter(|n| *n > verified_in) else { return String::new() };
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let done_today = || {
            self.backups
                .iter()
                .filter(|f| f.core == b.core)
                .filter_map(|f| f.manifest.as_ref())
                .any(|m| m.upgrade_rehearsals.iter().any(|r| r.verified_at.starts_with(&today)))
        };
        match settings.restore.verify_upgrade {
            Rehearsal::Off => return String::new(),
            Rehearsal::Daily if done_today() => {
                return format!("; upgrade rehearsal in PostgreSQL {newest}: done today");
            }
            Rehearsal::Daily | Rehearsal::Always => {}
        }
        info!(path = %b.path.display(), major = newest, "Upgrade rehearsal: restoring into the newest installed major.");
        let started = Instant::now();
        let result = self.load(spec, &b.path, b.size, Some(newest));
        let duration_ms = started.elapsed().as_millis() as u64;
        // The file's integrity was checked by the verification just before.
        let mut record = record_for(result.as_ref().map_err(|e| format!("{e:#}")), "", duration_ms);
        record.server_major = Some(newest);
        if let Err(e) = manifest::add_rehearsal(&settings.backup_dir, b.key(), b.size, record) {
            error!(error = %format!("{e:#}"), "Could not record the upgrade rehearsal in the manifest.");
        }
        match result {
            Ok(_) => format!("; upgrade rehearsal in PostgreSQL {newest}: ok"),
            Err(e) => {
                let first = format!("{e:#}");
                warn!(major = newest, error = %first, "Upgrade rehearsal failed: this backup does not load into the newest major (the verification itself passed).");
                format!("; upgrade rehearsal in PostgreSQL {newest} FAILED: {first}")
            }
        }
    }

    /// Decodes the backup at `path` (`size` bytes, checked before) and restores it into the
    /// run's throwaway server of `server_major` (the source's major when `None`).
    fn load(
        &self,
        spec: &DatabaseSpec,
        path: &Path,
        size: u64,
        server_major: Option<u32>,
    ) -> anyhow::Result<VerifyReport> {
        let settings = self.settings;
        let engine = settings
            .engines
            .get(&spec.engine)
            .ok_or_else(|| anyhow!("this build cannot verify {} databases", spec.engine.name()))?;
        let opts = VerifyOptions {
            server: settings.throwaway_options(),
            schemas: settings.table_schema.clone(),
            jobs: sessions(settings.restore.verify_sessions(), self.at_once),
            server_major,
        };
        let opened = open::open(path, size, "verifying", &settings.keys)?;
        verify_in(engine, &self.pool, &spec.database, opened.sql, &opts, self.cancel)
    }
}

/// The older backup whose last verification is oldest (never verified first, then the oldest
/// backup among those).
pub fn drill_candidate<'a>(backups: &'a [BackupFile], core: &str, newest: &Path) -> Option<&'a BackupFile> {
    backups.iter().filter(|b| b.core == core && !b.in_progress && !b.known_incomplete() && b.path != newest).min_by(
        |a, b| {
            let last =
                |f: &BackupFile| f.manifest.as_ref().and_then(|m| m.last_verification()).map(|v| v.verified_at.clone());
            last(a).cmp(&last(b)).then(a.sort_key().cmp(&b.sort_key()))
        },
    )
}

/// Load sessions per database when `at_once` databases share the throwaway server: within
/// its default 100 connections (each database also holds one for its queries).
fn sessions(configured: usize, at_once: usize) -> usize {
    configured.min((90 / at_once.max(1)).saturating_sub(1)).max(1)
}

/// Fails when the newest backup is older than the staleness limit (upstream issue #134).
fn check_fresh(settings: &Settings, path: &Path) -> anyhow::Result<()> {
    let now = Utc::now();
    let Some(limit) = settings.verify_max_age(now) else { return Ok(()) };
    let Some(parsed) = path.file_name().and_then(|n| layout::parse_file_name(&n.to_string_lossy())) else {
        return Ok(());
    };
    let age = (settings.zone.local(now) - parsed.timestamp).to_std().unwrap_or_default();
    if age > limit {
        bail!(
            "the newest backup ({}) is {} old, more than the limit of {} (VERIFY_MAX_AGE): backups may have stopped",
            path.display(),
            human::age(age),
            human::age(limit)
        );
    }
    Ok(())
}

/// The record of one verification (or rehearsal): the report's figures, or the error.
fn record_for(result: Result<&VerifyReport, String>, integrity: &str, duration_ms: u64) -> Verification {
    let mut record = Verification {
        verified_at: Utc::now().to_rfc3339(),
        ok: result.is_ok(),
        error: None,
        tables: 0,
        rows: 0,
        schemas: vec![],
        database_size_bytes: 0,
        duration_ms,
        integrity: integrity.to_string(),
        server_major: None,
        note: None,
    };
    match result {
        Ok(report) => {
            record.tables = report.tables;
            record.rows = report.restore.counts.rows;
            record.schemas = report.schemas.clone();
            record.database_size_bytes = report.database_size;
            record.server_major = report.server_major;
            record.note = report.note.clone();
        }
        Err(e) => record.error = Some(e),
    }
    record
}

#[cfg(test)]
mod tests {
    #[test]
    fn load_sessions_fit_the_shared_servers_connections() {
        use super::sessions;
        assert_eq!(sessions(4, 1), 4);
        assert_eq!(sessions(64, 1), 64);
        assert_eq!(sessions(4, 8), 4);
        assert_eq!(sessions(16, 8), 10);
        for at_once in 1..=32 {
            let s = sessions(64, at_once);
            assert!(s >= 1 && at_once * (s + 1) <= 97, "{at_once} × ({s} + 1)");
        }
    }
}
