//! The scanner for PostgreSQL backups: `pg_dumpall --roles-only` output, our database
//! settings section, and `pg_dump -Fp` output, lexed as psql reads them.
//!
//! Lexer states follow psql's own (`psqlscan.l`): single-quoted strings (with backslash
//! escapes only in `E'...'`), double-quoted identifiers, `$tag$` bodies, `--` and nested
//! `/* */` comments, backslash meta-command lines, and `COPY ... FROM stdin` data that runs
//! until a line holding only `\.`. Only at the top level (outside every statement and quote)
//! does a comment line count as a section header or trailer.

use std::collections::BTreeMap;

use super::{Completeness, Incomplete, LinePrefix, SETTINGS_FOOTER, SETTINGS_HEADER, Scanner, Summary, TableData};

const CLUSTER_HEADER: &[u8] = b"-- PostgreSQL database cluster dump";
const CLUSTER_FOOTER: &[u8] = b"-- PostgreSQL database cluster dump complete";
const DB_HEADER: &[u8] = b"-- PostgreSQL database dump";
const DB_TRAILER: &[u8] = b"-- PostgreSQL database dump complete";
const TRAILER_TEXT: &str = "-- PostgreSQL database dump complete";
/// The part of a statement kept to recognise `COPY ... FROM stdin` and `INSERT`.
const STATEMENT_PREFIX: usize = 4096;
/// The part of a statement's end kept to recognise `FROM stdin`.
const STATEMENT_TAIL: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    /// A `-` or `/` that may open a comment; decided by the next byte.
    MaybeComment(u8),
    LineComment,
    Block {
        depth: u32,
        prev: u8,
    },
    Single {
        escapes: bool,
    },
    SingleEscaped,
    /// A `'` inside a string: the end, or the first half of `''`.
    SingleQuoteSeen {
        escapes: bool,
    },
    Double,
    DoubleQuoteSeen,
    /// `$` seen; collecting a possible tag.
    DollarOpen(Vec<u8>),
    /// Inside `$tag$ ... $tag$`; `matched` counts bytes of a possible closing `$tag` seen.
    Dollar {
        tag: Vec<u8>,
        matched: Option<usize>,
    },
    /// A backslash meta-command line (`\restrict`, `\connect`): runs to the end of the line.
    Meta,
}

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

    fn start_statement(&mut self) {
        if !self.in_statement {
            self.in_statement = true;
            self.statement.clear();
            self.tail.clear();
        }
    }

    fn keep(&mut self, b: u8) {
        if self.in_statement {
            if self.statement.len() < STATEMENT_PREFIX {
                self.statement.push(b);
            }
            if self.tail.len() == STATEMENT_TAIL {
                self.tail.remove(0);
            }
            self.tail.push(b);
        }
    }

    fn step(&mut self, b: u8) {
        if !b.is_ascii_whitespace() {
            self.any_content = true;
        }
        match std::mem::replace(&mut self.lex, Lex::Normal) {
            Lex::Normal => self.normal(b),
            Lex::MaybeComment(first) => {
                if (first, b) == (b'-', b'-') {
                    self.lex = Lex::LineComment;
                } else if (first, b) == (b'/', b'*') {
                    self.lex = Lex::Block { depth: 1, prev: 0 };
                } else {
                    self.start_statement();
                    self.keep(first);
                    self.prev2 = self.prev;
                    self.prev = first;
                    self.normal(b);
                }
            }
            Lex::LineComment => self.lex = Lex::LineComment,
            Lex::Block { depth, prev } => {
                self.lex = if (prev, b) == (b'*', b'/') {
                    if depth == 1 { Lex::Normal } else { Lex::Block { depth: depth - 1, prev: 0 } }
                } else if (prev, b) == (b'/', b'*') {
                    Lex::Block { depth: depth + 1, prev: 0 }
                } else {
                    Lex::Block { depth, prev: b }
                };
            }
            Lex::Single { escapes } => {
                self.keep(b);
                self.lex = match b {
                    b'\\' if escapes => Lex::SingleEscaped,
                    b'\'' => Lex::SingleQuoteSeen { escapes },
                    _ => Lex::Single { escapes },
                };
            }
            Lex::SingleEscaped => {
                self.keep(b);
                self.lex = Lex::Single { escapes: true };
            }
            Lex::SingleQuoteSeen { escapes } => {
                if b == b'\'' {
                    self.keep(b);
                    self.lex = Lex::Single { escapes };
                } else {
                    self.prev = b'\'';
                    self.normal(b);
                }
            }
            Lex::Double => {
                self.keep(b);
                self.lex = if b == b'"' { Lex::DoubleQuoteSeen } else { Lex::Double };
            }
            Lex::DoubleQuoteSeen => {
                if b == b'"' {
                    self.keep(b);
                    self.lex = Lex::Double;
                } else {
                    self.prev = b'"';
                    self.normal(b);
                }
            }
            Lex::DollarOpen(mut tag) => {
                if b == b'$' {
                    self.keep(b);
                    self.lex = Lex::Dollar { tag, matched: None };
                } else if is_ident(b) && !(tag.is_empty() && b.is_ascii_digit()) {
                    self.keep(b);
                    tag.push(b);
                    self.lex = Lex::DollarOpen(tag);
                } else {
                    // `$1`, `$x.`: not a quote after all.
                    self.prev = tag.last().copied().unwrap_or(b'$');
                    self.normal(b);
                }
            }
            Lex::Dollar { tag, matched } => {
                self.keep(b);
                let matched = match matched {
                    Some(n) if n == tag.len() && b == b'$' => {
                        self.prev = b'$';
                        return;
                    }
                    Some(n) if n < tag.len() && tag[n] == b => Some(n + 1),
                    _ if b == b'$' => Some(0),
                    _ => None,
                };
                self.lex = Lex::Dollar { tag, matched };
            }
            Lex::Meta => self.lex = Lex::Meta,
        }
    }

    fn normal(&mut self, b: u8) {
        match b {
            b'-' | b'/' => {
                self.lex = Lex::MaybeComment(b);
                return;
            }
            b'\\' if !self.in_statement => {
                self.lex = Lex::Meta;
                return;
            }
            _ if b.is_ascii_whitespace() => {}
            b';' => {
                if self.in_statement {
                    self.keep(b);
                    self.end_statement();
                }
                self.prev2 = self.prev;
                self.prev = b;
                return;
            }
            _ => self.start_statement(),
        }
        self.keep(b);
        match b {
            b'\'' => {
                let escapes = matches!(self.prev, b'E' | b'e') && !is_ident(self.prev2);
                self.lex = Lex::Single { escapes };
            }
            b'"' => self.lex = Lex::Double,
            b'$' if !is_ident(self.prev) => self.lex = Lex::DollarOpen(Vec::new()),
            _ => {}
        }
        self.prev2 = self.prev;
        self.prev = b;
    }

    fn end_statement(&mut self) {
        self.in_statement = false;
        let text = trim_start(&self.statement);
        let before_semicolon = self.tail.strip_suffix(b";").unwrap_or(&self.tail);
        if starts_with_ci(text, b"COPY ") && ends_with_ci(trim_end(before_semicolon), b"FROM stdin") {
            self.pending_copy = Some(String::from_utf8_lossy(&text[5..]).into_owned());
        } else if starts_with_ci(text, b"INSERT INTO ") {
            self.saw_inserts = true;
        }
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
        while !chunk.is_empty() {
            let used = match self.copy {
                Some(t) => self.feed_copy(chunk, t),
                None => self.feed_sql(chunk),
            };
            chunk = &chunk[used..];
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

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
    &s[..s.len() - n]
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
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
