//! Which image a job runs in, whether it may, and getting it onto the engine.
//!
//! The image comes from `CUSTOM_ENV_CI_JOB_IMAGE` (the job's `image:`, already expanded by the
//! runner), else the admin's `default_image`; it is checked against `allowed_images` before
//! anything else happens (no Vault login for a job that cannot run). Registry credentials come
//! from `DOCKER_AUTH_CONFIG`, the job's first and then the runner's, as gitlab-runner's own
//! docker executor takes them; they go to the engine in its `X-Registry-Auth` header only.

use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::exit::FailureKind;
use crate::patterns::Patterns;

use super::settings::PullPolicy;
use super::{DockerError, Engine};

/// The image a job's container is created from: its own `image:`, else the default.
pub(crate) fn job_image(
    from_job: Option<&str>,
    default_image: Option<&str>,
) -> Result<String, DockerError> {
    from_job
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .or(default_image)
        .map(str::to_owned)
        .ok_or(DockerError::NoImage)
}

/// Fails with the message naming the image and the setting unless `patterns` allow `image`.
pub(crate) fn check_allowed(
    image: &str,
    patterns: &Patterns,
    setting: &'static str,
) -> Result<(), DockerError> {
    if patterns.allows(image) {
        return Ok(());
    }
    Err(DockerError::NotAllowed {
        image: image.to_owned(),
        setting,
        patterns: patterns.texts().join(", "),
    })
}

/// Makes sure `image` is on the engine as `policy` says, pulling it with `auth` when needed.
pub(crate) async fn ensure(
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
    auth: &RegistryAuth,
) -> Result<(), DockerError> {
    let present = match engine.client().inspect_image(image).await {
        Ok(_) => true,
        Err(e) if super::engine::is_not_found(&e) => false,
        Err(e) => {
            return Err(engine
                .error(format!("inspect image {image}"), FailureKind::System)(
                e
            ));
        }
    };
    match (policy, present) {
        (PullPolicy::Never, true) | (PullPolicy::IfNotPresent, true) => Ok(()),
        (PullPolicy::Never, false) => Err(DockerError::NotPresent {
            image: image.to_owned(),
        }),
        (PullPolicy::IfNotPresent, false) | (PullPolicy::Always, _) => {
            pull(engine, image, auth).await
        }
    }
}

async fn pull(engine: &Engine, image: &str, auth: &RegistryAuth) -> Result<(), DockerError> {
    let (repo, tag) = split_tag(image);
    crate::joblog::info(&format!("leasehold: pulling image {image}"));
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    let mut stream =
        engine
            .client()
            .create_image(Some(options), None, auth.for_registry(registry_of(image)));
    while let Some(item) = stream.next().await {
        let Err(e) = item else { continue };
        let action = format!("pull image {image}");
        return Err(match &e {
            bollard::errors::Error::DockerStreamError { error: message }
            | bollard::errors::Error::DockerResponseServerError { message, .. } => {
                DockerError::Api {
                    host: engine.host().to_owned(),
                    action,
                    detail: message.split_whitespace().collect::<Vec<_>>().join(" "),
                    kind: pull_failure_kind(message),
                }
            }
            _ => engine.error(action, FailureKind::System)(e),
        });
    }
    Ok(())
}

fn is_missing_image(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("pull access denied") || m.contains("manifest unknown")
}

/// A registry that does not know the image (or will not show it) is the job's problem; a
/// registry that cannot be reached is the host's.
fn pull_failure_kind(detail: &str) -> FailureKind {
    if is_missing_image(detail) {
        FailureKind::Build
    } else {
        FailureKind::System
    }
}

/// `repo[:tag]` or `repo@digest` → (what to pull, tag or digest), `latest` by default (an empty
/// tag would pull every tag).
fn split_tag(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// The registry host an image reference names (`docker.io` when it names none), as docker
/// decides it: the first component is a host if it has a `.` or `:`, or is `localhost`.
pub(crate) fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Registry credentials from `DOCKER_AUTH_CONFIG` documents, the first that names a registry
/// winning.
#[derive(Default)]
pub(crate) struct RegistryAuth {
    entries: Vec<(String, String, String)>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registries: Vec<&str> = self.entries.iter().map(|(r, _, _)| r.as_str()).collect();
        f.debug_struct("RegistryAuth")
            .field("registries", &registries)
            .finish()
    }
}

