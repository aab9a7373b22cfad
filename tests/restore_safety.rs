//! Restore and verify that cannot be fooled: files the bash version really writes when
//! pg_dump dies half-way (a valid gzip of a partial dump, no checksum file) are refused before
//! the target is touched; every SQL error is counted and the first one named with its line;
//! rows are counted and compared; a load that fails or is killed half-way leaves the target
//! as it was.

use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::{Run, gzip_to, run};

/// A seeded server (1000 customers, 2000 orders in app1) and the roles + dump text of app1,
/// as the bash version concatenates them.
fn setup() -> Option<(Fixture, String)> {
    let fx = Fixture::start(1000)?;
    let text = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    Some((fx, text))
}

/// Writes `text` as a bash-version backup of app1 (gzip, no `.sha256`) and returns its path.
fn upstream_file(fx: &Fixture, text: &str) -> String {
    let path = fx.backups().join("daily/2026-01-05/localhost-app1_2026-01-05_01-00-00.sql.gz");
    let _ = std::fs::remove_dir_all(fx.backups());
    gzip_to(&path, text);
    path.display().to_string()
}

fn restore(fx: &Fixture, extra: &[&str]) -> Run {
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/app1", fx.pg.port), "-s"]).args(extra))
}

fn verify(fx: &Fixture) -> Run {
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", fx.verify_dir()).env("VERIFY_MAX_AGE", "0"))
}

fn databases(fx: &Fixture) -> String {
    fx.pg.psql("postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")
}

/// The issue's table, row by row: each file is refused by `-r` and failed by `-v` with a
/// message that says what is missing and that the target was not touched; the target keeps
/// every row and no temporary database is left.
#[test]
fn broken_upstream_files_are_refused_and_the_target_keeps_every_row() {
    let Some((fx, full)) = setup() else { return };
    let before = fx.pg.row_counts("app1");
    assert!(before.contains("sales.orders=2000"), "{before}");
    let dbs = databases(&fx);
    let roles_end = full.find("-- PostgreSQL database dump\n").unwrap();
    let copy_orders = full.find("COPY sales.orders").unwrap();
    let row_1001 = full[copy_orders..].match_indices('\n').nth(1000).unwrap().0 + copy_orders + 1;
    let cases: [(&str, String, &str); 5] = [
        ("empty stream", String::new(), "the backup is empty"),
        ("only the roles section", full[..roles_end].to_string(), "only the roles section"),
        ("cut before a table's COPY", full[..copy_orders].to_string(), "between two statements"),
        (
            "cut inside a COPY block",
            full[..row_1001].to_string(),
            "inside the data of table sales.orders after 1000 rows",
        ),
        ("a text file that is not SQL", "Dear user,\nthis is a letter.\n".into(), "not a PostgreSQL dump"),
    ];
    for (what, text, reason) in cases {
        upstream_file(&fx, &text);
        let r = restore(&fx, &[]);
        assert_eq!(r.code, 1, "{what}: {}", r.all());
        assert!(r.stderr.contains(reason), "{what}: {}", r.all());
        assert!(r.stderr.contains("the database was not touched"), "{what}: {}", r.all());
        assert_eq!(fx.pg.row_counts("app1"), before, "{what}");
        let v = verify(&fx);
        assert_eq!(v.code, 1, "{what}: {}", v.all());
        assert!(v.stderr.contains(reason), "{what}: {}", v.all());
    }
    assert_eq!(databases(&fx), dbs, "no temporary database left behind");
}

