//! Cancellation: a token passed down every long operation, and the child processes it stops.
//!
//! `main` cancels it on SIGTERM/SIGINT (tests cancel it directly). Cancelling kills every
//! registered child's process group, so a blocked read on a dump pipe returns at once; the
//! pipeline then sees `is_cancelled()` and removes its partial file. Work that is not a child
//! process registers a hook instead (`on_cancel`: a database session sends its cancel request).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    children: Mutex<Vec<i32>>,
    /// What else runs on cancel (a database session's cancel request).
    hooks: Mutex<Hooks>,
    /// Bumped by `wake` (and `cancel`): lets a loop sleep until something happened.
    wakes: Mutex<u64>,
    woken: Condvar,
    /// Tokens made by `child`: cancelled with this one.
    kids: Mutex<Vec<Weak<Inner>>>,
}

/// A cheap, clonable cancellation token.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

/// Error returned by operations that stopped because of a cancellation.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a shutdown signal")]
pub struct Interrupted;

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Marks the token cancelled, sends SIGTERM to every registered child process group and
    /// runs every registered hook.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.signal_children(Signal::SIGTERM);
        let hooks: Vec<Hook> =
            self.0.hooks.lock().unwrap_or_else(|e| e.into_inner()).list.iter().map(|h| Arc::clone(&h.1)).collect();
        for hook in hooks {
            hook();
        }
        self.wake();
        let kids = std::mem::take(&mut *self.0.kids.lock().unwrap_or_else(|e| e.into_inner()));
        for kid in kids.iter().filter_map(Weak::upgrade) {
            Cancel(kid).cancel();
        }
    }

    /// A token cancelled with this one, that can also be cancelled alone (one failed
    /// session of a parallel load stops its siblings, not the whole program).
    pub fn child(&self) -> Cancel {
        let kid = Cancel::new();
        let mut kids = self.0.kids.lock().unwrap_or_else(|e| e.into_inner());
        kids.retain(|k| k.strong_count() > 0);
        kids.push(Arc::downgrade(&kid.0));
        drop(kids);
        if self.is_cancelled() {
            kid.cancel();
        }
        kid
    }

    /// Wakes whoever waits in `wait_for_wake` (e.g. the daemon loop when a job ends).
    pub fn wake(&self) {
        *self.0.wakes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.woken.notify_all();
    }

    /// The current wake count, to pass to `wait_for_wake`.
    pub fn wakes(&self) -> u64 {
        *self.0.wakes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps until a wake after `seen` (or a cancellation), or `timeout`; no polling.
    pub fn wait_for_wake(&self, seen: u64, timeout: Duration) {
        let guard = self.0.wakes.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.0.woken.wait_timeout_while(guard, timeout, |n| *n == seen && !self.is_cancelled());
    }

    /// Sleeps for `d`, or less when the token is cancelled (then `Err(Interrupted)`): the
    /// pause of every retry loop, so that a shutdown never waits for a backoff.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupted> {
        let deadline = std::time::Instant::now() + d;
        let mut guard = self.0.wakes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            guard = self.0.woken.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Sends SIGKILL to every registered child process group (second signal, or grace expired).
    pub fn kill_children(&self) {
        self.signal_children(Signal::SIGKILL);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once cancelled.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.is_cancelled() { Err(Interrupted) } else { Ok(()) }
    }

    /// Registers a child that leads its own process group; it is signalled on cancel until the
    /// guard is dropped. A child registered after cancellation is signalled at once.
    pub fn register(&self, pid: u32) -> ChildGuard {
        let pid = pid as i32;
        self.0.children.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        if self.is_cancelled() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
        ChildGuard { cancel: self.clone(), pid }
    }

    /// Runs `hook` when the token is cancelled (at once if it already is), until the guard is
    /// dropped: how what is not a child process is stopped (a statement on a server).
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) -> HookGuard {
        let hook: Hook = Arc::new(hook);
        let id = {
            let mut hooks = self.0.hooks.lock().unwrap_or_else(|e| e.into_inner());
            hooks.next += 1;
            let id = hooks.next;
            hooks.list.push((id, Arc::clone(&hook)));
            id
        };
        if self.is_cancelled() {
            hook();
        }
        HookGuard { cancel: self.clone(), id }
    }

    fn signal_children(&self, signal: Signal) {
        let children = self.0.children.lock().unwrap_or_else(|e| e.into_inner());
        for pid in children.iter() {
            // NOTE: the group may already be gone (child exited); that is fine.
            let _ = killpg(Pid::from_raw(*pid), signal);
        }
    }
}

type Hook = Arc<dyn Fn() + Send + Sync>;

/// The hooks registered with `on_cancel`.
#[derive(Default)]
struct Hooks {
    next: u64,
    list: Vec<(u64, Hook)>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({})", self.list.len())
    }
}

/// Unregisters a hook when dropped.
#[derive(Debug)]
pub struct HookGuard {
    cancel: Cancel,
    id: u64,
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        self.cancel.0.hooks.lock().unwrap_or_else(|e| e.into_inner()).list.retain(|h| h.0 != self.id);
    }
}

/// Unregisters a child when dropped (after it has been waited for).
#[derive(Debug)]
pub struct ChildGuard {
    cancel: Cancel,
    pid: i32,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let mut children = self.cancel.0.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|p| *p != self.pid);
    }
}

/// Cancels `cancel` on the first SIGTERM or SIGINT, and SIGKILLs the children on a second one.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn cancel_on_signals(cancel: &Cancel) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let cancel = cancel.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if cancel.is_cancelled() {
                tracing::warn!(signal, "Second shutdown signal: killing child processes.");
                cancel.kill_children();
            } else {
                tracing::warn!(signal, "Shutdown signal received: stopping.");
                cancel.cancel();
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn hooks_run_on_cancel_through_children_and_not_after_their_guard() {
        let parent = Cancel::new();
        let child = parent.child();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = |runs: &Arc<AtomicU32>| {
            let runs = Arc::clone(runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        let kept = child.on_cancel(counted(&runs));
        drop(child.on_cancel(counted(&runs)));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing runs before a cancel");
        parent.cancel();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the child's kept hook ran, the dropped one did not");
        let _late = child.on_cancel(counted(&runs));
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a hook registered after the cancel runs at once");
        drop(kept);
    }
}
