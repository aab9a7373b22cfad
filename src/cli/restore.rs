//! `-r SPEC [-f FILTER] [-s] [-a PW] [-I]`: restore a database from its newest backup (or the
//! one `-f` chooses). Everything that can be checked is checked before the database is
//! touched: the backup exists, its checksum (or whole stream) is intact and complete, the admin
//! can connect; the load goes beside the target and replaces it only once it is complete.
//! On a terminal without `-s` it shows what will happen and asks; without a terminal it
//! refuses unless `-s`. With `--remote [NAME]` the backup comes from a mirror (`fetch`).

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, anyhow};
use chrono::Utc;
use tracing::{debug, error, info, warn};

use crate::backup::hooks::{self, Phase, Phases};
use crate::catalog;
use crate::catalog::checksum::{Integrity, check_integrity};
use crate::catalog::layout;
use crate::catalog::lock::RunLock;
use crate::catalog::selection::{Choice, choose_for_restore};
use crate::config::{Secret, Settings};
use crate::engine::{self, Conn, Placement, RestoreRequest};
use crate::model::error::{Exit, UsageError};
use crate::model::human;
use crate::model::spec::DatabaseSpec;
use crate::notify::{Notifiers, event};
use crate::restore::fetch;
use crate::stream::compress;
use crate::stream::progress::Meter;
use crate::system::cancel::Cancel;
use crate::system::prompt;

/// What `-r` was asked to do.
#[derive(Debug)]
pub struct RestoreArgs<'a> {
    pub target: &'a str,
    pub filter: Option<&'a str>,
    pub scripted: bool,
    pub ignore_errors: bool,
    pub admin_password: Option<Secret>,
    pub admin_user: Option<String>,
    /// `--remote [NAME]`: take the backup from that mirror.
    pub remote: Option<String>,
}

