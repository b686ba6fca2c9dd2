//! leasehold: a GitLab Runner custom executor that gives every CI job short-lived, job-scoped
//! secrets from Vault/OpenBao, injects them only into the job's own processes, masks them in the
//! job log, and revokes them when the job ends.
//!
//! gitlab-runner spawns one short-lived process per stage (`config`, `prepare`, one `run` per
//! sub-stage, `cleanup`); [`run`] is the entry point of each. Modules, one concern each, from the
//! top down (a module imports only from the layers below it; docs/architecture.md has the map):
//!
//! - `entry`: the process edge (runtime, dispatch, exit status); `stages`: the four stage
//!   entry points; `tools`: the admin tools `reap`, `plan`, `check`;
//!   `error`: every error a stage can end with;
//! - `planning`: identity, bindings, policy and declarations combined into one
//!   `secret_plan::SecretPlan`; `resolution`: one login per identity, one read per path;
//!   `lease`: renewal while the job runs, revocation at cleanup, the reaper for crashes;
//! - `executor`: the wrapped executors (`docker`: the Docker engine behind the docker one); `inject`: what a stage's child receives, and how;
//!   `job_user`: the local account a job runs as; `supervision`: every child process,
//!   its signals and output;
//! - `identity`: the ID token, its verification and claims; `config`: the checked executor
//!   config, built from `config_file` (the raw TOML); `bindings`: the admin's claim-based
//!   grants; `policy`: what jobs may declare themselves; `secret_plan`: the plan's data;
//! - `vault`: the HTTP client and the trusted servers; [`state`]: private per-job state;
//!   `declarations`: the job's `secrets:` YAML; `job_response`: the job payload;
//!   `protocol`: the runner's environment and stage names;
//! - at the bottom: `exit`: the exit-code table; `api_path`: the one rule for every path piece
//!   and the request URL built segment by segment; [`mask`]: the output masker; `patterns`:
//!   compiled globs; `private_fs`: private files and directories; `random`; `joblog`: what
//!   the job log shows; [`cli`]: the command line.

pub(crate) mod api_path;
pub(crate) mod bindings;
pub mod cli;
pub(crate) mod config;
pub(crate) mod config_file;
pub(crate) mod declarations;
pub(crate) mod docker;
pub(crate) mod entry;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod executor;
pub(crate) mod exit;
pub(crate) mod identity;
pub(crate) mod inject;
pub(crate) mod job_response;
pub(crate) mod job_user;
pub(crate) mod joblog;
pub(crate) mod lease;
pub mod mask;
pub(crate) mod patterns;
pub(crate) mod planning;
pub(crate) mod policy;
pub(crate) mod private_fs;
pub(crate) mod protocol;
pub(crate) mod random;
pub(crate) mod resolution;
pub(crate) mod secret_plan;
pub(crate) mod shell_quote;
pub(crate) mod stages;
pub mod state;
pub(crate) mod supervision;
pub(crate) mod tools;
pub(crate) mod vault;

use std::ffi::OsString;

use clap::Parser;

/// Runs one leasehold invocation and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    // First, before anything else runs: the environment holds the state key and the job's
    // variables, readable by same-user processes through /proc until the process is not dumpable.
    entry::harden_process();
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return entry::finish(if e.use_stderr() {
                Err(exit::FailureKind::System)
            } else {
                Ok(exit::Outcome::Success)
            });
        }
    };
    entry::dispatch(cli)
}
