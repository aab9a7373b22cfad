//! The archive's own index, one per server: an append-only log of JSON lines (a segment
//! archived, a history file, a base backup, a removal by retention), replayed on load — a torn
//! last line from a killed process is ignored — and compacted atomically after retention. Not
//! one dump-catalog record per segment: a busy server archives thousands a day.
//!
//! From it alone (pure, table-tested): the gaps — on each timeline of the path from a base
//! backup's start to the newest timeline (its `.history`), every segment must be there, the
//! segment holding a switch point read from the child timeline as recovery reads it — and the
//! recoverable windows: from a usable base backup's end (its WAL from start to end present) to
//! the newest WAL reached without a gap.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::wal::{Lsn, Segment, Switch};

mod types;
pub use types::{Archived, BaseBackup, Drill, Event, Gap, Window};

/// The index, replayed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    pub segment_size: u64,
    /// `host:port`, from the first line.
    pub server: String,
    segments: BTreeMap<Segment, Archived>,
    pub bases: Vec<BaseBackup>,
    /// The PITR drills, oldest first.
    pub drills: Vec<Drill>,
    /// Each timeline's ancestors (its `.history`).
    history: BTreeMap<u32, Vec<Switch>>,
}

/// What a walk along the timelines found.
struct Walk {
    gaps: Vec<Gap>,
    /// The last segment reached before the first gap.
    reached: Option<Segment>,
}

