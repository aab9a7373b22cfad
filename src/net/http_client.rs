//! The one HTTP client setup (ureq) for webhooks, PagerDuty and S3: timeouts, system roots,
//! no redirects, statuses returned rather than turned into errors; and a POST with retries.

use std::time::Duration;

use anyhow::anyhow;

use crate::model::secret::Secret;
use crate::net::backoff;
use crate::system::cancel::Cancel;

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
pub fn post(
    agent: &ureq::Agent,
    url: &Secret,
    content_type: &str,
    body: &[u8],
    attempts: u32,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let outcome = backoff::retry(
        cancel,
        attempts,
        |_| match agent.post(url.expose()).content_type(content_type).send(body) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let retry = status.is_server_error() || status.as_u16() == 429;
                Err((anyhow!("HTTP status {status}"), retry))
            }
            Err(e) => Err((anyhow!("{}", e.to_string().replace(url.expose(), "<url>")), true)),
        },
        |(_, retry)| *retry,
        |_, _| {},
    );
    outcome.map_err(|f| f.error.0.context(format!("after {} attempt(s)", f.attempts)))
}
