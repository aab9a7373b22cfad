//! The byte-level lexer of psql input: quotes, `$tag$` bodies, comments, meta-command lines,
//! and the statement boundaries (a `COPY ... FROM stdin` statement switches to data).

use super::PgScanner;

/// The part of a statement kept to recognise `COPY ... FROM stdin` and `INSERT`.
const STATEMENT_PREFIX: usize = 4096;
/// The part of a statement's end kept to recognise `FROM stdin`.
const STATEMENT_TAIL: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lex {
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

impl PgScanner {
    pub(super) fn start_statement(&mut self) {
        if !self.in_statement {
            self.in_statement = true;
            self.statement.clear();
            self.tail.clear();
        }
    }

    pub(super) fn keep(&mut self, b: u8) {
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

    pub(super) fn step(&mut self, b: u8) {
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
                let escapes = self.backslash_strings || (matches!(self.prev, b'E' | b'e') && !is_ident(self.prev2));
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
        self.ends.push(self.chunk_base + self.at);
        let text = trim_start(&self.statement);
        if let Some(value) = conforming_strings(text) {
            self.backslash_strings = !value;
        }
        let before_semicolon = self.tail.strip_suffix(b";").unwrap_or(&self.tail);
        if starts_with_ci(text, b"COPY ") && ends_with_ci(trim_end(before_semicolon), b"FROM stdin") {
            self.pending_copy = Some(String::from_utf8_lossy(&text[5..]).into_owned());
        } else if starts_with_ci(text, b"INSERT INTO ") {
            self.saw_inserts = true;
        }
    }
}

/// `SET standard_conforming_strings = on|off;` (as pg_dump writes it; `TO`, quotes and case
/// as the server takes them): the value.
fn conforming_strings(statement: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(statement).ok()?.to_ascii_lowercase();
    let rest = text.strip_prefix("set ")?.trim_start();
    let rest = rest.strip_prefix("session ").unwrap_or(rest).trim_start();
    let rest = rest.strip_prefix("standard_conforming_strings")?.trim_start();
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix("to "))?;
    match rest.trim().trim_end_matches(';').trim().trim_matches('\'') {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

pub(super) fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
    &s[..s.len() - n]
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}
