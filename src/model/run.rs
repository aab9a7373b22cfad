//! A run's identity: the id hooks, logs and notifications of one backup, restore or
//! verification run share.

use chrono::{DateTime, Utc};

/// `<kind><UTC time>-<pid>`, e.g. `verify-20261205T210300-4711` (hooks see it as `BACKUP_RUN_ID`).
pub fn run_id(kind: &str, now: DateTime<Utc>) -> String {
    format!("{kind}{}-{}", now.format("%Y%m%dT%H%M%S"), std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_name_kind_time_and_process() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T21:03:00Z").unwrap().to_utc();
        assert_eq!(super::run_id("verify-", now), format!("verify-20261205T210300-{}", std::process::id()));
    }
}
