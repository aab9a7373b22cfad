//! The status page (`GET /`) of a running daemon: valid HTML (tidy), the numbers of the real
//! backups on it, charts once there are several, and off with STATUS_PAGE=false.

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

/// The page in headless Chromium (Debian's) through WebDriver, at desktop and phone widths:
/// no horizontal overflow at 375 px, nothing logged to the console, a screenshot of each
/// (into a temporary folder; `STATUS_SCREENSHOTS=<dir>`, set by `make screenshots`, keeps them).
#[test]
fn the_page_fits_a_phone_in_chromium() {
    let (Ok(chromium), Ok(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        let _: Option<()> = crate::harness::missing("chromium", "apt-get install chromium chromium-driver");
        return;
    };
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
    let shots = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("STATUS_SCREENSHOTS").map(std::path::PathBuf::from);
    for (name, width) in [("desktop", 1280), ("phone", 375)] {
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                format!("--window-size={width},900")]},
            "goog:loggingPrefs": {"browser": "ALL"}}}});
        let session = webdriver(&format!("{}/session", driver.url), Some(caps));
        let id = session["value"]["sessionId"].as_str().unwrap().to_string();
        let base = format!("{}/session/{id}", driver.url);
        webdriver(&format!("{base}/url"), Some(serde_json::json!({"url": format!("http://{}/", d.addr)})));
        let measured = webdriver(
            &format!("{base}/execute/sync"),
            Some(
                serde_json::json!({"script": "return [document.documentElement.scrollWidth, window.innerWidth, document.title];", "args": []}),
            ),
        );
        let (scroll, inner) = (measured["value"][0].as_f64().unwrap(), measured["value"][1].as_f64().unwrap());
        assert_eq!(measured["value"][2], "backup-container status");
        assert!(scroll <= inner, "{name}: horizontal overflow ({scroll} > {inner})");
        let log = webdriver(&format!("{base}/se/log"), Some(serde_json::json!({"type": "browser"})));
        let entries = log["value"].as_array().cloned().unwrap_or_default();
        assert!(entries.is_empty(), "{name}: console: {entries:?}");
        let shot = webdriver(&format!("{base}/screenshot"), None);
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["value"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}: a real picture");
        std::fs::write(shots.path().join(format!("status-{name}.png")), &png).unwrap();
        if let Some(dir) = &keep {
            std::fs::write(dir.join(format!("status-{name}.png")), &png).unwrap();
        }
        let _ = ureq::Agent::new_with_defaults().delete(&base).call();
    }
    assert_eq!(d.terminate().0, 0);
}

/// The program on PATH, found as the product finds its tools.
fn which(name: &str) -> Result<String, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let options = backup_container::model::database::EngineOptions {
        pg_bin_dirs: vec![],
        connect_timeout_secs: 0,
        search_path: std::env::split_paths(&path).collect(),
    };
    options.find(&[name], &[]).map(|p| p.display().to_string()).ok_or(())
}
