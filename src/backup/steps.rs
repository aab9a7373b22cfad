//! The results of the copy and prune steps as the hooks see them: success carries no facts;
//! a failure is a hook's or the step's own (with what it did).

use crate::backup::hooks::{Facts, HookFailure};
use crate::backup::mirror::MirrorOutcome;
use crate::backup::pipeline::Written;
use crate::storage::prune::PruneReport;

impl Facts for Written {
    fn file(&self) -> Option<&std::path::Path> {
        Some(&self.path)
    }
    fn size(&self) -> Option<u64> {
        Some(self.bytes)
    }
}

pub(super) struct Copied(pub(super) Vec<MirrorOutcome>);
impl Facts for Copied {}

/// The copy step failed: a hook, or a mirror (its outcomes say which).
pub(super) enum CopyError {
    Hook(HookFailure),
    Mirrors(Vec<MirrorOutcome>),
}

impl From<HookFailure> for CopyError {
    fn from(h: HookFailure) -> Self {
        CopyError::Hook(h)
    }
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Hook(h) => write!(f, "{h}"),
            CopyError::Mirrors(m) => {
                let failed: Vec<&str> = m.iter().filter_map(|o| o.error.as_deref()).collect();
                write!(f, "{}", failed.join("; "))
            }
        }
    }
}

pub(super) struct Pruned(pub(super) PruneReport);
impl Facts for Pruned {}

/// The prune step failed: a hook, or deletions (the report says which).
pub(super) enum PruneError {
    Hook(HookFailure),
    Failed(PruneReport),
}

impl From<HookFailure> for PruneError {
    fn from(h: HookFailure) -> Self {
        PruneError::Hook(h)
    }
}

impl std::fmt::Display for PruneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneError::Hook(h) => write!(f, "{h}"),
            PruneError::Failed(r) => write!(f, "{}", r.failed.join("; ")),
        }
    }
}
