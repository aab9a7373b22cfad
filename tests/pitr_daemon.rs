//! The daemon keeps a server's point-in-time archive (`pitr::archiver`): with `PITR_SERVERS`
//! set it takes the server's lock, streams WAL under its slot, takes a first full base backup
//! on its own, and shows the window in `/metrics` and `/status`; a segment deleted from the
//! archive is a gap, reported and healed by a new full base backup; retention then removes
//! the old chain and the WAL only it needed; a second daemon on the same archive is refused;
//! SIGTERM stops it all cleanly; an archive at `PITR_MAX_BYTES` pauses archiving and drops the
//! slot; a restarted server and a killed `pg_receivewal` leave no gap and no duplicate (nor
//! does the short `.partial` of zeros a run killed while creating it leaves). The
//! archive's mirrors (FTPS on vsftpd, S3 on moto) follow retention: the removed chain and WAL
//! go there too.

use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::{Daemon, get, metric, wait_until};
use crate::harness::moto::MotoServer;
use crate::harness::pitr::work;
use crate::harness::run;
use crate::harness::vsftpd::{self, Cert, Vsftpd};

fn pitr_daemon(fx: &Fixture, conf: &std::path::Path) -> std::process::Command {
    let mut cmd = fx.cmd(conf);
    cmd.env("PITR_SERVERS", format!("localhost:{}", fx.pg.port))
        .env("LOCALHOST_REPLICATION_USER", "postgres")
        .env("LOCALHOST_REPLICATION_PASSWORD", "admin-secret")
        .env("PITR_SPOOL_DIR", fx.dir.path().join("spool"))
        .env("PITR_BASE_SCHEDULE", "@every 24h")
        .env("PITR_CHAINS", "1");
    cmd
}

/// The S3 bucket the archive is mirrored to.
const BUCKET: &str = "pitr-offsite";

/// `cmd` copying the archive to `ftp` (vsftpd, FTPS) and to `moto` (S3), deleting on both
/// what retention removes.
fn mirrored(mut cmd: std::process::Command, ftp: &Vsftpd, moto: &MotoServer) -> std::process::Command {
    cmd.env("FTP_URL", format!("ftp://127.0.0.1:{}/offsite/", ftp.port))
        .env("FTP_USER", &ftp.user)
        .env("FTP_PASSWORD", vsftpd::PASSWORD)
        .env("FTP_CA_FILE", &ftp.trust)
        .env("FTP_PRUNE_BACKUPS", "true")
        .env("S3_ENDPOINT", moto.endpoint())
        .env("S3_BUCKET", BUCKET)
        .env("S3_USER", "test")
        .env("S3_PASSWORD", "test-secret")
        .env("S3_PRUNE_BACKUPS", "true");
    cmd
}

/// The keys in the mirror bucket under `prefix` (ListObjectsV2; moto does not check
/// signatures, and the test's archive stays under its 1000 keys a page).
fn keys_under(moto: &MotoServer, prefix: &str) -> Vec<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("{}/{BUCKET}?list-type=2&prefix={prefix}", moto.endpoint());
    let body = agent.get(url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(!body.contains("<IsTruncated>true"), "one page: {body}");
    body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect()
}

/// The files under `dir` (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

fn metrics_of(d: &Daemon) -> String {
    get(&d.addr, "/metrics").1
}

/// A daemon archiving the fixture's server (no dump scheduled), with `extra` settings; and
/// the server's name.
pub(crate) fn archiving(fx: &Fixture, extra: &[(&str, &str)]) -> (Daemon, String) {
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n0 0 1 1 * default ./backup.sh -s\n"));
    let mut cmd = pitr_daemon(fx, &conf);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    (Daemon::start(cmd, fx.dir.path()), format!("localhost:{port}"))
}

/// The `pg_receivewal` of the daemon archiving `server` (tests run side by side: each
/// archive's slot is its own), once it runs.
fn receiver(d: &Daemon, server: &str) -> nix::unistd::Pid {
    let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
    let slot = status["pitr"][server]["slot"].as_str().unwrap().to_string();
    let find = || {
        let pattern = format!("pg_receivewal.*{slot}.*--synchronous");
        let out = std::process::Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| l.trim().parse::<i32>().ok())
    };
    assert!(wait_until(Duration::from_secs(30), || find().is_some()), "{}", d.log());
    nix::unistd::Pid::from_raw(find().unwrap())
}

