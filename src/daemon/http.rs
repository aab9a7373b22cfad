//! The health listener: `/healthz` (alive; optionally 503 while a database is stale),
//! `/readyz` (config loaded and the backup folder writable), `/status` (JSON) and `/metrics`
//! (Prometheus text); GET and HEAD.
//!
//! It listens on `0.0.0.0:8080` by default, reachable by every pod in the namespace, and a
//! liveness probe that fails restarts the pod mid-backup. So it is one event loop (mio: epoll)
//! on one thread, where an idle or slow connection costs a slot and at most `MAX_REQUEST`
//! bytes, never a thread or a wait:
//! - the request line and headers together are bounded (`MAX_REQUEST`; 414 for a request line
//!   beyond it, 431 for headers beyond it);
//! - each connection has one deadline for its whole request (`REQUEST_DEADLINE`, 408), not a
//!   per-read timeout that a client sending a byte at a time would keep extending;
//! - when `MAX_CONNECTIONS` are open, the oldest connection that has not sent a whole request
//!   is closed to make room, so a probe that arrives always gets a slot;
//! - handlers never touch the disk or wait: `/readyz` reads a result that a background thread
//!   refreshes, and the state lock is held only to render a few KiB.
//!
//! Hand-written rather than a server crate: the crates that fit a synchronous program
//! (tiny_http, astra) give each connection a thread and blocking reads, the very thing idle
//! and slow clients exploit; hyper would bring an async runtime into a program without one.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::state::State;

/// Open connections at most; beyond, the oldest unfinished request is dropped.
pub const MAX_CONNECTIONS: usize = 128;
/// Request line plus headers, in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its whole request, and then to read the response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How often `/readyz`'s write probe of the backup folder runs (while ready, and while not).
const READY_INTERVAL: Duration = Duration::from_secs(30);
const NOT_READY_INTERVAL: Duration = Duration::from_millis(500);
const LISTENER: Token = Token(usize::MAX);

/// What the handlers need.
pub struct Health {
    pub state: Arc<Mutex<State>>,
    pub backup_dir: PathBuf,
    pub fail_when_stale: bool,
    /// `STATUS_PAGE` (default true): `GET /` serves the status page.
    pub status_page: bool,
    /// The last rendered page and when: a burst of views renders once.
    pub page_cache: Arc<Mutex<Option<(std::time::Instant, String)>>>,
    /// How long a rendered page is served again (`STATUS_PAGE_CACHE`).
    pub page_fresh: std::time::Duration,
}

/// Binds `addr` and serves on a background thread; returns the bound address.
///
/// # Errors
/// When the address cannot be bound (in use, not permitted).
pub fn serve(addr: SocketAddr, health: Health) -> anyhow::Result<SocketAddr> {
    let mut listener =
        TcpListener::bind(addr).with_context(|| format!("binding the health listener to {addr} (HEALTH_ADDR)"))?;
    let bound = listener.local_addr()?;
    let poll = Poll::new().context("setting up the health listener")?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let ready = Arc::new(Mutex::new(writable(&health.backup_dir).map_err(|e| e.to_string())));
    spawn_readiness(health.backup_dir.clone(), ready.clone())?;
    let server = Server { poll, listener, conns: HashMap::new(), next: 0, health, ready };
    std::thread::Builder::new().name("health".into()).spawn(move || server.run())?;
    Ok(bound)
}

