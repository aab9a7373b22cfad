//! The sections of a PostgreSQL backup: the `pg_dumpall --roles-only` output (when present,
//! it comes first, in our files and in the bash version's), our database settings section
//! (our files since this format; see `settings`), and the `pg_dump` output.
//!
//! Pure stream handling: split the front sections off, and cut a section into the statements
//! psql would run (the restore runs them one by one, tolerating roles that already exist:
//! upstream issue #132).

use std::io::{self, BufRead};

use crate::stream::scan::postgres::PgScanner;
use crate::stream::scan::{SETTINGS_FOOTER, SETTINGS_HEADER, Scanner};

const HEADER: &str = "-- PostgreSQL database cluster dump";
const FOOTER: &str = "-- PostgreSQL database cluster dump complete";
/// A section larger than this is not a roles or settings section.
const MAX_SECTION_BYTES: usize = 64 << 20;

/// The front of a backup stream, split.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Front {
    /// The roles section, when the stream starts with one.
    pub roles: Option<String>,
    /// Our database settings section (`settings`), when present.
    pub settings: Option<String>,
    /// Every byte taken off the front that is not replayed (the sections and the comment and
    /// blank lines around them), in order.
    pub consumed: Vec<u8>,
    /// Bytes read while looking that belong to the database section (replay them first).
    pub replay: Vec<u8>,
}

/// Reads the roles section and the settings section off the front of `sql`, leaving the
/// database section unread (except for `replay`).
///
/// # Errors
/// Read errors, or a section that never ends or is implausibly large.
pub fn split_front(sql: &mut dyn BufRead) -> io::Result<Front> {
    let mut front = Front::default();
    let mut pending = String::new();
    loop {
        let mut line = String::new();
        if sql.read_line(&mut line)? == 0 {
            front.replay = pending.into_bytes();
            return Ok(front);
        }
        let body = line.trim_end();
        if body.is_empty() || body == "--" {
            pending.push_str(&line);
            continue;
        }
        let (footer, what) = match body {
            HEADER if front.roles.is_none() && front.settings.is_none() => (FOOTER, "roles"),
            SETTINGS_HEADER if front.settings.is_none() => (SETTINGS_FOOTER, "database settings"),
            _ => {
                pending.push_str(&line);
                front.replay = pending.into_bytes();
                return Ok(front);
            }
        };
        let mut section = std::mem::take(&mut pending);
        section.push_str(&line);
        read_until(sql, &mut section, footer, what)?;
        front.consumed.extend_from_slice(section.as_bytes());
        if what == "roles" {
            front.roles = Some(section);
        } else {
            front.settings = Some(section);
        }
    }
}

/// Appends lines to `section` up to and including the `footer` line.
fn read_until(sql: &mut dyn BufRead, section: &mut String, footer: &str, what: &str) -> io::Result<()> {
    loop {
        let mut line = String::new();
        if sql.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the {what} section of the backup never ends (truncated file?)"),
            ));
        }
        let done = line.trim_end() == footer;
        section.push_str(&line);
        if section.len() > MAX_SECTION_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the {what} section of the backup is larger than 64 MiB"),
            ));
        }
        if done {
            return Ok(());
        }
    }
}

/// The statements of a section as psql would run them — cut where the scanner saw each end,
/// psql meta-command lines (`\\restrict`) and comments left out — each with its first line
/// in `text`.
pub fn statements(text: &str) -> Vec<(u64, String)> {
    let mut scanner = PgScanner::new();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut first = 1;
    for (n, line) in (1u64..).zip(text.split_inclusive('\n')) {
        let at_top = scanner.at_top() && is_blank(current.as_bytes());
        scanner.feed(line.as_bytes());
        if at_top && line.trim_start().starts_with('\\') {
            continue;
        }
        if is_blank(current.as_bytes()) {
            current.clear();
            first = n;
        }
        let mut from = 0;
        for &end in scanner.statement_ends() {
            current.push_str(&line[from..end]);
            out.push((first, std::mem::take(&mut current)));
            (from, first) = (end, n);
        }
        current.push_str(&line[from..]);
    }
    out.push((first, current));
    out.retain(|(_, s)| !is_blank(s.as_bytes()));
    out
}

