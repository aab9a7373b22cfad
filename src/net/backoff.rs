//! Retrying with exponential backoff: the one loop behind mirror operations and notifications.
//! Every pause waits on the cancellation token: a shutdown ends the loop at once.

use std::time::{Duration, Instant};

use crate::system::cancel::Cancel;

/// Pause before the attempt after `attempt` (1 s, 2 s, 4 s, ... at most 16 s).
pub fn pause(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(4))
}

/// Why `retry` gave up: the last error, after how many attempts and how long.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Runs `op` (given the attempt number, from 1) up to `attempts` times while it fails with an
/// error that `retryable` accepts, sleeping `pause` between attempts; `on_retry` sees each
/// failure that is retried.
///
/// # Errors
/// The last failure, or the first one that is not retryable, or the last one before `cancel`
/// was cancelled (no attempt starts after that).
pub fn retry<T, E>(
    cancel: &Cancel,
    attempts: u32,
    mut op: impl FnMut(u32) -> Result<T, E>,
    retryable: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(u32, &E),
) -> Result<T, GaveUp<E>> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        match op(attempt) {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts.max(1) && retryable(&e) => {
                on_retry(attempt, &e);
                if cancel.sleep(pause(attempt)).is_err() {
                    return Err(GaveUp { error: e, attempts: attempt, elapsed: started.elapsed() });
                }
                attempt += 1;
            }
            Err(error) => return Err(GaveUp { error, attempts: attempt, elapsed: started.elapsed() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_first_permanent_failure_or_the_last_attempt() {
        let mut calls = 0;
        let never = Cancel::new();
        let r: Result<(), _> = retry(
            &never,
            5,
            |_| {
                calls += 1;
                Err("permanent")
            },
            |e| *e != "permanent",
            |_, _| {},
        );
        assert_eq!((calls, r.unwrap_err().attempts), (1, 1));
        let mut seen = Vec::new();
        let r = retry(&never, 2, |n| if n < 2 { Err(n) } else { Ok(n) }, |_| true, |n, _| seen.push(n));
        assert_eq!((r.unwrap(), seen), (2, vec![1]));
        assert_eq!(pause(1), Duration::from_secs(1));
        assert_eq!(pause(9), Duration::from_secs(16));
    }

    #[test]
    fn a_cancellation_ends_the_pause_and_the_loop() {
        let cancel = Cancel::new();
        let stopper = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stopper.cancel();
        });
        let started = Instant::now();
        let mut calls = 0;
        // Pauses of 1 s, 2 s, 4 s... would take 15 s over five attempts.
        let r: Result<(), _> = retry(
            &cancel,
            5,
            |_| {
                calls += 1;
                Err("down")
            },
            |_| true,
            |_, _| {},
        );
        t.join().unwrap();
        assert_eq!((calls, r.unwrap_err().attempts), (1, 1));
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }
}
