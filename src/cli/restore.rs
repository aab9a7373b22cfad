//! `-r SPEC [-f FILTER] [-s] [-a PW] [-I] [--remote [NAME]]`: restore a database
//! (`restore::run`). On a terminal without `-s` it shows what will happen and asks (and asks
//! for the admin password when none is set); without a terminal it refuses unless `-s`.

use chrono::Utc;

use crate::catalog::checksum::Integrity;
use crate::catalog::layout;
use crate::config::{Secret, Settings};
use crate::model::error::{Exit, UsageError};
use crate::model::human;
use crate::notify::Notifiers;
use crate::restore::run::{Answer, Plan, Request, Source};
use crate::system::cancel::Cancel;
use crate::system::prompt;

/// What `-r` was asked to do: the request, and `-s`.
#[derive(Debug)]
pub struct RestoreArgs<'a> {
    pub request: Request<'a>,
    pub scripted: bool,
}

/// Runs a restore, asking first unless `-s`.
///
/// # Errors
/// As `restore::run::run`; a plan that cannot be confirmed (no terminal, no `-s`) is exit 2.
pub fn run(settings: &Settings, notifiers: &Notifiers, args: RestoreArgs, cancel: &Cancel) -> anyhow::Result<Exit> {
    let scripted = args.scripted;
    let confirm = |plan: &Plan| -> anyhow::Result<Answer> {
        if scripted {
            return Ok(Answer::Go { admin_password: None });
        }
        if !prompt::interactive() {
            return Err(UsageError(
                "restore asks for confirmation, but stdin is not a terminal; add -s to restore without asking".into(),
            )
            .into());
        }
        print_summary(settings, plan);
        let spec = &plan.spec;
        if !prompt::confirm(&format!("Replace database {} on {} with this backup?", spec.database, spec.host))? {
            println!("Restore cancelled; nothing was changed.");
            return Ok(Answer::Cancel);
        }
        let admin_password = if plan.has_admin_password {
            None
        } else {
            let pw = prompt::password(&format!("Admin password ({}@{}): ", plan.admin_user, spec.host))?;
            Some(Secret::new(pw)).filter(|p| !p.expose().is_empty())
        };
        Ok(Answer::Go { admin_password })
    };
    crate::restore::run::run(settings, notifiers, args.request, confirm, cancel)
}

fn print_summary(settings: &Settings, plan: &Plan) {
    let spec = &plan.spec;
    println!("Restoring database:");
    println!(
        "- Database: {} (host {}, port {})",
        spec.database,
        spec.host,
        spec.port.map_or("default".into(), |p| p.to_string())
    );
    match &plan.source {
        Source::File(backup) => print_file(settings, backup),
        Source::Archive(from) => {
            let local = |t: chrono::DateTime<Utc>| settings.zone.local(t).format("%Y-%m-%d %H:%M:%S").to_string();
            let target = match from.target {
                crate::pitr::recover::plan::Target::Latest => {
                    format!("the newest archived WAL ({})", local(from.chosen.window.to))
                }
                crate::pitr::recover::plan::Target::Time(t) => local(t),
            };
            let base = from.chosen.chain.last().map(|b| (b.chain, b.n, local(b.finished_at)));
            println!("- As of: {target} ({} in TZ)", settings.zone.description(Utc::now()));
            println!("- From: the point-in-time archive of {} ({})", from.server, from.folder.display());
            if let Some((chain, n, at)) = base {
                println!(
                    "- Base backup: chain {chain}, backup {n}, taken {at}; {} WAL segments to replay",
                    from.chosen.segments.len()
                );
            }
            println!("- Source database in the recovered cluster: {}", from.source);
        }
    }
    if plan.in_place {
        println!("- The database will be DROPPED, then loaded (in place); sessions connected to it are terminated.");
    } else {
        println!("- The backup is loaded beside the database and checked; only then does it replace the database");
        println!("  (sessions connected to it are terminated). If anything fails, the database is not changed.");
    }
}

fn print_file(settings: &Settings, backup: &crate::restore::open::Checked) {
    let path = &backup.path;
    let age = path
        .file_name()
        .and_then(|n| layout::parse_file_name(&n.to_string_lossy()))
        .and_then(|p| (settings.zone.local(Utc::now()) - p.timestamp).to_std().ok())
        .map(human::age)
        .unwrap_or_else(|| "unknown".into());
    let check = match backup.integrity {
        Integrity::ChecksumMatched => "sha256 matches",
        Integrity::StreamDecoded => "no checksum file; the whole stream decompressed cleanly",
    };
    println!("- Backup file: {}", path.display());
    println!("- Backup age: {age}; size {}; {check}", human::bytes(backup.size));
}
