//! The daemon (no mode flag): cron mode when backup.conf has cron lines, else legacy mode (a
//! backup at start and every `BACKUP_PERIOD`). One job at a time: a fire while a job runs is
//! skipped with a warning, never queued. SIGTERM/SIGINT stop new fires, give the running job
//! `SHUTDOWN_GRACE` to finish, then cancel it (children killed, partial file removed); exit 0.

pub mod archive_card;
pub mod evidence;
pub mod gzip;
pub mod http;
pub mod jobs;
pub mod page;
pub mod state;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use crate::catalog;
use crate::config::Settings;
use crate::model::error::Exit;
use crate::model::schedule::Schedule;
use crate::notify::{Notifiers, event};
use crate::system::cancel::Cancel;
use jobs::Job;
use state::State;

/// One schedule entry.
struct Entry {
    schedule: Schedule,
    job: Job,
    next: DateTime<Utc>,
}

/// The job running now.
struct Running {
    label: String,
    cancel: Cancel,
    handle: JoinHandle<()>,
}

/// The longest the loop sleeps without a fire, a signal or a job's end: staleness is checked
/// at this pace.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How often a stopping daemon checks whether its last job has ended.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Runs the daemon until `shutdown` is cancelled.
///
/// # Errors
/// Missing credentials (exit 2) or a health listener that cannot bind.
pub fn run(settings: Settings, notifiers: Notifiers, shutdown: &Cancel) -> anyhow::Result<Exit> {
    let monitor = settings.daemon.monitor_only;
    if !monitor {
        settings.check_backup_ready()?;
    }
    let now = Utc::now();
    let mut entries = if monitor { Vec::new() } else { entries(&settings, now) };
    if std::process::id() == 1 {
        warn!(
            "Running as PID 1 without an init: orphaned processes are not reaped. Use tini (the image does) or `docker run --init`."
        );
    }
    let mode = if monitor {
        "monitor-only"
    } else if settings.cron.is_empty() {
        "legacy"
    } else {
        "cron"
    };
    info!(mode, "Starting backup server in {mode} mode ...");
    for e in &entries {
        let at = settings.zone.local(e.next).format("%Y-%m-%d %H:%M:%S");
        info!(schedule = %e.schedule, job = %e.job.describe(), next = %at, "Scheduled.");
    }
    let mirrors = crate::storage::from_settings(&settings, shutdown)?;
    let (mut state, known) = initial_state(&settings, now);
    let outputs = Arc::new(jobs::Outputs { notifiers, mirrors, catalog: Mutex::new(known) });
    let notifiers = &outputs.notifiers;
    let schedule_text: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {} (next {})",
                e.schedule,
                e.job.describe(),
                settings.zone.local(e.next).format("%Y-%m-%d %H:%M:%S")
            )
        })
        .collect();
    let db_text: Vec<String> = settings.databases.iter().map(|d| d.spec.to_string()).collect();
    notifiers.notify(event::daemon_started(mode, &schedule_text, &db_text));
    state.notify_failures = outputs.notifiers.failures.clone();
    let state = Arc::new(Mutex::new(state));
    let mut stale_watch = StaleWatch::default();
    if let Some(addr) = settings.daemon.health_addr {
        let health = http::Health {
            state: state.clone(),
            backup_dir: settings.backup_dir.clone(),
            fail_when_stale: settings.daemon.fail_when_stale,
            status_page: settings.daemon.status_page,
            page_cache: Default::default(),
            page_fresh: settings.daemon.status_page_cache,
        };
        let bound = http::serve(addr, health)?;
        info!(address = %bound, "Health and metrics listener started (/healthz /readyz /status /metrics).");
    }
    let settings = Arc::new(settings);
    if settings.daemon.startup_check && !monitor {
        start_check(settings.clone(), outputs.clone(), shutdown.clone());
    }
    // Each point-in-time server's archive on its own thread, beside the schedule.
    let archivers = (!monitor).then(|| {
        let to = outputs.clone();
        let notify: crate::pitr::archiver::Notify = Arc::new(move |e| to.notifiers.notify(e));
        let board = lock(&state).pitr.clone();
        crate::pitr::archiver::Archivers::start(&settings, &board, &notify, shutdown)
    });
    let mut running: Option<Running> = None;
    while !shutdown.is_cancelled() {
        // Taken before looking at the clock and the job: a wake after this is never missed.
        let seen = shutdown.wakes();
        if running.as_ref().is_some_and(|r| r.handle.is_finished()) {
            finish(running.take(), &state);
        }
        if monitor {
            info!(every = %crate::model::schedule::format_duration(settings.daemon.monitor_interval), "Monitor-only: no backups here; the state is read from the backup folder.");
            while !shutdown.is_cancelled() {
                refresh_from_folder(&settings, &state, &outputs.catalog);
                stale_watch.check(&state, notifiers, Utc::now());
                shutdown.wait_for_wake(shutdown.wakes(), settings.daemon.monitor_interval);
            }
            break;
        }
        let Some((i, at)) = entries.iter().enumerate().map(|(i, e)| (i, e.next)).min_by_key(|(_, t)| *t) else {
            warn!("Nothing is scheduled; idling until stopped.");
            while !shutdown.is_cancelled() {
                shutdown.wait_for_wake(shutdown.wakes(), MAX_SLEEP);
            }
            break;
        };
        lock(&state).next_run = Some(at);
        let now = Utc::now();
        stale_watch.check(&state, notifiers, now);
        if now < at {
            shutdown.wait_for_wake(seen, MAX_SLEEP.min((at - now).to_std().unwrap_or(MAX_SLEEP)));
            continue;
        }
        let entry = &mut entries[i];
        entry.next = next_fire(&entry.schedule, at, now, &settings);
        if let Some(r) = &running {
            warn!(job = %entry.job.describe(), running = %r.label, "Skipping scheduled run; previous run still in progress.");
            lock(&state).runs_skipped += 1;
            notifiers.notify(event::run_skipped(&entry.job.describe(), &r.label));
            continue;
        }
        running = Some(start(entry.job.clone(), settings.clone(), outputs.clone(), state.clone(), shutdown.clone()));
    }
    stop(running, &state, settings.daemon.shutdown_grace);
    if let Some(a) = archivers {
        a.stop();
    }
    // Shutting down: at most a second for what is still queued; the rest is counted.
    outputs.notifiers.flush();
    info!("Backup server stopped.");
    Ok(Exit::Success)
}

