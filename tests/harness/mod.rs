//! Test harness: temp dirs, the binary under test with a clean environment, free ports, and
//! the skip-or-fail rule for missing servers.
//!
//! A missing server binary skips the test with a message, unless `BACKUP_TEST_REQUIRE` lists
//! it (or says `all`): then the test fails. `make test` (and so CI) sets `all`.

#![allow(dead_code)]

pub mod app;
pub mod daemon;
pub mod ftps;
pub mod hang;
pub mod mariadb;
pub mod moto;
pub mod pitr;
pub mod postgres;
pub mod receiver;
pub mod s3;
pub mod vsftpd;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether a missing `what` must fail the test instead of skipping it.
pub fn required(what: &str) -> bool {
    std::env::var("BACKUP_TEST_REQUIRE")
        .map(|v| v.split(',').any(|s| s.trim() == what || s.trim() == "all"))
        .unwrap_or(false)
}

/// Skips (returns `None`) or panics, per `required`.
pub fn missing<T>(what: &str, why: &str) -> Option<T> {
    if required(what) {
        panic!("{what} is required (BACKUP_TEST_REQUIRE) but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what} unavailable: {why}");
    None
}

/// A free TCP port on 127.0.0.1 (bound then released), never the same one twice in this
/// process: tests run at once, and two servers handed one port would each answer the other's
/// client (moto's CI failure: one test's upload counted in another's bucket).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The binary under test, with a clean environment (PATH only, TZ fixed) and stdin closed.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backup-container"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TZ", "America/Vancouver")
        .env("BACKUP_LOG_LEVEL", "info")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Output of a finished command, with its streams as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("running the binary"))
}

/// Every file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> =
        walk(root).into_iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Backup files (`.sql.gz`, `.sql.gz.age`) under `root`, relative, sorted.
pub fn backups_under(root: &Path) -> Vec<String> {
    files_under(root).into_iter().filter(|f| f.ends_with(".sql.gz") || f.ends_with(".sql.gz.age")).collect()
}

/// Decompresses a gzip file to text.
pub fn gunzip(path: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    text
}

/// The smallest complete PostgreSQL dump (pg_dump's header and trailer), for planted files
/// that retention must count as good backups.
pub const COMPLETE_DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE public.t (x int);\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

/// The manifest of the backup at `root`/`rel`, as JSON.
pub fn record(root: &Path, rel: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(root.join(backup_container::catalog::manifest::record_key(rel))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes a gzip file.
pub fn gzip_to(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}
