//! The checks that run once: the backup folder (writable, fsync-able, free space), whether
//! verification can run here, every mirror (probe object written, read back, deleted), the
//! notifiers, hooks and schedules.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use super::Options;
use crate::config::Settings;
use crate::config::hooks::Action;
use crate::model::finding::Finding;
use crate::model::human;
use crate::model::spec::EngineKind;
use crate::notify::{Notifiers, event};
use crate::system::command::Program;

/// The probe object's key on mirrors (in the catalog folder: never taken for a backup, never
/// locked by us).
const PROBE_KEY: &str = ".backup_container/probe.json";
/// How long a TCP connection to a notifier may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn checks(
    settings: &Settings,
    notifiers: &Notifiers,
    opts: Options,
    largest_db: Option<u64>,
    cancel: &crate::system::cancel::Cancel,
) -> Vec<Finding> {
    let mut out = vec![backup_folder(&settings.backup_dir)];
    if settings.databases.iter().any(|d| d.spec.engine == EngineKind::Postgres) {
        out.extend(verification(settings, largest_db));
    }
    out.extend(mirrors(settings, cancel));
    out.extend(notify(settings, notifiers, opts));
    out.extend(hooks(settings));
    out.extend(schedules(settings));
    out
}

/// Free bytes for an unprivileged writer at `path` (or its nearest existing parent).
pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn backup_folder(dir: &Path) -> Finding {
    let t = dir.display().to_string();
    let probe = dir.join(".backup_container_check");
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"probe")?;
        f.sync_all()?;
        std::fs::remove_file(&probe)
    });
    match result {
        Ok(()) => Finding::pass(
            "backup folder",
            &t,
            format!("writable and fsync-able; {} free", free_bytes(dir).map_or("?".into(), human::bytes)),
        ),
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            Finding::fail(
                "backup folder",
                &t,
                format!("cannot write a file there: {e}"),
                "mount a writable volume at BACKUP_DIR",
            )
        }
    }
}

fn verification(settings: &Settings, largest_db: Option<u64>) -> Vec<Finding> {
    let dir = &settings.restore.verify_dir;
    let t = dir.display().to_string();
    let mut out = Vec::new();
    let installed = settings.engines.postgres().installed();
    match installed.server_dir(None) {
        Ok((bin, major)) => out.push(Finding::pass(
            "verification",
            "initdb",
            format!(
                "{} (PostgreSQL {major}; servers installed: {})",
                bin.join("initdb").display(),
                crate::engine::postgres::Installed::describe(&installed.server_majors())
            ),
        )),
        Err(e) => {
            out.push(Finding::fail(
                "verification",
                "initdb",
                format!("{e:#}"),
                "install the PostgreSQL server package or set PG_BIN_DIR",
            ));
        }
    }
    if nix::unistd::Uid::effective().is_root() && nix::unistd::User::from_name("postgres").ok().flatten().is_none() {
        out.push(Finding::fail(
            "verification",
            "user",
            "running as root, and there is no postgres user to run initdb as (initdb refuses root)",
            "run as a non-root user (the image runs as UID 26), or create a postgres user",
        ));
    }
    match tempfile::Builder::new().prefix(".check").tempdir_in(dir) {
        Ok(_) => {
            let free = free_bytes(dir);
            match (free, largest_db) {
                (Some(f), Some(l)) if l > f => out.push(Finding::fail(
                    "verification",
                    &t,
                    format!(
                        "the largest database takes {} on its server; {} free here",
                        human::bytes(l),
                        human::bytes(f)
                    ),
                    "give VERIFY_DIR a volume with room for the largest database",
                )),
                (f, _) => out.push(Finding::pass(
                    "verification",
                    &t,
                    format!("writable; {} free", f.map_or("?".into(), human::bytes)),
                )),
            }
        }
        Err(e) => out.push(Finding::fail(
            "verification",
            &t,
            format!("cannot create a folder there: {e}"),
            "mount a writable volume at VERIFY_DIR",
        )),
    }
    out
}

