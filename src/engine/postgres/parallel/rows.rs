//! Which statements can change a table's rows, for the row counts taken before the end of a
//! parallel load: a post-data statement that may (`keeps_rows` false) sends the counts to the
//! end of the load; a pre-data statement that may make a table hold other rows than the
//! server's replies to its COPYs say (`keeps_replies` false) makes the restore count the
//! tables instead of taking those replies. Both are allowlists of what pg_dump writes there:
//! anything else, or anything unknown, takes the slower, sure way.

/// The statement without leading comments, and its first words in upper case.
fn head(statement: &[u8]) -> (&[u8], Vec<String>) {
    let text = super::plan::without_comments(statement);
    let head: String = String::from_utf8_lossy(&text[..text.len().min(64)]).to_ascii_uppercase();
    (text, head.split_whitespace().map(str::to_string).collect())
}

fn starts(words: &[String], p: &[&str]) -> bool {
    words.len() >= p.len() && words.iter().zip(p).all(|(w, p)| w == p)
}

/// Whether a post-data statement leaves every table's row count as the data section left it:
/// the kinds pg_dump writes there (triggers, rules, policies, grants, comments, publications,
/// subscriptions, statistics, materialized view refreshes, `ALTER ...` other than attaching
/// or detaching partitions, renaming, or moving to another schema). Anything else (a `DELETE`, a function call, a `DO` block added by
/// hand) may change rows: the counts then wait for the end of the load.
pub fn keeps_rows(statement: &[u8]) -> bool {
    let (text, words) = head(statement);
    let head = words.join(" ");
    let starts = |p: &[&str]| starts(&words, p);
    const KEEP: &[&[&str]] = &[
        &["CREATE", "TRIGGER"],
        &["CREATE", "CONSTRAINT", "TRIGGER"],
        &["CREATE", "RULE"],
        &["CREATE", "POLICY"],
        &["CREATE", "PUBLICATION"],
        &["CREATE", "SUBSCRIPTION"],
        &["CREATE", "EVENT", "TRIGGER"],
        &["CREATE", "INDEX"],
        &["CREATE", "UNIQUE", "INDEX"],
        &["CREATE", "STATISTICS"],
        &["REFRESH", "MATERIALIZED", "VIEW"],
        &["COMMENT", "ON"],
        &["SECURITY", "LABEL"],
        &["GRANT"],
        &["REVOKE"],
        &["ALTER"],
    ];
    // PostgreSQL 18's statistics.
    let stats = ["RELATION", "ATTRIBUTE"]
        .iter()
        .any(|k| head.starts_with(&format!("SELECT * FROM PG_CATALOG.PG_RESTORE_{k}_STATS(")));
    // Rows moved under another parent, or a table that no longer has the name it was
    // counted by: the count at the end judges those.
    // The whole statement, upper case, its white space made single spaces.
    let all = || {
        let upper = String::from_utf8_lossy(text).to_ascii_uppercase();
        format!(" {} ", upper.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let moves_rows = (starts(&["ALTER", "TABLE"])
        && ["ATTACH PARTITION", "DETACH PARTITION"].iter().any(|k| all().contains(k)))
        || (starts(&["ALTER"]) && [" RENAME ", " SET SCHEMA "].iter().any(|k| all().contains(k)));
    let alter_extension = starts(&["ALTER", "EXTENSION"]);
    (stats || KEEP.iter().any(|k| starts(k))) && !moves_rows && !alter_extension
}

/// Whether a pre-data statement leaves the server's replies to the COPYs after it exact: what
/// pg_dump writes there (`CREATE` of schemas, types, functions, tables, sequences, views and
/// the rest, `ALTER`, `COMMENT`, `GRANT`, `REVOKE`, `SECURITY LABEL`, large objects made and
/// sequences set) — but not a trigger, a rule other than a view's `_RETURN`, an event trigger
/// or a foreign table (whose rows are elsewhere), and no statement that changes rows itself.
/// Not caught: a CHECK constraint or a default that calls a function writing to another
/// table (pg_dump lists every column in its COPY, so defaults do not run), and a trigger that
/// an extension's own script creates on a table whose rows the dump holds.
pub fn keeps_replies(statement: &[u8]) -> bool {
    let (text, words) = head(statement);
    const REFUSED: &[&[&str]] = &[
        &["CREATE", "TRIGGER"],
        &["CREATE", "OR", "REPLACE", "TRIGGER"],
        &["CREATE", "CONSTRAINT", "TRIGGER"],
        &["CREATE", "OR", "REPLACE", "CONSTRAINT", "TRIGGER"],
        &["CREATE", "EVENT", "TRIGGER"],
        &["CREATE", "FOREIGN", "TABLE"],
    ];
    if REFUSED.iter().any(|k| starts(&words, k)) {
        return false;
    }
    let rule = starts(&words, &["CREATE", "RULE"]) || starts(&words, &["CREATE", "OR", "REPLACE", "RULE"]);
    if rule {
        // A view's own rule (pg_dump makes some views as a table and this rule).
        let name = words.iter().skip_while(|w| *w != "RULE").nth(1);
        return name.is_some_and(|n| n == "\"_RETURN\"");
    }
    let enables = starts(&words, &["ALTER", "TABLE"]) && {
        let upper = String::from_utf8_lossy(text).to_ascii_uppercase();
        upper.contains(" ENABLE ") || upper.contains(" DISABLE ")
    };
    const KEEP: &[&[&str]] =
        &[&["CREATE"], &["ALTER"], &["COMMENT", "ON"], &["SECURITY", "LABEL"], &["GRANT"], &["REVOKE"]];
    let sets = ["SET_CONFIG(", "SETVAL(", "LO_CREATE("].iter().any(|f| {
        words.first().is_some_and(|w| w == "SELECT")
            && words.get(1).is_some_and(|w| w.starts_with(&format!("PG_CATALOG.{f}")))
    });
    (sets || KEEP.iter().any(|k| starts(&words, k))) && !enables
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `judge` says yes to every one of `keeps` and no to every one of `changes`.
    fn sorts(judge: fn(&[u8]) -> bool, keeps: &[&str], changes: &[&str]) {
        for k in keeps {
            assert!(judge(k.as_bytes()), "{k}");
        }
        for c in changes {
            assert!(!judge(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn statements_that_leave_rows_alone() {
        let keeps = [
            "CREATE TRIGGER t BEFORE INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION public.f();",
            "COMMENT ON INDEX public.a_pkey IS 'k';",
            "GRANT SELECT ON TABLE public.a TO app;",
            "ALTER TABLE public.a ENABLE ROW LEVEL SECURITY;",
            "REFRESH MATERIALIZED VIEW public.mv;",
            "-- a comment\nCREATE POLICY p ON public.a USING (true);",
            "SELECT * FROM pg_catalog.pg_restore_relation_stats('version', '180000'::integer);",
            "alter index public.i attach partition public.j;",
        ];
        let changes = [
            "DELETE FROM public.a;",
            "TRUNCATE public.a;",
            "INSERT INTO public.a VALUES (1);",
            "SELECT public.cleanup();",
            "DO $$BEGIN DELETE FROM public.a; END$$;",
            "ALTER TABLE public.p ATTACH PARTITION public.c FOR VALUES IN (1);",
            "ALTER EXTENSION x UPDATE;",
            "ALTER TABLE public.a RENAME\n    TO b;",
            "ALTER TABLE public.a SET SCHEMA other;",
            "CALL public.p();",
            "SELECT * FROM pg_catalog.pg_restore_relation_statsX(1); DELETE FROM public.a;",
        ];
        sorts(keeps_rows, &keeps, &changes);
    }

    #[test]
    fn pre_data_that_keeps_the_copy_replies_exact() {
        let keeps = [
            "CREATE TABLE public.a (\n    id integer NOT NULL\n);",
            "-- a comment\nCREATE SCHEMA \"Ünï\";",
            "ALTER TABLE public.a OWNER TO app;",
            "ALTER TABLE ONLY public.p ATTACH PARTITION public.p1 FOR VALUES IN (1);",
            "CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;",
            "CREATE VIEW public.v AS SELECT 1;",
            "CREATE RULE \"_RETURN\" AS ON SELECT TO public.v DO INSTEAD SELECT 1;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SELECT pg_catalog.setval('public.s', 3, true);",
            "SELECT pg_catalog.lo_create('16385');",
            "COMMENT ON TABLE public.a IS 'x';",
            "GRANT SELECT ON TABLE public.a TO app;",
        ];
        let changes = [
            "CREATE TRIGGER t BEFORE INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION public.f();",
            "create or replace trigger t after insert on public.a for each row execute function f();",
            "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON public.a FOR EACH ROW EXECUTE FUNCTION f();",
            "CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION f();",
            "CREATE RULE r AS ON INSERT TO public.a DO ALSO INSERT INTO public.b VALUES (1);",
            "CREATE FOREIGN TABLE public.f (id int) SERVER s;",
            "ALTER TABLE public.a ENABLE TRIGGER ALL;",
            "INSERT INTO public.a VALUES (1);",
            "DELETE FROM public.a;",
            "SELECT public.fill();",
            "DO $$BEGIN INSERT INTO public.a VALUES (1); END$$;",
            "CALL public.p();",
            "COPY public.a FROM '/tmp/x';",
        ];
        sorts(keeps_replies, &keeps, &changes);
    }
}
