//! A base backup checked while it streams: `pg_basebackup -Ft -D -` writes one tar, and (from
//! client 15, servers 13+) its `backup_manifest` as the tar's last member. `Checked` passes
//! every byte on to the archive's writer unchanged and, on the way, reads the tar's headers,
//! computes each regular file's CRC32C, and keeps the manifest; `finish` then proves that the
//! manifest's own sha256 is right and that every file it lists arrived with its size and
//! checksum, and nothing else did.
//!
//! The tar framing is read here, not by the `tar` crate's `Archive`: that one pulls from a
//! `Read`, while the stream arrives as writes from the child's pipe
//! (`engine::process::stream_stdout`); each header block is still decoded by `tar::Header`.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Deserialize;
use sha2::Digest;

use super::wal::Lsn;
use crate::catalog::checksum::hex;

/// The member pg_basebackup puts the manifest in.
pub const MEMBER: &str = "backup_manifest";
/// A manifest bigger than this is refused (about a million files).
const MANIFEST_MAX: usize = 256 << 20;
const BLOCK: usize = 512;

/// What a manifest says.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Path → (size, checksum as hex, when the backup has one).
    pub files: HashMap<Vec<u8>, (u64, Option<String>)>,
    /// The WAL the backup needs: (timeline, start, end), oldest first.
    pub wal_ranges: Vec<(u32, Lsn, Lsn)>,
    /// The manifest's own checksum (sha256, hex).
    pub checksum: String,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges")]
    wal_ranges: Vec<RawRange>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

/// Parses a manifest and proves its own checksum: sha256 of everything up to and including
/// the newline before its last line (as `pg_verifybackup` reads it).
///
/// # Errors
/// Not a manifest, a checksum that does not match, or a WAL range that is not an LSN.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let newlines: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect();
    let Some(&covered) = newlines.iter().rev().nth(1) else {
        return Err("the backup manifest is too short".into());
    };
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("the backup manifest does not parse: {e}"))?;
    let actual = hex(&sha2::Sha256::digest(&bytes[..=covered]));
    if !actual.eq_ignore_ascii_case(&raw.checksum) {
        return Err(format!("the backup manifest's checksum is {actual}, it says {}", raw.checksum));
    }
    let mut files = HashMap::with_capacity(raw.files.len());
    for f in raw.files {
        let path = match (f.path, f.encoded_path) {
            (Some(p), _) => p.into_bytes(),
            (None, Some(e)) => unhex(&e).ok_or_else(|| format!("the backup manifest has a bad Encoded-Path {e:?}"))?,
            (None, None) => return Err("the backup manifest lists a file without a path".into()),
        };
        files.insert(path, (f.size, f.checksum));
    }
    let lsn = |t: &str| Lsn::parse(t).ok_or_else(|| format!("the backup manifest has a bad LSN {t:?}"));
    let mut wal_ranges = Vec::new();
    for r in raw.wal_ranges {
        wal_ranges.push((r.timeline, lsn(&r.start)?, lsn(&r.end)?));
    }
    // The manifest lists ranges newest timeline first.
    wal_ranges.sort_by_key(|(_, start, _)| *start);
    if wal_ranges.is_empty() {
        return Err("the backup manifest names no WAL range".into());
    }
    Ok(Manifest { files, wal_ranges, checksum: raw.checksum })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The member being read.
struct Member {
    path: Vec<u8>,
    size: u64,
    seen: u64,
    crc: u32,
    /// Regular files are checked; other entries' bodies are skipped.
    regular: bool,
}

/// A writer that passes everything on to `inner` and checks the tar on the way.
pub struct Checked<W: Write> {
    inner: W,
    header: Vec<u8>,
    /// Bytes left of the current member's body, its padding included.
    body_left: u64,
    member: Option<Member>,
    files: HashMap<Vec<u8>, (u64, u32)>,
    manifest: Vec<u8>,
    end_blocks: u32,
    error: Option<String>,
}

impl<W: Write> Checked<W> {
    pub fn new(inner: W) -> Checked<W> {
        Checked {
            inner,
            header: Vec::with_capacity(BLOCK),
            body_left: 0,
            member: None,
            files: HashMap::new(),
            manifest: Vec::new(),
            end_blocks: 0,
            error: None,
        }
    }

