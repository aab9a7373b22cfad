//! A restore (`-r`): the newest backup of a database (or the one a filter chooses, or one
//! from a mirror) into its server. Everything that can be checked is checked before the
//! database is touched — the backup exists, its checksum (or whole stream) is intact and
//! complete, the admin can connect — and the load goes beside the target and replaces it only
//! once it is complete. The caller confirms the plan (`confirm`): the command line asks on a
//! terminal and prints; this module decides and logs.

use std::time::Instant;

use anyhow::{Context, anyhow};
use chrono::Utc;
use tracing::{debug, error, info, warn};

use super::database::restore_into;
use super::{fetch, open};
use crate::backup::hooks::{self, Phase, Phases};
use crate::catalog;
use crate::catalog::lock::RunLock;
use crate::catalog::selection::choose_for_restore;
use crate::config::{Secret, Settings};
use crate::engine::{Conn, Placement, RestoreRequest};
use crate::model::error::{Exit, UsageError};
use crate::model::human;
use crate::model::spec::DatabaseSpec;
use crate::notify::{Notifiers, event};
use crate::system::cancel::Cancel;

/// What `-r` was asked to do.
#[derive(Debug)]
pub struct Request<'a> {
    pub target: &'a str,
    pub filter: Option<&'a str>,
    pub ignore_errors: bool,
    pub admin_password: Option<Secret>,
    pub admin_user: Option<String>,
    /// `--remote [NAME]`: take the backup from that mirror.
    pub remote: Option<String>,
    /// `--at T`: the database as it was at `T`, from its server's point-in-time archive.
    pub at: Option<String>,
}

/// Where the restored database comes from.
#[derive(Debug)]
pub enum Source {
    /// A dump file, checked.
    File(open::Checked),
    /// A moment of the server's point-in-time archive, planned.
    Archive(Box<super::pitr::FromArchive>),
}

/// What is about to happen, for the confirmation.
#[derive(Debug)]
pub struct Plan {
    pub spec: DatabaseSpec,
    pub source: Source,
    /// The target is dropped first (`RESTORE_IN_PLACE`, or an engine that cannot swap).
    pub in_place: bool,
    pub admin_user: String,
    /// The admin password known so far (`-a`, `BACKUP_ADMIN_PASSWORD`).
    pub has_admin_password: bool,
}

/// The answer to a plan.
pub enum Answer {
    /// Go ahead, with the admin password asked for when the plan had none.
    Go { admin_password: Option<Secret> },
    /// Stop; nothing was changed.
    Cancel,
}

/// Runs a restore.
///
/// # Errors
/// A bad spec or an unconfirmable plan (exit 2); no backup, a corrupt or incomplete backup,
/// or a failed restore (exit 1). A restore with `-I` that loaded despite SQL errors or missing
/// rows returns `Exit::Failed` (unless `RESTORE_ACCEPT_ERRORS`).
pub fn run(
    settings: &Settings,
    notifiers: &Notifiers,
    request: Request,
    confirm: impl FnOnce(&Plan) -> anyhow::Result<Answer>,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let spec: DatabaseSpec = request.target.parse().map_err(|e| UsageError(format!("-r {}: {e}", request.target)))?;
    let engine = settings
        .engines
        .get(&spec.engine)
        .ok_or_else(|| anyhow!("this build cannot restore {} databases", spec.engine.name()))?;
    let root = &settings.backup_dir;
    let untouched = "nothing was restored and the database was not touched";
    if let Some(at) = &request.at {
        let mirror = match request.remote.as_deref() {
            Some(name) => Some(fetch::take_mirror(crate::storage::from_settings(settings, cancel)?, name)?),
            None => None,
        };
        let from = super::pitr::prepare(settings, &spec, request.filter, at, mirror).context(untouched)?;
        return restore(settings, notifiers, request, engine, spec, Source::Archive(Box::new(from)), confirm, cancel);
    }
    let _lock = RunLock::acquire(root, "restore")?;
    // Kept until the restore ends: the staged download is removed when it is dropped.
    let fetched = match &request.remote {
        None => None,
        Some(name) => {
            let mirrors = crate::storage::from_settings(settings, cancel)?;
            let mirror = fetch::pick_mirror(&mirrors, name)?;
            Some(fetch::fetch(root, mirror, &spec.core_name(), request.filter, true).context(untouched)?)
        }
    };
    let choice = match &fetched {
        Some(f) => f.choice.clone(),
        None => {
            choose_for_restore(&catalog::scan(root)?, root, &spec.core_name(), request.filter).context(untouched)?
        }
    };
    // A restore that drops the target first must know the file is whole before it starts.
    let in_place = settings.restore.in_place || !engine.restores_beside_target();
    let backup = open::check(root, &choice, &spec.engine, in_place, &settings.keys).context(untouched)?;
    debug!(path = %backup.path.display(), integrity = ?backup.integrity, "Backup checked.");
    restore(settings, notifiers, request, engine, spec, Source::File(backup), confirm, cancel)
}

