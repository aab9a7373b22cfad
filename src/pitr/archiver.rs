//! One server's archive, kept by the daemon: its lock, its streamer, its slot guard, its base
//! backups and its gap watch, on a thread of its own beside the dump schedule (neither waits
//! for the other).
//!
//! The archiver takes the server's lock (`pitr <host:port>`; a second daemon on the same
//! archive is refused, loudly), learns the server's facts (major, `wal_segment_size`,
//! bootstrap superuser, `summarize_wal`), starts the streamer, and then every few seconds:
//! notes whether `pg_receivewal` runs; guards the slot (`PITR_SLOT_MAX_RETAINED`, our volume
//! full); reads the index for gaps and the window; and takes a base backup, on a thread of its
//! own so that the guard goes on meanwhile, when one is due: none yet, a new gap, a new
//! timeline, or the schedule (a full one on `PITR_BASE_SCHEDULE`; an incremental on
//! `PITR_INCREMENTAL_SCHEDULE` on 17+ with `summarize_wal`, a full one when that fails).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::Digest;
use tracing::{error, info, warn};

use super::archive::Store;
use super::base::{self, BaseSetup, Kind};
use super::index::{self, BaseBackup, Index};
use super::layout::{Archive, server_name};
use super::slot::{self, Verdict};
use super::status::Board;
use super::stream::{Setup, Streamer};
use crate::catalog::lock::{NotTaken, RunLock};
use crate::config::Settings;
use crate::config::pitr::PitrServer;
use crate::engine::postgres::PostgresEngine;
use crate::model::human;
use crate::notify::event::{self, Event, Level};
use crate::system::cancel::Cancel;

/// How notifications leave an archiver.
pub type Notify = Arc<dyn Fn(Event) + Send + Sync>;

/// How often an archiver looks at its server and its archive.
const TICK: Duration = Duration::from_secs(5);
/// How often the slot is measured and the index read for gaps.
const WATCH: Duration = Duration::from_secs(15);
/// A streamer down this long is reported.
const DOWN_REPORTED_AFTER: Duration = Duration::from_secs(60);
/// A base backup that failed is tried again after this.
const BASE_RETRY: Duration = Duration::from_secs(15 * 60);

/// The running archivers; `stop` ends them.
pub struct Archivers(Vec<(Cancel, JoinHandle<()>)>);

impl Archivers {
    /// One archiver per server in `PITR_SERVERS`.
    pub fn start(settings: &Arc<Settings>, board: &Arc<Board>, notify: &Notify, cancel: &Cancel) -> Archivers {
        let mut running = Vec::new();
        for server in &settings.pitr.servers {
            let cancel = cancel.child();
            let ctx = Ctx {
                settings: settings.clone(),
                name: server.name(),
                server: server.clone(),
                board: board.clone(),
                notify: notify.clone(),
            };
            let c = cancel.clone();
            running.push((cancel, std::thread::spawn(move || ctx.run(&c))));
        }
        Archivers(running)
    }

    /// Stops every streamer (a last pass of each mover first) and waits for the threads; a
    /// base backup in progress is cancelled (its partial file removed).
    pub fn stop(self) {
        for (cancel, _) in &self.0 {
            cancel.cancel();
        }
        for (_, handle) in self.0 {
            let _ = handle.join();
        }
    }
}

/// What the server told us once, at start.
#[derive(Debug, Clone, Deserialize)]
struct Facts {
    version: u32,
    segment_size: u64,
    superuser: String,
    summarize_wal: Option<String>,
}

const FACTS: &str = "SELECT json_build_object('version', current_setting('server_version_num')::int, \
     'segment_size', (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
     'superuser', (SELECT rolname FROM pg_roles WHERE oid = 10), \
     'summarize_wal', (SELECT setting FROM pg_settings WHERE name = 'summarize_wal'))";

struct Ctx {
    settings: Arc<Settings>,
    server: PitrServer,
    name: String,
    board: Arc<Board>,
    notify: Notify,
}

/// What the loop remembers between ticks.
struct Watch {
    next_base: Option<DateTime<Utc>>,
    next_incremental: Option<DateTime<Utc>>,
    /// A base backup running: whether it is a full one, and its thread.
    base: Option<(bool, JoinHandle<anyhow::Result<BaseBackup>>)>,
    /// A full base backup is needed now (none yet, a gap, a new timeline) and not before.
    full_needed_at: Option<DateTime<Utc>>,
    down_since: Option<Instant>,
    down_reported: bool,
    gaps_reported: Vec<String>,
    last_watch: Option<Instant>,
    /// The streamer holds its slot: base backups wait for it (their WAL must reach the archive).
    slot_active: bool,
}

