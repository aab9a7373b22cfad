//! COPY data in the splitter: rows passed on in pieces of at most `SEND_BYTES`; a big table's
//! rows move to the idlest worker every `SPLIT_BYTES`, always between rows (a row may span
//! reads; a line `\\.` ends the block).

use super::{Dest, Lanes, SEND_BYTES, SPLIT_BYTES, Splitter, write_record};
use crate::stream::scan::Scanner;

pub(super) struct CopyBlock {
    pub(super) dest: Dest,
    pub(super) statement: Vec<u8>,
    pub(super) statement_line: u64,
    pub(super) splittable: bool,
    /// The block runs in its own transaction (`skip_wal`): commit after its `\.`.
    pub(super) in_transaction: bool,
    pub(super) piece: u64,
    /// The current row's first bytes and length (a row may span reads).
    pub(super) row_start: Vec<u8>,
    pub(super) row_len: usize,
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
                keep_start(&mut copy, &buf[start..]);
                copy.row_len += buf.len() - start;
                self.out.extend_from_slice(&buf[start..]);
                break;
            };
            let end = start + pos + 1;
            keep_start(&mut copy, &buf[start..end]);
            copy.row_len += end - start;
            let is_end = (copy.row_len, copy.row_start.as_slice()) == (3, b"\\.\n".as_slice())
                || (copy.row_len, copy.row_start.as_slice()) == (4, b"\\.\r\n".as_slice());
            copy.row_start.clear();
            copy.row_len = 0;
            self.out.extend_from_slice(&buf[start..end]);
            copy.piece += (end - start) as u64;
            self.line += 1;
            start = end;
            if is_end {
                used = end;
                ended = true;
                break;
            }
            if self.out.len() >= SEND_BYTES || (copy.splittable && copy.piece >= SPLIT_BYTES) {
                self.flush_copy(&copy, rows_from)?;
                rows_from = self.line;
                if copy.splittable && copy.piece >= SPLIT_BYTES {
                    self.next_piece(&mut copy)?;
                }
            }
        }
        self.scanner.feed(&buf[..used]);
        self.flush_copy(&copy, rows_from)?;
        if ended {
            if let (true, Dest::Lane(lane)) = (copy.in_transaction, copy.dest) {
                self.lanes.send(lane, b"COMMIT;\n", Some(self.line - 1))?;
            }
            if let Dest::Lane(lane) = copy.dest
                && lane > 0
            {
                self.lanes.end_unit(lane)?;
                self.open_unit = None;
            }
        } else {
            self.copy = Some(copy);
        }
        Ok(used)
    }

    fn flush_copy(&mut self, copy: &CopyBlock, rows_from: u64) -> anyhow::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = match copy.dest {
            Dest::Lane(lane) => self.lanes.send(lane, &out, Some(rows_from)),
            Dest::Spool(spool) => write_record(&mut self.spools[spool], b'T', rows_from, &out),
        };
        self.out = out;
        self.out.clear();
        r
    }

    /// Ends the current piece of a table's rows and opens the next in the idlest worker.
    fn next_piece(&mut self, copy: &mut CopyBlock) -> anyhow::Result<()> {
        let Dest::Lane(old) = copy.dest else { return Ok(()) };
        // psql names a failed COPY by its `\.` line: this one stands for the piece's last row.
        self.lanes.send(old, b"\\.\n", Some(self.line - 1))?;
        self.lanes.end_unit(old)?;
        let lane = self.lanes.idlest();
        self.sync(lane)?;
        // The repeated COPY line maps to the original: an error in it is the original's.
        self.lanes.send(lane, &copy.statement, Some(copy.statement_line))?;
        copy.dest = Dest::Lane(lane);
        copy.piece = 0;
        self.open_unit = Some(lane);
        self.plan.pieces += 1;
        Ok(())
    }
}

/// The table a `COPY <name> (...) FROM stdin;` loads, as written (quotes kept).
pub(super) fn copy_target(statement: &[u8]) -> &[u8] {
    let text = statement.trim_ascii_start();
    let text = text.strip_prefix(b"COPY ").unwrap_or(text);
    let mut quoted = false;
    let end = text.iter().position(|&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        !quoted && (b == b' ' || b == b'(')
    });
    &text[..end.unwrap_or(text.len())]
}

fn keep_start(copy: &mut CopyBlock, bytes: &[u8]) {
    let room = 4usize.saturating_sub(copy.row_start.len());
    copy.row_start.extend_from_slice(&bytes[..bytes.len().min(room)]);
}
