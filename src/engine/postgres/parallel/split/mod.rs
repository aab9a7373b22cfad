//! The splitter: reads a plain dump once, as psql would (the stream scanner decides where
//! statements, quotes and COPY data begin and end), and sends each piece to a session.
//!
//! - pre-data runs in the serial session; then every session waits (the tables exist);
//! - each table's rows go to the worker with the least unfinished work, and a table's rows
//!   move to another worker every `SPLIT_BYTES` while its session has no room for more (rows
//!   are independent until post-data; `Lanes::has_room`, the spill queue), while
//!   sequence values and large objects run in the serial session;
//! - post-data: index builds and constraints in parallel as they are read, each as soon as
//!   the sessions that loaded its table's rows have finished them (`Lanes::after`; a table
//!   not known from its COPY lines, or lanes that cannot wait on each other, wait for every
//!   session once); partition index attachments, then foreign keys (in parallel), then
//!   everything else in dump order, from a spool file (bounded memory), each group after the
//!   one before has finished.
//!
//! Session state (`SET ...`, `set_config(...)`) is replayed into each session before the first
//! statement that follows it there; the dump's `\restrict` key goes first into every session,
//! so no session runs a meta-command the dump carries. Anything else the splitter does not
//! know (another meta-command, data after post-data began) makes the rest of the load serial,
//! after everything before it has finished: never a different result from psql.

use std::io::{BufRead, BufWriter};

use anyhow::Context;

mod copy;
mod fresh;
mod order;
mod spool;

use super::lanes::{Lanes, Piece};
use super::plan::{Route, copy_target, expected, header_kind, route, splittable_copy, starts_post_data, state_key};
use super::rows::{keeps_replies, keeps_rows};
use crate::engine::postgres::sections::is_blank;
use crate::stream::scan::{Scanner, Summary, postgres::PgScanner};
use copy::CopyBlock;
use fresh::Fresh;
pub use fresh::Truncate;
use spool::{AFTER, ATTACH, FOREIGN, TAG_SETTING, TAG_STATEMENT, write_record};

/// A table's rows move to another session after this many bytes: no more than a session's
/// queue holds, so that the splitter hands a piece over and moves on instead of waiting for
/// one session while the others are idle.
pub const SPLIT_BYTES: u64 = 4 << 20;
/// Text sent to a session in one piece (smaller pieces at unit ends).
const SEND_BYTES: usize = 256 * 1024;

/// What the parallel load did, for the log and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tables whose rows went to parallel sessions, and the extra pieces big ones were cut in.
    pub tables: u64,
    pub pieces: u64,
    /// Index and constraint builds, and foreign keys, run in parallel.
    pub builds: u64,
    pub foreign_keys: u64,
    /// Why (and from which file line) the rest of the load ran serially, if it did.
    pub serial_from: Option<(u64, String)>,
    /// Every table's rows are final once the data section is in: all of them loaded by COPY in
    /// the parallel sessions, and nothing in post-data that may change rows (`keeps_rows`),
    /// so rows counted then are the end state's.
    pub rows_final_after_data: bool,
    /// Nothing before the data can make a table's rows differ from the server's replies to its
    /// COPYs (`keeps_replies`: no trigger, rule, foreign table or row change in pre-data).
    pub replies_exact: bool,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tables in parallel ({} extra pieces), {} index/constraint builds and {} foreign keys in parallel",
            self.tables, self.pieces, self.builds, self.foreign_keys
        )?;
        if let Some((line, why)) = &self.serial_from {
            write!(f, "; serial from line {line}: {why}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pre,
    Data,
    Post,
    Serial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Lane(usize),
    Spool(usize),
}

/// One setting's statement, with its file line.
type Setting = (String, Vec<u8>, u64);

pub struct Splitter<'a, L: Lanes> {
    lanes: &'a mut L,
    scanner: PgScanner,
    /// The file line of the next line.
    line: u64,
    phase: Phase,
    restrict: Option<Vec<u8>>,
    state: Vec<Setting>,
    /// Per lane: the settings its session has (None: not started since the last barrier).
    synced: Vec<Option<Vec<Setting>>>,
    route: Route,
    /// Statements of the current object so far.
    entry_statements: u32,
    entry_lane: usize,
    /// A worker that has unfinished unit text (ended at the next header).
    open_unit: Option<usize>,
    statement: Vec<u8>,
    /// Offsets in `statement` just past each `;` that ended a statement.
    ends: Vec<usize>,
    statement_line: u64,
    partial: Vec<u8>,
    copy: Option<CopyBlock>,
    spools: Vec<BufWriter<std::fs::File>>,
    post_state: Vec<Setting>,
    out: Vec<u8>,
    plan: Plan,
    /// The tables whose rows load in the transaction that truncates them (`fresh`).
    fresh: Fresh,
    /// Per lane: the units ended there so far.
    units: Vec<u64>,
    /// Each table's COPY pieces: the lane and unit that loaded them (`Lanes::after`).
    loaded: std::collections::HashMap<Vec<u8>, Vec<(usize, u64)>>,
    /// The tables of `loaded`, in dump order.
    loaded_order: Vec<Vec<u8>>,
    /// Rows not known by their table (INSERTs, a COPY in the serial session): builds wait
    /// for every session.
    untracked_data: bool,
    /// Every session has finished the data: builds wait for nothing.
    data_done: bool,
}

