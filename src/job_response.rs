//! The job payload gitlab-runner writes to `JOB_RESPONSE_FILE`.
//!
//! It is the runner's re-encoding of its `spec.Job` struct. Only the fields leasehold needs are
//! modelled; every other key is ignored, so a newer runner never breaks parsing. Variable values
//! (ID tokens among them) are held as [`SecretString`] from the moment they are decoded.

use std::collections::BTreeMap;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::protocol::ProtocolError;

/// The parts of the job payload leasehold uses.
#[derive(Debug, Deserialize)]
pub(crate) struct JobResponse {
    /// The job id (`CI_JOB_ID`).
    #[serde(default)]
    pub id: i64,
    /// Job metadata.
    #[serde(default)]
    pub job_info: JobInfo,
    /// Git metadata.
    #[serde(default)]
    pub git_info: GitInfo,
    /// Runner metadata: carries the job timeout.
    #[serde(default)]
    pub runner_info: RunnerInfo,
    /// Every job variable, masked ones and ID tokens included.
    #[serde(default)]
    pub variables: Vec<JobVariable>,
    /// GitLab's own `secrets:` block. gitlab-runner resolves it natively before any executor
    /// runs; leasehold only notices it is there.
    #[serde(default)]
    pub secrets: Option<BTreeMap<String, serde_json::Value>>,
}

/// `job_info` in the payload.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobInfo {
    /// `group/project`.
    #[serde(default)]
    pub project_full_path: String,
}

/// `git_info` in the payload.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GitInfo {
    /// Branch or tag name.
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    /// Whether the ref is protected.
    #[serde(default)]
    pub protected: Option<bool>,
}

/// `runner_info` in the payload.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunnerInfo {
    /// The job timeout in seconds.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// One job variable. The value is secret: it may be a masked variable or an ID token.
#[derive(Debug, Deserialize)]
pub(crate) struct JobVariable {
    /// The variable name.
    pub key: String,
    /// The value (the file's content for file-type variables).
    #[serde(default = "empty_secret")]
    pub value: SecretString,
    /// Whether it is a file-type variable.
    #[serde(default)]
    pub file: bool,
    /// Whether it is masked in the job log.
    #[serde(default)]
    pub masked: bool,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

impl JobResponse {
    /// Reads and parses the payload file.
    pub(crate) fn read(path: &Path) -> Result<Self, ProtocolError> {
        let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
            ProtocolError::JobResponse {
                path: path.to_owned(),
                detail: e.to_string(),
            }
        })?);
        Self::parse(&bytes).map_err(|detail| ProtocolError::JobResponse {
            path: path.to_owned(),
            detail,
        })
    }

    /// Parses the payload. The error text names the position, never the content.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "invalid JSON at line {} column {} ({:?})",
                e.line(),
                e.column(),
                e.classify()
            )
        })
    }

    /// The labels of this job's Vault requests (trusted: the payload, not `CUSTOM_ENV_*`).
    pub(crate) fn audit_tag(&self) -> crate::vault::AuditTag {
        crate::vault::AuditTag {
            job_id: self.id,
            project: self.job_info.project_full_path.clone(),
            pipeline_id: self
                .plain_variable("CI_PIPELINE_ID")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// The last variable of that name (gitlab-runner's lookup order: later entries win).
    pub(crate) fn variable(&self, key: &str) -> Option<&JobVariable> {
        self.variables.iter().rev().find(|v| v.key == key)
    }

    /// A non-secret variable's value as plain text (empty values count as absent).
    pub(crate) fn plain_variable(&self, key: &str) -> Option<&str> {
        self.variable(key)
            .map(|v| v.value.expose_secret())
            .filter(|v| !v.is_empty())
    }

    /// Whether a job variable of that name exists.
    pub(crate) fn has_variable(&self, key: &str) -> bool {
        self.variable(key).is_some()
    }

    /// The job timeout in seconds: `runner_info.timeout`, else `CI_JOB_TIMEOUT`, else one hour.
    pub(crate) fn timeout_secs(&self) -> u64 {
        self.runner_info
            .timeout
            .filter(|t| *t > 0)
            .or_else(|| {
                self.plain_variable("CI_JOB_TIMEOUT")
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_payload_and_ignores_unknown_keys() {
        let json = br#"{"id": 7, "token": "glcbt-x", "unknown": {"a": 1},
            "job_info": {"name": "deploy", "project_id": 42, "project_full_path": "grp/app"},
            "git_info": {"ref": "main", "protected": true},
            "runner_info": {"timeout": 600},
            "variables": [
              {"key": "A", "value": "1", "public": true},
              {"key": "A", "value": "2"},
              {"key": "VAULT_ID_TOKEN", "value": "eyJ.x.y", "masked": true}
            ]}"#;
        let job = JobResponse::parse(json).expect("parses");
        assert_eq!(job.id, 7);
        assert_eq!(job.plain_variable("A"), Some("2"));
        assert_eq!(job.timeout_secs(), 600);
        assert_eq!(job.git_info.git_ref, "main");
        assert!(job.variable("VAULT_ID_TOKEN").expect("present").masked);
    }

    #[test]
    fn parse_error_never_echoes_content() {
        let err = JobResponse::parse(br#"{"variables": [{"key": "X", "value": "s3cr3t-value"#)
            .expect_err("invalid");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            "\\PC{0,16}".prop_map(Into::into),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("variables".to_owned()),
                        Just("key".to_owned()),
                        Just("value".to_owned()),
                        Just("runner_info".to_owned()),
                        Just("timeout".to_owned()),
                        Just("secrets".to_owned()),
                        "[a-z_]{1,8}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = JobResponse::parse(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics_and_errors_name_no_content(value in json_value()) {
            let bytes = serde_json::to_vec(&value).expect("serializes");
            match JobResponse::parse(&bytes) {
                Ok(job) => { let _ = job.timeout_secs(); let _ = job.plain_variable("X"); }
                Err(e) => prop_assert!(e.starts_with("invalid JSON at line")),
            }
        }
    }
}
