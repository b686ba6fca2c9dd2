//! The docker executor: each job in its own container, on a Docker engine.
//!
//! prepare creates the job's containers (the job's image for the user stages, the admin's
//! helper image for the others, one per service); each run stage is a `docker exec` whose
//! script and secrets arrive over stdin ([`crate::docker::stage`]); cleanup removes every
//! container with the job's label. The job's image and services are checked before prepare
//! logs in to Vault, so a disallowed image costs no login. Output is masked like the shell
//! executor's, and a stop signal to `leasehold run` stops the stage's processes inside the
//! container (SIGTERM to its process group there; a second signal, SIGKILL).

use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use bollard::container::LogOutput;
use futures_util::StreamExt;

use crate::docker::container::{self, Owner, Pod};
use crate::docker::image::{self, RegistryAuth};
use crate::docker::services::{self, Service};
use crate::docker::stage::{self, StageDir, Target};
use crate::docker::{Containers, DockerError, DockerSettings, Engine, Role};
use crate::joblog;
use crate::mask::MaskSet;
use crate::protocol::BuildStage;
use crate::state::StoredSecret;
use crate::supervision::StopSignals;

use super::ExecutorError;

/// The job's image, as the runner passes it.
const JOB_IMAGE: &str = "CUSTOM_ENV_CI_JOB_IMAGE";
/// The job's services, as the runner passes them.
const JOB_SERVICES: &str = "CUSTOM_ENV_CI_JOB_SERVICES";
/// Registry credentials: the runner's own environment, and the job's variable.
const AUTH_CONFIG: &str = "DOCKER_AUTH_CONFIG";
const JOB_AUTH_CONFIG: &str = "CUSTOM_ENV_DOCKER_AUTH_CONFIG";

/// The docker executor.
#[derive(Debug, Clone)]
pub(crate) struct DockerExecutor {
    settings: DockerSettings,
}

/// What a job asked for, checked against the admin's settings, and the engine that answered.
#[derive(Debug)]
pub(crate) struct CheckedJob {
    engine: Engine,
    image: String,
    services: Vec<Service>,
}

