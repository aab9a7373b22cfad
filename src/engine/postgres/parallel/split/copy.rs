//! COPY data in the splitter: rows passed on in pieces of at most `SEND_BYTES`; a big table's
//! rows move to the idlest worker every `SPLIT_BYTES` while its session has no room for more
//! (`Lanes::has_room`), always between rows (a row may span
//! reads; a line `\\.` ends the block, and is sent as `Piece::CopyEnd`, never as a row: the
//! first bytes of a row that could be that line wait until the row is whole).

use super::super::lanes::{Lanes, Piece};
use super::super::plan::{copy_target, frozen};
use super::spool::{TAG_COPY_END, TAG_ROWS};
use super::{Dest, SEND_BYTES, SPLIT_BYTES, Splitter, write_record};
use crate::stream::scan::Scanner;

/// COPY text a table's first block must reach for the block to load in the transaction that
/// truncates the table (`fresh`); a smaller one loads with a plain COPY. Each truncating commit
/// flushes the WAL at once (the table's old file is removed at commit): one flush per table of
/// a megabyte or more is nothing beside its load, one per table of a schema of thousands of
/// small ones is not.
const FRESH_BYTES: usize = 1 << 20;

pub(super) struct CopyBlock {
    pub(super) dest: Dest,
    /// The table (as the COPY names it) when its pieces are recorded for its builds.
    pub(super) target: Option<Vec<u8>>,
    pub(super) statement: Vec<u8>,
    pub(super) statement_line: u64,
    pub(super) splittable: bool,
    /// The block runs in the transaction that truncated its table (`fresh`): commit after its
    /// `\.` (or at the end of its first piece).
    pub(super) in_transaction: bool,
    /// The statement waits for the first rows (`FRESH_BYTES`): a table the dump made, which
    /// may load in the transaction that truncates it (`fresh`); the file line of those rows.
    pub(super) deferred: bool,
    pub(super) deferred_from: Option<u64>,
    pub(super) piece: u64,
    /// The current row's first bytes and length (a row may span reads).
    pub(super) row_start: Vec<u8>,
    pub(super) row_len: usize,
    /// The row so far (at most 3 bytes, all in `row_start`) could be the end line: not yet sent.
    pub(super) held: bool,
}

