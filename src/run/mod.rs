//! One backup run over every configured database: lock, remove partial files of killed runs,
//! then for each database in turn (one failing does not stop the others) the steps
//! dump → copy → prune → notify, each inside its hooks; then the run's own hooks and a
//! summary. `Run::backup_database` is the whole per-database pipeline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{error, info, info_span, warn};

use crate::anomaly;
use crate::cancel::{Cancel, Interrupted};
use crate::catalog;
use crate::config::Settings;
use crate::database::Database;
use crate::engine;
use crate::hooks::{Context, HookFailure, Phase, Phases, Stage};
use crate::layout;
use crate::lock::RunLock;
use crate::manifest::{self, Anomaly};
use crate::mirror::{MirrorOutcome, mirror_database};
use crate::notify::{Notifiers, event};
use crate::pipeline::{self, Written};
use crate::prune::{self, PruneReport};
use crate::retention::{self, Deletion, Reason};
use crate::spec::DatabaseSpec;
use crate::storage::Storage;
use crate::storage::local::{LocalStorage, objects};

mod jobs;
mod steps;
use steps::{Copied, CopyError, PruneError, Pruned};

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
    fn new(spec: &DatabaseSpec, outcome: Outcome) -> DatabaseReport {
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
    let _locks = match settings.shard {
        Some(shard) => {
            let (folder, own) =
                RunLock::acquire_shard(&settings.backup_dir, &format!("backup run, shard {shard}"), shard)?;
            (folder, Some(own))
        }
        None => (RunLock::acquire(&settings.backup_dir, "backup run")?, None),
    };
    // `*` specs expanded, the shard applied: the databases of this run.
    let fleet = crate::fleet::resolve(settings, cancel);
    let run = Run::new(settings, mirrors, notifiers, cancel);
    run.remove_dead_partials(settings.shard.map(|_| &fleet.databases[..]));
    let shard = settings.shard.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    info!(folder = %run.dir.display(), databases = fleet.databases.len(), shard = %shard, run_id = %run.id, "Starting backup run.");
    let ctx = run.context(None);
    let pre = run.phases.run(Phase::Run, Stage::Pre, &ctx);
    let mut written: Vec<String> = Vec::new();
    let mut databases = Vec::new();
    for (spec, why) in &fleet.unlisted {
        let error = format!("could not list the databases on {spec}: {why}");
        tracing::error!(database = %spec, error = %error, "Backup failed.");
        notifiers.notify(event::backup_failed(&spec.to_string(), &error));
        databases.push(DatabaseReport::new(spec, Outcome::Failed(Failure::Backup(error))));
    }
    let (jobs, per_host) = (settings.jobs.max(1), settings.jobs_per_host.max(1));
    match &pre {
        Ok(()) if jobs > 1 && fleet.databases.len() > 1 => {
            databases.extend(run.backup_concurrently(&fleet.databases, jobs, per_host));
        }
        Ok(()) => databases.extend(fleet.databases.iter().map(|db| run.backup_database(db, &mut written))),
        Err(e) => databases
            .extend(fleet.databases.iter().map(|db| DatabaseReport::new(&db.spec, Outcome::Failed(e.clone().into())))),
    }
    let mut report = RunReport {
        databases,
        interrupted: cancel.is_cancelled(),
        duration: started.elapsed(),
        errors: vec![],
        coverage: vec![],
    };
    // Databases that exist but nothing backs up: once per run (shard 0 of a fleet).
    if settings.shard.is_none_or(|s| s.index == 0) && !cancel.is_cancelled() {
        report.coverage = crate::fleet::audit(settings, cancel);
        crate::fleet_audit::report(&settings.backup_dir, &report.coverage, notifiers);
    }
    report.errors.extend(pre.err());
    let status = if report.succeeded() { "success" } else { "failure" };
    let end = Context { status: Some(status), ..ctx.clone() };
    let stage = if report.succeeded() { Stage::Post } else { Stage::OnError };
    report.errors.extend(run.phases.run(Phase::Run, stage, &end).err());
    let _ = run.phases.run(Phase::Run, Stage::Finally, &end);
    for e in &report.errors {
        notifiers.notify(event::command_failed("backup run (run hooks)", &e.to_string()));
    }
    log_summary(&report);
    Ok(report)
}

