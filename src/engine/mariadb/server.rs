//! A throwaway MariaDB server for verification: `mariadb-install-db` into a fresh temporary
//! folder under the verification path, `mariadbd` on a private unix socket with networking
//! off, root without a password over that socket; stopped and deleted on drop, whatever
//! happened (upstream's MariaDB verification could not start the server, its issue #82).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tracing::{info, warn};

use super::find_tool;
use crate::engine::server::{Server, ServerOptions, log_tail};
use crate::engine::{Conn, EngineOptions, process};
use crate::system::cancel::Cancel;

pub struct Throwaway {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `mariadb-admin`, for pings and the shutdown.
    admin: std::path::PathBuf,
}

impl Throwaway {
    /// # Errors
    /// The folder is unusable, initialisation fails, or the server does not answer within
    /// `opts.start_timeout` (its error log is quoted).
    pub fn start(options: &EngineOptions, opts: &ServerOptions, cancel: &Cancel) -> anyhow::Result<Throwaway> {
        fs::create_dir_all(&opts.work_dir)
            .with_context(|| format!("creating the verification folder {} (VERIFY_DIR)", opts.work_dir.display()))?;
        let dir = tempfile::Builder::new().prefix("verify-").tempdir_in(&opts.work_dir)?;
        let data = dir.path().join("data");
        let as_root = nix::unistd::Uid::effective().is_root();
        let mut shared: Vec<String> = if as_root { vec!["--user=root".into()] } else { vec![] };
        // Its own temporary folder: servers sharing /tmp collide on temporary table names
        // while bootstrapping ("Could not remove temporary table ... Aborting").
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        shared.push(format!("--tmpdir={}", tmp.display()));
        let mut init = Command::new(find_tool(options, &["mariadb-install-db", "mysql_install_db"]));
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(&shared)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        process::capture(init, "mariadb-install-db", cancel).context("initialising the verification server")?;
        let admin = find_tool(options, &["mariadb-admin", "mysqladmin"]);
        let mut server = Throwaway { child: None, dir, admin };
        let socket = server.socket();
        let mut cmd = Command::new(find_tool(options, &["mariadbd", "mysqld"]));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(&shared)
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", server.dir.path().join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", server.log().display()))
            .args([
                "--skip-networking",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=128M",
                "--innodb-flush-log-at-trx-commit=0",
            ])
            .args(opts.settings.iter().map(|o| format!("--{o}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        info!(folder = %server.dir.path().display(), "Starting the verification server.");
        server.child = Some(cmd.spawn().map_err(|e| anyhow!("starting mariadbd: {e} (is mariadb-server installed?)"))?);
        server.wait_ready(opts.start_timeout, cancel)?;
        Ok(server)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadbd.sock")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    fn wait_ready(&mut self, timeout: Duration, cancel: &Cancel) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            cancel.check()?;
            let mut ping = Command::new(&self.admin);
            ping.arg("--no-defaults").arg(format!("--socket={}", self.socket().display())).args(["-uroot", "ping"]);
            if process::capture(ping, "mariadb-admin", cancel).is_ok() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > timeout {
                bail!(
                    "the verification server did not start within {}s (DATABASE_SERVER_TIMEOUT): server log:\n{}",
                    timeout.as_secs(),
                    log_tail(&self.log(), 8)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Server for Throwaway {
    /// Root over the private socket.
    fn conn(&self) -> Conn {
        Conn { host: self.socket().display().to_string(), port: None, user: Some("root".into()), password: None }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let mut stop = Command::new(&self.admin);
        stop.arg("--no-defaults").arg(format!("--socket={}", self.socket().display())).args(["-uroot", "shutdown"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        warn!("The verification server did not stop; killing it.");
        let _ = child.kill();
        let _ = child.wait();
    }
}
