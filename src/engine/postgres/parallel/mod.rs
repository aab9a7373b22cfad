//! Parallel load of a plain PostgreSQL dump (`RESTORE_JOBS` sessions), for restore and
//! verification: the same end state as `psql -f`, faster, from the same `.sql.gz`.
//!
//! `split` reads the stream once and decides what runs where (see its module doc for the
//! order, which is always valid: pre-data, then rows, then index builds and constraints, then
//! partition index attachments, foreign keys and the rest); `wire` runs the sessions in our
//! own process (libpq), `sessions` runs psql sessions instead (`RESTORE_LOADER=psql`).
//! The stream scanner sees every byte, so completeness and row counts are judged exactly as on
//! the serial path. Written by hand: no tool loads a plain dump in parallel (`pg_restore -j`
//! needs a custom or directory archive).

pub mod early;
mod lanes;
mod plan;
mod queue;
mod rows;
mod sessions;
mod split;
mod wire;

use std::io::BufRead;
use std::sync::{Arc, Mutex};

use anyhow::bail;

pub use early::Counted;
use lanes::{Lanes, Piece};
pub use split::Plan;

use super::PostgresEngine;
use crate::engine::RestoreRequest;
use crate::engine::load::{SqlErrors, snapshot};
use crate::model::database::RestoreLoader;
use crate::stream::scan::{Summary, postgres::PgScanner};
use crate::system::cancel::{Cancel, Interrupted};

/// Loads the database section of `input` into `into` with `req.jobs` parallel sessions beside
/// the serial one. `scanner` has seen the `offset` lines before it.
///
/// # Errors
/// The first SQL error (without `-I`), a session that could not run, a read error, a
/// cancellation. The caller judges completeness from the returned summary.
pub fn load(
    engine: &PostgresEngine,
    req: &RestoreRequest,
    into: &str,
    input: &mut dyn BufRead,
    scanner: PgScanner,
    offset: u64,
    cancel: &Cancel,
) -> anyhow::Result<(SqlErrors, Summary, Plan, Option<Counted>)> {
    let tally = Arc::new(Mutex::new(SqlErrors::default()));
    let truncate = truncate_mode(engine, req, into, cancel);
    let (result, counted) = match engine.options.restore_loader {
        RestoreLoader::Psql => {
            let mut lanes = sessions::PsqlLanes::new(
                engine,
                &req.admin,
                into,
                req.ignore_errors,
                req.jobs,
                Arc::clone(&tally),
                cancel,
            );
            (split::Splitter::new(&mut lanes, scanner, offset, truncate).and_then(|s| s.run(input)), None)
        }
        RestoreLoader::Libpq => {
            let workers = if req.jobs > 1 { req.jobs } else { 0 };
            // Rows counted beside the builds (the restore's count check, in parallel loads).
            let early = req.count_check && workers > 0;
            std::thread::scope(|scope| {
                let (to_counter, sent) = std::sync::mpsc::channel();
                let counter = early.then(|| scope.spawn(move || early::count(engine, &req.admin, into, &sent)));
                let mut lanes = wire::WireLanes::new(
                    &req.admin,
                    into,
                    req.ignore_errors,
                    workers,
                    &engine.options,
                    Arc::clone(&tally),
                    cancel,
                );
                if early {
                    lanes.on_data_sent(to_counter);
                }
                // One session and one transaction: the rows skip the WAL (`wal_level=minimal`).
                let one = workers == 0 && req.single_transaction;
                let run = || {
                    if one {
                        lanes.send(0, Piece::Statement(b"BEGIN;\n"), None)?;
                    }
                    let done = split::Splitter::new(&mut lanes, scanner, offset, truncate)?.run(input)?;
                    if one {
                        lanes.send(0, Piece::Statement(b"COMMIT;\n"), None)?;
                        lanes.barrier()?;
                    }
                    Ok(done)
                };
                let result = run();
                if result.is_err() {
                    // The counter's waits end with the lanes.
                    lanes.stop();
                }
                drop(lanes);
                let counted = counter.and_then(|c| c.join().ok().flatten());
                (result, counted)
            })
        }
    };
    let errors = snapshot(&tally);
    match result {
        Ok((summary, plan)) => Ok((errors, summary, plan, counted)),
        Err(e) if cancel.is_cancelled() => Err(e.context(Interrupted)),
        Err(_) if errors.count > 0 && !req.ignore_errors => bail!(
            "the restore stopped at the first SQL error (-I continues past errors): {}",
            errors.first.first().map(String::as_str).unwrap_or_default()
        ),
        Err(e) => Err(e.context("the load stopped before the end of the backup")),
    }
}

/// Which tables load in the transaction that truncates them (`split::Truncate`): every table
/// the dump made, whole, on a throwaway server (`single_transaction`); the first piece of
/// each when the admin is a superuser (who may truncate any table, whoever owns it after the
/// dump's `ALTER ... OWNER TO`); none otherwise, or when that cannot be asked. One session
/// loads nothing in parallel sessions, so it is not asked then.
fn truncate_mode(engine: &PostgresEngine, req: &RestoreRequest, into: &str, cancel: &Cancel) -> split::Truncate {
    if req.single_transaction {
        return split::Truncate::WholeTable;
    }
    if req.jobs < 2 {
        return split::Truncate::Off;
    }
    match engine.query(
        &req.admin,
        into,
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
        cancel,
    ) {
        Ok(answer) if answer.trim() == "t" => split::Truncate::FirstPiece,
        Ok(_) => split::Truncate::Off,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "Could not ask whether the admin is a superuser: tables load without TRUNCATE.");
            split::Truncate::Off
        }
    }
}

#[cfg(test)]
mod tests;
