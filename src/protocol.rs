//! gitlab-runner's custom-executor protocol, as the runner really drives it.
//!
//! Each stage is a fresh process. The runner passes everything through the environment:
//! `JOB_RESPONSE_FILE` (the job payload, the only trusted description of the job, because users can
//! override `CUSTOM_ENV_*`), the two failure exit codes, `BUILD_EXIT_CODE_FILE`, `TMPDIR` (the
//! per-attempt temp dir, also our cwd) and whatever `config` put into `job_env`. This module names
//! those variables, parses the sub-stage name `run` receives, and maps failures to exit codes.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Variables gitlab-runner sets for every stage process.
pub(crate) mod env {
    pub(crate) const JOB_RESPONSE_FILE: &str = "JOB_RESPONSE_FILE";
    pub(crate) use crate::exit::{
        BUILD_EXIT_CODE_FILE, BUILD_FAILURE_EXIT_CODE, SYSTEM_FAILURE_EXIT_CODE,
    };
    /// gitlab-runner's protocol variables: leasehold and every driver act on them.
    pub(crate) const RUNNER_VARIABLES: [&str; 4] = [
        JOB_RESPONSE_FILE,
        BUILD_EXIT_CODE_FILE,
        BUILD_FAILURE_EXIT_CODE,
        SYSTEM_FAILURE_EXIT_CODE,
    ];
    /// Prefix of every job variable the runner copies into a stage's environment, and of the
    /// secrets leasehold hands a custom driver with `inject = "env"`.
    pub(crate) const CUSTOM_ENV_PREFIX: &str = "CUSTOM_ENV_";
    /// Prefix of leasehold's own variables (`job_env`, the declarations variable).
    pub(crate) const LEASEHOLD_PREFIX: &str = "LEASEHOLD_";
    /// Set by `config` through `job_env`: which per-job state directory belongs to this attempt.
    pub(crate) const STATE_ID: &str = "LEASEHOLD_STATE_ID";
    /// Set by `config` through `job_env`: the key the per-job state is encrypted with. It lives
    /// only in the environment of leasehold's own stage processes, never on disk.
    pub(crate) const STATE_KEY: &str = "LEASEHOLD_STATE_KEY";
}

/// A run sub-stage name, exactly as gitlab-runner passes it as the last argument of `run_exec`.
///
/// Unknown names are accepted as [`BuildStage::Other`]: a newer runner may add stages, and
/// refusing them would fail every job on upgrade. They never receive secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BuildStage {
    /// Echoes the host name; runs before anything else.
    PrepareScript,
    /// Clones or fetches the repository.
    GetSources,
    /// Only before a second `get_sources` attempt.
    ClearWorktree,
    /// Restores the cache.
    RestoreCache,
    /// Downloads artifacts of dependencies.
    DownloadArtifacts,
    /// The job's `script:` (the runner renames `step_script` to this).
    BuildScript,
    /// Any other step, as `step_<name>`.
    Step(String),
    /// The job's `after_script:`.
    AfterScript,
    /// `archive_cache` or `archive_cache_on_failure`.
    ArchiveCache {
        /// Whether this is the `_on_failure` variant.
        on_failure: bool,
    },
    /// `upload_artifacts_on_success` or `upload_artifacts_on_failure`.
    UploadArtifacts {
        /// Whether this is the `_on_failure` variant.
        on_failure: bool,
    },
    /// Removes file-type variables at the end of the job.
    CleanupFileVariables,
    /// A stage name this version does not know.
    Other(String),
}

impl BuildStage {
    /// Parses the stage argument; never fails (see [`BuildStage::Other`]).
    pub(crate) fn parse(name: &str) -> Self {
        match name {
            "prepare_script" => BuildStage::PrepareScript,
            "get_sources" => BuildStage::GetSources,
            "clear_worktree" => BuildStage::ClearWorktree,
            "restore_cache" => BuildStage::RestoreCache,
            "download_artifacts" => BuildStage::DownloadArtifacts,
            "build_script" | "step_script" => BuildStage::BuildScript,
            "after_script" => BuildStage::AfterScript,
            "archive_cache" => BuildStage::ArchiveCache { on_failure: false },
            "archive_cache_on_failure" => BuildStage::ArchiveCache { on_failure: true },
            "upload_artifacts_on_success" => BuildStage::UploadArtifacts { on_failure: false },
            "upload_artifacts_on_failure" => BuildStage::UploadArtifacts { on_failure: true },
            "cleanup_file_variables" => BuildStage::CleanupFileVariables,
            other => match other.strip_prefix("step_") {
                Some(step) if !step.is_empty() => BuildStage::Step(step.to_owned()),
                _ => BuildStage::Other(other.to_owned()),
            },
        }
    }

