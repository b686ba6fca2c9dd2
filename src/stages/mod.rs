//! The four stage entry points gitlab-runner calls, in the order it calls them, and what they
//! share: the config and the job's state handles. The admin tools live beside them in
//! [`crate::tools`]; the process edge (runtime, exit status) in [`crate::entry`].

pub(crate) mod cleanup;
pub(crate) mod config;
pub(crate) mod prepare;
pub(crate) mod run;

use crate::cli::Cli;
use crate::config::Config;
use crate::error::Result;
use crate::protocol::StageEnv;
use crate::state::{StateError, StateId, StateKey};

/// Loads the executor config named by `--config`, `LEASEHOLD_CONFIG` or the default path.
pub(crate) fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::locate_and_load(cli.config.as_deref())?)
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
