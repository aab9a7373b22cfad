//! The sessions of a load in our own process (`RESTORE_LOADER=libpq`, the default): each lane
//! a thread with one libpq connection, sent the splitter's pieces through a bounded channel
//! (the splitter waits when a session is behind: bounded memory). A statement is one query;
//! COPY rows go straight into the COPY. No psql re-reads what the scanner already cut, and no
//! byte crosses a pipe.
//!
//! What psql did, done here: `ON_ERROR_STOP` (without `-I` the first error stops the lane and
//! its siblings; with `-I` every error is counted and the load goes on, past the rest of a
//! failed COPY's rows), errors named by the file's line (a COPY's by the row the server names),
//! meta-commands refused except the dump's `\restrict`/`\unrestrict` (which only guard psql).
//! Connections stay open across barriers: a barrier waits until every lane has run what it
//! was sent; a lane can also wait for one unit of another (an index build for a table's
//! rows). A cancellation cancels the running statement of every lane (`PQcancel`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail};

use super::lanes::{Lanes, Piece, Progress, Replies, TableLoad, Work, idlest, stopped};
use super::queue::{Budget, Entry, Queue};
use crate::engine::Conn;
use crate::engine::load::SharedErrors;
use crate::model::database::EngineOptions;
use crate::system::cancel::{Cancel, Interrupted};
use worker::Worker;

mod worker;

/// Session settings of every lane: commits wait for no WAL flush (one synchronous commit
/// before the swap makes them all durable), and notices below warnings stay on the server.
const OPTIONS: &str = "-c synchronous_commit=off -c client_min_messages=warning";
/// A build counts as this fraction of its table's rows' bytes when choosing the idlest lane:
/// index builds took 15–25% of their table's COPY time in the bench's data set.
const BUILD_SHARE: u64 = 4;

enum Msg {
    Statement(Vec<u8>, Option<u64>),
    CopyEnd,
    /// The end of one unit of work (counted as done when the lane gets there).
    Unit,
    /// A barrier: answer once everything before has run.
    Sync(SyncSender<()>),
    /// Wait until another lane has finished this many units (a build after its table's rows).
    After(Arc<Progress>, u64),
}

struct Lane {
    queue: Arc<Queue<Msg>>,
    done: Arc<Progress>,
    queued: Arc<AtomicU64>,
    /// What the lane was given, unit by unit, for `idlest` (a build weighs a share of its
    /// table's rows); its units ended, against `done` reached.
    work: Work,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub struct WireLanes<'a> {
    admin: &'a Conn,
    database: &'a str,
    ignore_errors: bool,
    workers: usize,
    connect_timeout_secs: u32,
    tally: SharedErrors,
    /// The load's own token: cancelled with the caller's, or when one lane fails.
    cancel: Cancel,
    lanes: Vec<Option<Lane>>,
    /// What the lanes may spill to TMPDIR, and have spilled and not yet loaded.
    spill: Arc<Budget>,
    /// Told when every table's rows have been sent (the row counts beside the builds).
    data_sent: Option<std::sync::mpsc::Sender<DataSent>>,
    /// The server's replies to the lanes' COPYs.
    replies: Replies,
}

/// The progress of each lane to wait for, and the unit.
pub type Waits = Vec<(Arc<Progress>, u64)>;

/// Every table's rows sent: each table (as its COPY names it) with the progress of the lanes
/// that load it and the unit to wait for; the load's token (cancelled when a lane fails); and
/// the server's replies to the COPYs when they are the rows' final count.
pub struct DataSent {
    pub tables: Vec<(Vec<u8>, Waits)>,
    pub cancel: Cancel,
    pub replies: Option<Replies>,
}

impl<'a> WireLanes<'a> {
    pub fn new(
        admin: &'a Conn,
        database: &'a str,
        ignore_errors: bool,
        workers: usize,
        options: &EngineOptions,
        tally: SharedErrors,
        cancel: &Cancel,
    ) -> Self {
        WireLanes {
            admin,
            database,
            ignore_errors,
            workers,
            connect_timeout_secs: options.connect_timeout_secs,
            tally,
            cancel: cancel.child(),
            lanes: (0..=workers).map(|_| None).collect(),
            spill: Arc::new(Budget::new(options.restore_spill_bytes)),
            data_sent: None,
            replies: Replies::default(),
        }
    }