impl<'a, L: Lanes> Splitter<'a, L> {
    /// `scanner` has seen what came before (the front sections, `offset` lines).
    pub fn new(lanes: &'a mut L, scanner: PgScanner, offset: u64, truncate: Truncate) -> anyhow::Result<Self> {
        let spools = (0..3)
            .map(|_| tempfile::tempfile().map(BufWriter::new))
            .collect::<std::io::Result<Vec<_>>>()
            .context("creating the spool file for post-data (TMPDIR)")?;
        let lanes_n = lanes.workers() + 1;
        Ok(Splitter {
            lanes,
            scanner,
            line: offset + 1,
            phase: Phase::Pre,
            restrict: None,
            state: Vec::new(),
            synced: vec![None; lanes_n],
            route: Route::Serial,
            entry_statements: 0,
            entry_lane: 0,
            open_unit: None,
            statement: Vec::new(),
            ends: Vec::new(),
            statement_line: 0,
            partial: Vec::new(),
            copy: None,
            spools,
            post_state: Vec::new(),
            out: Vec::new(),
            plan: Plan { replies_exact: true, ..Plan::default() },
            fresh: Fresh::new(truncate),
            units: vec![0; lanes_n],
            loaded: std::collections::HashMap::new(),
            loaded_order: Vec::new(),
            untracked_data: false,
            data_done: false,
        })
    }

    /// Loads the whole stream; returns the scanner's summary and what ran where.
    ///
    /// # Errors
    /// A read error, or the first failure of a session.
    pub fn run(mut self, input: &mut dyn BufRead) -> anyhow::Result<(Summary, Plan)> {
        loop {
            let buf = input.fill_buf().context("reading the backup")?;
            if buf.is_empty() {
                break;
            }
            let used = if self.copy.is_some() {
                self.copy_data(buf)?
            } else {
                match memchr::memchr(b'\n', buf) {
                    None => {
                        self.partial.extend_from_slice(buf);
                        buf.len()
                    }
                    Some(pos) => {
                        let mut line = std::mem::take(&mut self.partial);
                        line.extend_from_slice(&buf[..=pos]);
                        self.sql_line(&line)?;
                        pos + 1
                    }
                }
            };
            input.consume(used);
        }
        if !self.partial.is_empty() {
            // A last line without a newline (a cut file): psql would run it; so do we.
            let line = std::mem::take(&mut self.partial);
            self.sql_line(&line)?;
        }
        if !self.statement.is_empty() {
            self.statements()?;
        }
        self.close_unit()?;
        if self.phase == Phase::Post {
            self.replay_post()?;
        }
        self.lanes.barrier()?;
        Ok((self.scanner.finish(), self.plan))
    }

