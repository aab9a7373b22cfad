//! A throwaway MariaDB server: `mariadb-install-db` into a temp dir, `mariadbd` on a free port
//! on 127.0.0.1 and a private socket (as root: `--user=root`), an `admin` account with all
//! privileges over TCP. Dropping it shuts the server down.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, missing};

pub const ADMIN_PASSWORD: &str = "maria admin pw";

pub struct MariaDbServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn tool(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    names.iter().find_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()))
}

impl MariaDbServer {
    /// Starts a server, or `None` (skip) when MariaDB is not installed.
    pub fn start() -> Option<MariaDbServer> {
        let (Some(install), Some(server)) = (tool(&["mariadb-install-db"]), tool(&["mariadbd"])) else {
            return missing("mariadb", "mariadb-install-db/mariadbd not found (scripts/install-deps.sh mariadb)");
        };
        let dir = tempfile::tempdir().unwrap();
        let root = nix::unistd::Uid::effective().is_root();
        let mut shared: Vec<String> = if root { vec!["--user=root".into()] } else { vec![] };
        // A private tmpdir: parallel servers sharing /tmp collide on temporary table names.
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        shared.push(format!("--tmpdir={}", dir.path().join("tmp").display()));
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args(&shared)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .unwrap();
        assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args(&shared)
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--innodb-buffer-pool-size=64M"])
            .arg(format!("--log-error={}", dir.path().join("err.log").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = MariaDbServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.try_sql("", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                std::fs::read_to_string(s.dir.path().join("err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s.sql("", &format!("CREATE USER 'admin'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'; GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION"));
        Some(s)
    }

    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(tool(&["mariadb", "mysql"]).unwrap())
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.path().join("sock").display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .args(if db.is_empty() { vec![] } else { vec![db] })
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// SQL as root over the socket; panics on error.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql).unwrap_or_else(|e| panic!("mariadb `{sql}`: {e}"))
    }

    /// A database `db` owned by user `user` (any host), with a few tables and rows.
    pub fn create_app(&self, db: &str, user: &str, password: &str, rows: u32) {
        self.sql(
            "",
            &format!(
                "CREATE DATABASE {db}; CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';
                 GRANT ALL ON {db}.* TO '{user}'@'%'; GRANT PROCESS, RELOAD ON *.* TO '{user}'@'%'"
            ),
        );
        if rows > 0 {
            self.sql(
                db,
                &format!(
                    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100), note TEXT, photo BLOB) ENGINE=InnoDB;
                     CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, total DECIMAL(10,2), FOREIGN KEY (customer) REFERENCES customers(id)) ENGINE=InnoDB;
                     INSERT INTO customers SELECT seq, CONCAT('name ', seq), REPEAT('x', seq % 50), UNHEX(MD5(seq)) FROM seq_1_to_{rows};
                     INSERT INTO orders (customer, total) SELECT 1 + seq % {rows}, seq * 1.25 FROM seq_1_to_{};
                     CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;",
                    rows * 2
                ),
            );
        }
    }

    /// `table=count` lines for every base table of `db`.
    pub fn row_counts(&self, db: &str) -> String {
        let tables = self.sql("", &format!("SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' AND table_type = 'BASE TABLE' ORDER BY table_name"));
        tables
            .lines()
            .map(|t| format!("{t}={}", self.sql(db, &format!("SELECT COUNT(*) FROM `{t}`"))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
