//! The process edge: one invocation's setup (hardening, panic hook, logging, the async runtime),
//! the dispatch to a stage or an admin tool, and the one place where a result becomes the exit
//! status and `BUILD_EXIT_CODE_FILE`.

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::exit::{self, ExitCodes, FailureKind, Outcome};
use crate::joblog;
use crate::protocol::ProtocolError;
use crate::{stages, tools};

/// Runs the subcommand and returns the exit code.
pub(crate) fn dispatch(cli: Cli) -> i32 {
    install_panic_hook();
    init_tracing();
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            match &cli.command {
                Command::Config => stages::config::run(&cli).await,
                Command::Prepare => stages::prepare::run(&cli).await,
                Command::Run { script, stage } => stages::run::run(&cli, script, stage).await,
                Command::Cleanup => stages::cleanup::run(&cli).await,
                Command::Reap { dry_run } => tools::reap::run(&cli, *dry_run).await,
                Command::Plan { job, claims } => {
                    tools::plan::run(&cli, job.as_deref(), claims.as_deref()).await
                }
                Command::Check { token_file } => {
                    tools::check::run(&cli, token_file.as_deref()).await
                }
            }
        })
    });
    exit_status(result)
}

/// The edge of every stage: an error becomes its one line in the job log, and the result its exit
/// status through [`crate::exit`]'s table.
fn exit_status(result: Result<Outcome>) -> i32 {
    finish(result.map_err(|error| {
        joblog::error(&error.to_string());
        error.failure_kind()
    }))
}

/// The exit status for a verdict, after recording a build failure's code where gitlab-runner
/// reads it. The only writer of `BUILD_EXIT_CODE_FILE`, and the only reader of the runner's
/// exit-code variables.
pub(crate) fn finish(verdict: std::result::Result<Outcome, FailureKind>) -> i32 {
    let codes = ExitCodes::from_env();
    if let (Some(code), Some(path)) = (
        exit::build_exit_code(&verdict),
        exit::build_exit_code_file(),
    ) && let Err(source) = std::fs::write(&path, format!("{code}\n"))
    {
        joblog::error(&ProtocolError::ExitCodeFile { path, source }.to_string());
        return codes.status(&Err(FailureKind::System));
    }
    codes.status(&verdict)
}

/// The process's one runtime, single-threaded: each stage is a short-lived process with little
/// concurrency, and one thread keeps PR_SET_PDEATHSIG (which follows the forking thread)
/// meaningful.
fn runtime() -> Result<tokio::runtime::Runtime> {
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

/// No core dumps, and no ptrace or `/proc/<pid>/environ` reads by other processes of the same
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
        std::process::exit(finish(Err(FailureKind::System)));
    }));
}
