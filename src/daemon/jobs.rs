//! What a schedule entry runs: a backup run, a verification or a prune in-process, or a shell
//! command (any other cron line, as go-crond ran it) with a timeout.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tracing::{error, info};

use super::state::State;
use crate::backup::run_backups;
use crate::config::Settings;
use crate::config::backup_conf::{CronAction, CronLine};
use crate::notify::{Notifiers, event};
use crate::storage::Storage;
use crate::system::cancel::Cancel;

/// Where results go: notifications and mirrors, built once at daemon start.
pub struct Outputs {
    pub notifiers: Notifiers,
    pub mirrors: Vec<Box<dyn Storage>>,
    /// The backup folder as last read, for the evidence refresh after each job (which reads
    /// again only the records that changed).
    pub catalog: Mutex<Vec<crate::catalog::BackupFile>>,
}

/// A unit of scheduled work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Backup,
    Verify(String),
    Prune,
    Shell(String),
}

impl Job {
    /// The job a cron line runs; `None` for the point-in-time schedules, which the archivers
    /// keep (configuration moves them out of the cron lines).
    pub fn from_cron(line: &CronLine) -> Option<Job> {
        Some(match line.action() {
            CronAction::Backup => Job::Backup,
            CronAction::Verify(target) => Job::Verify(target),
            CronAction::Prune => Job::Prune,
            CronAction::Shell => Job::Shell(line.command.clone()),
            CronAction::PitrBase | CronAction::PitrIncremental | CronAction::PitrDrill => return None,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Job::Backup => "backup run".into(),
            Job::Verify(t) => format!("verification of {t}"),
            Job::Prune => "prune".into(),
            Job::Shell(c) => format!("command `{c}`"),
        }
    }
}

/// Runs `job` to completion, recording its outcome in `state`. Never panics outward: the
/// caller also catches panics.
pub fn execute(job: &Job, settings: &Settings, out: &Outputs, state: &Mutex<State>, cancel: &Cancel) {
    let notifiers = &out.notifiers;
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    match job {
        Job::Backup => match run_backups(settings, &out.mirrors, notifiers, cancel) {
            Ok(report) => lock().record_run(&report, Utc::now()),
            Err(e) => {
                let reason = format!("{e:#}");
                error!(error = %reason, "Backup run could not start.");
                lock().runs_failed += 1;
                notifiers.notify(event::command_failed("backup run", &reason));
            }
        },
        Job::Verify(target) => {
            match crate::restore::verify::verify_all(settings, notifiers, target, None, None, cancel) {
                Ok(outcomes) => lock().record_verify(&outcomes, Utc::now()),
                Err(e) => {
                    let reason = format!("{e:#}");
                    error!(error = %reason, "Verification could not start.");
                    notifiers.notify(event::command_failed(&format!("verification of {target}"), &reason));
                }
            }
        }
        Job::Prune => match crate::storage::prune::run_policy(settings) {
            Ok(report) if !report.failed.is_empty() => {
                notifiers.notify(event::command_failed("prune", &report.failed.join("; ")));
            }
            Ok(_) => {}
            Err(e) => {
                let reason = format!("{e:#}");
                error!(error = %reason, "Prune could not start.");
                notifiers.notify(event::command_failed("prune", &reason));
            }
        },
        Job::Shell(command) => {
            if let Some(reason) = run_shell(command, settings.daemon.command_timeout, cancel) {
                notifiers.notify(event::command_failed(command, &reason));
            }
        }
    }
    // The end of a run for the notifiers: wait for their queues (bounded), keep what a dead
    // endpoint missed for the next job, and try that endpoint again then.
    notifiers.flush();
    // Every job may have changed what the manifests prove (a backup, a verification, a prune):
    // the folder walked again, the records that changed read again.
    let mut known = out.catalog.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(backups) = crate::catalog::reload(&settings.backup_dir, &known) {
        lock().refresh_evidence(&super::tracked(settings, &backups), &backups);
        *known = backups;
    }
}

/// Runs a cron line's command with `/bin/sh -c` (as go-crond did), logging its output and exit
/// status; its whole process group is killed after `timeout` or on cancellation. Returns why
/// it failed.
fn run_shell(command: &str, timeout: Duration, cancel: &Cancel) -> Option<String> {
    info!(command, "Running scheduled command.");
    let opts = crate::system::command::Options { timeout: Some(timeout), ..Default::default() };
    let done = crate::system::command::run(&crate::system::command::Program::Shell(command.to_string()), &opts, cancel);
    for line in done.output.lines().filter(|l| !l.trim().is_empty()).take(50) {
        info!(command, "{line}");
    }
    let duration_ms = done.duration.as_millis() as u64;
    match &done.failure {
        None => info!(command, duration_ms, "Scheduled command succeeded."),
        Some(why) => error!(command, duration_ms, error = %why, "Scheduled command failed."),
    }
    done.failure
}
