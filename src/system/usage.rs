//! What this process has used, for summaries.

/// This process's peak resident memory in KiB (children not included); -1 when unknown.
pub fn peak_rss_kb() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map(|u| u.max_rss()).unwrap_or(-1)
}
