//! What `--check` says about each `PITR_SERVERS` server: what continuous archiving needs
//! there and what to change — `wal_level`, a replication connection (a `replication` line in
//! pg_hba and the role's attribute, proven by `IDENTIFY_SYSTEM`), a free WAL sender and slot,
//! `max_slot_wal_keep_size` (the server-side guard we recommend), `summarize_wal` for
//! incrementals on 17+, extra tablespaces (refused), and the WAL it writes per day (the
//! archive's growth). Reads only; never changes the server.

use serde::Deserialize;

use crate::config::pitr::PitrServer;
use crate::engine::postgres::PostgresEngine;
use crate::model::finding::Finding;
use crate::system::cancel::Cancel;

/// The server facts, in one query.
const FACTS: &str = "SELECT json_build_object(\
    'version', current_setting('server_version_num')::int, \
    'wal_level', current_setting('wal_level'), \
    'max_wal_senders', current_setting('max_wal_senders')::int, \
    'senders', (SELECT count(*) FROM pg_stat_replication), \
    'max_slots', current_setting('max_replication_slots')::int, \
    'slots', (SELECT count(*) FROM pg_replication_slots), \
    'keep', current_setting('max_slot_wal_keep_size'), \
    'summarize_wal', current_setting('summarize_wal', true), \
    'tablespaces', (SELECT coalesce(json_agg(spcname ORDER BY spcname), '[]') FROM pg_tablespace \
                    WHERE spcname NOT IN ('pg_default', 'pg_global')), \
    'replication_role', (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = $1))";

/// WAL written since the statistics were reset, and the seconds since then (14+: `pg_stat_wal`).
const WAL_PER_DAY: &str = "SELECT wal_bytes || '|' || round(extract(epoch FROM now() - stats_reset)) FROM pg_stat_wal";

/// Less than this since the statistics were reset says too little about a day.
const MIN_OBSERVED_SECONDS: f64 = 3600.0;

/// The archive's growth from `bytes|seconds`.
fn per_day(answer: &str) -> String {
    let mut parts = answer.trim().split('|').map(|p| p.parse::<f64>().unwrap_or(0.0));
    let (bytes, seconds) = (parts.next().unwrap_or(0.0), parts.next().unwrap_or(0.0));
    if seconds < MIN_OBSERVED_SECONDS {
        return format!(
            "too early to tell: the WAL statistics were reset {} ago",
            crate::model::human::age(std::time::Duration::from_secs_f64(seconds.max(0.0)))
        );
    }
    format!(
        "about {} of WAL a day (since the statistics were reset), before compression",
        crate::model::human::bytes((bytes / seconds * 86_400.0) as u64)
    )
}

#[derive(Debug, Deserialize)]
struct Facts {
    version: u32,
    wal_level: String,
    max_wal_senders: i64,
    senders: i64,
    max_slots: i64,
    slots: i64,
    keep: String,
    summarize_wal: Option<String>,
    tablespaces: Vec<String>,
    replication_role: Option<bool>,
}

/// The findings for one server.
pub fn check(engine: &PostgresEngine, server: &PitrServer, cancel: &Cancel) -> Vec<Finding> {
    let t = server.name();
    let mut out = vec![Finding::pass(
        "pitr",
        &t,
        "the daemon keeps this server's archive (WAL streamed, base backups, gaps reported, PITR drills); a -1 run, \
         a CronJob or an Indexed Job does not: run the daemon (the DeploymentConfig or Deployment) for it",
    )];
    let sql_conn = match server.sql_conn() {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::fail("pitr connect", &t, format!("{e:#}"), "set the server's user and password"));
            return out;
        }
    };
    let replication_conn = server.replication_conn();
    let role = replication_conn.as_ref().ok().and_then(|c| c.user.clone()).unwrap_or_default();
    let sql = FACTS.replace("$1", &crate::engine::postgres::quote_literal(&role));
    let facts = match engine
        .query(&sql_conn, "postgres", &sql, cancel)
        .and_then(|j| Ok(serde_json::from_str::<Facts>(j.trim())?))
    {
        Ok(f) => f,
        Err(e) => {
            let fix = "check the host, port, user and password (docs/CONFIG.md#credentials)";
            out.push(Finding::fail("pitr connect", &t, format!("{e:#}"), fix));
            return out;
        }
    };
    out.extend(judge(&facts, &role, &t));
    out.push(match replication_conn.and_then(|c| engine.identify_system(&c, cancel)) {
        Ok(id) => Finding::pass("pitr replication", &t, format!("a replication connection as {role} works ({id})")),
        Err(e) => Finding::fail(
            "pitr replication",
            &t,
            format!("a replication connection as {role} was refused: {e:#}"),
            format!(
                "add `host replication {role} <the pod network> scram-sha-256` to pg_hba.conf and reload; \
                 the role needs REPLICATION (or set <HOST>_REPLICATION_USER/_PASSWORD to one that has it)"
            ),
        ),
    });
    out.push(if facts.version >= 140_000 {
        match engine.query(&sql_conn, "postgres", WAL_PER_DAY, cancel) {
            Ok(answer) => Finding::pass("pitr archive size", &t, per_day(&answer)),
            Err(e) => Finding::warn("pitr archive size", &t, format!("unknown: {e:#}"), "grant pg_monitor to see it"),
        }
    } else {
        Finding::pass("pitr archive size", &t, "unknown on PostgreSQL 13 (no pg_stat_wal)")
    });
    out
}

