//! Running database client tools as child processes: stream their stdout into a writer (or
//! a reader into their stdin), keep the tail of their stderr, and turn every failure — spawn
//! error, non-zero exit, death by signal, write error, cancellation — into an error that names
//! the tool and quotes its last stderr lines.
//!
//! Children lead their own process group and are registered with the `Cancel` token, so a
//! shutdown kills them (and anything they started) promptly.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use anyhow::anyhow;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::system::cancel::{Cancel, Interrupted};

/// How many stderr lines an error message quotes.
const STDERR_TAIL_LINES: usize = 20;
/// Longest stderr line kept (bytes); longer lines are cut.
const STDERR_LINE_MAX: usize = 1000;
/// Stdout kept from a tool fed through stdin (the tail).
const FEED_OUTPUT_MAX: usize = 64 * 1024;
/// Chunks read ahead while feeding a tool's stdin.
const READ_AHEAD: usize = 4;
/// Read buffer for dump streams.
const STREAM_BUFFER: usize = 256 * 1024;
/// Pipe capacity asked for on the dump pipe.
const PIPE_SIZE: i32 = 1 << 20;

/// Sees every stderr line of a tool as it arrives (e.g. to count a load's SQL errors).
pub type StderrTap = Box<dyn FnMut(&str) + Send>;

/// A spawned tool with its stderr being collected in the background.
struct Running {
    label: String,
    child: Child,
    stderr: Option<JoinHandle<Vec<String>>>,
    _guard: crate::system::cancel::ChildGuard,
}

fn spawn(
    mut cmd: Command,
    label: &str,
    stdin: Stdio,
    tap: Option<StderrTap>,
    cancel: &Cancel,
) -> anyhow::Result<Running> {
    cancel.check()?;
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            " (is the client installed and on PATH? PG_BIN_DIR selects a PostgreSQL bin folder)"
        } else {
            ""
        };
        anyhow!("starting {label}: {e}{hint}")
    })?;
    let guard = cancel.register(child.id());
    let stderr = child.stderr.take().map(|err| {
        let label = label.to_string();
        std::thread::spawn(move || collect_tail(err, &label, tap))
    });
    Ok(Running { label: label.to_string(), child, stderr, _guard: guard })
}

fn collect_tail(stderr: impl Read, label: &str, mut tap: Option<StderrTap>) -> Vec<String> {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let mut text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            continue;
        }
        if let Some(tap) = tap.as_mut() {
            tap(&text);
        }
        if text.len() > STDERR_LINE_MAX {
            let mut cut = STDERR_LINE_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" ...");
        }
        tracing::debug!(tool = label, "{text}");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    tail.into()
}

impl Running {
    fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
    }

    /// Waits for exit and turns the status into a result quoting stderr; on success returns
    /// the stderr tail (warnings a caller may want to report).
    fn finish(mut self, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
        let status = self.child.wait().map_err(|e| anyhow!("waiting for {}: {e}", self.label))?;
        let tail = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if cancel.is_cancelled() && !status.success() {
            return Err(Interrupted.into());
        }
        check_status(&self.label, status, &tail)?;
        Ok(tail)
    }
}

fn check_status(label: &str, status: ExitStatus, tail: &[String]) -> anyhow::Result<()> {
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("unknown");
            format!("was killed by signal {sig} ({name})")
        }
        _ => "failed".to_string(),
    };
    if tail.is_empty() {
        Err(anyhow!("{label} {how} (no error output)"))
    } else {
        Err(anyhow!("{label} {how}: {}", tail.join("\n")))
    }
}

