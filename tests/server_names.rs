//! Database names that come from a server are data, never paths: databases named `../x`,
//! `a/b`, `.`, `..`, `x<script>`, with a newline, ANSI escapes or non-ASCII letters, created on
//! real PostgreSQL and MariaDB servers and backed up through a `host/*` line, land under
//! BACKUP_DIR in their dated folders under reversible names (`a%2Fb`), restore with `-r`,
//! are pruned by the configured count, and show as themselves (escaped) in `-l` and the logs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::harness::app::Fixture;
use crate::harness::mariadb::{ADMIN_PASSWORD, MariaDbServer};
use crate::harness::{files_under, run};

/// The names tried on each server: (name, how it is spelled in a file name).
const HOSTILE: [(&str, &str); 9] = [
    ("../../../../pwned", "..%2F..%2F..%2F..%2Fpwned"),
    ("../x", "..%2Fx"),
    ("a/b", "a%2Fb"),
    (".", "%2E"),
    ("..", "%2E%2E"),
    ("x<script>alert(1)</script>", "x%3Cscript%3Ealert%281%29%3C%2Fscript%3E"),
    ("nl\nx", "nl%0Ax"),
    ("\u{1b}[31mred\u{1b}[0m", "%1B%5B31mred%1B%5B0m"),
    ("données", "donn%C3%A9es"),
];

/// A backup folder four levels below a watched parent, so that `../../../../` has somewhere
/// to go if anything joined a name as a path.
fn deep_root(parent: &Path) -> PathBuf {
    parent.join("w1/w2/w3/w4/backups")
}

/// Every file under `parent` that is not under `root` (the configuration files excepted).
fn strays(parent: &Path, root: &Path) -> Vec<String> {
    let rel_root = root.strip_prefix(parent).unwrap().to_string_lossy().to_string();
    files_under(parent)
        .into_iter()
        .filter(|f| !f.starts_with(&rel_root) && !f.ends_with(".conf") && !f.starts_with("verify"))
        .collect()
}

/// The core names of the backup files under `root`, each asserted to sit in a dated folder.
fn cores(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for rel in crate::harness::backups_under(root) {
        let parts: Vec<&str> = rel.split('/').collect();
        assert!(
            matches!(parts.len(), 2 | 3) && parts[parts.len() - 2].starts_with("20"),
            "not in a dated folder: {rel}"
        );
        out.push(parts[parts.len() - 1].split("_20").next().unwrap().to_string());
    }
    out
}

fn quote_pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[test]
fn postgres_names_from_the_server_stay_file_names() {
    let Some(fx) = Fixture::start(3) else { return };
    let pg = &fx.pg;
    for (i, (name, _)) in HOSTILE.iter().enumerate() {
        pg.psql("postgres", &format!("CREATE DATABASE {} OWNER app", quote_pg(name)));
        let rows = 10 + i;
        pg.psql(
            name,
            &format!("SET ROLE app; CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, {rows})"),
        );
    }
    let root = deep_root(fx.dir.path());
    let conf = fx.conf(&format!("localhost:{}/*\n", pg.port));
    let env = [
        ("BACKUP_DIR", root.to_str().unwrap()),
        ("BACKUP_EXCLUDE_DATABASES", "app1,app2,postgres"),
        ("BACKUP_STRATEGY", "daily"),
        ("NUM_BACKUPS", "2"),
        ("BACKUP_ANOMALY_HOLD", "0"),
    ];
    let mut logs = String::new();
    for _ in 0..3 {
        let r = run(fx.once(&conf).envs(env));
        assert_eq!(r.code, 0, "{}", r.all());
        logs.push_str(&r.all());
    }
    assert_eq!(strays(fx.dir.path(), &root), Vec::<String>::new(), "files outside BACKUP_DIR");
    let found = cores(&root);
    let expected: BTreeSet<String> = HOSTILE.iter().map(|(_, part)| format!("localhost-{part}")).collect();
    assert_eq!(found.iter().cloned().collect::<BTreeSet<_>>(), expected, "nothing backed up that no line names");
    for core in &expected {
        assert_eq!(found.iter().filter(|c| *c == core).count(), 2, "NUM_BACKUPS=2 keeps two of {core}");
    }
    assert!(!logs.contains('\u{1b}') && logs.contains("nl\\nx"), "names are escaped in the logs:\n{logs}");

    // The record names the database as it is.
    let listing = run(fx.cmd(&conf).args(["-l", "--json"]).env("BACKUP_DIR", &root));
    let json: serde_json::Value = serde_json::from_str(&listing.stdout).unwrap();
    let newline = json.as_array().unwrap().iter().find(|b| b["core"] == "localhost-nl%0Ax").unwrap();
    assert_eq!(newline["name"], "localhost-nl\nx");
    assert_eq!(newline["manifest"]["database"], format!("localhost:{}/nl\nx", pg.port));

    // -l shows the real names, escaped for the terminal.
    let l = run(fx.cmd(&conf).arg("-l").env("BACKUP_DIR", &root));
    assert_eq!(l.code, 0, "{}", l.all());
    for shown in ["localhost-a/b: 2 backups", "localhost-nl\\nx: 2 backups", "localhost-../../../../pwned: 2 backups"] {
        assert!(l.stdout.contains(shown), "{shown}:\n{}", l.stdout);
    }
    assert!(!l.stdout.contains('\u{1b}'), "{}", l.stdout);

    // Each backup restores into a new database, chosen by its real name with -f.
    for (i, (name, _)) in HOSTILE.iter().enumerate() {
        let target = format!("restored_{i}");
        let filter = format!("localhost-{name}_20");
        let r = run(fx.cmd(&conf).env("BACKUP_DIR", &root).args([
            "-r",
            &format!("localhost:{}/{target}", pg.port),
            "-f",
            &filter,
            "-s",
        ]));
        assert_eq!(r.code, 0, "{name:?}: {}", r.all());
        assert_eq!(pg.row_counts(&target), pg.row_counts(name), "{name:?}");
        assert_eq!(pg.row_counts(&target), format!("public.t={}", 10 + i));
    }
    assert_eq!(strays(fx.dir.path(), &root), Vec::<String>::new(), "files outside BACKUP_DIR after restores");
}

