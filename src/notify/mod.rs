//! Notifications: one `Notifier` trait, a webhook (upstream's form format, JSON, or a Teams
//! card) and PagerDuty (Events API v2). `Notifiers::notify` sends an event to every configured
//! notifier with bounded time; a failure is logged and counted, never changes a run's outcome.

pub mod event;
pub mod pagerduty;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use tracing::{debug, warn};

pub use event::{Event, Level};

use crate::config::{NotifySettings, Secret};

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

/// An HTTP agent with a total and a connect timeout, system CA roots, no redirects, and
/// status codes returned rather than turned into errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build())
        .build()
        .new_agent()
}

/// POSTs `body` with up to `attempts` tries, backing off 1 s, 2 s, 4 s... between them.
/// Network errors, 429 and 5xx are retried; other statuses fail at once. Error texts never
/// contain the URL (it carries the token).
///
/// # Errors
/// The last failure.
pub fn post(agent: &ureq::Agent, url: &Secret, content_type: &str, body: &[u8], attempts: u32) -> anyhow::Result<()> {
    let mut last = anyhow!("no attempt made");
    for attempt in 1..=attempts.max(1) {
        if attempt > 1 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 2).min(3)));
        }
        match agent.post(url.expose()).content_type(content_type).send(body) {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                last = anyhow!("HTTP status {status}");
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(last);
                }
            }
            Err(e) => last = anyhow!("{}", e.to_string().replace(url.expose(), "<url>")),
        }
    }
    Err(last.context(format!("after {attempts} attempts")))
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
            Err(anyhow!("down"))
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
