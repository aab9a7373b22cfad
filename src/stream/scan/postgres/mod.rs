//! The scanner for PostgreSQL backups: `pg_dumpall --roles-only` output, our database
//! settings section, and `pg_dump -Fp` output, lexed as psql reads them.
//!
//! Lexer states follow psql's own (`psqlscan.l`): single-quoted strings (with backslash
//! escapes only in `E'...'`), double-quoted identifiers, `$tag$` bodies, `--` and nested
//! `/* */` comments, backslash meta-command lines, and `COPY ... FROM stdin` data that runs
//! until a line holding only `\.`. Only at the top level (outside every statement and quote)
//! does a comment line count as a section header or trailer.

use std::collections::BTreeMap;

pub mod header;
mod lex;

use lex::{Lex, trim_end};

use crate::stream::scan::{
    Completeness, Incomplete, LinePrefix, SETTINGS_FOOTER, SETTINGS_HEADER, Scanner, Summary, TableData,
};

const CLUSTER_HEADER: &[u8] = b"-- PostgreSQL database cluster dump";
const CLUSTER_FOOTER: &[u8] = b"-- PostgreSQL database cluster dump complete";
const DB_HEADER: &[u8] = b"-- PostgreSQL database dump";
const DB_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";
const TRAILER_TEXT: &str = "-- PostgreSQL database dump complete";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Absent,
    Open,
    Closed,
}

/// Incremental scanner of PostgreSQL plain dumps.
#[derive(Debug)]
pub struct PgScanner {
    lex: Lex,
    /// The byte before the current one, outside quotes (for `E'` and `$` rules).
    prev: u8,
    prev2: u8,
    /// `SET standard_conforming_strings = off` is in effect: backslashes escape in every string.
    backslash_strings: bool,
    /// Offsets, in the text of the last `feed`, just past each `;` that ended a statement.
    ends: Vec<usize>,
    /// The offset in the last `feed`'s text of the chunk `feed_sql` reads, and of its byte.
    chunk_base: usize,
    at: usize,
    in_statement: bool,
    statement: Vec<u8>,
    tail: Vec<u8>,
    /// A `COPY ... FROM stdin;` ended on this line: data starts on the next.
    pending_copy: Option<String>,
    /// Current COPY block: index into `tables`.
    copy: Option<usize>,
    line: LinePrefix,
    /// The current line began outside every statement and quote.
    line_at_top: bool,
    lines: u64,
    bytes: u64,
    any_content: bool,
    roles: Section,
    settings: Section,
    database: bool,
    trailer: bool,
    after_trailer: Option<u64>,
    saw_inserts: bool,
    tables: Vec<TableData>,
    objects: BTreeMap<String, u64>,
    last_object: Option<String>,
}

impl Default for PgScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl PgScanner {
    pub fn new() -> Self {
        PgScanner {
            lex: Lex::Normal,
            prev: b'\n',
            prev2: b'\n',
            backslash_strings: false,
            ends: Vec::new(),
            chunk_base: 0,
            at: 0,
            in_statement: false,
            statement: Vec::new(),
            tail: Vec::new(),
            pending_copy: None,
            copy: None,
            line: LinePrefix::default(),
            line_at_top: true,
            lines: 0,
            bytes: 0,
            any_content: false,
            roles: Section::Absent,
            settings: Section::Absent,
            database: false,
            trailer: false,
            after_trailer: None,
            saw_inserts: false,
            tables: Vec::new(),
            objects: BTreeMap::new(),
            last_object: None,
        }
    }

    /// Inside a `COPY ... FROM stdin` data block (the next line is a row or `\.`).
    pub fn in_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// The next line starts outside every statement, quote and comment.
    pub fn at_top(&self) -> bool {
        self.line_at_top && self.copy.is_none()
    }

    /// Where statements ended in the text of the last `feed`: the offset just past each `;`
    /// (so that a line holding several statements can be sent as one statement each).
    pub fn statement_ends(&self) -> &[usize] {
        &self.ends
    }

