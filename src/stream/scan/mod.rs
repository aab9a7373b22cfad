//! The dump stream scanner: reads a plain SQL dump as it streams past (while a backup is
//! written, while a restore or verification loads it, in the integrity pass) and says whether
//! it is complete, how many rows each table's data holds, and which objects it defines.
//!
//! One scanner per engine (`postgres`, `mariadb`), each a small lexer that knows what the
//! client (psql, mariadb) knows: quotes, dollar-quoted bodies, comments, `COPY ... FROM stdin`
//! data blocks, `DELIMITER` lines. That is what makes the trailer check trustworthy: a trailer
//! line inside a function body or a COPY row is text, not the end of the dump.
//!
//! Written by hand: no crate lexes psql input incrementally with bounded memory (SQL parser
//! crates want whole statements in memory and do not know psql's COPY data or meta-commands).
//! Memory is bounded: at most a few KiB of the current line and statement are kept.

pub mod mariadb;
pub mod postgres;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::model::spec::EngineKind;

/// Rows and bytes of one table's data in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableData {
    pub schema: String,
    pub table: String,
    /// Rows in the data (COPY lines, or INSERT tuples for MariaDB).
    pub rows: u64,
    /// Bytes of the data as dumped (uncompressed).
    pub bytes: u64,
}

impl TableData {
    /// `schema.table` as people write it (unquoted).
    pub fn qualified(&self) -> String {
        if self.schema.is_empty() { self.table.clone() } else { format!("{}.{}", self.schema, self.table) }
    }
}

/// Why a dump is not complete. Each variant's message says what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    #[error("the backup is empty (no SQL at all)")]
    Empty,
    #[error("the backup is not a {engine} dump (no \"{header}\" header found)")]
    NotADump { engine: &'static str, header: &'static str },
    #[error("the backup holds only the roles section; the database section is missing")]
    RolesOnly,
    #[error("the roles section is cut short (no \"-- PostgreSQL database cluster dump complete\" line)")]
    RolesCut,
    #[error("the database settings section is cut short (no \"{SETTINGS_FOOTER}\" line)")]
    SettingsCut,
    #[error("the database section is cut short: {where_}; the dump did not finish (no \"{trailer}\" trailer)")]
    Cut { trailer: &'static str, where_: String },
    #[error("the dump's trailer is followed by more SQL (line {line}); the file was changed or concatenated")]
    AfterTrailer { line: u64 },
}

/// The first line of our database settings section (PostgreSQL; see `engine::postgres::settings`).
pub const SETTINGS_HEADER: &str = "-- backup-container database settings";
/// Its last line.
pub const SETTINGS_FOOTER: &str = "-- backup-container database settings complete";

/// What the scanner found in a whole stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// `Ok` when the dump ends with its tool's completion trailer (and every section is whole).
    #[serde(skip)]
    pub completeness: Completeness,
    /// Each table's data, in dump order.
    pub tables: Vec<TableData>,
    /// False when the dump holds data in a form the scanner does not count (`--inserts`
    /// in a PostgreSQL dump): rows are then unknown, never 0.
    pub rows_known: bool,
    /// Objects by kind, from the dump's `-- Name: ...; Type: KIND; ...` headers (PostgreSQL)
    /// or `-- Table structure for table` headers (MariaDB).
    pub objects: BTreeMap<String, u64>,
    /// Lines and bytes of the whole (uncompressed) stream.
    pub lines: u64,
    pub bytes: u64,
}

/// Whether a stream was a complete dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    Incomplete(Incomplete),
}

impl Default for Completeness {
    fn default() -> Self {
        Completeness::Incomplete(Incomplete::Empty)
    }
}

impl Summary {
    /// The stream's verdict as a result.
    ///
    /// # Errors
    /// The reason the dump is incomplete.
    pub fn check_complete(&self) -> Result<(), Incomplete> {
        match &self.completeness {
            Completeness::Complete => Ok(()),
            Completeness::Incomplete(why) => Err(why.clone()),
        }
    }

    /// Total rows of every table (when known).
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = if self.rows_known { self.total_rows().to_string() } else { "unknown".into() };
        write!(f, "{} tables with data, {rows} rows, {} lines", self.tables.len(), self.lines)
    }
}

/// A scanner for one engine's dump format, fed the stream in chunks of any size.
pub trait Scanner: Send {
    fn feed(&mut self, chunk: &[u8]);
    /// The verdict and figures once the stream has ended.
    fn finish(&mut self) -> Summary;
}

/// The scanner for `kind`'s dumps, or `None` for engines this build cannot read.
pub fn for_kind(kind: &EngineKind) -> Option<Box<dyn Scanner>> {
    match kind {
        EngineKind::Postgres => Some(Box::new(postgres::PgScanner::new())),
        EngineKind::MariaDb => Some(Box::new(mariadb::MariaScanner::new())),
        EngineKind::Foreign(_) => None,
    }
}

/// Scans a whole reader (the integrity pass): reads to the end and returns the summary.
///
/// # Errors
/// Read errors (a corrupt or truncated compressed stream).
pub fn scan_all(scanner: &mut dyn Scanner, reader: &mut dyn Read) -> io::Result<Summary> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        scanner.feed(&buf[..n]);
    }
    Ok(scanner.finish())
}

/// A reader that scans what passes through it (restore and verify loads).
pub struct ScanReader<R> {
    inner: R,
    scanner: Box<dyn Scanner>,
}

impl<R: Read> ScanReader<R> {
    pub fn new(inner: R, scanner: Box<dyn Scanner>) -> Self {
        ScanReader { inner, scanner }
    }

    /// The summary of what was read so far (call after the reader reached its end).
    pub fn finish(&mut self) -> Summary {
        self.scanner.finish()
    }
}

impl<R: Read> Read for ScanReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }
}

/// A writer that scans what passes through it (backups, before compression).
pub struct ScanWriter<'a> {
    inner: &'a mut dyn Write,
    scanner: Box<dyn Scanner>,
}

impl<'a> ScanWriter<'a> {
    pub fn new(inner: &'a mut dyn Write, scanner: Box<dyn Scanner>) -> Self {
        ScanWriter { inner, scanner }
    }

    pub fn finish(&mut self) -> Summary {
        self.scanner.finish()
    }
}

impl Write for ScanWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Keeps the first `cap` bytes of the current line (headers and `COPY` lines are short; a
/// longer line is never one of them, so the rest is not needed).
#[derive(Debug, Default)]
pub(crate) struct LinePrefix {
    buf: Vec<u8>,
    len: u64,
}

const LINE_PREFIX: usize = 4096;

impl LinePrefix {
    pub fn push(&mut self, bytes: &[u8]) {
        let room = LINE_PREFIX.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.len += bytes.len() as u64;
    }

    /// The kept text, without a trailing `\r`.
    pub fn text(&self) -> &[u8] {
        self.buf.strip_suffix(b"\r").unwrap_or(&self.buf)
    }

    pub fn truncated(&self) -> bool {
        self.len > self.buf.len() as u64
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests;
