//! The health listener under the attacks that starved it: a request line of hundreds of MB
//! without a newline, hundreds of idle connections, slow clients sending a header line every
//! two seconds; and HEAD requests from monitors. Every attack uses three times the listener's
//! own limits (128 connections, 8 KiB of request), so raising a cap cannot make these pass.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::bin;
use crate::harness::daemon::Daemon;

const CONNECTION_LIMIT: usize = 128;
const REQUEST_LIMIT: usize = 8 * 1024;

fn daemon(dir: &tempfile::TempDir) -> Daemon {
    std::fs::create_dir_all(dir.path().join("backups")).unwrap();
    let conf = dir.path().join("backup.conf");
    std::fs::write(&conf, "db/app\n0 3 * * * default ./backup.sh -s\n").unwrap();
    let mut c = bin();
    c.env("BACKUP_CONF", &conf).env("BACKUP_DIR", dir.path().join("backups")).env("DATABASE_USER", "u");
    // No server behind `db`: the start-up check would only try to resolve it.
    c.env("STARTUP_CHECK", "false");
    Daemon::start(c, dir.path())
}

/// One request; (status code, whole response, time taken).
fn request(addr: &str, raw: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text, started.elapsed())
}

/// `/healthz` answers 200 within a second.
fn probe_quickly(addr: &str) {
    let (code, text, took) = request(addr, "GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n");
    assert_eq!(code, 200, "{text}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
}

fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_huge_request_line_is_cut_off_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir);
    probe_quickly(&d.addr);
    let before = rss_kb(d.pid());
    // A request line 3x the limit: 414, at once.
    let (code, _, _) = request(&d.addr, &format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3 * REQUEST_LIMIT)));
    assert_eq!(code, 414);
    // Headers 3x the limit: 431.
    let headers: String = (0..3 * REQUEST_LIMIT / 64).map(|i| format!("X-H{i}: {}\r\n", "v".repeat(56))).collect();
    let (code, _, _) = request(&d.addr, &format!("GET /healthz HTTP/1.1\r\n{headers}\r\n"));
    assert_eq!(code, 431);
    // 200 MB without a newline, as fast as the socket takes it: the listener stops reading
    // after 8 KiB and closes; the writer sees the connection end long before 200 MB.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    while sent < 200 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 200 << 20, "the listener accepted all 200 MB");
    probe_quickly(&d.addr);
    let after = rss_kb(d.pid());
    assert!(after < before + 4096, "RSS grew from {before} kB to {after} kB");
}

#[test]
fn idle_and_slow_connections_cannot_starve_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir);
    let idle: Vec<TcpStream> = (0..3 * CONNECTION_LIMIT).map(|_| TcpStream::connect(&d.addr).unwrap()).collect();
    // Slow clients: a header line every 2 s, each, for longer than the request deadline.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..48)
        .map(|i| {
            let (addr, stop) = (d.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(&addr) else { return };
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n");
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).is_err() {
                        // Cut off at the deadline: reconnect and start again.
                        match TcpStream::connect(&addr) {
                            Ok(n) => s = n,
                            Err(_) => return,
                        }
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        probe_quickly(&d.addr);
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in slow {
        let _ = t.join();
    }
    drop(idle);
    probe_quickly(&d.addr);
}

#[test]
fn head_requests_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir);
    for path in ["/healthz", "/metrics", "/readyz", "/status"] {
        let (code, text, _) = request(&d.addr, &format!("HEAD {path} HTTP/1.1\r\nHost: m\r\n\r\n"));
        assert_eq!(code, 200, "{path}: {text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.is_empty(), "{path}: HEAD has no body");
        assert!(head.contains("Content-Length: "), "{head}");
    }
    let (code, _, _) = request(&d.addr, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(code, 405);
    // A request that never finishes gets 408 at the deadline, not an endless wait.
    let (code, _, took) = request(&d.addr, "GET /healthz HTTP/1.1\r\n");
    assert_eq!(code, 408);
    assert!(took < Duration::from_secs(8), "{took:?}");
}
