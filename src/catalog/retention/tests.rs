//! Table tests for `retention::plan` with a fixed `now`.

use super::*;
use crate::catalog::layout;
use std::path::Path;
use std::time::{Duration, SystemTime};

const ROOT: &str = "/backups";

/// Fixed "now": 2026-11-22T12:00:00Z.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_348_800)
}

/// Builds catalog entries from relative paths; mtimes are deliberately the reverse of name
/// order so a plan that sorted by mtime would fail. `@Nh` after a path sets its age in hours.
fn files(rels: &[&str]) -> Vec<BackupFile> {
    rels.iter()
        .enumerate()
        .map(|(i, spec)| {
            let (rel, age_h) = match spec.split_once('@') {
                Some((rel, age)) => (rel, age.trim_end_matches('h').parse::<u64>().unwrap()),
                None => (*spec, 1000 - i as u64),
            };
            let p = layout::parse_relative(Path::new(rel)).unwrap_or_else(|| panic!("bad test path {rel}"));
            BackupFile::new(Path::new(ROOT).join(rel), rel.into(), p, 1, now() - Duration::from_secs(age_h * 3600))
        })
        .collect()
}

struct Case {
    name: &'static str,
    policy: Policy,
    files: &'static [&'static str],
    cores: &'static [&'static str],
    protect: &'static [&'static str],
    deleted: &'static [&'static str],
}

fn rolling(daily: i64, weekly: i64, monthly: i64) -> Policy {
    Policy::from_counts("rolling", 31, daily, weekly, monthly).unwrap()
}

fn daily(num: i64) -> Policy {
    Policy::from_counts("daily", num, 6, 4, 1).unwrap()
}

