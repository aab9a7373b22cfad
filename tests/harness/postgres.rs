//! A throwaway PostgreSQL cluster: initdb into a temp dir (via `runuser -u postgres` when
//! running as root, because initdb refuses root), a free port on 127.0.0.1, scram password
//! auth over TCP and trust on its private unix socket (for the test's own admin queries).
//! Dropping it stops the server (`pg_ctl stop -m immediate`) and removes the directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, missing};

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    bin_dir: PathBuf,
    as_postgres: bool,
    /// The bootstrap superuser (`postgres` unless `start_as` named another).
    pub superuser: String,
}

/// The folder holding initdb/pg_ctl: `PG_TEST_BIN_DIR`, PATH, or the newest
/// `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_TEST_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    versions.pop()
}

/// The folder of `major`'s programs: Debian's for 15, else the registry packages that
/// `scripts/install-deps.sh pgmajors` lists in `majors.txt` (13, 14, 16, 17: servers only;
/// 18: server and clients).
pub fn major_bin_dir(major: u32) -> Option<PathBuf> {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if debian.join("initdb").exists() {
        return Some(debian);
    }
    let root = std::env::var("PG_MAJORS_ROOT").unwrap_or_else(|_| "/opt/backup-container-pg".into());
    let index = std::fs::read_to_string(Path::new(&root).join("majors.txt")).ok()?;
    index.lines().find_map(|l| {
        let (m, dir) = l.split_once(' ')?;
        (m.parse::<u32>().ok()? == major).then(|| PathBuf::from(dir))
    })
}

