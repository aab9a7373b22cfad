//! What every engine's load has in common: counting all SQL errors a client prints (keeping
//! the first few in full, with the line of the backup file they come from), and comparing the
//! rows the dump stream held with the rows the restored tables hold.

use std::sync::{Arc, Mutex};

use crate::stream::scan::{Summary, TableData};

/// Errors kept in full; the rest are only counted.
const KEEP_ERRORS: usize = 5;
/// Context lines (`LINE 1: ...`, `DETAIL: ...`) kept after each kept error.
const KEEP_CONTEXT: usize = 3;

/// The SQL errors of one load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlErrors {
    pub count: u64,
    /// The first errors, each with the backup file's line and the client's context lines.
    pub first: Vec<String>,
    context_left: usize,
}

impl SqlErrors {
    /// One stderr line of `psql -f -`: `psql:<stdin>:25: ERROR:  ...` (its line is of what psql
    /// read; `offset` lines of the file came before that).
    pub fn observe_psql(&mut self, line: &str, offset: u64) {
        self.observe_psql_mapped(line, &|n| Some(n + offset));
    }

    /// `observe_psql` for a session fed pieces of the file: `file_line` maps the session's
    /// line to the file's, `None` for text the loader wrote itself (a progress marker, whose
    /// only possible error repeats an earlier one: not counted).
    pub fn observe_psql_mapped(&mut self, line: &str, file_line: &dyn Fn(u64) -> Option<u64>) {
        let located = line.strip_prefix("psql:<stdin>:").and_then(|rest| {
            let (n, message) = rest.split_once(": ")?;
            Some((n.parse::<u64>().ok()?, message))
        });
        match located {
            Some((n, message)) if is_error(message) => match file_line(n) {
                Some(n) => self.error(Some(n), message),
                None => self.context_left = 0,
            },
            Some(_) => self.context_left = 0,
            None if is_error(line) => self.error(None, line),
            None => self.context(line),
        }
    }

    /// One stderr line of `mariadb`: `ERROR 1146 (42S02) at line 25: Table ... doesn't exist`
    /// (its lines are the file's: the whole file is fed to it).
    pub fn observe_mariadb(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("ERROR ") {
            let at = rest.split_once(" at line ").and_then(|(code, tail)| {
                let (n, message) = tail.split_once(": ")?;
                Some((n.parse::<u64>().ok()?, format!("ERROR {code}: {message}")))
            });
            match at {
                Some((n, message)) => self.error(Some(n), &message),
                None => self.error(None, line),
            }
        } else {
            self.context(line);
        }
    }

    /// An error our own client received: `lines[0]` is `ERROR:  message`, the rest its
    /// `DETAIL:`/`HINT:`/`CONTEXT:` lines; `line` is the backup file's.
    pub fn record(&mut self, line: Option<u64>, lines: &[String]) {
        if let Some((first, rest)) = lines.split_first() {
            self.error(line, first);
            for l in rest {
                self.context(l);
            }
        }
    }

    fn error(&mut self, line: Option<u64>, message: &str) {
        self.count += 1;
        if self.first.len() < KEEP_ERRORS {
            self.first.push(match line {
                Some(n) => format!("line {n}: {}", message.trim()),
                None => message.trim().to_string(),
            });
            self.context_left = KEEP_CONTEXT;
        } else {
            self.context_left = 0;
        }
    }

    fn context(&mut self, line: &str) {
        if self.context_left > 0
            && let Some(last) = self.first.last_mut()
        {
            last.push_str("\n    ");
            last.push_str(line.trim_end());
            self.context_left -= 1;
        }
    }

    /// `N errors; first: ...` for logs and notifications.
    pub fn describe(&self) -> String {
        match self.first.first() {
            None => "no errors".into(),
            Some(first) if self.count == 1 => format!("1 error: {first}"),
            Some(first) => format!("{} errors; the first: {first}", self.count),
        }
    }
}

fn is_error(message: &str) -> bool {
    let m = message.trim_start();
    m.starts_with("ERROR:") || m.starts_with("FATAL:") || m.starts_with("PANIC:")
}

/// A shared tally that a stderr tap can fill while the client runs.
pub type SharedErrors = Arc<Mutex<SqlErrors>>;

/// The tally's current state.
pub fn snapshot(shared: &SharedErrors) -> SqlErrors {
    shared.lock().map(|e| e.clone()).unwrap_or_default()
}

/// A table whose restored rows differ from the dump's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `schema.table`.
    pub table: String,
    /// Rows in the dump stream.
    pub expected: u64,
    /// Rows in the restored table; `None` when the table is missing.
    pub found: Option<u64>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.found {
            Some(n) => write!(f, "{}: {} rows in the backup, {n} restored", self.table, self.expected),
            None => write!(f, "{}: {} rows in the backup, table missing after the restore", self.table, self.expected),
        }
    }
}