#[test]
fn mariadb_names_from_the_server_stay_file_names() {
    let Some(maria) = MariaDbServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    maria.sql("", "CREATE USER 'fleet'@'%' IDENTIFIED BY 'fleet pw'; GRANT ALL ON *.* TO 'fleet'@'%'");
    let mut created = Vec::new();
    for (i, (name, part)) in HOSTILE.iter().enumerate() {
        let quoted = format!("`{}`", name.replace('`', "``"));
        // Take what the server allows; it refuses some of these names.
        if maria.try_sql("", &format!("CREATE DATABASE {quoted}")).is_err() {
            continue;
        }
        maria.sql(name, &format!("CREATE TABLE t (x INT); INSERT INTO t SELECT seq FROM seq_1_to_{}", 10 + i));
        created.push((*name, *part, 10 + i));
    }
    assert!(created.len() >= 5, "MariaDB allows most of these names: {created:?}");
    let root = deep_root(dir.path());
    let conf = dir.path().join("backup.conf");
    std::fs::write(&conf, format!("mariadb=127.0.0.1:{}/*\n", maria.port)).unwrap();
    let cmd = || {
        let mut c = crate::harness::bin();
        c.env("BACKUP_CONF", &conf)
            .env("BACKUP_DIR", &root)
            .env("DATABASE_USER", "fleet")
            .env("DATABASE_PASSWORD", "fleet pw")
            .env("BACKUP_ADMIN_USER", "admin")
            .env("BACKUP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("BACKUP_STRATEGY", "daily")
            .env("NUM_BACKUPS", "1")
            .env("BACKUP_ANOMALY_HOLD", "0");
        c
    };
    for _ in 0..2 {
        let r = run(cmd().arg("-1"));
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(!r.all().contains('\u{1b}'), "{}", r.all());
    }
    assert_eq!(strays(dir.path(), &root), Vec::<String>::new(), "files outside BACKUP_DIR");
    let found = cores(&root);
    for (name, part, _) in &created {
        let core = format!("127.0.0.1-{part}");
        assert_eq!(found.iter().filter(|c| **c == core).count(), 1, "NUM_BACKUPS=1 keeps one of {name:?}: {found:?}");
    }
    for (i, (name, _, rows)) in created.iter().enumerate() {
        let target = format!("restored_{i}");
        let r = run(cmd().args([
            "-r",
            &format!("mariadb=127.0.0.1:{}/{target}", maria.port),
            "-f",
            &format!("127.0.0.1-{name}_20"),
            "-s",
        ]));
        assert_eq!(r.code, 0, "{name:?}: {}", r.all());
        assert_eq!(maria.sql(&target, "SELECT COUNT(*) FROM t"), rows.to_string(), "{name:?}");
    }
}