    /// COPY data: whole lines, found with memchr; returns the bytes consumed.
    fn feed_copy(&mut self, chunk: &[u8], table: usize) -> usize {
        let mut start = 0;
        while start < chunk.len() {
            match memchr::memchr(b'\n', &chunk[start..]) {
                None => {
                    self.line.push(&chunk[start..]);
                    return chunk.len();
                }
                Some(pos) => {
                    self.line.push(&chunk[start..start + pos]);
                    start += pos + 1;
                    self.lines += 1;
                    let end = !self.line.truncated() && self.line.text() == b"\\.";
                    if end {
                        self.copy = None;
                        self.line.clear();
                        self.line_at_top = true;
                        return start;
                    }
                    let t = &mut self.tables[table];
                    t.rows += 1;
                    t.bytes += self.line.len() + 1;
                    self.line.clear();
                }
            }
        }
        start
    }

    /// SQL text, byte by byte; returns the bytes consumed (stops where COPY data begins).
    fn feed_sql(&mut self, chunk: &[u8]) -> usize {
        let mut line_start = 0;
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            i += 1;
            self.at = i;
            if b == b'\n' {
                self.line.push(&chunk[line_start..i - 1]);
                line_start = i;
                self.end_of_line();
                if self.copy.is_some() {
                    return i;
                }
                continue;
            }
            self.step(b);
        }
        self.line.push(&chunk[line_start..]);
        chunk.len()
    }

    fn end_of_line(&mut self) {
        self.lines += 1;
        match self.lex {
            Lex::LineComment | Lex::Meta | Lex::DoubleQuoteSeen | Lex::DollarOpen(_) => self.lex = Lex::Normal,
            _ => {}
        }
        if let Lex::MaybeComment(first) = self.lex {
            self.lex = Lex::Normal;
            self.start_statement();
            self.keep(first);
        }
        if self.line_at_top {
            self.top_level_line();
        }
        if self.in_statement {
            self.keep(b'\n');
        }
        self.prev2 = self.prev;
        self.prev = b'\n';
        self.line.clear();
        if let Some(text) = self.pending_copy.take() {
            let (schema, table) = parse_qualified(&text);
            self.tables.push(TableData { schema, table, rows: 0, bytes: 0 });
            self.copy = Some(self.tables.len() - 1);
        }
        self.line_at_top = self.lex == Lex::Normal && !self.in_statement;
    }

    /// A line that began outside every statement: headers, trailers, and what may follow a trailer.
    fn top_level_line(&mut self) {
        let owned = trim_end(self.line.text()).to_vec();
        let text = owned.as_slice();
        let comment = text.starts_with(b"--");
        if !comment {
            let blank = text.iter().all(u8::is_ascii_whitespace);
            let unrestrict = text.starts_with(b"\\unrestrict");
            if self.trailer && !blank && !unrestrict {
                self.trailer = false;
                self.after_trailer = Some(self.lines);
            }
            return;
        }
        match text {
            CLUSTER_HEADER if !self.database => self.roles = Section::Open,
            CLUSTER_FOOTER if self.roles == Section::Open => self.roles = Section::Closed,
            DB_HEADER => {
                self.database = true;
                self.trailer = false;
            }
            DB_TRAILER if self.database => {
                self.trailer = true;
                self.after_trailer = None;
            }
            _ if text == SETTINGS_HEADER.as_bytes() => self.settings = Section::Open,
            _ if text == SETTINGS_FOOTER.as_bytes() && self.settings == Section::Open => {
                self.settings = Section::Closed
            }
            _ => self.object_header(text),
        }
    }

    /// `-- Name: t; Type: TABLE; Schema: public; Owner: app` (and `-- Data for Name: ...`).
    fn object_header(&mut self, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let Some(rest) = text.strip_prefix("-- Name: ").or_else(|| text.strip_prefix("-- Data for Name: ")) else {
            return;
        };
        let mut name = rest;
        let mut kind = None;
        let mut schema = None;
        for (i, field) in rest.split("; ").enumerate() {
            if i == 0 {
                name = field;
            } else if let Some(k) = field.strip_prefix("Type: ") {
                kind = Some(k);
            } else if let Some(s) = field.strip_prefix("Schema: ") {
                schema = Some(s);
            }
        }
        if let Some(kind) = kind {
            *self.objects.entry(kind.to_string()).or_default() += 1;
            self.last_object = Some(match schema {
                Some(s) if s != "-" => format!("{kind} {s}.{name}"),
                _ => format!("{kind} {name}"),
            });
        }
    }

    fn where_cut(&self) -> String {
        let place = if let Some(t) = self.copy {
            let t = &self.tables[t];
            format!("inside the data of table {} after {} rows", t.qualified(), t.rows)
        } else if !matches!(self.lex, Lex::Normal | Lex::LineComment | Lex::Meta) {
            "inside a quoted string, identifier or function body".to_string()
        } else if self.in_statement {
            "in the middle of a statement".to_string()
        } else {
            "between two statements".to_string()
        };
        match &self.last_object {
            Some(o) => format!("{place} (last object started: {o})"),
            None => place,
        }
    }
}