impl Ctx {
    fn run(&self, cancel: &Cancel) {
        let root = &self.settings.backup_dir;
        let _lock = match RunLock::try_database(root, &format!("pitr {}", self.name), "archiving WAL") {
            Ok(lock) => lock,
            Err(NotTaken::Busy(busy)) => {
                let why = format!("another process archives it ({}); this daemon does not", busy.holder);
                return self.problem(Level::Error, "pitr_not_archiving", why);
            }
            Err(e) => return self.problem(Level::Error, "pitr_not_archiving", format!("{e:#}")),
        };
        let mut pause = Duration::from_secs(5);
        let (setup, base_setup, facts) = loop {
            match self.prepare(cancel) {
                Ok(ready) => break ready,
                Err(e) => {
                    let why = format!("{e:#}");
                    warn!(server = %self.name, error = %why, "The archive cannot start yet; trying again.");
                    self.board.update(&self.name, |s| s.problem = Some(why));
                    if cancel.sleep(pause).is_err() {
                        return;
                    }
                    pause = (pause * 2).min(Duration::from_secs(300));
                }
            }
        };
        let streamer = match Streamer::start(setup.clone(), cancel) {
            Ok(s) => s,
            Err(e) => return self.problem(Level::Error, "pitr_not_archiving", format!("{e:#}")),
        };
        info!(server = %self.name, slot = %setup.slot, major = facts.version / 10000, "Archiving WAL.");
        self.board.update(&self.name, |s| (s.slot, s.problem) = (setup.slot.clone(), None));
        let now = Utc::now();
        let mut watch = Watch {
            next_base: next(&self.settings.pitr.base, now, &self.settings),
            next_incremental: next(&self.settings.pitr.incremental, now, &self.settings),
            base: None,
            full_needed_at: None,
            down_since: None,
            down_reported: false,
            gaps_reported: Vec::new(),
            last_watch: None,
            slot_active: false,
        };
        let incremental_ok = facts.version >= 170_000 && facts.summarize_wal.as_deref() == Some("on");
        while !cancel.is_cancelled() {
            self.tick(&streamer, &setup, &base_setup, incremental_ok, &mut watch, cancel);
            let _ = cancel.sleep(TICK);
        }
        if let Some((_, handle)) = watch.base.take() {
            let _ = handle.join();
        }
        streamer.stop();
    }

    /// Connects, reads the facts, and builds the streamer's and the base backups' setups.
    fn prepare(&self, cancel: &Cancel) -> anyhow::Result<(Setup, BaseSetup, Facts)> {
        let engine = self.settings.engines.postgres();
        let (sql, replication) = (self.server.sql_conn()?, self.server.replication_conn()?);
        let answer = engine.query(&sql, "postgres", FACTS, cancel)?;
        let facts: Facts = serde_json::from_str(answer.trim()).with_context(|| format!("reading {answer:?}"))?;
        let major = facts.version / 10000;
        // pg_basebackup puts the manifest in its stdout tar from 15 on.
        let client = engine.installed().client_for(major.max(15))?.dir.clone();
        let spec = &self.server.database.spec;
        let archive = Archive::new(&self.settings.backup_dir, &spec.host, spec.port.unwrap_or(5432));
        std::fs::create_dir_all(&archive.dir).with_context(|| format!("creating {}", archive.dir.display()))?;
        let slot = match &self.settings.pitr.slot_name {
            Some(name) => name.clone(),
            None => default_slot(&self.name, &archive_id(&archive)?),
        };
        let recipients = self.settings.encryption.clone();
        let store = Store::new(archive, self.settings.compression, recipients);
        let spool = self.settings.pitr.spool_dir.join(server_name(&spec.host, spec.port.unwrap_or(5432)));
        std::fs::create_dir_all(&spool).with_context(|| format!("creating the spool {}", spool.display()))?;
        let setup = Setup {
            server: self.name.clone(),
            conn: replication.clone(),
            pg_receivewal: client.join("pg_receivewal"),
            spool,
            store: store.clone(),
            slot,
            segment_size: facts.segment_size,
            partial_every: Duration::from_secs(5),
            keys: self.settings.keys.clone(),
        };
        let base_setup = BaseSetup {
            server: self.name.clone(),
            conn: replication,
            pg_basebackup: client.join("pg_basebackup"),
            store,
            major,
            superuser: facts.superuser.clone(),
        };
        Ok((setup, base_setup, facts))
    }

    fn tick(
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
            self.gaps(setup, w);
        }
        if w.slot_active || w.base.is_some() {
            self.bases(base_setup, setup, incremental_ok, w, cancel);
        }
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