/// `--check` at start, on its own thread beside the listener and the schedule: its table in
/// the log, one WARN notification when anything fails; the daemon keeps running either way.
fn start_check(settings: Arc<Settings>, outputs: Arc<jobs::Outputs>, cancel: Cancel) {
    std::thread::spawn(move || {
        let findings = crate::check::run(&settings, &outputs.notifiers, crate::check::Options::default(), &cancel);
        for f in &findings {
            let (check, target, detail, fix) = (&f.check, &f.target, &f.detail, &f.fix);
            match f.status {
                crate::model::finding::Status::Fail => error!(check, target, detail, fix, "Check failed."),
                crate::model::finding::Status::Warn => warn!(check, target, detail, fix, "Check warning."),
                _ => info!(check, target, detail, "Check passed."),
            }
        }
        let failed: Vec<String> = findings
            .iter()
            .filter(|f| f.status == crate::model::finding::Status::Fail)
            .map(|f| format!("{} {}: {} ({})", f.check, f.target, f.detail, f.fix))
            .collect();
        if !failed.is_empty() {
            outputs.notifiers.notify(event::check_failed(&failed));
        }
    });
}

/// The schedule: cron lines, or one legacy entry firing now and every `BACKUP_PERIOD`.
fn entries(settings: &Settings, now: DateTime<Utc>) -> Vec<Entry> {
    if settings.cron.is_empty() {
        return vec![Entry { schedule: Schedule::Every(settings.backup_period), job: Job::Backup, next: now }];
    }
    settings
        .cron
        .iter()
        .filter_map(|line| {
            let next = line.schedule.next_after(now, &settings.zone)?;
            Some(Entry { schedule: line.schedule.clone(), job: Job::from_cron(line)?, next })
        })
        .collect()
}

/// The fire after `at`; fires missed while the clock jumped (suspend, a long skip) are
/// dropped, so a late schedule runs once, not in a burst.
fn next_fire(schedule: &Schedule, at: DateTime<Utc>, now: DateTime<Utc>, settings: &Settings) -> DateTime<Utc> {
    let mut next = schedule.next_after(at, &settings.zone).unwrap_or(DateTime::<Utc>::MAX_UTC);
    while next <= now {
        next = schedule.next_after(next, &settings.zone).unwrap_or(DateTime::<Utc>::MAX_UTC);
    }
    next
}

/// Monitor-only: every database's state from what the backup folder holds now — the
/// configured ones, and for `host/*` lines every database of that host with backups there.
fn refresh_from_folder(settings: &Settings, state: &Mutex<State>, known: &Mutex<Vec<catalog::BackupFile>>) {
    let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(backups) = catalog::reload(&settings.backup_dir, &known) else { return };
    let now = Utc::now();
    let dbs = tracked(settings, &backups);
    let fresh = State::new(&dbs, &backups, settings.backup_interval(now), settings.daemon.stale_factor, now);
    lock(state).databases = fresh.databases;
    *known = backups;
}

