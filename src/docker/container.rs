//! The containers of one job: the job container (the job's image, the user stages), the helper
//! container (the admin's `helper_image`, every other stage) and one per service, all labelled
//! with the job's state id so that cleanup and `leasehold reap` find them without any state.
//!
//! Both stage containers bind-mount the builds and cache dirs at the host's paths (the runner's
//! scripts name those paths), get a private tmpfs for stage files (the script, file secrets:
//! memory only, never the container's layer on the host's disk) and run `--init`, so that
//! signals reach what the stages start. The helper and the services join the job container's
//! network namespace: one pod, reached on 127.0.0.1. Nothing secret is in any create-time
//! setting (environment, command, labels), which `docker inspect` shows to anyone with access
//! to the socket.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};

use crate::exit::FailureKind;
use crate::protocol::BuildStage;

use super::services::Service;
use super::settings::DockerSettings;
use super::{DockerError, Engine};

/// The job's state id (what cleanup and the reaper look containers up by).
pub(crate) const LABEL_STATE_ID: &str = "io.leasehold.state-id";
/// The state dir of the leasehold installation that made it (a reaper touches only its own).
pub(crate) const LABEL_STATE_DIR: &str = "io.leasehold.state-dir";
/// The GitLab job id.
pub(crate) const LABEL_JOB_ID: &str = "io.leasehold.job-id";
/// The project path.
pub(crate) const LABEL_PROJECT: &str = "io.leasehold.project";
/// `job`, `helper` or `service`.
pub(crate) const LABEL_ROLE: &str = "io.leasehold.role";

/// Where each stage container has its tmpfs for stage files.
pub(crate) const STAGE_ROOT: &str = "/run/leasehold";

/// Keeps a stage container alive between stages (the stages are `docker exec`s); the image's
/// own entrypoint is not used for the job and helper containers.
const KEEP_ALIVE: &str = "while :; do sleep 3600; done";

/// Which container a sub-stage runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The job's own image: `build_script`, `step_*`, `after_script`.
    Job,
    /// The helper image: everything else, unknown stages included.
    Helper,
}

impl Role {
    /// The container `stage` runs in.
    pub(crate) fn for_stage(stage: &BuildStage) -> Role {
        match stage {
            BuildStage::BuildScript | BuildStage::Step(_) | BuildStage::AfterScript => Role::Job,
            _ => Role::Helper,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::Job => "job",
            Role::Helper => "helper",
        }
    }
}

/// The names of one job attempt's containers, derived from its state id.
#[derive(Debug, Clone)]
pub(crate) struct Containers {
    state_id: String,
}

impl Containers {
    /// The containers of the job attempt `state_id`.
    pub(crate) fn new(state_id: &str) -> Self {
        Containers {
            state_id: state_id.to_owned(),
        }
    }

    /// The container name of a stage role.
    pub(crate) fn name(&self, role: Role) -> String {
        format!("leasehold-{}-{}", self.state_id, role.label())
    }

    fn service_name(&self, index: usize) -> String {
        format!("leasehold-{}-svc{index}", self.state_id)
    }
}

/// Who a job's containers belong to.
#[derive(Debug, Clone)]
pub(crate) struct Owner<'a> {
    /// The state id.
    pub state_id: &'a str,
    /// The installation's state dir.
    pub state_dir: &'a Path,
    /// The GitLab job id.
    pub job_id: i64,
    /// The project path.
    pub project: &'a str,
}

impl Owner<'_> {
    fn labels(&self, role: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_STATE_ID.to_owned(), self.state_id.to_owned()),
            (
                LABEL_STATE_DIR.to_owned(),
                self.state_dir.display().to_string(),
            ),
            (LABEL_JOB_ID.to_owned(), self.job_id.to_string()),
            (LABEL_PROJECT.to_owned(), self.project.to_owned()),
            (LABEL_ROLE.to_owned(), role.to_owned()),
        ])
    }
}

/// What a job's containers are made of.
#[derive(Debug)]
pub(crate) struct Pod<'a> {
    /// Whose they are.
    pub owner: Owner<'a>,
    /// The admin's settings.
    pub settings: &'a DockerSettings,
    /// The job's image (checked).
    pub image: &'a str,
    /// The builds dir (mounted at the same path).
    pub builds_dir: &'a Path,
    /// The cache dir (mounted at the same path).
    pub cache_dir: &'a Path,
    /// The job's services (checked).
    pub services: &'a [Service],
}

