//! Exit codes and the few error types that decide them.
//!
//! 0 success; 1 a backup, restore or verification failed (or another run holds the lock);
//! 2 usage or configuration error; 130 interrupted by SIGINT/SIGTERM. (`-h` exits 0.)

use std::process::ExitCode;

use crate::system::cancel::Interrupted;

/// The process outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Failed,
    Usage,
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Interrupted => 130,
        }
    }

    /// The exit code an error maps to.
    pub fn for_error(e: &anyhow::Error) -> Exit {
        if e.downcast_ref::<ConfigErrors>().is_some() || e.downcast_ref::<UsageError>().is_some() {
            Exit::Usage
        } else if e.downcast_ref::<Interrupted>().is_some() {
            Exit::Interrupted
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// A command line that cannot be carried out as given (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// All problems found while loading settings.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration error{}:", if self.0.len() == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
