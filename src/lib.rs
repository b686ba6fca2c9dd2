//! leasehold: a GitLab Runner custom executor that gives every CI job short-lived, job-scoped
//! secrets from Vault/OpenBao, injects them only into the job's own processes, masks them in the
//! job log, and revokes them when the job ends.
//!
//! gitlab-runner spawns one short-lived process per stage (`config`, `prepare`, one `run` per
//! sub-stage, `cleanup`); [`run`] is the entry point of each. Modules, one concern each:
//!
//! - [`cli`]: the command line; [`executor_config`]: the admin's TOML config;
//! - [`protocol`]: the runner's environment and stage names; [`exit`]: the exit-code table; [`job_response`]: the job
//!   payload; [`declarations`]: the job's `secrets:` YAML;
//! - [`identity`]: the ID token, its verification and claims; [`vault`]: the HTTP client;
//! - [`bindings`]: the admin's claim-based grants; [`policy`]: what jobs may declare themselves;
//!   [`job_plan`]: identity, bindings, policy and declarations combined into one plan;
//! - [`resolution`]: one login per identity, one read per path; [`state`]: private per-job state;
//! - [`lease`]: renewal while the job runs, revocation at cleanup, and the reaper for crashes;
//! - [`inject`]: the child's environment and file secrets; [`mask`]: the output masker;
//! - [`supervision`]: spawning, signals and output pumping; [`executor`]: the wrapped executors;
//! - [`stages`]: the four stage entry points and the admin tools (`reap`, `plan`, `check`);
//!   [`joblog`]: what the job log shows.

pub mod bindings;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod declarations;
pub mod error;
pub mod executor;
pub mod exit;
pub mod identity;
pub mod inject;
pub mod job_plan;
pub mod job_response;
pub mod joblog;
pub mod lease;
pub mod mask;
pub mod patterns;
pub mod policy;
pub mod protocol;
pub mod resolution;
pub mod secret_plan;
pub mod stages;
pub mod state;
pub mod supervision;
pub mod vault;

use std::ffi::OsString;

use clap::Parser;

/// Runs one leasehold invocation and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    // First, before anything else runs: the environment holds the state key and the job's
    // variables, readable by same-user processes through /proc until the process is not dumpable.
    stages::harden_process();
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return stages::finish(if e.use_stderr() {
                Err(exit::FailureKind::System)
            } else {
                Ok(exit::Outcome::Success)
            });
        }
    };
    stages::dispatch(cli)
}