    /// The name as the runner spells it, used for matching `secret_stages` patterns.
    pub(crate) fn as_str(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        Cow::Borrowed(match self {
            BuildStage::PrepareScript => "prepare_script",
            BuildStage::GetSources => "get_sources",
            BuildStage::ClearWorktree => "clear_worktree",
            BuildStage::RestoreCache => "restore_cache",
            BuildStage::DownloadArtifacts => "download_artifacts",
            BuildStage::BuildScript => "build_script",
            BuildStage::Step(name) => return Cow::Owned(format!("step_{name}")),
            BuildStage::AfterScript => "after_script",
            BuildStage::ArchiveCache { on_failure: false } => "archive_cache",
            BuildStage::ArchiveCache { on_failure: true } => "archive_cache_on_failure",
            BuildStage::UploadArtifacts { on_failure: false } => "upload_artifacts_on_success",
            BuildStage::UploadArtifacts { on_failure: true } => "upload_artifacts_on_failure",
            BuildStage::CleanupFileVariables => "cleanup_file_variables",
            BuildStage::Other(name) => return Cow::Borrowed(name),
        })
    }
}

impl fmt::Display for BuildStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The stage environment gitlab-runner provides, read once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct StageEnv {
    /// `JOB_RESPONSE_FILE`.
    pub job_response_file: Option<PathBuf>,
    /// `LEASEHOLD_STATE_ID` from `job_env`.
    pub state_id: Option<String>,
    /// `LEASEHOLD_STATE_KEY` from `job_env` (hex; secret).
    pub state_key: Option<secrecy::SecretString>,
}

impl StageEnv {
    /// Reads the stage environment of this process.
    pub(crate) fn from_env() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        StageEnv {
            job_response_file: path(env::JOB_RESPONSE_FILE),
            state_id: std::env::var(env::STATE_ID).ok().filter(|v| !v.is_empty()),
            state_key: std::env::var(env::STATE_KEY)
                .ok()
                .filter(|v| !v.is_empty())
                .map(secrecy::SecretString::from),
        }
    }

    /// The job payload path, or the error naming the missing variable.
    pub(crate) fn require_job_response_file(&self) -> Result<&PathBuf, ProtocolError> {
        self.job_response_file.as_ref().ok_or(ProtocolError::MissingVariable {
            name: env::JOB_RESPONSE_FILE,
            hint: "leasehold must be started by gitlab-runner's custom executor (or an emulator that sets the same variables)",
        })
    }
}

/// Prefixes of the variable namespaces gitlab-runner and leasehold own, with their owner.
const OWNED_PREFIXES: [(&str, &str); 6] = [
    ("CI_", "GitLab's predefined variables"),
    ("GITLAB_", "GitLab's predefined variables"),
    ("RUNNER_", "gitlab-runner's variables"),
    ("FF_", "gitlab-runner's feature flags"),
    (
        env::CUSTOM_ENV_PREFIX,
        "the job data gitlab-runner and leasehold hand to a driver",
    ),
    (env::LEASEHOLD_PREFIX, "leasehold"),
];

/// Names that the shell, the runner or the dynamic loader set or act on in every job process;
/// bash also refuses to export its read-only ones (`SHELLOPTS`, `BASHOPTS`, `BASH_VERSINFO`,
/// `EUID`, `UID`, `PPID`), so a secret could never arrive under them.
const SHELL_NAMES: [&str; 19] = [
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "BASH_VERSINFO",
    "EUID",
    "UID",
    "PPID",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "PWD",
    "OLDPWD",
];

/// Why a secret may not be called `name`, if it may not: the one list of names that belong to
/// gitlab-runner's protocol, to leasehold, to the runner's variables or to the shell, checked for
/// every secret (a job's declarations at plan time, a binding's when the config is loaded)
/// whatever the executor. The reason is a sentence that ends in the fix.
pub(crate) fn reserved_name(name: &str) -> Option<String> {
    if env::RUNNER_VARIABLES.contains(&name) {
        return Some(format!(
            "the name is reserved: it is one of gitlab-runner's custom-executor variables ({}), which leasehold and the executor act on; choose another name",
            env::RUNNER_VARIABLES.join(", ")
        ));
    }
    if let Some((prefix, owner)) = OWNED_PREFIXES.iter().find(|(p, _)| name.starts_with(p)) {
        return Some(format!(
            "the name is reserved: names starting with {prefix} belong to {owner}; choose another name"
        ));
    }
    if SHELL_NAMES.contains(&name) {
        return Some(
            "the name is reserved: the shell, the runner or the dynamic loader sets or acts on it in every job process; choose another name".into(),
        );
    }
    None
}

/// Whether an environment variable is one leasehold must never pass to a job's child process:
/// runner-to-executor plumbing, our own internal variables, and anything that would point a
/// Vault/OpenBao client at a server or token. See docs/security.md, "The child's environment".
pub(crate) fn is_stripped_from_child(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.starts_with(env::CUSTOM_ENV_PREFIX)
        || is_leasehold_or_vault(name)
        || name == env::JOB_RESPONSE_FILE
        || name == env::BUILD_EXIT_CODE_FILE
}

