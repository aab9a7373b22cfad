//! One file per CLI mode; `dispatch` loads settings, picks the mode and runs it.

pub mod check;
pub mod flags;
pub mod list;
pub mod mode;
pub mod once;
pub mod prune;
pub mod restore;
pub mod show_config;
pub mod verify;

use crate::config::{Env, Secret, Settings};
use crate::model::error::{Exit, UsageError};
use crate::notify::{Notifiers, event};
use crate::system::cancel::Cancel;
use flags::Cli;
use mode::Mode;

/// Runs what the command line asks for.
///
/// # Errors
/// Configuration errors (exit 2), usage errors (exit 2), and failures that stop a mode
/// before it produces a result (exit 1).
pub fn dispatch(cli: &Cli, env: Env, cancel: &Cancel) -> anyhow::Result<Exit> {
    let env = match &cli.shard {
        Some(shard) => env.with(crate::config::env::BACKUP_SHARD, shard),
        None => env,
    };
    let settings = match Settings::load(env.clone(), cli.config_file.as_deref()) {
        Ok(s) => s,
        Err(errors) => {
            if !cli.show_config && !cli.list {
                let (notify, dir) = crate::config::for_config_error(&env);
                let notifiers = Notifiers::from_settings(&notify, &dir, cancel);
                notifiers.notify(event::config_error(&errors.0.join("\n")));
                notifiers.flush();
            }
            return Err(errors.into());
        }
    };
    let mode = mode::select(&cli.mode_inputs(&env, !settings.cron.is_empty()));
    if cli.show_config {
        show_config::run(&settings, &mode);
        return Ok(Exit::Success);
    }
    if cli.remote.is_some()
        && !cli.list
        && cli.pitr_datadir.is_none()
        && !matches!(mode, Mode::Restore | Mode::Verify { .. })
    {
        return Err(UsageError("--remote goes with -l, -r, -v or --pitr-datadir".into()).into());
    }
    if cli.list && cli.remote.is_some() {
        return list::run_remote(&settings, cancel);
    }
    if let Some(dir) = &cli.pitr_datadir {
        let at =
            cli.at.as_deref().ok_or_else(|| UsageError("--pitr-datadir needs --at TIME (or --at latest)".into()))?;
        let mirror = match cli.remote.as_deref() {
            Some(name) => {
                Some(crate::restore::fetch::take_mirror(crate::storage::from_settings(&settings, cancel)?, name)?)
            }
            None => None,
        };
        let done = crate::restore::pitr::datadir(&settings, cli.pitr_server.as_deref(), dir, at, mirror, cancel)?;
        println!("{done}");
        return Ok(Exit::Success);
    }
    if cli.at.is_some() && cli.restore.is_none() {
        return Err(UsageError("--at goes with -r or --pitr-datadir".into()).into());
    }
    if cli.pitr && !cli.list && cli.verify.is_none() {
        return Err(UsageError("--pitr goes with -l or -v".into()).into());
    }
    if let (true, Some(target), false) = (cli.pitr, &cli.verify, cli.list) {
        return drill_now(&settings, target, cancel);
    }
    if cli.list {
        list::run(&settings, cli.json, cli.pitr)?;
        return Ok(Exit::Success);
    }
    let notifiers = Notifiers::from_settings(&settings.notify, &settings.backup_dir, cancel);
    if !cli.check && matches!(mode, Mode::Cron | Mode::Legacy) {
        // The daemon flushes after each job and when it stops.
        return crate::daemon::run(settings, notifiers, cancel);
    }
    let outcome = if cli.check {
        check::run(&settings, &notifiers, cli.json, crate::check::Options { notify: cli.notify }, cancel)
    } else {
        run_mode(cli, &env, &settings, &mode, &notifiers, cancel)
    };
    // Whatever the mode queued is delivered (or counted for the next run) before exiting.
    notifiers.flush();
    outcome
}

/// The modes that end (all but the daemon).
fn run_mode(
    cli: &Cli,
    env: &Env,
    settings: &Settings,
    mode: &Mode,
    notifiers: &Notifiers,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    match mode {
        Mode::Prune => prune::run(settings, cli.from.as_deref(), cli.force, cli.scheduled),
        Mode::Once | Mode::Scheduled => once::run(settings, notifiers, cancel),
        Mode::Restore => restore::run(
            settings,
            notifiers,
            restore::RestoreArgs {
                request: crate::restore::run::Request {
                    target: cli.restore.as_deref().unwrap_or_default(),
                    filter: cli.from.as_deref(),
                    ignore_errors: cli.ignore_errors(env),
                    admin_password: cli.admin_password.clone().map(Secret::new),
                    admin_user: cli.admin_user.clone(),
                    remote: cli.remote.clone(),
                    at: cli.at.clone(),
                },
                scripted: cli.scheduled,
            },
            cancel,
        ),
        Mode::Verify { .. } => {
            let target = cli.verify.as_deref().unwrap_or("all");
            verify::run(settings, notifiers, target, cli.from.as_deref(), cli.remote.as_deref(), cancel)
        }
        // Started by `dispatch` before this point; an error rather than a panic all the same.
        Mode::Cron | Mode::Legacy => Err(anyhow::anyhow!("the daemon is started by dispatch, not here")),
    }
}

/// `-v HOST[:PORT] --pitr` (or `-v all --pitr`): PITR drills of the server's archive now.
fn drill_now(settings: &Settings, target: &str, cancel: &Cancel) -> anyhow::Result<Exit> {
    let servers: Vec<_> = match target {
        "all" => settings.pitr.servers.iter().collect(),
        one => vec![settings.pitr.find_text(one).map_err(|e| UsageError(format!("-v {e} --pitr (HOST:PORT or all)")))?],
    };
    if servers.is_empty() {
        return Err(UsageError("-v all --pitr: PITR_SERVERS lists no server".into()).into());
    }
    let mut failed = false;
    for server in servers {
        for d in crate::pitr::drill::run(settings, server, cancel)? {
            let what = if d.latest { "to the newest WAL" } else { "to a time in the window" };
            let at = settings.zone.local(d.target).format("%Y-%m-%d %H:%M:%S");
            match &d.error {
                None => println!(
                    "PITR drill of {} {what} ({at}): ok, chain {}, {} databases, {} tables, {} rows, amcheck {}, {:.1}s",
                    server.name(),
                    d.chain,
                    d.databases,
                    d.tables,
                    d.rows,
                    if d.amcheck { "clean" } else { "not run" },
                    d.duration_seconds
                ),
                Some(e) => {
                    failed = true;
                    eprintln!("PITR drill of {} {what} ({at}): FAILED: {e}", server.name());
                }
            }
        }
    }
    Ok(if failed { Exit::Failed } else { Exit::Success })
}
