//! `-1` (and `-s`): one backup run over every database, then exit 0 (all good), 1 (a backup
//! or retention failed) or 130 (interrupted).

use crate::backup::run_backups;
use crate::config::Settings;
use crate::model::error::Exit;
use crate::notify::Notifiers;
use crate::system::cancel::Cancel;

/// Runs one backup run.
///
/// # Errors
/// Missing credentials (exit 2) or a run that cannot start (lock held, folder unusable).
pub fn run(settings: &Settings, notifiers: &Notifiers, cancel: &Cancel) -> anyhow::Result<Exit> {
    settings.check_backup_ready()?;
    let mirrors = crate::storage::from_settings(settings, cancel)?;
    let report = run_backups(settings, &mirrors, notifiers, cancel)?;
    Ok(if report.interrupted {
        Exit::Interrupted
    } else if report.succeeded() {
        Exit::Success
    } else {
        Exit::Failed
    })
}
