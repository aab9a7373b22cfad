//! One backup run over every configured database: lock, back up each database in turn (one
//! failing does not stop the others), apply retention for each success, and report.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use tracing::{error, info, info_span, warn};

use crate::cancel::{Cancel, Interrupted};
use crate::catalog;
use crate::config::Settings;
use crate::engine;
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

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    pub databases: Vec<DatabaseReport>,
    pub interrupted: bool,
    pub duration: Duration,
}

impl RunReport {
    /// True when every database was backed up and retention had no error.
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self.databases.iter().all(|d| {
                matches!(d.outcome, Outcome::Written(_))
                    && d.prune_errors.is_empty()
                    && d.mirrors.iter().all(|m| m.error.is_none())
            })
    }
}

/// Runs one backup of every database in `settings`.
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
    let run_date = settings.zone.local(Utc::now()).date();
    let class = layout::classify(run_date, &settings.policy);
    let dir = layout::run_dir(&settings.backup_dir, class, run_date);
    info!(folder = %dir.display(), databases = settings.databases.len(), "Starting backup run.");
    let mut written_paths = Vec::new();
    let mut reports = Vec::new();
    for db in &settings.databases {
        let span = info_span!("backup", db = %db.spec);
        let _enter = span.enter();
        if cancel.is_cancelled() {
            reports.push(DatabaseReport {
                spec: db.spec.clone(),
                outcome: Outcome::NotAttempted,
                pruned: vec![],
                prune_errors: vec![],
                mirrors: vec![],
            });
            continue;
        }
        let Some(engine) = engine::for_kind(&db.spec.engine, &settings.engine) else {
            let msg = format!("no engine for {} databases in this build", db.spec.engine.name());
            error!(error = %msg, "Backup failed.");
            reports.push(DatabaseReport {
                spec: db.spec.clone(),
                outcome: Outcome::Failed(msg),
                pruned: vec![],
                prune_errors: vec![],
                mirrors: vec![],
            });
            continue;
        };
        info!("Starting backup.");
        let timestamp = fresh_timestamp(settings, &dir, &db.spec.core_name());
        let outcome = match pipeline::backup_one(db, engine.as_ref(), &dir, timestamp, settings.compression, cancel) {
            Ok(w) => {
                info!(path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64, "Backup written.");
                written_paths.push(w.path.clone());
                Outcome::Written(w)
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() || cancel.is_cancelled() => {
                warn!("Backup interrupted; partial file removed.");
                Outcome::Failed("interrupted by a shutdown signal".into())
            }
            Err(e) => {
                let msg = format!("{e:#}");
                error!(error = %msg, "Backup failed; partial file removed, older backups untouched.");
                Outcome::Failed(msg)
            }
        };
        let mirrored = match &outcome {
            Outcome::Written(w) => {
                mirror_database(mirrors, settings, &db.spec.to_string(), &db.spec.core_name(), &w.path, notifiers)
            }
            _ => vec![],
        };
        let (pruned, prune_errors) = match &outcome {
            Outcome::Written(_) => apply_retention(settings, &db.spec, &written_paths),
            _ => {
                // Leave no empty dated folder behind a failure.
                catalog::remove_empty_dirs(&settings.backup_dir, Some(&dir));
                (vec![], vec![])
            }
        };
        notify_outcome(notifiers, &db.spec, &outcome, &pruned, &prune_errors);
        reports.push(DatabaseReport { spec: db.spec.clone(), outcome, pruned, prune_errors, mirrors: mirrored });
    }
    let report = RunReport { databases: reports, interrupted: cancel.is_cancelled(), duration: started.elapsed() };
    log_summary(&report);
    Ok(report)
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
    let plan = retention::plan(&backups, &settings.policy, &cores, protect, SystemTime::now());
    let (mut pruned, mut errors) = (Vec::new(), Vec::new());
    for d in plan {
        match &d.reason {
            Reason::StalePartial => {
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
    let ok = report.databases.iter().filter(|d| matches!(d.outcome, Outcome::Written(_))).count();
    info!(
        succeeded = ok,
        failed = report.databases.len() - ok,
        duration_ms = report.duration.as_millis() as u64,
        peak_rss_kb = peak_rss_kb(),
        "Backup run finished."
    );
}

/// This process's peak resident memory in KiB (children not included), for the run summary.
fn peak_rss_kb() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map(|u| u.max_rss()).unwrap_or(-1)
}
