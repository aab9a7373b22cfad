//! Choosing the base backup, chain and WAL for a target, from fixed indexes.

use super::*;
use crate::pitr::index::Event;
use crate::pitr::wal::Lsn;

const MIB: u64 = 1 << 20;

fn at(minute: u64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minute as i64)
}

fn seg(n: u64) -> Event {
    Event::Segment(Archived { timeline: 1, number: n, size: 10, sha256: String::new(), received_at: at(n) })
}

fn base(chain: u32, n: u32, start: u64, end: u64) -> Event {
    Event::Base(BaseBackup {
        chain,
        n,
        timeline: 1,
        start_lsn: Lsn(start * MIB + 40).to_string(),
        end_lsn: Lsn(end * MIB + 100).to_string(),
        started_at: at(start),
        finished_at: at(end),
        ..Default::default()
    })
}

fn index(segments: impl IntoIterator<Item = u64>, bases: Vec<Event>) -> Index {
    let mut i = Index::default();
    i.apply(Event::Started { segment_size: MIB, server: "db:5432".into() });
    for n in segments {
        i.apply(seg(n));
    }
    for b in bases {
        i.apply(b);
    }
    i
}

fn numbers(c: &Chosen) -> Vec<u64> {
    c.segments.iter().map(|a| a.number).collect()
}

fn chain_of(c: &Chosen) -> Vec<(u32, u32)> {
    c.chain.iter().map(|b| (b.chain, b.n)).collect()
}

#[test]
fn the_newest_base_before_the_target_and_the_wal_up_to_it() {
    let i = index(1..=10, vec![base(1, 0, 2, 3), base(2, 0, 6, 7)]);
    let partial = Some((Segment { timeline: 1, number: 11 }, at(12)));
    let c = choose(&i, partial, Target::Time(at(5))).unwrap();
    assert_eq!((chain_of(&c), numbers(&c), c.partial), (vec![(1, 0)], vec![2, 3, 4, 5], None));
    let c = choose(&i, partial, Target::Time(at(8))).unwrap();
    assert_eq!((chain_of(&c), numbers(&c)), (vec![(2, 0)], vec![6, 7, 8]));
    // Past the last whole segment: the partial is replayed too.
    let t = at(10) + chrono::Duration::seconds(30);
    let c = choose(&i, partial, Target::Time(t)).unwrap();
    assert_eq!((numbers(&c), c.partial), ((6..=10).collect(), Some(Segment { timeline: 1, number: 11 })));
    let c = choose(&i, partial, Target::Latest).unwrap();
    assert_eq!((chain_of(&c), numbers(&c).len(), c.partial.is_some()), (vec![(2, 0)], 5, true));
    assert_eq!(c.window, Window { from: at(3), to: at(12) });
}

#[test]
fn a_target_outside_the_windows_is_refused_naming_what_can_be_reached() {
    let i = index(1..=10, vec![base(1, 0, 2, 3)]);
    let err = choose(&i, None, Target::Time(at(11))).unwrap_err();
    assert!(err.contains("after the newest WAL") && err.contains("2026-12-05T10:10:00Z"), "{err}");
    let err = choose(&i, None, Target::Time(at(1))).unwrap_err();
    assert!(err.contains("cannot be recovered to") && err.contains("10:03:00Z to 2026-12-05T10:10:00Z"), "{err}");
    // A gap at segment 5: the time in it is refused; either side is not.
    let i = index((1..=10).filter(|n| *n != 5), vec![base(1, 0, 2, 3), base(2, 0, 6, 7)]);
    let err = choose(&i, None, Target::Time(at(5))).unwrap_err();
    assert!(err.contains("10:03:00Z to 2026-12-05T10:04:00Z, 2026-12-05T10:07:00Z to"), "{err}");
    assert_eq!(numbers(&choose(&i, None, Target::Time(at(4))).unwrap()), vec![2, 3, 4]);
    assert!(choose(&index([], vec![]), None, Target::Latest).unwrap_err().contains("nothing to recover yet"));
}

#[test]
fn targets_read_as_people_write_them() {
    let z = crate::model::timezone::Zone::parse(Some("America/Vancouver")).unwrap();
    let utc = |s: &str| Target::Time(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
    assert_eq!(Target::parse("latest", &z), Ok(Target::Latest));
    assert_eq!(Target::parse("2026-12-05T10:31:00-08:00", &z), Ok(utc("2026-12-05T18:31:00Z")));
    assert_eq!(Target::parse("2026-12-05 10:31", &z), Ok(utc("2026-12-05T18:31:00Z")));
    assert_eq!(Target::parse("2026-12-05 10:31:07.25", &z), Ok(utc("2026-12-05T18:31:07.25Z")));
    assert!(Target::parse("2026-11-01 01:30", &z).unwrap_err().contains("happens twice"));
    for bad in ["yesterday", "10:31", "2026-13-01 10:00", ""] {
        assert!(Target::parse(bad, &z).unwrap_err().contains("expected latest"), "{bad}");
    }
}

#[test]
fn an_incremental_brings_its_chain_and_replays_from_its_own_start() {
    let i = index(1..=10, vec![base(1, 0, 2, 3), base(1, 1, 5, 6)]);
    let c = choose(&i, None, Target::Time(at(8))).unwrap();
    assert_eq!((chain_of(&c), numbers(&c)), (vec![(1, 0), (1, 1)], vec![5, 6, 7, 8]));
    // Before the incremental's end: the full backup alone.
    let c = choose(&i, None, Target::Time(at(4))).unwrap();
    assert_eq!(chain_of(&c), vec![(1, 0)]);
    assert_eq!(Target::Time(at(4)).recovery_target_time().unwrap(), "2026-12-05T10:04:00.000000+00:00");
    assert_eq!(Target::Latest.recovery_target_time(), None);
}
