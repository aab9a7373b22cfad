//! An archiver's look at its server and archive every few seconds: the streamer, the slot,
//! the gaps and the window, retention, and the base backups that are due.

use std::time::Instant;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{BASE_RETRY, Ctx, DOWN_REPORTED_AFTER, WATCH, Watch};
use crate::config::Settings;
use crate::engine::postgres::PostgresEngine;
use crate::model::human;
use crate::notify::event::Level;
use crate::pitr::base::{self, BaseSetup, Kind};
use crate::pitr::index;
use crate::pitr::slot::{self, Verdict};
use crate::pitr::stream::{Setup, Streamer};
use crate::system::cancel::Cancel;

impl Ctx {
    pub(super) fn tick(
        &self,
        streamer: &Streamer,
        setup: &Setup,
        base_setup: &BaseSetup,
        incremental_ok: bool,
        w: &mut Watch,
        cancel: &Cancel,
    ) {
        let up = streamer.child_pid() != 0;
        self.board.update(&self.name, |s| s.streamer_up = up);
        match (up, w.down_since) {
            (false, None) => w.down_since = Some(Instant::now()),
            (false, Some(since)) if !w.down_reported && since.elapsed() > DOWN_REPORTED_AFTER => {
                w.down_reported = true;
                let message =
                    "pg_receivewal has not been running for a minute; it is restarted with backoff (see the log)";
                self.say(Level::Warn, "pitr_streamer_down", message.into());
            }
            (true, Some(_)) => {
                if w.down_reported {
                    self.say(Level::Info, "pitr_streamer_up", "pg_receivewal is streaming again".into());
                }
                (w.down_since, w.down_reported) = (None, false);
            }
            _ => {}
        }
        // Until the streamer holds its slot, looked at every tick.
        if !w.slot_active || w.last_watch.is_none_or(|t| t.elapsed() >= WATCH) {
            w.last_watch = Some(Instant::now());
            w.slot_active = self.guard(setup, cancel);
            // The index read once per look: gaps and window, then retention.
            match index::load(&setup.store.archive.index()) {
                Ok((index, _)) => {
                    self.gaps(&index, setup, w);
                    self.prune(&index, setup, w);
                }
                Err(e) => warn!(server = %self.name, error = %format!("{e:#}"), "Could not read the archive index."),
            }
        }
        if w.slot_active || w.base.is_some() {
            self.bases(base_setup, setup, incremental_ok, w, cancel);
        }
        self.drills(w, cancel);
    }

    /// Measures the slot; drops it past the limit or when our volume is full. Returns whether
    /// the streamer holds it.
    fn guard(&self, setup: &Setup, cancel: &Cancel) -> bool {
        let engine: &PostgresEngine = self.settings.engines.postgres();
        // The replication role may drop the slot and end its own walsender.
        let Ok(conn) = self.server.replication_conn() else { return false };
        let full = volume_full(&self.settings.backup_dir);
        let limit = Some(self.settings.pitr.slot_max_retained);
        match slot::guard(engine, &conn, &setup.slot, limit, full, cancel) {
            Ok((state, verdict)) => {
                self.board.update(&self.name, |s| s.slot_retained_bytes = state.retained);
                if let Verdict::Drop { retained, limit } = verdict {
                    let why = match limit {
                        Some(l) => format!(
                            "it held back {} of WAL, over PITR_SLOT_MAX_RETAINED ({})",
                            human::bytes(retained),
                            human::bytes(l)
                        ),
                        None => format!("the backup volume is full ({} held back)", human::bytes(retained)),
                    };
                    let message = format!(
                        "The archive's replication slot {} on {} was dropped: {why}. The server is safe; the archive has a gap until the next full base backup, which follows at once.",
                        setup.slot, self.name
                    );
                    self.say(Level::Error, "pitr_slot_dropped", message);
                    return false;
                }
                state.active_pid.is_some()
            }
            Err(e) => {
                warn!(server = %self.name, error = %format!("{e:#}"), "Could not measure the replication slot.");
                false
            }
        }
    }

