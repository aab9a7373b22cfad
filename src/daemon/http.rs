//! The health listener: `/healthz` (alive; optionally 503 while a database is stale),
//! `/readyz` (config loaded and the backup folder writable), `/status` (JSON) and `/metrics`
//! (Prometheus text). A deliberately small HTTP/1.1 server: GET only, one response per
//! connection, short timeouts, a thread per connection with a cap.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use super::state::State;

const MAX_CONNECTIONS: usize = 16;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers need.
pub struct Health {
    pub state: Arc<Mutex<State>>,
    pub backup_dir: PathBuf,
    pub fail_when_stale: bool,
}

/// Binds `addr` and serves in a background thread; returns the bound address.
///
/// # Errors
/// When the address cannot be bound (in use, not permitted).
pub fn serve(addr: SocketAddr, health: Health) -> anyhow::Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the health listener to {addr} (HEALTH_ADDR)"))?;
    let bound = listener.local_addr()?;
    let health = Arc::new(health);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("health".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                continue; // dropped: the client retries
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (health, active) = (health.clone(), active.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &health);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    })?;
    Ok(bound)
}

fn handle(stream: TcpStream, health: &Health) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers (bounded by the timeout and a line limit).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let (status, content_type, body) = respond(&request, health);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Routes one request line to (status line, content type, body).
pub fn respond(request_line: &str, health: &Health) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split('?').next().unwrap_or_default();
    if method != "GET" {
        return ("405 Method Not Allowed", "text/plain", "only GET\n".into());
    }
    let now = Utc::now();
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
        "/readyz" => match writable(&health.backup_dir) {
            Ok(()) => ("200 OK", "text/plain", "ready\n".into()),
            Err(e) => ("503 Service Unavailable", "text/plain", format!("backup folder not writable: {e}\n")),
        },
        "/status" => ("200 OK", "application/json", format!("{:#}\n", state.status_json(now))),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", state.render_metrics(now)),
        _ => ("404 Not Found", "text/plain", "not found; try /healthz /readyz /status /metrics\n".into()),
    }
}

fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".readyz-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
