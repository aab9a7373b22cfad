//! The one HTTP client setup and the one retry loop (webhooks, PagerDuty, S3).

pub mod backoff;
pub mod http_client;