    /// Tells `to` when every table's rows have been sent.
    pub fn on_data_sent(&mut self, to: std::sync::mpsc::Sender<DataSent>) {
        self.data_sent = Some(to);
    }

    /// Stops every lane (the load failed outside them).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    fn start(&self, lane: usize) -> Lane {
        let queue = Arc::new(Queue::new(Arc::clone(&self.spill)));
        let rx = Arc::clone(&queue);
        let done = Arc::new(Progress::default());
        let queued = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            admin: self.admin.clone(),
            database: self.database.to_string(),
            timeout: self.connect_timeout_secs,
            ignore_errors: self.ignore_errors,
            tally: Arc::clone(&self.tally),
            cancel: self.cancel.clone(),
            done: Arc::clone(&done),
            queued: Arc::clone(&queued),
            replies: Arc::clone(&self.replies),
        };
        let handle = std::thread::Builder::new()
            .name(format!("load-{lane}"))
            .spawn(move || {
                let result = worker.run(&rx);
                // Whatever ended the lane, the splitter no longer waits for it.
                rx.close();
                if result.is_err() {
                    // One lane stopped: stop the others rather than let them run on.
                    worker.cancel.cancel();
                }
                result
            })
            .expect("a thread can be started");
        Lane { queue, done, queued, work: Work::default(), handle }
    }

    fn post(&mut self, lane: usize, msg: Entry<Msg>, bytes: u64) -> anyhow::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(self.failure());
        }
        if self.lanes[lane].is_none() {
            self.lanes[lane] = Some(self.start(lane));
        }
        let l = self.lanes[lane].as_mut().expect("just started");
        l.work.add(bytes);
        l.queued.fetch_add(bytes, Ordering::Relaxed);
        let queue = Arc::clone(&l.queue);
        // Rows spill to disk only while another worker has nothing to do: reading on then
        // brings it the next table sooner. When every worker is busy, the splitter waits.
        let (lanes, workers) = (&self.lanes, self.workers);
        let idle_other = || {
            (1..=workers).filter(|&other| other != lane).any(|other| {
                lanes[other]
                    .as_ref()
                    .is_none_or(|o| o.done.get() >= o.work.units() && o.queued.load(Ordering::Relaxed) == 0)
            })
        };
        if !queue.send(msg, &idle_other) {
            // The lane is gone: its own error says why.
            let e = self.close(lane).err().unwrap_or_else(|| anyhow!("session {lane} of the load ended early"));
            return Err(self.first_error(e));
        }
        Ok(())
    }

    /// Ends `lane`'s session and returns how it ended.
    fn close(&mut self, lane: usize) -> anyhow::Result<()> {
        let Some(l) = self.lanes[lane].take() else { return Ok(()) };
        l.queue.finish();
        l.handle.join().unwrap_or_else(|_| Err(anyhow!("a load thread panicked")))
    }

    fn first_error(&mut self, e: anyhow::Error) -> anyhow::Error {
        self.cancel.cancel();
        for lane in 0..self.lanes.len() {
            let _ = self.close(lane);
        }
        if e.downcast_ref::<Interrupted>().is_some() { self.failure() } else { e }
    }

    fn failure(&self) -> anyhow::Error {
        stopped(&self.tally)
    }
}

impl Drop for WireLanes<'_> {
    fn drop(&mut self) {
        for lane in 0..self.lanes.len() {
            let _ = self.close(lane);
        }
    }
}

