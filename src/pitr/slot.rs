//! The archive's replication slot, and the guard that keeps it from endangering the primary:
//! what the slot holds back (`pg_current_wal_lsn() - restart_lsn`) is measured, and past the
//! limit (`PITR_SLOT_MAX_RETAINED`), or when our own volume is full, the slot is dropped —
//! its walsender terminated first — and the caller reports an ERROR and the gap. A slot that
//! holds WAL nobody reads can fill the server's disk and stop the database: a hole in the
//! archive is the lesser harm, and it heals with the next full base backup.

use serde::Deserialize;

use crate::engine::postgres::{PostgresEngine, quote_literal};
use crate::model::database::Conn;
use crate::system::cancel::Cancel;

/// The slot as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SlotState {
    pub exists: bool,
    /// The walsender using it (our streamer), when one is.
    pub active_pid: Option<i32>,
    /// WAL bytes it holds back on the server.
    pub retained: Option<u64>,
}

/// What the guard decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Drop it: it holds `retained` bytes, over `limit` (`None`: our volume is full).
    Drop {
        retained: u64,
        limit: Option<u64>,
    },
}

/// The decision (pure): drop past the limit, or when our volume is full.
pub fn judge(state: &SlotState, limit: Option<u64>, volume_full: bool) -> Verdict {
    let retained = state.retained.unwrap_or(0);
    match (state.exists, limit) {
        (false, _) => Verdict::Keep,
        (true, _) if volume_full => Verdict::Drop { retained, limit: None },
        (true, Some(l)) if retained > l => Verdict::Drop { retained, limit: Some(l) },
        _ => Verdict::Keep,
    }
}

/// Reads the slot's state.
///
/// # Errors
/// The query failed (connection, a standby without `pg_current_wal_lsn()`).
pub fn state(engine: &PostgresEngine, conn: &Conn, slot: &str, cancel: &Cancel) -> anyhow::Result<SlotState> {
    let sql = format!(
        "SELECT json_build_object('exists', count(*) > 0, 'active_pid', max(active_pid), \
         'retained', max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint) \
         FROM pg_replication_slots WHERE slot_name = {}",
        quote_literal(slot)
    );
    let out = engine.query(conn, "postgres", &sql, cancel)?;
    Ok(serde_json::from_str(out.trim())?)
}

/// Drops the slot, terminating its walsender first (a slot in use cannot be dropped).
///
/// # Errors
/// The server refused (the role lacks REPLICATION), or the walsender did not go.
pub fn drop_slot(engine: &PostgresEngine, conn: &Conn, slot: &str, cancel: &Cancel) -> anyhow::Result<()> {
    let name = quote_literal(slot);
    for _ in 0..50 {
        let s = state(engine, conn, slot, cancel)?;
        if !s.exists {
            return Ok(());
        }
        if s.active_pid.is_none() {
            engine.query(conn, "postgres", &format!("SELECT pg_drop_replication_slot({name})"), cancel)?;
            return Ok(());
        }
        let terminate =
            format!("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = {name}");
        engine.query(conn, "postgres", &terminate, cancel)?;
        cancel.sleep(std::time::Duration::from_millis(100))?;
    }
    anyhow::bail!("the replication slot {slot} is still in use after its walsender was terminated")
}

/// Measures the slot and drops it when `judge` says so; returns what it measured and the
/// verdict.
///
/// # Errors
/// As `state` and `drop_slot`.
pub fn guard(
    engine: &PostgresEngine,
    conn: &Conn,
    slot: &str,
    limit: Option<u64>,
    volume_full: bool,
    cancel: &Cancel,
) -> anyhow::Result<(SlotState, Verdict)> {
    let measured = state(engine, conn, slot, cancel)?;
    let verdict = judge(&measured, limit, volume_full);
    if let Verdict::Drop { retained, .. } = verdict {
        tracing::error!(
            slot,
            retained,
            "The archive's replication slot holds back too much WAL; dropping it (a gap in the archive, healed by the next full base backup)."
        );
        drop_slot(engine, conn, slot, cancel)?;
    }
    Ok((measured, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_goes_past_its_limit_or_when_our_volume_is_full() {
        let s = |exists, retained| SlotState { exists, active_pid: None, retained: Some(retained) };
        assert_eq!(judge(&s(true, 10), Some(100), false), Verdict::Keep);
        assert_eq!(judge(&s(true, 101), Some(100), false), Verdict::Drop { retained: 101, limit: Some(100) });
        assert_eq!(judge(&s(true, 101), None, false), Verdict::Keep, "no limit set");
        assert_eq!(judge(&s(true, 5), Some(100), true), Verdict::Drop { retained: 5, limit: None });
        assert_eq!(judge(&s(false, 0), Some(0), true), Verdict::Keep, "nothing to drop");
    }
}
