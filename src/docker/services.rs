//! The job's `services:`, as gitlab-runner passes them in `CUSTOM_ENV_CI_JOB_SERVICES`: a JSON
//! array of `{name, alias, entrypoint, command, variables}` (empty or unset: none).
//!
//! Each service becomes a container sharing the job container's network namespace, so the job
//! reaches it on 127.0.0.1 (and by its alias, which leasehold maps to 127.0.0.1 in the job
//! container's /etc/hosts), like containers of one Kubernetes pod. A service gets its own
//! `variables:` and nothing else: never the job's secrets.

use serde::Deserialize;

use super::DockerError;

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Service {
    /// The image.
    pub name: String,
    /// The host names it should be reachable as (`alias:`, comma or space separated).
    #[serde(default)]
    pub alias: Option<String>,
    /// Replaces the image's entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The service's own `variables:`.
    #[serde(default)]
    pub variables: Vec<ServiceVariable>,
}

/// One of a service's `variables:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ServiceVariable {
    /// Name.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

impl Service {
    /// The host names the job reaches it by: its aliases, and the names gitlab-runner derives
    /// from the image (`a/b-c:1` → `a__b-c` and `a-b-c`).
    pub(crate) fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .alias
            .iter()
            .flat_map(|a| a.split([',', ' ']))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        let repo = self.name.split(['@']).next().unwrap_or_default();
        let last_slash = repo.rfind('/').map_or(0, |i| i + 1);
        let repo = match repo[last_slash..].rfind(':') {
            Some(i) => &repo[..last_slash + i],
            None => repo,
        };
        names.push(repo.replace('/', "__"));
        names.push(repo.replace('/', "-"));
        names.retain(|n| is_host_name(n));
        names.dedup();
        names
    }
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Parses `CUSTOM_ENV_CI_JOB_SERVICES`.
pub(crate) fn parse(text: Option<&str>) -> Result<Vec<Service>, DockerError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let services: Option<Vec<Service>> =
        serde_json::from_str(text).map_err(|e| DockerError::Invalid {
            what: "CUSTOM_ENV_CI_JOB_SERVICES",
            detail: format!(
                "not a JSON list of services (line {}, column {}: {})",
                e.line(),
                e.column(),
                e.classify_message()
            ),
        })?;
    let services = services.unwrap_or_default();
    if let Some(empty) = services.iter().position(|s| s.name.trim().is_empty()) {
        return Err(DockerError::Invalid {
            what: "CUSTOM_ENV_CI_JOB_SERVICES",
            detail: format!("service {} has no image name", empty + 1),
        });
    }
    Ok(services)
}

trait Classify {
    fn classify_message(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected field type",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_runner_sends() {
        assert!(parse(None).expect("unset").is_empty());
        assert!(parse(Some("")).expect("empty").is_empty());
        assert!(parse(Some("null")).expect("null").is_empty());
        let services = parse(Some(
            r#"[{"name":"tutum/wordpress:1","alias":"wp, blog","entrypoint":null,"command":["httpd","-f"],
                "variables":[{"key":"PORT","value":"8080"}]}]"#,
        ))
        .expect("valid");
        assert_eq!(services.len(), 1);
        assert_eq!(
            services[0].command.as_deref(),
            Some(&["httpd".to_owned(), "-f".to_owned()][..])
        );
        assert_eq!(services[0].variables[0].key, "PORT");
        assert_eq!(
            services[0].host_names(),
            ["wp", "blog", "tutum__wordpress", "tutum-wordpress"]
        );
        let err = parse(Some("[{\"alias\": \"x\"}]"))
            .expect_err("no name")
            .to_string();
        assert!(
            err.starts_with("CUSTOM_ENV_CI_JOB_SERVICES is not valid"),
            "{err}"
        );
        assert!(parse(Some("[{\"name\": \" \"}]")).is_err());
    }
}
