//! Lifecycle hooks (configured in backup.toml): commands or SQL run before and after each
//! phase, Velero/rustic style.
//!
//! - Phases: `run` (a whole backup run), `backup` (one database's dump), `copy` (its mirrors),
//!   `prune` (its retention), `verify` (one verification), `restore` (one restore).
//! - Stages: `pre` (before; a failing `pre` with `on-error = "fail"` fails the phase, which is
//!   then not carried out), `post` (after success), `on-error` (after failure), `finally`
//!   (always, last).
//! - Hooks of a stage run one after the other in file order; the phase waits for them. Each has
//!   a timeout (default 30 s, as Velero) after which its whole process group is killed, and an
//!   `on-error` policy: `fail` (the phase fails and is reported) or `continue` (a warning).
//! - Context reaches hooks as `BACKUP_*` environment variables (see `env_for`).

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{error, info, warn};

pub use crate::config::hooks::{Action, Hook, Hooks, Phase, Stage};
use crate::engine;
use crate::model::database::Database;
use crate::system::cancel::Cancel;
use crate::system::command;

/// What the hooks of one stage are told.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub run_id: &'a str,
    pub database: Option<&'a Database>,
    pub file: Option<&'a Path>,
    pub size: Option<u64>,
    /// `success` or `failure` (on-error and finally stages).
    pub status: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// A hook with `on-error = "fail"` failed: its phase fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage} hook \"{hook}\" of the {phase} phase failed: {reason}")]
pub struct HookFailure {
    pub hook: String,
    pub phase: &'static str,
    pub stage: &'static str,
    pub reason: String,
}

/// What a phase's result tells its `post` and `finally` hooks (the file written, its size).
pub trait Facts {
    fn file(&self) -> Option<&Path> {
        None
    }
    fn size(&self) -> Option<u64> {
        None
    }
}

impl Facts for () {}
impl Facts for String {}
impl Facts for crate::engine::RestoreReport {}

/// The hooks, bound once to what running them needs: one value to pass down a run.
#[derive(Clone, Copy)]
pub struct Phases<'a> {
    hooks: &'a Hooks,
    engines: &'a engine::Engines,
    cancel: &'a Cancel,
}

impl<'a> Phases<'a> {
    pub fn new(hooks: &'a Hooks, engines: &'a engine::Engines, cancel: &'a Cancel) -> Phases<'a> {
        Phases { hooks, engines, cancel }
    }

    /// Runs the hooks of `phase`/`stage` that apply to the context's database, in order.
    ///
    /// # Errors
    /// The first failure of a hook with `on-error = "fail"`.
    pub fn run(&self, phase: Phase, stage: Stage, ctx: &Context) -> Result<(), HookFailure> {
        for hook in self.hooks.0.iter().filter(|h| h.phase == phase && h.stage == stage && applies(h, ctx.database)) {
            let result = run_one(hook, ctx, self.engines, self.cancel);
            match (result, hook.fail_on_error) {
                (Ok(()), _) => {}
                (Err(why), true) => {
                    error!(hook = %hook.name, phase = phase.name(), stage = stage.name(), error = %why, "Hook failed.");
                    return Err(HookFailure {
                        hook: hook.name.clone(),
                        phase: phase.name(),
                        stage: stage.name(),
                        reason: why,
                    });
                }
                (Err(why), false) => {
                    warn!(hook = %hook.name, phase = phase.name(), stage = stage.name(), error = %why, "Hook failed; continuing (on-error = continue).");
                }
            }
        }
        Ok(())
    }

    /// Runs a phase with its stages: `pre`, then `body` (skipped when a `pre` hook failed),
    /// then `post` or `on-error`, then `finally`.
    ///
    /// # Errors
    /// The body's error, or a failing hook's (as `E`).
    pub fn around<T: Facts, E: From<HookFailure> + std::fmt::Display>(
        &self,
        phase: Phase,
        ctx: &Context,
        body: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let result = self.run(phase, Stage::Pre, ctx).map_err(E::from).and_then(|()| body());
        let result = match result {
            Ok(value) => {
                let post = Context {
                    file: value.file().or(ctx.file),
                    size: value.size().or(ctx.size),
                    status: Some("success"),
                    ..ctx.clone()
                };
                self.run(phase, Stage::Post, &post).map_err(E::from).map(|()| value)
            }
            Err(e) => Err(e),
        };
        let error_text = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error_text {
            let failed = Context { status: Some("failure"), error: Some(e), ..ctx.clone() };
            let _ = self.run(phase, Stage::OnError, &failed);
        }
        let last = Context {
            status: Some(if result.is_ok() { "success" } else { "failure" }),
            error: error_text.as_deref(),
            file: result.as_ref().ok().and_then(Facts::file).or(ctx.file),
            size: result.as_ref().ok().and_then(Facts::size).or(ctx.size),
            ..ctx.clone()
        };
        let _ = self.run(phase, Stage::Finally, &last);
        result
    }
}

/// Whether `hook` runs for `db` (`None`: a phase without a database).
pub fn applies(hook: &Hook, db: Option<&Database>) -> bool {
    match (&hook.databases, db) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(list), Some(db)) => list.iter().any(|d| *d == db.spec.to_string() || *d == db.spec.core_name()),
    }
}

