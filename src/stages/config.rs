//! config_exec: tell gitlab-runner where builds go, and hand the later stages of this attempt
//! their state id and encryption key through `job_env`.

use serde_json::json;

use crate::cli::Cli;
use crate::error::Result;
use crate::executor::WrappedExecutor;
use crate::protocol::env;
use crate::state::{StateId, StateKey};

use super::load_config;

pub(super) fn run(cli: &Cli) -> Result<i32> {
    let config = load_config(cli)?;
    let executor = WrappedExecutor::from_config(&config);
    let job_id = std::env::var("CUSTOM_ENV_CI_JOB_ID").unwrap_or_default();
    let id = StateId::generate(&job_id);
    let key = StateKey::generate();
    let mut output = json!({
        "builds_dir": config.builds_dir,
        "cache_dir": config.cache_dir,
        "driver": { "name": executor.driver_name(), "version": env!("CARGO_PKG_VERSION") },
        "job_env": {
            env::STATE_ID: id.as_str(),
            env::STATE_KEY: secrecy::ExposeSecret::expose_secret(&key.to_hex()),
        },
    });
    if let Some(shared) = config.builds_dir_is_shared {
        output["builds_dir_is_shared"] = shared.into();
    }
    let text = zeroize::Zeroizing::new(output.to_string());
    drop(output);
    println!("{}", *text);
    Ok(0)
}
