//! The status page (`GET /`) of a running daemon: valid HTML (tidy), the numbers of the real
//! backups on it, charts once there are several, gzip for clients that ask, off with
//! STATUS_PAGE=false; in Chromium at phone and desktop widths, and a fleet of 200 databases
//! (its size and render time printed).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::backups_under;
use crate::harness::daemon::{Daemon, get, wait_until};

fn tidy_errors(html: &str) -> String {
    let mut child = Command::new("tidy")
        .args(["-errors", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidy (apt-get install tidy; make deps installs it)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), html.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    // Exit 0: neither errors nor warnings.
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() { text } else { format!("exit {:?}: {text}", out.status.code()) }
}

#[test]
fn the_page_is_valid_and_shows_the_real_backups() {
    let Some(fx) = Fixture::start(50) else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n"));
    let mut d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("BACKUP_PERIOD", "2s").env("STARTUP_CHECK", "false").env("STATUS_PAGE_CACHE", "0s");
            c
        },
        fx.dir.path(),
    );
    assert!(wait_until(Duration::from_secs(20), || backups_under(&fx.backups()).len() >= 3), "{}", d.log());
    let (code, html) = get(&d.addr, "/");
    assert_eq!(code, 200, "{html}");
    let errors = tidy_errors(&html);
    assert!(errors.trim().is_empty(), "tidy: {errors}\n{html}");
    assert!(html.contains(&format!("aria-label=\"{db}\"")), "{html}");
    assert!(!html.contains("APP_PASSWORD") && !html.contains("app pw"), "no secret on the page");
    // The newest backup's size, as the catalog has it.
    let mut files = backups_under(&fx.backups());
    files.sort_by_key(|f| std::path::Path::new(f).file_name().unwrap().to_string_lossy().to_string());
    let size = std::fs::metadata(fx.backups().join(files.last().unwrap())).unwrap().len();
    let shown = backup_container::model::human::bytes(size);
    assert!(html.contains(&format!("<dt>Newest backup</dt><dd>{shown}</dd>")), "{shown}: {html}");
    assert!(html.contains("<svg") && html.contains("Size of the last"), "a chart of the backups: {html}");
    assert!(html.contains("<dt>Mirrors</dt><dd>none configured, or no copy yet</dd>"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\" content=\"60\""));
    assert!(html.contains("<table>") && html.contains("<a href=\"#d0\">"), "the fleet table: {html}");
    // A client that accepts gzip gets the same page, compressed.
    let (head, zipped) = raw_get(&d.addr, "/", "Accept-Encoding: gzip, br\r\n");
    assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
    let mut page = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut page).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains(&format!("aria-label=\"{db}\"")), "{page}");
    assert!(zipped.len() < page.len(), "{} of {}", zipped.len(), page.len());
    let (head, plain) = raw_get(&d.addr, "/", "Accept-Encoding: gzip;q=0\r\n");
    assert!(!head.contains("Content-Encoding") && plain.starts_with(b"<!DOCTYPE html>"), "{head}");
    assert_eq!(d.terminate().0, 0);

    let d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("STATUS_PAGE", "false").env("STARTUP_CHECK", "false").env("BACKUP_PERIOD", "1h");
            c
        },
        fx.dir.path(),
    );
    assert_eq!(get(&d.addr, "/").0, 404);
    assert_eq!(get(&d.addr, "/healthz").0, 200);
}

/// The head and the raw body of `GET path` with `extra` header lines.
fn raw_get(addr: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (String::from_utf8_lossy(&all[..end]).into_owned(), all[end..].to_vec())
}

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webdriver(path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let agent = ureq::Agent::new_with_defaults();
    let response = match body {
        Some(b) => agent.post(path).header("Content-Type", "application/json").send(b.to_string()),
        None => agent.get(path).call(),
    };
    let text = response.unwrap_or_else(|e| panic!("{path}: {e}")).body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// chromedriver started for headless Chromium, or `None` (a skip, or a failure under
/// `BACKUP_TEST_REQUIRE`) when either is missing.
fn browser() -> Option<(Driver, String)> {
    let (Ok(chromium), Ok(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        return crate::harness::missing("chromium", "apt-get install chromium chromium-driver");
    };
    let port = crate::harness::free_port();
    let driver = Driver {
        child: Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
    };
    assert!(wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    Some((driver, chromium))
}

/// One browser session at `width` px, deleted on drop.
struct Session {
    base: String,
}

impl Session {
    fn new(driver: &Driver, chromium: &str, width: u32) -> Session {
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                format!("--window-size={width},900")]},
            "goog:loggingPrefs": {"browser": "ALL"}}}});
        let session = webdriver(&format!("{}/session", driver.url), Some(caps));
        let id = session["value"]["sessionId"].as_str().unwrap().to_string();
        Session { base: format!("{}/session/{id}", driver.url) }
    }

    fn open(&self, url: &str) {
        webdriver(&format!("{}/url", self.base), Some(serde_json::json!({ "url": url })));
    }

    fn eval(&self, script: &str) -> serde_json::Value {
        webdriver(&format!("{}/execute/sync", self.base), Some(serde_json::json!({"script": script, "args": []})))["value"]
            .clone()
    }

    /// No horizontal overflow, the title, nothing on the console.
    fn check_layout(&self, name: &str) {
        let measured = self.eval("return [document.documentElement.scrollWidth, window.innerWidth, document.title];");
        let (scroll, inner) = (measured[0].as_f64().unwrap(), measured[1].as_f64().unwrap());
        assert_eq!(measured[2], "backup-container status");
        assert!(scroll <= inner, "{name}: horizontal overflow ({scroll} > {inner})");
        let log = webdriver(&format!("{}/se/log", self.base), Some(serde_json::json!({"type": "browser"})));
        let entries = log["value"].as_array().cloned().unwrap_or_default();
        assert!(entries.is_empty(), "{name}: console: {entries:?}");
    }

    fn screenshot(&self, name: &str, dir: &std::path::Path) {
        let shot = webdriver(&format!("{}/screenshot", self.base), None);
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["value"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}: a real picture");
        std::fs::write(dir.join(format!("status-{name}.png")), &png).unwrap();
        if let Some(keep) = std::env::var_os("STATUS_SCREENSHOTS").map(std::path::PathBuf::from) {
            std::fs::write(keep.join(format!("status-{name}.png")), &png).unwrap();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = ureq::Agent::new_with_defaults().delete(&self.base).call();
    }
}

