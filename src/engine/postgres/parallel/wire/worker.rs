//! One lane's thread: its libpq session runs what the splitter sent, in order — statements,
//! COPY rows, a COPY's end (its reply, `COPY n`, kept for the row counts), the waits for other
//! lanes — and counts or stops on errors as psql's `ON_ERROR_STOP` would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;

use super::super::lanes::{Progress, Replies, add_reply};
use super::super::queue::{Entry, Queue};
use super::{Msg, OPTIONS};
use crate::engine::Conn;
use crate::engine::load::SharedErrors;
use crate::engine::postgres::pq::{Outcome, PgError, Session};
use crate::system::cancel::{Cancel, Interrupted};

/// One lane's thread.
pub(super) struct Worker {
    pub(super) admin: Conn,
    pub(super) database: String,
    pub(super) timeout: u32,
    pub(super) ignore_errors: bool,
    pub(super) tally: SharedErrors,
    pub(super) cancel: Cancel,
    pub(super) done: Arc<Progress>,
    pub(super) queued: Arc<AtomicU64>,
    pub(super) replies: Replies,
}

/// The COPY a lane is in: its table, its statement's file line, its first row's, and whether
/// it failed.
struct Copying {
    table: Vec<u8>,
    statement_line: Option<u64>,
    first_row: Option<u64>,
    failed: bool,
}

impl Worker {
    pub(super) fn run(&self, rx: &Queue<Msg>) -> anyhow::Result<()> {
        let mut session = Session::connect(&self.admin, &self.database, OPTIONS, self.timeout)?;
        // A cancellation (the caller's, or a sibling lane's failure) cancels what runs here.
        let _watch = session.watch(&self.cancel);
        let mut copying: Option<Copying> = None;
        while let Some(entry) = rx.recv()? {
            let msg = match entry {
                Entry::Message(msg, _) => msg,
                Entry::Rows(rows, line) => {
                    self.rows(&mut session, copying.as_mut(), &rows, line);
                    continue;
                }
            };
            match msg {
                Msg::Statement(sql, line) => {
                    self.queued.fetch_sub(sql.len() as u64, Ordering::Relaxed);
                    match session.exec(&sql) {
                        Ok(Outcome::CopyIn) => {
                            let table = super::super::plan::copy_target(&sql).to_vec();
                            copying = Some(Copying { table, statement_line: line, first_row: None, failed: false })
                        }
                        Ok(Outcome::Done) => {}
                        Err(e) => self.failed(line, &e)?,
                    }
                }
                Msg::CopyEnd => {
                    if let Some(c) = copying.take() {
                        let ended = session.copy_end();
                        // A failed COPY, or a reply without its rows: the table is counted.
                        add_reply(&self.replies, &c.table, ended.as_ref().ok().copied().flatten());
                        if let Err(e) = ended {
                            self.failed(row_line(&c, &e), &e)?;
                        }
                    }
                }
                Msg::Unit => self.done.advance(),
                Msg::After(other, unit) => other.wait(unit, &self.cancel)?,
                Msg::Sync(ack) => {
                    let _ = ack.send(());
                }
            }
        }
        Ok(())
    }

    fn rows(&self, session: &mut Session, copying: Option<&mut Copying>, rows: &[u8], line: Option<u64>) {
        self.queued.fetch_sub(rows.len() as u64, Ordering::Relaxed);
        if let Some(c) = copying {
            c.first_row = c.first_row.or(line);
            // A failed COPY takes no more rows; its end tells why.
            if !c.failed && session.copy_rows(rows).is_err() {
                c.failed = true;
            }
        }
    }

    /// Counts the error; stops the lane unless `-I` (or the connection is gone).
    fn failed(&self, line: Option<u64>, e: &PgError) -> anyhow::Result<()> {
        if self.cancel.is_cancelled() && e.sqlstate == "57014" {
            return Err(Interrupted.into());
        }
        if let Ok(mut t) = self.tally.lock() {
            t.record(line, &e.lines());
        }
        if self.ignore_errors && e.severity != "FATAL" {
            return Ok(());
        }
        bail!("{}{e}", line.map(|n| format!("line {n}: ")).unwrap_or_default())
    }
}

/// The file line of the row a COPY error names (`COPY t, line N`, counted from the first row
/// this session was sent), else the COPY statement's.
fn row_line(c: &Copying, e: &PgError) -> Option<u64> {
    let n = e.context.as_deref().and_then(|ctx| {
        let rest = ctx.strip_prefix("COPY ")?;
        let after = &rest[rest.find(", line ")? + ", line ".len()..];
        after.split(|ch: char| !ch.is_ascii_digit()).next()?.parse::<u64>().ok()
    });
    match (n, c.first_row) {
        (Some(n), Some(first)) if n > 0 => Some(first + n - 1),
        _ => c.statement_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_error_names_the_row_it_was_on() {
        let c = Copying { table: b"public.a".to_vec(), statement_line: Some(100), first_row: Some(101), failed: true };
        let mut e = PgError { context: Some("COPY a, line 3, column id: \"x\"".into()), ..PgError::default() };
        assert_eq!(row_line(&c, &e), Some(103));
        e.context = Some("KOPIE a, Zeile 3".into());
        assert_eq!(row_line(&c, &e), Some(100), "a context not understood: the COPY statement's line");
        e.context = None;
        assert_eq!(row_line(&c, &e), Some(100));
    }
}
