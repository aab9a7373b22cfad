//! PagerDuty Events API v2: an ERROR triggers an incident with a dedup key per database (or
//! `config` for errors without one); the next success of that database resolves it. Open
//! keys are kept in `BACKUP_DIR/.backup_container_pagerduty.json` so one-shot runs (CronJobs) resolve
//! what an earlier run triggered.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::json;

use super::missed::Missed;
use super::{Event, Level, Notifier};
use crate::catalog::durable::write_atomic;
use crate::config::NotifySettings;
use crate::model::secret::{Secret, redact_url};
use crate::net::http_client::{agent, post};
use crate::system::cancel::Cancel;

const STATE_FILE: &str = ".backup_container_pagerduty.json";

pub struct PagerDuty {
    key: Secret,
    url: Secret,
    source: String,
    attempts: u32,
    agent: ureq::Agent,
    state: PathBuf,
    open: Mutex<BTreeSet<String>>,
}

impl PagerDuty {
    pub fn new(key: Secret, s: &NotifySettings, state_dir: &std::path::Path) -> PagerDuty {
        let state = state_dir.join(STATE_FILE);
        let open = std::fs::read(&state).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        PagerDuty {
            key,
            url: s.pagerduty_url.clone(),
            source: s
                .environment_name
                .clone()
                .or_else(|| s.friendly_name.clone())
                .unwrap_or_else(|| "backup-container".into()),
            attempts: s.attempts,
            agent: agent(s.timeout),
            state,
            open: Mutex::new(open),
        }
    }

    fn dedup_key(&self, e: &Event) -> String {
        format!("backup-container:{}:{}", self.source, e.database.as_deref().unwrap_or("config"))
    }

    /// The Events API v2 body for `action` (`trigger` or `resolve`).
    pub fn body(&self, e: &Event, action: &str) -> serde_json::Value {
        let mut summary = e.title.clone();
        if let Some(err) = e.details.get("error").and_then(|v| v.as_str()) {
            summary = format!("{summary}: {err}");
        }
        summary.truncate(1000);
        json!({
            "routing_key": self.key.expose(),
            "event_action": action,
            "dedup_key": self.dedup_key(e),
            "payload": {"summary": summary, "source": self.source, "severity": "error", "custom_details": e.details},
        })
    }

    fn save(&self, open: &BTreeSet<String>) {
        if let Ok(json) = serde_json::to_vec(open)
            && let Err(e) = write_atomic(&self.state, &json)
        {
            tracing::warn!(error = %format!("{e:#}"), "Could not save PagerDuty state.");
        }
    }
}

impl Notifier for PagerDuty {
    fn name(&self) -> String {
        format!("pagerduty {}", redact_url(self.url.expose()))
    }

    fn wants(&self, e: &Event) -> bool {
        e.level == Level::Error || e.kind == "backup_succeeded"
    }

    /// The latest state of each dedup key the earlier run missed (a trigger or a resolve),
    /// not a summary: PagerDuty deduplicates by key.
    fn catch_up(&self, missed: &Missed, cancel: &Cancel) -> anyhow::Result<()> {
        for e in missed.replay() {
            self.notify(&e, cancel)?;
        }
        Ok(())
    }

    fn notify(&self, e: &Event, cancel: &Cancel) -> anyhow::Result<()> {
        let key = self.dedup_key(e);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let action = match (e.level, e.kind) {
            (Level::Error, _) => "trigger",
            (_, "backup_succeeded") if open.contains(&key) => "resolve",
            _ => return Ok(()),
        };
        let body = self.body(e, action).to_string();
        post(&self.agent, &self.url, "application/json", body.as_bytes(), self.attempts, cancel)?;
        let changed = if action == "trigger" { open.insert(key) } else { open.remove(&key) };
        if changed {
            self.save(&open);
        }
        Ok(())
    }
}
