//! One backup run over every configured database: lock, back up each database in turn (one
//! failing does not stop the others), apply retention for each success, and report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{error, info, info_span, warn};

use crate::cancel::{Cancel, Interrupted};
use crate::catalog;
use crate::config::Settings;
use crate::database::Database;
use crate::engine;
use crate::hooks::{self, Phase, Stage};
use crate::layout;
use crate::lock::RunLock;
use crate::mirror::{MirrorOutcome, mirror_database};
use crate::notify::{Notifiers, event};
use crate::pipeline::{self, Written};
use crate::retention::{self, Reason};
use crate::spec::DatabaseSpec;
use crate::storage::Storage;

/// What happened to one database.
#[derive(Debug)]
pub enum Outcome {
    Written(Written),
    Failed(String),
    /// Not attempted because the run was interrupted.
    NotAttempted,
}

/// One database's line in the report.
#[derive(Debug)]
pub struct DatabaseReport {
    pub spec: DatabaseSpec,
    pub outcome: Outcome,
    /// Backups deleted by retention after this backup.
    pub pruned: Vec<PathBuf>,
    /// Retention problems (the backup itself is fine).
    pub prune_errors: Vec<String>,
    /// What each mirror did.
    pub mirrors: Vec<MirrorOutcome>,
}

impl DatabaseReport {
    fn new(spec: &DatabaseSpec, outcome: Outcome) -> DatabaseReport {
        DatabaseReport { spec: spec.clone(), outcome, pruned: vec![], prune_errors: vec![], mirrors: vec![] }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    pub databases: Vec<DatabaseReport>,
    pub interrupted: bool,
    pub duration: Duration,
    /// Run-level failures (a `run` hook with `on-error = "fail"`).
    pub errors: Vec<String>,
}

impl RunReport {
    /// True when every database was backed up and retention had no error.
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self.errors.is_empty()
            && self.databases.iter().all(|d| {
                matches!(d.outcome, Outcome::Written(_))
                    && d.prune_errors.is_empty()
                    && d.mirrors.iter().all(|m| m.error.is_none())
            })
    }
}

/// Runs one backup of every database in `settings`, inside the `run` hooks.
///
/// # Errors
/// Only when the run cannot start (lock held, backup folder unusable); per-database failures
/// are in the report.
pub fn run_backups(
    settings: &Settings,
    mirrors: &[Box<dyn Storage>],
    notifiers: &Notifiers,
    cancel: &Cancel,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let _lock = RunLock::acquire(&settings.backup_dir, "backup run")?;
    remove_dead_partials(&settings.backup_dir);
    let run_id = format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S"), std::process::id());
    let run_date = settings.zone.local(Utc::now()).date();
    let dir = layout::run_dir(&settings.backup_dir, layout::classify(run_date, &settings.policy), run_date);
    info!(folder = %dir.display(), databases = settings.databases.len(), run_id, "Starting backup run.");
    let hooks = &settings.hooks;
    let ctx = hooks::Context { run_id: &run_id, ..Default::default() };
    let pre = hooks.run(Phase::Run, Stage::Pre, &ctx, &settings.engine, cancel);
    let mut written = Vec::new();
    let databases = settings
        .databases
        .iter()
        .map(|db| match &pre {
            Err(e) => DatabaseReport::new(&db.spec, Outcome::Failed(e.clone())),
            Ok(()) => backup_database(settings, db, &dir, &run_id, mirrors, notifiers, &mut written, cancel),
        })
        .collect();
    let mut report = RunReport {
        databases,
        interrupted: cancel.is_cancelled(),
        duration: started.elapsed(),
        errors: pre.err().into_iter().collect(),
    };
    let stage = if report.succeeded() { Stage::Post } else { Stage::OnError };
    let status = if report.succeeded() { "success" } else { "failure" };
    let end = hooks::Context { status: Some(status), ..ctx.clone() };
    if let Err(e) = hooks.run(Phase::Run, stage, &end, &settings.engine, cancel) {
        report.errors.push(e);
    }
    let _ = hooks.run(Phase::Run, Stage::Finally, &end, &settings.engine, cancel);
    for e in &report.errors {
        notifiers.notify(event::command_failed("backup run (run hooks)", e));
    }
    log_summary(&report);
    Ok(report)
}

