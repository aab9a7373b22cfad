//! The parallel load (RESTORE_JOBS) against real servers: the same end state as
//! `gunzip -c | psql` on a wide schema with a table too big for one piece, on a file written
//! the bash version's way, and psql's protections kept (a hostile dump's `\!` runs nowhere;
//! errors counted and named with the file's line); a full TMPDIR only slows the spill queue.

use std::path::Path;
use std::process::Command;

use crate::harness::app::Fixture;
use crate::harness::{gzip_to, run};
use crate::wide_schema::{APP_PART, SUPERUSER_PART};

/// More than one 16 MiB piece of rows, plus what makes post-data interesting: a partitioned
/// index (attached per partition), a foreign key to a partitioned table's key, a trigger, a
/// grant, a materialized view.
const MORE: &str = r#"SET ROLE app;
    CREATE TABLE public.big (id bigint PRIMARY KEY, payload text, noise bytea);
    INSERT INTO public.big SELECT g, repeat(md5(g::text), 3), decode(md5((g * 7)::text), 'hex') FROM generate_series(1, 160000) g;
    CREATE INDEX big_payload ON public.big (payload);
    CREATE INDEX measure_at ON public.measure (at);
    ALTER TABLE public.measure ADD PRIMARY KEY (id, at);
    CREATE TABLE public.refs (id int, at date, FOREIGN KEY (id, at) REFERENCES public.measure (id, at));
    INSERT INTO public.refs SELECT id, at FROM public.measure WHERE id % 3 = 0;
    CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.payload := NEW.payload || '!'; RETURN NEW; END$$;
    CREATE TRIGGER big_touch BEFORE INSERT ON public.big FOR EACH ROW EXECUTE FUNCTION public.touch();
    GRANT SELECT ON public.big TO PUBLIC;
    CREATE MATERIALIZED VIEW public.big_count AS SELECT count(*) AS n FROM public.big;"#;

/// pg_dump of `db`, rows sorted within each COPY block, without the per-run `\restrict` keys.
fn comparable_dump(fx: &Fixture, db: &str) -> String {
    let mut out = Vec::new();
    let mut rows: Option<Vec<String>> = None;
    for line in fx.pg.dump_plain(db).lines() {
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            continue;
        }
        match rows.as_mut() {
            Some(block) if line == "\\." => {
                block.sort();
                out.append(block);
                rows = None;
                out.push(line.to_string());
            }
            Some(block) => block.push(line.to_string()),
            None => {
                out.push(line.to_string());
                if line.starts_with("COPY ") && line.ends_with("FROM stdin;") {
                    rows = Some(Vec::new());
                }
            }
        }
    }
    out.join("\n")
}