/// Confirms the plan, then restores from `source` through the one restore path.
#[allow(clippy::too_many_arguments)]
fn restore(
    settings: &Settings,
    notifiers: &Notifiers,
    request: Request,
    engine: &dyn crate::engine::Engine,
    spec: DatabaseSpec,
    source: Source,
    confirm: impl FnOnce(&Plan) -> anyhow::Result<Answer>,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let in_place = settings.restore.in_place || !engine.restores_beside_target();
    let admin_password = request.admin_password.or_else(|| settings.restore.admin_password.clone());
    let admin_user = request.admin_user.unwrap_or_else(|| settings.restore.admin_user_for(&spec.engine));
    let plan = Plan { spec, source, in_place, admin_user, has_admin_password: admin_password.is_some() };
    let admin_password = match confirm(&plan)? {
        Answer::Cancel => return Ok(Exit::Success),
        Answer::Go { admin_password: asked } => admin_password.or(asked),
    };
    let Plan { spec, source, admin_user, .. } = plan;
    let req = RestoreRequest {
        database: spec.database.clone(),
        admin: Conn { host: spec.host.clone(), port: spec.port, user: Some(admin_user), password: admin_password },
        owner: settings.database_for(&spec).credentials.user,
        ignore_errors: request.ignore_errors,
        single_transaction: false,
        placement: if in_place {
            Placement::InPlace
        } else {
            Placement::Swap { keep_previous: settings.restore.keep_previous }
        },
        count_check: settings.restore.count_check,
        jobs: settings.restore.jobs_for(&spec.host),
    };
    let (path, size) = match &source {
        Source::File(backup) => (backup.path.clone(), Some(backup.size)),
        Source::Archive(from) => (from.folder.clone(), None),
    };
    let path = &path;
    info!(database = %spec, path = %path.display(), bytes = size, "Starting restore.");
    let started = Instant::now();
    let target = settings.database_for(&spec);
    let run_id = crate::model::run::run_id("restore-", Utc::now());
    let ctx = hooks::Context { run_id: &run_id, database: Some(&target), file: Some(path), size, ..Default::default() };
    let phases = Phases::new(&settings.hooks, &settings.engines, cancel);
    let result = phases
        .around(Phase::Restore, &ctx, || match &source {
            Source::File(backup) => {
                let mut opened = open::open(path, backup.size, "restoring", &settings.keys)?;
                restore_into(engine, &req, &mut opened.sql, cancel)
            }
            Source::Archive(from) => {
                super::pitr::with_dump(settings, engine, from, cancel, |sql| restore_into(engine, &req, sql, cancel))
            }
        })
        .map_err(|e: anyhow::Error| format!("{e:#}"));
    let report = match result {
        Ok(r) => r,
        Err(_) if cancel.is_cancelled() => return Err(crate::system::cancel::Interrupted.into()),
        Err(e) => {
            let reason =
                if in_place { e.to_string() } else { format!("{e} (database {} was not changed)", spec.database) };
            notifiers.notify(event::restore(&spec.to_string(), &Err(reason.clone()), &[]));
            return Err(anyhow!("restore of {spec} from {} failed: {reason}", path.display()));
        }
    };
    for w in &report.warnings {
        warn!(database = %spec, warning = %w, "Restore warning.");
    }
    let problems = report.problems();
    for p in &problems {
        error!(database = %spec, problem = %p, "Restore problem.");
    }
    for e in report.errors.first.iter().skip(1) {
        error!(database = %spec, error = %e, "A further SQL error.");
    }
    let summary = format!(
        "{}: {}, errors={}, {} warnings, {}",
        path.display(),
        report.counts.describe(),
        report.errors.count,
        report.warnings.len(),
        human::age(started.elapsed())
    );
    notifiers.notify(event::restore(&spec.to_string(), &Ok(summary.clone()), &problems));
    info!(
        database = %spec,
        path = %path.display(),
        duration_ms = started.elapsed().as_millis() as u64,
        errors = report.errors.count,
        warnings = report.warnings.len(),
        checked = %report.counts.describe(),
        kept_previous = report.kept_previous.as_deref().unwrap_or("-"),
        peak_rss_kb = crate::system::usage::peak_rss_kb(),
        "{}",
        if problems.is_empty() { "Restore complete." } else { "Restore finished WITH ERRORS." }
    );
    if problems.is_empty() {
        return Ok(Exit::Success);
    }
    if settings.restore.accept_errors {
        warn!(database = %spec, "The restore had errors; exiting 0 because RESTORE_ACCEPT_ERRORS=true.");
        return Ok(Exit::Success);
    }
    Ok(Exit::Failed)
}