    /// From the index: the window and the gaps; a new gap is reported and asks for a full
    /// base backup.
    fn gaps(&self, index: &index::Index, setup: &Setup, w: &mut Watch) {
        // A gap before the newest full base backup's start is healed: the window from that
        // base reaches the newest WAL without it (`-l` still shows the older windows).
        let partial = crate::pitr::archive::partial_state(&setup.store.archive);
        let (open, healed) = index.open_and_healed_gaps(partial);
        let described: Vec<String> = open.iter().map(|g| index.describe(g)).collect();
        let healed: Vec<String> = healed.iter().map(|g| index.describe(g)).collect();
        let windows = index.windows_with(crate::pitr::archive::partial_state(&setup.store.archive));
        self.board.update(&self.name, |s| {
            s.gaps = described.clone();
            s.healed_gaps = healed;
            s.base_backups = index.bases.len();
            s.last_base_backup = index.bases.iter().map(|b| b.finished_at).max();
            s.earliest_recovery = windows.last().map(|w| w.from);
            s.latest_wal = windows.last().map(|w| w.to);
            s.older_windows = windows.iter().rev().skip(1).map(|w| (w.from, w.to)).collect();
            let proven = index.proven();
            (s.proven_earliest, s.proven_latest) = (proven.map(|w| w.from), proven.map(|w| w.to));
            let last = index.drills.last();
            s.last_drill_ok = last.map(|d| d.ok);
            s.drill_duration_seconds = last.map(|d| d.duration_seconds);
            s.last_drill_error = last.and_then(|d| d.error.clone());
        });
        let new: Vec<&String> = described.iter().filter(|g| !w.gaps_reported.contains(g)).collect();
        if !new.is_empty() {
            let list: Vec<&str> = new.iter().map(|g| g.as_str()).collect();
            let message = format!(
                "WAL is missing from the archive of {}: {}. A full base backup follows to heal it.",
                self.name,
                list.join("; ")
            );
            self.say(Level::Error, "pitr_gap", message);
            w.full_needed_at.get_or_insert(Utc::now());
        }
        w.gaps_reported = described;
        let newest_timeline = index.segments().map(|a| a.timeline).max();
        let base_timeline = index.bases.iter().map(|b| b.timeline).max();
        if index.bases.is_empty() || newest_timeline > base_timeline {
            w.full_needed_at.get_or_insert(Utc::now());
        }
    }

    /// Retention (`PITR_CHAINS`) once a newer chain is usable: removals recorded in the index,
    /// not compacted (the streamer appends meanwhile; the next start compacts). Reported once
    /// when it fails.
    fn prune(&self, index: &index::Index, setup: &Setup, w: &mut Watch) {
        let plan = crate::pitr::retention::plan(index, self.settings.pitr.chains);
        let result = crate::pitr::retention::apply(&setup.store, index, &plan)
            .map(|applied| if applied { plan } else { Default::default() });
        match result {
            Ok(plan) if !plan.is_empty() => {
                info!(server = %self.name, chains = ?plan.drop_chains, segments = plan.drop_segments.len(), freed = %human::bytes(plan.freed), "Pruned the archive.");
                w.prune_failed = false;
            }
            Ok(_) => w.prune_failed = false,
            Err(e) if !w.prune_failed => {
                w.prune_failed = true;
                self.say(
                    Level::Error,
                    "pitr_retention_failed",
                    format!("Pruning the archive of {} failed: {e:#}", self.name),
                );
            }
            Err(_) => {}
        }
    }

