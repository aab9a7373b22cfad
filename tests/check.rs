//! `--check` against real servers: a healthy setup passes; each failure a scheduled run would
//! hit is found today, with what to do: a wrong password, a table the backup user cannot read,
//! a table with row level security, a client older than the server, a volume too small for
//! the next backup, a webhook that answers 404, a hook command that does not exist.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::app::Fixture;
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::run;

/// The table's rows as `(result, check, rest)`.
fn rows(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ').map(str::trim);
            Some((parts.next()?.to_string(), l.get(7..)?.trim().to_string(), l.to_string()))
        })
        .collect()
}

fn has(stdout: &str, result: &str, needle: &str) -> bool {
    rows(stdout).iter().any(|(r, rest, _)| r == result && rest.contains(needle))
}

#[test]
fn a_healthy_setup_passes_and_says_when_it_runs() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n0 1 * * * default ./backup.sh -s\n", fx.pg.port));
    let rx = Receiver::start(Behaviour::Ok);
    let r = run(fx.cmd(&conf).arg("--check").env("WEBHOOK_URL", &rx.url).env("VERIFY_DIR", fx.verify_dir()));
    assert_eq!(r.code, 0, "{}", r.all());
    for (result, needle) in [
        ("ok", "connect"),
        ("ok", "client version"),
        ("ok", "privileges"),
        ("ok", "roles"),
        ("ok", "space"),
        ("ok", "backup folder"),
        ("ok", "verification"),
        ("ok", "notification"),
        ("info", "schedule"),
    ] {
        assert!(has(&r.stdout, result, needle), "no `{result} {needle}` row:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("only --check --notify proves"), "{}", r.stdout);
    assert!(rx.requests().is_empty(), "no message without --notify");
    let j = run(fx.cmd(&conf).args(["--check", "--json"]).env("VERIFY_DIR", fx.verify_dir()));
    let parsed: serde_json::Value = serde_json::from_str(&j.stdout).unwrap_or_else(|e| panic!("{e}: {}", j.stdout));
    assert!(parsed.as_array().unwrap().iter().any(|f| f["check"] == "connect" && f["status"] == "pass"), "{parsed}");
}

#[test]
fn each_failure_is_found_with_what_to_do() {
    let Some(fx) = Fixture::start(20) else { return };
    let port = fx.pg.port;
    // A table the backup user cannot read; a table with row level security it may read.
    fx.pg.psql("app1", "CREATE TABLE public.payroll (id int); ALTER TABLE public.payroll OWNER TO postgres");
    fx.pg.psql(
        "app1",
        "CREATE TABLE public.tenants (id int); ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY; GRANT SELECT ON public.tenants TO app",
    );
    // A hook whose command does not exist.
    fs::write(
        fx.dir.path().join("backup.toml"),
        "[[hook]]\nphase = \"backup\"\nstage = \"pre\"\ncommand = [\"/nonexistent/quiesce\"]\n\
         [[hook]]\nname = \"typo\"\nphase = \"backup\"\nstage = \"post\"\nsql = \"CHEKPOINT;\"\n\
         [[hook]]\nname = \"gone\"\nphase = \"backup\"\nstage = \"post\"\nsql = \"SELECT count(*) FROM public.no_such_table\"\n\
         [[hook]]\nname = \"fine\"\nphase = \"backup\"\nstage = \"post\"\nsql = \"CHECKPOINT; ANALYZE public.payroll;\"\n",
    )
    .unwrap();
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    // The next backup will not fit: the last one "was" 10 TB (a sparse file).
    let dated = fx.backups().join("2020-01-01");
    fs::create_dir_all(&dated).unwrap();
    let big = fs::File::create(dated.join("localhost-app1_2020-01-01_01-00-00.sql.gz")).unwrap();
    big.set_len(10 << 40).unwrap();
    let rx = Receiver::start(Behaviour::NotFound);
    let r = run(fx
        .cmd(&conf)
        .args(["--check", "--notify"])
        .env("BACKUP_STRATEGY", "daily")
        .env("WEBHOOK_URL", &rx.url)
        .env("WEBHOOK_ATTEMPTS", "1")
        .env("VERIFY_DIR", fx.verify_dir()));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(has(&r.stdout, "FAIL", "privileges") && r.stdout.contains("public.payroll"), "{}", r.stdout);
    assert!(has(&r.stdout, "FAIL", "row level security") && r.stdout.contains("public.tenants"), "{}", r.stdout);
    assert!(r.stdout.contains("BYPASSRLS"), "{}", r.stdout);
    assert!(has(&r.stdout, "FAIL", "space") && r.stdout.contains("last backup"), "{}", r.stdout);
    assert!(has(&r.stdout, "FAIL", "notification") && r.stdout.contains("404"), "{}", r.stdout);
    assert_eq!(rx.requests().len(), 1, "one real test message with --notify");
    assert!(has(&r.stdout, "FAIL", "hook") && r.stdout.contains("/nonexistent/quiesce"), "{}", r.stdout);
    // SQL hooks: checked in the database, never run.
    let row =
        |name: &str| r.stdout.lines().find(|l| l.contains(&format!("hook {name} in"))).unwrap_or_default().to_string();
    assert!(row("typo").contains("FAIL") && row("typo").contains("syntax error"), "{}", r.stdout);
    assert!(row("gone").contains("FAIL") && row("gone").contains("does not exist"), "{}", r.stdout);
    assert!(row("fine").starts_with("ok") && row("fine").contains("not run"), "{}", r.stdout);

    // A wrong password: the server's own message.
    let r = run(fx.cmd(&conf).arg("--check").env("LOCALHOST_PASSWORD", "wrong"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(has(&r.stdout, "FAIL", "connect") && r.stdout.contains("password authentication failed"), "{}", r.stdout);

    // A pg_dump older than the server (PG_BIN_DIR with a pg_dump that says 9.6).
    let bin = fx.dir.path().join("oldbin");
    fs::create_dir_all(&bin).unwrap();
    let dump = bin.join("pg_dump");
    fs::write(&dump, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    fs::set_permissions(&dump, fs::Permissions::from_mode(0o755)).unwrap();
    for tool in ["psql", "pg_dumpall"] {
        let real = String::from_utf8(
            std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().stdout,
        )
        .unwrap();
        std::os::unix::fs::symlink(real.trim(), bin.join(tool)).unwrap();
    }
    let r = run(fx.cmd(&conf).arg("--check").env("PG_BIN_DIR", &bin));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        has(&r.stdout, "FAIL", "client version")
            && r.stdout.contains("no pg_dump can back up a PostgreSQL 15 server (installed: pg_dump 9;"),
        "{}",
        r.stdout
    );
}

/// The daemon runs the check at start beside its listener: the table in its log, one WARN
/// notification for what fails, and it keeps running.
#[test]
fn the_daemon_checks_at_start_and_keeps_running() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n0 1 1 1 * default ./backup.sh -s\n", fx.pg.port));
    let rx = Receiver::start(Behaviour::Ok);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = fx.cmd(&conf);
    cmd.env("LOCALHOST_PASSWORD", "wrong").env("WEBHOOK_URL", &rx.url).env("WEBHOOK_FORMAT", "json");
    let mut d = crate::harness::daemon::Daemon::start(cmd, dir.path());
    assert_eq!(crate::harness::daemon::get(&d.addr, "/healthz").0, 200);
    d.wait_for("Check failed.", std::time::Duration::from_secs(30));
    assert!(d.log().contains("password authentication failed"), "{}", d.log());
    assert!(
        crate::harness::daemon::wait_until(std::time::Duration::from_secs(20), || rx
            .requests()
            .iter()
            .any(|q| q.json()["event"] == "check_failed" && q.json()["statusCode"] == "WARN")),
        "{:?}",
        rx.requests().iter().map(|q| q.body.clone()).collect::<Vec<_>>()
    );
    assert_eq!(crate::harness::daemon::get(&d.addr, "/healthz").0, 200, "still running");
    assert_eq!(d.terminate().0, 0);
}

/// A mirror that rejects writes (S3 with a wrong secret, s3s-fs checks signatures) fails the
/// check with the server's answer; the right secret passes, and the probe is gone again.
#[test]
fn a_mirror_that_rejects_writes_fails_the_check() {
    let Some(fx) = Fixture::start(20) else { return };
    let root = fx.dir.path().join("s3");
    fs::create_dir_all(root.join("backups")).unwrap();
    let Some(server) = crate::harness::s3::S3Server::start(&root) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let check = |secret: &str| {
        run(fx
            .cmd(&conf)
            .arg("--check")
            .env("VERIFY_DIR", fx.verify_dir())
            .env("S3_ENDPOINT", server.endpoint())
            .env("S3_BUCKET", "backups")
            .env("S3_USER", crate::harness::s3::ACCESS_KEY)
            .env("S3_PASSWORD", secret)
            .env("MIRROR_ATTEMPTS", "1"))
    };
    let r = check("not-the-secret");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(has(&r.stdout, "FAIL", "mirror") && r.stdout.contains("403"), "{}", r.stdout);
    assert!(!r.stdout.contains("not-the-secret") && !r.stderr.contains("not-the-secret"), "the secret leaked");
    let r = check(crate::harness::s3::SECRET_KEY);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(has(&r.stdout, "ok", "mirror"), "{}", r.stdout);
    let left = crate::harness::files_under(&root);
    assert!(!left.iter().any(|f| f.contains("probe")), "the probe was left behind: {left:?}");
}

/// An FTPS account that may read but not write: the probe upload fails the check.
#[test]
fn a_read_only_ftps_account_fails_the_check() {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(server) = crate::harness::ftps::FtpsServer::start(&fx.dir.path().join("ftp")) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let check = |user: &str| {
        run(fx
            .cmd(&conf)
            .arg("--check")
            .env("VERIFY_DIR", fx.verify_dir())
            .env("FTP_URL", server.url("offsite/"))
            .env("FTP_USER", user)
            .env("FTP_PASSWORD", crate::harness::ftps::PASSWORD)
            .env("FTP_CA_FILE", &server.ca)
            .env("MIRROR_ATTEMPTS", "1"))
    };
    let r = check(crate::harness::ftps::READ_ONLY_USER);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(has(&r.stdout, "FAIL", "mirror") && r.stdout.contains("550"), "{}", r.stdout);
    let r = check(crate::harness::ftps::USER);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(has(&r.stdout, "ok", "mirror"), "{}", r.stdout);
}
