//! Unit tests of the daemon state: staleness, metrics text.

use super::*;
use chrono::TimeZone;

fn state(interval_h: u64) -> State {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    State::new(&[("db/app".into(), "db-app".into())], &[], Some(Duration::from_secs(interval_h * 3600)), 1.5, now)
}

#[test]
fn staleness_counts_from_the_last_success_or_the_start() {
    let mut s = state(24);
    let start = s.started;
    let db = s.databases["db/app"].clone();
    assert!(!s.is_stale(&db, start + chrono::Duration::hours(35)), "a fresh daemon gets the full tolerance");
    assert!(s.is_stale(&db, start + chrono::Duration::hours(37)));
    s.databases.get_mut("db/app").unwrap().last_success = Some(start + chrono::Duration::hours(30));
    let db = s.databases["db/app"].clone();
    assert!(!s.is_stale(&db, start + chrono::Duration::hours(60)));
    assert!(s.is_stale(&db, start + chrono::Duration::hours(67)));
    s.interval = None;
    assert!(!s.is_stale(&db, start + chrono::Duration::days(30)), "no backup schedule, no staleness");
}

#[test]
fn metrics_text_has_help_type_and_labels() {
    let mut s = state(24);
    s.databases.insert("we\"ird".into(), DbState { last_success: Some(s.started), ..Default::default() });
    s.runs_succeeded = 3;
    s.uncovered.insert("postgres=db:5432".into(), 2);
    let text = s.render_metrics(s.started);
    assert!(text.contains("# TYPE backup_uncovered_databases gauge"));
    assert!(text.contains("backup_uncovered_databases{server=\"postgres=db:5432\"} 2"), "{text}");
    assert!(text.contains("# TYPE backup_last_success_timestamp_seconds gauge"));
    assert!(text.contains(&format!(
        "backup_last_success_timestamp_seconds{{database=\"we\\\"ird\"}} {}",
        s.started.timestamp()
    )));
    assert!(text.contains("backup_stale{database=\"db/app\"} 0"));
    assert!(text.contains("backup_runs_total{result=\"success\"} 3"));
    assert!(text.contains("backup_mirror_failures_total 0"));
    assert!(text.contains("backup_mirror_locked_copies 0"));
    assert!(text.contains("backup_stale_after_seconds 129600"));
    assert!(!text.contains("backup_last_success_timestamp_seconds{database=\"db/app\"}"), "no value without a backup");
}
