//! The retention plan from fixed indexes, and carrying it out on a real folder.

use chrono::{DateTime, Utc};

use super::*;
use crate::pitr::index::{Archived, BaseBackup};
use crate::pitr::layout::Archive;
use crate::pitr::wal::Lsn;
use crate::stream::compress::Compression;

const MIB: u64 = 1 << 20;

fn at(minute: u64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minute as i64)
}

fn seg(timeline: u32, n: u64) -> Event {
    Event::Segment(Archived { timeline, number: n, size: 10, sha256: "00".repeat(32), received_at: at(n) })
}

/// Base `n` of `chain` on `timeline`, its WAL from segment `start` to `end`.
fn base(chain: u32, n: u32, timeline: u32, start: u64, end: u64) -> Event {
    Event::Base(BaseBackup {
        chain,
        n,
        timeline,
        start_lsn: Lsn(start * MIB + 40).to_string(),
        end_lsn: Lsn(end * MIB + 100).to_string(),
        started_at: at(start),
        finished_at: at(end),
        size: 1000,
        ..Default::default()
    })
}

fn index(events: impl IntoIterator<Item = Event>) -> Index {
    let mut i = Index::default();
    i.apply(Event::Started { segment_size: MIB, server: "db:5432".into() });
    for e in events {
        i.apply(e);
    }
    i
}

fn segs(timeline: u32, numbers: std::ops::RangeInclusive<u64>) -> Vec<Segment> {
    numbers.map(|number| Segment { timeline, number }).collect()
}

#[test]
fn the_newest_usable_chains_are_kept_with_the_wal_they_need() {
    let mut events: Vec<Event> = (1..=12).map(|n| seg(1, n)).collect();
    events.extend([base(1, 0, 1, 2, 3), base(2, 0, 1, 5, 6), base(2, 1, 1, 7, 7), base(3, 0, 1, 9, 10)]);
    let p = plan(&index(events.clone()), 2);
    assert_eq!((p.keep_chains.clone(), p.drop_chains.clone()), (vec![3, 2], vec![1]));
    assert_eq!(p.drop_segments, segs(1, 1..=4));
    assert_eq!(p.freed, 1000 + 4 * 10);
    assert_eq!(p.from, Some(Segment { timeline: 1, number: 5 }));
    // Keeping one: chain 2 and its incremental go together.
    let p = plan(&index(events.clone()), 1);
    assert_eq!((p.keep_chains, p.drop_chains, p.drop_segments), (vec![3], vec![1, 2], segs(1, 1..=8)));
    // Keeping more than there are: no chain goes, only WAL older than any base backup.
    let p = plan(&index(events), 5);
    assert_eq!((p.drop_chains, p.drop_segments), (vec![], segs(1, 1..=1)));
}

#[test]
fn a_chain_that_cannot_be_restored_does_not_count() {
    // Chain 3's own WAL has a hole (segment 10 missing): chains 2 and 1 are the usable two.
    let mut events: Vec<Event> = (1..=12).filter(|n| *n != 10).map(|n| seg(1, n)).collect();
    events.extend([base(1, 0, 1, 2, 3), base(2, 0, 1, 5, 6), base(3, 0, 1, 9, 11)]);
    let p = plan(&index(events), 2);
    assert_eq!((p.keep_chains, p.drop_chains), (vec![3, 2, 1], vec![]));
    assert_eq!(p.drop_segments, segs(1, 1..=1));
    // No usable chain at all: nothing is removed.
    let events = vec![seg(1, 1), seg(1, 3), base(1, 0, 1, 1, 3), base(2, 0, 1, 3, 4)];
    assert!(plan(&index(events), 1).is_empty());
    assert!(plan(&index([]), 2).is_empty(), "an empty archive");
}

#[test]
fn older_timelines_go_once_no_kept_backup_needs_them() {
    // A failover at segment 6: timeline 2 goes on from there; the kept base is on timeline 2.
    let mut events: Vec<Event> = (1..=7).map(|n| seg(1, n)).collect();
    events.extend((6..=10).map(|n| seg(2, n)));
    events.push(Event::History { timeline: 2, switches: vec![(1, Lsn(6 * MIB + 500).to_string())] });
    events.extend([base(1, 0, 1, 2, 3), base(2, 0, 2, 8, 9)]);
    let p = plan(&index(events), 1);
    assert_eq!(p.drop_chains, vec![1]);
    let mut expected = segs(1, 1..=7);
    expected.extend(segs(2, 6..=7));
    assert_eq!(p.drop_segments, expected);
}

#[test]
fn carrying_it_out_records_first_then_deletes_and_sweeps_what_a_killed_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(Archive::new(dir.path(), "db", 5432), Compression::default(), None);
    let mut events: Vec<Event> = (1..=8).map(|n| seg(1, n)).collect();
    events.extend([base(1, 0, 1, 2, 3), base(2, 0, 1, 5, 6)]);
    let path = store.archive.index();
    std::fs::create_dir_all(&store.archive.dir).unwrap();
    index::append_all(&path, &index(events.clone()).events()).unwrap();
    let file = |n: u64| store.archive.wal(1, &Segment { timeline: 1, number: n }.name(MIB), ".gz");
    for n in 1..=8 {
        std::fs::create_dir_all(file(n).parent().unwrap()).unwrap();
        std::fs::write(file(n), b"x").unwrap();
    }
    for chain in [1, 2] {
        let b = store.archive.base(chain, 0, ".gz");
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::write(b, b"x").unwrap();
    }
    // A file a killed run left: the index no longer names segment 0.
    std::fs::write(file(0), b"x").unwrap();
    let (before, _) = index::load(&path).unwrap();
    let p = plan(&before, 1);
    // A restore reading the archive: nothing is removed until it is done.
    let reader = reading(&store.archive).unwrap();
    assert!(!apply(&store, &before, &p).unwrap());
    assert_eq!(index::load(&path).unwrap().0, before);
    assert!(file(1).exists());
    drop(reader);
    assert!(apply(&store, &before, &p).unwrap());
    let (after, _) = index::load(&path).unwrap();
    assert_eq!(after.bases.iter().map(|b| b.chain).collect::<Vec<_>>(), vec![2]);
    assert_eq!(after.segments().map(|a| a.number).collect::<Vec<_>>(), (5..=8).collect::<Vec<_>>());
    for n in 0..=8 {
        assert_eq!(file(n).exists(), n >= 5, "segment {n}");
    }
    assert!(!store.archive.base(1, 0, ".gz").exists() && store.archive.base(2, 0, ".gz").exists());
    assert!(plan(&after, 1).is_empty(), "nothing more to do");
    // Compacted: the same index from a shorter log.
    index::rewrite(&path, &after).unwrap();
    assert_eq!(index::load(&path).unwrap(), (after, false));
}