#[test]
fn the_daemon_archives_wal_takes_base_backups_and_heals_a_gap() {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(ftp) = Vsftpd::start(false, Cert::CaSigned) else { return };
    let Some(moto) = MotoServer::start() else { return };
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    assert_eq!(agent.put(format!("{}/{BUCKET}", moto.endpoint())).send(&[][..]).unwrap().status().as_u16(), 200);
    let server = format!("localhost:{}", fx.pg.port);
    let conf = fx.conf(&format!("localhost:{}/app1\n0 0 1 1 * default ./backup.sh -s\n", fx.pg.port));
    let mut d = Daemon::start(mirrored(pitr_daemon(&fx, &conf), &ftp, &moto), fx.dir.path());
    d.wait_for("A full base backup of", Duration::from_secs(60));
    // The mirrors' copies of the archive (FTPS and S3, pruning): the first chain goes up.
    let archive_dir = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let key = archive_dir.strip_prefix(fx.backups()).unwrap().to_string_lossy().into_owned();
    let copy = ftp.root.join("offsite").join(&key);
    let on_both = |chain: &str| {
        !files_under(&copy.join(chain)).is_empty() && !keys_under(&moto, &format!("{key}/{chain}/")).is_empty()
    };
    assert!(wait_until(Duration::from_secs(60), || on_both("base/1")), "{}\n{}", d.log(), ftp.log());
    fx.pg.psql("postgres", "CREATE TABLE t (x int)");
    work(&fx.pg, 3);
    let series = |name: &str| format!("{name}{{server=\"{server}\"}}");
    let ready = || {
        let m = metrics_of(&d);
        metric(&m, &series("backup_pitr_streamer_up")) == Some(1.0)
            && metric(&m, &series("backup_pitr_gaps")) == Some(0.0)
            && metric(&m, &series("backup_pitr_rpo_seconds")).is_some_and(|r| r < 60.0)
            && metric(&m, &series("backup_pitr_earliest_recovery_timestamp_seconds")).is_some()
    };
    assert!(wait_until(Duration::from_secs(60), ready), "{}\n{}", metrics_of(&d), d.log());
    let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
    assert_eq!(status["pitr"][&server]["base_backups"], 1, "{status}");
    // The status page has the archive's card, its window said in words.
    let (code, page) = get(&d.addr, "/");
    assert_eq!(code, 200);
    let card = &page[page.find(&format!("Archive of {server}")).expect("the archive's card")..];
    assert!(card.contains("Recoverable window</dt><dd>20"), "{card}");
    assert!(card.contains("Streamer</dt><dd>running"), "{card}");
    assert!(status["pitr"][&server]["slot"].as_str().unwrap().starts_with("bc_"), "{status}");

    // A second daemon on the same archive: refused, loudly; the first goes on.
    let second = Daemon::start(pitr_daemon(&fx, &conf), fx.dir.path());
    second.wait_for("another process archives it", Duration::from_secs(30));
    drop(second);

    // A segment after the base backup deleted from the archive: a gap, then a full base backup.
    let archive = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let mut wal: Vec<std::path::PathBuf> = walkdir::WalkDir::new(archive.join("wal"))
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .filter(|p| p.is_file() && !p.to_string_lossy().contains("partial"))
        .collect();
    wal.sort();
    std::fs::remove_file(&wal[wal.len() - 2]).unwrap();
    // The index still names it: the test deletes what a damaged volume would lose.
    let index = archive.join("index.jsonl");
    let name = wal[wal.len() - 2].file_name().unwrap().to_string_lossy().trim_end_matches(".gz").to_string();
    let segment = backup_container::pitr::wal::Segment::parse(&name, 16 << 20).unwrap();
    let removed = serde_json::json!({"event": "removed", "timeline": segment.timeline, "number": segment.number});
    let mut text = std::fs::read_to_string(&index).unwrap();
    text.push_str(&format!("{removed}\n"));
    std::fs::write(&index, text).unwrap();
    work(&fx.pg, 1);
    d.wait_for("WAL is missing from the archive", Duration::from_secs(60));
    let healed = || {
        let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
        status["pitr"][&server]["base_backups"] == 2
            && status["pitr"][&server]["gaps"].as_array().is_some_and(Vec::is_empty)
    };
    work(&fx.pg, 1);
    assert!(wait_until(Duration::from_secs(90), healed), "{}\n{}", get(&d.addr, "/status").1, d.log());
    assert_eq!(metric(&metrics_of(&d), &series("backup_pitr_gaps")), Some(0.0));

    // PITR_CHAINS=1: once the new chain is usable, the first goes with the WAL only it needed
    // (the hole with it); what the new chain needs stays.
    work(&fx.pg, 1);
    let pruned = || !archive.join("base/1").exists();
    assert!(wait_until(Duration::from_secs(60), pruned), "{}", d.log());
    let (index, _) = backup_container::pitr::index::load(&index).unwrap();
    assert_eq!(index.bases.iter().map(|b| b.chain).collect::<Vec<_>>(), vec![2]);
    assert_eq!(index.gaps(), vec![], "the hole went with the chain that spanned it");
    let kept = index.bases[0].start_segment(index.segment_size);
    assert!(index.segments().all(|a| a.number >= kept.number), "no WAL older than the kept base");
    assert!(index.segments().any(|a| a.number == kept.number), "the kept base's first segment stays");
    let stored: Vec<String> = walkdir::WalkDir::new(archive.join("wal"))
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let partials = stored.iter().filter(|n| n.contains(".partial")).count();
    assert_eq!(stored.len() - partials, index.segments().count(), "each indexed segment once: {stored:?}");
    assert!(partials <= 1, "only the current segment's partial copy: {stored:?}");

    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    // The mirrors follow retention (on a daemon's first pass, then hourly): the first chain's
    // copies and the WAL older than the kept base go there too; the kept chain stays.
    let mut d = Daemon::start(mirrored(pitr_daemon(&fx, &conf), &ftp, &moto), fx.dir.path());
    let kept_name =
        |n: u64| backup_container::pitr::wal::Segment { timeline: kept.timeline, number: n }.name(index.segment_size);
    let older = |names: Vec<String>| {
        names
            .iter()
            .filter_map(|p| p.rsplit('/').next()?.get(..24).map(str::to_string))
            .filter(|n| n.len() == 24 && !n.contains('.'))
            .filter(|n| n.as_str() < kept_name(kept.number).as_str())
            .collect::<Vec<_>>()
    };
    let ftp_wal = || files_under(&copy.join("wal")).iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let s3_wal = || keys_under(&moto, &format!("{key}/wal/"));
    let followed = || {
        files_under(&copy.join("base/1")).is_empty()
            && keys_under(&moto, &format!("{key}/base/1/")).is_empty()
            && older(ftp_wal()).is_empty()
            && older(s3_wal()).is_empty()
    };
    assert!(
        wait_until(Duration::from_secs(60), followed),
        "left on the mirrors: {:?} {:?} {:?} {:?}\n{}",
        files_under(&copy.join("base/1")),
        keys_under(&moto, &format!("{key}/base/1/")),
        older(ftp_wal()),
        older(s3_wal()),
        d.log()
    );
    assert!(on_both("base/2"), "the kept chain stays on the mirrors");
    for names in [ftp_wal(), s3_wal()] {
        assert!(names.iter().any(|p| p.contains(&kept_name(kept.number))), "{names:?}");
    }
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    for entry in walkdir::WalkDir::new(fx.backups()) {
        let path = entry.unwrap().path().to_string_lossy().into_owned();
        assert!(!path.ends_with(".in_progress"), "{path}");
    }

    // -l shows the archive; -l --pitr --json for scripts; -l --json keeps its shape.
    let list = run(pitr_daemon(&fx, &conf).arg("-l"));
    assert_eq!(list.code, 0, "{}", list.all());
    for needle in [
        format!("Point-in-time archive of {server}"),
        "chain 2: full".into(),
        "gaps: none".into(),
        "recoverable: ".into(),
    ] {
        assert!(list.stdout.contains(&needle), "{needle}: {}", list.stdout);
    }
    let json = run(pitr_daemon(&fx, &conf).args(["-l", "--pitr", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", json.all()));
    assert_eq!(v[0]["server"], server.as_str());
    assert_eq!(v[0]["chains"][0]["chain"], 2, "{v}");
    assert_eq!(v[0]["chains"][0]["usable"], true, "{v}");
    assert_eq!(v[0]["windows"].as_array().map(Vec::len), Some(1), "{v}");
    let plain = run(pitr_daemon(&fx, &conf).args(["-l", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&plain.stdout).unwrap();
    assert!(v.as_array().is_some_and(|a| a.iter().all(|b| b.get("chains").is_none())), "{v}");
    // -p with no daemon keeping it: pruned by the same plan (nothing more to remove).
    let p = run(pitr_daemon(&fx, &conf).arg("-p"));
    assert_eq!(p.code, 0, "{}", p.all());
    assert!(p.stdout.contains(&format!("archive of {server}: nothing to remove")), "{}", p.all());
    fx.pg.psql("postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots");
}

/// A failover: a standby made with `pg_basebackup -R` takes the primary's place and is
/// promoted. The daemon follows the new timeline (its history archived, the slot made again on
/// the new primary, a full base backup on the new timeline) and reports no gap.
#[test]
fn a_promoted_standby_is_followed_without_a_false_gap() {
    let Some(fx) = Fixture::start(5) else { return };
    let (pg, port) = (&fx.pg, fx.pg.port);
    let server = format!("localhost:{port}");
    let conf = fx.conf(&format!("localhost:{port}/app1\n0 0 1 1 * default ./backup.sh -s\n"));
    let mut d = Daemon::start(pitr_daemon(&fx, &conf), fx.dir.path());
    d.wait_for("A full base backup of", Duration::from_secs(60));

    // A standby of the primary, in a folder of its own.
    let standby = tempfile::Builder::new().prefix("standby").tempdir().unwrap();
    if pg.as_postgres() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(standby.path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    let data = standby.path().join("data");
    let bin = crate::harness::postgres::major_bin_dir(pg.major()).unwrap();
    let program = |name: &str| {
        let mut c = std::process::Command::new(if pg.as_postgres() { "runuser".into() } else { bin.join(name) });
        if pg.as_postgres() {
            c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        }
        c
    };
    let out = program("pg_basebackup")
        .arg("-h")
        .arg(pg.socket_dir())
        .args(["-p", &port.to_string(), "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ctl = |args: &[&str], on: Option<u16>| {
        let mut c = program("pg_ctl");
        c.arg("-D").arg(&data);
        if let Some(p) = on {
            let opts = format!("-p {p} -k {} -c listen_addresses=127.0.0.1", standby.path().display());
            c.args(["-o", &opts, "-l"]).arg(standby.path().join("log"));
        }
        let out = c.args(args).output().unwrap();
        let log = std::fs::read_to_string(standby.path().join("log")).unwrap_or_default();
        assert!(out.status.success(), "pg_ctl {args:?}: {}\n{log}", String::from_utf8_lossy(&out.stderr));
    };
    let standby_port = crate::harness::free_port();
    ctl(&["-w", "start"], Some(standby_port));
    let on_standby = |p: u16, sql: &str| {
        let out = std::process::Command::new(bin.join("psql"))
            .arg("-h")
            .arg(standby.path())
            .args(["-p", &p.to_string(), "-U", "postgres", "-d", "postgres", "-XAtc", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    pg.psql("postgres", "CREATE TABLE t (x int)");
    work(pg, 2);
    assert!(wait_until(Duration::from_secs(30), || on_standby(standby_port, "SELECT count(*) FROM t") == "2000"));

    // The failover: the primary goes, the standby takes its port and is promoted.
    pg.stop();
    ctl(&["-m", "fast", "-w", "stop"], None);
    ctl(&["-w", "start"], Some(port));
    ctl(&["-w", "promote"], None);
    assert_eq!(on_standby(port, "SELECT pg_is_in_recovery()"), "f");
    for i in 0..3 {
        on_standby(port, &format!("INSERT INTO t SELECT generate_series(1, 1000) + {i}; SELECT pg_switch_wal()"));
    }
    let followed = || {
        let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
        status["pitr"][&server]["base_backups"] == 2
            && status["pitr"][&server]["gaps"].as_array().is_some_and(Vec::is_empty)
    };
    assert!(wait_until(Duration::from_secs(120), followed), "{}\n{}", get(&d.addr, "/status").1, d.log());
    let archive = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let (index, _) = backup_container::pitr::index::load(&archive.join("index.jsonl")).unwrap();
    assert!(index.timelines_with_history().contains(&2), "the new timeline's history is archived");
    assert!(index.segments().any(|a| a.timeline == 2), "WAL of the new timeline");
    assert_eq!(index.bases.last().map(|b| b.timeline), Some(2), "a full base backup on the new timeline");
    assert_eq!(index.gaps(), vec![], "no false gap across the switch");
    let slot = on_standby(port, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'bc\\_%' AND active");
    assert_eq!(slot, "1", "the slot made again on the new primary");
    assert!(!d.log().contains("WAL is missing"), "{}", d.log());
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    ctl(&["-m", "immediate", "-w", "stop"], None);
}

/// The primary is never endangered by us: with the streamer stuck, the slot holds back WAL
/// past `PITR_SLOT_MAX_RETAINED` and is dropped (ERROR); the server then recycles that WAL,
/// the archive has a gap (ERROR), and a full base backup heals it.
#[test]
fn a_slot_holding_too_much_is_dropped_and_the_gap_healed() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    let (mut d, server) = archiving(&fx, &[("PITR_SLOT_MAX_RETAINED", "8MB")]);
    d.wait_for("A full base backup of", Duration::from_secs(60));
    // The streamer stuck (stopped, its connection open): nothing reads the slot.
    let pid = receiver(&d, &server);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    pg.psql("postgres", "CREATE TABLE t (x int)");
    work(pg, 2);
    d.wait_for("was dropped", Duration::from_secs(60));
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0", "the slot is gone");
    // The server recycles the WAL nobody holds any more.
    for _ in 0..3 {
        work(pg, 2);
        pg.psql("postgres", "CHECKPOINT");
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // Streaming goes on from where the server's WAL begins; the next whole segment shows the gap.
    d.wait_for("streaming from where its WAL begins", Duration::from_secs(60));
    let runs = |log: String| log.matches("Streaming WAL (pg_receivewal)").count();
    let before = runs(d.log());
    assert!(wait_until(Duration::from_secs(30), || runs(d.log()) > before), "{}", d.log());
    work(pg, 2);
    d.wait_for("WAL is missing from the archive", Duration::from_secs(90));
    let healed = || {
        let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
        status["pitr"][&server]["base_backups"].as_u64() >= Some(2)
            && status["pitr"][&server]["gaps"].as_array().is_some_and(Vec::is_empty)
    };
    work(pg, 1);
    assert!(wait_until(Duration::from_secs(120), healed), "{}\n{}", get(&d.addr, "/status").1, d.log());
    assert_eq!(metric(&metrics_of(&d), &format!("backup_pitr_streamer_up{{server=\"{server}\"}}")), Some(1.0));
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
}

#[test]
fn an_archive_at_its_cap_pauses_archiving_and_frees_the_server() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    let (mut d, server) = archiving(&fx, &[("PITR_MAX_BYTES", "3MB")]);
    pg.psql("postgres", "CREATE TABLE t (x int)");
    work(pg, 3);
    d.wait_for("at PITR_MAX_BYTES", Duration::from_secs(90));
    let no_slot = || pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots") == "0";
    assert!(wait_until(Duration::from_secs(30), no_slot), "the slot is dropped: the server keeps no WAL for us");
    let up = format!("backup_pitr_streamer_up{{server=\"{server}\"}}");
    assert_eq!(metric(&metrics_of(&d), &up), Some(0.0), "{}", d.log());
    let status: serde_json::Value = serde_json::from_str(&get(&d.addr, "/status").1).unwrap();
    let problem = status["pitr"][&server]["problem"].as_str().unwrap_or_default().to_string();
    assert!(problem.contains("PITR_MAX_BYTES") && problem.contains("paused"), "{status}");
    // Paused: more work, and no streamer comes back while the archive is over its cap.
    work(pg, 2);
    assert!(!wait_until(Duration::from_secs(20), || metric(&metrics_of(&d), &up) == Some(1.0) || !no_slot()));
    assert_eq!(d.log().matches("at PITR_MAX_BYTES").count(), 1, "said once: {}", d.log());
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
}

#[test]
fn a_restarted_server_and_a_killed_streamer_leave_no_gap_and_no_duplicate() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    let (mut d, server) = archiving(&fx, &[]);
    d.wait_for("A full base backup of", Duration::from_secs(60));
    pg.psql("postgres", "CREATE TABLE t (x int)");
    work(pg, 2);
    let series = |name: &str| format!("{name}{{server=\"{server}\"}}");
    let archive = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let segments = || backup_container::pitr::index::load(&archive.join("index.jsonl")).unwrap().0.segments().count();
    let healthy = |d: &Daemon, after: usize| {
        let m = metrics_of(d);
        metric(&m, &series("backup_pitr_streamer_up")) == Some(1.0)
            && metric(&m, &series("backup_pitr_gaps")) == Some(0.0)
            && segments() > after
    };
    assert!(wait_until(Duration::from_secs(60), || healthy(&d, 0)), "{}", d.log());

    // The database server restarts: every connection cut, pg_receivewal's too.
    let before = segments();
    pg.restart();
    work(pg, 2);
    pg.psql("postgres", "SELECT pg_switch_wal()");
    assert!(wait_until(Duration::from_secs(90), || healthy(&d, before)), "{}\n{}", metrics_of(&d), d.log());

    // pg_receivewal killed outright.
    nix::sys::signal::kill(receiver(&d, &server), nix::sys::signal::Signal::SIGKILL).unwrap();
    let runs = |n: usize| d.log().matches("Streaming WAL (pg_receivewal)").count() >= n;
    assert!(wait_until(Duration::from_secs(30), || runs(3)), "restarted after each: {}", d.log());
    let before = segments();
    work(pg, 2);
    pg.psql("postgres", "SELECT pg_switch_wal()");
    assert!(wait_until(Duration::from_secs(90), || healthy(&d, before)), "{}\n{}", metrics_of(&d), d.log());

    // No segment archived twice, none missing from the first to the newest.
    let text = std::fs::read_to_string(archive.join("index.jsonl")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("\"event\":\"segment\"")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (v["timeline"].as_u64().unwrap(), v["number"].as_u64().unwrap());
        assert!(seen.insert(key), "segment {key:?} archived twice");
    }
    let numbers: Vec<u64> = seen.iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers.len() as u64, numbers.last().unwrap() - numbers[0] + 1, "no hole: {numbers:?}");
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());

    // A run killed while it filled its next segment with zeros leaves a short `.partial`, which
    // pg_receivewal refuses to start on ("should be 0 or 16777216"): the daemon removes it.
    let spool = std::fs::read_dir(fx.dir.path().join("spool")).unwrap().next().unwrap().unwrap().path();
    let newest = *numbers.last().unwrap();
    let next = backup_container::pitr::wal::Segment { timeline: 1, number: newest + 2 }.name(16 << 20);
    std::fs::write(spool.join(format!("{next}.partial")), vec![0u8; 2_793_472]).unwrap();
    let (mut d, _) = archiving(&fx, &[]);
    d.wait_for("Removed a .partial that pg_receivewal was stopped while creating", Duration::from_secs(30));
    let before = segments();
    work(pg, 2);
    pg.psql("postgres", "SELECT pg_switch_wal()");
    assert!(wait_until(Duration::from_secs(90), || healthy(&d, before)), "{}\n{}", metrics_of(&d), d.log());
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
}