/// The page in headless Chromium (Debian's) through WebDriver, at desktop and phone widths:
/// no horizontal overflow at 375 px, nothing logged to the console, a screenshot of each
/// (into a temporary folder; `STATUS_SCREENSHOTS=<dir>`, set by `make screenshots`, keeps them).
#[test]
fn the_page_fits_a_phone_in_chromium() {
    let Some((driver, chromium)) = browser() else { return };
    let Some(fx) = Fixture::start(50) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\nlocalhost:{}/app2\n", fx.pg.port, fx.pg.port));
    let mut d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("BACKUP_PERIOD", "2s").env("STARTUP_CHECK", "false").env("STATUS_PAGE_CACHE", "0s");
            c
        },
        fx.dir.path(),
    );
    assert!(wait_until(Duration::from_secs(20), || backups_under(&fx.backups()).len() >= 6), "{}", d.log());
    let shots = tempfile::tempdir().unwrap();
    for (name, width) in [("desktop", 1280), ("phone", 375)] {
        let session = Session::new(&driver, &chromium, width);
        session.open(&format!("http://{}/", d.addr));
        session.check_layout(name);
        session.screenshot(name, shots.path());
    }
    assert_eq!(d.terminate().0, 0);
}

/// A fleet of 200 databases with 60 backups each: the page's size, and how long Chromium takes
/// to lay it out (printed: `cargo test --test integration fleet_of_two_hundred -- --nocapture`);
/// no overflow on a phone, the table's links land on their cards.
#[test]
fn a_fleet_of_two_hundred_in_chromium() {
    let Some((driver, chromium)) = browser() else { return };
    let now = chrono::Utc::now();
    let html = backup_container::daemon::page::render(&backup_container::daemon::page::sample_fleet(200, now), now);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("status.html");
    std::fs::write(&file, &html).unwrap();
    let errors = tidy_errors(&html);
    assert!(errors.trim().is_empty(), "tidy: {errors}");
    for (name, width) in [("fleet-desktop", 1280), ("fleet-phone", 375)] {
        let session = Session::new(&driver, &chromium, width);
        session.open(&format!("file://{}", file.display()));
        session.check_layout(name);
        let timing = session.eval(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return [n.domContentLoadedEventEnd, n.loadEventEnd, document.querySelectorAll('tbody tr').length];",
        );
        let (ready, loaded) = (timing[0].as_f64().unwrap(), timing[1].as_f64().unwrap());
        assert_eq!(timing[2], 200, "{name}: one row per database");
        println!("{name}: {} bytes, DOMContentLoaded {ready:.0} ms, load {loaded:.0} ms", html.len());
        // A bound no healthy page comes near (measured: docs/OPERATIONS.md), not a benchmark.
        assert!(loaded < 10_000.0, "{name}: {loaded} ms");
        // The worst row's link lands on its card.
        let landed = session.eval(
            "const a = document.querySelector('tbody a'); a.click(); \
             const card = document.getElementById(a.getAttribute('href').slice(1)); \
             return [card.getAttribute('aria-label') === a.textContent, card.className, \
                     Math.abs(card.getBoundingClientRect().top) < 5];",
        );
        assert_eq!(landed, serde_json::json!([true, "failed", true]), "{name}");
        session.screenshot(name, dir.path());
    }
}

/// The program on PATH, found as the product finds its tools.
fn which(name: &str) -> Result<String, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let options = backup_container::model::database::EngineOptions {
        pg_bin_dirs: vec![],
        connect_timeout_secs: 0,
        search_path: std::env::split_paths(&path).collect(),
        ..Default::default()
    };
    options.find(&[name], &[]).map(|p| p.display().to_string()).ok_or(())
}
