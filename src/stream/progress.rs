//! Progress of a long read (restore, verify: bytes of the compressed file consumed, out of its
//! size) or dump (backup: uncompressed bytes dumped, against the previous backup's when
//! known, with an ETA), and the rate. A live line on a terminal (stderr, where it is drawn;
//! nothing is drawn into a file or a pipe); a log line every 30 s otherwise.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::human;

/// Counts bytes read through it.
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts bytes written through it.
pub struct CountingWriter<'w> {
    inner: &'w mut dyn Write,
    count: Arc<AtomicU64>,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One progress line: `restoring: 1.2 GiB of 5.0 GiB (24%), 85 MiB/s` or, for a dump,
/// `db: 1.2 GiB dumped of ~5.0 GiB (24%), 85 MiB/s, 14s elapsed, about 45s left`.
pub fn describe(label: &str, read: u64, total: Option<u64>, elapsed: Duration, dump: bool) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = read as f64 / secs;
    let rate_text = human::bytes(rate as u64);
    match (dump, total) {
        (false, total) => {
            let total = total.unwrap_or(0);
            let pct = (read * 100).checked_div(total).unwrap_or(0);
            format!("{label}: {} of {} ({pct}%), {rate_text}/s", human::bytes(read), human::bytes(total))
        }
        (true, Some(total)) if total > 0 => {
            let pct = (read * 100 / total).min(99);
            let left = if read < total && rate > 0.0 {
                format!("about {} left", human::age(Duration::from_secs_f64((total - read) as f64 / rate)))
            } else {
                "nearly done".into()
            };
            format!(
                "{label}: {} dumped of ~{} ({pct}%), {rate_text}/s, {} elapsed, {left}",
                human::bytes(read),
                human::bytes(total),
                human::age(elapsed)
            )
        }
        (true, _) => format!("{label}: {} dumped, {rate_text}/s, {} elapsed", human::bytes(read), human::age(elapsed)),
    }
}

/// Reports progress from a background thread until dropped.
#[derive(Debug)]
pub struct Meter {
    count: Arc<AtomicU64>,
    /// Dropped to stop the thread at once (it waits on the channel, not in a sleep).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Meter {
    /// Starts reporting `label` progress against `total` bytes.
    pub fn start(label: &str, total: u64) -> Meter {
        Self::start_with(label, Some(total), io::stderr().is_terminal(), false)
    }

    /// A backup's meter: `expected` uncompressed bytes (the previous backup's), drawn live when
    /// `live` (a terminal and one database at a time), else logged every 30 s.
    pub fn for_dump(label: &str, expected: Option<u64>, live: bool) -> Meter {
        Self::start_with(label, expected, live, true)
    }

    fn start_with(label: &str, total: Option<u64>, live: bool, dump: bool) -> Meter {
        let count = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (c, label) = (count.clone(), label.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let every = if live { Duration::from_secs(1) } else { Duration::from_secs(30) };
            let mut last = Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(200))
            {
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                let line = describe(&label, c.load(Ordering::Relaxed), total, started.elapsed(), dump);
                if live {
                    eprint!("\r{line}   ");
                    let _ = io::stderr().flush();
                } else {
                    tracing::info!(progress = %line, "Progress.");
                }
            }
            if live {
                eprint!("\r{}\r", " ".repeat(100));
            }
        });
        Meter { count, stop: Some(stop), thread: Some(thread) }
    }

    /// Wraps a writer so its bytes are counted.
    pub fn writer<'w>(&self, inner: &'w mut dyn Write) -> CountingWriter<'w> {
        CountingWriter { inner, count: self.count.clone() }
    }

    /// Wraps a reader so its bytes are counted.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader { inner, count: self.count.clone() }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let d = Duration::from_secs(10);
        assert_eq!(describe("restoring", 50, Some(200), d, false), "restoring: 50 B of 200 B (25%), 5 B/s");
        let line = describe("db/app", 100 << 20, Some(400 << 20), d, true);
        assert!(
            line.starts_with("db/app: 100.0 MiB dumped of ~400.0 MiB (25%), 10.0 MiB/s, 10s elapsed, about 30s left"),
            "{line}"
        );
        assert!(describe("db/app", 500, Some(400), d, true).contains("(99%)"), "a bigger dump than last time");
        assert_eq!(describe("db/app", 0, None, d, true), "db/app: 0 B dumped, 0 B/s, 10s elapsed");
    }
}