/// A dump cut right after a COPY row whose text is the trailer line: the scanner knows it is
/// data, not the end of the dump. So is a trailer line inside a function body.
#[test]
fn a_trailer_inside_data_or_a_function_body_is_not_the_end() {
    let Some(fx) = Fixture::start(10) else { return };
    fx.pg.psql(
        "app1",
        "SET ROLE app; CREATE TABLE public.notes (t text); \
         INSERT INTO public.notes VALUES ('-- PostgreSQL database dump complete'), ('after'); \
         CREATE FUNCTION public.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN\n-- PostgreSQL database dump complete\nRETURN 1; END $$;",
    );
    let full = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    let before = fx.pg.row_counts("app1");
    let row = full.find("-- PostgreSQL database dump complete\nafter").unwrap();
    let cut_in_copy = &full[..row + "-- PostgreSQL database dump complete\n".len()];
    let body = full.find("-- PostgreSQL database dump complete\nRETURN").unwrap();
    let cut_in_body = &full[..body + "-- PostgreSQL database dump complete\n".len()];
    for (what, text) in [("COPY row", cut_in_copy), ("function body", cut_in_body)] {
        assert!(text.trim_end().ends_with("-- PostgreSQL database dump complete"), "{what}");
        upstream_file(&fx, &format!("{text}--\n\n"));
        let r = restore(&fx, &[]);
        assert_eq!(r.code, 1, "{what}: {}", r.all());
        assert!(r.stderr.contains("cut short"), "{what}: {}", r.all());
        assert_eq!(fx.pg.row_counts("app1"), before);
    }
    // The whole file restores, with its trailer-like row.
    upstream_file(&fx, &full);
    let r = restore(&fx, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.psql("app1", "SELECT count(*) FROM public.notes"), "2");
}

