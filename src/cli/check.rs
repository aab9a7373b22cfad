//! `--check [--json] [--notify]`: runs every preflight check (`crate::check`) and prints one
//! table: result, check, target, what was found and what to do. Exit 0 when nothing fails,
//! 1 when anything does (configuration errors are exit 2 before this runs).

use std::io::Write;

use anyhow::Context;

use crate::check::{self, Options};
use crate::config::Settings;
use crate::model::error::Exit;
use crate::model::finding::{Finding, Status};
use crate::notify::Notifiers;
use crate::system::cancel::Cancel;

/// Runs the checks and prints them.
///
/// # Errors
/// When stdout cannot be written.
pub fn run(
    settings: &Settings,
    notifiers: &Notifiers,
    json: bool,
    opts: Options,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let findings = check::run(settings, notifiers, opts, cancel);
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&findings)?).context("writing the report")?;
    } else {
        render(&mut out, &findings).context("writing the report")?;
    }
    Ok(if check::failed(&findings) { Exit::Failed } else { Exit::Success })
}

/// The table, for people.
pub fn render(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    let w_check = findings.iter().map(|f| f.check.len()).max().unwrap_or(5).max(5);
    let w_target = findings.iter().map(|f| f.target.chars().count()).max().unwrap_or(6).clamp(6, 48);
    writeln!(out, "{:<6} {:<w_check$} {:<w_target$} DETAIL", "RESULT", "CHECK", "TARGET")?;
    for f in findings {
        let result = match f.status {
            Status::Pass => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Info => "info",
        };
        writeln!(out, "{result:<6} {:<w_check$} {:<w_target$} {}", f.check, f.target, f.detail)?;
        if !f.fix.is_empty() {
            writeln!(out, "{:<6} {:<w_check$} {:<w_target$} → {}", "", "", "", f.fix)?;
        }
    }
    let failed = findings.iter().filter(|f| f.status == Status::Fail).count();
    let warned = findings.iter().filter(|f| f.status == Status::Warn).count();
    writeln!(out, "\n{} checks: {failed} failed, {warned} warnings.", findings.len())
}
