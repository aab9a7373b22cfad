//! What a schedule entry runs: a backup run, a verification or a prune in-process, or a shell
//! command (any other cron line, as go-crond ran it) with a timeout.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{error, info, warn};

use super::state::State;
use crate::cancel::Cancel;
use crate::cmd;
use crate::config::Settings;
use crate::config::backup_conf::{CronAction, CronLine};
use crate::notify::{Notifiers, event};
use crate::run::run_backups;
use crate::storage::Storage;

/// Where results go: notifications and mirrors, built once at daemon start.
pub struct Outputs {
    pub notifiers: Notifiers,
    pub mirrors: Vec<Box<dyn Storage>>,
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
    pub fn from_cron(line: &CronLine) -> Job {
        match line.action() {
            CronAction::Backup => Job::Backup,
            CronAction::Verify(target) => Job::Verify(target),
            CronAction::Prune => Job::Prune,
            CronAction::Shell => Job::Shell(line.command.clone()),
        }
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
        Job::Verify(target) => match cmd::verify::verify_all(settings, notifiers, target, None, cancel) {
            Ok(outcomes) => lock().record_verify(&outcomes, Utc::now()),
            Err(e) => {
                let reason = format!("{e:#}");
                error!(error = %reason, "Verification could not start.");
                notifiers.notify(event::command_failed(&format!("verification of {target}"), &reason));
            }
        },
        Job::Prune => {
            if let Err(e) = cmd::prune::run(settings, None, false, true) {
                error!(error = %format!("{e:#}"), "Prune failed.");
            }
        }
        Job::Shell(command) => {
            if let Some(reason) = run_shell(command, settings.daemon.command_timeout, cancel) {
                notifiers.notify(event::command_failed(command, &reason));
            }
        }
    }
}

/// Runs a cron line's command with `/bin/sh -c`, logging its output and exit status; kills
/// its whole process group after `timeout` or on cancellation. Returns why it failed.
fn run_shell(command: &str, timeout: Duration, cancel: &Cancel) -> Option<String> {
    info!(command, "Running scheduled command.");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            error!(command, error = %e, "Scheduled command could not start.");
            return Some(format!("could not start: {e}"));
        }
    };
    let _guard = cancel.register(child.id());
    let pgid = Pid::from_raw(child.id() as i32);
    let readers: Vec<_> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.by_ref().take(64 * 1024).read_to_string(&mut text);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            text
        })
    })
    .collect();
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout && !timed_out => {
                timed_out = true;
                let _ = killpg(pgid, Signal::SIGTERM);
            }
            Ok(None) if timed_out && started.elapsed() > timeout + Duration::from_secs(5) => {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                error!(command, error = %e, "Waiting for the scheduled command failed.");
                break None;
            }
        }
    };
    let output: Vec<String> = readers.into_iter().filter_map(|h| h.join().ok()).collect();
    for line in output.iter().flat_map(|o| o.lines()).filter(|l| !l.trim().is_empty()).take(50) {
        info!(command, "{line}");
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    match status {
        Some(s) if s.success() => {
            info!(command, duration_ms, "Scheduled command succeeded.");
            None
        }
        Some(_) if timed_out => {
            error!(
                command,
                timeout_s = timeout.as_secs(),
                "Scheduled command timed out and was killed (CRON_COMMAND_TIMEOUT)."
            );
            Some(format!("timed out after {}s and was killed (CRON_COMMAND_TIMEOUT)", timeout.as_secs()))
        }
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => {
                error!(command, code, duration_ms, "Scheduled command failed.");
                Some(format!("exited with status {code}"))
            }
            (_, sig) => {
                warn!(command, signal = sig, "Scheduled command was killed by a signal.");
                Some(format!("killed by signal {}", sig.unwrap_or_default()))
            }
        },
        None => Some("could not be waited for".into()),
    }
}