/// What the steps of one run share.
struct Run<'a> {
    settings: &'a Settings,
    mirrors: &'a [Box<dyn Storage>],
    notifiers: &'a Notifiers,
    cancel: &'a Cancel,
    phases: Phases<'a>,
    local: LocalStorage,
    /// The dated folder this run writes into.
    dir: PathBuf,
    id: String,
}

impl<'a> Run<'a> {
    fn new(
        settings: &'a Settings,
        mirrors: &'a [Box<dyn Storage>],
        notifiers: &'a Notifiers,
        cancel: &'a Cancel,
    ) -> Self {
        let date = settings.zone.local(Utc::now()).date();
        Run {
            settings,
            mirrors,
            notifiers,
            cancel,
            phases: Phases::new(&settings.hooks, &settings.engine, cancel),
            local: LocalStorage::new(&settings.backup_dir),
            dir: layout::run_dir(&settings.backup_dir, layout::classify(date, &settings.policy), date),
            id: run_id("", Utc::now()),
        }
    }

    fn context(&self, database: Option<&'a Database>) -> Context<'_> {
        Context { run_id: &self.id, database, ..Default::default() }
    }

    /// One database: dump, guard, copy, prune, notify — each step inside its phase's hooks.
    /// `written` holds the keys this run wrote so far (retention never deletes them).
    fn backup_database(&self, db: &'a Database, written: &mut Vec<String>) -> DatabaseReport {
        let _span = info_span!("backup", database = %db.spec).entered();
        if self.cancel.is_cancelled() {
            return DatabaseReport::new(&db.spec, Outcome::NotAttempted);
        }
        let ctx = self.context(Some(db));
        let mut report = match self.phases.around(Phase::Backup, &ctx, || self.dump(db)) {
            Ok(w) => DatabaseReport::new(&db.spec, Outcome::Written(w)),
            Err(e) => DatabaseReport::new(&db.spec, Outcome::Failed(e)),
        };
        if let Outcome::Written(w) = &report.outcome {
            written.push(self.key(w));
            report.anomaly = self.guard(w);
            let ctx = Context { file: Some(&w.path), size: Some(w.bytes), ..ctx };
            report.mirrors = self.copy(db, w, &ctx);
            let pruned = self.prune(db, written, &ctx);
            (report.pruned, report.prune_errors) = (pruned.deleted, pruned.failed);
        } else {
            // Leave no empty dated folder behind a failure.
            catalog::remove_empty_dirs(&self.settings.backup_dir, Some(&self.dir));
        }
        self.notify(&report);
        report
    }

    /// Step 1: the dump, into a compressed, checksummed, atomically committed file.
    fn dump(&self, db: &Database) -> Result<Written, Failure> {
        let Some(engine) = engine::for_kind(&db.spec.engine, &self.settings.engine) else {
            return Err(Failure::Backup(format!("no engine for {} databases in this build", db.spec.engine.name())));
        };
        info!("Starting backup.");
        let timestamp = fresh_timestamp(self.settings, &self.dir, &db.spec.core_name());
        // A live line for a person at a terminal (one database at a time); log lines otherwise.
        let live = std::io::IsTerminal::is_terminal(&std::io::stderr()) && self.settings.jobs <= 1;
        // The estimate costs a scan of the folder: only for a person watching.
        let expected = if live { self.previous_size(db) } else { None };
        let meter = crate::progress::Meter::for_dump(&db.spec.to_string(), expected, live);
        let format = pipeline::Format { progress: Some(&meter), ..self.format() };
        match pipeline::backup_one(
            db,
            engine.as_ref(),
            &self.settings.backup_dir,
            &self.dir,
            timestamp,
            &format,
            self.cancel,
        ) {
            Ok(w) => {
                info!(path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64, "Backup written.");
                Ok(w)
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() || self.cancel.is_cancelled() => {
                warn!("Backup interrupted; partial file removed.");
                Err(Failure::Interrupted)
            }
            Err(e) => {
                let msg = format!("{e:#}");
                error!(error = %msg, "Backup failed; partial file removed, older backups untouched.");
                Err(Failure::Backup(msg))
            }
        }
    }

    /// Step 1b: the anomaly guard: the new backup against the previous good one, recorded in
    /// its manifest before the copy (so mirrors carry it) and before retention (which holds
    /// the baseline). Best effort: a catalog that cannot be read only skips the check.
    fn guard(&self, w: &Written) -> Option<Anomaly> {
        let root = &self.settings.backup_dir;
        let backups = match catalog::scan(root) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "Anomaly check skipped: the backup folder could not be read.");
                return None;
            }
        };
        let key = self.key(w);
        let current = backups.iter().find(|b| b.key() == key)?;
        let found = anomaly::assess(&backups, current, &self.settings.anomaly)?;
        let findings: Vec<String> = found.findings.iter().map(ToString::to_string).collect();
        warn!(baseline = %found.baseline, findings = %findings.join("; "), "Anomaly: this backup differs sharply from the previous good one; retention keeps that one.");
        let mut m = current.manifest.clone()?;
        m.anomaly = Some(found.clone());
        if let Err(e) = manifest::write(root, &m) {
            warn!(error = %format!("{e:#}"), "The anomaly could not be recorded in the manifest.");
        }
        Some(found)
    }

    /// Step 2: copies to every mirror (the new backup, then catch-up of missed ones).
    fn copy(&self, db: &Database, w: &Written, ctx: &Context) -> Vec<MirrorOutcome> {
        if self.mirrors.is_empty() {
            return Vec::new();
        }
        let result = self.phases.around(Phase::Copy, ctx, || {
            let outcomes = mirror_database(
                self.mirrors,
                self.settings,
                &db.spec.to_string(),
                &db.spec.core_name(),
                &w.path,
                self.notifiers,
            );
            if outcomes.iter().all(|m| m.error.is_none()) {
                Ok(Copied(outcomes))
            } else {
                Err(CopyError::Mirrors(outcomes))
            }
        });
        match result {
            Ok(Copied(outcomes)) | Err(CopyError::Mirrors(outcomes)) => outcomes,
            Err(CopyError::Hook(h)) => {
                vec![MirrorOutcome {
                    mirror: "copy hooks".into(),
                    uploaded: vec![],
                    pruned: vec![],
                    locked: vec![],
                    error: Some(h.to_string()),
                }]
            }
        }
    }

    /// Step 3: retention for this database on the local folder; never a backup of this run.
    fn prune(&self, db: &Database, written: &[String], ctx: &Context) -> PruneReport {
        let result = self.phases.around(Phase::Prune, ctx, || {
            let skipped = |e: anyhow::Error| {
                PruneError::Failed(PruneReport {
                    failed: vec![format!("retention skipped: {e:#}")],
                    ..Default::default()
                })
            };
            let root = &self.settings.backup_dir;
            let backups = catalog::scan(root).map_err(skipped)?;
            let backups = prune::settle(root, backups, &db.spec.core_name(), &db.spec.engine, &self.settings.keys)
                .map_err(skipped)?;
            let cores = [db.spec.core_name()].into_iter().collect();
            let (plan, kept) = retention::plan_with_notes(&backups, &self.settings.policy, &cores, written);
            for k in &kept {
                info!(key = %k.key, why = k.why, "Kept beyond the retention count.");
            }
            let mut report = prune::apply(&self.local, &plan, &objects(&backups));
            report.kept = kept;
            if report.failed.is_empty() { Ok(Pruned(report)) } else { Err(PruneError::Failed(report)) }
        });
        match result {
            Ok(Pruned(r)) | Err(PruneError::Failed(r)) => r,
            Err(PruneError::Hook(h)) => PruneReport { failed: vec![h.to_string()], ..Default::default() },
        }
    }

    /// Step 4: the notification of this database's outcome.
    fn notify(&self, report: &DatabaseReport) {
        let db = report.spec.to_string();
        if let Some(a) = &report.anomaly {
            self.notifiers.notify(event::anomaly(&db, a));
        }
        match &report.outcome {
            Outcome::Written(w) => self.notifiers.notify(event::backup_succeeded(&db, w, &report.pruned)),
            Outcome::Failed(e) => self.notifiers.notify(event::backup_failed(&db, &e.to_string())),
            Outcome::NotAttempted => {}
        }
        for e in &report.prune_errors {
            self.notifiers.notify(event::retention_failed(&db, e));
        }
    }

    /// Removes every `.in_progress` file: the run holds the lock, so none of them is being
    /// written (their runs were killed), and the space they hold is needed now.
    /// Removes partial files left by killed runs: all of them, or (a shard, beside others
    /// that may be writing) only those of `own` databases.
    fn remove_dead_partials(&self, own: Option<&[Database]>) {
        let Ok(backups) = catalog::scan(&self.settings.backup_dir) else { return };
        let mine = |core: &str| own.is_none_or(|dbs| dbs.iter().any(|d| d.spec.core_name() == core));
        let plan: Vec<Deletion> = backups
            .iter()
            .filter(|b| b.in_progress && mine(&b.core))
            .map(|b| Deletion { key: b.key(), reason: Reason::DeadPartial })
            .collect();
        prune::apply(&self.local, &plan, &objects(&backups));
    }

    /// The previous complete backup's uncompressed size (its manifest), for the ETA.
    fn previous_size(&self, db: &Database) -> Option<u64> {
        let core = db.spec.core_name();
        catalog::scan(&self.settings.backup_dir)
            .ok()?
            .iter()
            .filter(|b| b.core == core && !b.in_progress)
            .filter_map(|b| b.manifest.as_ref()?.uncompressed_bytes)
            .next_back()
    }

    fn format(&self) -> pipeline::Format<'_> {
        let compression = self.settings.compression.shared(self.settings.jobs.max(1));
        pipeline::Format { compression, recipients: self.settings.encryption.as_ref(), progress: None }
    }

    fn key(&self, w: &Written) -> String {
        let rel = w.path.strip_prefix(&self.settings.backup_dir).unwrap_or(&w.path);
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }
}