impl Scanner for PgScanner {
    fn feed(&mut self, mut chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.ends.clear();
        self.chunk_base = 0;
        while !chunk.is_empty() {
            let used = match self.copy {
                Some(t) => self.feed_copy(chunk, t),
                None => self.feed_sql(chunk),
            };
            chunk = &chunk[used..];
            self.chunk_base += used;
        }
    }

    fn finish(&mut self) -> Summary {
        if self.line.len() > 0 {
            // A last line without a newline: judge it like any other.
            if self.copy.is_none() {
                self.end_of_line();
            } else {
                self.lines += 1;
                self.line.clear();
            }
        }
        let verdict = if !self.any_content {
            Err(Incomplete::Empty)
        } else if !self.database {
            Err(match self.roles {
                Section::Closed => Incomplete::RolesOnly,
                Section::Open => Incomplete::RolesCut,
                Section::Absent => Incomplete::NotADump { engine: "PostgreSQL", header: "-- PostgreSQL database dump" },
            })
        } else if self.roles == Section::Open {
            Err(Incomplete::RolesCut)
        } else if self.settings == Section::Open {
            Err(Incomplete::SettingsCut)
        } else if let (false, Some(line)) = (self.trailer, self.after_trailer) {
            Err(Incomplete::AfterTrailer { line })
        } else if !self.trailer || self.copy.is_some() || self.lex != Lex::Normal || self.in_statement {
            Err(Incomplete::Cut { trailer: TRAILER_TEXT, where_: self.where_cut() })
        } else {
            Ok(())
        };
        Summary {
            completeness: match verdict {
                Ok(()) => Completeness::Complete,
                Err(e) => Completeness::Incomplete(e),
            },
            tables: self.tables.clone(),
            rows_known: !self.saw_inserts,
            objects: self.objects.clone(),
            lines: self.lines,
            bytes: self.bytes,
        }
    }
}

/// `public.t (a, b) FROM stdin` or `"My Schema"."Tåble" ...` → (schema, table), unquoted.
pub fn parse_qualified(text: &str) -> (String, String) {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        part.push('"');
                    } else {
                        break;
                    }
                } else {
                    part.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    part.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        parts.push(part);
        if chars.peek() == Some(&'.') {
            chars.next();
        } else {
            break;
        }
    }
    match parts.len() {
        0 | 1 => (String::new(), parts.pop().unwrap_or_default()),
        _ => {
            let table = parts.pop().unwrap_or_default();
            (parts.pop().unwrap_or_default(), table)
        }
    }
}
