//! Entry point: parse flags, set up logging and signal handling, dispatch, map to an exit code.

use std::process::ExitCode;

use backup_container::cancel::{Cancel, cancel_on_signals};
use backup_container::cli::Cli;
use backup_container::config::{Env, env::log_options};
use backup_container::error::Exit;
use backup_container::{cmd, logging};
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
    match cmd::dispatch(&cli, env, &cancel) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("backup-container: {e:#}");
            Exit::for_error(&e).into()
        }
    }
}
