//! Up to `jobs` threads working through a list, never more than `cap` items of one key at
//! once (one database server for backups, one database name in the shared verification
//! server); results come back in the list's order. Used by `BACKUP_JOBS` and `VERIFY_JOBS`.
//! Written by hand: a scoped-thread loop over a condition variable is all it takes, and
//! thread-pool crates (rayon) have no notion of a per-key cap.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

struct Queue {
    taken: Vec<bool>,
    busy: HashMap<String, usize>,
}

/// Runs `work` on every item, up to `jobs` at once and at most `cap` with the same `key`.
pub fn run_capped<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    cap: usize,
    key: impl Fn(&T) -> String + Sync,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let (jobs, cap) = (jobs.max(1), cap.max(1));
    if jobs == 1 || items.len() <= 1 {
        return items.iter().map(work).collect();
    }
    let queue = Mutex::new(Queue { taken: vec![false; items.len()], busy: HashMap::new() });
    let freed = Condvar::new();
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            scope.spawn(|| {
                while let Some(i) = next(items, &queue, &freed, cap, &key) {
                    let result = work(&items[i]);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
                    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = q.busy.get_mut(&key(&items[i])) {
                        *n = n.saturating_sub(1);
                    }
                    drop(q);
                    freed.notify_all();
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

/// The next item whose key is under its cap, waiting while every remaining one's key is
/// busy; `None` when none remain.
fn next<T>(
    items: &[T],
    queue: &Mutex<Queue>,
    freed: &Condvar,
    cap: usize,
    key: &impl Fn(&T) -> String,
) -> Option<usize> {
    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if q.taken.iter().all(|t| *t) {
            return None;
        }
        let free = (0..items.len()).find(|&i| !q.taken[i] && q.busy.get(&key(&items[i])).copied().unwrap_or(0) < cap);
        if let Some(i) = free {
            q.taken[i] = true;
            *q.busy.entry(key(&items[i])).or_default() += 1;
            return Some(i);
        }
        q = freed.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// The most items of each key, and in all, that ran at once.
    fn observe(items: &[(&str, u32)], jobs: usize, cap: usize) -> (Vec<u32>, usize, HashMap<String, usize>) {
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let per_key: Mutex<(HashMap<String, usize>, HashMap<String, usize>)> = Mutex::default();
        let out = run_capped(
            items,
            jobs,
            cap,
            |(k, _)| k.to_string(),
            |(k, v)| {
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                {
                    let mut g = per_key.lock().unwrap();
                    let n = g.0.entry(k.to_string()).or_default();
                    *n += 1;
                    let n = *n;
                    let m = g.1.entry(k.to_string()).or_default();
                    *m = (*m).max(n);
                }
                std::thread::sleep(Duration::from_millis(80));
                *per_key.lock().unwrap().0.get_mut(*k).unwrap() -= 1;
                now.fetch_sub(1, Ordering::SeqCst);
                v * 10
            },
        );
        (out, most.into_inner(), per_key.into_inner().unwrap().1)
    }

    #[test]
    fn results_in_order_within_the_job_count_and_the_per_key_cap() {
        let items = [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5), ("c", 6)];
        let (out, most, per_key) = observe(&items, 3, 1);
        assert_eq!(out, vec![10, 20, 30, 40, 50, 60]);
        assert!((2..=3).contains(&most), "{most}");
        assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
        let (_, most, per_key) = observe(&items, 4, 2);
        assert!(most <= 4 && per_key["a"] == 2, "{most} {per_key:?}");
        let (out, most, _) = observe(&items, 1, 1);
        assert_eq!((out.len(), most), (6, 1));
    }
}
