//! The session settings a newer pg_dump (and pg_dumpall) writes in a dump's header, and the
//! one rule that makes such a dump load into the source's own, older server.
//!
//! pg_dump 17+ starts every dump with `SET transaction_timeout = 0;`, which servers before 17
//! reject (`unrecognized configuration parameter`). The list below holds each such setting with
//! the server version that introduced it. On the way in (`HeaderFilter`, under every loader: the
//! serial load, the parallel load and verification), a header line that sets one the target
//! lacks becomes an empty line, so line numbers stay the file's. On the way out
//! (`HeaderRewriter`, when a dump had to be taken with a newer client), the line is written as
//! `SELECT pg_catalog.set_config(...) FROM pg_catalog.pg_settings WHERE name = ...;`, which any
//! server accepts, so that plain `gunzip | psql` into the source's major works too.
//!
//! Only header lines are touched: from a `-- PostgreSQL database dump` (or pg_dumpall's
//! `-- PostgreSQL database cluster dump`) line to the first line that is not a comment, a blank,
//! `SET`, `SELECT pg_catalog.set_config(` or `\restrict`. That region holds no COPY data and no
//! function body; past the database section's header the stream is passed through untouched.

use std::io::{self, BufRead, Read, Write};

/// Settings newer dump tools write in their header: (name, the `server_version_num` of the
/// first server release that has it).
pub const NEWER_SETTINGS: [(&str, u32); 1] = [("transaction_timeout", 170_000)];

const DB_HEADER: &str = "-- PostgreSQL database dump";
const CLUSTER_HEADER: &str = "-- PostgreSQL database cluster dump";
/// How far `read_ahead` looks for the database section's header before giving up (a roles
/// section of many thousand roles comes first).
const READ_AHEAD_LIMIT: usize = 8 << 20;
/// The longest line read whole: dump headers are short; a longer line (a file that is not a
/// dump, or one without line breaks) ends the line-by-line pass, so memory stays bounded.
const MAX_LINE: u64 = 64 * 1024;

/// The setting a header line `SET name = value;` sets, when it is one of `NEWER_SETTINGS`.
fn newer_setting(line: &str) -> Option<(&'static str, u32)> {
    let rest = line.trim().strip_prefix("SET ")?;
    let (name, value) = rest.split_once('=')?;
    value.trim_end().ends_with(';').then_some(())?;
    NEWER_SETTINGS.iter().copied().find(|(n, _)| *n == name.trim())
}

/// Whether a line can stand in a dump's header (see the module doc).
fn header_line(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with("--")
        || t.starts_with("SET ")
        || t.starts_with("SELECT pg_catalog.set_config(")
        || t.starts_with("\\restrict ")
}

/// Where a line-by-line pass is in a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before or between headers (the roles section's body, our settings section).
    Between,
    /// In the roles section's header.
    ClusterHeader,
    /// In the database section's header.
    DbHeader,
    /// Past the database section's header: nothing more is looked at.
    Done,
}

impl Place {
    /// The place after `line`, and whether `line` is a header line.
    fn next(self, line: &str) -> (Place, bool) {
        let t = line.trim_end();
        match self {
            Place::Done => (Place::Done, false),
            _ if t == DB_HEADER => (Place::DbHeader, true),
            _ if t == CLUSTER_HEADER => (Place::ClusterHeader, true),
            Place::Between => (Place::Between, false),
            Place::ClusterHeader if header_line(line) => (Place::ClusterHeader, true),
            Place::ClusterHeader => (Place::Between, false),
            Place::DbHeader if header_line(line) => (Place::DbHeader, true),
            Place::DbHeader => (Place::Done, false),
        }
    }
}

/// What a dump's header says about where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The major of the server it was dumped from (`-- Dumped from database version 13.23`).
    pub source_major: Option<u32>,
    /// The major of the pg_dump that wrote it (`-- Dumped by pg_dump version 18.6`).
    pub pg_dump_major: Option<u32>,
}

