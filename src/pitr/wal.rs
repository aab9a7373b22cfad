//! WAL names and positions, as PostgreSQL writes them: an LSN is a 64-bit byte position
//! (`16/B374D848`); a segment is `wal_segment_size` bytes of one timeline, named
//! `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment number split at 4 GiB, in hex); a
//! timeline's `.history` file lists its ancestors and where each one switched. Pure functions,
//! no I/O.

use std::fmt;

/// The default `wal_segment_size` (16 MiB; `initdb --wal-segsize` sets 1 MiB to 1 GiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `16/B374D848` (what `pg_current_wal_lsn()` prints).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let (hi, lo) = (u32::from_str_radix(hi, 16).ok()?, u32::from_str_radix(lo, 16).ok()?);
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// The number of the segment holding this position.
    pub fn segment(self, size: u64) -> u64 {
        self.0 / size.max(1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// One segment of one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// Its file name for segments of `size` bytes.
    pub fn name(self, size: u64) -> String {
        let per_id = per_xlog_id(size);
        format!("{:08X}{:08X}{:08X}", self.timeline, self.number / per_id, self.number % per_id)
    }

    /// The segment a file name names (`None` for anything else: `.partial`, `.history`,
    /// a name whose second half is out of range for `size`).
    pub fn parse(name: &str, size: u64) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let part = |i: usize| u64::from_str_radix(&name[i..i + 8], 16).ok();
        let (timeline, id, seg) = (part(0)?, part(8)?, part(16)?);
        let per_id = per_xlog_id(size);
        (timeline > 0 && seg < per_id).then(|| Segment { timeline: timeline as u32, number: id * per_id + seg })
    }

    /// Where it starts.
    pub fn start(self, size: u64) -> Lsn {
        Lsn(self.number.saturating_mul(size))
    }

    /// Where the next one starts.
    pub fn end(self, size: u64) -> Lsn {
        Lsn(self.number.saturating_add(1).saturating_mul(size))
    }
}

/// Segments per 4 GiB (`XLogSegmentsPerXLogId`); at least one, so that a size from a damaged
/// index (PostgreSQL's are 1 MiB to 1 GiB) cannot divide by zero.
fn per_xlog_id(size: u64) -> u64 {
    ((1u64 << 32) / size.max(1)).max(1)
}

/// The timeline a `.history` file is for (`00000002.history` → 2).
pub fn history_timeline(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".history")?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten().filter(|t| *t > 1)
}

/// Where a timeline ended and its child began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// The ancestor timeline.
    pub timeline: u32,
    /// The first position of its child (the ancestor's WAL is used up to here).
    pub at: Lsn,
}

/// A `.history` file's ancestors, oldest first (`1<TAB>0/3000158<TAB>reason` per line;
/// comments and blank lines skipped).
///
/// # Errors
/// A line that is neither: the file is not a history file.
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let timeline = fields.next().and_then(|t| t.parse::<u32>().ok());
        let at = fields.next().and_then(Lsn::parse);
        match (timeline, at) {
            (Some(timeline), Some(at)) => out.push(Switch { timeline, at }),
            _ => return Err(format!("line {}: not a timeline history line: {line:?}", n + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_and_print_as_postgres_does() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_names_match_postgres_for_every_size() {
        // pg_walfile_name('16/B374D848') on timeline 1 with 16 MiB segments.
        let s = Segment { timeline: 1, number: Lsn::parse("16/B374D848").unwrap().segment(DEFAULT_SEGMENT_SIZE) };
        assert_eq!(s.name(DEFAULT_SEGMENT_SIZE), "0000000100000016000000B3");
        assert_eq!(Segment::parse("0000000100000016000000B3", DEFAULT_SEGMENT_SIZE), Some(s));
        // 1 MiB segments (initdb --wal-segsize=1): 4096 per 4 GiB.
        let mib = 1 << 20;
        let s = Segment { timeline: 3, number: Lsn::parse("1/00A00000").unwrap().segment(mib) };
        assert_eq!(s.name(mib), "00000003000000010000000A");
        assert_eq!(s.start(mib), Lsn::parse("1/A00000").unwrap());
        assert_eq!(s.end(mib), Lsn::parse("1/B00000").unwrap());
        // A size no server has (a damaged index) names and parses without a panic.
        for size in [0, u64::MAX] {
            let s = Segment { timeline: 1, number: 7 };
            assert_eq!(Segment::parse(&s.name(size), size), Some(s), "{size}");
        }
        // Not segments: a partial, a history file, out of range for 16 MiB, timeline 0.
        for name in [
            "0000000100000016000000B3.partial",
            "00000002.history",
            "000000010000001600000100",
            "000000000000001600000001",
            "00000001000000160000000G",
        ] {
            assert_eq!(Segment::parse(name, DEFAULT_SEGMENT_SIZE), None, "{name}");
        }
    }

    #[test]
    fn history_files_name_their_ancestors() {
        assert_eq!(history_timeline("0000000A.history"), Some(10));
        assert_eq!(history_timeline("00000001.history"), None, "timeline 1 has no history");
        assert_eq!(history_timeline("0000000A.partial"), None);
        let h =
            parse_history("1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point\n").unwrap();
        assert_eq!(
            h,
            [Switch { timeline: 1, at: Lsn::parse("0/3000158").unwrap() }, Switch { timeline: 2, at: Lsn(0x500_0000) }]
        );
        assert!(parse_history("1\tnot-an-lsn\n").unwrap_err().contains("line 1"));
    }
}
