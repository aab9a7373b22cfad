//! Notifications: one `Notifier` trait, a webhook (upstream's form format, JSON, or a Teams
//! card) and PagerDuty (Events API v2). `Notifiers::notify` queues an event for every
//! configured notifier and returns at once; one sender per notifier delivers them in order
//! (`queue.rs`), and what a dead endpoint missed is summarised by the next run (`missed.rs`).
//! A failure is logged and counted, never changes a run's outcome and never delays a backup.

pub mod event;
pub mod missed;
pub mod pagerduty;
pub mod queue;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use event::{Event, Level};

use crate::config::NotifySettings;
use crate::system::cancel::Cancel;
use missed::Missed;
use queue::Sender;

/// Something that delivers events.
pub trait Notifier: Send + Sync {
    /// Printable, secret-free name (e.g. `webhook https://chat.example.com`).
    fn name(&self) -> String;

    /// Whether this notifier sends `event` at all (its level filter): only those are queued
    /// and counted as missed.
    fn wants(&self, _event: &Event) -> bool {
        true
    }

    /// Delivers one event (with its own retries and time limit; pauses end on `cancel`).
    ///
    /// # Errors
    /// Delivery failed after its retries.
    fn notify(&self, event: &Event, cancel: &Cancel) -> anyhow::Result<()>;

    /// Delivers what an earlier run missed: one summary event (upstream's form fields, the
    /// highest missed level as `statusCode`) unless the notifier knows better.
    ///
    /// # Errors
    /// Delivery failed after its retries.
    fn catch_up(&self, missed: &Missed, cancel: &Cancel) -> anyhow::Result<()> {
        self.notify(&event::notifications_missed(missed), cancel)
    }
}

/// Every configured notifier, each behind its own queue and sender, plus delivery counters
/// for `/metrics`.
pub struct Notifiers {
    list: Vec<Sender>,
    pub failures: Arc<AtomicU64>,
    flush_timeout: Duration,
    cancel: Cancel,
}

impl Notifiers {
    /// No notifiers (tests, or nothing configured).
    pub fn none() -> Notifiers {
        Notifiers {
            list: Vec::new(),
            failures: Arc::new(AtomicU64::new(0)),
            flush_timeout: Duration::ZERO,
            cancel: Cancel::new(),
        }
    }

    /// The notifiers `settings` configure; `state_dir` keeps PagerDuty's open incidents and
    /// the tallies of missed events; `cancel` ends retry pauses and shortens the final flush.
    pub fn from_settings(settings: &NotifySettings, state_dir: &std::path::Path, cancel: &Cancel) -> Notifiers {
        let mut boxed: Vec<Box<dyn Notifier>> = Vec::new();
        if let Some(url) = &settings.webhook_url {
            boxed.push(Box::new(webhook::WebhookNotifier::new(url.clone(), settings)));
        }
        if let Some(key) = &settings.pagerduty_key {
            boxed.push(Box::new(pagerduty::PagerDuty::new(key.clone(), settings, state_dir)));
        }
        let mut n = Notifiers { flush_timeout: settings.flush_timeout, cancel: cancel.clone(), ..Notifiers::none() };
        for notifier in boxed {
            n.add(notifier, state_dir);
        }
        n
    }

