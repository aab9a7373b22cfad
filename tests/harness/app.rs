//! A PostgreSQL server with an application role `app` owning seeded databases, plus a backup
//! folder and a backup.conf: the common setup of backup, restore and verify tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::bin;
use super::postgres::PgServer;

pub const APP_PASSWORD: &str = "app pw with spaces & $ymbols";

pub struct Fixture {
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A server with role `app` owning databases `app1` and `app2`, both seeded.
    pub fn start(rows: u32) -> Option<Fixture> {
        Self::on(PgServer::start()?, rows)
    }

    /// `start` on a server already running (another major, other settings).
    pub fn on(pg: PgServer, rows: u32) -> Option<Fixture> {
        pg.create_app("app", APP_PASSWORD, &["app1", "app2"]);
        pg.seed("app1", "app", rows);
        pg.seed("app2", "app", rows / 2 + 1);
        Some(Fixture { pg, dir: tempfile::tempdir().unwrap() })
    }

    pub fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    pub fn conf(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("backup.conf");
        fs::write(&path, text).unwrap();
        path
    }

    /// `backup-container -1` with per-host credentials for `localhost`, and deliberately
    /// wrong fallback credentials so that using the fallback would fail.
    pub fn once(&self, conf: &Path) -> Command {
        let mut cmd = bin();
        cmd.arg("-1")
            .env("BACKUP_CONF", conf)
            .env("BACKUP_DIR", self.backups())
            .env("LOCALHOST_USER", "app")
            .env("LOCALHOST_PASSWORD", APP_PASSWORD)
            .env("DATABASE_USER", "nobody")
            .env("DATABASE_PASSWORD", "wrong");
        cmd
    }

    /// `backup-container` with the backup folder, credentials and admin password set.
    pub fn cmd(&self, conf: &Path) -> Command {
        let mut cmd = bin();
        cmd.env("BACKUP_CONF", conf)
            .env("BACKUP_DIR", self.backups())
            .env("LOCALHOST_USER", "app")
            .env("LOCALHOST_PASSWORD", APP_PASSWORD)
            .env("BACKUP_ADMIN_PASSWORD", "admin-secret");
        cmd
    }

    /// A verification folder the postgres user can reach (tests run as root in CI).
    pub fn verify_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("verify");
        fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    /// The newest backup file of `core`.
    pub fn newest(&self, core: &str) -> PathBuf {
        let mut files: Vec<String> = super::backups_under(&self.backups())
            .into_iter()
            .filter(|f| Path::new(f).file_name().unwrap().to_string_lossy().starts_with(&format!("{core}_2")))
            .collect();
        files.sort_by_key(|f| Path::new(f).file_name().unwrap().to_string_lossy().to_string());
        self.backups().join(files.pop().unwrap_or_else(|| panic!("no backup of {core}")))
    }
}