impl<L: Lanes> Splitter<'_, L> {
    /// COPY rows: passed on in pieces; a big table's rows move to another worker between rows.
    pub(super) fn copy_data(&mut self, buf: &[u8]) -> anyhow::Result<usize> {
        let Some(mut copy) = self.copy.take() else { return Ok(0) };
        let mut start = 0;
        let mut used = buf.len();
        let mut ended = false;
        let mut rows_from = self.line;
        while start < buf.len() {
            let Some(pos) = memchr::memchr(b'\n', &buf[start..]) else {
                // The rest of a long row.
                self.row_bytes(&mut copy, &buf[start..], false);
                break;
            };
            let end = start + pos + 1;
            let is_end = self.row_bytes(&mut copy, &buf[start..end], true);
            copy.piece += (end - start) as u64;
            self.line += 1;
            start = end;
            if is_end {
                used = end;
                ended = true;
                break;
            }
            let full = copy.splittable && copy.piece >= SPLIT_BYTES;
            if self.out.len() >= SEND_BYTES || full {
                self.flush_copy(&mut copy, rows_from, false)?;
                rows_from = self.line;
                if full {
                    if self.cut_now(&copy) {
                        self.next_piece(&mut copy)?;
                    } else {
                        // The session takes these rows too: asked again after as many more.
                        copy.piece = 0;
                    }
                }
            }
        }
        self.scanner.feed(&buf[..used]);
        self.flush_copy(&mut copy, rows_from, ended)?;
        if ended {
            match copy.dest {
                Dest::Lane(lane) => self.lanes.send(lane, Piece::CopyEnd, Some(self.line - 1))?,
                Dest::Spool(spool) => write_record(&mut self.spools[spool], TAG_COPY_END, self.line - 1, b"")?,
            }
            if let (true, Dest::Lane(lane)) = (copy.in_transaction, copy.dest) {
                self.lanes.send(lane, Piece::Statement(b"COMMIT;\n"), Some(self.line - 1))?;
            }
            if let Dest::Lane(lane) = copy.dest
                && lane > 0
            {
                self.piece_done(&copy, lane)?;
                self.open_unit = None;
            }
        } else {
            self.copy = Some(copy);
        }
        Ok(used)
    }

    /// Bytes of the current row (`complete`: up to its newline); true when the row is the end
    /// line. What may still turn out to be the end line is held back, the rest goes to `out`.
    fn row_bytes(&mut self, copy: &mut CopyBlock, bytes: &[u8], complete: bool) -> bool {
        let before = copy.row_len;
        keep_start(copy, bytes);
        copy.row_len += bytes.len();
        let start = copy.row_start.as_slice();
        let could_end = copy.row_len <= 4 && (b"\\.\n".starts_with(start) || b"\\.\r\n".starts_with(start));
        let is_end = complete && could_end && (start == b"\\.\n" || start == b"\\.\r\n");
        if !is_end && (complete || !could_end) {
            if copy.held {
                self.out.extend_from_slice(&copy.row_start[..before]);
                copy.held = false;
            }
            self.out.extend_from_slice(bytes);
        } else if !complete {
            copy.held = true;
        }
        if complete {
            copy.row_start.clear();
            copy.row_len = 0;
            copy.held = false;
        }
        is_end
    }

    /// Sends the rows gathered in `out` (`ended`: the block's end line was read); a deferred
    /// statement goes first, once the rows show which it is.
    fn flush_copy(&mut self, copy: &mut CopyBlock, mut rows_from: u64, ended: bool) -> anyhow::Result<()> {
        // What was held back goes in pieces of `SEND_BYTES` like the rest.
        let mut piece = usize::MAX;
        if copy.deferred {
            let first = *copy.deferred_from.get_or_insert(rows_from);
            if !ended && self.out.len() < FRESH_BYTES {
                return Ok(());
            }
            self.start_copy(copy, self.out.len() >= FRESH_BYTES)?;
            rows_from = first;
            piece = SEND_BYTES;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = match copy.dest {
            Dest::Lane(lane) => self.send_rows(lane, &out, rows_from, piece),
            Dest::Spool(spool) => write_record(&mut self.spools[spool], TAG_ROWS, rows_from, &out),
        };
        self.out = out;
        self.out.clear();
        r
    }

    /// Rows to `lane` in pieces of at most `piece` bytes, each cut after a row where one ends
    /// in it, and each with the file line it starts at.
    fn send_rows(&mut self, lane: usize, rows: &[u8], mut line: u64, piece: usize) -> anyhow::Result<()> {
        let mut rest = rows;
        while !rest.is_empty() {
            let mut n = rest.len().min(piece);
            if n < rest.len()
                && let Some(end) = memchr::memrchr(b'\n', &rest[..n])
            {
                n = end + 1;
            }
            self.lanes.send(lane, Piece::Rows(&rest[..n]), Some(line))?;
            line += memchr::memchr_iter(b'\n', &rest[..n]).count() as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Sends a deferred COPY statement: in a transaction that truncates its table first
    /// (`truncate`, rows frozen), or plain.
    fn start_copy(&mut self, copy: &mut CopyBlock, truncate: bool) -> anyhow::Result<()> {
        copy.deferred = false;
        let Dest::Lane(lane) = copy.dest else { return Ok(()) };
        let line = Some(copy.statement_line);
        self.sync(lane)?;
        if truncate {
            let table = copy_target(&copy.statement).to_vec();
            let statement = [b"TRUNCATE ONLY ".as_slice(), &table, b";\n"].concat();
            self.lanes.send(lane, Piece::Statement(b"BEGIN;\n"), line)?;
            self.lanes.send(lane, Piece::Statement(&statement), line)?;
            self.lanes.send(lane, Piece::Statement(&frozen(&copy.statement)), line)?;
            self.fresh.taken.insert(table, lane);
            copy.in_transaction = true;
        } else {
            self.lanes.send(lane, Piece::Statement(&copy.statement), line)?;
        }
        Ok(())
    }

    /// Whether a big table's rows move on to another session now: only when the session
    /// loading them cannot hold more without the splitter waiting (one session per table
    /// costs the server less, and lets the next table start in another session meanwhile).
    fn cut_now(&self, copy: &CopyBlock) -> bool {
        !matches!(copy.dest, Dest::Lane(lane) if self.lanes.has_room(lane))
    }

    /// Ends the current piece of a table's rows and opens the next in the idlest worker.
    fn next_piece(&mut self, copy: &mut CopyBlock) -> anyhow::Result<()> {
        let Dest::Lane(old) = copy.dest else { return Ok(()) };
        // psql names a failed COPY by its `\.` line: this one stands for the piece's last row.
        self.lanes.send(old, Piece::CopyEnd, Some(self.line - 1))?;
        if copy.in_transaction {
            // The truncating transaction ends with its piece: the other pieces wait for its
            // lock, and load as plain COPYs.
            self.lanes.send(old, Piece::Statement(b"COMMIT;\n"), Some(self.line - 1))?;
            copy.in_transaction = false;
        }
        self.piece_done(copy, old)?;
        let lane = self.lanes.idlest();
        self.sync(lane)?;
        // The repeated COPY line maps to the original: an error in it is the original's.
        self.lanes.send(lane, Piece::Statement(&copy.statement), Some(copy.statement_line))?;
        copy.dest = Dest::Lane(lane);
        copy.piece = 0;
        self.open_unit = Some(lane);
        self.plan.pieces += 1;
        Ok(())
    }

    /// The end of a piece of a table's rows on `lane`: recorded for the table's builds.
    fn piece_done(&mut self, copy: &CopyBlock, lane: usize) -> anyhow::Result<()> {
        let unit = self.end_unit(lane)?;
        if let Some(table) = &copy.target {
            let pieces = self.loaded.entry(table.clone()).or_default();
            if pieces.is_empty() {
                self.loaded_order.push(table.clone());
            }
            pieces.push((lane, unit));
        }
        Ok(())
    }
}

fn keep_start(copy: &mut CopyBlock, bytes: &[u8]) {
    let room = 4usize.saturating_sub(copy.row_start.len());
    copy.row_start.extend_from_slice(&bytes[..bytes.len().min(room)]);
}
