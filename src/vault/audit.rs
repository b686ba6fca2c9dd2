//! Which job a request is for, as Vault's audit log sees it.
//!
//! Why: an auditor must be able to list one job's logins, reads, renewals and revocations from
//! the audit log alone. Every request leasehold makes for a job carries `X-Correlation-ID: <job
//! id>` (Vault ≥ 1.17 audits it un-HMAC'd by default; OpenBao once the header is configured,
//! docs/vault-setup.md) and `X-Leasehold-Job` with project, pipeline and job. Neither is a
//! secret, and neither decides anything: they are labels, taken from the trusted job payload.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// The correlation header Vault and OpenBao know.
pub(crate) const CORRELATION_HEADER: &str = "x-correlation-id";
/// leasehold's own header: `project=<path>; pipeline=<id>; job=<id>`.
pub(crate) const JOB_HEADER: &str = "x-leasehold-job";

/// The labels of one job's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTag {
    /// GitLab's job id.
    pub job_id: i64,
    /// The project's full path.
    pub project: String,
    /// The pipeline id (0 when unknown).
    pub pipeline_id: i64,
}

impl AuditTag {
    /// `X-Leasehold-Job`'s value.
    pub(crate) fn job_header(&self) -> String {
        format!(
            "project={}; pipeline={}; job={}",
            self.project, self.pipeline_id, self.job_id
        )
    }

    /// Adds both headers. A project path that cannot be a header value (it came from GitLab,
    /// so this does not happen in practice) drops only that header: a label never fails a
    /// request.
    pub(crate) fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(
            HeaderName::from_static(CORRELATION_HEADER),
            HeaderValue::from(self.job_id),
        );
        if let Ok(value) = HeaderValue::from_str(&self.job_header()) {
            headers.insert(HeaderName::from_static(JOB_HEADER), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_headers_name_the_job_and_a_bad_project_drops_only_its_own() {
        let tag = AuditTag {
            job_id: 4711,
            project: "grp/app".into(),
            pipeline_id: 99,
        };
        let mut headers = HeaderMap::new();
        tag.insert_into(&mut headers);
        assert_eq!(headers[CORRELATION_HEADER], "4711");
        assert_eq!(
            headers[JOB_HEADER],
            "project=grp/app; pipeline=99; job=4711"
        );
        let odd = AuditTag {
            project: "a\nb".into(),
            ..tag
        };
        let mut headers = HeaderMap::new();
        odd.insert_into(&mut headers);
        assert_eq!(headers[CORRELATION_HEADER], "4711");
        assert!(headers.get(JOB_HEADER).is_none());
    }
}
