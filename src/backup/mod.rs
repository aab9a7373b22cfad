//! One backup run over every configured database: lock, remove partial files of killed runs,
//! then for each database in turn (one failing does not stop the others) the steps
//! dump → copy → prune → notify, each inside its hooks; then the run's own hooks and a
//! summary. `Run::backup_database` is the whole per-database pipeline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{error, info, info_span, warn};

use crate::catalog;
use crate::catalog::anomaly;
use crate::catalog::layout;
use crate::catalog::lock::{NotTaken, RunLock, TIDYING, WhenLocked};
use crate::catalog::manifest::{self, Anomaly};
use crate::catalog::retention;
use crate::config::Settings;
use crate::model::database::Database;
use crate::notify::{Notifiers, event};
use crate::storage::Storage;
use crate::storage::local::{LocalStorage, objects};
use crate::storage::prune::{self, PruneReport};
use crate::system::cancel::{Cancel, Interrupted};
use hooks::{Context, Phase, Phases, Stage};
use mirror::{MirrorOutcome, mirror_database};
use pipeline::Written;

pub mod hooks;
mod jobs;
pub mod mirror;
pub mod pipeline;
mod report;
mod steps;
mod view;
use report::log_summary;
pub use report::{DatabaseReport, Failure, Outcome, RunReport};
use steps::{Copied, CopyError, PruneError, Pruned};

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
    let what = settings.shard.map_or_else(|| "backup run".to_string(), |s| format!("backup run, shard {s}"));
    let root = &settings.backup_dir;
    // The catalog is walked once. A run that has the folder to itself (the lock taken
    // exclusively, without waiting) also tidies it, then shares the lock: other backup runs
    // work beside this one, each database locked as it is backed up.
    let tidying = RunLock::acquire(root, &format!("{what}, {TIDYING}")).ok();
    let shared = if tidying.is_none() { Some(RunLock::acquire_shared_after_tidy(root, &what, cancel)?) } else { None };
    let run = Run::new(settings, mirrors, notifiers, cancel);
    let _folder = match (shared, tidying) {
        (Some(shared), _) => shared,
        (None, tidying) => {
            run.catalog.tidy(&run.local);
            drop(tidying);
            RunLock::acquire_shared_after_tidy(root, &what, cancel)?
        }
    };
    // `*` specs expanded, the shard applied: the databases of this run.
    let fleet = crate::fleet::resolve(settings, cancel);
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
    for (spec, why) in &fleet.unrepresentable {
        let error = format!("the database {spec} cannot be backed up under its name: {why}");
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
        mirrors_down: run.mirrors_down.list(),
    };
    // Databases that exist but nothing backs up: once per run (shard 0 of a fleet).
    if settings.shard.is_none_or(|s| s.index == 0) && !cancel.is_cancelled() {
        report.coverage = crate::fleet::audit(settings, cancel);
        crate::fleet::audit::report(&settings.backup_dir, &report.coverage, notifiers);
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
    /// Mirrors given up in this run (not tried again by later databases).
    mirrors_down: mirror::Down,
    /// The backup folder, walked once at the start and kept current by this run.
    catalog: view::RunCatalog,
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
            phases: Phases::new(&settings.hooks, &settings.engines, cancel),
            local: LocalStorage::new(&settings.backup_dir),
            mirrors_down: mirror::Down::default(),
            catalog: view::RunCatalog::load(&settings.backup_dir).unwrap_or_else(|e| {
                warn!(error = %format!("{e:#}"), "The backup folder could not be read; steps see only this run's backups.");
                view::RunCatalog::empty(&settings.backup_dir)
            }),
            dir: layout::run_dir(&settings.backup_dir, layout::classify(date, &settings.policy), date),
            id: crate::model::run::run_id("", Utc::now()),
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
        // Held through dump, copy and prune: no other process backs this database up meanwhile.
        let _lock = match self.lock(db) {
            Ok(lock) => lock,
            Err(outcome) => {
                let report = DatabaseReport::new(&db.spec, *outcome);
                self.notify(&report);
                return report;
            }
        };
        let ctx = self.context(Some(db));
        let mut report = match self.phases.around(Phase::Backup, &ctx, || self.dump(db)) {
            Ok(w) => DatabaseReport::new(&db.spec, Outcome::Written(w)),
            Err(e) => DatabaseReport::new(&db.spec, Outcome::Failed(e)),
        };
        if let Outcome::Written(w) = &report.outcome {
            written.push(self.key(w).into());
            self.catalog.add(&w.path);
            report.anomaly = self.guard(&db.spec.core_name(), w);
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
        let Some(engine) = self.settings.engines.get(&db.spec.engine) else {
            return Err(Failure::Backup(format!("no engine for {} databases in this build", db.spec.engine.name())));
        };
        info!("Starting backup.");
        let timestamp = fresh_timestamp(self.settings, &self.dir, &db.spec.core_name());
        // A live line for a person at a terminal (one database at a time); log lines otherwise.
        let live = std::io::IsTerminal::is_terminal(&std::io::stderr()) && self.settings.jobs <= 1;
        // The estimate costs a scan of the folder: only for a person watching.
        let expected = if live { self.catalog.previous_size(&db.spec.core_name()) } else { None };
        let meter = crate::stream::progress::Meter::for_dump(&db.spec.to_string(), expected, live);
        let format = pipeline::Format { progress: Some(&meter), ..self.format() };
        match pipeline::backup_one(db, engine, &self.settings.backup_dir, &self.dir, timestamp, &format, self.cancel) {
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
    fn guard(&self, core: &str, w: &Written) -> Option<Anomaly> {
        let root = &self.settings.backup_dir;
        let backups = self.catalog.of_core(core);
        let key = self.key(w);
        let current = backups.iter().find(|b| *b.key() == key)?;
        let found = anomaly::assess(&backups, current, &self.settings.anomaly)?;
        let findings: Vec<String> = found.findings.iter().map(ToString::to_string).collect();
        warn!(baseline = %found.baseline, findings = %findings.join("; "), "Anomaly: this backup differs sharply from the previous good one; retention keeps that one.");
        let mut m = current.manifest.clone()?;
        m.anomaly = Some(found.clone());
        match manifest::write(root, &m) {
            // The view carries the anomaly to retention (which holds the baseline).
            Ok(()) => self.catalog.add(&w.path),
            Err(e) => warn!(error = %format!("{e:#}"), "The anomaly could not be recorded in the manifest."),
        }
        Some(found)
    }

    /// Step 2: copies to every mirror (the new backup, then catch-up of missed ones).
    fn copy(&self, db: &Database, w: &Written, ctx: &Context) -> Vec<MirrorOutcome> {
        if self.mirrors.is_empty() {
            return Vec::new();
        }
        let result = self.phases.around(Phase::Copy, ctx, || {
            let (name, core) = (db.spec.to_string(), db.spec.core_name());
            let local = self.catalog.of_core(&core);
            let new = mirror::NewBackup { db: &name, core: &core, written: &w.path, local: &local };
            let outcomes = mirror_database(self.mirrors, self.settings, new, self.notifiers, &self.mirrors_down);
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
                    gave_up: false,
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
            let backups = self.catalog.of_core_fresh(&db.spec.core_name());
            let backups = prune::settle(root, backups, &db.spec.core_name(), &db.spec.engine, &self.settings.keys)
                .map_err(skipped)?;
            let cores = [db.spec.core_name()].into_iter().collect();
            let (plan, kept) = retention::plan_with_notes(&backups, &self.settings.policy, &cores, written);
            for k in &kept {
                info!(key = %k.key, why = k.why, "Kept beyond the retention count.");
            }
            let mut report = prune::apply(&self.local, &plan, &objects(&backups));
            self.catalog.remove(&report.deleted);
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
            // The process holding the database notifies its own outcome.
            Outcome::NotAttempted | Outcome::Skipped { .. } => {}
        }
        for e in &report.prune_errors {
            self.notifiers.notify(event::retention_failed(&db, e));
        }
    }

    /// Step 0: the database's lock; when another process holds it, `BACKUP_WHEN_LOCKED` says
    /// whether to skip (a warning), wait or fail.
    fn lock(&self, db: &Database) -> Result<RunLock, Box<Outcome>> {
        let (root, core) = (&self.settings.backup_dir, db.spec.core_name());
        let what = format!("backup of {} (run {})", db.spec, self.id);
        let taken = match self.settings.when_locked {
            WhenLocked::Wait => RunLock::wait_database(root, &core, &what, self.cancel, |busy| {
                info!(holder = %busy.holder, "Waiting: another process is backing up this database.");
            }),
            _ => RunLock::try_database(root, &core, &what),
        };
        match taken {
            Ok(lock) => Ok(lock),
            Err(NotTaken::Busy(busy)) if self.settings.when_locked == WhenLocked::Skip => {
                warn!(holder = %busy.holder, "Skipped: another process is backing up this database (BACKUP_WHEN_LOCKED=skip).");
                Err(Box::new(Outcome::Skipped { holder: busy.holder }))
            }
            Err(NotTaken::Busy(busy)) => {
                let msg = format!("{busy}; BACKUP_WHEN_LOCKED=fail counts this as a failure (skip or wait would not)");
                error!(error = %msg, "Backup failed.");
                Err(Box::new(Outcome::Failed(Failure::Backup(msg))))
            }
            Err(NotTaken::Interrupted(_)) => Err(Box::new(Outcome::NotAttempted)),
            Err(NotTaken::Failed(e)) => {
                let msg = format!("the database's lock could not be taken: {e:#}");
                error!(error = %msg, "Backup failed.");
                Err(Box::new(Outcome::Failed(Failure::Backup(msg))))
            }
        }
    }

    fn format(&self) -> pipeline::Format<'_> {
        let compression = self.settings.compression.shared(self.settings.jobs.max(1));
        pipeline::Format { compression, recipients: self.settings.encryption.as_ref(), progress: None }
    }

    fn key(&self, w: &Written) -> crate::catalog::BackupKey {
        crate::catalog::BackupKey::of(&self.settings.backup_dir, &w.path)
    }
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