/// The findings the facts alone decide (pure).
fn judge(f: &Facts, role: &str, t: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match f.wal_level.as_str() {
        "replica" | "logical" => Finding::pass("pitr wal_level", t, format!("wal_level = {}", f.wal_level)),
        other => Finding::fail(
            "pitr wal_level",
            t,
            format!("wal_level = {other}: the WAL cannot rebuild the cluster"),
            "ALTER SYSTEM SET wal_level = replica; then restart the server",
        ),
    });
    out.push(match f.replication_role {
        Some(true) => Finding::pass("pitr role", t, format!("{role} may replicate")),
        Some(false) => Finding::fail(
            "pitr role",
            t,
            format!("{role} has no REPLICATION attribute"),
            format!("ALTER ROLE {role} REPLICATION; or set <HOST>_REPLICATION_USER/_PASSWORD to a role that has it"),
        ),
        None => Finding::fail("pitr role", t, format!("role {role:?} does not exist"), "set the replication user"),
    });
    // One of each the archive needs, free.
    let room = |check: &str, used: i64, max: i64, what: &str, setting: &str| {
        if used < max {
            Finding::pass(check, t, format!("{used} of {max} {what} in use"))
        } else {
            Finding::fail(
                check,
                t,
                format!("all {max} {what} are in use"),
                format!("raise {setting} by one for the archive (a restart)"),
            )
        }
    };
    out.push(room("pitr wal sender", f.senders, f.max_wal_senders, "WAL senders", "max_wal_senders"));
    out.push(room("pitr slot", f.slots, f.max_slots, "replication slots", "max_replication_slots"));
    out.push(if f.keep == "-1" {
        Finding::warn(
            "pitr slot guard",
            t,
            "max_slot_wal_keep_size = -1: a stalled archive's slot could hold WAL until the server's disk is full",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB' (sized for your disk); SELECT pg_reload_conf()",
        )
    } else {
        Finding::pass("pitr slot guard", t, format!("max_slot_wal_keep_size = {}", f.keep))
    });
    out.push(match (f.version >= 170_000, f.summarize_wal.as_deref()) {
        (false, _) => Finding::pass("pitr incrementals", t, "before PostgreSQL 17: full base backups only"),
        (true, Some("on")) => Finding::pass("pitr incrementals", t, "summarize_wal = on: incremental base backups"),
        (true, _) => Finding::warn(
            "pitr incrementals",
            t,
            "summarize_wal = off: every base backup will be a full one",
            "ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf()",
        ),
    });
    if !f.tablespaces.is_empty() {
        out.push(Finding::fail(
            "pitr tablespaces",
            t,
            format!("extra tablespaces ({}): base backups of such clusters are refused", f.tablespaces.join(", ")),
            "keep the nightly dumps for this server (they cover every tablespace)",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finding::Status;

    fn facts() -> Facts {
        Facts {
            version: 170_002,
            wal_level: "replica".into(),
            max_wal_senders: 10,
            senders: 1,
            max_slots: 10,
            slots: 0,
            keep: "10240MB".into(),
            summarize_wal: Some("on".into()),
            tablespaces: vec![],
            replication_role: Some(true),
        }
    }

    fn statuses(f: &Facts) -> Vec<(String, Status)> {
        judge(f, "archiver", "db:5432").into_iter().map(|f| (f.check, f.status)).collect()
    }

    #[test]
    fn a_ready_server_passes_and_each_lack_is_named() {
        assert!(statuses(&facts()).iter().all(|(_, s)| *s == Status::Pass), "{:?}", statuses(&facts()));
        type Case = (fn(&mut Facts), &'static str, Status);
        let cases: [Case; 7] = [
            (|f| f.wal_level = "minimal".into(), "pitr wal_level", Status::Fail),
            (|f| f.replication_role = Some(false), "pitr role", Status::Fail),
            (|f| f.senders = 10, "pitr wal sender", Status::Fail),
            (|f| f.slots = 10, "pitr slot", Status::Fail),
            (|f| f.keep = "-1".into(), "pitr slot guard", Status::Warn),
            (|f| f.summarize_wal = Some("off".into()), "pitr incrementals", Status::Warn),
            (|f| f.tablespaces = vec!["fast".into()], "pitr tablespaces", Status::Fail),
        ];
        for (change, check, status) in cases {
            let mut f = facts();
            change(&mut f);
            let found = statuses(&f);
            assert!(found.contains(&(check.to_string(), status)), "{check}: {found:?}");
            assert_eq!(found.iter().filter(|(_, s)| *s != Status::Pass).count(), 1, "only {check}: {found:?}");
        }
        assert_eq!(
            per_day("8589934592|86400"),
            "about 8.0 GiB of WAL a day (since the statistics were reset), before compression"
        );
        assert!(per_day("1000|20").starts_with("too early to tell"), "{}", per_day("1000|20"));
        // Before 17 no summarize_wal is needed.
        let mut f = facts();
        (f.version, f.summarize_wal) = (150_010, None);
        assert!(statuses(&f).iter().all(|(_, s)| *s == Status::Pass));
    }
}