/// A run's id: `<kind->YYYYMMDDTHHMMSS-<pid>` (hooks see it as `BACKUP_RUN_ID`).
pub fn run_id(kind: &str, now: chrono::DateTime<Utc>) -> String {
    format!("{kind}{}-{}", now.format("%Y%m%dT%H%M%S"), std::process::id())
}

/// Now, in `TZ`, at a second no backup of `core` in `dir` is named with yet: two runs in the
/// same second (a quick re-run, back-to-back fires) wait for the next second instead of
/// failing on an existing name.
fn fresh_timestamp(settings: &Settings, dir: &std::path::Path, core: &str) -> chrono::NaiveDateTime {
    let ext = pipeline::Format {
        compression: settings.compression,
        recipients: settings.encryption.as_ref(),
        progress: None,
    }
    .extension();
    let mut ts = settings.zone.local(Utc::now());
    for _ in 0..3 {
        let name = layout::file_name(core, ts, &ext);
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

fn log_summary(report: &RunReport) {
    for d in &report.databases {
        match &d.outcome {
            Outcome::Written(w) => info!(
                database = %d.spec, path = %w.path.display(), bytes = w.bytes, duration_ms = w.duration.as_millis() as u64,
                pruned = d.pruned.len(), "Summary: backed up."
            ),
            Outcome::Failed(e) => error!(database = %d.spec, error = %e, "Summary: FAILED."),
            Outcome::NotAttempted => warn!(database = %d.spec, "Summary: not attempted (interrupted)."),
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
