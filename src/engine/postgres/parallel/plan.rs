//! What each piece of a plain dump is, for the parallel load: the section an object header
//! opens, and which top-level statements are session state that every session must share.
//!
//! pg_dump writes its objects in three sections (pre-data, data, post-data), each object under
//! a `-- Name: N; Type: KIND; Schema: S; Owner: O` header (`-- Data for Name:` for table data).
//! Only kinds that pg_dump never writes before the data move the load into post-data.

/// Where an object's statements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In the serial session, in dump order; in post-data (triggers, rules, policies,
    /// publications, comments, ACLs, event triggers, materialized view refreshes...) last.
    Serial,
    /// A table's rows (`TABLE DATA`): one of the parallel sessions.
    TableData,
    /// Sequence values and large objects' contents: the serial session, beside the rows.
    OtherData,
    /// Index builds and primary key / unique / exclusion / check constraints: parallel, after
    /// all the rows and before anything below.
    Build,
    /// `ALTER INDEX ... ATTACH PARTITION`: serially, after every index exists.
    Attach,
    /// Foreign keys: parallel, after every index is attached (a key on a partitioned table
    /// needs its whole index).
    ForeignKey,
}

/// The header's type, when `line` is an object header.
pub fn header_kind(line: &[u8]) -> Option<(bool, String)> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let (data, rest) = match text.strip_prefix("-- Data for Name: ") {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix("-- Name: ")?),
    };
    let kind = rest.split("; ").find_map(|f| f.strip_prefix("Type: "))?;
    Some((data, kind.to_string()))
}

/// The route of an object's statements, given its header and whether post-data has begun.
pub fn route(data_header: bool, kind: &str) -> Route {
    match kind {
        "TABLE DATA" => Route::TableData,
        "SEQUENCE SET" | "BLOBS" | "BLOB DATA" | "LARGE OBJECTS" => Route::OtherData,
        _ if data_header => Route::OtherData,
        "INDEX" | "CONSTRAINT" | "CHECK CONSTRAINT" => Route::Build,
        "INDEX ATTACH" => Route::Attach,
        "FK CONSTRAINT" => Route::ForeignKey,
        _ => Route::Serial,
    }
}

/// Whether `statement` is what pg_dump writes in an object of this route (its `n`th statement,
/// from 0). Anything else (a statement appended by hand, another tool's output) is run serially,
/// with everything after it.
pub fn expected(route: Route, statement: &[u8], n: u32) -> bool {
    let text = statement.trim_ascii_start();
    let starts = |p: &[&str]| p.iter().any(|p| text.starts_with(p.as_bytes()));
    match route {
        Route::Serial => true,
        Route::TableData => starts(&["COPY ", "INSERT INTO "]),
        Route::OtherData => starts(&["SELECT pg_catalog.", "BEGIN;", "COMMIT;"]),
        Route::Build => n == 0 && starts(&["CREATE INDEX ", "CREATE UNIQUE INDEX ", "ALTER TABLE "]),
        Route::Attach => n == 0 && starts(&["ALTER INDEX "]),
        Route::ForeignKey => n == 0 && starts(&["ALTER TABLE "]),
    }
}

/// Kinds that pg_dump writes only in post-data: the first one ends the data.
pub fn starts_post_data(kind: &str) -> bool {
    matches!(
        kind,
        "INDEX"
            | "CONSTRAINT"
            | "INDEX ATTACH"
            | "FK CONSTRAINT"
            | "TRIGGER"
            | "RULE"
            | "POLICY"
            | "ROW SECURITY"
            | "PUBLICATION"
            | "PUBLICATION TABLE"
            | "PUBLICATION TABLES IN SCHEMA"
            | "SUBSCRIPTION"
            | "EVENT TRIGGER"
            | "MATERIALIZED VIEW DATA"
            | "STATISTICS"
    )
}

/// The setting a top-level statement changes when it is session state (`SET x = ...`,
/// `SELECT pg_catalog.set_config('x', ...)`, `RESET x`, `SET SESSION AUTHORIZATION ...`),
/// written on one line as pg_dump does. Such statements are replayed into every session.
pub fn state_key(statement: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(statement).ok()?.trim();
    // One statement only: a line with another statement after the `;` is not state.
    let body = text.strip_suffix(';')?;
    if body.contains(';') || body.contains('\n') {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("select pg_catalog.set_config('") {
        let (name, tail) = rest.split_once('\'')?;
        // The portable form of a newer pg_dump's header setting (`scan::postgres::header`).
        let portable = format!(" from pg_catalog.pg_settings where name = '{name}'");
        let tail = tail.trim_end().strip_suffix(portable.as_str()).unwrap_or(tail).trim_end();
        // `set_config(name, value, false)`: session-wide; `true` would be transaction-local.
        return tail.ends_with("false)").then(|| name.to_string());
    }
    let rest = lower.strip_prefix("set ").or_else(|| lower.strip_prefix("reset "))?.trim_start();
    // `SET TRANSACTION ...` and `SET CONSTRAINTS ...` are not session state; `SET
    // transaction_timeout = 0` (pg_dump 17+) is.
    let keyword = |k: &str| rest.strip_prefix(k).is_some_and(|r| r.is_empty() || r.starts_with(char::is_whitespace));
    if keyword("local") || keyword("transaction") || keyword("constraints") {
        return None;
    }
    let rest = rest.strip_prefix("session ").map(str::trim_start).unwrap_or(rest);
    if rest.starts_with("authorization") {
        return Some("session authorization".into());
    }
    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
    (!name.is_empty()).then_some(name)
}

/// The table a `COPY <name> (...) FROM stdin;` loads, as written (quotes kept).
pub fn copy_target(statement: &[u8]) -> &[u8] {
    let text = statement.trim_ascii_start();
    let text = text.strip_prefix(b"COPY ").unwrap_or(text);
    let mut quoted = false;
    let end = text.iter().position(|&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        !quoted && (b == b' ' || b == b'(')
    });
    &text[..end.unwrap_or(text.len())]
}

