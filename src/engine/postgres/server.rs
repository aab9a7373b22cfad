//! A throwaway PostgreSQL server for verification: initdb into a fresh temporary folder under
//! the verification path, start it on a private unix socket (no TCP) with settings that trade
//! durability for speed, and on drop stop it and remove every file, whatever happened. Or a
//! server on an existing data directory (`start_on`, point-in-time restores), prepared by
//! `datadir`, recovering until it is consistent (and promoted) before it lets anyone in.
//!
//! As root, initdb and the server run as the `postgres` user (initdb refuses root).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tracing::{debug, info, warn};

use super::datadir;
use crate::engine::server::{DataDir, Recovery, Server, ServerOptions, log_tail};
use crate::engine::{Conn, process};
use crate::system::cancel::Cancel;

/// Socket paths are limited to 107 bytes by the kernel.
const MAX_SOCKET_PATH: usize = 100;
const PORT: u16 = 5432;

/// Settings for a server whose data is thrown away: no fsync, no WAL beyond the minimum.
const FAST_SETTINGS: [&str; 11] = [
    "fsync=off",
    "full_page_writes=off",
    "synchronous_commit=off",
    "wal_level=minimal",
    "max_wal_senders=0",
    "autovacuum=off",
    "max_wal_size=4GB",
    "checkpoint_timeout=1h",
    "shared_buffers=128MB",
    "maintenance_work_mem=256MB",
    // The restore runs in one transaction, which locks every table it creates.
    "max_locks_per_transaction=4096",
];

/// A running throwaway server. Dropping it stops the server and deletes its folder.
pub struct Throwaway {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    as_postgres: bool,
    started: bool,
    /// Who connects: `postgres` for ours, the cluster's bootstrap superuser for `start_on`.
    superuser: String,
}

