//! PITR drills: the archive proven by restoring from it. Each drill recovers the newest chain
//! in a throwaway server (`pitr::recover`) — once to the newest archived WAL, once to a random
//! time inside the window — and fails when the archive has an open gap (named), when recovery
//! does not reach its target or consistency, when a database will not connect, when a
//! `count(*)` errors, when `pg_amcheck` (14+, its extension created in the throwaway) finds
//! corruption, or when a table the newest nightly dump before the target holds is missing
//! (`expected`). Each drill is recorded in the archive's index (chain, target, duration,
//! databases, tables, rows); the successful ones since the last failure make the proven
//! window, shown beside the archived one. Named "PITR drill" everywhere, apart from
//! `VERIFY_DRILL`, which re-proves old dumps.

use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::archive::{Store, partial_state};
use super::index::{self, Drill, Event, Index};
use super::layout::Archive;
use super::recover::plan::{self, Chosen, Target};
use super::recover::{self, Sources};
use crate::config::Settings;
use crate::config::pitr::{DrillCounts, PitrServer};
use crate::engine::Conn;
use crate::engine::postgres::PostgresEngine;
use crate::system::cancel::Cancel;

mod expected;

use expected::Table;

/// How many tables one counting query names.
const PER_QUERY: usize = 200;

/// Runs the two drills of `server` (the newest WAL, then a random time in the window), records
/// them, and returns them.
///
/// # Errors
/// The archive cannot be read or its index written; a failed drill is an `Ok` record with
/// `ok: false`.
pub fn run(settings: &Settings, server: &PitrServer, cancel: &Cancel) -> anyhow::Result<Vec<Drill>> {
    let spec = &server.database.spec;
    let archive = Archive::new(&settings.backup_dir, &spec.host, spec.port.unwrap_or(5432));
    if !archive.index().exists() {
        bail!("no archive of {} yet (the daemon keeps it)", server.name());
    }
    // Retention removes nothing while the drills read the archive.
    let _reading = super::retention::reading(&archive)?;
    let store = Store::new(archive, settings.compression, settings.encryption.clone());
    // Read only (no tidying): the nightly dumps of this server's databases, with their tables.
    let dumps =
        crate::catalog::load(&settings.backup_dir).map(|all| expected::dumps_of(&all, spec)).unwrap_or_default();
    let mut out = Vec::new();
    for latest in [true, false] {
        let (index, _) = index::load(&store.archive.index())?;
        let drill = one(settings, &store, &index, &dumps, latest, cancel);
        if !drill.ok && drill.error.as_deref().is_some_and(|e| e.contains("interrupted")) && cancel.is_cancelled() {
            break;
        }
        index::append(&store.archive.index(), &Event::Drill(drill.clone()))?;
        match &drill.error {
            None => {
                info!(server = %server.name(), target = %drill.target, tables = drill.tables, rows = drill.rows, "PITR drill passed.")
            }
            Some(e) => warn!(server = %server.name(), error = %e, "PITR drill FAILED."),
        }
        out.push(drill);
    }
    Ok(out)
}

/// A random moment in `[from, to]`, from the clock's nanoseconds (no need for more chance).
fn somewhere(from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_milliseconds().max(0) as u64;
    let seed = u64::from(Utc::now().timestamp_subsec_nanos()).wrapping_mul(6364136223846793005) >> 11;
    from + chrono::Duration::milliseconds((seed % (span + 1)) as i64)
}

fn one(
    settings: &Settings,
    store: &Store,
    index: &Index,
    dumps: &[expected::Dump],
    latest: bool,
    cancel: &Cancel,
) -> Drill {
    let started = Instant::now();
    let mut drill = Drill { at: Utc::now(), latest, ..Default::default() };
    let result = (|| -> anyhow::Result<()> {
        let partial = partial_state(&store.archive);
        let open: Vec<String> = index.open_and_healed_gaps(partial).0.iter().map(|g| index.describe(g)).collect();
        if !open.is_empty() {
            bail!("the archive has a gap after its newest full base backup: {}", open.join("; "));
        }
        let newest = plan::choose(index, partial, Target::Latest).map_err(|e| anyhow!(e))?;
        let target =
            if latest { Target::Latest } else { Target::Time(somewhere(newest.window.from, newest.window.to)) };
        let chosen = plan::choose(index, partial, target).map_err(|e| anyhow!(e))?;
        let last = chosen.chain.last().cloned().unwrap_or_default();
        (drill.chain, drill.n) = (last.chain, last.n);
        drill.target = match target {
            Target::Latest => newest.window.to,
            Target::Time(t) => t,
        };
        prove(settings, store, index, &chosen, dumps, &mut drill, cancel)
    })();
    drill.duration_seconds = started.elapsed().as_secs_f64();
    drill.ok = result.is_ok();
    drill.error = result.err().map(|e| format!("{e:#}"));
    drill
}

