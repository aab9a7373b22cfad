//! WAL, continuously: one `pg_receivewal` per server, supervised, and a mover that archives
//! what it writes.
//!
//! The streamer runs `pg_receivewal --synchronous --slot <slot> --no-loop` into a spool outside
//! `BACKUP_DIR` (plaintext WAL lives only there), with the password in its environment, never
//! argv; its slot is created before every run (`--create-slot --if-not-exists`, which reserves
//! WAL at once), so a slot the guard dropped comes back. When the server no longer has the WAL
//! after the spool's newest, the archived WAL leaves the spool and streaming goes on from
//! where the server's WAL begins (a gap, healed by a full base backup). When it exits it is started again after a pause that doubles up to a minute (reset
//! after a minute of running); the last lines of its stderr are logged.
//!
//! The mover looks at the spool every second: each finished segment and history file not yet
//! in the index is stored (`archive::Store`) and then recorded (`index::append`), in that
//! order, so the index never names a file that is not durable; archived segments leave the
//! spool except the newest (servers before 15 restart an empty spool from their current
//! position, which would be a gap). The segment being written (`.partial`) is stored again
//! whenever it changed, at most every `partial_every`, with its receive time in
//! `partial.json`: the recovery point is seconds even on a quiet server.
//!
//! The daemon's archiver (`pitr::archiver`) starts one per server and guards its slot.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::archive::Store;
use super::index::{self, Archived, Event, Index};
use super::wal::{Segment, history_timeline};
use crate::model::database::Conn;
use crate::system::cancel::Cancel;

/// How long the replication connection may take (each attempt; the supervisor tries again).
const CONNECT_TIMEOUT_SECS: u32 = 30;

/// What a streamer needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `host:port`, for logs and the index.
    pub server: String,
    /// The replication connection.
    pub conn: Conn,
    pub pg_receivewal: PathBuf,
    pub spool: PathBuf,
    pub store: Store,
    pub slot: String,
    pub segment_size: u64,
    pub partial_every: Duration,
    /// To read archived WAL back into a lost spool when the archive is encrypted.
    pub keys: crate::stream::crypt::Keys,
}

/// A running streamer and mover; `stop` ends both.
pub struct Streamer {
    cancel: Cancel,
    threads: Vec<JoinHandle<()>>,
    child: Arc<AtomicU32>,
}

impl Streamer {
    /// Starts both threads.
    ///
    /// # Errors
    /// The spool or the archive folder cannot be created, or the index cannot be read.
    pub fn start(setup: Setup, cancel: &Cancel) -> anyhow::Result<Streamer> {
        std::fs::create_dir_all(&setup.spool)
            .with_context(|| format!("creating the spool {}", setup.spool.display()))?;
        std::fs::create_dir_all(&setup.store.archive.dir)
            .with_context(|| format!("creating the archive {}", setup.store.archive.dir.display()))?;
        let (mut known, _) = index::load(&setup.store.archive.index())?;
        if known.segment_size == 0 {
            let started = Event::Started { segment_size: setup.segment_size, server: setup.server.clone() };
            index::append(&setup.store.archive.index(), &started)?;
            known.apply(started);
        }
        refill(&setup, &known);
        let cancel = cancel.child();
        let child = Arc::new(AtomicU32::new(0));
        let supervise = {
            let (setup, cancel, child) = (setup.clone(), cancel.clone(), child.clone());
            std::thread::spawn(move || supervise(&setup, &cancel, &child))
        };
        let mover = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                let mut mover = Mover { setup, index: known, partial: None };
                while !cancel.is_cancelled() {
                    if let Err(e) = mover.pass() {
                        warn!(server = %mover.setup.server, error = %format!("{e:#}"), "Archiving WAL failed; trying again.");
                    }
                    let _ = cancel.sleep(Duration::from_secs(1));
                }
                // What was finished before the stop is archived too.
                let _ = mover.pass();
            })
        };
        Ok(Streamer { cancel, threads: vec![supervise, mover], child })
    }

    /// The running `pg_receivewal`'s process id (0 between runs).
    pub fn child_pid(&self) -> u32 {
        self.child.load(Ordering::SeqCst)
    }

    /// Stops the streamer (its child is signalled) and the mover, after a last pass.
    pub fn stop(self) {
        self.cancel.cancel();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// A spool without WAL (lost with its volume) gets the newest archived segment back: on
/// servers before 15, `pg_receivewal` in an empty folder starts from the server's current
/// position, and the WAL in between would be a gap; with a segment there it goes on after it.
fn refill(setup: &Setup, index: &Index) {
    let size = setup.segment_size;
    let has_wal = std::fs::read_dir(&setup.spool).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        Segment::parse(name.strip_suffix(".partial").unwrap_or(&name), size).is_some()
    });
    let Some(newest) = index.segments().max_by_key(|a| (a.timeline, a.number)) else { return };
    if has_wal {
        return;
    }
    match setup.store.restore_segment(newest, size, &setup.keys, &setup.spool) {
        Ok(path) => {
            info!(server = %setup.server, path = %path.display(), "The spool was empty: the newest archived segment is back in it.")
        }
        Err(e) => warn!(
            server = %setup.server,
            error = %format!("{e:#}"),
            "The spool is empty and the newest archived segment cannot be put back: a server before 15 streams from its current position (a gap until the next full base backup)."
        ),
    }
}

