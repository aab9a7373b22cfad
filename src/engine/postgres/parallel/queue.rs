//! A lane's queue that does not make the splitter wait while the lane is busy: the first
//! `MEMORY` bytes wait in memory, COPY rows beyond that in an unnamed temporary file (TMPDIR,
//! gone when the load ends, however it ends) — all lanes together at most `SPILL` bytes —, and
//! only past both does the sender wait. A plain dump holds one table after another: without
//! this, a session would take the next table only when the stream got past the rows of the
//! one before, so two sessions never loaded two tables at once, and a table was cut into
//! pieces that two sessions inserted side by side (which costs the server more CPU than the
//! same rows in one session, and builds indexes from rows out of order). Messages come out in
//! the order they went in. Written by hand: std's channels have no spill to disk.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::Context;

/// Bytes a lane holds in memory before rows go to its spill file.
pub const MEMORY: u64 = 4 << 20;
/// How often a waiting sender asks again whether its rows should spill.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// What a lane is sent: a message and its weight in bytes, or COPY rows and the file line
/// of their first (which may wait in the spill file).
pub enum Entry<M> {
    Message(M, u64),
    Rows(Vec<u8>, Option<u64>),
}

/// What waits in the queue: an entry as sent, or rows that wait in the spill file (read back
/// by `recv`, so a receiver never sees them).
enum Held<M> {
    Sent(Entry<M>),
    Spilled { at: u64, len: u64, line: Option<u64> },
}

struct State<M> {
    entries: VecDeque<Held<M>>,
    memory: u64,
    file: Option<Arc<File>>,
    /// Where the next spilled rows go; back to 0 when nothing spilled is unread.
    end: u64,
    spilled: u64,
    /// The spill file could not be made or written: rows wait in memory from then on.
    spill_failed: bool,
    /// The receiver is gone (its lane ended): sends fail.
    closed: bool,
    /// The sender is gone: the receiver ends once the queue is empty.
    finished: bool,
}

