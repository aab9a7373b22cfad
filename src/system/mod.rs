//! The process and its operating system: cancellation, child commands, worker threads, the terminal, logging.

pub mod cancel;
pub mod command;
pub mod logging;
pub mod prompt;
pub mod usage;
pub mod workers;
