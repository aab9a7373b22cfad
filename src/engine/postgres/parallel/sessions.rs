//! The psql sessions of a parallel load: lane 0 (serial) and the workers, each a `psql -f -`
//! fed through a bounded channel (the splitter waits when a session is behind: bounded
//! memory), started when first sent to and closed at each barrier.
//!
//! Every stderr line goes to one shared error tally, with the session's line mapped back to
//! the file's. A session that stops on an error cancels its siblings. After each unit of work
//! a marker query tells, on stdout, that the session got there: that is how the splitter
//! knows which worker has the least unfinished work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::anyhow;

use super::lanes::{Lanes, Piece, idlest, stopped};
use crate::engine::load::SharedErrors;
use crate::engine::postgres::PostgresEngine;
use crate::engine::{Conn, process};
use crate::system::cancel::{Cancel, Interrupted};

/// Pieces queued per session before the splitter waits (16 × 256 KiB: one piece of a table's
/// rows, `split::SPLIT_BYTES`).
const QUEUE: usize = 16;
/// Text gathered before it is sent on.
const SEND_BYTES: usize = 256 * 1024;
const MARKER: &str = "bc-parallel-unit-done";

/// Where a session's lines come from: (first session line, file line or `None`), ascending.
type LineMap = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

struct Session {
    tx: Option<SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
    /// Lines sent so far (the next text starts on line `lines + 1`).
    lines: u64,
    map: LineMap,
    units: u64,
    done: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct PsqlLanes<'a> {
    pub engine: &'a PostgresEngine,
    pub admin: &'a Conn,
    pub database: &'a str,
    pub ignore_errors: bool,
    pub workers: usize,
    pub tally: SharedErrors,
    /// The load's own token: cancelled with the caller's, or when one session fails.
    pub cancel: Cancel,
    sessions: Vec<Option<Session>>,
    /// Sessions started in all (the most at once is `workers + 1`).
    pub started: u64,
}

impl<'a> PsqlLanes<'a> {
    pub fn new(
        engine: &'a PostgresEngine,
        admin: &'a Conn,
        database: &'a str,
        ignore_errors: bool,
        workers: usize,
        tally: SharedErrors,
        cancel: &Cancel,
    ) -> Self {
        PsqlLanes {
            engine,
            admin,
            database,
            ignore_errors,
            workers,
            tally,
            cancel: cancel.child(),
            sessions: (0..=workers).map(|_| None).collect(),
            started: 0,
        }
    }