fn gunzip_into_psql(fx: &Fixture, file: &Path, db: &str) {
    fx.pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "gunzip -c '{}' | psql -X -q -v ON_ERROR_STOP=0 -h '{}' -p {} -U postgres -d {db}",
            file.display(),
            fx.pg.socket_dir().display(),
            fx.pg.port
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn wide(fx: &Fixture) {
    fx.pg.psql("postgres", "CREATE DATABASE wide OWNER app");
    fx.pg.psql("wide", SUPERUSER_PART);
    fx.pg.psql("wide", APP_PART);
    fx.pg.psql("wide", MORE);
}

#[test]
fn parallel_and_psql_end_in_the_same_database() {
    let Some(fx) = Fixture::start(5) else { return };
    wide(&fx);
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/wide\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let file = fx.newest("localhost-wide");

    let r = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/par"), "-f", "localhost-wide", "-s"])
        .env("RESTORE_JOBS", "4")
        .env("RESTORE_SPILL_MB", "0"));
    assert_eq!(r.code, 0, "{}", r.all());
    // Without a spill budget: the parallel path ran and built in parallel (a table is cut into
    // pieces only while its session cannot keep up: the unit tests of the splitter cover that).
    let plan = r.stderr.lines().find(|l| l.contains("Loaded in parallel.")).unwrap_or_else(|| panic!("{}", r.all()));
    assert!(!plan.contains("serial from"), "{plan}");
    assert!(!plan.contains(" 0 index"), "{plan}");
    assert!(!plan.contains(" 0 foreign keys"), "{plan}");
    // Its pre-data has what pg_dump writes there, and its post-data (triggers, policies, row
    // security, a materialized view, grants, comments) leaves rows alone: the server's replies
    // to the COPYs are the counts.
    assert!(r.stderr.contains("from the server's replies to its COPYs"), "{}", r.all());

    gunzip_into_psql(&fx, &file, "ser");
    assert_eq!(comparable_dump(&fx, "par"), comparable_dump(&fx, "ser"));
    assert_eq!(comparable_dump(&fx, "par"), comparable_dump(&fx, "wide"));
    assert_eq!(fx.pg.row_counts("par"), fx.pg.row_counts("wide"));
    // The trigger did not fire during the load (post-data), the view was refreshed.
    assert_eq!(fx.pg.psql("par", "SELECT count(*) FROM public.big WHERE payload LIKE '%!'"), "0");
    assert_eq!(fx.pg.psql("par", "SELECT n FROM public.big_count"), "160000");
    // The big table loaded in the transaction that truncated it first, as pg_restore loads it
    // (a new file: its relfilenode is no longer its oid); a table of one row with a plain COPY.
    let new_file = |db: &str, table: &str| {
        fx.pg.psql(db, &format!("SELECT relfilenode <> oid FROM pg_class WHERE oid = '{table}'::regclass"))
    };
    assert_eq!(new_file("par", "public.big"), "t");
    assert_eq!(new_file("par", "public.parent"), "f");

    // With the default spill budget, the big table's rows wait in TMPDIR while idle sessions
    // take the next tables: one session loads it whole, to the same end state.
    let r = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/spilled"), "-f", "localhost-wide", "-s"])
        .env("RESTORE_JOBS", "4"));
    assert_eq!(r.code, 0, "{}", r.all());
    let plan = r.stderr.lines().find(|l| l.contains("Loaded in parallel.")).unwrap_or_else(|| panic!("{}", r.all()));
    assert!(plan.contains("(0 extra pieces)") && !plan.contains("serial from"), "{plan}");
    assert_eq!(comparable_dump(&fx, "spilled"), comparable_dump(&fx, "wide"));
    assert_eq!(fx.pg.row_counts("spilled"), fx.pg.row_counts("wide"));
    // Loaded whole in its truncating transaction: every page frozen (nothing for a vacuum to
    // do, no hint bits for the index builds to set).
    assert_eq!(new_file("spilled", "public.big"), "t");
    fx.pg.psql("spilled", "CREATE EXTENSION pg_visibility");
    assert_eq!(
        fx.pg.psql(
            "spilled",
            "SELECT all_frozen || ' of ' || pg_relation_size('public.big') / 8192 FROM pg_visibility_map_summary('public.big')"
        ),
        fx.pg.psql("spilled", "SELECT (pg_relation_size('public.big') / 8192) || ' of ' || pg_relation_size('public.big') / 8192")
    );

    // RESTORE_JOBS=1: today's single psql session, same result.
    let r = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/one"), "-f", "localhost-wide", "-s"])
        .env("RESTORE_JOBS", "1"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stderr.contains("Loaded in parallel."), "{}", r.all());
    assert_eq!(comparable_dump(&fx, "one"), comparable_dump(&fx, "wide"));

    // Verification loads in parallel too (RESTORE_JOBS set: on fewer than 4 cores it would
    // otherwise use one session).
    let v = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", fx.verify_dir()).env("RESTORE_JOBS", "4"));
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stderr.contains("Loaded in parallel."), "{}", v.all());
}

