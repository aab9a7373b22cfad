//! A mirror's pass from fixed archives, ledgers and indexes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::pitr::index::{Archived, BaseBackup, Event};
use crate::pitr::wal::Lsn;

const MIB: u64 = 1 << 20;

fn at(minute: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc() + Duration::minutes(minute)
}

fn file(key: &str, minute: i64) -> LocalFile {
    LocalFile { key: format!("pitr/db_5432/{key}"), size: 10, mtime: at(minute) }
}

fn wal(n: u64) -> String {
    format!("wal/00000001/{}.gz", Segment { timeline: 1, number: n }.name(MIB))
}

fn index(segments: std::ops::RangeInclusive<u64>, chains: &[(u32, i64)]) -> Index {
    let mut i = Index::default();
    i.apply(Event::Started { segment_size: MIB, server: "db:5432".into() });
    for n in segments {
        i.apply(Event::Segment(Archived {
            timeline: 1,
            number: n,
            size: 10,
            sha256: String::new(),
            received_at: at(0),
        }));
    }
    for &(chain, minute) in chains {
        i.apply(Event::Base(BaseBackup {
            chain,
            timeline: 1,
            start_lsn: Lsn(MIB).to_string(),
            end_lsn: Lsn(MIB + 10).to_string(),
            started_at: at(minute),
            finished_at: at(minute + 1),
            ..Default::default()
        }));
    }
    i
}

fn keys(p: &Pass) -> Vec<String> {
    p.uploads.iter().map(|(f, _)| f.key.trim_start_matches("pitr/db_5432/").to_string()).collect()
}

#[test]
fn new_files_go_oldest_kind_first_and_the_index_last() {
    let local = vec![
        file("index.jsonl", 9),
        file(&wal(2), 3),
        file(&wal(1), 2),
        file("base/0/0/base.tar.gz", 1),
        file("base/0/0/backup_manifest.gz", 1),
        file("history/00000002.history.gz", 5),
        file("archive_id", 0),
        file("mirrored/abc.jsonl", 0),
        file("wal/00000001/000000010000000000000003.partial.gz", 9),
        file("partial.json", 9),
    ];
    let p = pass(&local, &BTreeMap::new(), &index(1..=2, &[(0, 1)]), None, true, at(10));
    assert_eq!(
        keys(&p),
        [
            "archive_id",
            "history/00000002.history.gz",
            "base/0/0/backup_manifest.gz",
            "base/0/0/base.tar.gz",
            &wal(1),
            &wal(2),
            "wal/00000001/000000010000000000000003.partial.gz",
            "partial.json",
            "index.jsonl"
        ]
    );
    assert!(p.uploads.iter().all(|(_, lock)| lock.is_none()), "no lock policy, no lock");
    let later = pass(&local, &BTreeMap::new(), &index(1..=2, &[(0, 1)]), None, false, at(10));
    assert_eq!(keys(&later).last().map(String::as_str), Some(wal(2).as_str()), "replaced files wait until due");
    let waiting: Vec<&str> = later.held_back.iter().map(|f| f.key.trim_start_matches("pitr/db_5432/")).collect();
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    assert!(waiting.contains(&"index.jsonl") && waiting.contains(&"partial.json"), "{waiting:?}");
}

#[test]
fn what_the_mirror_holds_is_not_sent_again_unless_it_changed() {
    let local = vec![file(&wal(1), 2), file("index.jsonl", 9)];
    let mut held = BTreeMap::new();
    held.insert(local[0].key.clone(), (10, at(2).timestamp()));
    held.insert(local[1].key.clone(), (10, at(8).timestamp()));
    let p = pass(&local, &held, &index(1..=1, &[]), None, true, at(10));
    assert_eq!(keys(&p), ["index.jsonl"], "the index changed since it was sent");
}

#[test]
fn only_what_retention_removed_is_deleted_from_the_mirror() {
    let mut held = BTreeMap::new();
    let old_partial = "wal/00000001/000000010000000000000002.partial.gz".to_string();
    for k in [
        wal(1),
        wal(2),
        wal(3),
        "base/0/0/base.tar.gz".into(),
        "base/1/0/base.tar.gz".into(),
        "index.jsonl".into(),
        old_partial,
    ] {
        held.insert(format!("pitr/db_5432/{k}"), (10, 0));
    }
    // Retention removed segment 1 and chain 0; segment 2 was lost here (the index still names
    // it); the index itself is not here right now; segment 2's `.partial` was replaced.
    let local = vec![file(&wal(3), 2), file("base/1/0/base.tar.gz", 1)];
    let p = pass(&local, &held, &index(2..=3, &[(1, 1)]), None, true, at(10));
    let deletes: Vec<&str> = p.deletes.iter().map(|k| k.trim_start_matches("pitr/db_5432/")).collect();
    assert_eq!(deletes, ["base/0/0/base.tar.gz", wal(1).as_str(), "wal/00000001/000000010000000000000002.partial.gz"]);
}

#[test]
fn copies_are_locked_until_their_chain_is_expected_to_expire() {
    let policy = LockPolicy { chains: 2, interval: Duration::days(7), min: Duration::days(1) };
    let local = vec![
        file("base/1/0/base.tar.gz", 60),
        file(&wal(1), 30),
        file(&wal(2), 70),
        file("index.jsonl", 70),
        file("history/00000002.history.gz", 70),
    ];
    let i = index(1..=2, &[(0, 0), (1, 60)]);
    let p = pass(&local, &BTreeMap::new(), &i, Some(policy), true, at(80));
    let lock: BTreeMap<String, Option<DateTime<Utc>>> = p.uploads.iter().map(|(f, l)| (f.key.clone(), *l)).collect();
    let of = |k: &str| lock[&format!("pitr/db_5432/{k}")];
    assert_eq!(of("base/1/0/base.tar.gz"), Some(at(60) + Duration::days(14)));
    assert_eq!(of(&wal(1)), Some(at(0) + Duration::days(14)), "WAL stored in chain 0");
    assert_eq!(of(&wal(2)), Some(at(60) + Duration::days(14)), "WAL stored in chain 1");
    assert_eq!(of("index.jsonl"), None, "the index is replaced: never locked");
    assert_eq!(of("history/00000002.history.gz"), Some(at(80) + Duration::days(14)));
    // The floor, and no overflow on absurd settings.
    let short = LockPolicy { chains: 1, interval: Duration::hours(1), min: Duration::days(3) };
    let p = pass(&local[..1], &BTreeMap::new(), &i, Some(short), true, at(80));
    assert_eq!(p.uploads[0].1, Some(at(80) + Duration::days(3)));
    let huge = LockPolicy { chains: u32::MAX, interval: Duration::MAX, min: Duration::MAX };
    let p = pass(&local[..1], &BTreeMap::new(), &i, Some(huge), true, at(80));
    assert_eq!(p.uploads[0].1, Some(DateTime::<Utc>::MAX_UTC));
}
