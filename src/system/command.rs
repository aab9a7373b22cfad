//! Running a user's command (a hook, or a cron line that is not `backup.sh`): argv or
//! `/bin/sh -c`, optional env, working folder and user, a time limit after which its whole
//! process group is killed, output captured (first 64 KiB of each stream) for the log.
//!
//! Database tools use `engine::process` instead (streaming, stderr tails).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::system::cancel::Cancel;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// An argv list, run directly.
    Argv(Vec<String>),
    /// A string run with `/bin/sh -c`.
    Shell(String),
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Program::Argv(a) => write!(f, "{}", a.join(" ")),
            Program::Shell(s) => f.write_str(s),
        }
    }
}

/// How to run it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Run as this user (only possible when running as root).
    pub user: Option<String>,
    pub timeout: Option<Duration>,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub output: String,
    pub duration: Duration,
    /// `None` on success, else why it failed.
    pub failure: Option<String>,
}

/// Runs `program` to completion (or to its time limit, or cancellation).
pub fn run(program: &Program, opts: &Options, cancel: &Cancel) -> Finished {
    let started = Instant::now();
    let mut cmd = match program {
        Program::Argv(argv) if argv.is_empty() => {
            return Finished {
                output: String::new(),
                duration: started.elapsed(),
                failure: Some("empty command".into()),
            };
        }
        Program::Argv(argv) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
        Program::Shell(s) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
    };
    cmd.envs(&opts.env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    if let Some(dir) = &opts.cwd {
        cmd.current_dir(dir);
    }
    if let Some(name) = &opts.user {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => {
                cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
            }
            _ => return fail(started, format!("unknown user {name}")),
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(started, format!("could not start: {e}")),
    };
    let _guard = cancel.register(child.id());
    let group = Pid::from_raw(child.id() as i32);
    let readers: Vec<_> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.by_ref().take(64 * 1024).read_to_string(&mut text);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            text
        })
    })
    .collect();
    let mut killed_at: Option<Instant> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let over = opts.timeout.is_some_and(|t| started.elapsed() > t);
        match killed_at {
            None if over || cancel.is_cancelled() => {
                let _ = killpg(group, Signal::SIGTERM);
                killed_at = Some(Instant::now());
            }
            Some(at) if at.elapsed() > Duration::from_secs(5) => {
                let _ = killpg(group, Signal::SIGKILL);
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The group may still hold children that outlived the shell: end them too.
    let _ = killpg(group, Signal::SIGKILL);
    let output: String = readers.into_iter().filter_map(|h| h.join().ok()).collect::<Vec<_>>().join("");
    let duration = started.elapsed();
    let failure = match status {
        Err(e) => Some(format!("could not be waited for: {e}")),
        Ok(_) if killed_at.is_some() && cancel.is_cancelled() => Some("interrupted by a shutdown signal".into()),
        Ok(_) if killed_at.is_some() => Some(format!(
            "timed out after {}s and was killed with its process group",
            opts.timeout.unwrap_or_default().as_secs()
        )),
        Ok(s) if s.success() => None,
        Ok(s) => Some(match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (_, sig) => format!("killed by signal {}", sig.unwrap_or_default()),
        }),
    };
    Finished { output, duration, failure }
}

fn fail(started: Instant, why: String) -> Finished {
    Finished { output: String::new(), duration: started.elapsed(), failure: Some(why) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_output_and_env() {
        let opts = Options { env: BTreeMap::from([("HOOK_X".into(), "42".into())]), ..Default::default() };
        let f = run(&Program::Shell("echo x=$HOOK_X; echo err >&2".into()), &opts, &Cancel::new());
        assert_eq!(f.failure, None);
        assert!(f.output.contains("x=42") && f.output.contains("err"), "{}", f.output);
        let f = run(&Program::Argv(vec!["/bin/echo".into(), "a b".into()]), &Options::default(), &Cancel::new());
        assert_eq!(f.output.trim(), "a b");
    }

    #[test]
    fn failure_and_missing_program() {
        let f = run(&Program::Shell("exit 7".into()), &Options::default(), &Cancel::new());
        assert_eq!(f.failure.as_deref(), Some("exited with status 7"));
        let f = run(&Program::Argv(vec!["/nonexistent/hook".into()]), &Options::default(), &Cancel::new());
        assert!(f.failure.unwrap().starts_with("could not start"));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        // A background grandchild that would touch the marker after the timeout.
        let script = format!("(sleep 5.4321; touch {}) & sleep 30", marker.display());
        let opts = Options { timeout: Some(Duration::from_millis(300)), ..Default::default() };
        let started = Instant::now();
        let f = run(&Program::Shell(script), &opts, &Cancel::new());
        assert!(f.failure.unwrap().starts_with("timed out"));
        assert!(started.elapsed() < Duration::from_secs(10));
        // The grandchild must be gone long before it would touch the marker.
        let alive = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .any(|c| String::from_utf8_lossy(&c).contains("5.4321"))
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive() {
            assert!(Instant::now() < deadline, "the grandchild outlived its group's kill");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!marker.exists(), "the grandchild was killed with the group");
    }
}
