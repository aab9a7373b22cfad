//! Throwaway servers: what every engine's local server for verification, drills, rehearsals
//! and point-in-time restores has in common — where it lives, how long it may take to start,
//! extra settings, an existing data directory and how it recovers — and the handle the
//! workflows hold (dropping it stops the server and removes its files).

use std::path::PathBuf;
use std::time::Duration;

use crate::model::database::Conn;

/// How to start a throwaway server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Folder in which the server's temporary directory is created (`VERIFY_DIR`).
    pub work_dir: PathBuf,
    /// How long it may take to start (`DATABASE_SERVER_TIMEOUT`).
    pub start_timeout: Duration,
    /// Extra server settings (`VERIFY_SERVER_OPTIONS`, `name=value` each).
    pub settings: Vec<String>,
}

/// An existing data directory to start a throwaway server on (a restored base backup):
/// `folder/data`. The folder, and everything in it, goes with the server.
#[derive(Debug)]
pub struct DataDir {
    pub folder: tempfile::TempDir,
    /// The cluster's bootstrap superuser (recorded with the base backup: it is not always
    /// `postgres`), whom the server lets in over its private socket.
    pub superuser: String,
}

/// How a server started on an existing data directory recovers (point-in-time restores).
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Run once per WAL file the server asks for (`%f`: its name, `%p`: where to put it); it
    /// must fail for files the archive does not have.
    pub restore_command: String,
    /// Where recovery stops (`recovery_target_time`, with an explicit offset), then promotes;
    /// `None`: the end of the WAL `restore_command` can give.
    pub target_time: Option<String>,
}

/// A running throwaway server; dropping the last handle stops it and deletes its folder.
pub trait Server: Send + Sync {
    /// How to connect as its superuser (a unix socket in its folder).
    fn conn(&self) -> Conn;

    /// Shuts the server down cleanly and moves its data directory to `dest` (an empty or
    /// missing folder), with the source's own configuration put back: a cluster to mount.
    ///
    /// # Errors
    /// The engine cannot, the server does not stop cleanly, or the move fails (what was
    /// copied is removed).
    fn keep_data(self: Box<Self>, dest: &std::path::Path) -> anyhow::Result<()> {
        let _ = dest;
        anyhow::bail!("this engine cannot keep a throwaway server's data directory")
    }
}

/// The last `lines` lines of a server's log, for an error that says why it did not start.
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_tail_keeps_the_last_lines_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(super::log_tail(&path, 2), "c\nd");
        assert_eq!(super::log_tail(&path, 9), "a\nb\nc\nd");
        assert_eq!(super::log_tail(&dir.path().join("none"), 3), "");
    }
}
