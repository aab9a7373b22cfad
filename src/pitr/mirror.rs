//! Copies of a server's archive on the mirrors (FTPS, S3), kept by a thread beside its
//! archiver: every few seconds, each finished segment, history file and base backup not yet
//! there goes up, oldest first, then the files that are replaced as they change (the
//! `.partial`, its record and the index: at most once a minute, so a mirror's recovery point
//! is about a minute behind ours even on a quiet server). One `put_many` per pass: one FTPS
//! login for all its files (a login per 16 MB segment cannot keep up), the S3 client's
//! connection kept. The mirror's layout is the archive's (`pitr/<server>/…`): its copy is
//! enough to restore from.
//!
//! On S3 with Object Lock, each copy is locked until its chain is expected to expire
//! (`plan::lock_until`); the replaced files are not locked (versioning keeps their earlier
//! copies). What each mirror holds is kept in a ledger in the archive
//! (`mirrored/<digest of the mirror's name>.jsonl`): a lost ledger sends everything again,
//! never less. Copies that retention removed here are deleted on mirrors that prune, at most
//! hourly (a copy still locked waits for a later hour).

mod plan;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

pub use plan::{LocalFile, LockPolicy};

use super::index;
use super::layout::Archive;
use crate::storage::{PutMany, Storage, Upload};

/// How often the replaced files (`.partial`, its record, the index) go up.
const REPLACED_EVERY: Duration = Duration::from_secs(60);
/// How often copies that retention removed are deleted.
const DELETE_EVERY: Duration = Duration::from_secs(3600);

/// A file's size and modification time: whether it changed.
type Stamp = (u64, Option<std::time::SystemTime>);

/// One mirror and what it holds.
struct Copy {
    storage: Box<dyn Storage>,
    ledger: Ledger,
    next_delete: Instant,
}

/// An archive's mirrors.
pub struct Mirrors {
    archive: Archive,
    copies: Vec<Copy>,
    lock: Option<LockPolicy>,
    replaced_at: Option<Instant>,
    /// The index as last read, with its file's size and modification time then.
    index_cache: Option<(Stamp, Arc<index::Index>)>,
}

/// What a pass leaves: the oldest file not yet on every mirror, and the first failure.
#[derive(Debug, Default)]
pub struct Outcome {
    pub behind_since: Option<DateTime<Utc>>,
    pub problem: Option<String>,
}

