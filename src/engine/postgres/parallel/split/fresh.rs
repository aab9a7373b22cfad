//! Tables loaded in the transaction that truncates them, as `pg_restore -j` loads the tables
//! it created: `BEGIN; TRUNCATE ONLY t; COPY t … WITH (FREEZE); COMMIT;`. The server then
//! keeps no free-space map while it loads (measured: about a CPU-second of kernel time per GB
//! here), writes the rows frozen and their pages all-visible (the index builds that read them
//! next set no hint bits and write no page again, and the first vacuum has nothing to freeze),
//! and with `wal_level=minimal` (the throwaway servers) the rows skip the WAL.
//!
//! Only where a TRUNCATE can remove nothing and stop nothing: a table this dump made in its
//! pre-data with a plain `CREATE TABLE` (not a partitioned one, whose rows are its
//! partitions'; never a table an extension made, whose default rows the dump does not hold),
//! loaded in a session that may truncate it (`Truncate::Off` otherwise), when nothing in
//! pre-data can have put rows in it or fire on the TRUNCATE (`Plan::replies_exact`: no
//! trigger, rule or row change) and no pre-data table definition names a foreign key (which
//! would make the TRUNCATE fail). A second block of the same table follows the first in its
//! session and never truncates.

use std::collections::{HashMap, HashSet};

use super::super::plan::{without_comments, words};

/// Which tables' rows load in the transaction that truncates them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncate {
    /// None: the session may not truncate every table (not a superuser).
    Off,
    /// The first piece of each table the dump made; a table cut in pieces commits that
    /// transaction with its first piece, and its other pieces load as plain COPYs.
    FirstPiece,
    /// Each table the dump made whole in one session (throwaway servers: with
    /// `wal_level=minimal` its rows skip the WAL).
    WholeTable,
}

pub(super) struct Fresh {
    pub(super) mode: Truncate,
    /// Tables the dump's pre-data made with a plain `CREATE TABLE`, as written.
    created: HashSet<Vec<u8>>,
    /// A pre-data table definition names a foreign key.
    references: bool,
    /// The lane that took each truncated table: its later blocks follow there.
    pub(super) taken: HashMap<Vec<u8>, usize>,
}

impl Fresh {
    pub(super) fn new(mode: Truncate) -> Self {
        Fresh { mode, created: HashSet::new(), references: false, taken: HashMap::new() }
    }

    /// A statement of the dump's pre-data.
    pub(super) fn pre_data(&mut self, statement: &[u8]) {
        if self.mode == Truncate::Off {
            return;
        }
        let text = without_comments(statement);
        if let Some(table) = created_table(text) {
            self.created.insert(table.to_vec());
        }
        let mut w = words(text).map(<[u8]>::to_ascii_uppercase);
        let defines_table = matches!(
            (w.next().as_deref(), w.next().as_deref(), w.next().as_deref()),
            (Some(b"CREATE"), Some(b"TABLE"), _)
                | (Some(b"CREATE"), _, Some(b"TABLE"))
                | (Some(b"ALTER"), Some(b"TABLE"), _)
        );
        if defines_table && contains_word(&text.to_ascii_uppercase(), b"REFERENCES") {
            self.references = true;
        }
    }

    /// Whether the first COPY block of `table` loads in a transaction that truncates it.
    pub(super) fn truncates(&self, table: &[u8], replies_exact: bool) -> bool {
        self.mode != Truncate::Off
            && replies_exact
            && !self.references
            && self.created.contains(table)
            && !self.taken.contains_key(table)
    }
}

/// Whether `word` stands in `upper` as a word of its own (not part of an identifier).
fn contains_word(upper: &[u8], word: &[u8]) -> bool {
    let in_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$';
    upper.windows(word.len()).enumerate().any(|(i, w)| {
        w == word && (i == 0 || !in_word(&upper[i - 1])) && upper.get(i + word.len()).is_none_or(|b| !in_word(b))
    })
}

/// The table a plain `CREATE [UNLOGGED] TABLE [IF NOT EXISTS] name ...` makes, as written
/// (quotes kept, as its COPY names it); `None` for a partitioned table and anything else.
pub fn created_table(statement: &[u8]) -> Option<&[u8]> {
    let text = without_comments(statement);
    let mut w = words(text);
    if !w.next()?.eq_ignore_ascii_case(b"CREATE") {
        return None;
    }
    let mut next = w.next()?;
    if next.eq_ignore_ascii_case(b"UNLOGGED") {
        next = w.next()?;
    }
    if !next.eq_ignore_ascii_case(b"TABLE") {
        return None;
    }
    let mut name = w.next()?;
    if name.eq_ignore_ascii_case(b"IF") {
        let (not, exists) = (w.next()?, w.next()?);
        if !not.eq_ignore_ascii_case(b"NOT") || !exists.eq_ignore_ascii_case(b"EXISTS") {
            return None;
        }
        name = w.next()?;
    }
    let partitioned = words(text).collect::<Vec<_>>().windows(2).any(|p| {
        let first = p[0].to_ascii_uppercase();
        (first == b"PARTITION" || first.ends_with(b")PARTITION")) && p[1].eq_ignore_ascii_case(b"BY")
    });
    (!partitioned && plain_name(name)).then_some(name)
}