/// The table an index or constraint build is on, as written (quotes kept, as in the COPY
/// that loads it): `CREATE [UNIQUE] INDEX name ON [ONLY] t ...`, `ALTER TABLE [ONLY] t ...`.
pub fn build_target(statement: &[u8]) -> Option<&[u8]> {
    let mut words = words(statement);
    let first = words.next()?;
    let mut rest = if first == b"ALTER" {
        (words.next()? == b"TABLE").then_some(words)?
    } else if first == b"CREATE" {
        words.find(|w| *w == b"ON")?;
        words
    } else {
        return None;
    };
    let table = rest.next()?;
    if table == b"ONLY" { rest.next() } else { Some(table) }
}

/// The statement after its leading comment lines and white space.
pub(super) fn without_comments(statement: &[u8]) -> &[u8] {
    let mut text = statement.trim_ascii_start();
    while text.starts_with(b"--") {
        let next = memchr::memchr(b'\n', text).map_or(text.len(), |n| n + 1);
        text = text[next..].trim_ascii_start();
    }
    text
}

/// The words of a statement: split at white space outside double quotes.
pub(super) fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    text.split(move |&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        !quoted && b.is_ascii_whitespace()
    })
    .filter(|w| !w.is_empty())
}

/// Whether a `COPY` statement is pg_dump's own text-format form, whose rows are one line each
/// and can therefore be split between sessions at any line.
pub fn splittable_copy(statement: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(statement) else { return false };
    let text = text.trim();
    text.starts_with("COPY ") && text.ends_with(" FROM stdin;") && !text.contains('\n') && {
        let between = &text[5..text.len() - " FROM stdin;".len()];
        // `name (cols)` or `name`: no WITH, CSV or BINARY options after the column list.
        !between.to_ascii_uppercase().contains(" WITH ")
            && !between.ends_with("CSV")
            && !between.to_ascii_uppercase().ends_with(" BINARY")
    }
}

