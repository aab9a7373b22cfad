//! The status page (`GET /`): one server-rendered HTML page from a snapshot of the state,
//! with inline CSS and SVG (nothing fetched, no script; it works behind `oc port-forward` and
//! air-gapped), refreshing itself every 60 s. A compact table of the fleet comes first, worst
//! first (failed, stale, anomaly, unverified, ok; the oldest success first within each), each
//! row linking to the database's card below. Every state is said in words, not only colours;
//! the layout is one column on a phone. Charts start at zero and say their range, so a
//! backup a few bytes smaller draws no dip. Database specs are shown (host, port, database: no
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
    // Worst first; each card keeps its place in the map as its anchor.
    let mut rows: Vec<(usize, &String, &DbState, (&'static str, String))> =
        state.databases.iter().enumerate().map(|(i, (name, db))| (i, name, db, verdict(state, db, now))).collect();
    rows.sort_by_key(|(_, name, db, (class, _))| (rank(class), db.last_success, name.as_str()));
    fleet(&mut body, state, &rows, now);
    for (i, name, db, verdict) in &rows {
        database(&mut body, *i, name, db, verdict, now);
    }
    super::archive_card::cards(&mut body, &state.pitr.snapshot(), now);
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
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:.8rem;color:#555}svg{display:block;width:12rem;max-width:100%;height:3rem}\
path{fill:none;stroke:#1565c0;stroke-width:1.5}circle{fill:#c62828}\
.fleet{width:100%;overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;width:100%}\
th,td{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #ddd;white-space:nowrap}th{font-weight:600;color:#555}\
td:first-child{white-space:normal;overflow-wrap:anywhere}td.failed{color:#c62828}td.stale,td.anomaly,td.unverified{color:#8a4b00}td.ok{color:#2e7d32}";

/// Worst first.
pub(super) fn rank(class: &str) -> u8 {
    match class {
        "failed" => 0,
        "stale" => 1,
        "anomaly" => 2,
        "unverified" => 3,
        _ => 4,
    }
}

/// The fleet at a glance: one row per database, linking to its card.
fn fleet(
    out: &mut String,
    state: &State,
    rows: &[(usize, &String, &DbState, (&'static str, String))],
    now: DateTime<Utc>,
) {
    let ago = |t: Option<DateTime<Utc>>| match t {
        Some(t) => format!("{} ago", human::age((now - t).to_std().unwrap_or_default())),
        None => "never".into(),
    };
    out.push_str(
        "<div class=\"fleet\"><table><caption class=\"why\">Worst first.</caption><thead><tr><th scope=\"col\">Database</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Last success</th><th scope=\"col\">Size</th>\
         <th scope=\"col\">Rows</th><th scope=\"col\">Last verification</th><th scope=\"col\">Recovery point</th></tr></thead><tbody>",
    );
    for (i, name, db, (class, _)) in rows {
        let e = &db.evidence;
        let verified = match &db.last_verification {
            Some(v) if v.ok => ago(Some(v.at)),
            Some(v) => format!("FAILED {}", ago(Some(v.at))),
            None => "never".into(),
        };
        let rpo = match e.newest_verified_backup_at {
            Some(_) if e.rpo_exceeded(state.rpo_target, state.started, now) => {
                format!("{} (over target)", human::age(e.rpo(state.started, now)))
            }
            Some(_) => human::age(e.rpo(state.started, now)),
            None => "none verified".into(),
        };
        let size = if db.last_success.is_some() { human::bytes(db.last_success_size_bytes) } else { "-".into() };
        let _ = write!(
            out,
            "<tr><td><a href=\"#d{i}\">{}</a></td><td class=\"{class}\">{class}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&ago(db.last_success)),
            esc(&size),
            e.newest_rows.map_or("-".into(), |r| r.to_string()),
            esc(&verified),
            esc(&rpo)
        );
    }
    out.push_str("</tbody></table></div>");
}

fn database(out: &mut String, i: usize, name: &str, db: &DbState, verdict: &(&str, String), now: DateTime<Utc>) {
    let (class, reason) = verdict;
    let _ = write!(
        out,
        "<section id=\"d{i}\" class=\"{class}\" aria-label=\"{n}\"><h2>{n}<span class=\"state\">{class}</span></h2><p class=\"why\">{}</p><dl>",
        esc(reason),
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
    let series: [(&str, Vec<Option<f64>>, Unit); 3] = [
        ("Size", e.history.iter().map(|p| Some(p.bytes as f64)).collect(), Unit::Bytes),
        ("Dump duration", e.history.iter().map(|p| p.seconds).collect(), Unit::Seconds),
        ("Rows", e.history.iter().map(|p| p.rows.map(|r| r as f64)).collect(), Unit::Count),
    ];
    for (what, values, unit) in series {
        spark(out, what, &values, unit, &e.history);
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

/// What a chart's values are, for its caption.
#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Seconds,
    Count,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Bytes => human::bytes(v as u64),
            Unit::Seconds if v < 60.0 => format!("{:.1}s", v.max(0.0)),
            Unit::Seconds => human::age(std::time::Duration::from_secs_f64(v)),
            Unit::Count => format!("{}", v as u64),
        }
    }
}

/// The chart's height and width in SVG units (whole numbers keep the page light).
const CHART: (f64, f64) = (120.0, 30.0);

/// Where `v` is drawn: the axis runs from zero to the largest value, so that a change of a
/// few bytes or rows is a few pixels, not the chart's full height.
fn chart_y(v: f64, hi: f64) -> f64 {
    let h = CHART.1;
    if hi > 0.0 { h - 2.0 - (h - 4.0) * v.max(0.0) / hi } else { h - 2.0 }
}

/// A sparkline of `values` (the backups on disk, oldest first), failed or anomalous ones
/// marked; its caption says the range.
fn spark(out: &mut String, what: &str, values: &[Option<f64>], unit: Unit, points: &[Point]) {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    if known.len() < 2 {
        return;
    }
    let (lo, hi) = known.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
    let (w, h) = CHART;
    let x = |i: usize| 2.0 + (w - 4.0) * i as f64 / (values.len() - 1).max(1) as f64;
    // One path, each step relative to the one before (whole units keep it short).
    let at = |(i, v): &(usize, f64)| (x(*i).round() as i64, chart_y(*v, hi).round() as i64);
    let mut line = String::new();
    let mut last = None;
    for p in &known {
        let (px, py) = at(p);
        match last {
            None => line.push_str(&format!("M{px},{py}")),
            Some((lx, ly)) if ly == py => line.push_str(&format!("h{}", px - lx)),
            Some((lx, ly)) => line.push_str(&format!("l{},{}", px - lx, py - ly)),
        }
        last = Some((px, py));
    }
    let marks: String = known
        .iter()
        .filter(|(i, _)| points.get(*i).is_some_and(|p| p.bad))
        .map(|p| format!("<circle cx=\"{}\" cy=\"{}\" r=\"2.5\"/>", at(p).0, at(p).1))
        .collect();
    let range = if unit.show(lo) == unit.show(hi) {
        format!("all {}", unit.show(hi))
    } else {
        format!("{} to {}", unit.show(lo), unit.show(hi))
    };
    let caption = format!(
        "{what} of the last {} backups: {range} (axis from 0){}",
        known.len(),
        if marks.is_empty() { "" } else { "; red: cut short or anomalous" }
    );
    let _ = write!(
        out,
        "<figure><svg viewBox=\"0 0 {w} {h}\" aria-hidden=\"true\"><path d=\"{line}\"/>{marks}</svg><figcaption>{}</figcaption></figure>",
        esc(&caption)
    );
}

/// HTML text and attribute escaping.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A fleet of `n` databases with full histories, every tenth one's last backup failed: for
/// the page's size and rendering tests.
#[cfg(any(test, feature = "test-support"))]
pub fn sample_fleet(n: usize, now: DateTime<Utc>) -> State {
    let names: Vec<(String, String)> =
        (0..n).map(|i| (format!("postgres=db-{}.example:5432/app_{i:03}", i % 7), format!("db-app_{i:03}"))).collect();
    let mut s = State::new(&names, &[], Some(std::time::Duration::from_secs(86_400)), 1.5, now);
    for (i, db) in s.databases.values_mut().enumerate() {
        db.last_success = Some(now - chrono::Duration::hours(1 + (i % 30) as i64));
        db.last_success_size_bytes = 10_000_000 + i as u64 * 977;
        db.evidence.newest_rows = Some(250_000 + i as u64);
        db.evidence.newest_tables = Some(40);
        db.evidence.newest_verified_backup_at = Some(now - chrono::Duration::hours(25));
        db.last_verification = Some(super::state::Verification { at: now, ok: true, error: None });
        db.evidence.history = (0..super::evidence::HISTORY)
            .map(|k| Point {
                bytes: 10_000_000 + (k * 1013 % 5_000) as u64,
                rows: Some(250_000 + k as u64 * 17),
                seconds: Some(3.0 + (k % 5) as f64 / 10.0),
                bad: k == 17,
            })
            .collect();
        if i % 10 == 3 {
            db.last_attempt = Some(super::state::Attempt {
                at: now,
                ok: false,
                error: Some("pg_dump: connection refused".into()),
                duration_seconds: 1.0,
                size_bytes: 0,
            });
        }
    }
    s
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

    #[test]
    fn the_fleet_table_comes_first_worst_first_and_links_to_each_card() {
        let now = Utc::now();
        let html = render(&sample_fleet(20, now), now);
        let table = html.find("<table>").unwrap();
        assert!(table < html.find("<section").unwrap(), "the table before the cards");
        let states: Vec<&str> = html[table..html.find("</table>").unwrap()]
            .split("<td class=\"")
            .skip(1)
            .map(|r| r.split('"').next().unwrap())
            .collect();
        assert_eq!(states.len(), 20);
        assert_eq!(&states[..2], ["failed", "failed"], "{states:?}");
        assert!(states[2..].iter().all(|s| *s == "ok"), "{states:?}");
        // Every row's link has its card.
        for link in html.split("<a href=\"#").skip(1).map(|r| r.split('"').next().unwrap()) {
            assert!(html.contains(&format!("<section id=\"{link}\"")), "{link}");
        }
        assert!(html.contains("connection refused"), "{html}");
    }

    #[test]
    fn charts_start_at_zero_and_say_their_range() {
        let points: Vec<Point> = (0..3).map(|_| Point { bytes: 0, rows: None, seconds: None, bad: false }).collect();
        let mut out = String::new();
        spark(&mut out, "Size", &[Some(1_000_000.0), Some(999_990.0), Some(1_000_000.0)], Unit::Bytes, &points);
        let d = out.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        // Ten bytes of a megabyte: a flat line (the old axis ran from min to max: a full-height dip).
        assert_eq!(d, "M2,2h58h58", "{out}");
        assert!(out.contains("(axis from 0)") && out.contains("all 976.6 KiB"), "{out}");
        let mut out = String::new();
        spark(&mut out, "Rows", &[Some(10.0), Some(20.0)], Unit::Count, &points);
        assert!(out.contains("Rows of the last 2 backups: 10 to 20 (axis from 0)"), "{out}");
        // Half the largest value is drawn half-way up.
        assert!(out.contains("d=\"M2,15l116,-13\""), "{out}");
        assert_eq!(chart_y(0.0, 0.0), CHART.1 - 2.0, "all zero: the baseline");
        let mut out = String::new();
        spark(&mut out, "Dump duration", &[Some(0.04), Some(0.12)], Unit::Seconds, &points);
        assert!(out.contains("Dump duration of the last 2 backups: 0.0s to 0.1s"), "{out}");
    }

    #[test]
    fn a_page_of_two_hundred_databases_stays_light() {
        let now = Utc::now();
        let html = render(&sample_fleet(200, now), now);
        // Measured (docs/OPERATIONS.md, status page): 405 KB, 2 KB a database, gzipped a tenth.
        let zipped = super::super::gzip::compress(&html).unwrap().len();
        assert!(html.len() < 450 * 1024 && zipped < 60 * 1024, "{} bytes, {zipped} gzipped", html.len());
        println!("status page, 200 databases x 60 backups: {} bytes, {zipped} gzipped", html.len());
    }
}
