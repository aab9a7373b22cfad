//! Hooks as configured (backup.toml `[[hook]]`): what runs, in which phase and stage. Data
//! only; `crate::backup::hooks` runs them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::system::command::Program;

/// The phase a hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    Backup,
    Copy,
    Prune,
    Verify,
    Restore,
}

impl Phase {
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "run" => Phase::Run,
            "backup" => Phase::Backup,
            "copy" => Phase::Copy,
            "prune" => Phase::Prune,
            "verify" => Phase::Verify,
            "restore" => Phase::Restore,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Run => "run",
            Phase::Backup => "backup",
            Phase::Copy => "copy",
            Phase::Prune => "prune",
            Phase::Verify => "verify",
            Phase::Restore => "restore",
        }
    }
}

/// When, relative to the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Pre,
    Post,
    OnError,
    Finally,
}

impl Stage {
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "pre" => Stage::Pre,
            "post" => Stage::Post,
            "on-error" => Stage::OnError,
            "finally" => Stage::Finally,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Post => "post",
            Stage::OnError => "on-error",
            Stage::Finally => "finally",
        }
    }
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Command(Program),
    /// SQL run against the phase's database, with its credentials (e.g. `CHECKPOINT;`).
    Sql(String),
}

/// One configured hook.
#[derive(Debug, Clone)]
pub struct Hook {
    pub name: String,
    pub phase: Phase,
    pub stage: Stage,
    pub action: Action,
    pub timeout: Duration,
    /// `true` = `on-error = "fail"`.
    pub fail_on_error: bool,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    /// Database specs or core names this hook is for; `None` = every database.
    pub databases: Option<Vec<String>>,
}

/// The configured hooks.
#[derive(Debug, Clone, Default)]
pub struct Hooks(pub Vec<Hook>);