/// The `BACKUP_*` variables a hook sees (plus its own `env`).
pub fn env_for(hook: &Hook, ctx: &Context) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("BACKUP_HOOK_NAME", hook.name.clone());
    set("BACKUP_HOOK_PHASE", hook.phase.name().into());
    set("BACKUP_HOOK_STAGE", hook.stage.name().into());
    set("BACKUP_RUN_ID", ctx.run_id.into());
    if let Some(db) = ctx.database {
        set("BACKUP_DATABASE", db.spec.to_string());
        set("BACKUP_DATABASE_HOST", db.spec.host.clone());
        set("BACKUP_DATABASE_NAME", db.spec.database.clone());
        if let Some(port) = db.spec.effective_port() {
            set("BACKUP_DATABASE_PORT", port.to_string());
        }
    }
    if let Some(f) = ctx.file {
        set("BACKUP_FILE", f.display().to_string());
    }
    if let Some(s) = ctx.size {
        set("BACKUP_SIZE", s.to_string());
    }
    if let Some(s) = ctx.status {
        set("BACKUP_STATUS", s.into());
    }
    if let Some(e) = ctx.error {
        set("BACKUP_ERROR", e.into());
    }
    env.extend(hook.env.clone());
    env
}

fn run_one(hook: &Hook, ctx: &Context, engines: &engine::Engines, cancel: &Cancel) -> Result<(), String> {
    info!(hook = %hook.name, phase = hook.phase.name(), stage = hook.stage.name(), "Running hook.");
    match &hook.action {
        Action::Command(program) => {
            let opts = command::Options {
                env: env_for(hook, ctx),
                cwd: hook.cwd.clone(),
                user: hook.user.clone(),
                timeout: Some(hook.timeout),
            };
            let done = command::run(program, &opts, cancel);
            for line in done.output.lines().filter(|l| !l.trim().is_empty()).take(100) {
                info!(hook = %hook.name, "{line}");
            }
            match done.failure {
                None => Ok(()),
                Some(why) => Err(why),
            }
        }
        Action::Sql(sql) => {
            let db = ctx.database.ok_or_else(|| {
                "an SQL hook needs a database (use it in the backup, verify or restore phase)".to_string()
            })?;
            let engine =
                engines.get(&db.spec.engine).ok_or_else(|| format!("no engine for {}", db.spec.engine.name()))?;
            engine.execute_sql(db, sql, hook.timeout, cancel).map(|_| ()).map_err(|e| format!("{e:#}"))
        }
    }
}
