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
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::cancel::Cancel;
use crate::command;
pub use crate::config::hooks::{Action, Hook, Hooks, Phase, Stage};
use crate::database::Database;
use crate::engine;

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

impl Hooks {
    /// Runs the hooks of `phase`/`stage` that apply to the context's database, in order.
    ///
    /// # Errors
    /// The first failure of a hook with `on-error = "fail"`, as a message naming the hook.
    pub fn run(
        &self,
        phase: Phase,
        stage: Stage,
        ctx: &Context,
        engine_options: &engine::EngineOptions,
        cancel: &Cancel,
    ) -> Result<(), String> {
        for hook in self.0.iter().filter(|h| h.phase == phase && h.stage == stage && applies(h, ctx.database)) {
            let result = run_one(hook, ctx, engine_options, cancel);
            match (result, hook.fail_on_error) {
                (Ok(()), _) => {}
                (Err(why), true) => {
                    error!(hook = %hook.name, phase = phase.name(), stage = stage.name(), error = %why, "Hook failed.");
                    return Err(format!(
                        "{} hook \"{}\" of the {} phase failed: {why}",
                        stage.name(),
                        hook.name,
                        phase.name()
                    ));
                }
                (Err(why), false) => {
                    warn!(hook = %hook.name, phase = phase.name(), stage = stage.name(), error = %why, "Hook failed; continuing (on-error = continue).");
                }
            }
        }
        Ok(())
    }

    /// Runs a phase with its stages: `pre`, then `body` (skipped when a `pre` hook failed),
    /// then `post` or `on-error`, then `finally`. Returns the body's result, or the hook failure.
    ///
    /// # Errors
    /// The body's error or a failing hook's message.
    pub fn around<T>(
        &self,
        phase: Phase,
        ctx: &Context,
        engine_options: &engine::EngineOptions,
        cancel: &Cancel,
        body: impl FnOnce() -> Result<T, String>,
        post_ctx: impl Fn(&T) -> (Option<PathBuf>, Option<u64>),
    ) -> Result<T, String> {
        let result = self.run(phase, Stage::Pre, ctx, engine_options, cancel).and_then(|()| body());
        let result = match result {
            Ok(value) => {
                let (file, size) = post_ctx(&value);
                let post = Context {
                    file: file.as_deref().or(ctx.file),
                    size: size.or(ctx.size),
                    status: Some("success"),
                    ..ctx.clone()
                };
                match self.run(phase, Stage::Post, &post, engine_options, cancel) {
                    Ok(()) => Ok((value, file, size)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let (status, error) = match &result {
            Ok(_) => ("success", None),
            Err(e) => ("failure", Some(e.as_str())),
        };
        if let Err(e) = &result {
            let failed = Context { status: Some("failure"), error: Some(e), ..ctx.clone() };
            let _ = self.run(phase, Stage::OnError, &failed, engine_options, cancel);
        }
        let (file, size) = result.as_ref().map(|(_, f, s)| (f.clone(), *s)).unwrap_or((None, None));
        let last = Context {
            status: Some(status),
            error,
            file: file.as_deref().or(ctx.file),
            size: size.or(ctx.size),
            ..ctx.clone()
        };
        let _ = self.run(phase, Stage::Finally, &last, engine_options, cancel);
        result.map(|(v, _, _)| v)
    }
}

fn applies(hook: &Hook, db: Option<&Database>) -> bool {
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

fn run_one(hook: &Hook, ctx: &Context, engine_options: &engine::EngineOptions, cancel: &Cancel) -> Result<(), String> {
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
            let engine = engine::for_kind(&db.spec.engine, engine_options)
                .ok_or_else(|| format!("no engine for {}", db.spec.engine.name()))?;
            engine.execute_sql(db, sql, hook.timeout, cancel).map(|_| ()).map_err(|e| format!("{e:#}"))
        }
    }
}
