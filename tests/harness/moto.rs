//! moto in server mode: an S3 server that implements Object Lock (versioned buckets,
//! retention modes, deletes of locked versions refused with 403), for the Object Lock tests.
//! It does not check signatures (s3s-fs does that, in the other S3 tests). From
//! `.tools/moto/bin/moto_server` (`scripts/install-deps.sh moto`). Dropping it kills it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, missing};

pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    /// Starts the pinned moto (5.2.5) on a free port; `None` (skip) without it.
    pub fn start() -> Option<MotoServer> {
        Self::start_from("moto")
    }

    /// Starts the current moto release (`.tools/moto-current`, refreshed weekly by
    /// `scripts/install-deps.sh moto`): what a pinned test server hides shows here.
    pub fn start_current() -> Option<MotoServer> {
        Self::start_from("moto-current")
    }

    fn start_from(venv: &str) -> Option<MotoServer> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools").join(venv).join("bin/moto_server");
        if !bin.exists() {
            return missing("moto", "moto_server not found (scripts/install-deps.sh moto)");
        }
        // A port taken between `free_port` and moto's bind makes moto exit: try another.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut server = MotoServer { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if server.child.try_wait().unwrap().is_some() {
                    break;
                }
                if server.answers() {
                    return Some(server);
                }
                assert!(Instant::now() < deadline, "moto_server did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server exited at start three times (ports taken?)")
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(s, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut buf = [0u8; 12];
        s.read(&mut buf).map(|n| n >= 12 && buf.starts_with(b"HTTP/1.")).unwrap_or(false)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
