//! The built-in executor: run each script locally, `bash <script>`, in the stage's cwd.

use std::path::Path;

use crate::config::Config;

use super::ExecutorError;

/// Runs scripts with a local shell.
#[derive(Debug, Clone)]
pub(crate) struct ShellExecutor {
    shell: String,
}

impl ShellExecutor {
    /// A shell executor using `shell` (default `bash`).
    pub(crate) fn new(shell: &str) -> Self {
        ShellExecutor {
            shell: shell.to_owned(),
        }
    }

    /// Makes sure the builds and cache directories exist, as gitlab-runner's shell executor does.
    pub(crate) fn prepare(&self, config: &Config) -> Result<(), ExecutorError> {
        for dir in [&config.builds_dir, &config.cache_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ExecutorError::Directory {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// `bash <script>`; the stage name is not passed, as in gitlab-runner's reference driver.
    pub(crate) fn run_command(&self, script: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.shell);
        command.arg(script);
        command
    }
}
