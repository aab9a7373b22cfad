//! What `-l` says about each server's archive, read from its index alone (no lock, no
//! connection): its chains, the WAL it holds, its gaps and its recoverable windows; as text and
//! as JSON (`-l --json --pitr`).

use std::fmt::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::index::{self, Index};
use super::layout::Archive;
use super::wal::Segment;
use crate::model::human;

/// One server's archive, summed up.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub server: String,
    pub folder: String,
    pub chains: Vec<Chain>,
    pub wal: Wal,
    pub gaps: Vec<String>,
    /// Oldest first: the last one reaches the newest WAL.
    pub windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// The window the PITR drills since the last failed one proved.
    pub proven: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The last PITR drill.
    pub last_drill: Option<super::index::Drill>,
}

/// A full base backup and its incrementals.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    pub chain: u32,
    pub full_at: DateTime<Utc>,
    pub incrementals: usize,
    pub bytes: u64,
    pub timeline: u32,
    pub major: u32,
    /// Its own WAL, start to end, is all there.
    pub usable: bool,
}

/// The WAL held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Wal {
    pub segments: usize,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub newest_received_at: Option<DateTime<Utc>>,
}

/// The summary of the archive of `host:port` under `backup_dir`, or `None` when it has none.
///
/// # Errors
/// The index cannot be read or is damaged (it names the line).
pub fn summary(backup_dir: &Path, host: &str, port: u16) -> anyhow::Result<Option<Summary>> {
    let archive = Archive::new(backup_dir, host, port);
    if !archive.index().exists() {
        return Ok(None);
    }
    let (index, _) = index::load(&archive.index())?;
    let partial = super::archive::partial_state(&archive);
    Ok(Some(of(&index, partial, &format!("{host}:{port}"), &archive.dir.display().to_string())))
}

/// The summary of `index` (pure).
pub fn of(index: &Index, partial: Option<(Segment, DateTime<Utc>)>, server: &str, folder: &str) -> Summary {
    let size = index.segment_size;
    let name = |a: &index::Archived| Segment { timeline: a.timeline, number: a.number }.name(size);
    let mut chains: Vec<Chain> = index
        .bases
        .iter()
        .filter(|b| b.n == 0)
        .map(|full| {
            let members = index.bases.iter().filter(|b| b.chain == full.chain);
            Chain {
                chain: full.chain,
                full_at: full.finished_at,
                incrementals: members.clone().count() - 1,
                bytes: members.map(|b| b.size).sum(),
                timeline: full.timeline,
                major: full.major,
                usable: index.usable(full),
            }
        })
        .collect();
    chains.sort_by_key(|c| std::cmp::Reverse(c.chain));
    let wal = Wal {
        segments: index.segments().count(),
        bytes: index.segments().map(|a| a.size).sum(),
        oldest: index.segments().next().map(name),
        newest: index.segments().last().map(name),
        newest_received_at: index.segments().map(|a| a.received_at).max(),
    };
    let gaps = index.gaps_with(partial).iter().map(|g| index.describe(g)).collect();
    let windows = index.windows_with(partial).iter().map(|w| (w.from, w.to)).collect();
    let proven = index.proven().map(|w| (w.from, w.to));
    Summary {
        server: server.to_string(),
        folder: folder.to_string(),
        chains,
        wal,
        gaps,
        windows,
        proven,
        last_drill: index.drills.last().cloned(),
    }
}