/// A file written as the bash version writes it: `pg_dumpall -r` then `pg_dump`, through gzip,
/// with pg_dump's `\restrict` lines and SET preamble.
#[test]
fn a_file_written_by_the_bash_version_loads_in_parallel() {
    let Some(fx) = Fixture::start(2000) else { return };
    let text = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    assert!(text.contains("\\restrict ") && text.contains("SET statement_timeout = 0;"));
    let file = fx.backups().join("daily/2026-11-30/localhost-app1_2026-11-30_01-00-00.sql.gz");
    gzip_to(&file, &text);
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/from_bash"), "-f", file.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let plan = r.stderr.lines().find(|l| l.contains("Loaded in parallel.")).unwrap_or_else(|| panic!("{}", r.all()));
    assert!(!plan.contains(" 0 tables in parallel") && !plan.contains("serial from"), "{plan}");
    assert_eq!(fx.pg.row_counts("from_bash"), fx.pg.row_counts("app1"));
}

/// psql's protection holds in every session: a `\!` in a dump with a `\restrict` key runs
/// nowhere, and the restore fails with the target untouched.
#[test]
fn a_hostile_meta_command_runs_nowhere() {
    let Some(fx) = Fixture::start(50) else { return };
    let marker = fx.dir.path().join("pwned");
    let dump = fx.pg.dump_plain("app1");
    let first_data = dump.find("-- Data for Name:").unwrap();
    let hostile = format!("{}\\! touch {}\n\n{}", &dump[..first_data], marker.display(), &dump[first_data..]);
    let file = fx.backups().join("hostile.sql.gz");
    gzip_to(&file, &hostile);
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let before = fx.pg.row_counts("app1");
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-f", file.to_str().unwrap(), "-s"]));
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!marker.exists(), "the meta-command ran: {}", r.all());
    assert!(r.all().contains("restrict"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
}

/// With -I every error is counted and named by a line of the file, whichever session hit it:
/// a bad row by its own line.
#[test]
fn errors_in_parallel_sessions_name_the_file_line() {
    let Some(fx) = Fixture::start(300) else { return };
    let dump = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    // A row that cannot load, inside a table's data.
    let lines: Vec<&str> = dump.lines().collect();
    let copy = lines.iter().position(|l| l.starts_with("COPY ") && l.contains("FROM stdin")).unwrap();
    let bad = copy + 3;
    let mut broken: Vec<String> = lines.iter().map(ToString::to_string).collect();
    let fields: Vec<&str> = broken[bad].split('\t').collect();
    broken[bad] = std::iter::once("not-a-number").chain(fields[1..].iter().copied()).collect::<Vec<_>>().join("\t");
    let end = lines[copy..].iter().position(|l| *l == "\\.").unwrap() + copy + 1;
    let file = fx.backups().join("broken.sql.gz");
    gzip_to(&file, &(broken.join("\n") + "\n"));
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r =
        run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/broken"), "-f", file.to_str().unwrap(), "-s", "-I"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Loaded in parallel."), "{}", r.all());
    // The row the server names ("COPY t, line N"), as a line of the file.
    let row = bad + 1;
    let first = format!("errors=2 first=line {row}: ERROR:  invalid input syntax");
    assert!(r.stderr.contains(&first), "expected the bad row, line {row}: {}", r.all());
    assert!(r.stderr.contains("COPY "), "the server's COPY context is kept: {}", r.all());
    // One session reports the same: the bad row, then the foreign key it leaves unmet.
    let one = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/broken1"), "-f", file.to_str().unwrap(), "-s", "-I"])
        .env("RESTORE_JOBS", "1"));
    assert!(one.stderr.contains(&first), "{}", one.all());
    // psql sessions (RESTORE_LOADER=psql) name a failed COPY by its `\.` line, as psql does.
    let psql = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/broken2"), "-f", file.to_str().unwrap(), "-s", "-I"])
        .env("RESTORE_LOADER", "psql"));
    let at_end = format!("errors=2 first=line {end}: ERROR:  invalid input syntax");
    assert!(psql.stderr.contains(&at_end), "expected the COPY's end, line {end}: {}", psql.all());
}

