//! Notifications against a real HTTP receiver and a real backup run: upstream's form fields,
//! the JSON and Teams formats, bounded delivery (timeouts, retries, nobody listening), and
//! PagerDuty trigger/resolve.

use std::time::{Duration, Instant};

use crate::harness::app::Fixture;
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::{bin, free_port, run};

/// One good database (per-host credentials) and one with a wrong password (fallback
/// credentials on 127.0.0.1): INFO for the first, ERROR with the server's reason for the
/// second, in upstream's form encoding, and never a password or the webhook path.
#[test]
fn form_webhook_reports_success_and_failure_like_upstream() {
    let Some(fx) = Fixture::start(20) else { return };
    let rx = Receiver::start(Behaviour::Ok);
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n127.0.0.1:{port}/app2\n"));
    let r = run(fx
        .once(&conf)
        .env("DATABASE_USER", "app")
        .env("DATABASE_PASSWORD", "definitely-wrong")
        .env("WEBHOOK_URL", format!("{}/hooks/SECRET-TOKEN", rx.url))
        .env("ENVIRONMENT_FRIENDLY_NAME", "Team Dev (backups)")
        .env("ENVIRONMENT_NAME", "abc123-dev"));
    assert_eq!(r.code, 1, "{}", r.all());
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for req in &reqs {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/hooks/SECRET-TOKEN");
        assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
        let keys: Vec<String> = req.form().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["projectFriendlyName", "projectName", "statusCode", "message"]);
        assert_eq!(req.form_field("projectFriendlyName").as_deref(), Some("Team Dev (backups)"));
        assert_eq!(req.form_field("projectName").as_deref(), Some("abc123-dev"));
        assert!(!req.body.contains("definitely-wrong") && !req.body.contains("SECRET-TOKEN"), "{}", req.body);
    }
    let ok = &reqs[0];
    assert_eq!(ok.form_field("statusCode").as_deref(), Some("INFO"));
    let msg = ok.form_field("message").unwrap();
    assert!(msg.starts_with(&format!("Successfully backed up localhost:{port}/app1.\nBackup written to ")), "{msg}");
    assert!(msg.contains("Backup size: ") && msg.contains("Elapsed time: "), "{msg}");
    let err = &reqs[1];
    assert_eq!(err.form_field("statusCode").as_deref(), Some("ERROR"));
    let msg = err.form_field("message").unwrap();
    assert!(msg.starts_with(&format!("Failed to backup 127.0.0.1:{port}/app2.\nReason: ")), "{msg}");
    assert!(msg.contains("password authentication failed for user \"app\""), "{msg}");
    assert!(!r.all().contains("SECRET-TOKEN"), "the webhook path must not be logged:\n{}", r.all());
}

/// `WEBHOOK_FORMAT=json` sends the documented document; `teams` an Adaptive Card;
/// `WEBHOOK_LEVEL=ERROR` filters out the INFO.
#[test]
fn json_and_teams_formats_and_level_filter() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let rx = Receiver::start(Behaviour::Ok);
    let r =
        run(fx.once(&conf).env("WEBHOOK_URL", &rx.url).env("WEBHOOK_FORMAT", "json").env("ENVIRONMENT_NAME", "proj"));
    assert_eq!(r.code, 0, "{}", r.all());
    let j = rx.requests()[0].json();
    assert_eq!(rx.requests()[0].header("content-type"), Some("application/json"));
    assert_eq!(j["event"], "backup_succeeded");
    assert_eq!(j["statusCode"], "INFO");
    assert_eq!(j["projectName"], "proj");
    assert!(j["details"]["size_bytes"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["details"]["sha256"].as_str().unwrap().len(), 64, "{j}");

    let rx = Receiver::start(Behaviour::Ok);
    assert_eq!(run(fx.once(&conf).env("WEBHOOK_URL", &rx.url).env("WEBHOOK_FORMAT", "teams")).code, 0);
    let t = rx.requests()[0].json();
    assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard", "{t}");
    assert_eq!(t["attachments"][0]["content"]["body"][0]["color"], "Good", "{t}");

    let rx = Receiver::start(Behaviour::Ok);
    assert_eq!(run(fx.once(&conf).env("WEBHOOK_URL", &rx.url).env("WEBHOOK_LEVEL", "ERROR")).code, 0);
    assert!(rx.requests().is_empty());
}