/// One database: the `backup` phase (dump), then `copy` (mirrors) and `prune` (retention),
/// each inside its hooks; then the notification.
#[allow(clippy::too_many_arguments)]
fn backup_database(
    settings: &Settings,
    db: &Database,
    dir: &Path,
    run_id: &str,
    mirrors: &[Box<dyn Storage>],
    notifiers: &Notifiers,
    written: &mut Vec<PathBuf>,
    cancel: &Cancel,
) -> DatabaseReport {
    let span = info_span!("backup", db = %db.spec);
    let _enter = span.enter();
    if cancel.is_cancelled() {
        return DatabaseReport::new(&db.spec, Outcome::NotAttempted);
    }
    let ctx = hooks::Context { run_id, database: Some(db), ..Default::default() };
    let hooks = &settings.hooks;
    let dumped = hooks.around(
        Phase::Backup,
        &ctx,
        &settings.engine,
        cancel,
        || dump(settings, db, dir, cancel),
        |w| (Some(w.path.clone()), Some(w.bytes)),
    );
    let mut report = match dumped {
        Ok(w) => {
            written.push(w.path.clone());
            DatabaseReport::new(&db.spec, Outcome::Written(w))
        }
        Err(e) => {
            // Leave no empty dated folder behind a failure.
            catalog::remove_empty_dirs(&settings.backup_dir, Some(dir));
            DatabaseReport::new(&db.spec, Outcome::Failed(e))
        }
    };
    if let Outcome::Written(w) = &report.outcome {
        let ctx = hooks::Context { file: Some(&w.path), size: Some(w.bytes), ..ctx.clone() };
        if !mirrors.is_empty() {
            let mut copied = Vec::new();
            let result = hooks.around(
                Phase::Copy,
                &ctx,
                &settings.engine,
                cancel,
                || {
                    copied = mirror_database(
                        mirrors,
                        settings,
                        &db.spec.to_string(),
                        &db.spec.core_name(),
                        &w.path,
                        notifiers,
                    );
                    let failed: Vec<String> = copied.iter().filter_map(|m| m.error.clone()).collect();
                    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
                },
                |_| (None, None),
            );
            if let (Err(e), true) = (result, copied.is_empty()) {
                copied.push(MirrorOutcome {
                    mirror: "copy hooks".into(),
                    uploaded: vec![],
                    pruned: vec![],
                    error: Some(e),
                });
            }
            report.mirrors = copied;
        }
        let result = hooks.around(
            Phase::Prune,
            &ctx,
            &settings.engine,
            cancel,
            || {
                let (pruned, errors) = apply_retention(settings, &db.spec, written);
                report.pruned = pruned;
                if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
            },
            |_| (None, None),
        );
        if let Err(e) = result {
            report.prune_errors.push(e);
        }
    }
    notify_outcome(notifiers, &db.spec, &report.outcome, &report.pruned, &report.prune_errors);
    report
}

