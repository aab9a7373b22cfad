//! What the splitter sends and where: the pieces of a plain dump and the `Lanes` that run them
//! (`sessions::PsqlLanes`, `wire::WireLanes`, the tests' recorder), and what both kinds of
//! session share: which worker is idlest, a session's progress, and the error a stopped load
//! reports.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::engine::load::{SharedErrors, snapshot};
use crate::system::cancel::{Cancel, Interrupted};

/// What the splitter sends: the stream cut where psql would cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One SQL statement, with the comments and blank lines around it (whole lines, except
    /// where a line holds several statements).
    Statement(&'a [u8]),
    /// COPY data (whole rows, except where a long row is cut across pieces).
    Rows(&'a [u8]),
    /// The end of a COPY's data (the dump's `\.` line).
    CopyEnd,
    /// A psql meta-command line (`\restrict KEY`, or one the loader must refuse).
    Meta(&'a [u8]),
}

impl Piece<'_> {
    /// The piece as psql reads it.
    pub fn text(&self) -> &[u8] {
        match self {
            Piece::Statement(t) | Piece::Rows(t) | Piece::Meta(t) => t,
            Piece::CopyEnd => b"\\.\n",
        }
    }
}

/// The server's replies to each table's COPYs (the table as its COPY names it): the rows it
/// stored, summed over the table's COPYs; `None` once one of them failed.
pub type Replies = std::sync::Arc<Mutex<std::collections::HashMap<Vec<u8>, Option<u64>>>>;

/// Adds one COPY's reply (`None`: it failed, or said no number) to `table`'s.
pub fn add_reply(replies: &Replies, table: &[u8], rows: Option<u64>) {
    let mut map = replies.lock().unwrap_or_else(PoisonError::into_inner);
    let sum = map.entry(table.to_vec()).or_insert(Some(0));
    *sum = sum.zip(rows).and_then(|(a, b)| a.checked_add(b));
}

/// A table (as its COPY names it) and the lanes and units that load its rows.
pub type TableLoad = (Vec<u8>, Vec<(usize, u64)>);

/// Where the splitter sends text: lane 0 is the serial session, 1..=workers the parallel ones.
pub trait Lanes {
    fn workers(&self) -> usize;
    /// Sends `piece` to `lane`; `file_line` is the line of the file its first line comes from
    /// (`None`: text the loader wrote).
    fn send(&mut self, lane: usize, piece: Piece<'_>, file_line: Option<u64>) -> anyhow::Result<()>;
    /// The end of one unit of work on `lane` (it is sent on now, and counted as unfinished
    /// until the session reaches it).
    fn end_unit(&mut self, lane: usize) -> anyhow::Result<()>;
    /// Whether `lane` takes more rows now without the splitter waiting (rows queued in
    /// memory or spilled to disk): a big table is then not cut into pieces for other sessions.
    fn has_room(&self, _lane: usize) -> bool {
        false
    }
    /// What `lane` is sent next runs only once `other` has reached the end of its `unit`th
    /// unit (counted from 1 over the whole load). False when these lanes cannot wait on each
    /// other: the splitter then waits for every session instead.
    fn after(&mut self, _lane: usize, _other: usize, _unit: u64) -> anyhow::Result<bool> {
        Ok(false)
    }
    /// Every table's rows have been sent: each table (as its COPY names it) with the lanes and
    /// units that load it, in dump order, for row counts that run as soon as they are in.
    /// `replies_exact`: nothing before the data can make a table's rows differ from what the
    /// server's replies to its COPYs say (`plan::keeps_replies`).
    fn data_sent(&mut self, _tables: &[TableLoad], _replies_exact: bool) {}
    /// The build just sent to `lane` reads the rows of these pieces (lane, unit): counted as
    /// work there, so the next choice of `idlest` knows the lane is busy for a while.
    fn weigh_build(&mut self, _lane: usize, _pieces: &[(usize, u64)]) {}
    /// The worker with the least unfinished work.
    fn idlest(&self) -> usize;
    /// Waits until every session has run everything sent to it; later sends start new ones.
    fn barrier(&mut self) -> anyhow::Result<()>;
}

/// How many units a session has finished: read by the splitter, awaited by other sessions.
#[derive(Default)]
pub struct Progress {
    done: Mutex<u64>,
    reached: Condvar,
}

impl Progress {
    pub fn get(&self) -> u64 {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn advance(&self) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.reached.notify_all();
    }

    /// Waits until `unit` units are done, or the load is cancelled (a failed session cancels
    /// it, so a wait never outlives the session it waits for).
    pub fn wait(&self, unit: u64, cancel: &Cancel) -> Result<(), Interrupted> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while *done < unit {
            cancel.check()?;
            done =
                self.reached.wait_timeout(done, Duration::from_millis(100)).unwrap_or_else(PoisonError::into_inner).0;
        }
        Ok(())
    }
}

/// A lane's work in bytes, unit by unit: what it was given (text sent, and for a build a share
/// of its table's rows) and that count at the end of each unit. What a lane has not finished
/// includes the unit its server is still working through, whose bytes have left the queue: a
/// large COPY's last rows are sent seconds before the server is through them.
#[derive(Default)]
pub struct Work {
    given: u64,
    unit_ends: Vec<u64>,
}

impl Work {
    pub fn add(&mut self, bytes: u64) {
        self.given = self.given.saturating_add(bytes);
    }

    pub fn end_unit(&mut self) {
        self.unit_ends.push(self.given);
    }

    /// The units ended.
    pub fn units(&self) -> u64 {
        self.unit_ends.len() as u64
    }

    /// The bytes of the `unit`th unit (counted from 1); 0 for one not ended.
    pub fn unit(&self, unit: u64) -> u64 {
        let Some(i) = usize::try_from(unit).ok().and_then(|u| u.checked_sub(1)) else { return 0 };
        let before = i.checked_sub(1).and_then(|b| self.unit_ends.get(b)).copied().unwrap_or(0);
        self.unit_ends.get(i).map_or(0, |end| end.saturating_sub(before))
    }

    /// The bytes not finished once `done` units are, the open unit's included.
    pub fn unfinished(&self, done: u64) -> u64 {
        let done = usize::try_from(done).unwrap_or(usize::MAX).min(self.unit_ends.len());
        let finished = done.checked_sub(1).and_then(|i| self.unit_ends.get(i)).copied().unwrap_or(0);
        self.given.saturating_sub(finished)
    }
}

/// The worker (1..=`workers`) with the least unfinished work, as `backlog` orders it; a lane
/// without a session has none. 0 when there are no workers.
pub fn idlest(workers: usize, backlog: impl Fn(usize) -> Option<(u64, u64)>) -> usize {
    (1..=workers).min_by_key(|&lane| backlog(lane).unwrap_or((0, 0))).unwrap_or(0)
}

/// The error of a load that stopped: the first SQL error any session hit, else an
/// interruption (a sibling's failure or the caller's cancellation).
pub fn stopped(tally: &SharedErrors) -> anyhow::Error {
    match snapshot(tally).first.first() {
        Some(first) => anyhow::anyhow!("a session of the load stopped at an SQL error: {first}"),
        None => anyhow::Error::new(Interrupted).context("the load was stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_is_busy_until_its_server_is_through_the_unit() {
        let mut w = Work::default();
        w.add(500); // a COPY's rows, all sent
        w.end_unit();
        w.add(10); // a statement
        w.end_unit();
        w.add(7); // an open unit
        assert_eq!(w.unfinished(0), 517, "the COPY counts until the server has finished it");
        assert_eq!(w.unfinished(1), 17);
        assert_eq!(w.unfinished(2), 7);
        assert_eq!(w.unfinished(99), 7, "more units done than ended cannot hide the open one");
        assert_eq!((w.unit(1), w.unit(2), w.unit(3), w.unit(0)), (500, 10, 0, 0));
        assert_eq!(w.units(), 2);
    }

    #[test]
    fn the_idlest_lane_has_the_least_work_left() {
        // Lane 1: a long COPY in progress (nothing queued); lane 2: two short statements.
        let backlog = |lane: usize| match lane {
            1 => Some((507_000_000, 1)),
            2 => Some((170, 2)),
            _ => None,
        };
        assert_eq!(idlest(2, backlog), 2);
        assert_eq!(idlest(3, backlog), 3, "a lane without a session has nothing to do");
        assert_eq!(idlest(0, backlog), 0);
    }
}