/// The same COPY (a `splittable_copy`) with `FREEZE`, for a block in the transaction that
/// truncated its table: the rows are written frozen and their pages all-visible, so reading
/// them after the load (the row counts) sets no hint bits and writes no page again.
pub fn frozen(statement: &[u8]) -> Vec<u8> {
    let text = statement.trim_ascii_end();
    let tail = &statement[text.len()..];
    match text.strip_suffix(b" FROM stdin;") {
        Some(head) => [head, b" FROM stdin WITH (FREEZE);", tail].concat(),
        None => statement.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_tables_copy_is_frozen() {
        assert_eq!(frozen(b"COPY public.a (id) FROM stdin;\n"), b"COPY public.a (id) FROM stdin WITH (FREEZE);\n");
        assert_eq!(
            frozen(b"COPY \"x FROM stdin;\" (id) FROM stdin;"),
            b"COPY \"x FROM stdin;\" (id) FROM stdin WITH (FREEZE);"
        );
        assert_eq!(
            frozen(b"COPY a FROM stdin CSV;\n"),
            b"COPY a FROM stdin CSV;\n",
            "not the form pg_dump writes: as it is"
        );
    }

    #[test]
    fn headers_and_routes() {
        let h = header_kind(b"-- Name: t_fk t_fk_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: app\n");
        assert_eq!(h, Some((false, "FK CONSTRAINT".into())));
        let d = header_kind(
            "-- Data for Name: Tåble \"quoted\"; Type: TABLE DATA; Schema: Ünïcode sch; Owner: app".as_bytes(),
        );
        assert_eq!(d, Some((true, "TABLE DATA".into())));
        assert_eq!(header_kind(b"-- Dumped by pg_dump version 15.18"), None);
        assert_eq!(route(true, "TABLE DATA"), Route::TableData);
        assert_eq!(route(false, "SEQUENCE SET"), Route::OtherData);
        assert_eq!(route(true, "BLOBS"), Route::OtherData);
        assert_eq!(route(false, "INDEX"), Route::Build);
        assert_eq!(route(false, "INDEX ATTACH"), Route::Attach);
        assert_eq!(route(false, "FK CONSTRAINT"), Route::ForeignKey);
        assert_eq!(route(false, "COMMENT"), Route::Serial);
        assert!(starts_post_data("INDEX") && starts_post_data("EVENT TRIGGER"));
        assert!(!starts_post_data("COMMENT") && !starts_post_data("ACL") && !starts_post_data("TABLE"));
    }

    #[test]
    fn what_each_route_holds() {
        assert!(expected(Route::TableData, b"COPY public.a (id) FROM stdin;\n", 0));
        assert!(!expected(Route::TableData, b"DELETE FROM public.a;\n", 0));
        assert!(expected(Route::OtherData, b"SELECT pg_catalog.setval('public.s', 42, true);", 0));
        assert!(!expected(Route::OtherData, b"SELECT public.f();", 0));
        assert!(expected(Route::Build, b"ALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_pkey PRIMARY KEY (id);", 0));
        assert!(!expected(Route::Build, b"CREATE INDEX b ON public.b (id);", 1), "one statement per object");
        assert!(!expected(Route::ForeignKey, b"CREATE FUNCTION public.f() ...;", 0));
        assert!(expected(Route::Serial, b"anything;", 7));
    }

    #[test]
    fn session_state() {
        assert_eq!(state_key(b"SET statement_timeout = 0;\n").as_deref(), Some("statement_timeout"));
        assert_eq!(
            state_key(b"SELECT pg_catalog.set_config('search_path', '', false);").as_deref(),
            Some("search_path")
        );
        assert_eq!(state_key(b"SET default_tablespace = '';").as_deref(), Some("default_tablespace"));
        assert_eq!(state_key(b"SET SESSION AUTHORIZATION 'app';").as_deref(), Some("session authorization"));
        assert_eq!(state_key(b"RESET SESSION AUTHORIZATION;").as_deref(), Some("session authorization"));
        assert_eq!(state_key(b"SET search_path = public, pg_catalog;").as_deref(), Some("search_path"));
        assert_eq!(state_key(b"SELECT pg_catalog.set_config('search_path', '', true);"), None);
        assert_eq!(state_key(b"SET LOCAL work_mem = '1GB';"), None);
        assert_eq!(state_key(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;"), None);
        assert_eq!(state_key(b"SET CONSTRAINTS ALL DEFERRED;"), None);
        // pg_dump 17+'s header, and its portable form (`scan::postgres::header`).
        assert_eq!(state_key(b"SET transaction_timeout = 0;").as_deref(), Some("transaction_timeout"));
        assert_eq!(
            state_key(b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';").as_deref(),
            Some("transaction_timeout")
        );
        assert_eq!(state_key(b"SET x = 1; CREATE TABLE t ();"), None);
        assert_eq!(state_key(b"SELECT pg_catalog.setval('public.s', 42, true);"), None);
        assert_eq!(state_key(b"CREATE TABLE settings (a int);"), None);
    }

    #[test]
    fn the_table_a_build_is_on() {
        let t = |s: &str| build_target(s.as_bytes()).map(|t| String::from_utf8_lossy(t).into_owned());
        assert_eq!(
            t("ALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_pkey PRIMARY KEY (id);").as_deref(),
            Some("public.a")
        );
        assert_eq!(t("ALTER TABLE public.a ADD CONSTRAINT c CHECK (id > 0) NOT VALID;").as_deref(), Some("public.a"));
        assert_eq!(t("CREATE INDEX b_i ON public.b USING btree (id);").as_deref(), Some("public.b"));
        assert_eq!(t("CREATE UNIQUE INDEX u ON ONLY public.p USING btree (id);").as_deref(), Some("public.p"));
        assert_eq!(
            t("CREATE INDEX \"an ON index\" ON \"Ünïcode sch\".\"Tåble \"\"q ON\"\"\" USING btree (id);").as_deref(),
            Some("\"Ünïcode sch\".\"Tåble \"\"q ON\"\"\""),
            "words in quotes are not keywords"
        );
        assert_eq!(
            t("CREATE INDEX \"an ON index\" ON \"Ünïcode sch\".\"Tåble \"\"q ON\"\"\" USING btree (id);")
                .map(String::into_bytes),
            Some(copy_target_of("COPY \"Ünïcode sch\".\"Tåble \"\"q ON\"\"\" (id) FROM stdin;")),
            "the same text as the COPY names"
        );
        assert_eq!(t("COMMENT ON INDEX public.a_pkey IS 'k';"), None);
        assert_eq!(t("ALTER INDEX public.p_i ATTACH PARTITION public.c_i;"), None);
    }

    fn copy_target_of(copy: &str) -> Vec<u8> {
        copy_target(copy.as_bytes()).to_vec()
    }

    #[test]
    fn copy_forms() {
        assert!(splittable_copy(b"COPY public.t (a, b) FROM stdin;\n"));
        assert!(splittable_copy(
            "COPY \"Ünïcode sch\".\"Tåble \"\"quoted\"\"\" (id, \"naïve col\", h) FROM stdin;".as_bytes()
        ));
        assert!(!splittable_copy(b"COPY t FROM stdin WITH (FORMAT csv);"));
        assert!(!splittable_copy(b"COPY t FROM stdin CSV;"));
        assert!(!splittable_copy(b"COPY t (a) FROM '/etc/passwd';"));
    }
}