    /// The writer, the manifest (its bytes) and the number of files, once the tar ended
    /// cleanly and every file matched the manifest.
    ///
    /// # Errors
    /// A damaged or cut tar, no manifest, or a file missing, extra or different.
    pub fn finish(self) -> Result<(W, Manifest, Vec<u8>), String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.end_blocks == 0 || self.body_left > 0 || !self.header.is_empty() {
            return Err("the base backup's tar stream ended early".into());
        }
        if self.manifest.is_empty() {
            return Err(format!(
                "the base backup's stream has no {MEMBER} (pg_basebackup 15 or newer puts it there; the server must be 13 or newer)"
            ));
        }
        let manifest = parse(&self.manifest)?;
        for (path, (size, checksum)) in &manifest.files {
            let name = String::from_utf8_lossy(path);
            let Some((got_size, crc)) = self.files.get(path) else {
                return Err(format!("{name} is in the backup manifest but not in the backup"));
            };
            if got_size != size {
                return Err(format!("{name} holds {got_size} bytes in the backup, the manifest says {size}"));
            }
            if let Some(sum) = checksum {
                let (le, be) = (hex(&crc.to_le_bytes()), hex(&crc.to_be_bytes()));
                if !sum.eq_ignore_ascii_case(&le) && !sum.eq_ignore_ascii_case(&be) {
                    return Err(format!("{name}'s CRC32C is {le} in the backup, the manifest says {sum}"));
                }
            }
        }
        if let Some(extra) = self.files.keys().find(|p| !manifest.files.contains_key(*p)) {
            return Err(format!("{} is in the backup but not in its manifest", String::from_utf8_lossy(extra)));
        }
        Ok((self.inner, manifest, self.manifest))
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = usize::try_from(self.body_left).unwrap_or(usize::MAX).min(data.len());
                self.body(&data[..n])?;
                self.body_left -= n as u64;
                data = &data[n..];
                if self.body_left == 0 {
                    self.end_member();
                }
                continue;
            }
            let n = (BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == BLOCK {
                let block = std::mem::take(&mut self.header);
                self.start_member(&block)?;
            }
        }
        Ok(())
    }

    fn start_member(&mut self, block: &[u8]) -> Result<(), String> {
        if block.iter().all(|b| *b == 0) {
            self.end_blocks += 1;
            return Ok(());
        }
        if self.end_blocks > 0 {
            return Err("the base backup's tar stream goes on after its end".into());
        }
        let header = tar::Header::from_byte_slice(block);
        let stored = header.cksum().map_err(|e| format!("a tar header in the base backup is damaged: {e}"))?;
        let computed: u32 =
            block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
        if stored != computed {
            return Err("a tar header in the base backup has a wrong checksum".into());
        }
        let size = header.entry_size().map_err(|e| format!("a tar header in the base backup is damaged: {e}"))?;
        let path = header.path_bytes().into_owned();
        let path = path.strip_prefix(b"./").map(<[u8]>::to_vec).unwrap_or(path);
        let regular = header.entry_type().is_file();
        if regular && self.files.contains_key(&path) {
            return Err(format!("{} is twice in the base backup", String::from_utf8_lossy(&path)));
        }
        self.body_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.member = Some(Member { path, size, seen: 0, crc: 0, regular });
        if self.body_left == 0 {
            self.end_member();
        }
        Ok(())
    }

    fn body(&mut self, data: &[u8]) -> Result<(), String> {
        let Some(m) = self.member.as_mut() else { return Ok(()) };
        let n = usize::try_from(m.size - m.seen).unwrap_or(usize::MAX).min(data.len());
        let content = &data[..n];
        m.seen += n as u64;
        if m.regular && m.path == MEMBER.as_bytes() {
            if self.manifest.len() + content.len() > MANIFEST_MAX {
                return Err(format!("the base backup's {MEMBER} is larger than {MANIFEST_MAX} bytes"));
            }
            self.manifest.extend_from_slice(content);
        } else if m.regular {
            m.crc = crc32c::crc32c_append(m.crc, content);
        }
        Ok(())
    }

    fn end_member(&mut self) {
        if let Some(m) = self.member.take()
            && m.regular
            && m.path != MEMBER.as_bytes()
        {
            self.files.insert(m.path, (m.size, m.crc));
        }
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        if self.error.is_none()
            && let Err(e) = self.feed(buf)
        {
            self.error = Some(e.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