    /// Starts a base backup when one is due; collects one that ended.
    fn bases(&self, base_setup: &BaseSetup, setup: &Setup, incremental_ok: bool, w: &mut Watch, cancel: &Cancel) {
        if let Some((full, handle)) = w.base.take_if(|(_, h)| h.is_finished()) {
            match handle.join().unwrap_or_else(|_| Err(anyhow!("the base backup thread panicked"))) {
                Ok(b) => {
                    let what = if full { "full" } else { "incremental" };
                    let message = format!(
                        "A {what} base backup of {} was taken: chain {}, {} in {}s.",
                        self.name,
                        b.chain,
                        human::bytes(b.size),
                        (b.finished_at - b.started_at).num_seconds()
                    );
                    self.say(Level::Info, "pitr_base_succeeded", message);
                    w.full_needed_at = None;
                }
                Err(e) if !cancel.is_cancelled() => {
                    let message = format!("A base backup of {} failed: {e:#}", self.name);
                    self.say(Level::Error, "pitr_base_failed", message);
                    // A failed incremental (WAL summaries gone) is followed by a full one.
                    let retry = if full { Utc::now() + BASE_RETRY } else { Utc::now() };
                    w.full_needed_at = Some(w.full_needed_at.map_or(retry, |t| t.max(retry)));
                }
                Err(_) => {}
            }
        }
        if w.base.is_some() {
            return;
        }
        let now = Utc::now();
        let scheduled_full = w.next_base.is_some_and(|t| t <= now);
        let scheduled_incremental = w.next_incremental.is_some_and(|t| t <= now);
        if scheduled_full {
            w.next_base = next(&self.settings.pitr.base, now, &self.settings);
        }
        if scheduled_incremental {
            w.next_incremental = next(&self.settings.pitr.incremental, now, &self.settings);
        }
        let kind = if scheduled_full || w.full_needed_at.is_some_and(|t| t <= now) {
            Kind::Full
        } else if scheduled_incremental && incremental_ok {
            match self.previous(setup) {
                Ok(previous) => Kind::Incremental(previous),
                Err(e) => {
                    warn!(server = %self.name, error = %format!("{e:#}"), "An incremental cannot be taken; a full base backup instead.");
                    Kind::Full
                }
            }
        } else {
            return;
        };
        let full = matches!(kind, Kind::Full);
        info!(server = %self.name, kind = if full { "full" } else { "incremental" }, "Taking a base backup.");
        let (s, c) = (base_setup.clone(), cancel.clone());
        w.base = Some((full, std::thread::spawn(move || base::take(&s, &kind, &c))));
    }

    /// Starts the PITR drills when they are due (not while a base backup runs: they would
    /// compete for the same disk); reports them when they end.
    fn drills(&self, w: &mut Watch, cancel: &Cancel) {
        if let Some(handle) = w.drill.take_if(|h| h.is_finished()) {
            match handle.join().unwrap_or_else(|_| Err(anyhow!("the drill thread panicked"))) {
                Ok(drills) => {
                    for d in drills {
                        let what = if d.latest { "to the newest WAL".to_string() } else { format!("to {}", d.target) };
                        match &d.error {
                            None => self.say(
                                Level::Info,
                                "pitr_drill_succeeded",
                                format!(
                                    "PITR drill of {} {what}: {} databases, {} tables, {} rows in {:.0}s.",
                                    self.name, d.databases, d.tables, d.rows, d.duration_seconds
                                ),
                            ),
                            Some(e) => self.say(
                                Level::Error,
                                "pitr_drill_failed",
                                format!("PITR drill of {} {what} FAILED: {e}", self.name),
                            ),
                        }
                    }
                }
                Err(e) if !cancel.is_cancelled() => {
                    self.say(
                        Level::Error,
                        "pitr_drill_failed",
                        format!("PITR drill of {} could not run: {e:#}", self.name),
                    );
                }
                Err(_) => {}
            }
        }
        let now = Utc::now();
        if w.drill.is_some() || w.base.is_some() || w.next_drill.is_none_or(|t| t > now) {
            return;
        }
        w.next_drill = next(&self.settings.pitr.drill, now, &self.settings);
        info!(server = %self.name, "Starting the PITR drills.");
        let (settings, server, c) = (self.settings.clone(), self.server.clone(), cancel.clone());
        w.drill = Some(std::thread::spawn(move || crate::pitr::drill::run(&settings, &server, &c)));
    }

    /// The newest base backup's manifest, decoded into the spool.
    fn previous(&self, setup: &Setup) -> anyhow::Result<tempfile::NamedTempFile> {
        let (index, _) = index::load(&setup.store.archive.index())?;
        let last = index.bases.iter().max_by_key(|b| (b.chain, b.n)).ok_or_else(|| anyhow!("no base backup yet"))?;
        base::previous_manifest(&setup.store, last, &self.settings.keys, &setup.spool)
    }
}

/// The next fire of any of `schedules` after `now`.
pub(super) fn next(
    schedules: &[crate::model::schedule::Schedule],
    now: DateTime<Utc>,
    settings: &Settings,
) -> Option<DateTime<Utc>> {
    schedules.iter().filter_map(|s| s.next_after(now, &settings.zone)).min()
}

/// Less than 2% of the backup volume is free.
fn volume_full(dir: &std::path::Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| {
        let total = s.blocks() as f64 * s.fragment_size() as f64;
        let free = s.blocks_available() as f64 * s.fragment_size() as f64;
        total > 0.0 && free / total < 0.02
    })
}