/// The state from the backup folder (read, never written: tidying is a backup run's), and
/// the catalog it was read from.
fn initial_state(settings: &Settings, now: DateTime<Utc>) -> (State, Vec<catalog::BackupFile>) {
    let backups = catalog::load(&settings.backup_dir).unwrap_or_else(|e| {
        warn!(error = %format!("{e:#}"), "Could not read the backup folder; starting with empty state.");
        Vec::new()
    });
    let dbs = tracked(settings, &backups);
    let mut state = State::new(&dbs, &backups, settings.backup_interval(now), settings.daemon.stale_factor, now);
    state.rpo_target = settings.daemon.rpo_target;
    state.rto_target = settings.daemon.rto_target;
    (state, backups)
}

/// The databases the state follows, as (label, core): the configured ones and the databases of
/// `host/*` lines found in the folder, labelled as a run's report labels them.
pub(crate) fn tracked(settings: &Settings, backups: &[catalog::BackupFile]) -> Vec<(String, String)> {
    crate::fleet::on_disk(settings, backups).iter().map(|d| (d.spec.to_string(), d.spec.core_name())).collect()
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `job` on its own thread with its own cancellation token.
fn start(
    job: Job,
    settings: Arc<Settings>,
    outputs: Arc<jobs::Outputs>,
    state: Arc<Mutex<State>>,
    loop_waker: Cancel,
) -> Running {
    let label = job.describe();
    let cancel = Cancel::new();
    lock(&state).run_in_progress = Some(label.clone());
    let token = cancel.clone();
    let handle = std::thread::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(|| jobs::execute(&job, &settings, &outputs, &state, &token)));
        if result.is_err() {
            error!(job = %job.describe(), "The run panicked; the daemon continues. Please report this bug.");
            lock(&state).runs_failed += 1;
        }
        loop_waker.wake();
    });
    Running { label, cancel, handle }
}

fn finish(running: Option<Running>, state: &Mutex<State>) {
    if let Some(r) = running {
        let _ = r.handle.join();
        lock(state).run_in_progress = None;
    }
}

/// Notifies once when a database turns stale or misses its RPO or RTO target (and again
/// only after it recovered). Never a liveness failure: a failing `/healthz` restarts the pod,
/// possibly mid-backup.
#[derive(Default)]
struct StaleWatch {
    last_check: Option<DateTime<Utc>>,
    flagged: std::collections::BTreeSet<(&'static str, String)>,
}

impl StaleWatch {
    fn check(&mut self, state: &Mutex<State>, notifiers: &Notifiers, now: DateTime<Utc>) {
        if self.last_check.is_some_and(|t| now - t < chrono::Duration::seconds(60)) {
            return;
        }
        self.last_check = Some(now);
        let state = lock(state);
        for (db, d) in &state.databases {
            if let Some(limit) = state.stale_after()
                && self.turned("stale", db, state.is_stale(d, now))
            {
                warn!(database = %db, "No recent good backup: the database is stale.");
                notifiers.notify(event::stale(db, d.last_success, limit));
            }
            if let Some(target) = state.rpo_target
                && self.turned("rpo", db, state.rpo_exceeded(d, now))
            {
                let held = d.evidence.rpo(state.started, now);
                warn!(database = %db, rpo_s = held.as_secs(), "The newest verified backup is older than RPO_TARGET.");
                notifiers.notify(event::target_missed(db, "RPO", held, target, "age of the newest verified backup"));
            }
            if let Some(target) = state.rto_target
                && self.turned("rto", db, d.evidence.rto_exceeded(Some(target)))
            {
                let took = Duration::from_secs_f64(d.evidence.last_verification_seconds.unwrap_or_default());
                warn!(database = %db, rto_s = took.as_secs(), "The last verification restore took longer than RTO_TARGET.");
                notifiers.notify(event::target_missed(
                    db,
                    "RTO",
                    took,
                    target,
                    "duration of the last verification restore",
                ));
            }
        }
    }

    /// Whether `db`'s `kind` condition turned on now (it was off at the last check).
    fn turned(&mut self, kind: &'static str, db: &str, on: bool) -> bool {
        let key = (kind, db.to_string());
        if on {
            self.flagged.insert(key)
        } else {
            self.flagged.remove(&key);
            false
        }
    }
}

/// Shutdown: let the running job finish within `grace`, then cancel it and wait for it.
fn stop(running: Option<Running>, state: &Mutex<State>, grace: Duration) {
    let Some(r) = running else { return };
    info!(running = %r.label, grace_s = grace.as_secs(), "Shutdown requested; waiting for the running job to finish.");
    // Only while stopping: poll the job's handle (the shutdown token's waits return at once now).
    let until = |deadline: std::time::Instant| {
        while !r.handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(STOP_POLL);
        }
    };
    until(std::time::Instant::now() + grace);
    if !r.handle.is_finished() {
        warn!(running = %r.label, "Grace period over; stopping the running job.");
        r.cancel.cancel();
        until(std::time::Instant::now() + Duration::from_secs(10));
        if !r.handle.is_finished() {
            r.cancel.kill_children();
        }
    }
    finish(Some(r), state);
}