impl Lanes for WireLanes<'_> {
    fn workers(&self) -> usize {
        self.workers
    }

    fn send(&mut self, lane: usize, piece: Piece<'_>, file_line: Option<u64>) -> anyhow::Result<()> {
        let msg = match piece {
            Piece::Statement(t) => Entry::Message(Msg::Statement(t.to_vec(), file_line), t.len() as u64),
            Piece::Rows(t) => Entry::Rows(t.to_vec(), file_line),
            Piece::CopyEnd => Entry::Message(Msg::CopyEnd, 0),
            Piece::Meta(t) => {
                let text = String::from_utf8_lossy(t.trim_ascii());
                let command = text.split_whitespace().next().unwrap_or_default();
                if matches!(command, "\\restrict" | "\\unrestrict") {
                    return Ok(());
                }
                let at = file_line.map(|n| format!("line {n}: ")).unwrap_or_default();
                bail!(
                    "{at}the backup holds the psql meta-command {command}, which a restore does not run \
                     (only \\restrict and \\unrestrict may appear in a dump): nothing was restored"
                );
            }
        };
        let bytes = match piece {
            Piece::Statement(t) | Piece::Rows(t) => t.len() as u64,
            _ => 0,
        };
        self.post(lane, msg, bytes)
    }

    fn end_unit(&mut self, lane: usize) -> anyhow::Result<()> {
        self.post(lane, Entry::Message(Msg::Unit, 0), 0)?;
        if let Some(l) = self.lanes[lane].as_mut() {
            l.work.end_unit();
        }
        Ok(())
    }

    fn weigh_build(&mut self, lane: usize, pieces: &[(usize, u64)]) {
        let rows: u64 = pieces
            .iter()
            .filter_map(|&(other, unit)| Some(self.lanes.get(other)?.as_ref()?.work.unit(unit)))
            .fold(0, u64::saturating_add);
        if lane >= self.lanes.len() || self.cancel.is_cancelled() {
            return;
        }
        // The build is sent to `lane` next: its session starts now if it has not yet, so that
        // the weight counts there.
        if self.lanes[lane].is_none() {
            self.lanes[lane] = Some(self.start(lane));
        }
        if let Some(l) = self.lanes[lane].as_mut() {
            l.work.add(rows / BUILD_SHARE);
        }
    }

    fn after(&mut self, lane: usize, other: usize, unit: u64) -> anyhow::Result<bool> {
        let Some(o) = self.lanes[other].as_ref() else { return Ok(false) };
        let progress = Arc::clone(&o.done);
        self.post(lane, Entry::Message(Msg::After(progress, unit), 0), 0)?;
        Ok(true)
    }

    fn data_sent(&mut self, tables: &[TableLoad], replies_exact: bool) {
        let Some(to) = self.data_sent.take() else { return };
        let progress = |lane: usize| self.lanes.get(lane).and_then(Option::as_ref).map(|l| Arc::clone(&l.done));
        // A lane gone (it failed): no count beside the load; the load reports the failure.
        let Some(tables) = tables
            .iter()
            .map(|(table, pieces)| {
                let waits =
                    pieces.iter().map(|&(lane, unit)| Some((progress(lane)?, unit))).collect::<Option<Vec<_>>>()?;
                Some((table.clone(), waits))
            })
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        // A receiver gone only means nobody counts beside the load.
        let replies = replies_exact.then(|| Arc::clone(&self.replies));
        let _ = to.send(DataSent { tables, cancel: self.cancel.clone(), replies });
    }

    fn has_room(&self, lane: usize) -> bool {
        self.lanes[lane].as_ref().is_none_or(|l| l.queue.has_room())
    }

    fn idlest(&self) -> usize {
        idlest(self.workers, |lane| {
            // Work first: one large COPY outweighs several short statements.
            self.lanes[lane].as_ref().map(|l| {
                let done = l.done.get();
                (l.work.unfinished(done), l.work.units().saturating_sub(done))
            })
        })
    }

    fn barrier(&mut self) -> anyhow::Result<()> {
        let mut waits = Vec::new();
        for lane in 0..self.lanes.len() {
            let Some(l) = self.lanes[lane].as_ref() else { continue };
            let (ack, answered) = sync_channel(1);
            if l.queue.send(Entry::Message(Msg::Sync(ack), 0), &|| false) {
                waits.push((lane, answered));
            } else {
                waits.push((lane, sync_channel(1).1));
            }
        }
        for (lane, answered) in waits {
            if answered.recv().is_err() {
                let e = self.close(lane).err().unwrap_or_else(|| anyhow!("session {lane} of the load ended early"));
                return Err(self.first_error(e));
            }
        }
        Ok(())
    }
}
