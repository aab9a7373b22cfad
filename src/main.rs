//! Entry point: parse flags, set up logging and signal handling, dispatch, map to an exit code.

use std::process::ExitCode;

use backup_container::cli;
use backup_container::cli::flags::Cli;
use backup_container::config::{Env, env::log_options};
use backup_container::model::error::Exit;
use backup_container::system::cancel::{Cancel, cancel_on_signals};
use backup_container::system::logging;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    logging::init(&log_options(&env));
    let cancel = Cancel::new();
    if let Err(e) = cancel_on_signals(&cancel) {
        eprintln!("backup-container: cannot install signal handlers: {e}");
        return Exit::Failed.into();
    }
    // A panic is a bug; no input may cause one (property-tested). Should one escape anyway
    // (the daemon turns a job's panic into a failed job), exit 2 with its message, not 101.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli::dispatch(&cli, env, &cancel))) {
        Ok(Ok(exit)) => exit.into(),
        Ok(Err(e)) => {
            eprintln!("backup-container: {e:#}");
            Exit::for_error(&e).into()
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("backup-container: internal error (please report it): {message}");
            Exit::Usage.into()
        }
    }
}