fn major_after(line: &str, prefix: &str) -> Option<u32> {
    let rest = line.trim().strip_prefix(prefix)?.trim_start();
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A dump stream as the target server can take it: header lines setting what the target
/// (`server_version_num`) lacks are given to the loader as empty lines.
pub struct HeaderFilter<R> {
    inner: R,
    target: u32,
    place: Place,
    /// Processed bytes not yet handed out.
    pending: Vec<u8>,
    at: usize,
    origin: Origin,
    /// The settings blanked, with the file's line number of each.
    pub blanked: Vec<(u64, &'static str)>,
    lines: u64,
}

impl<R: BufRead> HeaderFilter<R> {
    pub fn new(inner: R, target_version_num: u32) -> Self {
        HeaderFilter {
            inner,
            target: target_version_num,
            place: Place::Between,
            pending: Vec::new(),
            at: 0,
            origin: Origin::default(),
            blanked: Vec::new(),
            lines: 0,
        }
    }

    /// Reads ahead (at most 64 KiB, kept for the reader) until the database section's header
    /// has been read, and returns what it says about the dump's origin.
    ///
    /// # Errors
    /// Read errors.
    pub fn read_ahead(&mut self) -> io::Result<Origin> {
        while self.place != Place::Done && self.pending.len() - self.at < READ_AHEAD_LIMIT {
            if !self.next_line()? {
                break;
            }
        }
        Ok(self.origin.clone())
    }

    /// Processes one line into `pending`; false at the end of the stream.
    fn next_line(&mut self) -> io::Result<bool> {
        let start = self.pending.len();
        let n = (&mut self.inner).take(MAX_LINE).read_until(b'\n', &mut self.pending)?;
        if n == 0 {
            return Ok(false);
        }
        if self.pending.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Not a dump header: hand the rest over untouched.
            self.place = Place::Done;
            return Ok(true);
        }
        self.lines += 1;
        let line = String::from_utf8_lossy(&self.pending[start..]).into_owned();
        let (place, in_header) = self.place.next(&line);
        self.place = place;
        if in_header {
            self.origin.source_major =
                self.origin.source_major.or_else(|| major_after(&line, "-- Dumped from database version"));
            self.origin.pg_dump_major =
                self.origin.pg_dump_major.or_else(|| major_after(&line, "-- Dumped by pg_dump version"));
            if let Some((name, since)) = newer_setting(&line)
                && self.target < since
            {
                self.blanked.push((self.lines, name));
                self.pending.truncate(start);
                self.pending.push(b'\n');
            }
        }
        Ok(true)
    }
}

impl<R: BufRead> Read for HeaderFilter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for HeaderFilter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.pending.len() {
            self.pending.clear();
            self.at = 0;
            if self.place == Place::Done {
                return self.inner.fill_buf();
            }
            self.next_line()?;
        }
        Ok(&self.pending[self.at..])
    }

    fn consume(&mut self, n: usize) {
        if self.at == self.pending.len() && self.place == Place::Done {
            self.inner.consume(n);
        } else {
            self.at = (self.at + n).min(self.pending.len());
        }
    }
}

/// The form of a newer-setting header line that every server accepts: it sets the value where
/// the setting exists and does nothing elsewhere.
fn portable(line: &str) -> Option<String> {
    let (name, _) = newer_setting(line)?;
    let value = line.trim().strip_prefix("SET ")?.split_once('=')?.1.trim().strip_suffix(';')?.trim();
    let value = value.trim_matches('\'').replace('\'', "''");
    Some(format!(
        "SELECT pg_catalog.set_config('{name}', '{value}', false) FROM pg_catalog.pg_settings WHERE name = '{name}';\n"
    ))
}

/// The dump tools' output as the source's own major takes it through plain psql: header lines
/// setting what the source server (`server_version_num`) lacks are written in their
/// `portable` form. Counts what it rewrote.
pub struct HeaderRewriter<W> {
    inner: W,
    source: u32,
    place: Place,
    line: Vec<u8>,
    pub rewritten: u64,
}

impl<W: Write> HeaderRewriter<W> {
    pub fn new(inner: W, source_version_num: u32) -> Self {
        HeaderRewriter { inner, source: source_version_num, place: Place::Between, line: Vec::new(), rewritten: 0 }
    }

    fn emit_line(&mut self) -> io::Result<()> {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        let (place, in_header) = self.place.next(&line);
        self.place = place;
        let lacked = newer_setting(&line).is_some_and(|(_, since)| self.source < since);
        match portable(&line).filter(|_| in_header && lacked) {
            Some(p) => {
                self.rewritten += 1;
                self.inner.write_all(p.as_bytes())?;
            }
            None => self.inner.write_all(&self.line)?,
        }
        self.line.clear();
        Ok(())
    }