/// Whitespace and `--` comment lines only (nothing for the server to run; what may follow a
/// statement's `;`).
pub fn is_blank(text: &[u8]) -> bool {
    text.split(|b| *b == b'\n').all(|l| l.trim_ascii().is_empty() || l.trim_ascii_start().starts_with(b"--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\nSET default_transaction_read_only = off;\n\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE \"odd name\";\n\n\\unrestrict abc\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
    const SETTINGS: &str = "--\n-- backup-container database settings\n--\n-- encoding: UTF8\nDO $bc$BEGIN NULL; END$bc$;\n--\n-- backup-container database settings complete\n--\n\n";
    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (id int);\n";

    #[test]
    fn statements_are_cut_as_psql_would_run_them() {
        let got = statements(ROLES);
        let texts: Vec<&str> = got.iter().map(|(_, s)| s.trim()).collect();
        assert_eq!(
            texts,
            [
                "SET default_transaction_read_only = off;",
                "CREATE ROLE app;",
                "ALTER ROLE app WITH LOGIN;",
                "CREATE ROLE \"odd name\";"
            ]
        );
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [7, 9, 10, 11], "each with its line");
        let two = statements(
            "CREATE ROLE \"a;\nb\"; ALTER ROLE \"a;\nb\" LOGIN;\nCOMMENT ON ROLE x IS 'it''s; -- not a comment';\n",
        );
        let texts: Vec<&str> = two.iter().map(|(_, s)| s.trim()).collect();
        assert_eq!(
            texts,
            [
                "CREATE ROLE \"a;\nb\";",
                "ALTER ROLE \"a;\nb\" LOGIN;",
                "COMMENT ON ROLE x IS 'it''s; -- not a comment';"
            ]
        );
        assert_eq!(two.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 4], "a name holding a newline spans lines");
    }

    fn split(text: &str) -> (Front, String) {
        let mut reader = text.as_bytes();
        let front = split_front(&mut reader).unwrap();
        let rest = String::from_utf8([front.replay.clone(), reader.to_vec()].concat()).unwrap();
        (front, rest)
    }

    #[test]
    fn splits_roles_and_settings_off_the_front() {
        let text = format!("{ROLES}{SETTINGS}{DUMP}");
        let (front, rest) = split(&text);
        let roles = front.roles.clone().unwrap();
        assert!(roles.starts_with("--\n-- PostgreSQL database cluster dump\n"));
        assert!(roles.ends_with("-- PostgreSQL database cluster dump complete\n"));
        let settings = front.settings.clone().unwrap();
        assert!(settings.contains("DO $bc$") && settings.ends_with("settings complete\n"), "{settings}");
        assert_eq!(rest, format!("--\n\n{DUMP}"));
        // Nothing is lost: consumed + rest is the whole stream.
        let consumed = String::from_utf8(front.consumed).unwrap();
        assert_eq!(format!("{consumed}{rest}"), text);
    }

    #[test]
    fn files_without_front_sections_pass_through_whole() {
        let (front, rest) = split(DUMP);
        assert_eq!((front.roles, front.settings), (None, None));
        assert_eq!(rest, DUMP);
        let (front, rest) = split("SELECT 1;\n");
        assert_eq!(front.replay, b"SELECT 1;\n");
        assert_eq!(rest, "SELECT 1;\n");
        let (front, rest) = split(&format!("{ROLES}{DUMP}"));
        assert!(front.roles.is_some() && front.settings.is_none());
        assert_eq!(rest, format!("--\n\n{DUMP}"));
    }

    #[test]
    fn unterminated_sections_are_errors() {
        let mut reader = "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE app;\n".as_bytes();
        assert!(split_front(&mut reader).is_err());
        let cut = &SETTINGS[..SETTINGS.find("--\n-- backup-container database settings complete").unwrap()];
        let text = format!("{ROLES}{cut}");
        let mut reader = text.as_bytes();
        assert!(split_front(&mut reader).unwrap_err().to_string().contains("database settings section"));
    }
}