/// Runs a restore.
///
/// # Errors
/// A bad spec or an unconfirmable prompt (exit 2); no backup, a corrupt or incomplete backup,
/// or a failed restore (exit 1). A restore with `-I` that loaded despite SQL errors or missing
/// rows returns `Exit::Failed` (unless `RESTORE_ACCEPT_ERRORS`).
pub fn run(settings: &Settings, notifiers: &Notifiers, args: RestoreArgs, cancel: &Cancel) -> anyhow::Result<Exit> {
    let spec: DatabaseSpec = args.target.parse().map_err(|e| UsageError(format!("-r {}: {e}", args.target)))?;
    let engine = engine::for_kind(&spec.engine, &settings.engine)
        .ok_or_else(|| anyhow!("this build cannot restore {} databases", spec.engine.name()))?;
    let root = &settings.backup_dir;
    let _lock = RunLock::acquire(root, "restore")?;
    let untouched = "nothing was restored and the database was not touched";
    // Kept until the restore ends: the staged download is removed when it is dropped.
    let fetched = match &args.remote {
        None => None,
        Some(name) => {
            let mirrors = crate::storage::from_settings(settings, cancel)?;
            let mirror = fetch::pick_mirror(&mirrors, name)?;
            Some(fetch::fetch(root, mirror, &spec.core_name(), args.filter, true).context(untouched)?)
        }
    };
    let choice = match &fetched {
        Some(f) => f.choice.clone(),
        None => choose_for_restore(&catalog::scan(root)?, root, &spec.core_name(), args.filter).context(untouched)?,
    };
    let path = choice.path().to_path_buf();
    // A restore that drops the target first must know the file is whole before it starts.
    let in_place = settings.restore.in_place || !engine.restores_beside_target();
    let expected = choice.expected_sha256().context(untouched)?;
    let known_complete = choice.check_recorded().context(untouched)?;
    let scan = in_place || !known_complete;
    let checked = check_integrity(&path, expected.as_deref(), &spec.engine, scan, &settings.keys).context(untouched)?;
    if let Choice::Catalog(b) = &choice {
        catalog::record_scan(root, b, &checked);
    }
    checked.require_complete(&path).context(untouched)?;
    debug!(path = %path.display(), integrity = ?checked.integrity, "Backup checked.");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut admin_password = args.admin_password.or_else(|| settings.restore.admin_password.clone());
    let admin_user = args.admin_user.unwrap_or_else(|| settings.restore.admin_user_for(&spec.engine));
    if !args.scripted {
        if !prompt::interactive() {
            return Err(UsageError(
                "restore asks for confirmation, but stdin is not a terminal; add -s to restore without asking".into(),
            )
            .into());
        }
        print_summary(settings, &spec, &path, size, checked.integrity, in_place);
        if !prompt::confirm(&format!("Replace database {} on {} with this backup?", spec.database, spec.host))? {
            println!("Restore cancelled; nothing was changed.");
            return Ok(Exit::Success);
        }
        if admin_password.is_none() {
            let pw = prompt::password(&format!("Admin password ({admin_user}@{}): ", spec.host))?;
            admin_password = Some(Secret::new(pw)).filter(|p| !p.expose().is_empty());
        }
    }
    let req = RestoreRequest {
        database: spec.database.clone(),
        admin: Conn { host: spec.host.clone(), port: spec.port, user: Some(admin_user), password: admin_password },
        owner: settings.database_for(&spec).credentials.user,
        ignore_errors: args.ignore_errors,
        single_transaction: false,
        placement: if in_place {
            Placement::InPlace
        } else {
            Placement::Swap { keep_previous: settings.restore.keep_previous }
        },
        count_check: settings.restore.count_check,
        jobs: settings.restore.jobs,
    };
    info!(database = %spec, path = %path.display(), bytes = size, "Starting restore.");
    let started = Instant::now();
    let meter = Meter::start("restoring", size);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut sql = BufReader::with_capacity(1 << 20, compress::decoder(&path, meter.reader(file), &settings.keys)?);
    let target = settings.database_for(&spec);
    let run_id = crate::backup::run_id("restore-", Utc::now());
    let ctx = hooks::Context {
        run_id: &run_id,
        database: Some(&target),
        file: Some(&path),
        size: Some(size),
        ..Default::default()
    };
    let phases = Phases::new(&settings.hooks, &settings.engine, cancel);
    let result = phases
        .around(Phase::Restore, &ctx, || engine.restore(&req, &mut sql, cancel))
        .map_err(|e: anyhow::Error| format!("{e:#}"));
    drop(meter);
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
        peak_rss_kb = crate::backup::peak_rss_kb(),
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

fn print_summary(
    settings: &Settings,
    spec: &DatabaseSpec,
    path: &std::path::Path,
    size: u64,
    integrity: Integrity,
    in_place: bool,
) {
    let age = path
        .file_name()
        .and_then(|n| layout::parse_file_name(&n.to_string_lossy()))
        .and_then(|p| (settings.zone.local(Utc::now()) - p.timestamp).to_std().ok())
        .map(human::age)
        .unwrap_or_else(|| "unknown".into());
    let check = match integrity {
        Integrity::ChecksumMatched => "sha256 matches",
        Integrity::StreamDecoded => "no checksum file; the whole stream decompressed cleanly",
    };
    println!("Restoring database:");
    println!(
        "- Database: {} (host {}, port {})",
        spec.database,
        spec.host,
        spec.port.map_or("default".into(), |p| p.to_string())
    );
    println!("- Backup file: {}", path.display());
    println!("- Backup age: {age}; size {}; {check}", human::bytes(size));
    if in_place {
        println!("- The database will be DROPPED, then loaded (in place); sessions connected to it are terminated.");
    } else {
        println!("- The backup is loaded beside the database and checked; only then does it replace the database");
        println!("  (sessions connected to it are terminated). If anything fails, the database is not changed.");
    }
}
