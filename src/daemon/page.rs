//! The status page (`GET /`): one server-rendered HTML page from a snapshot of the state,
//! with inline CSS and SVG (nothing fetched, no script; it works behind `oc port-forward` and
//! air-gapped), refreshing itself every 60 s. Every state is said in words, not only colours;
//! the layout is one column on a phone. Database specs are shown (host, port, database: no
//! user, no password, no connection string).

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::evidence::Point;
use super::state::{DbState, State};
use crate::model::human;

/// The page for `state` at `now`.
pub fn render(state: &State, now: DateTime<Utc>) -> String {
    let mut body = String::new();
    let next =
        state.next_run.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "none scheduled".into());
    let _ = write!(
        body,
        "<header><h1>Backups</h1><p>{} databases · next run {} · runs: {} succeeded, {} failed · page as of {}</p></header>",
        state.databases.len(),
        esc(&next),
        state.runs_succeeded,
        state.runs_failed,
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for (server, n) in state.uncovered.iter().filter(|(_, n)| **n > 0) {
        let _ = write!(
            body,
            "<p class=\"warn\">Not backed up: {n} database(s) on {} that no line covers.</p>",
            esc(server)
        );
    }
    for (name, db) in &state.databases {
        database(&mut body, state, name, db, now);
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\"><title>backup-container status</title>\
         <link rel=\"icon\" href=\"data:,\">\
         <style>{CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
}

const CSS: &str = "body{font:16px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
main{max-width:64rem;margin:0 auto;padding:1rem}h1{margin:.2rem 0}h2{font-size:1.1rem;margin:0 0 .4rem;overflow-wrap:anywhere}\
section{background:#fff;border:1px solid #ddd;border-left:6px solid #888;border-radius:4px;padding:.8rem;margin:.8rem 0}\
section.ok{border-left-color:#2e7d32}section.failed{border-left-color:#c62828}section.stale,section.anomaly,section.unverified{border-left-color:#ef6c00}\
.state{font-weight:700;text-transform:uppercase;font-size:.85rem;margin-left:.4rem}\
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.3rem 1rem;margin:.4rem 0}\
dt{font-size:.8rem;color:#555}dd{margin:0;overflow-wrap:anywhere}.why,.warn{overflow-wrap:anywhere}.warn{color:#8a4b00}\
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:.8rem;color:#555}svg{display:block;width:12rem;max-width:100%;height:3rem}";

fn database(out: &mut String, state: &State, name: &str, db: &DbState, now: DateTime<Utc>) {
    let (class, reason) = verdict(state, db, now);
    let _ = write!(
        out,
        "<section class=\"{class}\" aria-label=\"{n}\"><h2>{n}<span class=\"state\">{class}</span></h2><p class=\"why\">{}</p><dl>",
        esc(&reason),
        n = esc(name)
    );
    let when = |t: Option<DateTime<Utc>>| match t {
        Some(t) => {
            format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M UTC"), human::age((now - t).to_std().unwrap_or_default()))
        }
        None => "never".into(),
    };
    let attempt =
        db.last_attempt.as_ref().map(|a| format!("{} — {}", when(Some(a.at)), if a.ok { "ok" } else { "failed" }));
    let e = &db.evidence;
    let rows = match (e.newest_tables, e.newest_rows) {
        (Some(t), Some(r)) => format!("{t} tables, {r} rows"),
        _ => "not counted".into(),
    };
    let verified = match &db.last_verification {
        Some(v) => format!(
            "{} — {}{}",
            when(Some(v.at)),
            if v.ok { "restored and checked" } else { "FAILED" },
            e.last_verification_seconds
                .map(|s| format!(" in {}", human::age(std::time::Duration::from_secs_f64(s))))
                .unwrap_or_default()
        ),
        None => "never".into(),
    };
    let rehearsal = match (e.last_upgrade_rehearsal_ok, e.last_upgrade_rehearsal_major) {
        (Some(ok), major) => format!(
            "into PostgreSQL {} — {}",
            major.map_or("?".into(), |m| m.to_string()),
            if ok { "loads" } else { "FAILED (the verification itself passed)" }
        ),
        (None, _) => "none (no newer major installed, or not yet)".into(),
    };
    let mirrors = match db.mirrors.as_slice() {
        [] => "none configured, or no copy yet".to_string(),
        list => list
            .iter()
            .map(|(name, error)| match error {
                None => format!("{name}: copied"),
                Some(e) => format!("{name}: FAILED ({e})"),
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    for (term, value) in [
        ("Last success", when(db.last_success)),
        ("Last attempt", attempt.unwrap_or_else(|| "none since start".into())),
        ("Newest backup", human::bytes(db.last_success_size_bytes)),
        ("Newest contents", rows),
        ("Last verification", verified),
        ("Upgrade rehearsal", rehearsal),
        ("Mirrors", mirrors),
    ] {
        let _ = write!(out, "<dt>{term}</dt><dd>{}</dd>", esc(&value));
    }
    out.push_str("</dl><div class=\"charts\">");
    let series: [(&str, Vec<Option<f64>>); 3] = [
        ("Size", e.history.iter().map(|p| Some(p.bytes as f64)).collect()),
        ("Dump duration", e.history.iter().map(|p| p.seconds).collect()),
        ("Rows", e.history.iter().map(|p| p.rows.map(|r| r as f64)).collect()),
    ];
    for (what, values) in series {
        spark(out, what, &values, &e.history);
    }
    out.push_str("</div></section>");
}

/// ok / failed / stale / anomaly / unverified, and why.
fn verdict(state: &State, db: &DbState, now: DateTime<Utc>) -> (&'static str, String) {
    if let Some(a) = db.last_attempt.as_ref().filter(|a| !a.ok) {
        return ("failed", format!("The last backup failed: {}", a.error.as_deref().unwrap_or("see the log")));
    }
    if state.is_stale(db, now) {
        return ("stale", "No good backup within the schedule's limit.".into());
    }
    if !db.evidence.anomaly.is_empty() {
        return ("anomaly", format!("The newest backup changed more than allowed: {}", db.evidence.anomaly.join("; ")));
    }
    match &db.last_verification {
        Some(v) if !v.ok => {
            ("failed", format!("The last verification failed: {}", v.error.as_deref().unwrap_or("see the log")))
        }
        Some(_) => ("ok", "Backed up and proven restorable.".into()),
        None if db.last_success.is_some() => ("unverified", "Backed up, never restored in a verification yet.".into()),
        None => ("unverified", "No backup yet.".into()),
    }
}

/// A sparkline of `values` (the backups on disk, oldest first), failed or anomalous ones marked.
fn spark(out: &mut String, what: &str, values: &[Option<f64>], points: &[Point]) {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    if known.len() < 2 {
        return;
    }
    let (lo, hi) = known.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
    let (w, h) = (120.0, 30.0);
    let x = |i: usize| 2.0 + (w - 4.0) * i as f64 / (values.len() - 1).max(1) as f64;
    let y = |v: f64| if hi > lo { h - 3.0 - (h - 6.0) * (v - lo) / (hi - lo) } else { h / 2.0 };
    let line: Vec<String> = known.iter().map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v))).collect();
    let marks: String = known
        .iter()
        .filter(|(i, _)| points.get(*i).is_some_and(|p| p.bad))
        .map(|(i, v)| format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#c62828\"/>", x(*i), y(*v)))
        .collect();
    let caption = format!(
        "{what} of the last {} backups{}",
        known.len(),
        if marks.is_empty() { "" } else { " (red: cut short or anomalous)" }
    );
    let _ = write!(
        out,
        "<figure><svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{c}\"><polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" points=\"{}\"/>{marks}</svg><figcaption>{c}</figcaption></figure>",
        line.join(" "),
        c = esc(&caption)
    );
}

/// HTML text and attribute escaping.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_states_said_in_words() {
        let mut s = State::new(&[("db/<x>\"".into(), "db-x".into())], &[], None, 1.5, Utc::now());
        s.uncovered.insert("postgres=db:5432".into(), 2);
        let html = render(&s, Utc::now());
        assert!(
            html.starts_with("<!DOCTYPE html>") && html.contains("db/&lt;x&gt;&quot;") && !html.contains("db/<x>"),
            "{html}"
        );
        assert!(html.contains("unverified") && html.contains("No backup yet."), "{html}");
        assert!(html.contains("2 database(s) on postgres=db:5432"), "{html}");
    }
}