/// Runs `cmd`, copying its stdout into `out`; returns the bytes copied.
///
/// # Errors
/// Spawn failure, a non-zero exit or signal (with the stderr tail), a read error, a write
/// error on `out` (the child is killed), or `Interrupted` when cancelled.
pub fn stream_stdout(cmd: Command, label: &str, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<u64> {
    let mut run = spawn(cmd, label, Stdio::null(), None, cancel)?;
    let mut stdout = run.child.stdout.take().expect("stdout is piped");
    enlarge_pipe(&stdout);
    let mut buf = vec![0u8; STREAM_BUFFER];
    let mut total = 0u64;
    let copy_result: anyhow::Result<()> = loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(anyhow!("reading output of {label}: {e}")),
        };
        if let Err(e) = out.write_all(&buf[..n]) {
            break Err(anyhow!("writing the backup: {e}"));
        }
        total += n as u64;
    };
    if let Err(e) = copy_result {
        run.kill();
        drop(stdout);
        let _ = run.child.wait();
        if cancel.is_cancelled() {
            return Err(Interrupted.into());
        }
        return Err(e);
    }
    drop(stdout);
    run.finish(cancel)?;
    Ok(total)
}

/// Grows a pipe from the default 64 KiB to 1 MiB, so the tool on the other end blocks, and we
/// wake up, less often. Best effort: the kernel may refuse (`fs.pipe-max-size`, per-user limits).
fn enlarge_pipe(pipe: &impl std::os::fd::AsFd) {
    if let Err(e) = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
        tracing::debug!("could not enlarge a pipe to {PIPE_SIZE} bytes: {e}");
    }
}

/// What a tool fed through stdin left behind: the tails of its stdout and stderr.
#[derive(Debug, Default)]
pub struct Fed {
    pub stdout: String,
    pub stderr: Vec<String>,
}

/// Runs `cmd` with `input` copied into its stdin; returns the last 64 KiB of its stdout and
/// the last lines of its stderr.
///
/// # Errors
/// As `stream_stdout`, plus a read error on `input` (the tool is killed).
pub fn feed_stdin(cmd: Command, label: &str, input: &mut (dyn Read + Send), cancel: &Cancel) -> anyhow::Result<Fed> {
    feed_stdin_tapped(cmd, label, input, None, cancel)
}

/// `feed_stdin`, with every stderr line also given to `tap` as it arrives.
///
/// # Errors
/// As `feed_stdin`.
pub fn feed_stdin_tapped(
    cmd: Command,
    label: &str,
    input: &mut (dyn Read + Send),
    tap: Option<StderrTap>,
    cancel: &Cancel,
) -> anyhow::Result<Fed> {
    feed_stdin_watched(cmd, label, input, tap, None, cancel)
}