/// A dump with a missing shared library (as PostgreSQL's regression database has): with `-I`
/// every error is counted, the first is named with its line in the file, the exit code is 1
/// (0 only with RESTORE_ACCEPT_ERRORS=true), and our own steps print no NOTICE noise.
#[test]
fn every_error_is_counted_and_the_first_named_with_its_line() {
    let Some((fx, full)) = setup() else { return };
    let trailer = full.rfind("--\n-- PostgreSQL database dump complete").unwrap();
    let mut broken = full[..trailer].to_string();
    broken.push_str(
        "CREATE FUNCTION public.regress_fn(integer) RETURNS integer AS '$libdir/regress_missing', 'fn' LANGUAGE c;\n",
    );
    for i in 0..30 {
        broken.push_str(&format!(
            "SELECT public.regress_fn({i});\nCREATE VIEW public.v{i} AS SELECT public.regress_fn(1);\n"
        ));
    }
    broken.push_str(&full[trailer..]);
    let line = broken.lines().position(|l| l.contains("regress_missing")).unwrap() + 1;
    upstream_file(&fx, &broken);

    let r = restore(&fx, &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains(&format!("line {line}: ERROR:")), "line {line}: {}", r.all());
    assert!(r.stderr.contains("regress_missing"), "{}", r.all());
    assert!(r.stderr.contains("was not changed"), "{}", r.all());

    let r = restore(&fx, &["-I"]);
    assert_eq!(r.code, 1, "-I continues, it does not succeed: {}", r.all());
    assert!(r.stderr.contains("errors=61"), "61 errors: {}", r.all());
    assert!(r.stderr.contains(&format!("61 errors; the first: line {line}: ERROR:")), "{}", r.all());
    assert!(!r.stderr.contains("NOTICE"), "{}", r.all());
    assert_eq!(fx.pg.psql("app1", "SELECT count(*) FROM sales.orders"), "2000", "-I loaded the rest");

    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let r = run(fx
        .cmd(&conf)
        .args(["-r", &format!("localhost:{}/app1", fx.pg.port), "-s", "-I"])
        .env("RESTORE_ACCEPT_ERRORS", "true"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("RESTORE_ACCEPT_ERRORS=true"), "{}", r.all());
}

/// Rows that do not arrive are caught: a bad COPY row makes its table load nothing (`-I`
/// continues: exit 1 with the table and both counts); a trigger that silently drops rows
/// fails verification and a restore, naming the table and both counts.
#[test]
fn missing_rows_are_caught_by_counts() {
    let Some(fx) = Fixture::start(1000) else { return };
    fx.pg.psql(
        "app1",
        "CREATE TABLE public.notes AS SELECT g AS id, 'n' || g AS t FROM generate_series(1, 10) g; \
         ALTER TABLE public.notes OWNER TO app;",
    );
    let full = format!("{}{}", fx.pg.dumpall_roles(), fx.pg.dump_plain("app1"));
    let before = fx.pg.row_counts("app1");

    let copy = full.find("COPY public.notes").unwrap();
    let bad = full.replacen("\n7\tn7\n", "\nseven\tn7\n", 1);
    assert_ne!(bad, full);
    upstream_file(&fx, &bad);
    let r = restore(&fx, &["-I"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("public.notes: 10 rows in the backup, 0 restored"), "{}", r.all());
    assert!(r.stderr.contains("rows checked"), "{}", r.all());

    let trigger = "CREATE FUNCTION public.drop_even() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN \
                   IF NEW.id % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END$$;\n\
                   CREATE TRIGGER drop_even BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.drop_even();\n\n";
    let lossy = format!("{}{trigger}{}", &full[..copy], &full[copy..]);
    upstream_file(&fx, &lossy);
    let v = verify(&fx);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stderr.contains("public.notes: 10 rows in the backup, 5 restored"), "{}", v.all());
    fx.pg.psql("app1", "DROP TABLE public.notes");
    let before_drop = fx.pg.row_counts("app1");
    let dbs = databases(&fx);
    let r = restore(&fx, &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("public.notes: 10 rows in the backup, 5 restored"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before_drop, "the target is as it was");
    assert_eq!(databases(&fx), dbs);
    assert_ne!(before, before_drop);
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A load that dies half-way — its server session killed, or the restore itself stopped by
/// SIGTERM — leaves the target exactly as it was and removes the temporary database.
#[test]
fn a_load_killed_half_way_leaves_the_target_untouched() {
    let Some((fx, full)) = setup() else { return };
    let copy = full.find("COPY sales.orders").unwrap();
    let slow = format!("{}SELECT pg_sleep(120);\n\n{}", &full[..copy], &full[copy..]);
    upstream_file(&fx, &slow);
    fx.pg.psql("app1", "DELETE FROM sales.orders WHERE id > 1500");
    let before = fx.pg.row_counts("app1");
    let dbs = databases(&fx);
    let loading = || {
        fx.pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app1__bc_restore' AND query LIKE '%pg_sleep%'",
        ) == "1"
    };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let spawn = || {
        fx.cmd(&conf)
            .args(["-r", &format!("localhost:{}/app1", fx.pg.port), "-s"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // The server ends the loading session (a restart, an operator, an OOM kill).
    let child = spawn();
    wait_for("the load to reach pg_sleep", loading);
    fx.pg.psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app1__bc_restore'");
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("was not changed"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
    assert_eq!(databases(&fx), dbs);

    // Our own process is stopped.
    let child = spawn();
    wait_for("the load to reach pg_sleep", loading);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 130, "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
    assert_eq!(databases(&fx), dbs, "the temporary database was removed");
}

/// RESTORE_IN_PLACE keeps the drop-and-load for servers without room for two copies;
/// RESTORE_KEEP_PREVIOUS keeps the replaced database under a new name.
#[test]
fn in_place_and_keep_previous() {
    let Some((fx, full)) = setup() else { return };
    upstream_file(&fx, &full);
    let before = fx.pg.row_counts("app1");
    fx.pg.psql("app1", "CREATE TABLE public.only_in_old (x int)");
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let target = format!("localhost:{}/app1", fx.pg.port);
    let r = run(fx.cmd(&conf).args(["-r", &target, "-s"]).env("RESTORE_KEEP_PREVIOUS", "true"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
    let kept = fx.pg.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'app1_before_restore_%'");
    assert!(!kept.is_empty(), "{}", databases(&fx));
    assert!(r.stderr.contains(&kept), "{}", r.all());
    assert_eq!(fx.pg.psql(&kept, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_old'"), "1");

    // In place, a cut file is still refused before the drop (the whole file is checked first,
    // even with a checksum file beside it).
    let cut = &full[..full.find("COPY sales.orders").unwrap()];
    let path = upstream_file(&fx, cut);
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(&path).unwrap();
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    std::fs::write(format!("{path}.sha256"), format!("{digest}  x.sql.gz\n")).unwrap();
    let r = run(fx.cmd(&conf).args(["-r", &target, "-s"]).env("RESTORE_IN_PLACE", "true"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("not touched"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
    upstream_file(&fx, &full);
    let r = run(fx.cmd(&conf).args(["-r", &target, "-s"]).env("RESTORE_IN_PLACE", "true"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
    assert!(!databases(&fx).contains("__bc_"), "{}", databases(&fx));
}
