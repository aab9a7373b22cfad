//! What a run reports: per database, what happened (written, failed, skipped because another
//! process holds it, not attempted), what retention and the mirrors did; and the summary lines
//! the log ends with.

use std::time::Duration;

use tracing::{error, info, warn};

use crate::backup::hooks::HookFailure;
use crate::backup::mirror::MirrorOutcome;
use crate::backup::pipeline::Written;
use crate::catalog::manifest::Anomaly;
use crate::model::spec::DatabaseSpec;

/// Why a database's backup failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Hook(#[from] HookFailure),
    #[error("interrupted by a shutdown signal")]
    Interrupted,
    /// The dump, its compression or its file (the full error chain).
    #[error("{0}")]
    Backup(String),
}

/// What happened to one database.
#[derive(Debug)]
pub enum Outcome {
    Written(Written),
    Failed(Failure),
    /// Not attempted because the run was interrupted.
    NotAttempted,
    /// Left to the process that holds its lock (`BACKUP_WHEN_LOCKED=skip`): not a failure.
    Skipped {
        holder: String,
    },
}

/// One database's line in the report.
#[derive(Debug)]
pub struct DatabaseReport {
    pub spec: DatabaseSpec,
    pub outcome: Outcome,
    /// Keys of the backups deleted by retention after this backup.
    pub pruned: Vec<String>,
    /// Retention problems (the backup itself is fine).
    pub prune_errors: Vec<String>,
    /// What each mirror did.
    pub mirrors: Vec<MirrorOutcome>,
    /// What the anomaly guard found against the previous good backup.
    pub anomaly: Option<Anomaly>,
}

impl DatabaseReport {
    pub(super) fn new(spec: &DatabaseSpec, outcome: Outcome) -> DatabaseReport {
        DatabaseReport {
            spec: spec.clone(),
            outcome,
            pruned: vec![],
            prune_errors: vec![],
            mirrors: vec![],
            anomaly: None,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    pub databases: Vec<DatabaseReport>,
    pub interrupted: bool,
    pub duration: Duration,
    /// Run-level failures (a `run` hook with `on-error = "fail"`).
    pub errors: Vec<HookFailure>,
    /// The coverage audit of this run (empty for shards other than 0).
    pub coverage: Vec<crate::fleet::Coverage>,
    /// Mirrors given up during the run: name, since when, why.
    pub mirrors_down: Vec<(String, chrono::DateTime<chrono::Utc>, String)>,
}

impl RunReport {
    /// True when every database was backed up and retention had no error.
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self.errors.is_empty()
            && self.databases.iter().all(|d| {
                matches!(d.outcome, Outcome::Written(_) | Outcome::Skipped { .. })
                    && d.prune_errors.is_empty()
                    && d.mirrors.iter().all(|m| m.error.is_none())
            })
    }
}

pub(super) fn log_summary(report: &RunReport) {
    for d in &report.databases {
        match &d.outcome {
            Outcome::Written(w) => info!(
                database = %d.spec, path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64,
                pruned = d.pruned.len(), "Summary: backed up."
            ),
            Outcome::Failed(e) => error!(database = %d.spec, error = %e, "Summary: FAILED."),
            Outcome::NotAttempted => warn!(database = %d.spec, "Summary: not attempted (interrupted)."),
            Outcome::Skipped { holder } => {
                warn!(database = %d.spec, holder = %holder, "Summary: skipped (another process is backing it up).")
            }
        }
        for e in &d.prune_errors {
            error!(database = %d.spec, error = %e, "Summary: retention failed.");
        }
        for m in &d.mirrors {
            match &m.error {
                None => {
                    info!(database = %d.spec, storage = %m.mirror, uploaded = m.uploaded.len(), pruned = m.pruned.len(), locked = m.locked.len(), "Summary: mirrored.")
                }
                Some(e) => {
                    error!(database = %d.spec, storage = %m.mirror, error = %e, "Summary: mirror FAILED (local backup kept).")
                }
            }
        }
    }
    for e in &report.errors {
        error!(error = %e, "Summary: run hook failed.");
    }
    for (mirror, since, reason) in &report.mirrors_down {
        error!(storage = %mirror, since = %since.to_rfc3339(), error = %reason, "Summary: mirror DOWN for the rest of the run (the next run catches up its copies).");
    }
    let count = |f: fn(&Outcome) -> bool| report.databases.iter().filter(|d| f(&d.outcome)).count();
    info!(
        succeeded = count(|o| matches!(o, Outcome::Written(_))),
        failed = count(|o| matches!(o, Outcome::Failed(_))),
        skipped = count(|o| matches!(o, Outcome::Skipped { .. })),
        duration_ms = report.duration.as_millis() as u64,
        peak_rss_kb = crate::system::usage::peak_rss_kb(),
        "Backup run finished."
    );
}
