//! Gaps and windows from the index alone, with a fixed clock; the log's replay.

use super::*;

const MIB: u64 = 1 << 20;

fn at(minute: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minute)
}

/// Segment `n` of `timeline`, received at minute `n`.
fn seg(timeline: u32, n: u64) -> Event {
    Event::Segment(Archived { timeline, number: n, size: MIB, sha256: "00".repeat(32), received_at: at(n as i64) })
}

/// A base backup on `timeline` from segment `start` to `end` (mid-segment), finished at minute `end`.
fn base(chain: u32, timeline: u32, start: u64, end: u64) -> Event {
    Event::Base(BaseBackup {
        chain,
        n: 0,
        timeline,
        start_lsn: Lsn(start * MIB + 40).to_string(),
        end_lsn: Lsn(end * MIB + 100).to_string(),
        started_at: at(start as i64),
        finished_at: at(end as i64),
        ..Default::default()
    })
}

fn index(events: Vec<Event>) -> Index {
    let mut i = Index::default();
    i.apply(Event::Started { segment_size: MIB, server: "db:5432".into() });
    for e in events {
        i.apply(e);
    }
    i
}

#[test]
fn a_contiguous_archive_has_one_window_from_the_base_end_to_the_newest_wal() {
    let mut events: Vec<Event> = (1..=10).map(|n| seg(1, n)).collect();
    events.push(base(1, 1, 2, 3));
    let i = index(events);
    assert_eq!(i.gaps(), []);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(10) }]);
}

#[test]
fn a_missing_segment_is_a_gap_that_splits_the_window() {
    let mut events: Vec<Event> = (1..=12).filter(|n| ![6, 7].contains(n)).map(|n| seg(1, n)).collect();
    events.push(base(1, 1, 2, 3));
    let i = index(events.clone());
    assert_eq!(i.gaps(), [Gap { timeline: 1, from: 6, to: 7 }]);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(5) }], "it reaches only up to the gap");
    // A new full base backup after the gap heals what follows it.
    events.push(base(2, 1, 9, 10));
    let i = index(events);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(5) }, Window { from: at(10), to: at(12) }]);
}

#[test]
fn a_base_backup_without_its_own_wal_is_no_window() {
    let mut events: Vec<Event> = (1..=10).filter(|n| *n != 3).map(|n| seg(1, n)).collect();
    events.push(base(1, 1, 2, 4));
    let i = index(events);
    assert_eq!(i.gaps(), [Gap { timeline: 1, from: 3, to: 3 }]);
    assert_eq!(i.windows(), []);
}

#[test]
fn a_timeline_switch_is_followed_and_its_segment_read_from_the_child() {
    // Timeline 1 up to 0/580000 (inside segment 5 of 1 MiB), timeline 2 from there.
    let history = Event::History { timeline: 2, switches: vec![(1, "0/580000".into())] };
    let mut events: Vec<Event> = (1..=5).map(|n| seg(1, n)).chain((5..=8).map(|n| seg(2, n))).collect();
    events.extend([history.clone(), base(1, 1, 2, 3)]);
    let i = index(events.clone());
    assert_eq!(i.gaps(), []);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(8) }]);
    // Timeline 1's own segment 5 is not needed; timeline 2's is.
    let without = |timeline: u32, n: u64| -> Vec<Event> {
        events
            .iter()
            .filter(|e| !matches!(e, Event::Segment(a) if a.timeline == timeline && a.number == n))
            .cloned()
            .collect()
    };
    assert_eq!(index(without(1, 5)).gaps(), []);
    assert_eq!(index(without(2, 5)).gaps(), [Gap { timeline: 2, from: 5, to: 5 }]);
    assert_eq!(index(without(1, 4)).gaps(), [Gap { timeline: 1, from: 4, to: 4 }]);
}

#[test]
fn a_segment_far_away_is_one_gap_not_a_long_walk() {
    let mut events: Vec<Event> = (1..=4).map(|n| seg(1, n)).collect();
    events.extend([seg(1, u64::MAX - 1), base(1, 1, 2, 3)]);
    let i = index(events);
    assert_eq!(i.gaps(), [Gap { timeline: 1, from: 5, to: u64::MAX - 2 }]);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(4) }]);
}

#[test]
fn retention_removes_what_it_prunes() {
    let mut events: Vec<Event> = (1..=6).map(|n| seg(1, n)).collect();
    events.extend([base(1, 1, 2, 3), Event::Removed { timeline: 1, number: 4 }]);
    assert_eq!(index(events).gaps(), [Gap { timeline: 1, from: 4, to: 4 }]);
}

#[test]
fn the_log_replays_ignores_a_torn_last_line_and_names_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.jsonl");
    assert_eq!(load(&path).unwrap(), (Index::default(), false), "no log yet: empty");
    let events =
        vec![Event::Started { segment_size: MIB, server: "db:5432".into() }, seg(1, 1), seg(1, 2), base(1, 1, 1, 2)];
    for e in &events {
        append(&path, e).unwrap();
    }
    let (loaded, torn) = load(&path).unwrap();
    assert_eq!((loaded.clone(), torn), (index(events[1..].to_vec()), false));
    assert_eq!(loaded.windows(), [Window { from: at(2), to: at(2) }]);
    // A process killed while appending.
    let mut text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}{{\"event\":\"segment\",\"timel")).unwrap();
    assert_eq!(load(&path).unwrap(), (loaded, true));
    // A damaged line in the middle is not guessed around.
    text = text.replacen("\"segment\"", "\"segmnet\"", 1);
    std::fs::write(&path, text).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("damaged at line 2"), "{err}");
}

#[test]
fn a_partial_beyond_the_newest_segment_is_a_gap_at_once() {
    let i = index(vec![seg(1, 2), seg(1, 3), base(1, 1, 2, 3)]);
    let p = |n| Some((Segment { timeline: 1, number: n }, at(9)));
    assert_eq!(i.gaps_with(p(4)), [], "the next segment: no gap");
    assert_eq!(i.gaps_with(p(7)), [Gap { timeline: 1, from: 4, to: 6 }]);
    assert_eq!(i.gaps_with(None), []);
}

#[test]
fn a_window_opens_when_the_backups_end_arrived_and_the_partial_extends_it() {
    // The segment holding the backup's end arrived (minute 3) before pg_basebackup returned
    // (minute 5 by our clock): the window opens at minute 3, and is not empty.
    let mut b = base(1, 1, 2, 3);
    if let Event::Base(x) = &mut b {
        x.finished_at = at(5);
    }
    let i = index(vec![seg(1, 2), seg(1, 3), b]);
    assert_eq!(i.windows(), [Window { from: at(3), to: at(3) }]);
    // The partial of the next segment, received at minute 9, extends it; one further on does not.
    let next = Some((Segment { timeline: 1, number: 4 }, at(9)));
    assert_eq!(i.windows_with(next), [Window { from: at(3), to: at(9) }]);
    let beyond = Some((Segment { timeline: 1, number: 6 }, at(9)));
    assert_eq!(i.windows_with(beyond), [Window { from: at(3), to: at(3) }]);
}