/// Each mirror: a probe written, read back and deleted.
fn mirrors(settings: &Settings, cancel: &crate::system::cancel::Cancel) -> Vec<Finding> {
    let mirrors = match crate::storage::from_settings(settings, cancel) {
        Ok(m) => m,
        Err(e) => return vec![Finding::fail("mirror", "configuration", e.to_string(), "fix the mirror settings")],
    };
    let Ok(scratch) = tempfile::tempdir() else {
        return vec![Finding::fail("mirror", "probe", "cannot create a temporary folder", "")];
    };
    let local = scratch.path().join("probe.json");
    let content = format!("{{\"probe\":\"backup-container --check\",\"at\":\"{}\"}}", Utc::now().to_rfc3339());
    if std::fs::write(&local, &content).is_err() {
        return vec![Finding::fail("mirror", "probe", "cannot write a temporary file", "")];
    }
    let mut out = Vec::new();
    for m in &mirrors {
        let name = m.name();
        let back = scratch.path().join("back.json");
        let result = m.put(&local, PROBE_KEY).and_then(|()| m.get(PROBE_KEY, &back)).and_then(|_| {
            anyhow::ensure!(std::fs::read_to_string(&back)? == content, "the probe came back different");
            Ok(())
        });
        match result {
            Err(e) => out.push(Finding::fail(
                "mirror",
                &name,
                format!("{e:#}"),
                "check the mirror's URL, credentials and write permission (docs/MIRRORS.md)",
            )),
            Ok(()) => match m.delete(PROBE_KEY) {
                Ok(()) => out.push(Finding::pass("mirror", &name, "a probe object was written, read back and deleted")),
                Err(e) => out.push(Finding::warn(
                    "mirror",
                    &name,
                    format!("the probe was written and read back, but not deleted: {e:#}"),
                    format!("retention cannot prune without delete permission; remove {PROBE_KEY} by hand"),
                )),
            },
        }
    }
    out
}

fn notify(settings: &Settings, notifiers: &Notifiers, opts: Options) -> Vec<Finding> {
    let mut out = Vec::new();
    if opts.notify {
        for (name, result) in notifiers.deliver_each(&event::check_test()) {
            match result {
                Ok(()) => out.push(Finding::pass("notification", &name, "a test message was delivered")),
                Err(e) => out.push(Finding::fail(
                    "notification",
                    &name,
                    format!("{e:#}"),
                    "check the URL or key (docs/NOTIFICATIONS.md)",
                )),
            }
        }
        return out;
    }
    let urls = [
        settings.notify.webhook_url.as_ref().map(|u| ("webhook", u.expose().to_string())),
        settings
            .notify
            .pagerduty_key
            .as_ref()
            .map(|_| ("pagerduty", settings.notify.pagerduty_url.expose().to_string())),
    ];
    for (kind, url) in urls.into_iter().flatten() {
        let shown = crate::model::secret::redact_url(&url);
        match reachable(&url) {
            Ok(addr) => out.push(Finding::pass(
                "notification",
                &format!("{kind} {shown}"),
                format!("reachable ({addr}, TCP); only --check --notify proves it accepts messages"),
            )),
            Err(e) => out.push(Finding::fail(
                "notification",
                &format!("{kind} {shown}"),
                e,
                "check the URL, DNS and egress rules (NetworkPolicy, proxy)",
            )),
        }
    }
    out
}

/// Resolves `url`'s host and opens a TCP connection to it.
fn reachable(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("no host in the URL")?;
    let port = parsed.port_or_known_default().ok_or("no port for this scheme")?;
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(a.to_string()),
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

fn hooks(settings: &Settings) -> Vec<Finding> {
    settings
        .hooks
        .0
        .iter()
        .map(|h| {
            let t = format!("hook {} ({} {})", h.name, h.phase.name(), h.stage.name());
            match &h.action {
                Action::Command(Program::Argv(argv)) => {
                    let program = argv.first().map(String::as_str).unwrap_or_default();
                    let found = if program.contains('/') {
                        let p = Path::new(program);
                        p.is_file().then(|| p.to_path_buf())
                    } else {
                        settings.engines.options().find(&[program], &[])
                    };
                    match found.filter(|p| is_executable(p)) {
                        Some(p) => Finding::pass("hook", &t, format!("{} is executable", p.display())),
                        None => Finding::fail(
                            "hook",
                            &t,
                            format!("command {program} not found or not executable"),
                            "install it or fix the hook's command",
                        ),
                    }
                }
                Action::Command(Program::Shell(s)) => {
                    Finding::info("hook", &t, format!("shell command `{s}` (run by /bin/sh; not checked)"))
                }
                Action::Sql(_) => Finding::info("hook", &t, "SQL hook: checked in each database it runs for"),
            }
        })
        .collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn schedules(settings: &Settings) -> Vec<Finding> {
    let now = Utc::now();
    if settings.cron.is_empty() {
        let period = crate::model::schedule::format_duration(settings.backup_period);
        return vec![Finding::info("schedule", "BACKUP_PERIOD", format!("a backup at start and every {period}"))];
    }
    settings
        .cron
        .iter()
        .map(|line| {
            let mut fires = Vec::new();
            let mut at = now;
            for _ in 0..3 {
                match line.schedule.next_after(at, &settings.zone) {
                    Some(next) => {
                        fires.push(settings.zone.local(next).format("%Y-%m-%d %H:%M").to_string());
                        at = next;
                    }
                    None => break,
                }
            }
            let t = format!("{} {}", line.schedule, line.command);
            Finding::info("schedule", &t, format!("next in {}: {}", settings.zone.description(now), fires.join(", ")))
        })
        .collect()
}
