//! The four stage entry points gitlab-runner calls (plus the admin tools `reap`, `plan` and
//! `check`), and what they share: config loading,
//! logging, process hardening, the async runtime, and the error-to-exit-code edge.

mod check;
mod cleanup;
mod config;
mod plan;
mod prepare;
mod reap;
mod run;

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::executor_config::ExecutorConfig;
use crate::joblog;
use crate::protocol::{ExitCodes, StageEnv};
use crate::state::{StateError, StateId, StateKey};

/// Runs the subcommand and returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    install_panic_hook();
    init_tracing();
    let exit_codes = ExitCodes::from_env();
    let result = match &cli.command {
        Command::Config => config::run(&cli),
        Command::Prepare => prepare::run(&cli),
        Command::Run { script, stage } => run::run(&cli, script, stage),
        Command::Cleanup => cleanup::run(&cli),
        Command::Reap { dry_run } => reap::run(&cli, *dry_run),
        Command::Plan { job, claims } => plan::run(&cli, job.as_deref(), claims.as_deref()),
        Command::Check { token_file } => check::run(&cli, token_file.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            joblog::error(&error.to_string());
            let kind = error.failure_kind();
            if kind == crate::error::FailureKind::Build {
                // gitlab-runner reads this file on every BUILD_FAILURE exit and never clears it:
                // without a rewrite it would report an earlier stage's script exit code.
                let _ = StageEnv::from_env().write_build_exit_code(1);
            }
            exit_codes.for_failure(kind)
        }
    }
}

/// Loads the executor config named by `--config`, `LEASEHOLD_CONFIG` or the default path.
pub(crate) fn load_config(cli: &Cli) -> Result<ExecutorConfig> {
    let path = ExecutorConfig::locate(cli.config.as_deref());
    Ok(ExecutorConfig::load(&path)?)
}

/// The state id and key `config` put into `job_env`.
pub(crate) fn state_handles(env: &StageEnv) -> Result<(StateId, StateKey)> {
    let id = env.state_id.as_deref().ok_or(StateError::NoConfigStage {
        variable: crate::protocol::env::STATE_ID,
    })?;
    let key = env.state_key.as_ref().ok_or(StateError::NoConfigStage {
        variable: crate::protocol::env::STATE_KEY,
    })?;
    Ok((StateId::parse(id)?, StateKey::from_hex(key)?))
}

/// A single-threaded runtime: each stage is a short-lived process with little concurrency, and
/// one thread keeps PR_SET_PDEATHSIG (which follows the forking thread) meaningful.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::io("start the async runtime", "(runtime)", source))
}

fn init_tracing() {
    let filter = std::env::var("LEASEHOLD_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// No core dumps, and no ptrace or /proc/<pid>/environ reads by other processes of the same
/// user: the secrets and the state key live in this process's memory and environment.
pub(crate) fn harden_process() {
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
}

/// A panic prints where it happened, never its payload (which could hold anything), and the
/// process exits with the system-failure code.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(
            || "unknown location".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        joblog::error(&format!(
            "internal error at {location}; this is a bug in leasehold, please report it"
        ));
        std::process::exit(ExitCodes::from_env().system_failure);
    }));
}