/// What all lanes of one load may hold in spill files (`RESTORE_SPILL_MB`), and what they hold.
#[derive(Debug, Default)]
pub struct Budget {
    pub limit: u64,
    pub used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { limit, used: AtomicU64::new(0) }
    }

    fn take(&self, len: u64) -> bool {
        if self.used.fetch_add(len, Ordering::AcqRel) + len > self.limit {
            self.used.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give(&self, len: u64) {
        self.used.fetch_sub(len, Ordering::AcqRel);
    }
}

pub struct Queue<M> {
    state: Mutex<State<M>>,
    changed: Condvar,
    budget: Arc<Budget>,
}

impl<M> Queue<M> {
    pub fn new(budget: Arc<Budget>) -> Self {
        Queue {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                memory: 0,
                file: None,
                end: 0,
                spilled: 0,
                spill_failed: false,
                closed: false,
                finished: false,
            }),
            changed: Condvar::new(),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `entry`; waits while the lane holds `MEMORY` bytes and the rows cannot go to
    /// the spill file (`may_spill`, asked again while waiting, says whether they should).
    /// False: the lane is gone.
    pub fn send(&self, entry: Entry<M>, may_spill: &dyn Fn() -> bool) -> bool {
        let mut s = self.lock();
        let weight = match &entry {
            Entry::Message(_, n) => *n,
            Entry::Rows(r, _) => r.len() as u64,
        };
        loop {
            if s.closed {
                return false;
            }
            if s.memory + weight <= MEMORY || s.entries.is_empty() {
                break;
            }
            if let Entry::Rows(rows, line) = &entry
                && may_spill()
                && let Some((file, at)) = self.reserve(&mut s, rows.len() as u64)
            {
                // Written without the lock (the session goes on meanwhile); one sender per
                // queue, so the entry still goes in after everything sent before.
                drop(s);
                let written = file.write_all_at(rows, at);
                s = self.lock();
                if s.closed {
                    // `close` already gave back what was reserved.
                    return false;
                }
                match written {
                    Ok(()) => {
                        s.entries.push_back(Held::Spilled { at, len: rows.len() as u64, line: *line });
                        self.changed.notify_all();
                        return true;
                    }
                    Err(e) => {
                        self.unreserve(&mut s, rows.len() as u64);
                        s.spill_failed = true;
                        spill_failed(&e);
                        continue;
                    }
                }
            }
            s = self.changed.wait_timeout(s, RECHECK).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        s.memory += weight;
        s.entries.push_back(Held::Sent(entry));
        self.changed.notify_all();
        true
    }

    /// Room for `len` bytes at the end of the spill file; `None` when the budget is spent or
    /// the file cannot be made or written (a full TMPDIR only makes the splitter wait, as
    /// without a spill file).
    fn reserve(&self, s: &mut State<M>, len: u64) -> Option<(Arc<File>, u64)> {
        if s.spill_failed {
            return None;
        }
        if !self.budget.take(len) {
            return None;
        }
        if s.file.is_none() {
            s.file = tempfile::tempfile().inspect_err(spill_failed).ok().map(Arc::new);
        }
        let Some(file) = s.file.clone() else {
            self.budget.give(len);
            s.spill_failed = true;
            return None;
        };
        let at = s.end;
        s.end += len;
        s.spilled += len;
        Some((file, at))
    }

    fn unreserve(&self, s: &mut State<M>, len: u64) {
        s.spilled -= len;
        self.budget.give(len);
        if s.spilled == 0 {
            // Nothing spilled is unread: the file is written from its start again.
            s.end = 0;
        }
    }

    /// Whether rows sent now would be held without waiting.
    pub fn has_room(&self) -> bool {
        let s = self.lock();
        s.memory < MEMORY || (!s.spill_failed && self.budget.used.load(Ordering::Acquire) + MEMORY <= self.budget.limit)
    }

    /// The next message, in order (spilled rows read back); `None` once the sender is gone
    /// and everything was taken.
    ///
    /// # Errors
    /// The spill file could not be read back.
    pub fn recv(&self) -> anyhow::Result<Option<Entry<M>>> {
        let mut s = self.lock();
        let entry = loop {
            if let Some(e) = s.entries.pop_front() {
                break e;
            }
            if s.finished {
                return Ok(None);
            }
            s = self.changed.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        let entry = match entry {
            Held::Sent(Entry::Message(m, n)) => {
                s.memory -= n;
                Entry::Message(m, n)
            }
            Held::Sent(Entry::Rows(r, line)) => {
                s.memory -= r.len() as u64;
                Entry::Rows(r, line)
            }
            Held::Spilled { at, len, line } => {
                let file = s.file.clone().context("the load's spill file is gone")?;
                // Read without the lock: the splitter goes on meanwhile.
                drop(s);
                let mut rows = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
                let read = file.read_exact_at(&mut rows, at);
                s = self.lock();
                self.unreserve(&mut s, len);
                read.context("reading rows back from the load's spill file (TMPDIR)")?;
                Entry::Rows(rows, line)
            }
        };
        self.changed.notify_all();
        Ok(Some(entry))
    }

    /// The sender is done: the receiver ends after the last message.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    /// The receiver is done (its lane ended): later sends fail, and what was spilled is freed.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.budget.give(s.spilled);
        s.spilled = 0;
        s.entries.clear();
        s.file = None;
        self.changed.notify_all();
    }
}

/// A full (or missing) TMPDIR: said once per session's queue; its rows wait in memory.
fn spill_failed(e: &std::io::Error) {
    tracing::warn!(
        error = %e,
        "Could not spill a session's rows to TMPDIR: they wait in memory instead; the load goes on, more slowly (give TMPDIR room, or RESTORE_SPILL_MB=0)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(e: Entry<u8>) -> Vec<u8> {
        match e {
            Entry::Rows(r, _) => r,
            _ => panic!("not rows"),
        }
    }

    #[test]
    fn rows_past_memory_spill_and_come_back_in_order() {
        let budget = Arc::new(Budget::new(512 << 20));
        let q = Queue::<u8>::new(Arc::clone(&budget));
        let piece = |i: u8| vec![i; 1 << 20];
        for i in 0..10 {
            assert!(q.send(Entry::Rows(piece(i), Some(u64::from(i))), &|| true));
        }
        assert!(q.send(Entry::Message(42, 0), &|| true), "a message of no weight never waits");
        assert_eq!(budget.used.load(Ordering::Acquire), 6 << 20, "4 MiB in memory, the rest spilled");
        q.finish();
        for i in 0..10 {
            assert_eq!(rows(q.recv().unwrap().unwrap()), piece(i));
        }
        assert!(matches!(q.recv().unwrap(), Some(Entry::Message(42, 0))));
        assert!(q.recv().unwrap().is_none());
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_spent_budget_makes_the_sender_wait_and_a_closed_lane_fails_it() {
        let budget = Arc::new(Budget::new(8 << 20));
        budget.used.store(8 << 20, Ordering::Release);
        let q = Arc::new(Queue::<u8>::new(Arc::clone(&budget)));
        for _ in 0..4 {
            assert!(q.send(Entry::Rows(vec![1; 1 << 20], None), &|| true));
        }
        assert!(!q.has_room());
        let closer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                q.close();
            })
        };
        assert!(!q.send(Entry::Rows(vec![1; 1 << 20], None), &|| true), "waited, then the lane was gone");
        closer.join().unwrap();
        assert_eq!(budget.used.load(Ordering::Acquire), 8 << 20, "nothing of ours was counted");
    }
}
