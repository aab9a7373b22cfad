//! `-v SPEC|all [-f FILTER]`: verify (see `crate::restore::verify`) and map the outcome to an exit code:
//! restore the newest backup of each database into a throwaway
//! local server and check it. Fails (exit 1) on no backup, a stale newest backup
//! (`VERIFY_MAX_AGE`), a checksum mismatch, an incomplete dump (no trailer), a server that will
//! not start, any SQL error, a table whose restored rows differ from the dump's, or no tables.

use crate::config::Settings;
use crate::model::error::Exit;
use crate::notify::Notifiers;
use crate::restore::verify::verify_all;
use crate::system::cancel::Cancel;

/// Runs verification of `target` (`all` or a spec) and maps the outcome to an exit code.
///
/// # Errors
/// A bad spec (exit 2) or a verification that cannot start (lock held, folder unreadable).
pub fn run(
    settings: &Settings,
    notifiers: &Notifiers,
    target: &str,
    filter: Option<&str>,
    remote: Option<&str>,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let outcomes = verify_all(settings, notifiers, target, filter, remote, cancel)?;
    Ok(if cancel.is_cancelled() {
        Exit::Interrupted
    } else if outcomes.iter().any(|o| o.result.is_err()) {
        Exit::Failed
    } else {
        Exit::Success
    })
}