/// Whether `name` is a (schema-qualified) name and nothing else: letters, digits, `_`, `$`,
/// `.` and non-ASCII outside double quotes, every quote closed. The TRUNCATE built from it
/// is then one statement, whatever a hostile dump names its tables.
fn plain_name(name: &[u8]) -> bool {
    let mut quoted = false;
    let all = name.iter().all(|&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        quoted || b == b'"' || b.is_ascii_alphanumeric() || b"_$.".contains(&b) || !b.is_ascii()
    });
    all && !quoted && !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_fresh_when_the_dump_made_it_with_a_plain_create_table() {
        let made = [
            ("CREATE TABLE public.a (\n    id integer\n);", "public.a"),
            ("--\n-- Name: a; Type: TABLE\n--\n\nCREATE TABLE public.a (id int);", "public.a"),
            ("CREATE UNLOGGED TABLE \"My s\".\"x (y)\" (id int);", "\"My s\".\"x (y)\""),
            ("create table if not exists t (id int);", "t"),
            ("CREATE TABLE public.m_2024 PARTITION OF public.m FOR VALUES FROM (1) TO (2);", "public.m_2024"),
            ("CREATE TABLE public.child (\n)\nINHERITS (public.parent);", "public.child"),
            ("CREATE TABLE \"partition by\" (id int);", "\"partition by\""),
            ("CREATE TABLE \"we\"\"ird\ntable; x\".\u{e9}t\u{e9} (id int);", "\"we\"\"ird\ntable; x\".\u{e9}t\u{e9}"),
        ];
        for (statement, name) in made {
            assert_eq!(created_table(statement.as_bytes()), Some(name.as_bytes()), "{statement}");
        }
        let not = [
            "CREATE TABLE public.m (\n    at date\n)\nPARTITION BY RANGE (at);",
            "CREATE TABLE public.m (at date) partition by list (at);",
            "CREATE TABLE m (at date)PARTITION BY RANGE (at);",
            "CREATE FOREIGN TABLE public.f (id int) SERVER s;",
            "CREATE VIEW public.v AS SELECT 1;",
            "CREATE TEMPORARY TABLE t (id int);",
            "CREATE TABLE IF EXISTS t (id int);",
            "ALTER TABLE public.a OWNER TO app;",
            "CREATE TABLE public.a;DROP (id int);",
            "CREATE TABLE \"unclosed (id int);",
            "CREATE",
        ];
        for statement in not {
            assert_eq!(created_table(statement.as_bytes()), None, "{statement}");
        }
    }

    fn fresh(mode: Truncate, pre: &[&str]) -> Fresh {
        let mut f = Fresh::new(mode);
        for s in pre {
            f.pre_data(s.as_bytes());
        }
        f
    }

    #[test]
    fn only_a_table_the_dump_made_truncates_and_only_while_nothing_could_object() {
        let pre = ["CREATE TABLE public.a (id int);", "COMMENT ON TABLE public.a IS 'references nothing';"];
        let f = fresh(Truncate::FirstPiece, &pre);
        assert!(f.truncates(b"public.a", true));
        assert!(!f.truncates(b"public.a", false), "a trigger or a row change in pre-data");
        assert!(!f.truncates(b"public.spatial_ref_sys", true), "made by an extension, not the dump");
        assert!(!fresh(Truncate::Off, &pre).truncates(b"public.a", true), "a session that may not truncate");
        for fk in [
            "CREATE TABLE public.b (id int REFERENCES public.a (id));",
            "ALTER TABLE public.b ADD CONSTRAINT b_fk FOREIGN KEY (id) references public.a(id);",
        ] {
            let f = fresh(Truncate::WholeTable, &[pre[0], fk]);
            assert!(!f.truncates(b"public.a", true), "{fk}");
        }
        let mut f = fresh(Truncate::WholeTable, &pre);
        f.taken.insert(b"public.a".to_vec(), 1);
        assert!(!f.truncates(b"public.a", true), "a second block never truncates");
        assert!(!contains_word(b"CREATE TABLE T (REFERENCES_TO INT)", b"REFERENCES"));
    }
}