impl Summary {
    /// The `-l` text, times in `zone`'s local time.
    pub fn text(&self, local: impl Fn(DateTime<Utc>) -> String) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Point-in-time archive of {} ({}):", self.server, self.folder);
        if self.chains.is_empty() {
            let _ = writeln!(out, "  no base backup yet");
        }
        for c in &self.chains {
            let incrementals = match c.incrementals {
                0 => String::new(),
                n => format!(", +{n} incremental{}", if n == 1 { "" } else { "s" }),
            };
            let state = if c.usable { "usable" } else { "NOT USABLE (its WAL is incomplete)" };
            let _ = writeln!(
                out,
                "  chain {}: full {}{incrementals}, {}, PostgreSQL {}, timeline {}; {state}",
                c.chain,
                local(c.full_at),
                human::bytes(c.bytes),
                c.major,
                c.timeline
            );
        }
        let w = &self.wal;
        let _ = writeln!(
            out,
            "  WAL: {} segments ({}), {} … {}, newest received {}",
            w.segments,
            human::bytes(w.bytes),
            w.oldest.as_deref().unwrap_or("-"),
            w.newest.as_deref().unwrap_or("-"),
            w.newest_received_at.map_or("-".into(), &local)
        );
        match self.gaps.as_slice() {
            [] => _ = writeln!(out, "  gaps: none"),
            gaps => _ = writeln!(out, "  GAPS: {}", gaps.join("; ")),
        }
        match self.windows.split_last() {
            None => _ = writeln!(out, "  recoverable: nothing yet (a base backup and its WAL are needed)"),
            Some((last, older)) => {
                let _ = writeln!(out, "  recoverable: {} to {}", local(last.0), local(last.1));
                for (from, to) in older.iter().rev() {
                    let _ = writeln!(out, "  older window (cut by a gap): {} to {}", local(*from), local(*to));
                }
            }
        }
        match (&self.proven, &self.last_drill) {
            (_, None) => _ = writeln!(out, "  proven: no PITR drill yet (-v {} --pitr runs one)", self.server),
            (Some((from, to)), Some(d)) if d.ok => {
                _ = writeln!(
                    out,
                    "  proven by PITR drills: {} to {} (last {}, {:.0}s)",
                    local(*from),
                    local(*to),
                    local(d.at),
                    d.duration_seconds
                )
            }
            (_, Some(d)) => {
                _ = writeln!(out, "  LAST PITR DRILL FAILED ({}): {}", local(d.at), d.error.as_deref().unwrap_or("?"))
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitr::index::{Archived, BaseBackup, Event};
    use crate::pitr::wal::Lsn;

    #[test]
    fn a_summary_names_chains_wal_gaps_and_windows() {
        const MIB: u64 = 1 << 20;
        let at = |m: i64| {
            DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(m)
        };
        let mut index = Index::default();
        index.apply(Event::Started { segment_size: MIB, server: "db:5432".into() });
        for n in (1..=9).filter(|n| *n != 7) {
            let a = Archived { timeline: 1, number: n, size: 100, sha256: String::new(), received_at: at(n as i64) };
            index.apply(Event::Segment(a));
        }
        let base = |chain, n, start: u64| BaseBackup {
            chain,
            n,
            timeline: 1,
            start_lsn: Lsn(start * MIB + 40).to_string(),
            end_lsn: Lsn(start * MIB + 400).to_string(),
            finished_at: at(start as i64),
            size: 1000,
            major: 15,
            ..Default::default()
        };
        for b in [base(1, 0, 2), base(1, 1, 4), base(2, 0, 8)] {
            index.apply(Event::Base(b));
        }
        let s = of(&index, None, "db:5432", "/backups/pitr/db_5432");
        assert_eq!(
            s.chains.iter().map(|c| (c.chain, c.incrementals, c.bytes, c.usable)).collect::<Vec<_>>(),
            vec![(2, 0, 1000, true), (1, 1, 2000, true)]
        );
        assert_eq!(s.gaps, vec!["timeline 1: 000000010000000000000007 to 000000010000000000000007".to_string()]);
        assert_eq!(s.windows, vec![(at(2), at(6)), (at(8), at(9))]);
        assert_eq!((s.wal.segments, s.wal.bytes), (8, 800));
        let text = s.text(|t| t.format("%H:%M").to_string());
        assert!(text.contains("chain 1: full 10:02, +1 incremental, 2.0 KiB"), "{text}");
        assert!(text.contains("GAPS: timeline 1"), "{text}");
        assert!(text.contains("recoverable: 10:08 to 10:09\n  older window (cut by a gap): 10:02 to 10:06"), "{text}");
    }
}