impl Throwaway {
    /// Creates and starts a server of `bin_dir`'s programs.
    ///
    /// # Errors
    /// The verification folder is unusable, initdb fails, or the server does not start within
    /// `opts.start_timeout` (the server log's last lines are quoted).
    pub fn start(bin_dir: PathBuf, opts: &ServerOptions, cancel: &Cancel) -> anyhow::Result<Throwaway> {
        fs::create_dir_all(&opts.work_dir)
            .with_context(|| format!("creating the verification folder {} (VERIFY_DIR)", opts.work_dir.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(&opts.work_dir)
            .with_context(|| format!("creating a folder in {} (VERIFY_DIR)", opts.work_dir.display()))?;
        let mut server = Throwaway::owning(dir, bin_dir, "postgres")?;
        server.init(cancel)?;
        let mut settings: Vec<String> = FAST_SETTINGS.iter().map(|s| s.to_string()).collect();
        settings.extend(opts.settings.iter().cloned());
        server.launch(&settings, opts, cancel)?;
        Ok(server)
    }

    /// Starts a server of `bin_dir`'s programs (the data directory's own major) on `data`,
    /// recovering as `recovery` says; `pg_ctl` waits until recovery is done (the server lets
    /// nobody in before: `hot_standby` is off).
    ///
    /// # Errors
    /// The folder is unusable, or the server does not start or recover within
    /// `opts.start_timeout` (the server log's last lines are quoted).
    pub fn start_on(
        bin_dir: PathBuf,
        data: DataDir,
        recovery: Option<&Recovery>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Throwaway> {
        let mut server = Throwaway::owning(data.folder, bin_dir, &data.superuser)?;
        let dir = server.data_dir();
        datadir::prepare(&dir, recovery)?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("making {} private (0700), as the server requires", dir.display()))?;
        if server.as_postgres {
            chown_all(&dir)?;
        }
        server.launch(&opts.settings, opts, cancel)?;
        server.wait_ready(opts.start_timeout, cancel)?;
        Ok(server)
    }

    /// Waits until the server says it is ready in its pid file (`pg_ctl -w` may return while a
    /// server without hot standby is still recovering): recovery done and, with a target,
    /// promoted.
    ///
    /// # Errors
    /// The server stopped, or `timeout` passed; the log's tail is quoted.
    fn wait_ready(&self, timeout: Duration, cancel: &Cancel) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout.max(Duration::from_secs(1));
        let pid_file = self.data_dir().join("postmaster.pid");
        loop {
            // No pid file: the server stopped; a short one: being written.
            let status = fs::read_to_string(&pid_file).ok().map(|t| t.lines().nth(7).unwrap_or("").trim().to_string());
            match status.as_deref() {
                Some("ready") => return Ok(()),
                None => bail!(
                    "the server on {} stopped while recovering:\nserver log:\n{}",
                    self.data_dir().display(),
                    log_tail(&self.log_file(), 8)
                ),
                Some(_) if std::time::Instant::now() > deadline => bail!(
                    "the server on {} did not finish recovering within {}s (DATABASE_SERVER_TIMEOUT):\nserver log:\n{}",
                    self.data_dir().display(),
                    timeout.as_secs(),
                    log_tail(&self.log_file(), 8)
                ),
                Some(_) => cancel.sleep(Duration::from_millis(100))?,
            }
        }
    }

    /// A handle on `dir` (not started yet), its folder owned by the server's user.
    fn owning(dir: tempfile::TempDir, bin_dir: PathBuf, superuser: &str) -> anyhow::Result<Throwaway> {
        if dir.path().join(format!(".s.PGSQL.{PORT}")).as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the verification folder path {} is too long for a unix socket; use a shorter VERIFY_DIR",
                dir.path().display()
            );
        }
        let as_postgres = nix::unistd::Uid::effective().is_root();
        if as_postgres {
            let user = postgres_user()?;
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))?;
        }
        Ok(Throwaway { dir, bin_dir, as_postgres, started: false, superuser: superuser.to_string() })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
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

    fn init(&self, cancel: &Cancel) -> anyhow::Result<()> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        process::capture(cmd, "initdb", cancel).context("initialising the verification server")?;
        Ok(())
    }

    fn launch(&mut self, extra: &[String], opts: &ServerOptions, cancel: &Cancel) -> anyhow::Result<()> {
        let mut settings = vec![
            "listen_addresses=''".to_string(),
            format!("unix_socket_directories='{}'", self.dir.path().display()),
            format!("port={PORT}"),
        ];
        settings.extend(extra.iter().cloned());
        let options: Vec<String> = settings.iter().map(|s| format!("-c {s}")).collect();
        let timeout = opts.start_timeout.as_secs().max(1);
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).arg("-l").arg(self.log_file()).args([
            "-w",
            "-t",
            &timeout.to_string(),
            "-o",
            &options.join(" "),
            "start",
        ]);
        self.started = true; // pg_ctl may leave a server behind even when it reports failure.
        info!(folder = %self.dir.path().display(), "Starting the verification server.");
        if let Err(e) = process::capture(cmd, "pg_ctl", cancel) {
            bail!(
                "the verification server did not start within {timeout}s (DATABASE_SERVER_TIMEOUT): {e:#}\nserver log:\n{}",
                log_tail(&self.log_file(), 8)
            );
        }
        Ok(())
    }

    fn stop(&mut self) {
        if !self.started {
            return;
        }
        self.started = false;
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        match cmd.output() {
            Ok(o) if o.status.success() => debug!("Verification server stopped."),
            _ => self.kill_postmaster(),
        }
    }

    /// Last resort when pg_ctl cannot stop it: SIGKILL the postmaster named in its pid file.
    fn kill_postmaster(&self) {
        let Ok(text) = fs::read_to_string(self.data_dir().join("postmaster.pid")) else { return };
        if let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) {
            warn!(pid, "pg_ctl could not stop the verification server; killing it.");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Server for Throwaway {
    /// The socket folder, as the bootstrap superuser (trust auth, local only).
    fn conn(&self) -> Conn {
        Conn {
            host: self.dir.path().display().to_string(),
            port: Some(PORT),
            user: Some(self.superuser.clone()),
            password: None,
        }
    }

    /// A clean shutdown (`pg_ctl stop -m fast`: a checkpoint, no recovery needed at the next
    /// start), the source's configuration back, the data directory moved to `dest`.
    fn keep_data(mut self: Box<Self>, dest: &std::path::Path) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D").arg(&data).args(["-m", "fast", "-w", "-t", "120", "stop"]);
        let out = cmd.output().context("running pg_ctl stop")?;
        if !out.status.success() {
            bail!("the recovered server did not shut down cleanly: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        self.started = false;
        datadir::restore_source(&data)?;
        datadir::move_tree(&data, dest)
    }
}

fn postgres_user() -> anyhow::Result<nix::unistd::User> {
    nix::unistd::User::from_name("postgres")?
        .ok_or_else(|| anyhow!("running as root, but there is no postgres user to run the verification server"))
}

/// Gives `dir` and everything in it to the `postgres` user (a data directory restored as root).
fn chown_all(dir: &std::path::Path) -> anyhow::Result<()> {
    let user = postgres_user()?;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        nix::unistd::chown(entry.path(), Some(user.uid), Some(user.gid))
            .with_context(|| format!("giving {} to the postgres user", entry.path().display()))?;
    }
    Ok(())
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
        // The TempDir field then removes the folder.
    }
}
