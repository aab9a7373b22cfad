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
//! An archive at `PITR_MAX_BYTES` pauses all that (`cap`); the mirrors' thread copies the
//! archive beside it (`pitr::mirror`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::{error, info, warn};

use super::archive::Store;
use super::base::BaseSetup;
use super::index::BaseBackup;
use super::layout::{Archive, server_name};
use super::status::Board;
use super::stream::{Setup, Streamer};
use crate::catalog::lock::{NotTaken, RunLock};
use crate::config::Settings;
use crate::config::pitr::PitrServer;
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
    next_drill: Option<DateTime<Utc>>,
    /// PITR drills running.
    drill: Option<JoinHandle<anyhow::Result<Vec<super::index::Drill>>>>,
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
    prune_failed: bool,
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
        // Nothing appends yet: the log is compacted (removals folded in) before streaming.
        if let Err(e) = super::retention::run(&setup.store, self.settings.pitr.chains, true) {
            warn!(server = %self.name, error = %format!("{e:#}"), "Could not prune the archive.");
        }
        let streamer = match Streamer::start(setup.clone(), cancel) {
            Ok(s) => s,
            Err(e) => return self.problem(Level::Error, "pitr_not_archiving", format!("{e:#}")),
        };
        let mirror =
            super::mirror::start(&self.settings, &setup.store.archive, &self.name, &self.board, &self.notify, cancel);
        info!(server = %self.name, slot = %setup.slot, major = facts.version / 10000, "Archiving WAL.");
        self.board.update(&self.name, |s| (s.slot, s.problem) = (setup.slot.clone(), None));
        let now = Utc::now();
        let mut watch = Watch {
            next_base: watch::next(&self.settings.pitr.base, now, &self.settings),
            next_incremental: watch::next(&self.settings.pitr.incremental, now, &self.settings),
            next_drill: watch::next(&self.settings.pitr.drill, now, &self.settings),
            drill: None,
            base: None,
            full_needed_at: None,
            down_since: None,
            down_reported: false,
            gaps_reported: Vec::new(),
            last_watch: None,
            slot_active: false,
            prune_failed: false,
        };
        let incremental_ok = facts.version >= 170_000 && facts.summarize_wal.as_deref() == Some("on");
        let mut streamer = Some(streamer);
        let mut cap_checked: Option<Instant> = None;
        while !cancel.is_cancelled() {
            if self.settings.pitr.max_bytes.is_some() && cap_checked.is_none_or(|t| t.elapsed() >= WATCH) {
                cap_checked = Some(Instant::now());
                let stored = cap::stored_bytes(&setup.store.archive.dir);
                match cap::decide(stored, self.settings.pitr.max_bytes, streamer.is_some()) {
                    cap::Action::Pause => {
                        if let Some(s) = streamer.take() {
                            s.stop();
                        }
                        self.paused_for_cap(&setup, stored, cancel);
                    }
                    cap::Action::Resume => match Streamer::start(setup.clone(), cancel) {
                        Ok(s) => {
                            info!(server = %self.name, "The archive is under PITR_MAX_BYTES again: archiving WAL.");
                            self.board.update(&self.name, |s| s.problem = None);
                            streamer = Some(s);
                        }
                        Err(e) => {
                            warn!(server = %self.name, error = %format!("{e:#}"), "Could not start streaming again.")
                        }
                    },
                    cap::Action::Nothing => {}
                }
            }
            if let Some(s) = &streamer {
                self.tick(s, &setup, &base_setup, incremental_ok, &mut watch, cancel);
            }
            let _ = cancel.sleep(TICK);
        }
        if let Some(handle) = watch.drill.take() {
            let _ = handle.join();
        }
        if let Some((_, handle)) = watch.base.take() {
            let _ = handle.join();
        }
        if let Some(s) = streamer {
            s.stop();
        }
        // After the streamer's last pass: the mirror's last pass sends what it stored.
        if let Some(mirror) = mirror {
            mirror.stop();
        }
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
        let store = Store::new(archive, self.settings.compression, recipients)
            .with_base_compression(self.settings.pitr.base_compression);
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
    let id = crate::catalog::checksum::hex(&bytes);
    crate::catalog::durable::write_atomic(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// `bc_` and 16 hex digits of sha256(server, archive id): only `[a-z0-9_]`.
pub fn default_slot(server: &str, archive_id: &str) -> String {
    let digest = crate::catalog::manifest::digest_name(&format!("{server}\n{archive_id}"));
    format!("bc_{}", &digest[..16])
}

mod cap;
mod watch;

#[cfg(test)]
mod tests {
    #[test]
    fn slot_names_are_valid_stable_and_unique_per_archive() {
        let a = super::default_slot("wallet-db:5432", "0123");
        assert_eq!(a, super::default_slot("wallet-db:5432", "0123"));
        assert_ne!(a, super::default_slot("wallet-db:5432", "4567"));
        assert_eq!(crate::config::pitr::slot_name_problem(&a), None, "{a}");
        assert_eq!(a.len(), 19);
    }
}
