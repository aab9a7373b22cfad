//! The status page's point-in-time archives (`pitr::status::Board`): one card per archived
//! server after the fleet's cards, worst first, each state said in words: the window any
//! moment of which can be recovered to, the recovery point held, the window the PITR drills
//! proved and the last drill, gaps, the slot, the mirrors' lag, and the last problem.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::page::esc;
use crate::model::human;
use crate::pitr::status::Status;

/// Appends the cards of `servers` (nothing when no server is archived).
pub fn cards(out: &mut String, servers: &std::collections::BTreeMap<String, Status>, now: DateTime<Utc>) {
    if servers.is_empty() {
        return;
    }
    let mut rows: Vec<(&String, &Status, (&'static str, String))> =
        servers.iter().map(|(name, s)| (name, s, verdict(s))).collect();
    rows.sort_by_key(|(name, _, (class, _))| (super::page::rank(class), name.as_str()));
    out.push_str("<h2 id=\"pitr\">Point-in-time archives</h2>");
    let ago = |t: DateTime<Utc>| human::age((now - t).to_std().unwrap_or_default());
    let when = |t: Option<DateTime<Utc>>| match t {
        Some(t) => format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M:%S UTC"), ago(t)),
        None => "none".into(),
    };
    let span = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| match (from, to) {
        (Some(f), Some(t)) => format!("{} to {}", f.format("%Y-%m-%d %H:%M:%S UTC"), t.format("%Y-%m-%d %H:%M:%S UTC")),
        _ => "none yet".into(),
    };
    for (i, (name, s, (class, reason))) in rows.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"p{i}\" class=\"{class}\" aria-label=\"archive of {n}\"><h2>Archive of {n}<span class=\"state\">{class}</span></h2><p class=\"why\">{}</p><dl>",
            esc(reason),
            n = esc(name)
        );
        let drill = match (s.last_drill_ok, s.drill_duration_seconds) {
            (Some(true), d) => format!(
                "passed{}",
                d.map(|d| format!(", restored in {}", human::age(std::time::Duration::from_secs_f64(d.max(0.0)))))
                    .unwrap_or_default()
            ),
            (Some(false), _) => format!("FAILED: {}", s.last_drill_error.as_deref().unwrap_or("see the log")),
            (None, _) => "none yet".into(),
        };
        let mirrors = match (s.mirrors, s.mirror_behind_since, &s.mirror_problem) {
            (0, _, None) => "none configured".to_string(),
            (_, _, Some(p)) => format!("FAILING: {p}"),
            (n, None, None) => format!("{n} mirror(s), every file copied"),
            (n, Some(t), None) => format!("{n} mirror(s), {} behind", ago(t)),
        };
        let older: Vec<String> = s.older_windows.iter().map(|(f, t)| span(Some(*f), Some(*t))).collect();
        for (term, value) in [
            ("Recoverable window", span(s.earliest_recovery, s.latest_wal)),
            ("Newest WAL (recovery point)", when(s.latest_wal)),
            ("Proven by drills", span(s.proven_earliest, s.proven_latest)),
            ("Last drill", drill),
            ("Gaps", if s.gaps.is_empty() { "none".into() } else { s.gaps.join("; ") }),
            ("Older windows", if older.is_empty() { "none".into() } else { older.join("; ") }),
            ("Streamer", if s.streamer_up { "running".into() } else { "NOT running".into() }),
            (
                "Slot",
                format!(
                    "{}{}",
                    if s.slot.is_empty() { "-" } else { &s.slot },
                    s.slot_retained_bytes.map(|b| format!(", holds back {}", human::bytes(b))).unwrap_or_default()
                ),
            ),
            ("Base backups", format!("{}, the newest {}", s.base_backups, when(s.last_base_backup))),
            ("Mirrors", mirrors),
        ] {
            let _ = write!(out, "<dt>{term}</dt><dd>{}</dd>", esc(&value));
        }
        out.push_str("</dl></section>");
    }
}

/// ok / failed, and why (the first thing wrong).
fn verdict(s: &Status) -> (&'static str, String) {
    if let Some(p) = &s.problem {
        return ("failed", p.clone());
    }
    if !s.gaps.is_empty() {
        return ("failed", format!("WAL is missing: {} (a full base backup heals it)", s.gaps.join("; ")));
    }
    if s.last_drill_ok == Some(false) {
        return ("failed", "the last PITR drill failed".into());
    }
    if !s.streamer_up {
        return ("stale", "pg_receivewal is not running (restarted with backoff)".into());
    }
    if s.earliest_recovery.is_none() {
        return ("unverified", "no recoverable window yet (the first base backup)".into());
    }
    if let Some(p) = &s.mirror_problem {
        return ("stale", format!("a mirror is failing: {p}"));
    }
    ("ok", "streaming; any moment in the window can be recovered to".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_archive_is_a_card_worst_first_with_its_windows_in_words() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().to_utc();
        let mut servers = std::collections::BTreeMap::new();
        let good = Status {
            streamer_up: true,
            slot: "bc_1".into(),
            earliest_recovery: Some(now - chrono::Duration::days(7)),
            latest_wal: Some(now - chrono::Duration::seconds(4)),
            proven_earliest: Some(now - chrono::Duration::days(6)),
            proven_latest: Some(now - chrono::Duration::hours(5)),
            last_drill_ok: Some(true),
            drill_duration_seconds: Some(42.0),
            mirrors: 1,
            ..Default::default()
        };
        servers.insert("a-good:5432".to_string(), good.clone());
        servers.insert("m-down:5432".to_string(), Status { streamer_up: false, ..good.clone() });
        servers.insert("z<bad>:5432".to_string(), Status { gaps: vec!["timeline 1: …07".into()], ..good });
        let mut out = String::new();
        cards(&mut out, &servers, now);
        let bad = out.find("Archive of z&lt;bad&gt;:5432").expect("escaped");
        assert!(bad < out.find("Archive of a-good:5432").unwrap(), "worst first");
        let down = out.find("Archive of m-down:5432").unwrap();
        assert!(bad < down && down < out.find("Archive of a-good:5432").unwrap(), "failed, stale, then ok");
        assert!(out.contains("pg_receivewal is not running"), "{out}");
        assert!(out.contains("WAL is missing: timeline 1"), "{out}");
        assert!(out.contains("2026-11-29 10:00:00 UTC to 2026-12-06 09:59:56 UTC"), "{out}");
        assert!(out.contains("passed, restored in 42s") || out.contains("passed, restored in 42 s"), "{out}");
        assert!(out.contains("1 mirror(s), every file copied"), "{out}");
        assert!(!out.contains("<bad>"));
        let mut empty = String::new();
        cards(&mut empty, &Default::default(), now);
        assert!(empty.is_empty(), "no archive, no section");
    }
}