/// A tmpfs of `size` mounted on a folder of its own, unmounted when dropped.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(TinyFs { dir }),
            Ok(o) => {
                crate::harness::missing("mount", &format!("mount -t tmpfs: {}", String::from_utf8_lossy(&o.stderr)))
            }
            Err(e) => crate::harness::missing("mount", &format!("mount: {e}")),
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// TMPDIR full while the spill queue would use it: said once, the rows wait in memory, and the
/// load ends in the same database.
#[test]
fn a_full_tmpdir_only_slows_the_spill_queue() {
    let Some(fx) = Fixture::start(5) else { return };
    let Some(tiny) = TinyFs::mount("1m") else { return };
    // A table whose rows load slowly (a CHECK that calls a costly function, checked row by row
    // during the COPY): its session falls behind the splitter and the rest queue up.
    fx.pg.psql("postgres", "CREATE DATABASE slow OWNER app");
    fx.pg.psql(
        "slow",
        "SET ROLE app;
         CREATE FUNCTION public.costly(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
           DECLARE n int := 0; BEGIN FOR i IN 1..50 LOOP n := n + length(t); END LOOP; RETURN n > 0; END $$;
         CREATE TABLE public.checked (id int PRIMARY KEY, payload text CHECK (public.costly(payload)));
         INSERT INTO public.checked SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 100000) g;
         CREATE TABLE public.other (id int PRIMARY KEY);
         INSERT INTO public.other SELECT generate_series(1, 1000);",
    );
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/slow\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let r = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{port}/full_tmp"), "-f", "localhost-slow", "-s"])
        .env("RESTORE_JOBS", "4")
        .env("TMPDIR", tiny.dir.path()));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Could not spill a session's rows to TMPDIR"), "the full TMPDIR is said: {}", r.all());
    assert_eq!(comparable_dump(&fx, "full_tmp"), comparable_dump(&fx, "slow"));
    assert_eq!(fx.pg.row_counts("full_tmp"), fx.pg.row_counts("slow"));
}

/// The rows checked are the server's own, not the dump's: a pg_dump file is judged by the
/// server's replies to its COPYs; a dump whose pre-data holds a trigger that drops rows as they
/// load is counted beside the builds instead, and refused, naming the table; one whose
/// post-data deletes rows is counted at the end, and refused too.
#[test]
fn rows_counted_beside_the_builds_are_the_servers_counts() {
    let Some(fx) = Fixture::start(300) else { return };
    let dump = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let restore = |name: &str, text: &str| {
        let file =
            fx.backups().join(format!("daily/2026-11-30/localhost-app1_2026-11-30_01-00-0{}.sql.gz", name.len()));
        gzip_to(&file, text);
        run(fx
            .cmd(&conf)
            .args(["-r", &format!("localhost:{port}/{name}"), "-f", file.to_str().unwrap(), "-s"])
            .env("RESTORE_JOBS", "2"))
    };
    let r = restore("whole", &dump);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("from the server's replies to its COPYs"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("whole"), fx.pg.row_counts("app1"));

    let first_data = dump.find("--\n-- Data for Name:").unwrap();
    let trigger = "CREATE FUNCTION public.drop_odd() RETURNS trigger LANGUAGE plpgsql AS $$\
        BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$;\n\
        CREATE TRIGGER drop_odd BEFORE INSERT ON sales.orders FOR EACH ROW EXECUTE FUNCTION public.drop_odd();\n\n";
    let dropping = format!("{}{trigger}{}", &dump[..first_data], &dump[first_data..]);
    let r = restore("dropped", &dropping);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("as they came in, beside the index builds"), "{}", r.all());
    assert!(r.stderr.contains("do not hold the backup's rows") && r.stderr.contains("sales.orders"), "{}", r.all());

    let end = dump.find("--\n-- PostgreSQL database dump complete").unwrap();
    let deleting = format!("{}DELETE FROM sales.orders WHERE id % 2 = 1;\n\n{}", &dump[..end], &dump[end..]);
    let r = restore("deleted_later", &deleting);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!r.stderr.contains("as they came in"), "post-data changes rows: counted at the end: {}", r.all());
    assert!(r.stderr.contains("do not hold the backup's rows") && r.stderr.contains("sales.orders"), "{}", r.all());
}
