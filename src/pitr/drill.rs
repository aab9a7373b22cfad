//! PITR drills: the archive proven by restoring from it. Each drill recovers the newest chain
//! in a throwaway server (`pitr::recover`) — once to the newest archived WAL, once to a random
//! time inside the window — and fails when the archive has an open gap (named), when recovery
//! does not reach its target or consistency, when a database will not connect, when a
//! `count(*)` errors, or when `pg_amcheck` (14+, its extension created in the throwaway) finds
//! corruption. Each drill is recorded in the archive's index (chain, target, duration,
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
use crate::engine::postgres::PostgresEngine;
use crate::engine::{Conn, ServerOptions};
use crate::model::spec::EngineKind;
use crate::system::cancel::Cancel;

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
    let mut out = Vec::new();
    for latest in [true, false] {
        let (index, _) = index::load(&store.archive.index())?;
        let drill = one(settings, &store, &index, latest, cancel);
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

fn one(settings: &Settings, store: &Store, index: &Index, latest: bool, cancel: &Cancel) -> Drill {
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
        prove(settings, store, index, &chosen, &mut drill, cancel)
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
    drill: &mut Drill,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let engine = settings.engines.get(&EngineKind::Postgres).ok_or_else(|| anyhow!("no PostgreSQL engine"))?;
    let pg = settings.engines.postgres();
    let opts = ServerOptions {
        work_dir: settings.restore.verify_dir.clone(),
        start_timeout: settings.server_timeout,
        settings: settings.restore.verify_server_options.clone(),
    };
    let tools = |major: u32| -> anyhow::Result<std::path::PathBuf> {
        match pg.installed().server_dir(Some(major))? {
            (dir, m) if m == major => Ok(dir),
            (_, m) => Err(anyhow!("PostgreSQL {major}'s programs are needed (found {m})")),
        }
    };
    let sources = Sources { store, index, keys: &settings.keys };
    let server = recover::recover(engine, &tools, sources, chosen, &opts, cancel)?;
    let conn = server.conn();
    let databases = pg.query(
        &conn,
        "postgres",
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        cancel,
    )?;
    for db in databases.lines().map(str::trim).filter(|d| !d.is_empty()) {
        let (tables, rows) = count(pg, &conn, db, settings.pitr.drill_counts, cancel)
            .with_context(|| format!("counting the rows of database {db} in the recovered cluster"))?;
        drill.databases += 1;
        drill.tables += tables;
        drill.rows += rows;
    }
    let major = chosen.chain.last().map_or(0, |b| b.major);
    if major >= 14 {
        drill.amcheck = amcheck(&tools(major)?, &conn, cancel)?;
    }
    Ok(())
}

/// The tables of `db` (leaf tables, largest first) and the rows `counts` asks for.
fn count(
    pg: &PostgresEngine,
    conn: &Conn,
    db: &str,
    counts: DrillCounts,
    cancel: &Cancel,
) -> anyhow::Result<(u64, u64)> {
    let list = "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY c.relpages DESC, 1";
    let tables: Vec<String> =
        pg.query(conn, db, list, cancel)?.lines().map(str::to_string).filter(|t| !t.is_empty()).collect();
    let counted: &[String] = match counts {
        DrillCounts::Full => &tables,
        DrillCounts::Sample => &tables[..tables.len().min(20)],
        DrillCounts::Off => &[],
    };
    let mut rows = 0u64;
    for chunk in counted.chunks(PER_QUERY) {
        let parts: Vec<String> = chunk.iter().map(|t| format!("SELECT count(*) AS n FROM {t}")).collect();
        let sql = format!("SELECT coalesce(sum(n), 0)::bigint FROM ({}) counted", parts.join(" UNION ALL "));
        let answer = pg.query(conn, db, &sql, cancel)?;
        rows += answer.trim().parse::<u64>().map_err(|_| anyhow!("unexpected count {:?}", answer.trim()))?;
    }
    Ok((tables.len() as u64, rows))
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
    for var in ["PGSERVICE", "PGDATABASE", "PGHOST", "PGPORT", "PGOPTIONS", "PGPASSWORD"] {
        cmd.env_remove(var);
    }
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
