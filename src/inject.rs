//! What a sub-stage's child process receives.
//!
//! The child's environment is leasehold's own environment (which gitlab-runner built) minus
//! every `CUSTOM_ENV_*`, every `LEASEHOLD_*`, `VAULT_*` and `BAO_*` variable, `JOB_RESPONSE_FILE`
//! and `BUILD_EXIT_CODE_FILE`, plus the secrets this sub-stage is entitled to. A secret with
//! `file: true` is written to a fresh 0600 file in a 0700 directory private to this stage, and
//! the variable holds its path; the directory is removed when the stage ends. Nothing is ever
//! added to the runner's on-disk script.

use std::ffi::OsString;
use std::path::PathBuf;

use globset::{Glob, GlobSetBuilder};
use secrecy::ExposeSecret;

use crate::protocol::{BuildStage, child_base_env};
use crate::state::{JobState, PrivateState, StateError, StoredSecret, write_secret_file};

/// The environment and files for one sub-stage.
#[derive(Debug, Default)]
pub struct Injection {
    /// `(name, value)` pairs to add to the child's environment.
    pub secret_env: Vec<(OsString, OsString)>,
    /// The stage's private file-secret directory, removed when the stage ends.
    pub files_dir: Option<PathBuf>,
    /// Names of the secrets this stage receives.
    pub exposed: Vec<String>,
}

impl Injection {
    /// The child's full environment: the stripped base plus the secrets.
    pub fn child_env(&self) -> Vec<(OsString, OsString)> {
        let mut env = child_base_env();
        env.retain(|(k, _)| !self.secret_env.iter().any(|(s, _)| s == k));
        env.extend(self.secret_env.iter().cloned());
        env
    }

    /// Removes the stage's file secrets.
    pub fn remove_files(&mut self) {
        if let Some(dir) = self.files_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        self.remove_files();
    }
}

/// Whether `stage` matches any of the patterns (`*` wildcards, e.g. `step_*`).
pub fn stage_matches(patterns: &[String], stage: &BuildStage) -> bool {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        if let Ok(glob) = Glob::new(pattern) {
            builder.add(glob);
        }
    }
    builder.build().is_ok_and(|set| set.is_match(stage.as_str().as_ref()))
}

/// The secrets a stage receives.
pub fn exposed_secrets<'a>(state: &'a PrivateState, stage: &BuildStage) -> Vec<&'a StoredSecret> {
    if matches!(stage, BuildStage::Other(_)) {
        return Vec::new();
    }
    state.secrets.iter().filter(|s| stage_matches(&s.stages, stage)).collect()
}

/// Builds the injection for one stage, writing file secrets as needed.
pub fn prepare(state: &PrivateState, job: &JobState, stage: &BuildStage) -> Result<Injection, StateError> {
    let mut injection = Injection::default();
    for secret in exposed_secrets(state, stage) {
        let value = if secret.file {
            let dir = match &injection.files_dir {
                Some(dir) => dir.clone(),
                None => {
                    let dir = job.stage_files_dir(&stage.as_str())?;
                    injection.files_dir = Some(dir.clone());
                    dir
                }
            };
            let path = dir.join(&secret.name);
            write_secret_file(&path, secret.value.expose_secret().as_bytes())?;
            path.into_os_string()
        } else {
            OsString::from(secret.value.expose_secret())
        };
        injection.secret_env.push((OsString::from(&secret.name), value));
        injection.exposed.push(secret.name.clone());
    }
    Ok(injection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_exposure_patterns() {
        let defaults: Vec<String> = vec!["build_script".into(), "step_*".into(), "after_script".into()];
        for yes in ["build_script", "step_release", "after_script"] {
            assert!(stage_matches(&defaults, &BuildStage::parse(yes)), "{yes}");
        }
        for no in ["prepare_script", "get_sources", "restore_cache", "archive_cache", "upload_artifacts_on_success", "cleanup_file_variables"] {
            assert!(!stage_matches(&defaults, &BuildStage::parse(no)), "{no}");
        }
    }
}