impl Index {
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Started { segment_size, server } => (self.segment_size, self.server) = (segment_size, server),
            Event::Segment(a) => {
                self.segments.insert(Segment { timeline: a.timeline, number: a.number }, a);
            }
            Event::History { timeline, switches } => {
                let switches = switches
                    .into_iter()
                    .filter_map(|(t, at)| Some(Switch { timeline: t, at: Lsn::parse(&at)? }))
                    .collect();
                self.history.insert(timeline, switches);
            }
            Event::Base(b) => self.bases.push(b),
            Event::Removed { timeline, number } => {
                self.segments.remove(&Segment { timeline, number });
            }
            Event::ChainRemoved { chain } => self.bases.retain(|b| b.chain != chain),
            Event::Drill(d) => {
                self.drills.push(d);
                // The last few are enough for the proven window and the metrics.
                if self.drills.len() > 20 {
                    self.drills.remove(0);
                }
            }
        }
    }

    /// The span base backup `b` can recover to: from its end (the earlier of our clock when
    /// `pg_basebackup` finished and the receive time of the segment holding its end) to the
    /// newest WAL reached from it without a gap (the archived `.partial` of the next segment
    /// included); `None` when its own WAL is incomplete.
    pub fn window_of(&self, b: &BaseBackup, partial: Option<(Segment, DateTime<Utc>)>) -> Option<Window> {
        let size = self.segment_size.max(1);
        let reached = self.reached_from(b)?;
        let end = Segment { timeline: b.timeline, number: lsn(&b.end_lsn).segment(size) };
        let from = self.segments.get(&end).map_or(b.finished_at, |a| a.received_at.min(b.finished_at));
        let mut to = self.segments[&reached].received_at;
        if let Some((segment, at)) = partial
            && segment.timeline == reached.timeline
            && segment.number == reached.number.saturating_add(1)
        {
            to = to.max(at);
        }
        (to >= from).then_some(Window { from, to })
    }

    /// The segments from `from` along the timelines to the newest, in order, up to the first
    /// missing one.
    pub fn along(&self, from: Segment) -> Vec<&Archived> {
        let size = self.segment_size.max(1);
        let mut out = Vec::new();
        let mut number = from.number;
        for (timeline, switch) in self.path(from.timeline) {
            let last = switch.map_or(u64::MAX, |at| at.segment(size).saturating_sub(1));
            while number <= last {
                match self.segments.get(&Segment { timeline, number }) {
                    Some(a) => out.push(a),
                    None => return out,
                }
                number += 1;
            }
            if let Some(at) = switch {
                number = at.segment(size);
            }
        }
        out
    }

    /// The gaps, split: open ones (after the newest full base backup's start: they cut the
    /// window that reaches the newest WAL) and healed ones (before it: they only split off
    /// older windows).
    pub fn open_and_healed_gaps(&self, partial: Option<(Segment, DateTime<Utc>)>) -> (Vec<Gap>, Vec<Gap>) {
        let size = self.segment_size;
        let healed_from = self.bases.iter().filter(|b| b.n == 0).map(|b| b.start_segment(size)).max();
        self.gaps_with(partial)
            .into_iter()
            .partition(|g| healed_from.is_none_or(|h| (g.timeline, g.to) >= (h.timeline, h.number)))
    }

    /// `timeline 1: 000000010000000000000007 to 000000010000000000000008`.
    pub fn describe(&self, g: &Gap) -> String {
        let name = |n| Segment { timeline: g.timeline, number: n }.name(self.segment_size);
        format!("timeline {}: {} to {}", g.timeline, name(g.from), name(g.to))
    }

    /// The proven window: from the earliest to the latest target of the successful drills
    /// since the last failed one.
    pub fn proven(&self) -> Option<Window> {
        let since_failure = self.drills.iter().rev().take_while(|d| d.ok).collect::<Vec<_>>();
        let from = since_failure.iter().map(|d| d.target).min()?;
        let to = since_failure.iter().map(|d| d.target).max()?;
        Some(Window { from, to })
    }

    /// The history files the index names (timelines after the first).
    pub fn timelines_with_history(&self) -> Vec<u32> {
        self.history.keys().copied().collect()
    }

    /// The events that make this index again, in order (a compacted log).
    pub fn events(&self) -> Vec<Event> {
        let mut out = vec![Event::Started { segment_size: self.segment_size, server: self.server.clone() }];
        out.extend(self.history.iter().map(|(timeline, switches)| Event::History {
            timeline: *timeline,
            switches: switches.iter().map(|s| (s.timeline, s.at.to_string())).collect(),
        }));
        out.extend(self.segments.values().cloned().map(Event::Segment));
        out.extend(self.bases.iter().cloned().map(Event::Base));
        out.extend(self.drills.iter().cloned().map(Event::Drill));
        out
    }

    /// Whether base backup `b` can be recovered: its WAL from start to end is all there.
    pub fn usable(&self, b: &BaseBackup) -> bool {
        self.reached_from(b).is_some()
    }

    /// The last segment reached without a gap from `b`'s start, when that covers `b`'s end.
    fn reached_from(&self, b: &BaseBackup) -> Option<Segment> {
        let size = self.segment_size.max(1);
        let end = lsn(&b.end_lsn).segment(size);
        self.walk(b.start_segment(size)).reached.filter(|r| r.timeline != b.timeline || r.number >= end)
    }

    pub fn segments(&self) -> impl Iterator<Item = &Archived> {
        self.segments.values()
    }

    /// Whether `segment` is in the archive.
    pub fn has(&self, segment: Segment) -> bool {
        self.segments.contains_key(&segment)
    }

    /// The newest timeline with WAL or a history.
    fn newest_timeline(&self) -> Option<u32> {
        let by_wal = self.segments.keys().map(|s| s.timeline).max();
        by_wal.max(self.history.keys().copied().max())
    }

    /// The timelines from `timeline` to the newest, each with where it switched to the next
    /// (`None` for the last); just `timeline` when it is not an ancestor of the newest.
    fn path(&self, timeline: u32) -> Vec<(u32, Option<Lsn>)> {
        let newest = self.newest_timeline().unwrap_or(timeline);
        let ancestors = self.history.get(&newest).cloned().unwrap_or_default();
        match ancestors.iter().position(|s| s.timeline == timeline) {
            _ if timeline == newest => vec![(newest, None)],
            Some(i) => ancestors[i..].iter().map(|s| (s.timeline, Some(s.at))).chain([(newest, None)]).collect(),
            None => vec![(timeline, None)],
        }
    }

    /// Walks from `from` along the path to the newest WAL, noting every missing segment.
    fn walk(&self, from: Segment) -> Walk {
        let size = self.segment_size.max(1);
        let mut walk = Walk { gaps: Vec::new(), reached: None };
        let mut number = from.number;
        for (timeline, switch) in self.path(from.timeline) {
            // The segment holding the switch point is read from the child timeline.
            let last = match switch {
                Some(at) => at.segment(size).checked_sub(1),
                None => self
                    .segments
                    .range(Segment { timeline, number: 0 }..=Segment { timeline, number: u64::MAX })
                    .map(|(s, _)| s.number)
                    .next_back(),
            };
            // Steps over the segments there, not over every number: a damaged index naming a
            // segment far away costs one gap, not a loop over the numbers in between.
            if let Some(last) = last.filter(|l| *l >= number) {
                let mut expected = number;
                let range = Segment { timeline, number }..=Segment { timeline, number: last };
                for (here, _) in self.segments.range(range) {
                    if here.number > expected {
                        walk.gaps.push(Gap { timeline, from: expected, to: here.number - 1 });
                    } else if walk.gaps.is_empty() {
                        walk.reached = Some(*here);
                    }
                    expected = here.number.saturating_add(1);
                }
                if expected <= last {
                    walk.gaps.push(Gap { timeline, from: expected, to: last });
                }
            }
            if let Some(at) = switch {
                number = at.segment(size);
            }
        }
        walk
    }

    /// `gaps`, and the WAL between the newest segment and the archived `.partial` when the
    /// streamer went on further ahead (its slot was lost): a gap is known as soon as streaming
    /// goes on after it, not only once a later segment is whole.
    pub fn gaps_with(&self, partial: Option<(Segment, DateTime<Utc>)>) -> Vec<Gap> {
        let mut gaps = self.gaps();
        let Some((p, _)) = partial.filter(|_| !self.bases.is_empty()) else { return gaps };
        let last = self.segments.range(Segment { timeline: p.timeline, number: 0 }..p).next_back().map(|(s, _)| *s);
        if let Some(last) = last
            && p.number > last.number.saturating_add(1)
            && !gaps.iter().any(|g| g.timeline == p.timeline && g.to >= last.number)
        {
            gaps.push(Gap { timeline: p.timeline, from: last.number + 1, to: p.number - 1 });
        }
        gaps
    }

    /// Missing WAL from the oldest base backup's start to the newest segment.
    pub fn gaps(&self) -> Vec<Gap> {
        let size = self.segment_size.max(1);
        let oldest = self.bases.iter().min_by_key(|b| (b.timeline, lsn(&b.start_lsn)));
        oldest.map_or_else(Vec::new, |b| {
            self.walk(Segment { timeline: b.timeline, number: lsn(&b.start_lsn).segment(size) }).gaps
        })
    }

    /// The recoverable windows, oldest first, overlapping ones merged: from each usable base
    /// backup's end to the receive time of the last segment reached from it without a gap.
    pub fn windows(&self) -> Vec<Window> {
        self.windows_with(None)
    }

    /// `windows`, with the archived `.partial` (its segment and receive time) extending the
    /// window that reaches the segment before it. A base backup's end is the earlier of our
    /// clock when `pg_basebackup` finished and the receive time of the segment holding its end
    /// (neither is before the server wrote it).
    pub fn windows_with(&self, partial: Option<(Segment, DateTime<Utc>)>) -> Vec<Window> {
        let mut spans: Vec<Window> = self.bases.iter().filter_map(|b| self.window_of(b, partial)).collect();
        spans.sort_by_key(|w| w.from);
        let mut merged: Vec<Window> = Vec::new();
        for w in spans {
            match merged.last_mut() {
                Some(last) if w.from <= last.to => last.to = last.to.max(w.to),
                _ => merged.push(w),
            }
        }
        merged
    }
}

