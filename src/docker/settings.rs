//! `[executor.docker]`, checked: what the docker executor may create.
//!
//! Compiled once with the rest of the config ([`crate::config`] calls [`check`]), so an invalid
//! glob, limit or missing helper image is a config error naming its key, not a failed job.

use crate::config_file::DockerSection;
pub(crate) use crate::config_file::PullPolicy;
use crate::patterns::Patterns;

/// Where the engine listens when neither `host` nor `DOCKER_HOST` says otherwise.
pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The checked `[executor.docker]`.
#[derive(Debug, Clone)]
pub(crate) struct DockerSettings {
    /// The engine's address as configured (`None`: `DOCKER_HOST`, else [`DEFAULT_HOST`]).
    pub host: Option<String>,
    /// The image of a job that names none.
    pub default_image: Option<String>,
    /// The image of the helper container.
    pub helper_image: String,
    /// When images are pulled.
    pub pull_policy: PullPolicy,
    /// The images a job may name (empty: any).
    pub allowed_images: Patterns,
    /// The images a service may use (empty: any).
    pub allowed_services: Patterns,
    /// The job container's network mode (`None`: the engine's default).
    pub network_mode: Option<String>,
    /// Whether the job container is privileged.
    pub privileged: bool,
    /// Capabilities dropped from the job container.
    pub cap_drop: Vec<String>,
    /// Capabilities added to the job container.
    pub cap_add: Vec<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Process limit.
    pub pids_limit: Option<i64>,
    /// Extra binds of the job and helper containers (`src:dst[:opts]`).
    pub volumes: Vec<String>,
    /// The user the job's stages run as.
    pub user: Option<String>,
}

impl DockerSettings {
    /// The engine address to use: `host`, else `DOCKER_HOST`, else the default socket.
    pub(crate) fn engine_host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned())
    }
}

/// Checks the raw table; the error names the key.
pub(crate) fn check(section: DockerSection) -> Result<DockerSettings, String> {
    let key = |k: &str| format!("[executor.docker] {k}");
    let helper_image = section
        .helper_image
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| format!("{} is required: the image the non-user stages (get_sources, caches, artifacts) run in, with bash and git", key("helper_image")))?;
    if let Some(host) = &section.host
        && !(host.starts_with("unix://")
            || host.starts_with("tcp://")
            || host.starts_with("http://"))
    {
        return Err(format!(
            "{} {host:?} must start with unix:// or tcp://",
            key("host")
        ));
    }
    let allowed_images = Patterns::new(&section.allowed_images)
        .map_err(|e| format!("{}: {e}", key("allowed_images")))?;
    let allowed_services = match &section.allowed_services {
        Some(list) => {
            Patterns::new(list).map_err(|e| format!("{}: {e}", key("allowed_services")))?
        }
        None => allowed_images.clone(),
    };
    if let Some(image) = &section.default_image
        && !allowed_images.allows(image)
    {
        return Err(format!(
            "{} {image} is not in allowed_images",
            key("default_image")
        ));
    }
    let memory = section
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .map_err(|e| format!("{}: {e}", key("memory")))?;
    let nano_cpus = match section.cpus {
        Some(cpus) if cpus.is_finite() && cpus > 0.0 && cpus <= 4096.0 => {
            Some((cpus * 1e9).round() as i64)
        }
        Some(cpus) => {
            return Err(format!(
                "{} {cpus} must be a positive number of CPUs",
                key("cpus")
            ));
        }
        None => None,
    };
    if let Some(pids) = section.pids_limit
        && pids < 1
    {
        return Err(format!("{} {pids} must be at least 1", key("pids_limit")));
    }
    for volume in &section.volumes {
        let parts: Vec<&str> = volume.split(':').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "{} entry {volume:?} must be /host/path:/container/path[:ro] or /container/path",
                key("volumes")
            ));
        }
    }
    Ok(DockerSettings {
        host: section.host,
        default_image: section.default_image.filter(|i| !i.trim().is_empty()),
        helper_image,
        pull_policy: section.pull_policy,
        allowed_images,
        allowed_services,
        network_mode: section.network_mode.filter(|n| !n.is_empty()),
        privileged: section.privileged,
        cap_drop: section.cap_drop,
        cap_add: section.cap_add,
        memory,
        nano_cpus,
        pids_limit: section.pids_limit,
        volumes: section.volumes,
        user: section.user.filter(|u| !u.is_empty()),
    })
}

/// `512m`, `2g`, `1024k`, `100b` or a plain byte count (binary units, as `docker run -m`).
fn parse_bytes(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t.as_str(), ""),
    };
    let scale: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{text:?} is not a size like 512m or 2g")),
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n >= 6 << 20)
        .ok_or_else(|| format!("{text:?} is not a size of at least 6m (like 512m or 2g)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Result<DockerSettings, String> {
        let section: DockerSection =
            toml::from_str(&format!("helper_image = \"local/helper:1\"\n{extra}"))
                .map_err(|e| e.to_string())?;
        check(section)
    }

    #[test]
    fn defaults_and_limits() {
        let s = section("memory = \"512m\"\ncpus = 1.5\npids_limit = 100\n").expect("valid");
        assert_eq!(s.pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(s.memory, Some(512 << 20));
        assert_eq!(s.nano_cpus, Some(1_500_000_000));
        assert!(!s.privileged);
        assert!(s.allowed_images.allows("anything/at:all"));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("7340032"), Ok(7 << 20));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("1k").is_err(), "below docker's minimum");
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let no_helper: DockerSection = toml::from_str("").expect("empty table");
        assert!(
            check(no_helper)
                .expect_err("required")
                .contains("helper_image")
        );
        for (extra, key) in [
            ("allowed_images = [\"a[\"]", "allowed_images"),
            ("memory = \"lots\"", "memory"),
            ("cpus = -1.0", "cpus"),
            ("pids_limit = 0", "pids_limit"),
            ("volumes = [\"a:b:c:d\"]", "volumes"),
            ("host = \"/var/run/docker.sock\"", "host"),
            ("pull_policy = \"sometimes\"", "pull_policy"),
            (
                "default_image = \"x\"\nallowed_images = [\"y/*\"]",
                "default_image",
            ),
        ] {
            let err = section(extra).expect_err(extra);
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn services_fall_back_to_allowed_images() {
        let s = section("allowed_images = [\"local/*\"]").expect("valid");
        assert!(s.allowed_services.allows("local/redis:7"));
        assert!(!s.allowed_services.allows("docker.io/library/redis:7"));
        let s = section("allowed_images = [\"local/*\"]\nallowed_services = [\"svc/*\"]")
            .expect("valid");
        assert!(s.allowed_services.allows("svc/db:1"));
        assert!(!s.allowed_services.allows("local/redis:7"));
    }
}