/// Refreshes the backup folder's writability in the background (a hung volume must not hang
/// the listener).
fn spawn_readiness(dir: PathBuf, ready: Arc<Mutex<Result<(), String>>>) -> std::io::Result<()> {
    std::thread::Builder::new().name("readiness".into()).spawn(move || {
        loop {
            let result = writable(&dir).map_err(|e| e.to_string());
            let pause = if result.is_ok() { READY_INTERVAL } else { NOT_READY_INTERVAL };
            if let Ok(mut r) = ready.lock() {
                *r = result;
            }
            std::thread::sleep(pause);
        }
    })?;
    Ok(())
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    deadline: Instant,
    opened: Instant,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<usize, Conn>,
    next: usize,
    health: Health,
    ready: Arc<Mutex<Result<(), String>>>,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout =
                self.conns.values().map(|c| c.deadline).min().map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout.map(|t| t + Duration::from_millis(1))) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "The health listener stopped.");
                return;
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    Token(id) => self.serve(id),
                }
            }
            self.expire();
        }
    }

    fn accept(&mut self) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like: make room, try again later.
                    tracing::warn!(error = %e, "The health listener could not accept a connection.");
                    self.evict_oldest();
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                self.evict_oldest();
            }
            let id = self.next;
            self.next = self.next.wrapping_add(1) % (usize::MAX - 1);
            let mut conn = Conn {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                deadline: Instant::now() + REQUEST_DEADLINE,
                opened: Instant::now(),
            };
            if self.poll.registry().register(&mut conn.stream, Token(id), Interest::READABLE).is_ok() {
                self.conns.insert(id, conn);
            }
        }
    }

    /// Closes the connection that has waited longest without a whole request.
    fn evict_oldest(&mut self) {
        let oldest =
            self.conns.iter().filter(|(_, c)| c.output.is_empty()).min_by_key(|(_, c)| c.opened).map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.close(id);
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn serve(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if conn.output.is_empty() {
            match read_request(conn) {
                Progress::More => return,
                Progress::Closed => return self.close(id),
                Progress::Respond(response) => {
                    conn.output = response;
                    conn.deadline = Instant::now() + REQUEST_DEADLINE;
                    if self.poll.registry().reregister(&mut conn.stream, Token(id), Interest::WRITABLE).is_err() {
                        return self.close(id);
                    }
                }
                Progress::Complete(head) => {
                    conn.output = respond(&head, &self.health, &self.ready);
                    conn.deadline = Instant::now() + REQUEST_DEADLINE;
                    if self.poll.registry().reregister(&mut conn.stream, Token(id), Interest::WRITABLE).is_err() {
                        return self.close(id);
                    }
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&id) else { return };
        loop {
            match conn.stream.write(&conn.output[conn.sent..]) {
                Ok(0) => return self.close(id),
                Ok(n) => {
                    conn.sent += n;
                    if conn.sent == conn.output.len() {
                        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                        return self.close(id);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(id),
            }
        }
    }

    /// Closes connections past their deadline, telling a client that never finished its
    /// request so (408) when its socket takes the few bytes.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self.conns.iter().filter(|(_, c)| c.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(c) = self.conns.get_mut(&id)
                && c.output.is_empty()
            {
                let _ = c.stream.write(&simple("408 Request Timeout", "request not received in time\n", false));
            }
            self.close(id);
        }
    }
}

enum Progress {
    More,
    Closed,
    /// An error response for a request that broke a limit.
    Respond(Vec<u8>),
    /// The request line and headers, whole.
    Complete(String),
}

/// Reads what is available, up to the limit, and says whether the request is whole.
fn read_request(conn: &mut Conn) -> Progress {
    let mut buf = [0u8; 2048];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Progress::Closed,
            Ok(n) => {
                let room = (MAX_REQUEST + 1).saturating_sub(conn.input.len());
                conn.input.extend_from_slice(&buf[..n.min(room)]);
                if let Some(end) = header_end(&conn.input) {
                    return Progress::Complete(String::from_utf8_lossy(&conn.input[..end]).into_owned());
                }
                if conn.input.len() > MAX_REQUEST {
                    return Progress::Respond(if conn.input.contains(&b'\n') {
                        simple("431 Request Header Fields Too Large", "request headers too large\n", false)
                    } else {
                        simple("414 URI Too Long", "request line too long\n", false)
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::More,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Progress::Closed,
        }
    }
}

/// Where the header block ends (`\r\n\r\n`, or `\n\n` from lenient clients).
fn header_end(input: &[u8]) -> Option<usize> {
    let crlf = input.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = input.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn simple(status: &str, body: &str, head: bool) -> Vec<u8> {
    response(status, "text/plain", body, head)
}

fn response(status: &str, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    encoded(status, content_type, body, head, false)
}

/// A response, its body gzipped when `gzip` (the client accepts it) and that helps.
fn encoded(status: &str, content_type: &str, body: &str, head: bool, gzip: bool) -> Vec<u8> {
    let zipped = if gzip { super::gzip::compress(body) } else { None };
    let (bytes, encoding) = match &zipped {
        Some(z) => (z.as_slice(), "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"),
        None => (body.as_bytes(), ""),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(bytes);
    }
    out
}

/// The response to a whole request head.
fn respond(head: &str, health: &Health, ready: &Mutex<Result<(), String>>) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or_default();
    let (method, path) = parse_request_line(request_line);
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return simple("405 Method Not Allowed", "only GET and HEAD\n", false);
    }
    let (status, content_type, body) = route(path, health, ready);
    encoded(status, content_type, &body, head_only, super::gzip::accepted(head))
}

fn parse_request_line(line: &str) -> (&str, &str) {
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    (method, target.split('?').next().unwrap_or_default())
}

/// Routes a path to (status line, content type, body).
pub fn route(path: &str, health: &Health, ready: &Mutex<Result<(), String>>) -> (&'static str, &'static str, String) {
    let now = Utc::now();
    match path {
        "/readyz" => match ready.lock().map(|r| r.clone()).unwrap_or(Ok(())) {
            Ok(()) => ("200 OK", "text/plain", "ready\n".into()),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("backup folder not writable: {e}\n")),
        },
        "/healthz" | "/status" | "/metrics" => {
            let state = health.state.lock().unwrap_or_else(|e| e.into_inner());
            match path {
                "/healthz" => {
                    let stale = state.stale_databases(now);
                    if health.fail_when_stale && !stale.is_empty() {
                        ("503 Service Unavailable", "text/plain", format!("stale: {}\n", stale.join(", ")))
                    } else {
                        ("200 OK", "text/plain", "ok\n".into())
                    }
                }
                "/status" => ("200 OK", "application/json", format!("{:#}\n", state.status_json(now))),
                _ => ("200 OK", "text/plain; version=0.0.4", state.render_metrics(now)),
            }
        }
        "/" if health.status_page => ("200 OK", "text/html; charset=utf-8", page(health, now)),
        _ => ("404 Not Found", "text/plain", "not found; try / /healthz /readyz /status /metrics\n".into()),
    }
}

/// The status page: rendered from a snapshot taken under the lock (a clone), outside it, and
/// kept for `STATUS_PAGE_CACHE`.
fn page(health: &Health, now: chrono::DateTime<Utc>) -> String {
    if let Ok(cache) = health.page_cache.lock()
        && let Some((at, html)) = cache.as_ref()
        && at.elapsed() < health.page_fresh
    {
        return html.clone();
    }
    let snapshot = health.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let html = super::page::render(&snapshot, now);
    if let Ok(mut cache) = health.page_cache.lock() {
        *cache = Some((std::time::Instant::now(), html.clone()));
    }
    html
}

fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".backup_container_readyz_{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_and_request_lines() {
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(27));
        assert_eq!(header_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(parse_request_line("HEAD /metrics?x=1 HTTP/1.1"), ("HEAD", "/metrics"));
        assert_eq!(parse_request_line(""), ("", ""));
        let head = String::from_utf8(response("200 OK", "text/plain", "ok\n", true)).unwrap();
        assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    }
}