/// Runs `pg_receivewal` until cancelled, again after each exit.
fn supervise(setup: &Setup, cancel: &Cancel, child_pid: &AtomicU32) {
    let mut pause = Duration::from_secs(1);
    while !cancel.is_cancelled() {
        // Before every run: a slot the guard dropped (or a failover lost) is made again.
        if let Err(e) = run_once(setup, &["--create-slot", "--if-not-exists"], cancel, child_pid) {
            warn!(server = %setup.server, slot = %setup.slot, error = %format!("{e:#}"), "Could not create the replication slot.");
        }
        for name in remove_unfinished_partials(&setup.spool, setup.segment_size) {
            warn!(server = %setup.server, file = %name, "Removed a .partial that pg_receivewal was stopped while creating (only zeros, no WAL): it would refuse to start on it.");
        }
        let started = Instant::now();
        info!(server = %setup.server, slot = %setup.slot, "Streaming WAL (pg_receivewal).");
        let result = run_once(setup, &["--synchronous", "--no-loop"], cancel, child_pid);
        if cancel.is_cancelled() {
            break;
        }
        match result {
            Ok(()) => warn!(server = %setup.server, "pg_receivewal ended; starting it again."),
            Err(e) => {
                let text = format!("{e:#}");
                warn!(server = %setup.server, error = %text, "pg_receivewal failed; starting it again.");
                if text.contains("has already been removed") {
                    clear_spool(setup);
                }
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_secs(1);
        }
        let _ = cancel.sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// `pg_receivewal` fills a new segment file with zeros to its full size before it writes WAL
/// into it, and refuses to start on a `.partial` of any other size than 0 or a segment's (a
/// run killed while filling leaves one). Such a file that holds only zeros has no WAL: it is
/// removed (and its name returned). One holding anything else is left for pg_receivewal to
/// report.
fn remove_unfinished_partials(spool: &Path, segment_size: u64) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if !name.ends_with(".partial") || len == 0 || len >= segment_size {
            continue;
        }
        if only_zeros(&entry.path()) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Whether the file holds nothing but zero bytes, read 64 KiB at a time (a segment can be
/// 1 GB); false when it cannot be read.
fn only_zeros(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

/// The server no longer has the WAL after the spool's newest (its slot was dropped, or it
/// was made again after a failover): the spool's WAL that is archived goes, so that the
/// next run starts where the server's WAL begins. What is missing in between is a gap in the
/// index, reported and healed by a full base backup; nothing not yet archived is removed.
fn clear_spool(setup: &Setup) {
    let (index, _) = index::load(&setup.store.archive.index()).unwrap_or_default();
    let size = setup.segment_size;
    for entry in std::fs::read_dir(&setup.spool).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let archived = match name.strip_suffix(".partial") {
            // Its content was stored as the archive's partial; the server resends nothing older.
            Some(n) => Segment::parse(n, size).is_some(),
            None => Segment::parse(&name, size).is_some_and(|s| index.has(s)),
        };
        if archived {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    warn!(server = %setup.server, "The server no longer has the WAL after the spool's newest: streaming from where its WAL begins (a gap in the archive until the next full base backup).");
}

/// One run of `pg_receivewal` with `extra` options, waited for (cancellation stops it).
fn run_once(setup: &Setup, extra: &[&str], cancel: &Cancel, child_pid: &AtomicU32) -> anyhow::Result<()> {
    let conninfo = crate::engine::postgres::conninfo(&setup.conn, "postgres");
    let mut cmd =
        crate::engine::postgres::libpq_command(&setup.pg_receivewal, &setup.conn, &conninfo, CONNECT_TIMEOUT_SECS);
    cmd.arg("-D").arg(&setup.spool).args(["--slot", &setup.slot]).args(extra);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child: Child = cmd.spawn().with_context(|| format!("starting {}", setup.pg_receivewal.display()))?;
    let _guard = cancel.register(child.id());
    child_pid.store(child.id(), Ordering::SeqCst);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let reader = child.stderr.take().map(|stderr| {
        let tail = tail.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == 10 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let _ = cancel.sleep(Duration::from_millis(200));
    };
    child_pid.store(0, Ordering::SeqCst);
    if let Some(r) = reader {
        let _ = r.join();
    }
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    anyhow::bail!("pg_receivewal exited with {status}: {}", tail.join(" | "))
}

/// The mover's state between passes.
struct Mover {
    setup: Setup,
    index: Index,
    /// The `.partial` last stored: its name and modification time, and when.
    partial: Option<(String, SystemTime, Instant)>,
}

impl Mover {
    /// One look at the spool.
    fn pass(&mut self) -> anyhow::Result<()> {
        let size = self.setup.segment_size;
        let mut finished = Vec::new();
        let mut partials = Vec::new();
        for entry in std::fs::read_dir(&self.setup.spool)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(timeline) = history_timeline(&name) {
                self.history(&entry.path(), timeline)?;
            } else if let Some(segment) = Segment::parse(&name, size) {
                finished.push((segment, entry.path()));
            } else if let Some(segment) = name.strip_suffix(".partial").and_then(|n| Segment::parse(n, size)) {
                partials.push((segment, entry.path()));
            }
        }
        finished.sort();
        let newest = finished.last().map(|(s, _)| *s);
        for (segment, path) in &finished {
            if !self.index.has(*segment) {
                let received_at = modified(path);
                let stored = self.setup.store.segment(path, *segment, size)?;
                let event = Event::Segment(Archived {
                    timeline: segment.timeline,
                    number: segment.number,
                    size: stored.size,
                    sha256: stored.sha256,
                    received_at,
                });
                index::append(&self.setup.store.archive.index(), &event)?;
                self.index.apply(event);
                // The segment is whole now: its `.partial` copy is not needed any more.
                let partial = format!("{}.partial", segment.name(size));
                let _ = std::fs::remove_file(self.setup.store.archive.wal(
                    segment.timeline,
                    &partial,
                    &self.setup.store.extension(),
                ));
            }
            // Archived (now or before): out of the spool, but for the newest.
            if Some(*segment) != newest {
                std::fs::remove_file(path).with_context(|| format!("removing {} from the spool", path.display()))?;
            }
        }
        if let Some((segment, path)) = partials.into_iter().max() {
            self.refresh_partial(segment, &path)?;
        }
        Ok(())
    }

    fn history(&mut self, path: &Path, timeline: u32) -> anyhow::Result<()> {
        if self
            .setup
            .store
            .existing(&self.setup.store.archive.history(timeline, &self.setup.store.extension()))
            .exists()
        {
            return Ok(());
        }
        let (_, switches) = self.setup.store.history(path, timeline)?;
        let event =
            Event::History { timeline, switches: switches.iter().map(|s| (s.timeline, s.at.to_string())).collect() };
        index::append(&self.setup.store.archive.index(), &event)?;
        self.index.apply(event);
        Ok(())
    }

    /// Stores the `.partial` again when it changed and `partial_every` has passed; never one
    /// shorter than a segment: pg_receivewal fills a new segment file with zeros to its full
    /// size before it writes WAL into it, so a shorter one holds no WAL yet, and a copy of it
    /// would fail every drill and restore that needs it (a test found one 13 MB long).
    fn refresh_partial(&mut self, segment: Segment, path: &Path) -> anyhow::Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let meta = std::fs::metadata(path);
        if meta.as_ref().map(|m| m.len()).unwrap_or(0) != self.setup.segment_size {
            return Ok(());
        }
        let mtime = meta.and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((last, at, when)) = &self.partial
            && *last == name
            && (*at == mtime || when.elapsed() < self.setup.partial_every)
        {
            return Ok(());
        }
        // pg_receivewal renames it when the segment is whole: gone since the folder was read.
        let stored = match self.setup.store.partial(path, segment, self.setup.segment_size) {
            Err(_) if !path.exists() => return Ok(()),
            other => other?,
        };
        let state = serde_json::json!({
            "timeline": segment.timeline,
            "number": segment.number,
            "received_at": DateTime::<Utc>::from(mtime).to_rfc3339(),
            "sha256": stored.sha256,
        });
        crate::catalog::durable::write_atomic(
            &self.setup.store.archive.dir.join("partial.json"),
            state.to_string().as_bytes(),
        )?;
        self.partial = Some((name, mtime, Instant::now()));
        Ok(())
    }
}

/// When the spool file was last written (its segment's receive time).
fn modified(path: &Path) -> DateTime<Utc> {
    std::fs::metadata(path).and_then(|m| m.modified()).map(DateTime::<Utc>::from).unwrap_or_else(|_| Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a short `.partial` of zeros goes: not a whole one, an empty one, one holding WAL,
    /// or a finished segment.
    #[test]
    fn a_partial_left_while_being_filled_with_zeros_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let size = 1u64 << 20;
        let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
        write("000000010000000000000006.partial", vec![0; 279_347]);
        write("000000010000000000000007.partial", vec![0; size as usize]);
        write("000000010000000000000008.partial", Vec::new());
        let mut wal = vec![0; 1000];
        wal[10] = 0xd1;
        write("000000010000000000000009.partial", wal);
        let mut late = vec![0; 200_000];
        late[150_000] = 7; // past the first 64 KiB read
        write("00000001000000000000000A.partial", late);
        write("000000010000000000000005", vec![0; 1000]);
        assert_eq!(remove_unfinished_partials(dir.path(), size), vec!["000000010000000000000006.partial".to_string()]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 5, "{left:?}");
        assert!(!left.contains(&"000000010000000000000006.partial".to_string()));
    }

    /// A `.partial` still being filled with zeros is not stored; once whole, it is.
    #[test]
    fn a_partial_is_stored_only_at_its_full_size() {
        use crate::pitr::layout::Archive;
        use crate::stream::compress::Compression;
        let dir = tempfile::tempdir().unwrap();
        let (spool, remote) = (dir.path().join("spool"), dir.path().join("archive"));
        std::fs::create_dir_all(&spool).unwrap();
        let size = 1u64 << 20;
        let store = Store::new(Archive::new(&remote, "db", 5432), Compression::default(), None);
        let setup = Setup {
            server: "db:5432".into(),
            conn: Conn { host: "db.invalid".into(), port: Some(5432), user: None, password: None },
            pg_receivewal: PathBuf::from("pg_receivewal"),
            spool: spool.clone(),
            store: store.clone(),
            slot: "s".into(),
            segment_size: size,
            partial_every: Duration::ZERO,
            keys: crate::stream::crypt::Keys::default(),
        };
        let mut mover = Mover { setup, index: Index::default(), partial: None };
        let path = spool.join("000000010000000000000007.partial");
        std::fs::write(&path, vec![0; 13 << 16]).unwrap();
        mover.pass().unwrap();
        assert!(crate::pitr::archive::partial_record(&store.archive).is_none(), "a short .partial is not stored");
        let mut whole = vec![0; size as usize];
        whole[100] = 0xd1;
        std::fs::write(&path, whole).unwrap();
        mover.pass().unwrap();
        let (segment, _, _) = crate::pitr::archive::partial_record(&store.archive).expect("stored once whole");
        assert_eq!(segment, Segment { timeline: 1, number: 7 });
    }
}