/// The result of comparing row counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountCheck {
    /// Tables compared, and the rows they held.
    pub tables: u64,
    pub rows: u64,
    pub mismatches: Vec<Mismatch>,
    /// Why no comparison was made (rows unknown, check disabled), when none was.
    pub skipped: Option<String>,
}

impl CountCheck {
    pub fn skipped(reason: &str) -> CountCheck {
        CountCheck { skipped: Some(reason.to_string()), ..Default::default() }
    }

    /// `tables checked, rows checked` for summary lines.
    pub fn describe(&self) -> String {
        match &self.skipped {
            Some(why) => format!("row counts not checked ({why})"),
            None => format!("{} tables checked, {} rows checked", self.tables, self.rows),
        }
    }
}

/// The counts a client printed, one `<index><sep><count>` line per table, by index; a table
/// without a line (absent from the database) or with an index out of range is `None`.
pub fn parse_counts(stdout: &str, sep: char, tables: usize) -> Vec<Option<u64>> {
    let mut found = vec![None; tables];
    for line in stdout.lines() {
        if let Some((i, n)) = line.split_once(sep)
            && let (Ok(i), Ok(n)) = (i.trim().parse::<usize>(), n.trim().parse::<u64>())
            && i < found.len()
        {
            found[i] = Some(n);
        }
    }
    found
}

/// Compares the stream's tables with what was counted after the load (`found[i]` is the
/// count of `summary.tables[i]`, `None` for a missing table).
pub fn compare(tables: &[TableData], found: &[Option<u64>]) -> CountCheck {
    let mut check = CountCheck::default();
    for (t, f) in tables.iter().zip(found) {
        check.tables += 1;
        check.rows += t.rows;
        if *f != Some(t.rows) {
            check.mismatches.push(Mismatch { table: t.qualified(), expected: t.rows, found: *f });
        }
    }
    check
}

/// Why a stream's rows cannot be compared, if they cannot.
pub fn uncountable(summary: &Summary) -> Option<&'static str> {
    if !summary.rows_known {
        Some("the dump holds INSERT statements, not COPY data: rows unknown")
    } else if summary.tables.is_empty() {
        Some("the dump holds no table data")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_counts_are_read_by_index() {
        assert_eq!(parse_counts("0|5\n2| 7\nnoise\n9|1\n1|x\n", '|', 3), [Some(5), None, Some(7)]);
        assert_eq!(parse_counts("1\t3\n", '\t', 2), [None, Some(3)]);
    }

    #[test]
    fn psql_errors_are_all_counted_and_the_first_named_with_the_file_line() {
        let mut e = SqlErrors::default();
        e.observe_psql(
            "psql:<stdin>:25: ERROR:  could not access file \"$libdir/regress\": No such file or directory",
            100,
        );
        e.observe_psql("LINE 1: CREATE FUNCTION x() ...", 100);
        e.observe_psql("psql:<stdin>:30: WARNING:  something", 100);
        e.observe_psql("unrelated", 100);
        for n in 0..60 {
            e.observe_psql(&format!("psql:<stdin>:{}: ERROR:  function x() does not exist", 40 + n), 100);
        }
        assert_eq!(e.count, 61);
        assert_eq!(e.first.len(), KEEP_ERRORS);
        assert_eq!(
            e.first[0],
            "line 125: ERROR:  could not access file \"$libdir/regress\": No such file or directory\n    LINE 1: CREATE FUNCTION x() ..."
        );
        assert!(e.describe().starts_with("61 errors; the first: line 125: ERROR:"), "{}", e.describe());
        let mut f = SqlErrors::default();
        f.observe_psql("psql: error: connection to server failed: FATAL:  x", 0);
        assert_eq!(f.count, 0, "not a located error line");
        f.observe_psql("FATAL:  terminating connection due to administrator command", 0);
        assert_eq!(f.count, 1);
    }

    #[test]
    fn mariadb_errors() {
        let mut e = SqlErrors::default();
        e.observe_mariadb("ERROR 1146 (42S02) at line 25: Table 'shop.x' doesn't exist");
        e.observe_mariadb("ERROR 2013 (HY000): Lost connection");
        assert_eq!(e.count, 2);
        assert_eq!(e.first[0], "line 25: ERROR 1146 (42S02): Table 'shop.x' doesn't exist");
    }

    #[test]
    fn counts_compared() {
        let t = |name: &str, rows| TableData { schema: "s".into(), table: name.into(), rows, bytes: 0 };
        let check = compare(&[t("a", 3), t("b", 2000), t("c", 5)], &[Some(3), Some(1000), None]);
        assert_eq!((check.tables, check.rows), (3, 2008));
        let text: Vec<String> = check.mismatches.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "s.b: 2000 rows in the backup, 1000 restored",
                "s.c: 5 rows in the backup, table missing after the restore"
            ]
        );
    }
}
