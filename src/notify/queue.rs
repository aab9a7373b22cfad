//! One sender per notifier: events go into a bounded queue and a thread delivers them in
//! order, so a dead endpoint never delays a backup.
//!
//! - The queue holds `CAPACITY` events; when it is full the oldest INFO event is dropped (and
//!   counted), WARN and ERROR never are. Queueing never waits.
//! - An endpoint that fails one event after all its attempts (timeout, refused, 5xx) is down
//!   for the rest of the run: later events are counted as missed, not sent.
//! - Before its first event of a run, the sender delivers the summary of what the previous run
//!   missed (`missed.rs`), then removes it.
//! - `flush` ends a run: it waits for the queue with one deadline (`NOTIFY_FLUSH_TIMEOUT`; one
//!   second once the process is shutting down), counts what is left as missed, saves the
//!   tally and resets the sender for the next run (the daemon's next job tries again).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{debug, info, warn};

use super::missed::{self, Missed};
use super::{Event, Level, Notifier};
use crate::system::cancel::Cancel;

/// Events a sender holds at most (WARN and ERROR events may exceed it; they are never dropped).
pub const CAPACITY: usize = 1000;

/// How long `flush` still waits once the process is shutting down.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    queue: VecDeque<Event>,
    /// An event is being delivered.
    busy: bool,
    /// INFO events dropped because the queue was full (this run).
    dropped: u64,
    /// Why the endpoint was given up in this run.
    down: Option<String>,
    missed: Missed,
    /// The previous run's summary was started by the sender.
    caught_up: bool,
    /// The previous run's tally was dealt with: sent (its file removed) or folded into
    /// `missed`. Until then `flush` folds the file in itself, so nothing is lost.
    earlier_handled: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A notifier with its queue and its sending thread.
pub struct Sender {
    notifier: Arc<dyn Notifier>,
    shared: Arc<Shared>,
    tally: PathBuf,
    failures: Arc<AtomicU64>,
}

impl Sender {
    /// Starts the sending thread. `tally` is where missed events are counted between runs;
    /// `failures` counts failed deliveries and missed events (for `/metrics`).
    pub fn start(notifier: Box<dyn Notifier>, tally: PathBuf, cancel: &Cancel, failures: Arc<AtomicU64>) -> Sender {
        let notifier: Arc<dyn Notifier> = Arc::from(notifier);
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let worker = Worker {
            notifier: notifier.clone(),
            shared: shared.clone(),
            tally: tally.clone(),
            cancel: cancel.clone(),
            failures: failures.clone(),
        };
        let spawned = std::thread::Builder::new().name("notify".into()).spawn(move || worker.run());
        if let Err(e) = spawned {
            // Without a thread nothing is sent: say so once, and count what the run misses.
            let mut s = shared.lock();
            s.down = Some(format!("could not start the sending thread: {e}"));
            s.caught_up = true;
        }
        Sender { notifier, shared, tally, failures }
    }

    pub fn name(&self) -> String {
        self.notifier.name()
    }

    /// Delivers `event` now, on this thread (`--check --notify`).
    ///
    /// # Errors
    /// The delivery failed after its attempts.
    pub fn deliver_now(&self, event: &Event, cancel: &Cancel) -> anyhow::Result<()> {
        self.notifier.notify(event, cancel)
    }

    /// Whether an event (or a summary) is being delivered right now.
    pub fn is_busy(&self) -> bool {
        self.shared.lock().busy
    }

    /// Queues `event`; never waits.
    pub fn push(&self, event: Event) {
        if !self.notifier.wants(&event) {
            return;
        }
        let mut s = self.shared.lock();
        if s.queue.len() >= CAPACITY {
            if let Some(i) = s.queue.iter().position(|q| q.level == Level::Info) {
                s.queue.remove(i);
                s.dropped += 1;
            } else if event.level == Level::Info {
                s.dropped += 1;
                return;
            }
        }
        s.queue.push_back(event);
        self.shared.changed.notify_all();
    }