fn lsn(text: &str) -> Lsn {
    Lsn::parse(text).unwrap_or_default()
}

/// Replays the log at `path` (none: an empty index). A last line that does not parse (a
/// process killed while appending) is ignored; `true` says so (the next compaction drops it).
///
/// # Errors
/// The file cannot be read, or a line before the last does not parse (it names the line).
pub fn load(path: &Path) -> anyhow::Result<(Index, bool)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Index::default(), false)),
        Err(e) => return Err(e).with_context(|| format!("reading the archive index {}", path.display())),
    };
    let mut index = Index::default();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Event>(line) {
            Ok(e) => index.apply(e),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => return Ok((index, true)),
            Err(e) => anyhow::bail!("the archive index {} is damaged at line {}: {e}", path.display(), i + 1),
        }
    }
    Ok((index, false))
}

/// Appends `event` to the log at `path`, durably (fsynced before it returns).
///
/// # Errors
/// The write or the sync failed.
pub fn append(path: &Path, event: &Event) -> anyhow::Result<()> {
    append_all(path, std::slice::from_ref(event))
}

/// Writes `index` as a new log in place of the old one (`.in_progress`, fsync, rename): only
/// while nothing else appends (the archiver does it before its streamer starts).
///
/// # Errors
/// The write, the sync or the rename failed (the old log is kept).
pub fn rewrite(path: &Path, index: &Index) -> anyhow::Result<()> {
    let mut text = Vec::new();
    for e in index.events() {
        text.extend(serde_json::to_vec(&e)?);
        text.push(b'\n');
    }
    crate::catalog::durable::write_atomic(path, &text)
}

/// Appends `events` in one write, durably.
///
/// # Errors
/// As `append`.
pub fn append_all(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let mut line = Vec::new();
    for event in events {
        line.extend(serde_json::to_vec(event)?);
        line.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the archive index {}", path.display()))?;
    f.write_all(&line).and_then(|()| f.sync_data()).with_context(|| format!("appending to {}", path.display()))
}

#[cfg(test)]
mod tests;