impl PgServer {
    /// Starts a cluster tuned for tests (no fsync), or returns `None` (skip) when PostgreSQL
    /// is not installed.
    pub fn start() -> Option<PgServer> {
        Self::start_with("-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
    }

    /// `start` with the server programs of `major` (`major_bin_dir`); `None` (skip, or a
    /// failure under `BACKUP_TEST_REQUIRE`) when that major is not installed.
    pub fn start_major(major: u32) -> Option<PgServer> {
        let Some(dir) = major_bin_dir(major) else {
            return missing(
                "pgmajors",
                &format!("PostgreSQL {major} not installed (scripts/install-deps.sh pgmajors)"),
            );
        };
        Self::start_in(dir, "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
    }

    /// `start_major` with `extra` settings too (`-c name=value ...`).
    pub fn start_major_with(major: u32, extra: &str) -> Option<PgServer> {
        let Some(dir) = major_bin_dir(major) else {
            return missing(
                "pgmajors",
                &format!("PostgreSQL {major} not installed (scripts/install-deps.sh pgmajors)"),
            );
        };
        Self::start_in(dir, &format!("-c fsync=off -c full_page_writes=off -c synchronous_commit=off {extra}"))
    }

    /// Stops the server (`pg_ctl stop -m fast`); the folder stays until the handle is dropped.
    pub fn stop(&self) {
        self.must(self.tool("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "fast", "-w", "stop"]), "pg_ctl stop");
    }

    /// Restarts the server (`pg_ctl restart -m fast`, the same options): every connection
    /// is cut, as in a failover-free maintenance restart.
    pub fn restart(&self) {
        self.must(
            // `-l`: the new postmaster must not hold our stdout (`output` would wait for it).
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-m", "fast", "-w", "-t", "60", "restart"]),
            "pg_ctl restart",
        );
    }

    /// Whether its programs run as the postgres user (the tests run as root).
    pub fn as_postgres(&self) -> bool {
        self.as_postgres
    }

    /// The server's major version (`server_version_num / 10000`).
    pub fn major(&self) -> u32 {
        self.psql("postgres", "SHOW server_version_num").parse::<u32>().unwrap() / 10000
    }

    /// Starts a cluster with PostgreSQL's stock durability settings (fsync, synchronous
    /// commits), for tests that count WAL flushes; autovacuum is off so that only the test's
    /// own sessions flush.
    pub fn start_durable() -> Option<PgServer> {
        Self::start_with("-c autovacuum=off")
    }

    fn start_with(settings: &str) -> Option<PgServer> {
        let Some(bin_dir) = find_bin_dir() else {
            return missing("postgres", "initdb/pg_ctl not found (apt-get install postgresql)");
        };
        Self::start_in(bin_dir, settings)
    }

    /// `start` with the bootstrap superuser named `superuser` (no `postgres` role at all) and
    /// `extra` settings.
    pub fn start_as(superuser: &str, extra: &str) -> Option<PgServer> {
        let Some(bin_dir) = find_bin_dir() else {
            return missing("postgres", "initdb/pg_ctl not found (apt-get install postgresql)");
        };
        let settings = format!("-c fsync=off -c full_page_writes=off -c synchronous_commit=off {extra}");
        Self::start_named(bin_dir, &settings, superuser, &[])
    }

    /// `start_major` with 1 MB WAL segments (`initdb --wal-segsize=1`): many segments, cheaply.
    pub fn start_major_small_wal(major: u32) -> Option<PgServer> {
        let Some(dir) = major_bin_dir(major) else {
            return missing(
                "pgmajors",
                &format!("PostgreSQL {major} not installed (scripts/install-deps.sh pgmajors)"),
            );
        };
        Self::start_named(
            dir,
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            "postgres",
            &["--wal-segsize=1"],
        )
    }

    fn start_in(bin_dir: PathBuf, settings: &str) -> Option<PgServer> {
        Self::start_named(bin_dir, settings, "postgres", &[])
    }

    fn start_named(bin_dir: PathBuf, settings: &str, superuser: &str, initdb: &[&str]) -> Option<PgServer> {
        let as_postgres = nix::unistd::Uid::effective().is_root();
        let dir = tempfile::Builder::new().prefix("pgtest").tempdir().unwrap();
        if as_postgres {
            let user = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres system user");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, "admin-secret\n").unwrap();
        if as_postgres {
            let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            nix::unistd::chown(&pwfile, Some(user.uid), Some(user.gid)).unwrap();
        }
        let server = PgServer { port: free_port(), bin_dir, as_postgres, dir, superuser: superuser.to_string() };
        let data = server.data_dir();
        server.must(
            server
                .tool("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    superuser,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .args(initdb)
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 {settings}", server.port, server.dir.path().display());
        server.must(
            server
                .tool("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(server.dir.path().join("log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        Some(server)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin_dir.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn must(&self, cmd: &mut Command, what: &str) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            panic!(
                "{what} failed: {}\n{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// psql as the superuser over the private socket, `ON_ERROR_STOP=1`; returns stdout.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_cmd(db).args(["-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "psql {db} `{sql}` failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A psql command (superuser, socket, tuples only, unaligned) for custom use.
    pub fn psql_cmd(&self, db: &str) -> Command {
        let local = self.bin_dir.join("psql");
        let mut c = Command::new(if local.exists() { local } else { PathBuf::from("psql") });
        // The name inside a quoted conninfo value, so that any database name works.
        let dbname = format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"));
        c.arg("-h").arg(self.socket_dir()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            &self.superuser,
            "-d",
            &dbname,
            "-qtAX",
        ]);
        c
    }

    /// Creates a login role with a password and databases owned by it.
    pub fn create_app(&self, user: &str, password: &str, databases: &[&str]) {
        self.psql("postgres", &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"));
        for db in databases {
            self.psql("postgres", &format!("CREATE DATABASE {db} OWNER {user}"));
        }
    }

    /// Loads a small but varied data set into `db` as `owner`'s objects.
    pub fn seed(&self, db: &str, owner: &str, rows: u32) {
        self.psql(
            db,
            &format!(
                "SET ROLE {owner};
                 CREATE SCHEMA IF NOT EXISTS sales;
                 CREATE TABLE public.customers (id serial PRIMARY KEY, name text, email text, created timestamptz DEFAULT now());
                 CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer int REFERENCES public.customers(id), total numeric(12,2), note jsonb, blob bytea);
                 INSERT INTO public.customers (name, email) SELECT 'name ' || g, 'u' || g || '@example.com' FROM generate_series(1, {rows}) g;
                 INSERT INTO sales.orders (customer, total, note, blob)
                   SELECT (g % {rows}) + 1, g * 1.5, jsonb_build_object('n', g, 'tag', md5(g::text)), decode(md5(g::text), 'hex')
                   FROM generate_series(1, {rows} * 2) g;
                 CREATE VIEW public.big_orders AS SELECT * FROM sales.orders WHERE total > 100;"
            ),
        );
    }

    /// Adds what a real application has beyond tables: an extra role with grants, a sequence
    /// that has been used, and a function (call after `seed`).
    pub fn seed_extras(&self, db: &str, owner: &str) {
        self.psql(
            "postgres",
            "DO $$ BEGIN CREATE ROLE reporting NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        );
        self.psql(
            db,
            &format!(
                "SET ROLE {owner};
                 CREATE SEQUENCE sales.invoice_no START 1000;
                 SELECT nextval('sales.invoice_no'), nextval('sales.invoice_no');
                 CREATE FUNCTION sales.total_for(c int) RETURNS numeric LANGUAGE sql AS
                   $f$ SELECT coalesce(sum(total), 0) FROM sales.orders WHERE customer = c $f$;
                 GRANT USAGE ON SCHEMA sales TO reporting;
                 GRANT SELECT ON ALL TABLES IN SCHEMA sales TO reporting;"
            ),
        );
    }

    /// A digest of every base table's content, the sequence position and the function's
    /// result: equal digests mean an equal database for these tests.
    pub fn content_digest(&self, db: &str) -> String {
        let tables = self.psql(
            db,
            "SELECT string_agg(format('SELECT %L || md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) FROM %I.%I t', table_schema || '.' || table_name || '=', table_schema, table_name), ' UNION ALL ' ORDER BY table_schema, table_name)
             FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
        );
        let mut out = self.psql(db, &tables);
        out.push_str(&self.psql(db, "SELECT '|seq=' || last_value FROM sales.invoice_no"));
        out.push_str(&self.psql(db, "SELECT '|fn=' || sales.total_for(1)"));
        out.push_str(&self.psql(db, "SELECT '|grant=' || has_table_privilege('reporting', 'sales.orders', 'SELECT')"));
        out
    }

    /// `pg_dumpall --roles-only --no-role-passwords` as the superuser, as upstream ran it.
    pub fn dumpall_roles(&self) -> String {
        self.client_output("pg_dumpall", &["--roles-only", "--no-role-passwords"])
    }

    /// `pg_dump -Fp db` as the superuser.
    pub fn dump_plain(&self, db: &str) -> String {
        self.client_output("pg_dump", &["-Fp", db])
    }

    fn client_output(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", &self.superuser])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Row counts of every base table in `db`, as `schema.table=count` lines.
    pub fn row_counts(&self, db: &str) -> String {
        let tables = self.psql(
            db,
            "SELECT string_agg(format('SELECT %L || ''='' || count(*) FROM %I.%I', table_schema || '.' || table_name, table_schema, table_name), ' UNION ALL ' ORDER BY table_schema, table_name)
             FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
        );
        if tables.is_empty() {
            return String::new();
        }
        // UNION ALL keeps no order: sort the lines.
        self.psql(db, &format!("SELECT c FROM ({tables}) AS counts(c) ORDER BY c"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "stop"]).output();
    }
}
