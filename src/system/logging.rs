//! Log output: tracing to stderr (stdout is for `-l`/`-c` output), human-readable text by
//! default or JSON lines with `LOG_FORMAT=json`; level from `BACKUP_LOG_LEVEL` (`debug`,
//! `info`, `warn`, `error`), overridden by `RUST_LOG` when set. Colours only on a terminal,
//! so container logs carry no escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log settings, read from the environment by `config::env::log_options`.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub filter: String,
    pub json: bool,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(options: &LogOptions) {
    let filter = EnvFilter::try_new(&options.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if options.json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
