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
            c.env("BACKUP_PERIOD", "2s").env("STARTUP_CHECK", "false");
            c
        },
        fx.dir.path(),
    );
    assert!(wait_until(Duration::from_secs(20), || backups_under(&fx.backups()).len() >= 3), "{}", d.log());
    // The page is cached for a few seconds; wait for one rendered after the third backup.
    std::thread::sleep(Duration::from_secs(6));
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
    let shown = backup_container::human::bytes(size);
    assert!(html.contains(&format!("<dt>Newest backup</dt><dd>{shown}</dd>")), "{shown}: {html}");
    assert!(html.contains("<svg") && html.contains("Size of the last"), "a chart of the backups: {html}");
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
