//! `-c`: the effective settings in upstream's order and labels, with secrets redacted
//! (passwords never shown; webhook and FTP URLs as scheme and host only).

use std::io::Write;

use chrono::Utc;

use crate::catalog::layout;
use crate::catalog::retention::Strategy;
use crate::cli::mode::Mode;
use crate::config::{Settings, redact_url};

/// Prints the settings to stdout.
pub fn run(settings: &Settings, mode: &Mode) {
    let mut out = std::io::stdout().lock();
    // NOTE: a closed stdout is not worth an error exit for a diagnostic listing.
    let _ = render(&mut out, settings, mode);
}

/// Writes the settings text.
///
/// # Errors
/// Write errors on `out`.
pub fn render(out: &mut dyn Write, s: &Settings, mode: &Mode) -> std::io::Result<()> {
    let now = Utc::now();
    let today = s.zone.local(now).date();
    let class = layout::classify(today, &s.policy);
    writeln!(out, "Settings:")?;
    writeln!(out, "- Run mode: {}", mode.name())?;
    writeln!(out)?;
    writeln!(out, "- Backup strategy: {}", s.policy.strategy.name())?;
    writeln!(out, "- Current backup type: {}", class.map(|c| c.name()).unwrap_or("flat daily"))?;
    writeln!(out, "- Backups to retain:")?;
    match s.policy.strategy {
        Strategy::Rolling => {
            writeln!(out, "  - Daily: {}", s.policy.daily)?;
            writeln!(out, "  - Weekly: {}", s.policy.weekly)?;
            writeln!(out, "  - Monthly: {}", s.policy.monthly)?;
        }
        Strategy::Daily => writeln!(out, "  - Total: {}", s.policy.num_backups)?,
    }
    writeln!(out, "- Current backup folder: {}", layout::run_dir(&s.backup_dir, class, today).display())?;
    writeln!(out, "- Time Zone: {}", s.zone.description(now))?;
    writeln!(out, "- Compression: {}", s.compression.describe())?;
    if !s.pitr.servers.is_empty() {
        let names: Vec<String> = s.pitr.servers.iter().map(|p| p.name()).collect();
        let schedules = |list: &[crate::model::schedule::Schedule]| {
            list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        writeln!(
            out,
            "- Point-in-time recovery (PITR_SERVERS): {}. Archived by the daemon only (not by -1 runs, CronJobs or \
             Indexed Jobs): WAL streamed into {} (spool {}), full base backups {} ({}), incrementals {} (17+ \
             with summarize_wal), PITR drills {}, the slot dropped past {} held back, {} chains kept. Restores: -r … --at \
             TIME, --pitr-datadir (docs/PITR.md).",
            names.join(", "),
            s.backup_dir.join(crate::pitr::layout::ROOT).display(),
            s.pitr.spool_dir.display(),
            schedules(&s.pitr.base),
            s.pitr.base_compression.describe(),
            schedules(&s.pitr.incremental),
            schedules(&s.pitr.drill),
            crate::model::human::bytes(s.pitr.slot_max_retained),
            s.pitr.chains,
        )?;
    }
    // The programs found, by the majors their tools report (runs them; never connects).
    let pg = s.engines.postgres().installed();
    writeln!(
        out,
        "- PostgreSQL clients: {}; servers (verification): {}. Each server is dumped with the client of its major, \
         else the lowest above it.",
        crate::engine::postgres::Installed::describe(&pg.client_majors()),
        crate::engine::postgres::Installed::describe(&pg.server_majors())
    )?;
    match &s.encryption {
        Some(r) => writeln!(out, "- Encryption: age, to recipients {}", r.fingerprints().join(", "))?,
        None => writeln!(out, "- Encryption: none")?,
    }
    if let Some(f) = &s.keys.identity_file {
        writeln!(out, "- Decryption identity: {}", f.display())?;
    }
    writeln!(out)?;
    writeln!(out, "- Schedule:")?;
    if s.cron.is_empty() {
        writeln!(
            out,
            "  - every {} (BACKUP_PERIOD; legacy mode)",
            crate::model::schedule::format_duration(s.backup_period)
        )?;
    }
    for line in &s.cron {
        let next = line
            .schedule
            .next_after(now, &s.zone)
            .map(|t| s.zone.local(t).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "never".into());
        writeln!(out, "  - {line}   (line {}; next: {next})", line.line)?;
    }
    writeln!(out)?;
    let conf_state = if s.conf_found { "found" } else { "not found" };
    writeln!(out, "- Config file: {} ({conf_state})", s.conf_path.display())?;
    let toml_state = if s.toml_found { "found" } else { "not found" };
    writeln!(out, "- Settings file: {} ({toml_state})", s.toml_path.display())?;
    let origin = if s.databases_from_env { " (from environment: no database lines in the config file)" } else { "" };
    writeln!(out, "- Databases{origin}:")?;
    for db in &s.databases {
        let c = &db.credentials;
        let user = match &c.user {
            Some(u) => format!("user {u} from {}", c.user_source),
            None => format!("NO USER: set one of {}", c.user_source),
        };
        let password = match &c.password_source {
            Some(src) => format!("password from {src}"),
            None => "no password set".to_string(),
        };
        writeln!(out, "  - {} ({user}; {password})", db.spec)?;
    }
    for skipped in &s.skipped {
        writeln!(out, "  - {} (skipped: {})", skipped.spec, skipped.reason)?;
    }
    if s.databases.iter().any(|d| d.spec.database == crate::fleet::ALL) || !s.exclude_databases.is_empty() {
        let excluded = if s.exclude_databases.is_empty() { "none".to_string() } else { s.exclude_databases.join(", ") };
        writeln!(
            out,
            "  (host/* lines: every database on the server at each run; excluded: {excluded}; --check lists them)"
        )?;
    }
    let shard = s.shard.map(|sh| sh.to_string()).unwrap_or_else(|| "none (all databases)".into());
    writeln!(
        out,
        "- Jobs: {} at once, {} per server (BACKUP_JOBS, BACKUP_JOBS_PER_HOST); a database another process holds: {} (BACKUP_WHEN_LOCKED); \
         verification: {} at once (VERIFY_JOBS); shard: {shard}",
        s.jobs,
        s.jobs_per_host.min(s.jobs),
        s.when_locked.name(),
        s.restore.verify_databases
    )?;
    writeln!(out)?;
    let or_not = |v: Option<String>| v.unwrap_or_else(|| "not configured".into());
    let ftp = s.mirrors.ftp.as_ref().map(|f| {
        let tls = if f.allow_plaintext { "PLAINTEXT allowed" } else { "explicit TLS required" };
        let prune = if f.prune { "pruned" } else { "not pruned" };
        format!("{} ({tls}; user {}; {prune})", redact_url(f.url.expose()), f.user.as_deref().unwrap_or("(none)"))
    });
    writeln!(out, "- FTP server: {}", or_not(ftp))?;
    let s3 = s.mirrors.s3.as_ref().map(|c| {
        let prune = if c.prune { "pruned" } else { "not pruned" };
        format!(
            "{} (bucket {}, prefix \"{}\", region {}; {prune})",
            redact_url(&c.endpoint),
            c.bucket,
            c.prefix,
            c.region
        )
    });
    writeln!(out, "- S3 endpoint: {}", or_not(s3))?;
    writeln!(out, "- Webhook Endpoint: {}", or_not(s.notify.webhook_url.as_ref().map(|u| redact_url(u.expose()))))?;
    writeln!(out, "- Environment Friendly Name: {}", or_not(s.notify.friendly_name.clone()))?;
    writeln!(out, "- Environment Name (Id): {}", or_not(s.notify.environment_name.clone()))?;
    if !s.hooks.0.is_empty() {
        writeln!(out)?;
        writeln!(out, "- Hooks (in order):")?;
        for h in &s.hooks.0 {
            let what = match &h.action {
                crate::backup::hooks::Action::Sql(_) => "sql",
                crate::backup::hooks::Action::Command(crate::system::command::Program::Argv(_)) => "command",
                crate::backup::hooks::Action::Command(crate::system::command::Program::Shell(_)) => "shell",
            };
            let policy = if h.fail_on_error { "fail" } else { "continue" };
            let scope = h.databases.as_ref().map(|d| format!(", databases {}", d.join(" "))).unwrap_or_default();
            writeln!(
                out,
                "  - {} {}: {} ({what}, timeout {}s, on-error {policy}{scope})",
                h.phase.name(),
                h.stage.name(),
                h.name,
                h.timeout.as_secs()
            )?;
        }
    }
    if !s.sources.is_empty() {
        writeln!(out)?;
        writeln!(out, "- Where values came from (others are defaults):")?;
        for (name, source) in &s.sources {
            writeln!(out, "  - {name}: {source}")?;
        }
    }
    Ok(())
}
