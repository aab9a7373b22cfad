//! The webhook notifier. Formats (`WEBHOOK_FORMAT`):
//! - `form` (default): upstream's wire format, `application/x-www-form-urlencoded` with
//!   `projectFriendlyName`, `projectName`, `statusCode` (INFO|WARN|ERROR) and `message`, so
//!   existing Rocket.Chat integrations keep working (C5);
//! - `json`: the same event as a JSON document with every figure (docs/NOTIFICATIONS.md);
//! - `teams`: a Microsoft Teams workflow message with an Adaptive Card.
//!
//! Events below `WEBHOOK_LEVEL` are not sent.

use serde_json::{Value, json};

use super::{Event, Level, Notifier};
use crate::config::{NotifySettings, WebhookFormat};
use crate::model::secret::{Secret, redact_url};
use crate::net::http_client::{agent, post};
use crate::system::cancel::Cancel;

pub struct WebhookNotifier {
    url: Secret,
    format: WebhookFormat,
    min_level: Level,
    friendly_name: String,
    project_name: String,
    attempts: u32,
    agent: ureq::Agent,
}

impl WebhookNotifier {
    pub fn new(url: Secret, s: &NotifySettings) -> WebhookNotifier {
        WebhookNotifier {
            url,
            format: s.format,
            min_level: s.min_level,
            friendly_name: s.friendly_name.clone().unwrap_or_default(),
            project_name: s.environment_name.clone().unwrap_or_default(),
            attempts: s.attempts,
            agent: agent(s.timeout),
        }
    }

    /// The request body and its content type.
    pub fn body(&self, e: &Event) -> (Vec<u8>, &'static str) {
        match self.format {
            WebhookFormat::Form => (
                form_body(e, &self.friendly_name, &self.project_name).into_bytes(),
                "application/x-www-form-urlencoded",
            ),
            WebhookFormat::Json => {
                (json_body(e, &self.friendly_name, &self.project_name).to_string().into_bytes(), "application/json")
            }
            WebhookFormat::Teams => {
                (teams_body(e, &self.friendly_name, &self.project_name).to_string().into_bytes(), "application/json")
            }
        }
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> String {
        format!("webhook {}", redact_url(self.url.expose()))
    }

    fn wants(&self, event: &Event) -> bool {
        event.level >= self.min_level
    }

    fn notify(&self, event: &Event, cancel: &Cancel) -> anyhow::Result<()> {
        if !self.wants(event) {
            return Ok(());
        }
        let (body, content_type) = self.body(event);
        post(&self.agent, &self.url, content_type, &body, self.attempts, cancel)
    }
}

/// Upstream's four url-encoded fields; `message` keeps real newlines.
pub fn form_body(e: &Event, friendly: &str, project: &str) -> String {
    let enc = |s: &str| url_encode(s);
    format!(
        "projectFriendlyName={}&projectName={}&statusCode={}&message={}",
        enc(friendly),
        enc(project),
        e.level.as_str(),
        enc(&e.message)
    )
}

/// `application/x-www-form-urlencoded` encoding (space as `+`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The JSON document: upstream's field names plus the structured event.
pub fn json_body(e: &Event, friendly: &str, project: &str) -> Value {
    json!({
        "source": "backup-container",
        "version": env!("CARGO_PKG_VERSION"),
        "projectFriendlyName": friendly,
        "projectName": project,
        "statusCode": e.level.as_str(),
        "level": e.level.as_str(),
        "event": e.kind,
        "database": e.database,
        "title": e.title,
        "message": e.message,
        "time": e.time.to_rfc3339(),
        "details": e.details,
    })
}

/// A Teams workflow ("When a Teams webhook request is received") message with an Adaptive Card.
pub fn teams_body(e: &Event, friendly: &str, project: &str) -> Value {
    let color = match e.level {
        Level::Info => "Good",
        Level::Warn => "Warning",
        Level::Error => "Attention",
    };
    let env = if friendly.is_empty() { project } else { friendly };
    let mut facts = vec![json!({"title": "Level", "value": e.level.as_str()})];
    if !env.is_empty() {
        facts.push(json!({"title": "Environment", "value": env}));
    }
    if let Some(db) = &e.database {
        facts.push(json!({"title": "Database", "value": db}));
    }
    facts.push(json!({"title": "Time", "value": e.time.to_rfc3339()}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": e.title, "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
                    {"type": "TextBlock", "text": e.message, "wrap": true},
                    {"type": "FactSet", "facts": facts}
                ]
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event;

    #[test]
    fn form_body_matches_upstream_fields() {
        let e = event::backup_failed("db/app", "pg_dump: error: FATAL: password authentication failed");
        let body = form_body(&e, "My Team (Dev)", "abc123-dev");
        assert!(body.starts_with("projectFriendlyName=My+Team+%28Dev%29&projectName=abc123-dev&statusCode=ERROR&message=Failed+to+backup+db%2Fapp.%0AReason%3A+pg_dump"), "{body}");
    }

    #[test]
    fn json_and_teams_carry_the_event() {
        let e = event::run_skipped("backup run", "backup run");
        let j = json_body(&e, "Team", "proj");
        assert_eq!(j["statusCode"], "WARN");
        assert_eq!(j["event"], "run_skipped");
        assert_eq!(j["projectName"], "proj");
        let t = teams_body(&e, "Team", "proj");
        let card = &t["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["color"], "Warning");
        assert_eq!(card["body"][2]["facts"][1]["value"], "Team");
    }
}