impl Mirrors {
    /// # Errors
    /// A ledger cannot be read.
    pub fn new(archive: Archive, storages: Vec<Box<dyn Storage>>, lock: Option<LockPolicy>) -> anyhow::Result<Mirrors> {
        let copies = storages
            .into_iter()
            .map(|storage| {
                let ledger = Ledger::open(&archive, &storage.name())?;
                Ok(Copy { storage, ledger, next_delete: Instant::now() })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Mirrors { archive, copies, lock, replaced_at: None, index_cache: None })
    }

    pub fn len(&self) -> usize {
        self.copies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// The index, read again only when its file changed (it is read every pass).
    fn index(&mut self) -> anyhow::Result<Arc<index::Index>> {
        let path = self.archive.index();
        let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let stamp = (meta.len(), meta.modified().ok());
        if let Some((seen, idx)) = &self.index_cache
            && *seen == stamp
        {
            return Ok(idx.clone());
        }
        let idx = Arc::new(index::load(&path)?.0);
        self.index_cache = Some((stamp, idx.clone()));
        Ok(idx)
    }

    /// One pass over every mirror (`last`: the replaced files go too, whenever they went).
    pub fn pass(&mut self, last: bool) -> Outcome {
        let mut out = Outcome::default();
        let idx = match self.index() {
            Ok(idx) => idx,
            Err(e) => return Outcome { behind_since: None, problem: Some(format!("{e:#}")) },
        };
        let local = match local_files(&self.archive) {
            Ok(files) => files,
            Err(e) => return Outcome { behind_since: None, problem: Some(format!("{e:#}")) },
        };
        let due = last || self.replaced_at.is_none_or(|t| t.elapsed() >= REPLACED_EVERY);
        let now = Utc::now();
        for copy in &mut self.copies {
            let pass = plan::pass(&local, &copy.ledger.held, &idx, self.lock, due, now);
            let uploads: Vec<Upload> = pass
                .uploads
                .iter()
                .map(|(f, until)| Upload {
                    local: self.archive.backup_dir().join(&f.key),
                    key: f.key.clone(),
                    lock_until: *until,
                })
                .collect();
            let (done, failed) = if uploads.is_empty() {
                (0, None)
            } else {
                match copy.storage.put_many(&uploads) {
                    Ok(()) => (uploads.len(), None),
                    Err(PutMany { done, error }) => (done, Some(error)),
                }
            };
            let sent: Vec<&LocalFile> = pass.uploads.iter().take(done).map(|(f, _)| f).collect();
            if let Err(e) = copy.ledger.record(&sent, &[]) {
                out.problem.get_or_insert(format!("{e:#}"));
            }
            // What is still not there, the replaced files held back included.
            let left = pass.uploads[done..].iter().map(|(f, _)| f).chain(&pass.held_back);
            if let Some(behind) = left.map(|f| f.mtime).min() {
                out.behind_since = Some(out.behind_since.map_or(behind, |b| b.min(behind)));
            }
            if let Some(e) = failed {
                out.problem.get_or_insert(format!("copying the archive to {}: {e:#}", copy.storage.name()));
                continue;
            }
            if copy.storage.prunes() && !pass.deletes.is_empty() && Instant::now() >= copy.next_delete {
                copy.next_delete = Instant::now() + DELETE_EVERY;
                delete(copy, &pass.deletes);
            }
        }
        if due && out.problem.is_none() {
            self.replaced_at = Some(Instant::now());
        }
        out
    }
}

/// Deletes copies retention removed; a copy still locked stays in the ledger for later.
fn delete(copy: &mut Copy, keys: &[String]) {
    let mut gone = Vec::new();
    for key in keys {
        match copy.storage.delete(key) {
            Ok(()) => gone.push(key.clone()),
            Err(e) if e.downcast_ref::<crate::storage::s3_lock::Locked>().is_some() => {}
            Err(e) => {
                warn!(storage = %copy.storage.name(), key = %key, error = %format!("{e:#}"), "Could not delete an archive copy that retention removed; trying again in an hour.");
            }
        }
    }
    if let Err(e) = copy.ledger.record(&[], &gone) {
        warn!(error = %format!("{e:#}"), "Could not record the deleted copies.");
    }
}

/// Every file of the archive but the ledgers and files being written, keyed by its path
/// under `BACKUP_DIR`.
fn local_files(archive: &Archive) -> anyhow::Result<Vec<LocalFile>> {
    let root = archive.backup_dir();
    let mut out = Vec::new();
    let mut dirs = vec![archive.dir.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                if !(dir == archive.dir && name == LEDGERS) {
                    dirs.push(path);
                }
                continue;
            }
            if name.starts_with('.') || name.ends_with(crate::catalog::layout::IN_PROGRESS_SUFFIX) {
                continue;
            }
            let Some(key) = path.strip_prefix(root).ok().and_then(Path::to_str) else { continue };
            let mtime = meta.modified().map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now());
            out.push(LocalFile { key: key.to_string(), size: meta.len(), mtime });
        }
    }
    Ok(out)
}

/// The ledgers' folder in the archive.
const LEDGERS: &str = "mirrored";

/// One line of a ledger.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime: Option<i64>,
}

/// What one mirror holds, as sent: key → size and mtime (seconds).
struct Ledger {
    path: std::path::PathBuf,
    held: BTreeMap<String, (u64, i64)>,
    lines: usize,
}