/// `feed_stdin_tapped`, with every stdout line also given to `stdout_tap` as it arrives (a
/// parallel load learns from its markers which work a session has finished).
///
/// # Errors
/// As `feed_stdin`.
pub fn feed_stdin_watched(
    cmd: Command,
    label: &str,
    input: &mut (dyn Read + Send),
    tap: Option<StderrTap>,
    mut stdout_tap: Option<StderrTap>,
    cancel: &Cancel,
) -> anyhow::Result<Fed> {
    let mut run = spawn(cmd, label, Stdio::piped(), tap, cancel)?;
    // The pipe into the tool keeps its default size: a 1 MiB one made no difference to a
    // restore's wall time and cost 20% more CPU (docs/PERFORMANCE.md).
    let mut stdin = run.child.stdin.take().expect("stdin is piped");
    let stdout = run.child.stdout.take().expect("stdout is piped");
    // Drain stdout fully (a tool blocked on a full pipe would never read its stdin), keeping
    // only the last part.
    let reader = std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        let mut stdout = stdout;
        let mut line: Vec<u8> = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(tap) = stdout_tap.as_mut() {
                for &b in &buf[..n] {
                    if b == b'\n' {
                        tap(&String::from_utf8_lossy(&line));
                        line.clear();
                    } else if line.len() < STDERR_LINE_MAX {
                        line.push(b);
                    }
                }
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > FEED_OUTPUT_MAX {
                kept.drain(..kept.len() - FEED_OUTPUT_MAX);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    // Reading (decompressing) runs on its own thread, a few chunks ahead of the writes, so the
    // tool never waits for the decoder and the decoder never waits for the pipe.
    let fed: anyhow::Result<()> = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(READ_AHEAD);
        scope.spawn(move || {
            loop {
                let mut buf = vec![0u8; STREAM_BUFFER];
                let item = match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        for item in rx {
            // NOTE: a corrupt or truncated backup surfaces here; the tool must not see a
            // clean end of input and commit half a restore.
            let chunk = item.map_err(|e| anyhow!("reading the backup while feeding {label}: {e}"))?;
            match stdin.write_all(&chunk) {
                Ok(()) => {}
                // The tool stopped reading (e.g. psql ON_ERROR_STOP): its exit status says why.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(anyhow!("feeding {label}: {e}")),
            }
        }
        Ok(())
    });
    drop(stdin);
    if let Err(e) = fed {
        run.kill();
        let _ = run.child.wait();
        if cancel.is_cancelled() {
            return Err(Interrupted.into());
        }
        return Err(e);
    }
    let result = run.finish(cancel);
    let stdout = reader.join().unwrap_or_default();
    result.map(|stderr| Fed { stdout, stderr })
}

/// Runs `cmd` to completion and returns its stdout (for short queries).
///
/// # Errors
/// As `stream_stdout`.
pub fn capture(cmd: Command, label: &str, cancel: &Cancel) -> anyhow::Result<String> {
    let mut out = Vec::new();
    stream_stdout(cmd, label, &mut out, cancel)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn copies_stdout_and_reports_success() {
        let mut out = Vec::new();
        let n = stream_stdout(sh("printf hello"), "tool", &mut out, &Cancel::new()).unwrap();
        assert_eq!((n, out.as_slice()), (5, b"hello".as_slice()));
    }

    #[test]
    fn non_zero_exit_quotes_stderr_tail() {
        let mut out = Vec::new();
        let err = stream_stdout(
            sh("echo partial; echo 'FATAL: password authentication failed' >&2; exit 3"),
            "pg_dump",
            &mut out,
            &Cancel::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "pg_dump exited with status 3: FATAL: password authentication failed");
    }

    #[test]
    fn death_by_signal_is_an_error() {
        let mut out = Vec::new();
        let err = stream_stdout(sh("echo x; kill -9 $$"), "pg_dump", &mut out, &Cancel::new()).unwrap_err().to_string();
        assert!(err.contains("killed by signal 9 (SIGKILL)"), "{err}");
    }

    #[test]
    fn write_error_kills_the_child_and_fails() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = stream_stdout(sh("yes"), "pg_dump", &mut Full, &Cancel::new()).unwrap_err().to_string();
        assert!(err.contains("No space left on device"), "{err}");
    }

    #[test]
    fn missing_binary_is_named() {
        let err = stream_stdout(Command::new("/nonexistent/pg_dump"), "pg_dump", &mut Vec::new(), &Cancel::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("starting pg_dump: No such file"), "{err}");
    }

    #[test]
    fn cancel_stops_a_running_child() {
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            c2.cancel();
        });
        let started = std::time::Instant::now();
        let err = stream_stdout(sh("sleep 30"), "pg_dump", &mut Vec::new(), &cancel).unwrap_err();
        t.join().unwrap();
        assert!(err.downcast_ref::<Interrupted>().is_some(), "{err}");
        assert!(started.elapsed().as_secs() < 10);
    }

    #[test]
    fn feed_stdin_fails_on_a_read_error_even_if_the_tool_succeeds() {
        struct Broken(bool);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "corrupt deflate stream"))
                } else {
                    buf[..4].copy_from_slice(b"abc\n");
                    Ok(4)
                }
            }
        }
        let err = feed_stdin(sh("cat >/dev/null"), "psql", &mut Broken(false), &Cancel::new()).unwrap_err().to_string();
        assert!(err.contains("corrupt deflate stream"), "{err}");
    }

    #[test]
    fn feed_stdin_passes_input() {
        let out = feed_stdin(sh("tr a-z A-Z; echo warn >&2"), "tr", &mut &b"abc"[..], &Cancel::new()).unwrap();
        assert_eq!(out.stdout, "ABC");
        assert_eq!(out.stderr, ["warn"]);
    }
}