impl Pod<'_> {
    fn binds(&self) -> Vec<String> {
        let mut binds = vec![
            format!("{0}:{0}", self.builds_dir.display()),
            format!("{0}:{0}", self.cache_dir.display()),
        ];
        binds.extend(self.settings.volumes.iter().cloned());
        binds
    }

    fn stage_tmpfs() -> HashMap<String, String> {
        HashMap::from([(
            STAGE_ROOT.to_owned(),
            "rw,nosuid,nodev,noexec,mode=1777,size=64m".to_owned(),
        )])
    }

    fn job_container(&self) -> ContainerCreateBody {
        let s = self.settings;
        let hosts: Vec<String> = self
            .services
            .iter()
            .flat_map(Service::host_names)
            .map(|name| format!("{name}:127.0.0.1"))
            .collect();
        ContainerCreateBody {
            image: Some(self.image.to_owned()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), KEEP_ALIVE.into()]),
            cmd: Some(Vec::new()),
            user: s.user.clone(),
            labels: Some(self.owner.labels(Role::Job.label())),
            host_config: Some(HostConfig {
                init: Some(true),
                binds: Some(self.binds()),
                tmpfs: Some(Self::stage_tmpfs()),
                network_mode: s.network_mode.clone(),
                privileged: Some(s.privileged),
                cap_drop: (!s.cap_drop.is_empty()).then(|| s.cap_drop.clone()),
                cap_add: (!s.cap_add.is_empty()).then(|| s.cap_add.clone()),
                memory: s.memory,
                nano_cpus: s.nano_cpus,
                pids_limit: s.pids_limit,
                extra_hosts: (!hosts.is_empty()).then_some(hosts),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn helper_container(&self, job: &str) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.settings.helper_image.clone()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), KEEP_ALIVE.into()]),
            cmd: Some(Vec::new()),
            labels: Some(self.owner.labels(Role::Helper.label())),
            host_config: Some(HostConfig {
                init: Some(true),
                binds: Some(self.binds()),
                tmpfs: Some(Self::stage_tmpfs()),
                network_mode: Some(format!("container:{job}")),
                privileged: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service_container(&self, service: &Service, job: &str) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(service.name.clone()),
            entrypoint: service.entrypoint.clone(),
            cmd: service.command.clone(),
            env: Some(
                service
                    .variables
                    .iter()
                    .map(|v| format!("{}={}", v.key, v.value))
                    .collect(),
            ),
            labels: Some(self.owner.labels("service")),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode: Some(format!("container:{job}")),
                privileged: Some(false),
                cap_drop: (!self.settings.cap_drop.is_empty())
                    .then(|| self.settings.cap_drop.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates and starts the job container, the helper container and the services, in that
    /// order (the others join the job container's network). What was created before a failure
    /// stays for cleanup, which removes every container with the job's label.
    pub(crate) async fn start(&self, engine: &Engine) -> Result<(), DockerError> {
        let names = Containers::new(self.owner.state_id);
        let job = names.name(Role::Job);
        create_and_start(engine, &job, self.job_container()).await?;
        let helper = names.name(Role::Helper);
        create_and_start(engine, &helper, self.helper_container(&job)).await?;
        for (index, service) in self.services.iter().enumerate() {
            create_and_start(
                engine,
                &names.service_name(index),
                self.service_container(service, &job),
            )
            .await?;
        }
        Ok(())
    }
}

async fn create_and_start(
    engine: &Engine,
    name: &str,
    body: ContainerCreateBody,
) -> Result<(), DockerError> {
    let image = body.image.clone().unwrap_or_default();
    engine
        .client()
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(engine.error(
            format!("create container {name} from {image}"),
            FailureKind::Build,
        ))?;
    engine
        .client()
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(engine.error(format!("start container {name}"), FailureKind::System))
}

/// A container leasehold made, as listed by the engine.
#[derive(Debug, Clone)]
pub(crate) struct Labelled {
    /// The container id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The job attempt it belongs to.
    pub state_id: String,
}

/// Every container made by the installation with `state_dir`, or only those of `state_id`.
pub(crate) async fn list(
    engine: &Engine,
    state_dir: &Path,
    state_id: Option<&str>,
) -> Result<Vec<Labelled>, DockerError> {
    let mut labels = vec![format!("{LABEL_STATE_DIR}={}", state_dir.display())];
    if let Some(id) = state_id {
        labels.push(format!("{LABEL_STATE_ID}={id}"));
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_owned(), labels)])),
        ..Default::default()
    };
    let found = engine
        .client()
        .list_containers(Some(options))
        .await
        .map_err(engine.error("list containers", FailureKind::System))?;
    Ok(found
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some(Labelled {
                id: c.id?,
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                state_id: labels.get(LABEL_STATE_ID)?.clone(),
            })
        })
        .collect())
}

