//! One line of a preflight (`--check`): what was checked, on what, the result, and what to do.
//! A leaf module, so that engines and storages can report without knowing the runner.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Will make a backup (or restore, or notification) fail.
    Fail,
    /// Worth knowing; does not fail the check.
    Warn,
    /// A fact (a schedule's next fires, what was not provable).
    Info,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: String,
    pub target: String,
    pub status: Status,
    /// What was found (the server's own message on failure).
    pub detail: String,
    /// What to do, for failures and warnings.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    pub fn pass(check: &str, target: &str, detail: impl Into<String>) -> Finding {
        Finding::new(check, target, Status::Pass, detail, "")
    }

    pub fn fail(check: &str, target: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(check, target, Status::Fail, detail, fix)
    }

    pub fn warn(check: &str, target: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::new(check, target, Status::Warn, detail, fix)
    }

    pub fn info(check: &str, target: &str, detail: impl Into<String>) -> Finding {
        Finding::new(check, target, Status::Info, detail, "")
    }

    fn new(check: &str, target: &str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { check: check.into(), target: target.into(), status, detail: detail.into(), fix: fix.into() }
    }
}
