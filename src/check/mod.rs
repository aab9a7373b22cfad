//! `--check`: every check that can run without writing a backup, as one table of findings.
//! Per database (concurrently, a bounded number at a time): the engine's preflight
//! (connect, client version, privileges, roles) and the space a backup needs against the free
//! space in `BACKUP_DIR`. Once (`site`): the backup folder, verification, every mirror (a probe
//! object written, read back and deleted), the notifiers, hooks and schedules.
//! The caller prints; the daemon runs it at start beside the health listener.

mod site;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::engine;
use crate::model::finding::{Finding, Status};
use crate::model::human;
use crate::notify::Notifiers;
use crate::system::cancel::Cancel;

/// How many databases are checked at once.
const CONCURRENCY: usize = 8;
/// How long one database's checks may take before its commands are stopped.
const DATABASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Compressed backup size ÷ database size on the server when no backup exists yet: plain SQL
/// with gzip is usually 10–30% of what the database occupies (indexes are not dumped); the
/// high end, so the estimate errs on the side of "not enough room".
pub const SIZE_RATIO: f64 = 0.3;

/// What `--check` was asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--notify`: send a real test message through every notifier.
    pub notify: bool,
}

/// Runs every check.
pub fn run(settings: &Settings, notifiers: &Notifiers, opts: Options, cancel: &Cancel) -> Vec<Finding> {
    // Read only: a check changes nothing (the tidy work is a backup run's).
    let backups = catalog::load(&settings.backup_dir).unwrap_or_default();
    let free = site::free_bytes(&settings.backup_dir);
    // `*` specs expanded (and the shard applied) first: each database is then checked as if
    // it had its own line.
    let fleet = crate::fleet::resolve(settings, cancel);
    let mut out = fleet_findings(settings, &fleet);
    out.extend(coverage_findings(settings, cancel));
    let per_db = databases(settings, &fleet.databases, &backups, free, cancel);
    let largest = per_db.iter().filter_map(|(_, bytes)| *bytes).max();
    out.extend(one_client_line_per_server(per_db.into_iter().flat_map(|(f, _)| f).collect()));
    out.extend(site::checks(settings, notifiers, opts, largest, cancel));
    for server in &settings.pitr.servers {
        out.extend(crate::pitr::preflight::check(settings.engines.postgres(), server, cancel));
    }
    out
}

/// The server/client pair is the same for every database of one server (a `host/*` line
/// expands to many): one line per server and pair, where the target names the server and how
/// many databases it covers. Other findings stay per database.
fn one_client_line_per_server(findings: Vec<Finding>) -> Vec<Finding> {
    const CHECK: &str = "client version";
    let server = |target: &str| target.rsplit_once('/').map_or(target, |(s, _)| s).to_string();
    let mut out: Vec<Finding> = Vec::new();
    // Per merged line: its index in `out`, its server, how many databases it covers.
    let mut merged: Vec<(usize, String, usize)> = Vec::new();
    for f in findings {
        if f.check != CHECK {
            out.push(f);
            continue;
        }
        let here = server(&f.target);
        let same =
            merged.iter_mut().find(|(i, s, _)| *s == here && out[*i].status == f.status && out[*i].detail == f.detail);
        match same {
            Some((i, s, n)) => {
                *n += 1;
                out[*i].target = format!("{s} ({n} databases)");
            }
            None => {
                merged.push((out.len(), here, 1));
                out.push(f);
            }
        }
    }
    out
}

/// Whether any finding fails.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Fail)
}

/// One database's findings and its size on the server.
type DatabaseChecks = (Vec<Finding>, Option<u64>);