/// Force-removes `containers` with their anonymous volumes (and so their tmpfs), all at once
/// (each removal waits for its container's processes to be killed). Returns the names removed;
/// one that is already gone counts as removed.
pub(crate) async fn remove(
    engine: &Engine,
    containers: Vec<Labelled>,
) -> Result<Vec<String>, DockerError> {
    let removals = containers.iter().map(|container| async move {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match engine
            .client()
            .remove_container(&container.id, Some(options))
            .await
        {
            Ok(()) => Ok(container.name.clone()),
            Err(e) if super::engine::is_not_found(&e) => Ok(container.name.clone()),
            Err(e) => Err(engine.error(
                format!("remove container {}", container.name),
                FailureKind::System,
            )(e)),
        }
    });
    futures_util::future::join_all(removals)
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_stages_run_in_the_job_container_and_the_rest_in_the_helper() {
        for stage in ["build_script", "step_release", "after_script"] {
            assert_eq!(
                Role::for_stage(&BuildStage::parse(stage)),
                Role::Job,
                "{stage}"
            );
        }
        for stage in [
            "prepare_script",
            "get_sources",
            "clear_worktree",
            "restore_cache",
            "download_artifacts",
            "archive_cache",
            "archive_cache_on_failure",
            "upload_artifacts_on_success",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
            "some_future_stage",
        ] {
            assert_eq!(
                Role::for_stage(&BuildStage::parse(stage)),
                Role::Helper,
                "{stage}"
            );
        }
    }

    #[test]
    fn the_job_container_has_no_environment_and_the_admins_limits() {
        let settings = crate::docker::settings::check(
            toml::from_str(
                "helper_image = \"h:1\"\nnetwork_mode = \"none\"\ncap_drop = [\"NET_RAW\"]\nmemory = \"1g\"\npids_limit = 50\nvolumes = [\"/src:/src:ro\"]\nuser = \"1000\"\n",
            )
            .expect("toml"),
        )
        .expect("valid");
        let services = super::super::services::parse(Some(r#"[{"name":"db:1","alias":"db"}]"#))
            .expect("services");
        let pod = Pod {
            owner: Owner {
                state_id: "j1-00",
                state_dir: Path::new("/run/lh"),
                job_id: 1,
                project: "grp/app",
            },
            settings: &settings,
            image: "img:1",
            builds_dir: Path::new("/b"),
            cache_dir: Path::new("/c"),
            services: &services,
        };
        let job = pod.job_container();
        assert_eq!(job.env, None, "nothing in the create-time environment");
        assert_eq!(job.user.as_deref(), Some("1000"));
        let host = job.host_config.expect("host config");
        assert_eq!(host.init, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.memory, Some(1 << 30));
        assert_eq!(host.pids_limit, Some(50));
        assert_eq!(
            host.binds.as_deref(),
            Some(
                &[
                    "/b:/b".to_owned(),
                    "/c:/c".to_owned(),
                    "/src:/src:ro".to_owned()
                ][..]
            )
        );
        assert!(host.tmpfs.expect("tmpfs").contains_key(STAGE_ROOT));
        assert_eq!(
            host.extra_hosts.as_deref(),
            Some(&["db:127.0.0.1".to_owned()][..])
        );
        let helper = pod.helper_container("leasehold-j1-00-job");
        assert_eq!(helper.image.as_deref(), Some("h:1"));
        assert_eq!(
            helper.host_config.and_then(|h| h.network_mode).as_deref(),
            Some("container:leasehold-j1-00-job")
        );
        let svc = pod.service_container(&services[0], "leasehold-j1-00-job");
        assert_eq!(
            svc.env.as_deref(),
            Some(&[][..]),
            "a service gets only its variables"
        );
        assert_eq!(
            svc.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_STATE_ID))
                .map(String::as_str),
            Some("j1-00")
        );
    }
}