/// The dump itself: engine → compressed, checksummed, atomic file.
fn dump(settings: &Settings, db: &Database, dir: &Path, cancel: &Cancel) -> Result<Written, String> {
    let Some(engine) = engine::for_kind(&db.spec.engine, &settings.engine) else {
        return Err(format!("no engine for {} databases in this build", db.spec.engine.name()));
    };
    info!("Starting backup.");
    let timestamp = fresh_timestamp(settings, dir, &db.spec.core_name());
    match pipeline::backup_one(db, engine.as_ref(), dir, timestamp, settings.compression, cancel) {
        Ok(w) => {
            info!(path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64, "Backup written.");
            Ok(w)
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() || cancel.is_cancelled() => {
            warn!("Backup interrupted; partial file removed.");
            Err("interrupted by a shutdown signal".into())
        }
        Err(e) => {
            let msg = format!("{e:#}");
            error!(error = %msg, "Backup failed; partial file removed, older backups untouched.");
            Err(msg)
        }
    }
}

/// Removes every `.in_progress` file: the caller holds the run lock, so none of them is being
/// written (their runs were killed), and the space they hold is needed now, before new dumps.
fn remove_dead_partials(root: &Path) {
    let Ok(backups) = catalog::scan(root) else { return };
    for b in backups.iter().filter(|b| b.in_progress) {
        warn!(path = %b.path.display(), bytes = b.size, "Removing a partial file left by a killed run.");
        if let Err(e) = catalog::delete_backup(root, &b.path) {
            error!(path = %b.path.display(), error = %format!("{e:#}"), "Could not remove a partial file.");
        }
    }
}

/// Now, in `TZ`, at a second no backup of `core` in `dir` is named with yet: two runs in the
/// same second (a quick re-run, back-to-back fires) wait for the next second instead of
/// failing on an existing name.
fn fresh_timestamp(settings: &Settings, dir: &std::path::Path, core: &str) -> chrono::NaiveDateTime {
    let ext = settings.compression.extension();
    let mut ts = settings.zone.local(Utc::now());
    for _ in 0..3 {
        let name = layout::file_name(core, ts, ext);
        let taken =
            [name.clone(), format!("{name}{}", layout::IN_PROGRESS_SUFFIX)].iter().any(|n| dir.join(n).exists());
        if !taken {
            break;
        }
        std::thread::sleep(Duration::from_millis(1000 - u64::from(Utc::now().timestamp_subsec_millis()).min(999)));
        ts = settings.zone.local(Utc::now());
    }
    ts
}

fn notify_outcome(
    notifiers: &Notifiers,
    spec: &DatabaseSpec,
    outcome: &Outcome,
    pruned: &[PathBuf],
    prune_errors: &[String],
) {
    let db = spec.to_string();
    match outcome {
        Outcome::Written(w) => notifiers.notify(event::backup_succeeded(&db, w, pruned)),
        Outcome::Failed(e) => notifiers.notify(event::backup_failed(&db, e)),
        Outcome::NotAttempted => {}
    }
    for e in prune_errors {
        notifiers.notify(event::retention_failed(&db, e));
    }
}

/// Prunes one database's backups after a successful backup. Failures are reported, not fatal.
fn apply_retention(settings: &Settings, spec: &DatabaseSpec, protect: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let root = &settings.backup_dir;
    let backups = match catalog::scan(root) {
        Ok(b) => b,
        Err(e) => return (vec![], vec![format!("retention skipped: {e:#}")]),
    };
    let cores = BTreeSet::from([spec.core_name()]);
    let plan = retention::plan(&backups, &settings.policy, &cores, protect);
    let (mut pruned, mut errors) = (Vec::new(), Vec::new());
    for d in plan {
        match &d.reason {
            Reason::DeadPartial => {
                warn!(path = %d.path.display(), "Removing a partial file left by an interrupted run.")
            }
            Reason::OverCount { group, keep } => {
                info!(path = %d.path.display(), group, keep, "Pruning backup.")
            }
        }
        match catalog::delete_backup(root, &d.path) {
            Ok(()) => pruned.push(d.path),
            Err(e) => {
                error!(error = format!("{e:#}"), "Pruning failed.");
                errors.push(format!("{e:#}"));
            }
        }
    }
    (pruned, errors)
}

fn log_summary(report: &RunReport) {
    for d in &report.databases {
        match &d.outcome {
            Outcome::Written(w) => info!(
                db = %d.spec, path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64,
                pruned = d.pruned.len(), "Summary: backed up."
            ),
            Outcome::Failed(e) => error!(db = %d.spec, error = %e, "Summary: FAILED."),
            Outcome::NotAttempted => warn!(db = %d.spec, "Summary: not attempted (interrupted)."),
        }
        for e in &d.prune_errors {
            error!(db = %d.spec, error = %e, "Summary: retention failed.");
        }
        for m in &d.mirrors {
            match &m.error {
                None => {
                    info!(db = %d.spec, storage = %m.mirror, uploaded = m.uploaded.len(), pruned = m.pruned.len(), "Summary: mirrored.")
                }
                Some(e) => {
                    error!(db = %d.spec, storage = %m.mirror, error = %e, "Summary: mirror FAILED (local backup kept).")
                }
            }
        }
    }
    for e in &report.errors {
        error!(error = %e, "Summary: run hook failed.");
    }
    let ok = report.databases.iter().filter(|d| matches!(d.outcome, Outcome::Written(_))).count();
    info!(
        succeeded = ok,
        failed = report.databases.len() - ok,
        duration_ms = report.duration.as_millis() as u64,
        peak_rss_kb = peak_rss_kb(),
        "Backup run finished."
    );
}

/// This process's peak resident memory in KiB (children not included), for summaries.
pub fn peak_rss_kb() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map(|u| u.max_rss()).unwrap_or(-1)
}