/// leasehold's internal variables and anything that would point a Vault client at a server or
/// token: withheld from every child, drivers included.
fn is_leasehold_or_vault(name: &str) -> bool {
    name.starts_with(env::LEASEHOLD_PREFIX)
        || name.starts_with("VAULT_")
        || name.starts_with("BAO_")
}

/// The base environment for an inner custom-executor driver: ours minus leasehold's internal
/// variables and anything that would point a Vault client at a server or token. The driver
/// keeps `CUSTOM_ENV_*` and the runner's protocol variables: it is an executor, not the job.
pub(crate) fn driver_base_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_none_or(|k| !is_leasehold_or_vault(k)))
        .collect()
}

/// The base environment for a job child: ours minus [`is_stripped_from_child`].
pub(crate) fn child_base_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| !is_stripped_from_child(k))
        .collect()
}

/// A violation of the runner protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// A variable the runner always sets is missing.
    #[error("{name} is not set; {hint}")]
    MissingVariable {
        /// The variable.
        name: &'static str,
        /// How to fix it.
        hint: &'static str,
    },
    /// The job payload could not be read or parsed.
    #[error("cannot read the job payload {path}: {detail}")]
    JobResponse {
        /// `JOB_RESPONSE_FILE`.
        path: PathBuf,
        /// What went wrong (never the file's content).
        detail: String,
    },
    /// `BUILD_EXIT_CODE_FILE` could not be written.
    #[error("cannot write BUILD_EXIT_CODE_FILE {path}: {source}")]
    ExitCodeFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runner_stage_round_trips() {
        for name in [
            "prepare_script",
            "get_sources",
            "clear_worktree",
            "restore_cache",
            "download_artifacts",
            "build_script",
            "step_release",
            "after_script",
            "archive_cache",
            "archive_cache_on_failure",
            "upload_artifacts_on_success",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
        ] {
            let stage = BuildStage::parse(name);
            assert!(
                !matches!(stage, BuildStage::Other(_)),
                "{name} parsed as unknown"
            );
            assert_eq!(stage.as_str(), name);
        }
        assert_eq!(BuildStage::parse("step_script"), BuildStage::BuildScript);
        assert_eq!(
            BuildStage::parse("step_"),
            BuildStage::Other("step_".into())
        );
        assert_eq!(
            BuildStage::parse("brand_new"),
            BuildStage::Other("brand_new".into())
        );
    }

    #[test]
    fn reserved_names_are_one_list_for_every_executor() {
        for name in [
            "JOB_RESPONSE_FILE",
            "BUILD_EXIT_CODE_FILE",
            "BUILD_FAILURE_EXIT_CODE",
            "SYSTEM_FAILURE_EXIT_CODE",
            "LEASEHOLD_STATE_KEY",
            "LEASEHOLD_SECRETS",
            "CUSTOM_ENV_CI_JOB_ID",
            "CI_JOB_TOKEN",
            "GITLAB_USER_LOGIN",
            "RUNNER_TEMP_PROJECT_DIR",
            "FF_NETWORK_PER_BUILD",
            "PATH",
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "BASHOPTS",
            "UID",
            "LD_PRELOAD",
            "TMPDIR",
        ] {
            let reason = reserved_name(name).unwrap_or_else(|| panic!("{name} is not reserved"));
            assert!(reason.ends_with("; choose another name"), "{reason}");
            assert!(!reason.contains('\n'), "{reason}");
        }
        // Everything the child filter strips as the runner's or ours is reserved as well.
        for stripped in [
            "JOB_RESPONSE_FILE",
            "BUILD_EXIT_CODE_FILE",
            "LEASEHOLD_X",
            "CUSTOM_ENV_X",
        ] {
            assert!(is_stripped_from_child(std::ffi::OsStr::new(stripped)));
            assert!(reserved_name(stripped).is_some(), "{stripped}");
        }
        // Names a driver or bash would act on but the job may own: a driver never sees them
        // bare (they reach it as CUSTOM_ENV_<NAME>), and in the job's own shell they are the
        // job's business.
        for free in [
            "PS4",
            "LD_AUDIT",
            "DOCKER_HOST",
            "APP_TOKEN",
            "VAULT_TOKEN",
            "CI",
            "PATHS",
        ] {
            assert_eq!(reserved_name(free), None, "{free}");
        }
    }

    #[test]
    fn child_env_filter() {
        use std::ffi::OsStr;
        for stripped in [
            "CUSTOM_ENV_CI_JOB_ID",
            "LEASEHOLD_STATE_KEY",
            "VAULT_TOKEN",
            "BAO_ADDR",
            "JOB_RESPONSE_FILE",
        ] {
            assert!(is_stripped_from_child(OsStr::new(stripped)), "{stripped}");
        }
        for kept in ["PATH", "HOME", "TMPDIR", "CI", "BUILD_FAILURE_EXIT_CODE"] {
            assert!(!is_stripped_from_child(OsStr::new(kept)), "{kept}");
        }
    }
}
