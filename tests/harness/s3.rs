//! An S3-compatible server for tests: s3s-fs (checks SigV4 signatures) on 127.0.0.1, serving
//! a folder where each bucket is a subfolder. The binary comes from `S3S_FS_BIN`, `PATH`, or
//! `.tools/bin/s3s-fs` (`scripts/install-deps.sh s3`). Dropping it kills the server.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, missing};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "test-secret-key";

pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
}

fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/s3s-fs");
    if local.exists() {
        return Some(local);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join("s3s-fs")).find(|p| p.exists())
}

impl S3Server {
    /// Starts a server on `root` (created if missing); `None` (skip) without s3s-fs.
    pub fn start(root: &Path) -> Option<S3Server> {
        let Some(bin) = binary() else {
            return missing("s3", "s3s-fs not found (scripts/install-deps.sh s3)");
        };
        std::fs::create_dir_all(root).unwrap();
        // A port taken between `free_port` and the server's bind makes it exit: try another.
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    ACCESS_KEY,
                    "--secret-key",
                    SECRET_KEY,
                ])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(S3Server { child, port, root: root.to_path_buf() });
                }
                assert!(Instant::now() < deadline, "s3s-fs did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("s3s-fs exited at start three times (ports taken?)")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