    /// Ends a run: waits for the queue at most `timeout` (or one second once `cancel` is
    /// cancelled), counts what was not delivered and saves it for the next run.
    pub fn flush(&self, timeout: Duration, cancel: &Cancel) {
        let started = Instant::now();
        let mut deadline = started + timeout;
        let mut shutdown_seen = false;
        let mut s = self.shared.lock();
        while !s.queue.is_empty() || s.busy {
            if cancel.is_cancelled() && !shutdown_seen {
                shutdown_seen = true;
                deadline = deadline.min(Instant::now() + SHUTDOWN_WAIT);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let name = self.notifier.name();
        if s.busy {
            warn!(notifier = %name, error = "still being sent when the run ended (NOTIFY_FLUSH_TIMEOUT)", "Notification failed.");
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let left: Vec<Event> = s.queue.drain(..).collect();
        if !left.is_empty() {
            warn!(notifier = %name, events = left.len(), "Notifications not sent before the end of the run (NOTIFY_FLUSH_TIMEOUT); the next run sends a summary.");
            if s.missed.reason.is_empty() {
                s.missed.reason =
                    format!("not sent within {} at the end of the run", crate::model::human::age(timeout));
            }
            for e in &left {
                s.missed.add(e);
            }
            self.failures.fetch_add(left.len() as u64, Ordering::Relaxed);
        }
        if s.dropped > 0 {
            warn!(notifier = %name, dropped = s.dropped, "INFO notifications dropped: the queue was full.");
        }
        if !s.missed.is_empty() {
            let mut tally = std::mem::take(&mut s.missed);
            if !s.earlier_handled
                && let Some(earlier) = missed::load(&self.tally)
            {
                tally.merge_earlier(earlier);
            }
            match missed::save(&self.tally, &tally) {
                Ok(()) => {
                    warn!(notifier = %name, missed = tally.events, reason = %tally.reason, "Notifications missed in this run; the next run sends a summary first.")
                }
                Err(e) => {
                    warn!(notifier = %name, missed = tally.events, error = %format!("{e:#}"), "Notifications missed in this run, and their tally could not be saved.")
                }
            }
        }
        // A sender still in a request finishes it under the next run's state (or is
        // abandoned with the process when shutting down).
        let (closed, busy) = (s.closed, s.busy);
        *s = State { closed, busy, ..State::default() };
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// The sending thread.
struct Worker {
    notifier: Arc<dyn Notifier>,
    shared: Arc<Shared>,
    tally: PathBuf,
    cancel: Cancel,
    failures: Arc<AtomicU64>,
}

impl Worker {
    fn run(self) {
        loop {
            let (event, catch_up, down) = {
                let mut s = self.shared.lock();
                while s.queue.is_empty() && !s.closed {
                    s = self.shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                let Some(event) = s.queue.pop_front().filter(|_| !s.closed) else { return };
                s.busy = true;
                let catch_up = !s.caught_up;
                s.caught_up = true;
                (event, catch_up, s.down.is_some())
            };
            let mut down = down;
            if catch_up && !down {
                down = !self.catch_up();
            }
            let failed = if down { None } else { self.deliver(&event).err() };
            let not_delivered = down || failed.is_some();
            let mut s = self.shared.lock();
            if let Some(reason) = failed {
                s.down.get_or_insert(reason);
            }
            if not_delivered {
                if s.missed.reason.is_empty() {
                    s.missed.reason = s.down.clone().unwrap_or_default();
                }
                s.missed.add(&event);
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            s.busy = false;
            self.shared.changed.notify_all();
        }
    }

    /// Sends the previous run's summary; false when the endpoint failed (it is then down and
    /// the earlier tally is carried into this run's).
    fn catch_up(&self) -> bool {
        let Some(earlier) = missed::load(&self.tally) else {
            self.shared.lock().earlier_handled = true;
            return true;
        };
        let name = self.notifier.name();
        match self.notifier.catch_up(&earlier, &self.cancel) {
            Ok(()) => {
                info!(notifier = %name, missed = earlier.events, "Sent the summary of notifications an earlier run missed.");
                // Only the tally that was sent: a flush that saved a larger one meanwhile
                // keeps it (a summary sent twice rather than events lost).
                if missed::load(&self.tally).as_ref() == Some(&earlier)
                    && let Err(e) = std::fs::remove_file(&self.tally)
                {
                    warn!(notifier = %name, error = %e, "Could not remove the tally of missed notifications; its summary may be sent again.");
                }
                self.shared.lock().earlier_handled = true;
                true
            }
            Err(e) => {
                let reason = format!("{e:#}");
                warn!(notifier = %name, error = %reason, "Notifier down: the summary of missed notifications failed; not tried again in this run.");
                let mut s = self.shared.lock();
                s.missed.merge_earlier(earlier);
                s.missed.reason = reason.clone();
                s.down = Some(reason);
                s.earlier_handled = true;
                false
            }
        }
    }

    /// Delivers one event; a failure gives the endpoint up for the run.
    fn deliver(&self, event: &Event) -> Result<(), String> {
        let name = self.notifier.name();
        match self.notifier.notify(event, &self.cancel) {
            Ok(()) => {
                debug!(notifier = %name, kind = event.kind, "Notification sent.");
                Ok(())
            }
            Err(e) => {
                let reason = format!("{e:#}");
                warn!(notifier = %name, kind = event.kind, error = %reason, since = %Utc::now().to_rfc3339(), then = "not tried again in this run; the next run sends a summary first", "Notification failed.");
                Err(reason)
            }
        }
    }
}