    /// Reads the index: the window and the gaps; a new gap is reported and asks for a full
    /// base backup.
    fn gaps(&self, setup: &Setup, w: &mut Watch) {
        let index = match index::load(&setup.store.archive.index()) {
            Ok((index, _)) => index,
            Err(e) => return warn!(server = %self.name, error = %format!("{e:#}"), "Could not read the archive index."),
        };
        // A gap before the newest full base backup's start is healed: the window from that
        // base reaches the newest WAL without it (`-l` still shows the older windows).
        let healed_from = index.bases.iter().filter(|b| b.n == 0).map(|b| b.start_segment(index.segment_size)).max();
        let (healed, open): (Vec<_>, Vec<_>) = index
            .gaps()
            .into_iter()
            .partition(|g| healed_from.is_some_and(|h| (g.timeline, g.to) < (h.timeline, h.number)));
        let describe = |g: &super::index::Gap| {
            let name = |n| super::wal::Segment { timeline: g.timeline, number: n }.name(index.segment_size);
            format!("timeline {}: {} to {}", g.timeline, name(g.from), name(g.to))
        };
        let described: Vec<String> = open.iter().map(describe).collect();
        let healed: Vec<String> = healed.iter().map(describe).collect();
        let windows = index.windows();
        let latest = latest_wal(&index, &setup.store.archive);
        self.board.update(&self.name, |s| {
            s.gaps = described.clone();
            s.healed_gaps = healed;
            s.base_backups = index.bases.len();
            s.last_base_backup = index.bases.iter().map(|b| b.finished_at).max();
            s.earliest_recovery = windows.last().map(|w| w.from);
            s.latest_wal = windows.last().map(|_| latest.unwrap_or_default());
            s.older_windows = windows.iter().rev().skip(1).map(|w| (w.from, w.to)).collect();
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

    /// The newest base backup's manifest, decoded into the spool.
    fn previous(&self, setup: &Setup) -> anyhow::Result<tempfile::NamedTempFile> {
        let (index, _) = index::load(&setup.store.archive.index())?;
        let last = index.bases.iter().max_by_key(|b| (b.chain, b.n)).ok_or_else(|| anyhow!("no base backup yet"))?;
        base::previous_manifest(&setup.store, last, &self.settings.keys, &setup.spool)
    }

    fn say(&self, level: Level, kind: &'static str, message: String) {
        match level {
            Level::Error => error!(server = %self.name, "{message}"),
            Level::Warn => warn!(server = %self.name, "{message}"),
            _ => info!(server = %self.name, "{message}"),
        }
        let title =
            format!("Point-in-time archive of {}: {}", self.name, kind.trim_start_matches("pitr_").replace('_', " "));
        (self.notify)(event::pitr(level, kind, &self.name, title, message));
    }

    fn problem(&self, level: Level, kind: &'static str, why: String) {
        self.board.update(&self.name, |s| s.problem = Some(why.clone()));
        self.say(level, kind, format!("The archive of {} is not kept: {why}", self.name));
    }
}

/// The next fire of any of `schedules` after `now`.
fn next(
    schedules: &[crate::model::schedule::Schedule],
    now: DateTime<Utc>,
    settings: &Settings,
) -> Option<DateTime<Utc>> {
    schedules.iter().filter_map(|s| s.next_after(now, &settings.zone)).min()
}

/// The newest durable WAL's receive time: the newest segment's, or the `.partial`'s when it
/// is newer.
fn latest_wal(index: &Index, archive: &Archive) -> Option<DateTime<Utc>> {
    #[derive(Deserialize)]
    struct Partial {
        received_at: DateTime<Utc>,
    }
    let segments = index.segments().map(|a| a.received_at).max();
    let partial = std::fs::read(archive.dir.join("partial.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Partial>(&b).ok())
        .map(|p| p.received_at);
    segments.max(partial)
}

/// The archive's random id, made once: two daemons' archives never share a slot name.
fn archive_id(archive: &Archive) -> anyhow::Result<String> {
    let path = archive.id_file();
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::catalog::durable::write_atomic(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// `bc_` and 16 hex digits of sha256(server, archive id): only `[a-z0-9_]`.
pub fn default_slot(server: &str, archive_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{server}\n{archive_id}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("bc_{hex}")
}

/// Less than 2% of the backup volume is free.
fn volume_full(dir: &std::path::Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| {
        let total = s.blocks() as f64 * s.fragment_size() as f64;
        let free = s.blocks_available() as f64 * s.fragment_size() as f64;
        total > 0.0 && free / total < 0.02
    })
}
