//! When each session may run what it is sent: barriers, units of work, a build's waits for
//! the sessions that loaded its table, and the settings each session has.

use super::super::lanes::{Lanes, Piece, TableLoad};
use super::super::plan::build_target;
use super::{Phase, Splitter};

impl<L: Lanes> Splitter<'_, L> {
    pub(super) fn enter(&mut self, phase: Phase) -> anyhow::Result<()> {
        // The data needs every table; post-data waits only where a build needs it.
        if (self.phase, phase) != (Phase::Data, Phase::Post) {
            self.barrier()?;
        } else if !self.untracked_data {
            self.plan.rows_final_after_data = true;
            let tables: Vec<TableLoad> = self
                .loaded_order
                .iter()
                .map(|t| (t.clone(), self.loaded.get(t).cloned().unwrap_or_default()))
                .collect();
            self.lanes.data_sent(&tables, self.plan.replies_exact);
        }
        if phase == Phase::Post {
            self.post_state = self.state.clone();
        }
        self.phase = phase;
        Ok(())
    }

    pub(super) fn barrier(&mut self) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        self.lanes.barrier()?;
        tracing::debug!(phase = ?self.phase, line = self.line, waited_ms = start.elapsed().as_millis() as u64, "Parallel load: every session caught up.");
        self.synced.iter_mut().for_each(|s| *s = None);
        if matches!(self.phase, Phase::Post | Phase::Serial) {
            self.data_done = true;
        }
        Ok(())
    }

    /// The rest of the load runs in the serial session, after everything before has finished.
    pub(super) fn serial_from(&mut self, here: u64, why: String) -> anyhow::Result<()> {
        if self.phase == Phase::Serial {
            return Ok(());
        }
        self.close_unit()?;
        if self.phase == Phase::Post {
            self.replay_post()?;
        }
        self.barrier()?;
        self.phase = Phase::Serial;
        self.plan.rows_final_after_data = false;
        self.plan.serial_from = Some((here, why));
        Ok(())
    }

    pub(super) fn close_unit(&mut self) -> anyhow::Result<()> {
        if let Some(lane) = self.open_unit.take() {
            self.end_unit(lane)?;
        }
        Ok(())
    }

    /// Ends a unit of work on `lane`; returns its number there.
    pub(super) fn end_unit(&mut self, lane: usize) -> anyhow::Result<u64> {
        self.lanes.end_unit(lane)?;
        self.units[lane] += 1;
        Ok(self.units[lane])
    }

    /// The lane for an index or constraint build: the idlest, told to wait for each other lane
    /// that loaded rows of its table (a lane runs its work in order). A table not known from
    /// its COPY lines (no rows, rows as INSERTs, a materialized view, a partitioned parent)
    /// waits for every session instead, once.
    pub(super) fn place_build(&mut self, statement: &[u8]) -> anyhow::Result<usize> {
        let lane = self.lanes.idlest();
        let pieces = match build_target(statement) {
            Some(table) if !self.untracked_data => self.loaded.get(table).cloned(),
            _ => None,
        };
        self.lanes.weigh_build(lane, pieces.as_deref().unwrap_or_default());
        if self.data_done {
            return Ok(lane);
        }
        if let Some(pieces) = pieces {
            let mut waits: Vec<(usize, u64)> = Vec::new();
            for (other, unit) in pieces.into_iter().filter(|(other, _)| *other != lane) {
                match waits.iter_mut().find(|(o, _)| *o == other) {
                    Some(w) => w.1 = w.1.max(unit),
                    None => waits.push((other, unit)),
                }
            }
            let mut waited = true;
            for (other, unit) in waits {
                waited = waited && self.lanes.after(lane, other, unit)?;
            }
            if waited {
                return Ok(lane);
            }
        }
        self.barrier()?;
        Ok(self.lanes.idlest())
    }

    /// Starts `lane`'s session with the dump's `\restrict` key and brings its settings up to date.
    pub(super) fn sync(&mut self, lane: usize) -> anyhow::Result<()> {
        if self.synced[lane].is_none() {
            if let Some(r) = self.restrict.clone() {
                self.lanes.send(lane, Piece::Meta(&r), None)?;
            }
            self.synced[lane] = Some(Vec::new());
        }
        let have = self.synced[lane].take().unwrap_or_default();
        let mut now = have.clone();
        for setting in &self.state {
            if !have.iter().any(|h| h.0 == setting.0 && h.1 == setting.1) {
                self.lanes.send(lane, Piece::Statement(&setting.1), Some(setting.2))?;
                now.retain(|h| h.0 != setting.0);
                now.push(setting.clone());
            }
        }
        self.synced[lane] = Some(now);
        Ok(())
    }
}
