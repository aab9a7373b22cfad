//! The scanner for MariaDB/MySQL backups (`mariadb-dump` / `mysqldump` output), lexed as the
//! `mariadb` client reads it: `'...'` and `"..."` strings with backslash escapes, `` `...` ``
//! identifiers, `-- `, `#` and `/* */` comments (including `/*!...*/`), and `DELIMITER` lines
//! (routines and triggers are dumped between `DELIMITER ;;` and `DELIMITER ;`).
//!
//! Rows are the tuples of each `INSERT INTO `t` VALUES (...),(...);` statement, counted at
//! parenthesis depth zero; the dump is complete when it ends with `-- Dump completed`.

use std::collections::BTreeMap;

use super::{Completeness, Incomplete, LinePrefix, Scanner, Summary, TableData};

const TRAILER: &[u8] = b"-- Dump completed";
const TRAILER_TEXT: &str = "-- Dump completed";
const STATEMENT_PREFIX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    /// `-`, `/` or `-` `-` seen: maybe a comment.
    Dash,
    DashDash,
    Slash,
    LineComment,
    Block {
        star: bool,
    },
    Quoted {
        quote: u8,
        escaped: bool,
    },
    /// The closing quote seen: the end, or the first half of a doubled quote.
    QuoteSeen(u8),
}

/// Incremental scanner of mariadb-dump output.
#[derive(Debug)]
pub struct MariaScanner {
    lex: Lex,
    delimiter: Vec<u8>,
    /// Bytes of the delimiter matched so far.
    matched: usize,
    in_statement: bool,
    statement: Vec<u8>,
    /// `INSERT INTO` statement: the table's index, and parenthesis depth.
    insert: Option<usize>,
    depth: u32,
    values_seen: bool,
    statement_bytes: u64,
    line: LinePrefix,
    line_at_top: bool,
    lines: u64,
    bytes: u64,
    any_content: bool,
    header: bool,
    trailer: bool,
    after_trailer: Option<u64>,
    tables: Vec<TableData>,
    by_name: BTreeMap<String, usize>,
    objects: BTreeMap<String, u64>,
    last_object: Option<String>,
}

impl Default for MariaScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl MariaScanner {
    pub fn new() -> Self {
        MariaScanner {
            lex: Lex::Normal,
            delimiter: b";".to_vec(),
            matched: 0,
            in_statement: false,
            statement: Vec::new(),
            insert: None,
            depth: 0,
            values_seen: false,
            statement_bytes: 0,
            line: LinePrefix::default(),
            line_at_top: true,
            lines: 0,
            bytes: 0,
            any_content: false,
            header: false,
            trailer: false,
            after_trailer: None,
            tables: Vec::new(),
            by_name: BTreeMap::new(),
            objects: BTreeMap::new(),
            last_object: None,
        }
    }

    fn table(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        self.tables.push(TableData { schema: String::new(), table: name.to_string(), rows: 0, bytes: 0 });
        self.by_name.insert(name.to_string(), self.tables.len() - 1);
        self.tables.len() - 1
    }

    fn start_statement(&mut self) {
        if !self.in_statement {
            self.in_statement = true;
            self.statement.clear();
            self.insert = None;
            self.depth = 0;
            self.values_seen = false;
            self.statement_bytes = 0;
        }
    }

    fn keep(&mut self, b: u8) {
        if !self.in_statement {
            return;
        }
        self.statement_bytes += 1;
        if self.statement.len() < STATEMENT_PREFIX {
            self.statement.push(b);
            if self.insert.is_none() && self.statement.len() > 12 && b == b'`' {
                self.recognise_insert();
            }
        }
    }

    /// `INSERT INTO `name`` complete in the prefix: start counting its tuples.
    fn recognise_insert(&mut self) {
        let text = self.statement.trim_ascii_start();
        let Some(rest) = strip_prefix_ci(text, b"INSERT INTO `") else { return };
        let Some(end) = rest.iter().position(|b| *b == b'`') else { return };
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        let t = self.table(&name);
        self.insert = Some(t);
    }

    fn end_statement(&mut self) {
        if let Some(t) = self.insert.take() {
            self.tables[t].bytes += self.statement_bytes;
        }
        self.in_statement = false;
        self.matched = 0;
    }

    fn step(&mut self, b: u8) {
        if !b.is_ascii_whitespace() {
            self.any_content = true;
        }
        match self.lex {
            Lex::Normal => self.normal(b),
            Lex::Dash => {
                if b == b'-' {
                    self.lex = Lex::DashDash;
                } else {
                    self.lex = Lex::Normal;
                    self.content(b'-');
                    self.normal(b);
                }
            }
            Lex::DashDash => {
                if b.is_ascii_whitespace() || b.is_ascii_control() {
                    self.lex = Lex::LineComment;
                } else {
                    self.lex = Lex::Normal;
                    self.content(b'-');
                    self.content(b'-');
                    self.normal(b);
                }
            }
            Lex::Slash => {
                if b == b'*' {
                    self.lex = Lex::Block { star: false };
                } else {
                    self.lex = Lex::Normal;
                    self.content(b'/');
                    self.normal(b);
                }
            }
            Lex::LineComment => {}
            Lex::Block { star } => {
                self.lex = if star && b == b'/' { Lex::Normal } else { Lex::Block { star: b == b'*' } };
            }
            Lex::Quoted { quote, escaped } => {
                self.keep(b);
                self.lex = if escaped {
                    Lex::Quoted { quote, escaped: false }
                } else if b == b'\\' && quote != b'`' {
                    Lex::Quoted { quote, escaped: true }
                } else if b == quote {
                    Lex::QuoteSeen(quote)
                } else {
                    Lex::Quoted { quote, escaped: false }
                };
            }
            Lex::QuoteSeen(quote) => {
                if b == quote {
                    self.keep(b);
                    self.lex = Lex::Quoted { quote, escaped: false };
                } else {
                    self.lex = Lex::Normal;
                    self.normal(b);
                }
            }
        }
    }

