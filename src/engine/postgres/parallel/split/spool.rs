//! The post-data spool: what runs after the parallel part (partition index attachments,
//! foreign keys, everything else), kept in temporary files in dump order (bounded memory) as
//! records of a tag (a setting, a statement, COPY rows, a COPY's end), the file line and the
//! bytes; replayed group by group, each after the one before has finished.

use std::io::{BufReader, BufWriter, Read, Seek, Write};

use anyhow::Context;

use super::super::lanes::{Lanes, Piece};
use super::super::plan::state_key;
use super::Splitter;

pub(super) const TAG_SETTING: u8 = b'S';
pub(super) const TAG_STATEMENT: u8 = b'T';
pub(super) const TAG_ROWS: u8 = b'R';
pub(super) const TAG_COPY_END: u8 = b'E';

/// The post-data groups kept for later: attachments, foreign keys, the rest.
pub(super) const ATTACH: usize = 0;
pub(super) const FOREIGN: usize = 1;
pub(super) const AFTER: usize = 2;

impl<L: Lanes> Splitter<'_, L> {
    /// Post-data's kept groups, each after the one before has finished.
    pub(super) fn replay_post(&mut self) -> anyhow::Result<()> {
        self.barrier()?;
        for group in [ATTACH, FOREIGN, AFTER] {
            let spool = std::mem::replace(&mut self.spools[group], BufWriter::new(tempfile::tempfile()?));
            let mut file = spool.into_inner().map_err(|e| e.into_error()).context("writing the post-data spool")?;
            file.rewind()?;
            self.state = self.post_state.clone();
            let mut reader = BufReader::new(file);
            // COPY rows and their end go where their statement went.
            let mut copy_lane = None;
            while let Some((tag, line, text)) = read_record(&mut reader)? {
                let piece = match tag {
                    TAG_SETTING => {
                        if let Some(key) = state_key(&text) {
                            self.state.retain(|(k, _, _)| *k != key);
                            self.state.push((key, text, line));
                        }
                        continue;
                    }
                    TAG_ROWS => Piece::Rows(&text),
                    TAG_COPY_END => Piece::CopyEnd,
                    _ => Piece::Statement(&text),
                };
                let lane = match (copy_lane, piece) {
                    (Some(lane), Piece::Rows(_) | Piece::CopyEnd) => lane,
                    _ if group == FOREIGN => self.lanes.idlest(),
                    _ => 0,
                };
                if group == FOREIGN && text.starts_with(b"ALTER") {
                    self.plan.foreign_keys += 1;
                }
                if !matches!(piece, Piece::Rows(_) | Piece::CopyEnd) {
                    self.sync(lane)?;
                }
                copy_lane = Some(lane);
                self.lanes.send(lane, piece, Some(line))?;
                if lane > 0 && !matches!(piece, Piece::Rows(_)) {
                    self.end_unit(lane)?;
                }
            }
            self.barrier()?;
        }
        Ok(())
    }
}

pub(super) fn write_record(w: &mut BufWriter<std::fs::File>, tag: u8, line: u64, text: &[u8]) -> anyhow::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(&line.to_le_bytes())?;
    w.write_all(&(text.len() as u64).to_le_bytes())?;
    w.write_all(text).context("writing the post-data spool (TMPDIR full?)")
}

fn read_record(r: &mut impl Read) -> anyhow::Result<Option<(u8, u64, Vec<u8>)>> {
    let mut tag = [0u8; 1];
    if r.read(&mut tag)? == 0 {
        return Ok(None);
    }
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    let line = u64::from_le_bytes(n);
    r.read_exact(&mut n)?;
    let mut text = vec![0u8; usize::try_from(u64::from_le_bytes(n))?];
    r.read_exact(&mut text)?;
    Ok(Some((tag[0], line, text)))
}