    /// Adds a notifier (with its queue and sender).
    pub fn add(&mut self, notifier: Box<dyn Notifier>, state_dir: &std::path::Path) {
        let tally = missed::path(state_dir, &notifier.name());
        self.list.push(Sender::start(notifier, tally, &self.cancel, self.failures.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Sends `event` to each notifier now and says how each went (`--check --notify`).
    pub fn deliver_each(&self, event: &Event) -> Vec<(String, anyhow::Result<()>)> {
        self.list.iter().map(|n| (n.name(), n.deliver_now(event, &self.cancel))).collect()
    }

    /// Queues `event` for every notifier. Never fails and never waits: problems are logged
    /// and counted by the senders.
    pub fn notify(&self, event: Event) {
        for n in &self.list {
            n.push(event.clone());
        }
    }

    /// The end of a run: waits for the queues (`NOTIFY_FLUSH_TIMEOUT` in all, one second once
    /// shutting down) and keeps the tally of what was missed for the next run.
    pub fn flush(&self) {
        let deadline = std::time::Instant::now() + self.flush_timeout;
        for n in &self.list {
            n.flush(deadline.saturating_duration_since(std::time::Instant::now()), &self.cancel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    /// Records what it is asked to send; fails while `fail` is set.
    struct Recording {
        sent: Arc<Mutex<Vec<String>>>,
        fail: bool,
    }
    impl Notifier for Recording {
        fn name(&self) -> String {
            "recording".into()
        }
        fn notify(&self, e: &Event, _: &Cancel) -> anyhow::Result<()> {
            self.sent.lock().unwrap().push(format!("{} {}", e.kind, e.title));
            if self.fail { Err(anyhow::anyhow!("down")) } else { Ok(()) }
        }
    }

    fn with(fail: bool, dir: &std::path::Path) -> (Notifiers, Arc<Mutex<Vec<String>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut n = Notifiers { flush_timeout: Duration::from_secs(5), ..Notifiers::none() };
        n.add(Box::new(Recording { sent: sent.clone(), fail }), dir);
        (n, sent)
    }

    #[test]
    fn a_failing_endpoint_is_tried_once_per_run_and_the_next_run_sends_a_summary_first() {
        let dir = tempfile::tempdir().unwrap();
        let (n, sent) = with(true, dir.path());
        n.notify(event::config_error("x"));
        n.notify(event::backup_failed("db", "y"));
        n.notify(event::mirror_succeeded("db", "k", "s3"));
        n.flush();
        assert_eq!(sent.lock().unwrap().len(), 1, "tried once: {:?}", sent.lock().unwrap());
        assert_eq!(n.failures.load(Ordering::Relaxed), 3);
        let tally = missed::load(&missed::path(dir.path(), "recording")).unwrap();
        assert_eq!((tally.events, tally.highest), (3, Some(Level::Error)));
        drop(n);

        let (n, sent) = with(false, dir.path());
        n.notify(event::config_error("z"));
        n.flush();
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].starts_with("notifications_missed 3 notifications"), "{sent:?}");
        assert!(sent[1].starts_with("config_error"), "{sent:?}");
        assert!(missed::load(&missed::path(dir.path(), "recording")).is_none());
    }

    #[test]
    fn a_run_that_ends_during_the_summary_keeps_the_earlier_tally() {
        let dir = tempfile::tempdir().unwrap();
        let path = missed::path(dir.path(), "slow");
        let mut earlier = Missed::default();
        for _ in 0..5 {
            earlier.add(&event::backup_failed("db", "e"));
        }
        missed::save(&path, &earlier).unwrap();
        /// Holds every delivery until the gate opens.
        struct Slow(Arc<Mutex<()>>);
        impl Notifier for Slow {
            fn name(&self) -> String {
                "slow".into()
            }
            fn notify(&self, _: &Event, _: &Cancel) -> anyhow::Result<()> {
                let _open = self.0.lock().unwrap();
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let mut n = Notifiers { flush_timeout: Duration::from_millis(300), ..Notifiers::none() };
        n.add(Box::new(Slow(gate.clone())), dir.path());
        n.notify(event::config_error("first"));
        n.notify(event::config_error("second"));
        // The summary is in flight; the second event was not sent: both tallies are kept.
        n.flush();
        assert_eq!(missed::load(&path).map(|m| m.events), Some(6));
        drop(closed);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while n.list[0].is_busy() {
            assert!(std::time::Instant::now() < deadline, "the summary never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The summary that went out covered only the earlier 5: the file with 6 stays.
        assert_eq!(missed::load(&path).map(|m| m.events), Some(6));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_info_never_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Mutex::new(()));
        struct Blocked(Arc<Mutex<()>>, Arc<Mutex<Vec<Level>>>);
        impl Notifier for Blocked {
            fn name(&self) -> String {
                "blocked".into()
            }
            fn notify(&self, e: &Event, _: &Cancel) -> anyhow::Result<()> {
                let _open = self.0.lock().unwrap();
                self.1.lock().unwrap().push(e.level);
                Ok(())
            }
        }
        let levels = Arc::new(Mutex::new(Vec::new()));
        let mut n = Notifiers { flush_timeout: Duration::from_secs(10), ..Notifiers::none() };
        let closed = gate.lock().unwrap();
        n.add(Box::new(Blocked(gate.clone(), levels.clone())), dir.path());
        for _ in 0..queue::CAPACITY + 50 {
            n.notify(event::mirror_succeeded("db", "k", "s3"));
        }
        for _ in 0..20 {
            n.notify(event::backup_failed("db", "e"));
        }
        drop(closed);
        n.flush();
        let levels = levels.lock().unwrap();
        assert_eq!(levels.iter().filter(|l| **l == Level::Error).count(), 20);
        assert!(levels.len() <= queue::CAPACITY + 1, "{}", levels.len());
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error > Level::Warn && Level::Warn > Level::Info);
    }
}