    fn normal(&mut self, b: u8) {
        match b {
            b'-' => self.lex = Lex::Dash,
            b'#' => self.lex = Lex::LineComment,
            b'/' => self.lex = Lex::Slash,
            _ if b.is_ascii_whitespace() => {
                self.keep(b);
            }
            _ => self.content(b),
        }
    }

    /// A byte that belongs to a statement (not whitespace or comment) in the normal state.
    fn content(&mut self, b: u8) {
        self.start_statement();
        self.keep(b);
        match b {
            b'\'' | b'"' | b'`' => {
                self.lex = Lex::Quoted { quote: b, escaped: false };
                self.matched = 0;
                return;
            }
            b'(' => {
                if self.depth == 0
                    && let Some(t) = self.insert
                {
                    // A column list (`--complete-insert`) comes before VALUES and is no row.
                    self.values_seen = self.values_seen || contains_ci(&self.statement, b"VALUES");
                    if self.values_seen {
                        self.tables[t].rows += 1;
                    }
                }
                self.depth += 1;
            }
            b')' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        if self.delimiter.get(self.matched) == Some(&b) {
            self.matched += 1;
            if self.matched == self.delimiter.len() {
                self.end_statement();
            }
        } else {
            self.matched = usize::from(self.delimiter.first() == Some(&b));
            if self.matched == self.delimiter.len() {
                self.end_statement();
            }
        }
    }

    fn end_of_line(&mut self) {
        self.lines += 1;
        match self.lex {
            Lex::Dash => {
                self.lex = Lex::Normal;
                self.content(b'-');
            }
            Lex::Slash => {
                self.lex = Lex::Normal;
                self.content(b'/');
            }
            Lex::DashDash | Lex::LineComment => self.lex = Lex::Normal,
            Lex::QuoteSeen(_) => self.lex = Lex::Normal,
            _ => {}
        }
        if self.line_at_top {
            self.top_level_line();
        }
        self.keep(b'\n');
        self.line.clear();
        self.line_at_top = self.lex == Lex::Normal && !self.in_statement;
    }

    fn top_level_line(&mut self) {
        let owned = self.line.text().trim_ascii().to_vec();
        let text = owned.as_slice();
        if let Some(rest) = strip_prefix_ci(text, b"DELIMITER ") {
            let rest = rest.trim_ascii();
            if !rest.is_empty() {
                // The client command, not SQL: forget the statement it seemed to start.
                self.delimiter = rest.to_vec();
                self.in_statement = false;
                self.insert = None;
                self.matched = 0;
                return;
            }
        }
        if text.starts_with(b"-- MariaDB dump") || text.starts_with(b"-- MySQL dump") {
            self.header = true;
        } else if text.starts_with(TRAILER) {
            self.trailer = self.header;
            self.after_trailer = None;
        } else if text.starts_with(b"--") || text.starts_with(b"#") || text.is_empty() {
            self.object_header(text);
        } else if self.trailer && !text.starts_with(b"/*") {
            self.trailer = false;
            self.after_trailer = Some(self.lines);
        }
    }

    /// `-- Table structure for table `t``, `-- Dumping data for table `t``, views.
    fn object_header(&mut self, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let name = |prefix: &str| {
            text.strip_prefix(prefix).map(|r| r.trim_matches('`').replace("``", "`")).filter(|n| !n.is_empty())
        };
        if let Some(n) = name("-- Table structure for table ") {
            *self.objects.entry("TABLE".into()).or_default() += 1;
            self.last_object = Some(format!("TABLE {n}"));
        } else if let Some(n) = name("-- Final view structure for view ") {
            *self.objects.entry("VIEW".into()).or_default() += 1;
            self.last_object = Some(format!("VIEW {n}"));
        } else if let Some(n) = name("-- Dumping data for table ") {
            self.table(&n);
            self.last_object = Some(format!("TABLE DATA {n}"));
        } else if text.starts_with("-- Dumping events for database") {
            self.last_object = Some("events".into());
        } else if text.starts_with("-- Dumping routines for database") {
            self.last_object = Some("routines".into());
        }
    }
}

impl Scanner for MariaScanner {
    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        let mut line_start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                self.line.push(&chunk[line_start..i]);
                line_start = i + 1;
                self.end_of_line();
            } else {
                self.step(b);
            }
        }
        self.line.push(&chunk[line_start..]);
    }

    fn finish(&mut self) -> Summary {
        if self.line.len() > 0 {
            self.end_of_line();
        }
        let verdict = if !self.any_content {
            Err(Incomplete::Empty)
        } else if !self.header {
            Err(Incomplete::NotADump { engine: "MariaDB", header: "-- MariaDB dump" })
        } else if let (false, Some(line)) = (self.trailer, self.after_trailer) {
            Err(Incomplete::AfterTrailer { line })
        } else if !self.trailer || self.in_statement || self.lex != Lex::Normal {
            let place = if self.in_statement { "in the middle of a statement" } else { "between two statements" };
            let where_ = match &self.last_object {
                Some(o) => format!("{place} (last object started: {o})"),
                None => place.to_string(),
            };
            Err(Incomplete::Cut { trailer: TRAILER_TEXT, where_ })
        } else {
            Ok(())
        };
        Summary {
            completeness: match verdict {
                Ok(()) => Completeness::Complete,
                Err(e) => Completeness::Incomplete(e),
            },
            tables: self.tables.clone(),
            rows_known: true,
            objects: self.objects.clone(),
            lines: self.lines,
            bytes: self.bytes,
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

fn contains_ci(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