/// Each database's findings and its size on the server, in configuration order.
fn databases(
    settings: &Settings,
    dbs: &[crate::model::database::Database],
    backups: &[BackupFile],
    free: Option<u64>,
    cancel: &Cancel,
) -> Vec<DatabaseChecks> {
    let results: Mutex<Vec<Option<DatabaseChecks>>> = Mutex::new(vec![None; dbs.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY.min(dbs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(db) = dbs.get(i) else { break };
                    let result = one_database(settings, db, backups, free, cancel);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

fn one_database(
    settings: &Settings,
    db: &crate::model::database::Database,
    backups: &[BackupFile],
    free: Option<u64>,
    cancel: &Cancel,
) -> DatabaseChecks {
    let target = db.spec.to_string();
    let Some(engine) = settings.engines.get(&db.spec.engine) else {
        let f =
            Finding::fail("engine", &target, "no engine for this database kind in this build", "use an image with it");
        return (vec![f], None);
    };
    let (pre, timed_out) = with_deadline(cancel, DATABASE_TIMEOUT, |token| engine.preflight(db, token));
    let mut findings = pre.findings;
    findings.extend(sql_hooks(settings, engine, db, cancel));
    if timed_out {
        findings.push(Finding::fail(
            "timeout",
            &target,
            format!("the checks did not finish within {} s; their commands were stopped", DATABASE_TIMEOUT.as_secs()),
            "a backup would likely hang the same way: look for locks or a slow server",
        ));
    }
    let core = db.spec.core_name();
    let last = backups
        .iter()
        .filter(|b| b.core == core && !b.in_progress && !b.known_incomplete())
        .max_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let estimate = match (last, pre.database_bytes) {
        (Some(b), _) => Some((b.size, format!("the last backup's size, {}", human::bytes(b.size)))),
        (None, Some(d)) => {
            let e = (d as f64 * SIZE_RATIO) as u64;
            Some((e, format!("{} × {SIZE_RATIO} of the database's {}", human::bytes(e), human::bytes(d))))
        }
        (None, None) => None,
    };
    match (estimate, free) {
        (Some((need, how)), Some(free)) if need > free => findings.push(Finding::fail(
            "space",
            &target,
            format!(
                "a backup needs about {} ({how}); {} free in {}",
                human::bytes(need),
                human::bytes(free),
                settings.backup_dir.display()
            ),
            "free space or grow the backup volume; lower the retention counts",
        )),
        (Some((need, how)), Some(free)) => findings.push(Finding::pass(
            "space",
            &target,
            format!("about {} needed ({how}), {} free", human::bytes(need), human::bytes(free)),
        )),
        _ => findings.push(Finding::info("space", &target, "no estimate (no backup yet and the size is unknown)")),
    }
    (findings, pre.database_bytes)
}

/// What each `*` spec expands to (or why it cannot be listed), and the shard.
fn fleet_findings(settings: &Settings, fleet: &crate::fleet::Fleet) -> Vec<Finding> {
    let mut out = Vec::new();
    for (spec, why) in &fleet.unlisted {
        out.push(Finding::fail(
            "fleet",
            &spec.to_string(),
            format!("cannot list its databases: {why}"),
            "check the server and the user's rights",
        ));
    }
    for (spec, why) in &fleet.unrepresentable {
        out.push(Finding::fail(
            "fleet",
            &spec.to_string(),
            format!("cannot be backed up under its name: {why}"),
            "rename it or exclude it",
        ));
    }
    for all in settings.databases.iter().filter(|d| d.spec.database == crate::fleet::ALL) {
        if fleet.unlisted.iter().any(|(s, _)| *s == all.spec) {
            continue;
        }
        let names: Vec<String> = fleet
            .databases
            .iter()
            .filter(|d| {
                d.spec.host == all.spec.host && d.spec.port == all.spec.port && d.spec.engine == all.spec.engine
            })
            .map(|d| crate::model::safe_name::printable(&d.spec.database).into_owned())
            .collect();
        let shown = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        let more = if names.len() > 10 { format!(" and {} more", names.len() - 10) } else { String::new() };
        out.push(Finding::info("fleet", &all.spec.to_string(), format!("{} databases: {shown}{more}", names.len())));
    }
    if let Some(shard) = settings.shard {
        out.push(Finding::info(
            "fleet",
            "shard",
            format!("{shard}: {} databases in this shard", fleet.databases.len()),
        ));
    }
    out
}

/// The coverage audit: databases on a configured server that no line covers.
fn coverage_findings(settings: &Settings, cancel: &Cancel) -> Vec<Finding> {
    crate::fleet::audit(settings, cancel)
        .into_iter()
        .map(|c| match (&c.error, c.uncovered.len()) {
            (Some(e), _) => Finding::warn(
                "coverage",
                &c.server,
                format!("cannot list its databases: {e}"),
                "check the user's rights",
            ),
            (None, 0) => Finding::pass("coverage", &c.server, "every database on the server has a line"),
            (None, n) => Finding::warn(
                "coverage",
                &c.server,
                format!("{n} database(s) no line covers: {}", c.uncovered.join(", ")),
                "add a line for each, a host/* line, or BACKUP_EXCLUDE_DATABASES",
            ),
        })
        .collect()
}

/// Each SQL hook that runs for `db`, checked there without running it.
fn sql_hooks(
    settings: &Settings,
    engine: &dyn engine::Engine,
    db: &crate::model::database::Database,
    cancel: &Cancel,
) -> Vec<Finding> {
    settings
        .hooks
        .0
        .iter()
        .filter(|h| crate::backup::hooks::applies(h, Some(db)))
        .filter_map(|h| match &h.action {
            crate::config::hooks::Action::Sql(sql) => Some((h, sql)),
            crate::config::hooks::Action::Command(_) => None,
        })
        .map(|(h, sql)| {
            let t = format!("hook {} in {}", h.name, db.spec);
            match engine.check_sql(db, sql, cancel) {
                Ok(Some(what)) => Finding::pass("hook", &t, what),
                Ok(None) => Finding::info("hook", &t, "SQL hooks are not checked for this engine"),
                Err(e) => {
                    Finding::fail("hook", &t, format!("{e:#}"), "fix the hook's SQL (it would fail at its phase)")
                }
            }
        })
        .collect()
}

/// Runs `f` with a token that is cancelled (its child processes stopped) with `parent`, or
/// after `limit`; says whether the limit was hit.
fn with_deadline<T>(parent: &Cancel, limit: std::time::Duration, f: impl FnOnce(&Cancel) -> T) -> (T, bool) {
    let token = parent.child();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let token_ref = &token;
        let watch = scope.spawn(move || {
            let late = matches!(finished.recv_timeout(limit), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
            if late {
                token_ref.cancel();
            }
            late
        });
        let r = f(&token);
        let _ = done.send(());
        (r, watch.join().unwrap_or(false))
    })
}

#[cfg(test)]
mod tests {
    use super::one_client_line_per_server;
    use crate::model::finding::Finding;

    #[test]
    fn the_client_pair_is_said_once_per_server() {
        let pair = |db: &str| Finding::pass("client version", db, "server 15 → pg_dump 15");
        let findings = vec![
            pair("db:5432/a"),
            Finding::pass("privileges", "db:5432/a", "ok"),
            pair("db:5432/b"),
            Finding::pass("privileges", "db:5432/b", "ok"),
            pair("db:5432/c"),
            pair("other:5432/x"),
            Finding::fail("client version", "db:5432/d", "no pg_dump", "install"),
        ];
        let out = one_client_line_per_server(findings);
        let lines: Vec<(String, String)> = out.iter().map(|f| (f.check.clone(), f.target.clone())).collect();
        assert_eq!(
            lines,
            [
                ("client version".into(), "db:5432 (3 databases)".into()),
                ("privileges".into(), "db:5432/a".into()),
                ("privileges".into(), "db:5432/b".into()),
                ("client version".into(), "other:5432/x".into()),
                ("client version".into(), "db:5432/d".into()),
            ]
        );
    }

    use super::*;

    #[test]
    fn a_deadline_cancels_the_token_and_says_so() {
        let parent = Cancel::new();
        let (waited, late) = with_deadline(&parent, std::time::Duration::from_millis(300), |t| {
            let start = std::time::Instant::now();
            while !t.is_cancelled() && start.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            start.elapsed()
        });
        assert!(late && waited < std::time::Duration::from_secs(2), "{waited:?}");
        let (v, late) = with_deadline(&parent, std::time::Duration::from_secs(5), |_| 7);
        assert_eq!((v, late), (7, false));
    }
}
