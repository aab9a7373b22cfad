//! Notifications: one `Notifier` trait, a webhook (upstream's form format, JSON, or a Teams
//! card) and PagerDuty (Events API v2). `Notifiers::notify` sends an event to every configured
//! notifier with bounded time; a failure is logged and counted, never changes a run's outcome.

pub mod event;
pub mod pagerduty;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

pub use event::{Event, Level};

use crate::config::NotifySettings;

/// Something that delivers events.
pub trait Notifier: Send + Sync {
    /// Printable, secret-free name (e.g. `webhook https://chat.example.com`).
    fn name(&self) -> String;

    /// Delivers one event (with its own retries and time limit).
    ///
    /// # Errors
    /// Delivery failed after its retries.
    fn notify(&self, event: &Event) -> anyhow::Result<()>;
}

/// Every configured notifier, plus delivery counters for `/metrics`.
pub struct Notifiers {
    list: Vec<Box<dyn Notifier>>,
    pub failures: Arc<AtomicU64>,
}

impl Notifiers {
    /// No notifiers (tests, or nothing configured).
    pub fn none() -> Notifiers {
        Notifiers { list: Vec::new(), failures: Arc::new(AtomicU64::new(0)) }
    }

    /// The notifiers `settings` configure; `state_dir` keeps PagerDuty's open incidents.
    pub fn from_settings(settings: &NotifySettings, state_dir: &std::path::Path) -> Notifiers {
        let mut n = Notifiers::none();
        if let Some(url) = &settings.webhook_url {
            n.list.push(Box::new(webhook::WebhookNotifier::new(url.clone(), settings)));
        }
        if let Some(key) = &settings.pagerduty_key {
            n.list.push(Box::new(pagerduty::PagerDuty::new(key.clone(), settings, state_dir)));
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Sends `event` to each notifier and says how each went (`--check --notify`).
    pub fn deliver_each(&self, event: &Event) -> Vec<(String, anyhow::Result<()>)> {
        self.list.iter().map(|n| (n.name(), n.notify(event))).collect()
    }

    /// Sends `event` to every notifier. Never fails: problems are logged and counted.
    pub fn notify(&self, event: Event) {
        for n in &self.list {
            match n.notify(&event) {
                Ok(()) => debug!(notifier = %n.name(), kind = event.kind, "Notification sent."),
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    warn!(notifier = %n.name(), kind = event.kind, error = %format!("{e:#}"), "Notification failed.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Notifier for Failing {
        fn name(&self) -> String {
            "failing".into()
        }
        fn notify(&self, _: &Event) -> anyhow::Result<()> {
            Err(anyhow::anyhow!("down"))
        }
    }

    #[test]
    fn failures_are_counted_not_raised() {
        let mut n = Notifiers::none();
        n.list.push(Box::new(Failing));
        n.notify(event::config_error("x"));
        n.notify(event::config_error("y"));
        assert_eq!(n.failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error > Level::Warn && Level::Warn > Level::Info);
    }
}