/// A slow receiver, one that fails twice, or none at all: the run ends within the bound and
/// the backup's exit code is unchanged.
#[test]
fn delivery_is_bounded_and_never_changes_the_outcome() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));

    let slow = Receiver::start(Behaviour::Delay(Duration::from_secs(30)));
    let started = Instant::now();
    // app2 excluded: the coverage audit would send a second message about it.
    let r = run(fx
        .once(&conf)
        .env("WEBHOOK_URL", &slow.url)
        .env("WEBHOOK_TIMEOUT", "1s")
        .env("WEBHOOK_ATTEMPTS", "2")
        .env("BACKUP_EXCLUDE_DATABASES", "app2"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(slow.requests().len(), 2, "two attempts");
    assert!(r.stderr.contains("Notification failed."), "{}", r.all());

    let flaky = Receiver::start(Behaviour::FailFirst(2));
    let r = run(fx
        .once(&conf)
        .env("WEBHOOK_URL", &flaky.url)
        .env("WEBHOOK_ATTEMPTS", "3")
        .env("BACKUP_EXCLUDE_DATABASES", "app2"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(flaky.requests().len(), 3, "500, 500, then 200");
    assert!(!r.stderr.contains("Notification failed."), "{}", r.all());

    let started = Instant::now();
    let r = run(fx
        .once(&conf)
        .env("WEBHOOK_URL", format!("http://127.0.0.1:{}/hooks/x", free_port()))
        .env("BACKUP_EXCLUDE_DATABASES", "app2"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(r.stderr.contains("Notification failed."), "{}", r.all());
}

/// PagerDuty: an ERROR triggers with a dedup key per database; the next success resolves it,
/// even in a later one-shot run.
#[test]
fn pagerduty_triggers_then_resolves() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let pd = Receiver::start(Behaviour::Ok);
    let with_pd = |cmd: &mut std::process::Command| {
        cmd.env("PGDUTY_SVC_KEY", "routing-key-123")
            .env("PGDUTY_URL", format!("{}/v2/enqueue", pd.url))
            .env("ENVIRONMENT_NAME", "proj");
    };
    let mut bad = fx.once(&conf);
    with_pd(bad.env("LOCALHOST_PASSWORD", "wrong"));
    assert_eq!(run(&mut bad).code, 1);
    let mut good = fx.once(&conf);
    with_pd(&mut good);
    assert_eq!(run(&mut good).code, 0);
    assert_eq!(run(&mut good).code, 0, "a second success sends nothing");
    let reqs = pd.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let (t, r) = (reqs[0].json(), reqs[1].json());
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["routing_key"], "routing-key-123");
    assert_eq!(t["payload"]["severity"], "error");
    assert!(t["payload"]["summary"].as_str().unwrap().contains("password authentication failed"), "{t}");
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(t["dedup_key"], r["dedup_key"]);
    assert_eq!(t["dedup_key"], format!("backup-container:proj:localhost:{}/app1", fx.pg.port));
}

/// A configuration error is notified (ERROR) before exiting 2.
#[test]
fn config_error_is_notified() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("backup.conf");
    std::fs::write(&conf, "postgress=db/app\n").unwrap();
    let rx = Receiver::start(Behaviour::Ok);
    let r = run(bin().arg("-1").env("BACKUP_CONF", &conf).env("BACKUP_DIR", dir.path()).env("WEBHOOK_URL", &rx.url));
    assert_eq!(r.code, 2, "{}", r.all());
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].form_field("statusCode").as_deref(), Some("ERROR"));
    assert!(
        reqs[0].form_field("message").unwrap().contains("backup.conf:1: invalid database spec"),
        "{}",
        reqs[0].body
    );
}