    fn sql_line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let top = self.scanner.at_top() && self.statement.is_empty();
        self.scanner.feed(line);
        let here = self.line;
        self.line += 1;
        if top {
            let text = trim(line);
            if text.is_empty() {
                return Ok(());
            }
            if text.starts_with(b"--") && self.scanner.at_top() {
                if let Some((data, kind)) = header_kind(text) {
                    self.header(data, &kind, here)?;
                }
                return Ok(());
            }
            if text.starts_with(b"\\") {
                return self.meta(line, here);
            }
            self.statement_line = here;
        }
        let base = self.statement.len();
        self.ends.extend(self.scanner.statement_ends().iter().map(|e| base + e));
        self.statement.extend_from_slice(line);
        if self.scanner.at_top() || self.scanner.in_copy() {
            self.statements()?;
        }
        Ok(())
    }

    /// The text gathered since the last statement: one statement each (a line may hold
    /// several, and one simple query of several would run them as one transaction); only the
    /// last can be a COPY.
    fn statements(&mut self) -> anyhow::Result<()> {
        let text = std::mem::take(&mut self.statement);
        let ends = std::mem::take(&mut self.ends);
        let cuts: Vec<usize> = ends.iter().copied().filter(|&e| e < text.len() && !is_blank(&text[e..])).collect();
        let mut from = 0;
        let mut line = self.statement_line;
        for cut in cuts.iter().copied().chain(std::iter::once(text.len())) {
            let piece = &text[from..cut];
            let last = cut == text.len();
            self.statement(piece.to_vec(), line, last && self.scanner.in_copy())?;
            line += memchr::memchr_iter(b'\n', piece).count() as u64;
            from = cut;
        }
        Ok(())
    }

    fn meta(&mut self, line: &[u8], here: u64) -> anyhow::Result<()> {
        let text = trim(line);
        if text.starts_with(b"\\unrestrict") {
            return Ok(());
        }
        let started = self.synced.iter().any(Option::is_some) || self.plan.tables > 0;
        if text.starts_with(b"\\restrict ") && self.restrict.is_none() && !started {
            self.restrict = Some(line.to_vec());
            return Ok(());
        }
        let what = String::from_utf8_lossy(text.split(|b| *b == b' ').next().unwrap_or_default()).into_owned();
        self.serial_from(here, format!("the psql meta-command {what}"))?;
        self.sync(0)?;
        self.lanes.send(0, Piece::Meta(line), Some(here))
    }

    fn header(&mut self, data: bool, kind: &str, here: u64) -> anyhow::Result<()> {
        self.close_unit()?;
        let r = route(data, kind);
        let is_data = matches!(r, Route::TableData | Route::OtherData);
        match self.phase {
            Phase::Pre if is_data => self.enter(Phase::Data)?,
            Phase::Pre if starts_post_data(kind) => self.enter(Phase::Post)?,
            Phase::Data if !is_data => self.enter(Phase::Post)?,
            Phase::Post if is_data => self.serial_from(here, format!("{kind} after post-data began"))?,
            _ => {}
        }
        self.route = r;
        self.entry_statements = 0;
        if self.phase == Phase::Data && r == Route::TableData {
            self.entry_lane = self.lanes.idlest();
        }
        Ok(())
    }

    /// One statement; `copy`: a `COPY ... FROM stdin` whose rows follow.
    fn statement(&mut self, statement: Vec<u8>, line: u64, copy: bool) -> anyhow::Result<()> {
        if !copy && let Some(key) = state_key(&statement) {
            if self.phase == Phase::Post {
                for spool in 0..3 {
                    write_record(&mut self.spools[spool], TAG_SETTING, line, &statement)?;
                }
            }
            self.state.retain(|(k, _, _)| *k != key);
            self.state.push((key, statement, line));
            return Ok(());
        }
        if matches!(self.phase, Phase::Data | Phase::Post) && !expected(self.route, &statement, self.entry_statements) {
            let first =
                String::from_utf8_lossy(statement.trim_ascii().split(|b| *b == b'\n').next().unwrap_or_default())
                    .chars()
                    .take(60)
                    .collect::<String>();
            self.serial_from(line, format!("a statement pg_dump does not write there ({first})"))?;
        }
        if self.phase == Phase::Data && self.route == Route::TableData && !copy {
            self.untracked_data = true;
        }
        if self.phase == Phase::Pre {
            self.fresh.pre_data(&statement);
        }
        if self.phase == Phase::Pre && self.plan.replies_exact && !keeps_replies(&statement) {
            self.plan.replies_exact = false;
            let first = String::from_utf8_lossy(&statement[..statement.len().min(60)]).into_owned();
            tracing::debug!(line, statement = %first, "Pre-data may change what COPY stores: rows are counted.");
        }
        if self.phase == Phase::Post && self.plan.rows_final_after_data && !keeps_rows(&statement) {
            self.plan.rows_final_after_data = false;
            let first = String::from_utf8_lossy(&statement[..statement.len().min(60)]).into_owned();
            tracing::debug!(line, statement = %first, "Post-data may change rows here: the rows are counted after the load.");
        }
        if self.phase == Phase::Post && self.route == Route::Build && self.entry_statements == 0 {
            self.entry_lane = self.place_build(&statement)?;
        }
        self.entry_statements += 1;
        let dest = match (self.phase, self.route) {
            (Phase::Data, Route::TableData) | (Phase::Post, Route::Build) => Dest::Lane(self.entry_lane),
            (Phase::Post, Route::Attach) => Dest::Spool(ATTACH),
            (Phase::Post, Route::ForeignKey) => Dest::Spool(FOREIGN),
            (Phase::Post, _) => Dest::Spool(AFTER),
            _ => Dest::Lane(0),
        };
        if let Dest::Lane(lane) = dest
            && lane > 0
        {
            self.open_unit = Some(lane);
        }
        let mut dest = dest;
        let mut deferred = false;
        if copy {
            let parallel = dest != Dest::Lane(0) && self.phase == Phase::Data && splittable_copy(&statement);
            if parallel {
                self.plan.tables += 1;
            }
            let splittable = parallel && self.fresh.mode != Truncate::WholeTable;
            if parallel {
                let target = copy_target(&statement).to_vec();
                if let Some(&first) = self.fresh.taken.get(&target) {
                    dest = Dest::Lane(first);
                } else if self.fresh.truncates(&target, self.plan.replies_exact) {
                    // Sent with its first rows, once they show whether the table is worth
                    // truncating (`copy::FRESH_BYTES`).
                    deferred = true;
                }
                self.open_unit = if let Dest::Lane(l) = dest { Some(l) } else { None };
            }
            // The table whose rows these are, for the builds that need them.
            let target = match dest {
                Dest::Lane(lane) if lane > 0 && self.phase == Phase::Data && self.route == Route::TableData => {
                    Some(copy_target(&statement).to_vec())
                }
                _ => {
                    self.untracked_data |= self.phase == Phase::Data;
                    None
                }
            };
            self.copy = Some(CopyBlock {
                dest,
                target,
                statement: statement.clone(),
                statement_line: line,
                splittable,
                piece: 0,
                row_start: Vec::new(),
                row_len: 0,
                held: false,
                in_transaction: false,
                deferred,
                deferred_from: None,
            });
            if deferred {
                return Ok(());
            }
        } else if self.phase == Phase::Post && self.route == Route::Build {
            self.plan.builds += 1;
        }
        self.send_to(dest, &statement, line)
    }

    fn send_to(&mut self, dest: Dest, text: &[u8], line: u64) -> anyhow::Result<()> {
        match dest {
            Dest::Lane(lane) => {
                self.sync(lane)?;
                self.lanes.send(lane, Piece::Statement(text), Some(line))
            }
            Dest::Spool(spool) => write_record(&mut self.spools[spool], TAG_STATEMENT, line, text),
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}
