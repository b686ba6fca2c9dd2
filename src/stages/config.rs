//! config_exec: tell gitlab-runner where builds go, and hand the later stages of this attempt
//! their state id and encryption key through `job_env`. With a wrapped custom driver, the
//! driver's own config JSON is merged in: its keys win, except leasehold's `job_env` entries
//! and the driver name, which says both.

use serde_json::{Value, json};

use crate::cli::Cli;
use crate::error::{Error, Result};
use crate::executor::WrappedExecutor;
use crate::exit::Outcome;
use crate::joblog;
use crate::protocol::env;
use crate::state::{StateId, StateKey};

use super::load_config;

pub(crate) async fn run(cli: &Cli) -> Result<Outcome> {
    let config = load_config(cli)?;
    let executor = WrappedExecutor::from_config(&config);
    let inner = executor.config_json().await?;
    let job_id = std::env::var("CUSTOM_ENV_CI_JOB_ID").unwrap_or_default();
    let id = StateId::generate(&job_id);
    let key = StateKey::generate();

    let mut output = match inner.clone() {
        Some(Value::Object(map)) => Value::Object(map),
        _ => json!({}),
    };
    if output.get("builds_dir").is_none() {
        output["builds_dir"] = json!(config.builds_dir);
    }
    if output.get("cache_dir").is_none() {
        output["cache_dir"] = json!(config.cache_dir);
    }
    if let (None, Some(shared)) = (
        output.get("builds_dir_is_shared"),
        config
            .builds_dir_is_shared
            .or(config.executor.kind.builds_dir_is_shared_by_default()),
    ) {
        output["builds_dir_is_shared"] = shared.into();
    }
    output["driver"] = json!({ "name": executor.driver_name(inner.as_ref()), "version": env!("CARGO_PKG_VERSION") });
    if !output.get("job_env").is_some_and(Value::is_object) {
        output["job_env"] = json!({});
    }
    output["job_env"][env::STATE_ID] = id.as_str().into();
    output["job_env"][env::STATE_KEY] = secrecy::ExposeSecret::expose_secret(&key.to_hex()).into();

    let text = zeroize::Zeroizing::new(output.to_string());
    drop(output);
    let mut text = text;
    text.push('\n');
    joblog::stdout(&text)
        .map_err(|source| Error::io("write the config JSON to", "standard output", source))?;
    Ok(Outcome::Success)
}