#[derive(Deserialize)]
struct AuthConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl RegistryAuth {
    /// Parses the `DOCKER_AUTH_CONFIG` documents in precedence order (`None`s are skipped).
    pub(crate) fn parse(documents: &[Option<&str>]) -> Result<Self, DockerError> {
        let mut entries = Vec::new();
        for text in documents.iter().flatten().filter(|t| !t.trim().is_empty()) {
            let config: AuthConfig =
                serde_json::from_str(text).map_err(|e| DockerError::Invalid {
                    what: "DOCKER_AUTH_CONFIG",
                    detail: format!(
                        "not the JSON of a docker config.json (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                })?;
            for (registry, entry) in config.auths {
                let (user, password) = match (entry.auth, entry.username, entry.password) {
                    (Some(auth), _, _) => {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(auth.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or_else(|| DockerError::Invalid {
                                what: "DOCKER_AUTH_CONFIG",
                                detail: format!(
                                    "the auth of {registry} is not base64 of user:password"
                                ),
                            })?;
                        let (u, p) =
                            decoded
                                .split_once(':')
                                .ok_or_else(|| DockerError::Invalid {
                                    what: "DOCKER_AUTH_CONFIG",
                                    detail: format!(
                                        "the auth of {registry} is not base64 of user:password"
                                    ),
                                })?;
                        (u.to_owned(), p.to_owned())
                    }
                    (None, Some(u), Some(p)) => (u, p),
                    _ => continue,
                };
                entries.push((normalize_registry(&registry), user, password));
            }
        }
        Ok(RegistryAuth { entries })
    }

    /// The credentials for `registry`, if any document names it.
    fn for_registry(&self, registry: &str) -> Option<bollard::auth::DockerCredentials> {
        let wanted = normalize_registry(registry);
        self.entries
            .iter()
            .find(|(r, _, _)| *r == wanted)
            .map(|(r, user, password)| bollard::auth::DockerCredentials {
                username: Some(user.clone()),
                password: Some(password.clone()),
                serveraddress: Some(r.clone()),
                ..Default::default()
            })
    }
}

/// `https://index.docker.io/v1/`, `docker.io` and `registry-1.docker.io` are one registry;
/// others are compared by host (and port).
fn normalize_registry(text: &str) -> String {
    let host = text
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_image_wins_then_the_default() {
        assert_eq!(job_image(Some("a:1"), Some("b:2")).expect("job"), "a:1");
        assert_eq!(job_image(Some(" "), Some("b:2")).expect("default"), "b:2");
        assert!(matches!(job_image(None, None), Err(DockerError::NoImage)));
    }

    #[test]
    fn allowed_images_are_globs_and_the_message_names_both() {
        let patterns = Patterns::new(&["local/*", "registry.example.com/**"]).expect("globs");
        assert!(check_allowed("local/job:1", &patterns, "allowed_images").is_ok());
        assert!(check_allowed("registry.example.com/a/b:2", &patterns, "allowed_images").is_ok());
        let err = check_allowed("evil/miner:latest", &patterns, "allowed_images")
            .expect_err("not allowed")
            .to_string();
        assert!(
            err.contains("image evil/miner:latest is not allowed"),
            "{err}"
        );
        assert!(
            err.contains("[executor.docker] allowed_images (local/*, registry.example.com/**)"),
            "{err}"
        );
    }

    #[test]
    fn references_split_like_docker() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_tag("localhost:5000/a/b:1.2"),
            ("localhost:5000/a/b", "1.2")
        );
        assert_eq!(
            split_tag("localhost:5000/a/b"),
            ("localhost:5000/a/b", "latest")
        );
        assert_eq!(split_tag("a@sha256:abc"), ("a", "sha256:abc"));
        assert_eq!(registry_of("busybox:1"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(
            registry_of("registry.example.com/a/b:1"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost:5000/a"), "localhost:5000");
    }

    #[test]
    fn auth_config_job_first_and_docker_hub_aliases() {
        let job = r#"{"auths": {"registry.example.com": {"auth": "am9iOnB3MQ=="}}}"#;
        let runner = r#"{"auths": {"https://registry.example.com/v2/": {"username": "runner", "password": "pw2"},
                                   "https://index.docker.io/v1/": {"auth": "aHViOnB3Mw=="}}}"#;
        let auth = RegistryAuth::parse(&[Some(job), None, Some(runner)]).expect("valid");
        let creds = auth.for_registry("registry.example.com").expect("creds");
        assert_eq!(creds.username.as_deref(), Some("job"));
        assert_eq!(creds.password.as_deref(), Some("pw1"));
        assert_eq!(
            auth.for_registry("docker.io")
                .and_then(|c| c.username)
                .as_deref(),
            Some("hub")
        );
        assert!(auth.for_registry("other.example.com").is_none());
        assert!(
            !format!("{auth:?}").contains("pw1"),
            "Debug shows no password"
        );
        let err = RegistryAuth::parse(&[Some("{not json")])
            .expect_err("invalid")
            .to_string();
        assert!(err.starts_with("DOCKER_AUTH_CONFIG is not valid"), "{err}");
    }
}
