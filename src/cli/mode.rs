//! Run modes and upstream's mode precedence (`getMode`), as a pure function.
//!
//! prune > restore > verify > once > scheduled > cron > legacy. `-h`, `-c` and `-l` are
//! commands that act before any mode (help first, then show-config, then list).

/// What the process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-p`: apply retention now (or delete the backups matching `-f`).
    Prune,
    /// `-r <spec>`.
    Restore,
    /// `-v <spec|all>`; `scheduled` with `-s` (no prompts).
    Verify { scheduled: bool },
    /// `-1`: one backup run, then exit.
    Once,
    /// `-s`: one backup run without prompts (for external schedulers), then exit.
    Scheduled,
    /// No flags and cron lines in backup.conf: the cron daemon.
    Cron,
    /// No flags and no cron lines: back up every `BACKUP_PERIOD`.
    Legacy,
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Prune => "prune",
            Mode::Restore => "restore",
            Mode::Verify { scheduled: false } => "verify",
            Mode::Verify { scheduled: true } => "scheduled-verify",
            Mode::Once => "once",
            Mode::Scheduled => "scheduled",
            Mode::Cron => "cron",
            Mode::Legacy => "legacy",
        }
    }
}

/// The inputs of mode selection: flags (or their env equivalents) and whether backup.conf
/// has cron lines.
#[derive(Debug, Clone, Default)]
pub struct ModeInputs {
    pub prune: bool,
    pub restore: bool,
    pub verify: bool,
    pub once: bool,
    pub scheduled: bool,
    pub has_cron_lines: bool,
}

/// Upstream's `getMode`, except that `-s` no longer requires go-crond and cron lines: it
/// runs one unattended backup (or verification) and exits, for external schedulers.
pub fn select(i: &ModeInputs) -> Mode {
    if i.prune {
        Mode::Prune
    } else if i.restore {
        Mode::Restore
    } else if i.verify {
        Mode::Verify { scheduled: i.scheduled }
    } else if i.once {
        Mode::Once
    } else if i.scheduled {
        Mode::Scheduled
    } else if i.has_cron_lines {
        Mode::Cron
    } else {
        Mode::Legacy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_matches_upstream() {
        let all =
            ModeInputs { prune: true, restore: true, verify: true, once: true, scheduled: true, has_cron_lines: true };
        assert_eq!(select(&all), Mode::Prune);
        assert_eq!(select(&ModeInputs { prune: false, ..all.clone() }), Mode::Restore);
        assert_eq!(
            select(&ModeInputs { prune: false, restore: false, ..all.clone() }),
            Mode::Verify { scheduled: true }
        );
        let verify = ModeInputs { verify: true, ..Default::default() };
        assert_eq!(select(&verify), Mode::Verify { scheduled: false });
        let once = ModeInputs { once: true, scheduled: true, has_cron_lines: true, ..Default::default() };
        assert_eq!(select(&once), Mode::Once);
        let sched = ModeInputs { scheduled: true, has_cron_lines: true, ..Default::default() };
        assert_eq!(select(&sched), Mode::Scheduled);
        assert_eq!(
            select(&ModeInputs { scheduled: true, ..Default::default() }),
            Mode::Scheduled,
            "-s without cron lines"
        );
        assert_eq!(select(&ModeInputs { has_cron_lines: true, ..Default::default() }), Mode::Cron);
        assert_eq!(select(&ModeInputs::default()), Mode::Legacy);
    }
}