/// A stage ready to start: where it runs and the stage file it gets.
pub(crate) struct PreparedStage {
    container: String,
    user: Option<String>,
    dir: StageDir,
    payload: zeroize::Zeroizing<Vec<u8>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl DockerExecutor {
    /// The executor for these settings.
    pub(crate) fn new(settings: DockerSettings) -> Self {
        DockerExecutor { settings }
    }

    async fn engine(&self) -> Result<Engine, DockerError> {
        Engine::connect(&self.settings.engine_host()).await
    }

    /// The job's image and services are allowed and the engine answers: checked before any
    /// Vault login.
    pub(crate) async fn check_job(&self) -> Result<CheckedJob, DockerError> {
        let s = &self.settings;
        let image = image::job_image(env(JOB_IMAGE).as_deref(), s.default_image.as_deref())?;
        image::check_allowed(&image, &s.allowed_images, "allowed_images")?;
        let services = services::parse(env(JOB_SERVICES).as_deref())?;
        for service in &services {
            image::check_allowed(&service.name, &s.allowed_services, "allowed_services")?;
        }
        let engine = self.engine().await?;
        Ok(CheckedJob {
            engine,
            image,
            services,
        })
    }

    /// Pulls what the pull policy says and starts the job's containers.
    pub(crate) async fn prepare(
        &self,
        job: CheckedJob,
        owner: Owner<'_>,
        builds_dir: &Path,
        cache_dir: &Path,
    ) -> Result<(), ExecutorError> {
        let s = &self.settings;
        for dir in [builds_dir, cache_dir] {
            std::fs::create_dir_all(dir).map_err(|source| ExecutorError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        let runner_auth = RegistryAuth::parse(&[env(AUTH_CONFIG).as_deref()])?;
        let job_auth =
            RegistryAuth::parse(&[env(JOB_AUTH_CONFIG).as_deref(), env(AUTH_CONFIG).as_deref()])?;
        let engine = &job.engine;
        image::ensure(engine, &s.helper_image, s.pull_policy, &runner_auth).await?;
        image::ensure(engine, &job.image, s.pull_policy, &job_auth).await?;
        for service in &job.services {
            image::ensure(engine, &service.name, s.pull_policy, &job_auth).await?;
        }
        let names = Containers::new(owner.state_id);
        let pod = Pod {
            owner,
            settings: s,
            image: &job.image,
            builds_dir,
            cache_dir,
            services: &job.services,
        };
        pod.start(engine).await?;
        let services: Vec<&str> = job.services.iter().map(|s| s.name.as_str()).collect();
        joblog::info(&format!(
            "leasehold: job container {} from {}, helper container from {}{}",
            names.name(Role::Job),
            job.image,
            s.helper_image,
            if services.is_empty() {
                String::new()
            } else {
                format!(", services {}", services.join(", "))
            }
        ));
        Ok(())
    }

    /// Where `stage` of the job attempt `state_id` runs, and its stage file: `secrets` and
    /// the runner's `script`.
    pub(crate) fn prepare_stage(
        &self,
        state_id: &str,
        stage: &BuildStage,
        script: &Path,
        secrets: &[&StoredSecret],
    ) -> Result<PreparedStage, ExecutorError> {
        let role = Role::for_stage(stage);
        let body = std::fs::read(script).map_err(|source| ExecutorError::Script {
            path: script.to_owned(),
            source,
        })?;
        let dir = StageDir::new(&stage.as_str());
        let payload = stage::stage_file(&dir, secrets, &body)?;
        Ok(PreparedStage {
            container: Containers::new(state_id).name(role),
            user: match role {
                Role::Job => self.settings.user.clone(),
                Role::Helper => None,
            },
            dir,
            payload,
        })
    }

    /// Runs a prepared stage to its end with its output masked by `mask` while `background`
    /// (lease renewal) runs; a stop signal stops the stage's processes in the container.
    /// Returns the stage's exit code.
    pub(crate) async fn run_stage(
        &self,
        prepared: PreparedStage,
        mask: Option<Arc<MaskSet>>,
        background: impl Future<Output = ()>,
    ) -> Result<i32, ExecutorError> {
        let mut signals = StopSignals::listen().map_err(|source| ExecutorError::Spawn {
            program: "the stage's signal handlers".into(),
            source,
        })?;
        let engine = self.engine().await?;
        let target = Target {
            container: &prepared.container,
            user: prepared.user.as_deref(),
            dir: &prepared.dir,
        };
        let running = stage::start(&engine, &target, &prepared.payload).await?;
        drop(prepared.payload);
        let mut output = running.output;
        let mut sink = Sink::new(mask.as_deref());
        let mut stops = 0usize;
        let mut stream_failed = false;
        tokio::pin!(background);
        let mut background_done = false;
        loop {
            tokio::select! {
                frame = output.next() => match frame {
                    Some(Ok(frame)) => sink.write(frame),
                    Some(Err(e)) => {
                        joblog::warning(&format!("the stage's output from {} broke off: {e}", prepared.container));
                        stream_failed = true;
                        break;
                    }
                    None => break,
                },
                signal = signals.recv() => {
                    stops += 1;
                    let name = if stops == 1 { signal.as_str().trim_start_matches("SIG") } else { "KILL" };
                    if let Err(e) = stage::signal(&engine, &target, name).await {
                        joblog::warning(&format!("could not stop the stage in {}: {e}", prepared.container));
                    }
                }
                () = &mut background, if !background_done => background_done = true,
            }
        }
        sink.finish();
        let code = stage::exit_code(&engine, &running.exec_id).await?;
        // The bootstrap deletes the stage directory itself unless it was killed.
        if stops > 0 || stream_failed || code == 137 || code < 0 {
            let _ = stage::remove_dir(&engine, &target).await;
        }
        Ok(code)
    }

    /// Removes every container of the job attempt `state_id`; returns their names.
    pub(crate) async fn cleanup(
        &self,
        state_dir: &Path,
        state_id: &str,
    ) -> Result<Vec<String>, DockerError> {
        let engine = self.engine().await?;
        let found = container::list(&engine, state_dir, Some(state_id)).await?;
        container::remove(&engine, found).await
    }

    /// Removes the containers of this installation whose job attempt `is_over` says is over
    /// (its state gone or expired); with `dry_run`, only names them.
    pub(crate) async fn reap(
        &self,
        state_dir: &Path,
        is_over: impl Fn(&str) -> bool,
        dry_run: bool,
    ) -> Result<Vec<(String, String)>, DockerError> {
        let engine = self.engine().await?;
        let over: Vec<_> = container::list(&engine, state_dir, None)
            .await?
            .into_iter()
            .filter(|c| is_over(&c.state_id))
            .collect();
        let named: Vec<(String, String)> = over
            .iter()
            .map(|c| (c.state_id.clone(), c.name.clone()))
            .collect();
        if !dry_run {
            container::remove(&engine, over).await?;
        }
        Ok(named)
    }
}

/// Where a stage's output goes: through the masker (stdout and stderr as one stream, in order,
/// as the shell executor merges them) or straight to stdout and stderr.
struct Sink<'a> {
    stream: Option<crate::mask::StreamMasker<'a>>,
    out: Vec<u8>,
}

impl<'a> Sink<'a> {
    fn new(mask: Option<&'a MaskSet>) -> Self {
        Sink {
            stream: mask.map(MaskSet::stream),
            out: Vec::with_capacity(64 * 1024),
        }
    }

    fn write(&mut self, frame: LogOutput) {
        let (bytes, to_stderr) = match &frame {
            LogOutput::StdErr { message } => (message, true),
            LogOutput::StdOut { message }
            | LogOutput::Console { message }
            | LogOutput::StdIn { message } => (message, false),
        };
        match &mut self.stream {
            Some(stream) => {
                self.out.clear();
                stream.push(bytes, &mut self.out);
                emit(&self.out, false);
            }
            None => emit(bytes, to_stderr),
        }
    }

    fn finish(&mut self) {
        if let Some(stream) = &mut self.stream {
            self.out.clear();
            stream.finish(&mut self.out);
            emit(&self.out, false);
        }
    }
}

fn emit(bytes: &[u8], to_stderr: bool) {
    if bytes.is_empty() {
        return;
    }
    let _ = if to_stderr {
        let mut lock = std::io::stderr().lock();
        lock.write_all(bytes).and_then(|()| lock.flush())
    } else {
        let mut lock = std::io::stdout().lock();
        lock.write_all(bytes).and_then(|()| lock.flush())
    };
}