fn f(date: &str, core: &str, class: &str) -> String {
    let prefix = if class.is_empty() { String::new() } else { format!("{class}/") };
    format!("{prefix}{date}/{core}_{date}_01-00-00.sql.gz")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "daily strategy keeps the newest NUM_BACKUPS by name timestamp",
            policy: daily(3),
            files: &[
                "2026-11-17/db-app_2026-11-17_01-00-00.sql.gz",
                "2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
                "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
                "2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
                "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &["2026-11-17/db-app_2026-11-17_01-00-00.sql.gz", "2026-11-18/db-app_2026-11-18_01-00-00.sql.gz"],
        },
        Case {
            name: "daily strategy counts files in old rolling folders too (upstream prunes the whole root)",
            policy: daily(2),
            files: &[
                "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
                "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
                "2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
                "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &[
                "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
                "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
            ],
        },
        Case {
            name: "rolling keeps each class by its own count",
            policy: rolling(2, 1, 1),
            files: &[
                "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
                "daily/2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
                "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
                "weekly/2026-11-08/db-app_2026-11-08_01-00-00.sql.gz",
                "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
                "monthly/2026-09-30/db-app_2026-09-30_01-00-00.sql.gz",
                "monthly/2026-10-31/db-app_2026-10-31_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &[
                "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
                "weekly/2026-11-08/db-app_2026-11-08_01-00-00.sql.gz",
                "monthly/2026-09-30/db-app_2026-09-30_01-00-00.sql.gz",
            ],
        },
        Case {
            name: "host-app never matches host-app_v2 or otherhost-app",
            policy: daily(1),
            files: &[
                "2026-11-20/host-app_2026-11-20_01-00-00.sql.gz",
                "2026-11-21/host-app_2026-11-21_01-00-00.sql.gz",
                "2026-11-19/host-app_v2_2026-11-19_01-00-00.sql.gz",
                "2026-11-18/host-app_v2_2026-11-18_01-00-00.sql.gz",
                "2026-11-18/otherhost-app_2026-11-18_01-00-00.sql.gz",
                "2026-11-17/otherhost-app_2026-11-17_01-00-00.sql.gz",
            ],
            cores: &["host-app"],
            protect: &[],
            deleted: &["2026-11-20/host-app_2026-11-20_01-00-00.sql.gz"],
        },
        Case {
            name: "WEEKLY_BACKUPS=0 deletes weekly backups but never the newest backup of the database",
            policy: rolling(6, 0, 1),
            files: &[
                "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
                "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &["weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz"],
        },
        Case {
            name: "N=0 never deletes the backup just written, even when it is not the newest by name",
            policy: rolling(0, 4, 1),
            files: &[
                "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
                "daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
                "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &["daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"],
            deleted: &["daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"],
        },
        Case {
            name: "all counts zero keeps one daily backup (upstream's forced DAILY_BACKUPS=1)",
            policy: rolling(0, 0, 0),
            files: &[
                "daily/2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
                "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &["daily/2026-11-19/db-app_2026-11-19_01-00-00.sql.gz"],
        },
        Case {
            name: "in-progress files are not counted, and removed whatever their age (the caller holds the lock)",
            policy: daily(1),
            files: &[
                "2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.in_progress@48h",
                "2026-11-22/db-app_2026-11-22_11-00-00.sql.gz.in_progress@1h",
                "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &[
                "2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.in_progress",
                "2026-11-22/db-app_2026-11-22_11-00-00.sql.gz.in_progress",
            ],
        },
        Case {
            name: "rolling leaves flat folders from a former daily strategy alone",
            policy: rolling(1, 1, 1),
            files: &[
                "2026-10-01/db-app_2026-10-01_01-00-00.sql.gz",
                "2026-10-02/db-app_2026-10-02_01-00-00.sql.gz",
                "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &[],
        },
        Case {
            name: "databases outside the scope are untouched",
            policy: daily(1),
            files: &[
                "2026-11-20/db-other_2026-11-20_01-00-00.sql.gz",
                "2026-11-21/db-other_2026-11-21_01-00-00.sql.gz",
            ],
            cores: &["db-app"],
            protect: &[],
            deleted: &[],
        },
        Case {
            name: "two backups on one day order by time of day",
            policy: daily(1),
            files: &["2026-11-21/db-app_2026-11-21_23-00-00.sql.gz", "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"],
            cores: &["db-app"],
            protect: &[],
            deleted: &["2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"],
        },
    ]
}

#[test]
fn retention_table() {
    for case in cases() {
        let backups = files(case.files);
        let cores = case.cores.iter().map(|s| s.to_string()).collect();
        let protect: Vec<String> = case.protect.iter().map(|r| r.to_string()).collect();
        let mut got: Vec<String> = plan(&backups, &case.policy, &cores, &protect).into_iter().map(|d| d.key).collect();
        got.sort();
        let mut want: Vec<String> = case.deleted.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "case: {}", case.name);
    }
}

#[test]
fn month_end_and_sunday_runs_feed_the_right_groups() {
    // A month of rolling backups written by classify(): 2026-11-01 .. 2026-11-30.
    let policy = rolling(6, 4, 1);
    let mut rels = Vec::new();
    for day in 1..=30 {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let class = layout::classify(date, &policy).unwrap();
        rels.push(f(&date.to_string(), "db-app", class.name()));
    }
    let leaked: Vec<&'static str> = rels.into_iter().map(|s| &*Box::leak(s.into_boxed_str())).collect();
    let backups = files(&leaked);
    let cores = ["db-app".to_string()].into_iter().collect();
    let deleted = plan(&backups, &policy, &cores, &[]);
    let kept: Vec<&BackupFile> =
        backups.iter().filter(|b| !deleted.iter().any(|d| d.key == b.key().as_str())).collect();
    let count = |c: Class| kept.iter().filter(|b| b.class == Some(c)).count();
    // Sundays in Nov 2026: 1, 8, 15, 22, 29 (5 weekly); the 30th is monthly.
    assert_eq!((count(Class::Daily), count(Class::Weekly), count(Class::Monthly)), (6, 4, 1));
    assert!(kept.iter().any(|b| b.rel.starts_with("monthly/2026-11-30")));
    assert!(!kept.iter().any(|b| b.rel.starts_with("weekly/2026-11-01")), "oldest weekly goes");
}

#[test]
fn policy_normalisation_matches_upstream() {
    assert_eq!(Policy::from_counts("ROLLING", 31, 6, -1, 1).unwrap().strategy, Strategy::Daily);
    assert!(Policy::from_counts("rolling", 31, 6, 4, -1).is_err());
    assert!(Policy::from_counts("weekly", 31, 6, 4, 1).is_err());
    assert_eq!(Policy::from_counts("rolling", 31, 0, 0, 0).unwrap().daily, 1);
    assert_eq!(Policy::from_counts("rolling", 31, 0, 2, 0).unwrap().daily, 0);
}

fn with_manifest(b: &mut BackupFile, complete: Option<bool>, verified: bool) {
    use crate::catalog::manifest::{Manifest, Origin, Verification};
    let mut m = Manifest::new(b.key(), Origin::Scanned, b.size);
    m.complete = complete;
    if verified {
        m.verifications.push(Verification {
            verified_at: "2026-11-20T00:00:00Z".into(),
            ok: true,
            error: None,
            tables: 1,
            rows: 1,
            schemas: vec![],
            database_size_bytes: 1,
            duration_ms: 1,
            integrity: "checksum".into(),
            server_major: None,
            note: None,
        });
    }
    b.manifest = Some(m);
}

/// Retention keeps more, never fewer: an incomplete upstream file does not count as one of
/// the backups to keep (it never pushes the last complete one out), and the newest verified
/// backup stays whatever the counts say; the plan says why it kept them.
#[test]
fn incomplete_files_do_not_count_and_the_newest_verified_stays() {
    let mut backups = files(&[
        "2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
        "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
        "2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
        "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
    ]);
    with_manifest(&mut backups[1], Some(true), true);
    with_manifest(&mut backups[2], Some(true), false);
    with_manifest(&mut backups[3], Some(false), false);
    let cores = ["db-app".to_string()].into_iter().collect();
    let (deleted, kept) = plan_with_notes(&backups, &daily(1), &cores, &[]);
    let deleted: Vec<String> = deleted.into_iter().map(|d| d.key).collect();
    // The 21st is incomplete: kept (newest, not counted), the 20th is the one counted, the
    // 19th is the newest verified, the 18th goes.
    assert_eq!(deleted, ["2026-11-18/db-app_2026-11-18_01-00-00.sql.gz"]);
    assert_eq!(
        kept,
        [Kept {
            key: "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz".into(),
            why: "the newest verified backup of its database"
        }]
    );
    // With only incomplete newer files, the newest complete one is never deleted.
    let mut backups =
        files(&["2026-11-20/db-app_2026-11-20_01-00-00.sql.gz", "2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"]);
    with_manifest(&mut backups[1], Some(false), false);
    let (deleted, _) = plan_with_notes(&backups, &daily(0), &cores, &[]);
    assert!(deleted.iter().all(|d| !d.key.contains("11-20")), "{deleted:?}");
}

/// The last good backup before an anomaly is held beyond the counts until a later backup is
/// verified or `anomaly_hold` later good backups exist.
#[test]
fn an_anomaly_holds_its_baseline_until_released() {
    use crate::catalog::manifest::{Anomaly, Finding};
    let day = |d: u32| format!("2026-11-{d}/db-app_2026-11-{d}_01-00-00.sql.gz");
    let build = |n: u32| {
        let rels: Vec<String> = (10..10 + n).map(day).collect();
        let rels: Vec<&str> = rels.iter().map(String::as_str).collect();
        let mut backups = files(&rels);
        for b in &mut backups {
            with_manifest(b, Some(true), false);
        }
        // The 11th lost a table against the 10th.
        backups[1].manifest.as_mut().unwrap().anomaly = Some(Anomaly {
            baseline: day(10),
            findings: vec![Finding::TableDisappeared { table: "public.t".into(), rows: 5 }],
        });
        backups
    };
    let cores = ["db-app".to_string()].into_iter().collect();
    let deleted = |backups: &[BackupFile]| -> Vec<String> {
        let mut keys: Vec<String> =
            plan_with_notes(backups, &daily(1), &cores, &[]).0.into_iter().map(|d| d.key).collect();
        keys.sort();
        keys
    };
    // 10 (baseline), 11 (anomaly), 12 (one good backup after): held.
    let backups = build(3);
    assert_eq!(deleted(&backups), [day(11)]);
    let (_, kept) = plan_with_notes(&backups, &daily(1), &cores, &[]);
    assert!(kept.iter().any(|k| k.key == day(10) && k.why.contains("anomaly")), "{kept:?}");
    // Two good backups after the anomaly: released.
    assert_eq!(deleted(&build(4)), [day(10), day(11), day(12)]);
    // One later backup verified: released.
    let mut backups = build(3);
    with_manifest(&mut backups[2], Some(true), true);
    assert_eq!(deleted(&backups), [day(10), day(11)]);
    // The anomalous backup's own verification proves nothing about the lost data: still held.
    let mut backups = build(3);
    let anomaly = backups[1].manifest.as_ref().unwrap().anomaly.clone();
    with_manifest(&mut backups[1], Some(true), true);
    backups[1].manifest.as_mut().unwrap().anomaly = anomaly;
    assert!(!deleted(&backups).contains(&day(10)));
    // BACKUP_ANOMALY_HOLD=0 holds nothing.
    let policy = Policy { anomaly_hold: 0, ..daily(1) };
    let mut got: Vec<String> = plan_with_notes(&build(3), &policy, &cores, &[]).0.into_iter().map(|d| d.key).collect();
    got.sort();
    assert_eq!(got, [day(10), day(11)]);
}
