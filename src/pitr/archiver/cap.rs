//! `PITR_MAX_BYTES`: an archive that reached its cap pauses archiving rather than fill the
//! volume the nightly dumps need. `pg_receivewal` is stopped (the mover archives what it
//! finished), the slot is dropped (its walsender ended first: the server keeps no WAL for
//! us) with an ERROR, and no base backup starts. Below 90% of the cap again (the limit
//! raised, fewer chains pruned, room made), streaming starts again; the WAL missed is a gap,
//! healed by the full base backup that follows.

use std::path::Path;

use super::Ctx;
use crate::model::human;
use crate::notify::event::Level;
use crate::pitr::slot;
use crate::pitr::stream::Setup;
use crate::system::cancel::Cancel;

/// What the cap asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Pause,
    Resume,
    Nothing,
}

/// The decision (pure): pause at the cap, resume under 90% of it (no flapping at the edge).
pub(super) fn decide(stored: u64, cap: Option<u64>, streaming: bool) -> Action {
    match (cap, streaming) {
        (None, true) => Action::Nothing,
        (None, false) => Action::Resume,
        (Some(cap), true) if stored >= cap => Action::Pause,
        (Some(cap), false) if u128::from(stored) * 10 < u128::from(cap) * 9 => Action::Resume,
        _ => Action::Nothing,
    }
}

/// Every byte the archive holds on disk (files being written included).
pub(super) fn stored_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

impl Ctx {
    /// After the streamer stopped: the slot dropped, the pause said once.
    pub(super) fn paused_for_cap(&self, setup: &Setup, stored: u64, cancel: &Cancel) {
        let cap = self.settings.pitr.max_bytes.unwrap_or(0);
        if let Ok(conn) = self.server.replication_conn() {
            // `volume_full`: drop the slot whatever it holds.
            if let Err(e) = slot::guard(self.settings.engines.postgres(), &conn, &setup.slot, None, true, cancel) {
                tracing::warn!(server = %self.name, error = %format!("{e:#}"), "Could not drop the replication slot.");
            }
        }
        let why = format!(
            "the archive holds {}, at PITR_MAX_BYTES ({}): archiving is paused and the slot {} dropped (the server keeps no WAL for us). Raise PITR_MAX_BYTES, lower PITR_CHAINS, or make room; archiving starts again under 90% of the limit, and the WAL missed meanwhile is a gap healed by a full base backup",
            human::bytes(stored),
            human::bytes(cap),
            setup.slot
        );
        self.board.update(&self.name, |s| (s.streamer_up, s.problem) = (false, Some(why.clone())));
        self.say(Level::Error, "pitr_over_max_bytes", format!("The archive of {}: {why}.", self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, decide};

    #[test]
    fn archiving_pauses_at_the_cap_and_resumes_well_under_it() {
        assert_eq!(decide(10, None, true), Action::Nothing);
        assert_eq!(decide(99, Some(100), true), Action::Nothing);
        assert_eq!(decide(100, Some(100), true), Action::Pause);
        assert_eq!(decide(95, Some(100), false), Action::Nothing, "not at the edge");
        assert_eq!(decide(89, Some(100), false), Action::Resume);
        assert_eq!(decide(u64::MAX, Some(u64::MAX), false), Action::Nothing, "no overflow");
        assert_eq!(decide(5, None, false), Action::Resume, "the limit removed");
    }
}