impl Ledger {
    fn open(archive: &Archive, mirror: &str) -> anyhow::Result<Ledger> {
        let digest = crate::catalog::manifest::digest_name(mirror);
        let path = archive.dir.join(LEDGERS).join(format!("{}.jsonl", &digest[..16]));
        let mut ledger = Ledger { path, held: BTreeMap::new(), lines: 0 };
        let text = match std::fs::read_to_string(&ledger.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ledger),
            Err(e) => return Err(e).with_context(|| format!("reading {}", ledger.path.display())),
        };
        // A line cut by a crash is skipped: that file is sent again.
        for line in text.lines().filter_map(|l| serde_json::from_str::<Line>(l).ok()) {
            ledger.lines += 1;
            match (line.size, line.mtime) {
                (Some(size), Some(mtime)) => ledger.held.insert(line.key, (size, mtime)),
                _ => ledger.held.remove(&line.key),
            };
        }
        Ok(ledger)
    }

    /// Records files sent and copies deleted (one synced append); rewritten whole when mostly
    /// superseded lines.
    fn record(&mut self, sent: &[&LocalFile], deleted: &[String]) -> anyhow::Result<()> {
        if sent.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        for f in sent {
            self.held.insert(f.key.clone(), (f.size, f.mtime.timestamp()));
        }
        for k in deleted {
            self.held.remove(k);
        }
        let line = |key: &String, held: Option<&(u64, i64)>| {
            let l = Line { key: key.clone(), size: held.map(|h| h.0), mtime: held.map(|h| h.1) };
            serde_json::to_string(&l).map(|s| s + "\n")
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.lines += sent.len() + deleted.len();
        if self.lines > 4 * self.held.len() + 1000 {
            let text: String = self.held.iter().map(|(k, h)| line(k, Some(h))).collect::<Result<_, _>>()?;
            crate::catalog::durable::write_atomic(&self.path, text.as_bytes())?;
            self.lines = self.held.len();
            return Ok(());
        }
        let text: String = sent
            .iter()
            .map(|f| line(&f.key, self.held.get(&f.key)))
            .chain(deleted.iter().map(|k| line(k, None)))
            .collect::<Result<_, _>>()?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The running mirror thread: `stop` makes it do a last pass and waits for it.
pub struct Running {
    stop: crate::system::cancel::Cancel,
    handle: std::thread::JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.join();
    }
}

/// Starts the thread that copies `archive` to every configured mirror; `None` without
/// mirrors. A mirror that cannot be set up is a problem on the board. `cancel` ends the
/// retries of an upload; the thread itself runs until `Running::stop` (after the streamer's
/// last pass, so that what it stored goes too).
pub fn start(
    settings: &crate::config::Settings,
    archive: &Archive,
    server: &str,
    board: &Arc<super::status::Board>,
    notify: &super::archiver::Notify,
    cancel: &crate::system::cancel::Cancel,
) -> Option<Running> {
    let storages = match crate::storage::from_settings(settings, cancel) {
        Ok(s) if s.is_empty() => return None,
        Ok(s) => s,
        Err(e) => {
            board.update(server, |s| s.mirror_problem = Some(e.to_string()));
            return None;
        }
    };
    let lock = settings.mirrors.s3.as_ref().filter(|s3| s3.object_lock.is_some()).map(|s3| {
        let now = Utc::now();
        let week = Duration::from_secs(7 * 86_400);
        let interval =
            settings.pitr.base.iter().filter_map(|s| s.interval_hint(now, &settings.zone)).max().unwrap_or(week);
        LockPolicy {
            chains: u32::try_from(settings.pitr.chains).unwrap_or(u32::MAX),
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX),
            min: chrono::Duration::from_std(s3.object_lock_min).unwrap_or(chrono::Duration::MAX),
        }
    });
    let mirrors = match Mirrors::new(archive.clone(), storages, lock) {
        Ok(m) => m,
        Err(e) => {
            board.update(server, |s| s.mirror_problem = Some(format!("{e:#}")));
            return None;
        }
    };
    let stop = crate::system::cancel::Cancel::new();
    let (server, board, notify, until) = (server.to_string(), board.clone(), notify.clone(), stop.clone());
    let handle = std::thread::spawn(move || run(mirrors, &server, &board, &notify, &until));
    Some(Running { stop, handle })
}

/// The thread that keeps `mirrors` up to date until `cancel`, reporting on `board` as
/// `server` and notifying a failure once per streak (and its end).
pub fn run(
    mut mirrors: Mirrors,
    server: &str,
    board: &Arc<super::status::Board>,
    notify: &super::archiver::Notify,
    cancel: &crate::system::cancel::Cancel,
) {
    let mut failing = false;
    board.update(server, |s| s.mirrors = mirrors.len());
    loop {
        let last = cancel.is_cancelled();
        let out = mirrors.pass(last);
        board.update(server, |s| (s.mirror_behind_since, s.mirror_problem) = (out.behind_since, out.problem.clone()));
        match (&out.problem, failing) {
            (Some(why), false) => {
                error!(server = %server, error = %why, "The archive's mirror copy failed; it is tried again.");
                let title = format!("Point-in-time archive of {server}: mirror failing");
                notify(crate::notify::event::pitr(
                    crate::notify::event::Level::Error,
                    "pitr_mirror_failing",
                    server,
                    title,
                    why.clone(),
                ));
                failing = true;
            }
            (None, true) => {
                let message = "The archive's mirrors hold every file again.";
                info!(server = %server, "{message}");
                let title = format!("Point-in-time archive of {server}: mirror copying again");
                notify(crate::notify::event::pitr(
                    crate::notify::event::Level::Info,
                    "pitr_mirror_ok",
                    server,
                    title,
                    message.into(),
                ));
                failing = false;
            }
            _ => {}
        }
        if last {
            return;
        }
        // Cancelled: one last pass, the replaced files included.
        let _ = cancel.sleep(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests;