/// Recovers `chosen`, then counts and checks every database of the recovered cluster.
fn prove(
    settings: &Settings,
    store: &Store,
    index: &Index,
    chosen: &Chosen,
    dumps: &[expected::Dump],
    drill: &mut Drill,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let pg = settings.engines.postgres();
    let server =
        recover::recover(settings, Sources { store, mirror: None, index, keys: &settings.keys }, chosen, cancel)?;
    let conn = server.conn();
    // JSON, never lines: a name may hold a newline.
    let sql = "SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database \
               WHERE datallowconn AND NOT datistemplate";
    let databases: Vec<String> = serde_json::from_str(pg.query(&conn, "postgres", sql, cancel)?.trim())
        .context("reading the recovered cluster's databases")?;
    for db in &databases {
        let (tables, rows) = count(pg, &conn, db, settings.pitr.drill_counts, cancel)
            .with_context(|| format!("counting the rows of database {db} in the recovered cluster"))?;
        expected::check(dumps, db, drill.target, &tables)?;
        drill.databases += 1;
        drill.tables += tables.len() as u64;
        drill.rows += rows;
    }
    let major = chosen.chain.last().map_or(0, |b| b.major);
    if major >= 14 {
        drill.amcheck = amcheck(&pg.installed().server_dir_exact(major)?, &conn, cancel)?;
    }
    Ok(())
}

/// The tables of `db` (leaf tables, largest first: quoted, schema, name) and the rows
/// `counts` asks for.
fn count(
    pg: &PostgresEngine,
    conn: &Conn,
    db: &str,
    counts: DrillCounts,
    cancel: &Cancel,
) -> anyhow::Result<(Vec<Table>, u64)> {
    // As JSON: a name may hold a newline or a quote.
    let list = "SELECT coalesce(json_agg(json_build_array(format('%I.%I', n.nspname, c.relname), n.nspname, c.relname) \
                ORDER BY c.relpages DESC, n.nspname, c.relname), '[]') \
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                AND n.nspname NOT LIKE 'pg\\_toast%'";
    let tables: Vec<Table> =
        serde_json::from_str(pg.query(conn, db, list, cancel)?.trim()).context("reading the tables")?;
    let counted = match counts {
        DrillCounts::Full => &tables[..],
        DrillCounts::Sample => &tables[..tables.len().min(20)],
        DrillCounts::Off => &[],
    };
    let mut rows = 0u64;
    for chunk in counted.chunks(PER_QUERY) {
        let parts: Vec<String> = chunk.iter().map(|(t, _, _)| format!("SELECT count(*) AS n FROM {t}")).collect();
        let sql = format!("SELECT coalesce(sum(n), 0)::bigint FROM ({}) counted", parts.join(" UNION ALL "));
        let answer = pg.query(conn, db, &sql, cancel)?;
        rows += answer.trim().parse::<u64>().map_err(|_| anyhow!("unexpected count {:?}", answer.trim()))?;
    }
    Ok((tables, rows))
}

/// `pg_amcheck --all --install-missing` of the recovered cluster; `false` when the major's
/// programs have no `pg_amcheck`.
///
/// # Errors
/// It found corruption or could not run (its output quoted).
fn amcheck(bin: &std::path::Path, conn: &Conn, cancel: &Cancel) -> anyhow::Result<bool> {
    let program = bin.join("pg_amcheck");
    if !program.exists() {
        return Ok(false);
    }
    cancel.check()?;
    let mut cmd = std::process::Command::new(&program);
    cmd.arg("-h").arg(&conn.host).args(["-p", &conn.port.unwrap_or(5432).to_string()]);
    cmd.args(["-U", conn.user.as_deref().unwrap_or("postgres"), "-w", "--all", "--install-missing"]);
    crate::engine::postgres::libpq_environment(&mut cmd, conn, 30);
    let out = cmd.output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        bail!(
            "pg_amcheck found problems in the recovered cluster: {}",
            text.trim().lines().take(10).collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(true)
}
