//! The command line, as gitlab-runner calls it through `[runners.custom]`.
//!
//! Kept free of logic so that the man page and shell completions can be generated from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// GitLab Runner custom executor that gives each CI job short-lived secrets from Vault/OpenBao
/// and revokes them when the job ends.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about, long_about = None)]
pub struct Cli {
    /// Executor config file [default: $LEASEHOLD_CONFIG, else /etc/leasehold/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The stage or tool to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// config_exec: print builds/cache dirs, driver info and job_env as JSON.
    Config,
    /// prepare_exec: verify the job, log in to Vault once, resolve its secrets into private state.
    Prepare,
    /// run_exec: run one sub-stage script with the job's secrets injected.
    Run {
        /// The script gitlab-runner generated for this sub-stage.
        script: PathBuf,
        /// The sub-stage name (build_script, after_script, …).
        stage: String,
    },
    /// cleanup_exec: revoke every lease and the Vault token, remove the job's private state.
    Cleanup,
    /// Show which secrets a job would get, from which binding or declaration, and why each
    /// binding rule did or did not match. Reads no secret and makes no Vault request.
    #[command(group(clap::ArgGroup::new("input").required(true).args(["job", "claims"])))]
    Plan {
        /// A job payload as gitlab-runner writes it to JOB_RESPONSE_FILE; its ID token is
        /// verified if `[gitlab]` is configured.
        #[arg(long, value_name = "PATH")]
        job: Option<PathBuf>,
        /// ID-token claims as a JSON object, taken as if verified (bindings only).
        #[arg(long, value_name = "PATH")]
        claims: Option<PathBuf>,
    },
    /// Validate the executor config, then check GitLab's keys and each Vault server: health,
    /// the JWT auth mount's jwks_url and bound_issuer, and the roles' bound_audiences.
    Check {
        /// A file holding a Vault token that may read `sys/auth` and `auth/<mount>/…` [default: $VAULT_TOKEN]
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
    /// Revoke what crashed or failed jobs left behind (for a systemd timer).
    Reap {
        /// Only report what would be revoked.
        #[arg(long)]
        dry_run: bool,
    },
}