    /// Writes what is held (a last line without a line break) and returns the writer.
    ///
    /// # Errors
    /// Write errors.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.line.is_empty() {
            self.emit_line()?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for HeaderRewriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.place == Place::Done && self.line.is_empty() {
            return self.inner.write(buf);
        }
        let mut rest = buf;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            self.line.extend_from_slice(&rest[..=pos]);
            rest = &rest[pos + 1..];
            self.emit_line()?;
            if self.place == Place::Done {
                self.inner.write_all(rest)?;
                return Ok(buf.len());
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() as u64 > MAX_LINE {
            // Not a header line: write it as it is and pass the rest through (bounded memory).
            self.inner.write_all(&self.line)?;
            self.line.clear();
            self.place = Place::Done;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG18_OF_13: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict K1\n\nSET default_transaction_read_only = off;\nSET transaction_timeout = 0;\n\nCREATE ROLE app;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n--\n-- PostgreSQL database dump\n--\n\n\\restrict K2\n\n-- Dumped from database version 13.23\n-- Dumped by pg_dump version 18.6\n\nSET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE TABLE t (x text);\nCOPY t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\nSET transaction_timeout = 0;\n$$;\n";

    fn filtered(text: &str, target: u32) -> (String, Vec<(u64, &'static str)>, Origin) {
        let mut f = HeaderFilter::new(text.as_bytes(), target);
        let origin = f.read_ahead().unwrap();
        let mut out = String::new();
        f.read_to_string(&mut out).unwrap();
        (out, f.blanked, origin)
    }

    #[test]
    fn header_settings_the_target_lacks_become_empty_lines() {
        let (out, blanked, origin) = filtered(PG18_OF_13, 130_023);
        assert_eq!(origin, Origin { source_major: Some(13), pg_dump_major: Some(18) });
        assert_eq!(blanked, vec![(8, "transaction_timeout"), (26, "transaction_timeout")]);
        assert_eq!(out.lines().count(), PG18_OF_13.lines().count(), "line numbers stay the file's");
        assert_eq!(out.matches("SET transaction_timeout = 0;").count(), 2, "COPY data and bodies untouched");
        assert!(out.contains("SET statement_timeout = 0;\n\nSET client_encoding"));
        let (same, none, _) = filtered(PG18_OF_13, 170_000);
        assert_eq!((same.as_str(), none.len()), (PG18_OF_13, 0), "a 17 target takes it as it is");
    }

    #[test]
    fn the_filter_reads_through_any_buffer_size() {
        let mut f = HeaderFilter::new(io::BufReader::with_capacity(3, PG18_OF_13.as_bytes()), 150_000);
        let mut out = Vec::new();
        let mut buf = [0u8; 5];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8(out).unwrap(), filtered(PG18_OF_13, 150_000).0);
        assert_eq!(
            filtered("SET transaction_timeout = 0;\n", 130_000).0,
            "SET transaction_timeout = 0;\n",
            "not a header"
        );
    }

    #[test]
    fn a_line_without_end_is_passed_through_in_bounded_memory() {
        let huge = format!("--\n-- PostgreSQL database dump\n{}\nSET transaction_timeout = 0;\n", "x".repeat(200_000));
        let mut f = HeaderFilter::new(huge.as_bytes(), 130_000);
        f.read_ahead().unwrap();
        assert!(f.pending.len() <= MAX_LINE as usize + 64, "{} bytes held", f.pending.len());
        let mut out = String::new();
        f.read_to_string(&mut out).unwrap();
        assert_eq!(out, huge, "passed through whole, nothing blanked after it");
    }

    #[test]
    fn the_rewriter_writes_what_every_server_takes() {
        let mut same = HeaderRewriter::new(Vec::new(), 170_000);
        same.write_all(PG18_OF_13.as_bytes()).unwrap();
        assert_eq!(same.finish().unwrap(), PG18_OF_13.as_bytes(), "a 17 source has the setting: kept");
        let mut w = HeaderRewriter::new(Vec::new(), 130_000);
        for chunk in PG18_OF_13.as_bytes().chunks(7) {
            w.write_all(chunk).unwrap();
        }
        let rewritten = w.rewritten;
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(rewritten, 2);
        let portable = "SELECT pg_catalog.set_config('transaction_timeout', '0', false) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';";
        assert_eq!(out.matches(portable).count(), 2, "{out}");
        assert_eq!(out.matches("SET transaction_timeout = 0;").count(), 2, "COPY data and bodies untouched");
        assert_eq!(out.lines().count(), PG18_OF_13.lines().count());
    }
}
