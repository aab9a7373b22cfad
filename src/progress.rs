//! Progress of a long read (restore, verify): bytes of the compressed file consumed, out of
//! its size, and the rate. A live line on a terminal; a log line every 30 s otherwise.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::human;

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

/// Reports progress from a background thread until dropped.
pub struct Meter {
    count: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Meter {
    /// Starts reporting `label` progress against `total` bytes.
    pub fn start(label: &str, total: u64) -> Meter {
        let count = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let terminal = io::stderr().is_terminal();
        let (c, d, label) = (count.clone(), done.clone(), label.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let every = if terminal { Duration::from_secs(1) } else { Duration::from_secs(30) };
            let mut last = Instant::now();
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                let read = c.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let pct = (read * 100).checked_div(total).unwrap_or(0);
                let rate = human::bytes((read as f64 / secs) as u64);
                let line = format!("{label}: {} of {} ({pct}%), {rate}/s", human::bytes(read), human::bytes(total));
                if terminal {
                    eprint!("\r{line}   ");
                    let _ = io::stderr().flush();
                } else {
                    tracing::info!(progress = %line, "Progress.");
                }
            }
            if terminal {
                eprint!("\r{}\r", " ".repeat(80));
            }
        });
        Meter { count, done, thread: Some(thread) }
    }

    /// Wraps a reader so its bytes are counted.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader { inner, count: self.count.clone() }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
