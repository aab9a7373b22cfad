//! What a point-in-time recovery needs, from the index alone (pure, table-tested): the target
//! checked against the recoverable windows (a time after the newest WAL, before the oldest
//! base backup or inside a gap is refused, naming what can be reached), the newest base backup
//! whose end precedes it (recovery cannot stop before a backup's consistency point) with the
//! chain it builds on, and the WAL from that backup's start to the target.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::pitr::index::{Archived, BaseBackup, Index, Window};
use crate::pitr::wal::Segment;

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The end of the archived WAL.
    Latest,
    Time(DateTime<Utc>),
}

/// What to restore and replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The full base backup first, then its incrementals up to the one chosen.
    pub chain: Vec<BaseBackup>,
    pub target: Target,
    /// The window the target is in.
    pub window: Window,
    /// The segments to replay, in order.
    pub segments: Vec<Archived>,
    /// The archived `.partial` is needed too (the target is past the last whole segment).
    pub partial: Option<Segment>,
    /// The timelines whose history files recovery reads.
    pub histories: Vec<u32>,
}

impl Target {
    /// `--at`: `latest`, RFC 3339 with an offset (`2026-12-05T10:31:00-08:00`), or a wall-clock
    /// time in `zone` (`2026-12-05 10:31[:SS]`, also with `T`).
    ///
    /// # Errors
    /// Anything else, or a wall-clock time a DST change makes ambiguous or skips.
    pub fn parse(text: &str, zone: &crate::model::timezone::Zone) -> Result<Target, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("latest") {
            return Ok(Target::Latest);
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(t) {
            return Ok(Target::Time(at.to_utc()));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
            if let Ok(local) = chrono::NaiveDateTime::parse_from_str(t, format) {
                return zone.resolve(local).map(Target::Time).map_err(|e| format!("--at {t}: {e}"));
            }
        }
        Err(format!(
            "--at {t:?}: expected latest, a time with an offset (2026-12-05T10:31:00-08:00) or a local time in TZ (2026-12-05 10:31)"
        ))
    }

    /// The target as the server reads it: an explicit offset, microseconds.
    pub fn recovery_target_time(self) -> Option<String> {
        match self {
            Target::Latest => None,
            Target::Time(t) => Some(t.to_rfc3339_opts(SecondsFormat::Micros, false)),
        }
    }
}

/// Chooses what recovering to `target` needs; `partial` is the archived `.partial`.
///
/// # Errors
/// Nothing recoverable yet, or a target outside every window (the message names the windows
/// and the latest reachable time).
pub fn choose(index: &Index, partial: Option<(Segment, DateTime<Utc>)>, target: Target) -> Result<Chosen, String> {
    let windows = index.windows_with(partial);
    let Some(last) = windows.last().copied() else {
        return Err("the archive has nothing to recover yet: a base backup and the WAL up to its end are needed".into());
    };
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let listed = windows.iter().map(|w| format!("{} to {}", fmt(w.from), fmt(w.to))).collect::<Vec<_>>().join(", ");
    let t = match target {
        Target::Latest => last.to,
        Target::Time(t) if t > last.to => {
            return Err(format!(
                "{} is after the newest WAL in the archive: the latest time it can restore to is {} (or --at latest)",
                fmt(t),
                fmt(last.to)
            ));
        }
        Target::Time(t) => t,
    };
    let Some(window) = windows.iter().copied().find(|w| w.from <= t && t <= w.to) else {
        return Err(format!("{} cannot be recovered to: the archive's recoverable windows are {listed}", fmt(t)));
    };
    // The newest base backup whose end precedes the target and whose WAL reaches it.
    let base = index
        .bases
        .iter()
        .filter(|b| index.window_of(b, partial).is_some_and(|w| w.from <= t && t <= w.to))
        .filter(|b| (0..b.n).all(|n| index.bases.iter().any(|o| o.chain == b.chain && o.n == n)))
        .max_by_key(|b| (index.window_of(b, partial).map(|w| w.from), b.chain, b.n))
        .ok_or_else(|| format!("no base backup can reach {}: the recoverable windows are {listed}", fmt(t)))?;
    let mut chain: Vec<BaseBackup> =
        index.bases.iter().filter(|b| b.chain == base.chain && b.n <= base.n).cloned().collect();
    chain.sort_by_key(|b| b.n);
    // WAL from the backup's start up to the first segment received at or after the target.
    let mut segments = Vec::new();
    for a in index.along(base.start_segment(index.segment_size)) {
        segments.push(a.clone());
        if target != Target::Latest && a.received_at >= t {
            break;
        }
    }
    let reached = segments.last().map(|a| (a.received_at, Segment { timeline: a.timeline, number: a.number }));
    let partial = match (partial, reached) {
        (Some((p, at)), Some((last_at, s)))
            if p.timeline == s.timeline
                && p.number == s.number.saturating_add(1)
                && (last_at < t || target == Target::Latest)
                && at >= last_at =>
        {
            Some(p)
        }
        _ => None,
    };
    Ok(Chosen { chain, target, window, segments, partial, histories: index.timelines_with_history() })
}

#[cfg(test)]
mod tests;