    fn start(&mut self, lane: usize) -> Session {
        let mut cmd = self.engine.psql(self.admin, self.database);
        let stop = if self.ignore_errors { "ON_ERROR_STOP=0" } else { "ON_ERROR_STOP=1" };
        cmd.args(["-v", stop, "-f", "-"]);
        cmd.env("PGOPTIONS", "-c synchronous_commit=off -c client_min_messages=warning");
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let map: LineMap = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let tap = {
            let (tally, map) = (Arc::clone(&self.tally), Arc::clone(&map));
            Box::new(move |line: &str| {
                let file_line = |n: u64| locate(&map, n);
                if let Ok(mut t) = tally.lock() {
                    t.observe_psql_mapped(line, &file_line);
                }
            })
        };
        let marker = {
            let done = Arc::clone(&done);
            Box::new(move |line: &str| {
                if line == MARKER {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut input = ChannelReader { rx, chunk: Vec::new(), at: 0, queued: Arc::clone(&queued) };
        let cancel = self.cancel.clone();
        let label = format!("psql (parallel load, session {lane})");
        let handle = std::thread::spawn(move || {
            let fed = process::feed_stdin_watched(cmd, &label, &mut input, Some(tap), Some(marker), &cancel);
            if fed.is_err() {
                // One session stopped (an error with ON_ERROR_STOP, a lost connection): stop the
                // others rather than let them run on.
                cancel.cancel();
            }
            fed.map(|_| ())
        });
        self.started += 1;
        Session { tx: Some(tx), pending: Vec::new(), lines: 0, map, units: 0, done, queued, handle: Some(handle) }
    }

    fn session(&mut self, lane: usize) -> &mut Session {
        if self.sessions[lane].is_none() {
            let s = self.start(lane);
            self.sessions[lane] = Some(s);
        }
        self.sessions[lane].as_mut().expect("just started")
    }

    fn flush(&mut self, lane: usize) -> anyhow::Result<()> {
        let Some(s) = self.sessions[lane].as_mut() else { return Ok(()) };
        if s.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut s.pending);
        s.queued.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let sent = s.tx.as_ref().map(|tx| tx.send(chunk).is_ok()).unwrap_or(false);
        if !sent {
            // The session is gone: its own error says why.
            return Err(self
                .close(lane)
                .err()
                .unwrap_or_else(|| anyhow!("session {lane} of the parallel load ended early")));
        }
        Ok(())
    }

    /// Closes `lane`'s input and waits for its session.
    fn close(&mut self, lane: usize) -> anyhow::Result<()> {
        let Some(mut s) = self.sessions[lane].take() else { return Ok(()) };
        drop(s.tx.take());
        let result = s.handle.take().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a load thread panicked"))));
        result.unwrap_or(Ok(()))
    }
}

impl Lanes for PsqlLanes<'_> {
    fn workers(&self) -> usize {
        self.workers
    }

    fn send(&mut self, lane: usize, piece: Piece<'_>, file_line: Option<u64>) -> anyhow::Result<()> {
        let text = piece.text();
        if self.cancel.is_cancelled() {
            return Err(self.failure());
        }
        let s = self.session(lane);
        {
            let mut map = s.map.lock().unwrap_or_else(|e| e.into_inner());
            let next = s.lines + 1;
            let continues = match map.last() {
                Some((first, Some(f))) => file_line == Some(f + (next - first)),
                Some((_, None)) => file_line.is_none(),
                None => false,
            };
            if !continues {
                map.push((next, file_line));
            }
        }
        s.lines += memchr::memchr_iter(b'\n', text).count() as u64;
        s.pending.extend_from_slice(text);
        if s.pending.len() >= SEND_BYTES {
            self.flush(lane).map_err(|e| self.first_error(e))?;
        }
        Ok(())
    }

    fn end_unit(&mut self, lane: usize) -> anyhow::Result<()> {
        self.send(lane, Piece::Statement(format!("SELECT '{MARKER}';\n").as_bytes()), None)?;
        if let Some(s) = self.sessions[lane].as_mut() {
            s.units += 1;
        }
        self.flush(lane).map_err(|e| self.first_error(e))
    }

    fn idlest(&self) -> usize {
        idlest(self.workers, |lane| {
            // Units not yet reached first: a psql session's COPY in progress has left the queue.
            self.sessions[lane].as_ref().map(|s| {
                let units = s.units.saturating_sub(s.done.load(Ordering::Relaxed));
                (units, s.queued.load(Ordering::Relaxed) + s.pending.len() as u64)
            })
        })
    }

    fn barrier(&mut self) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        for lane in 0..self.sessions.len() {
            if let Err(e) = self.flush(lane).and_then(|()| self.close(lane)) {
                self.cancel.cancel();
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(self.first_error(e)),
            None => Ok(()),
        }
    }
}

impl PsqlLanes<'_> {
    /// Prefer the error of the session that failed first over its siblings' "interrupted".
    fn first_error(&mut self, e: anyhow::Error) -> anyhow::Error {
        for lane in 0..self.sessions.len() {
            let _ = self.close(lane);
        }
        if e.downcast_ref::<Interrupted>().is_some() { self.failure() } else { e }
    }

    fn failure(&self) -> anyhow::Error {
        stopped(&self.tally)
    }
}

fn locate(map: &LineMap, n: u64) -> Option<u64> {
    let map = map.lock().ok()?;
    let i = map.partition_point(|(first, _)| *first <= n).checked_sub(1)?;
    let (first, file) = map[i];
    file.map(|f| f + (n - first))
}

/// A session's stdin: the chunks the splitter sends, until it closes the channel.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    queued: Arc<AtomicU64>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.queued.fetch_sub(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
