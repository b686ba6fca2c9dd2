//! The job payload gitlab-runner writes to `JOB_RESPONSE_FILE` (`response.json`).
//!
//! [`JobBuilder`] produces the runner's re-encoding of `spec.Job` (reference §6): `id`, `token`,
//! `job_info`, `git_info`, `runner_info`, `variables` (`{key,value,public,file,masked,raw}`, the
//! predefined `CI_*` ones first), `steps` (`script`, `after_script`, extra steps), `cache`,
//! `artifacts`, `dependencies`, `features`, and `secrets` when set. Its defaults match the
//! [`super::Issuer`]'s default claims (project `grp/app` id 42, ref `main` protected, job 1001),
//! so a token minted with no overrides fits the job.
//!
//! ```ignore
//! let job = JobBuilder::new()
//!     .id_token("VAULT_ID_TOKEN", &issuer.mint(json!({})))
//!     .secrets_yaml("DB_PASSWORD: {vault: kv/app/db#password}")
//!     .variable("GREETING", "hello")
//!     .file_variable("KUBECONFIG", "apiVersion: v1\n")
//!     .script(["echo $GREETING", "cat $KUBECONFIG"])
//!     .after_script(["echo done"]);
//! ```

use serde_json::{Value, json};

use super::issuer::{DEFAULT_JOB_ID, DEFAULT_PROJECT_ID, DEFAULT_PROJECT_PATH, DEFAULT_REF};

/// The variable leasehold reads its secret declarations from.
pub const SECRETS_VARIABLE: &str = "LEASEHOLD_SECRETS";

/// One job variable, as in the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    /// Name.
    pub key: String,
    /// Value (for a file variable: the file's content).
    pub value: String,
    /// Visible in the UI.
    pub public: bool,
    /// File-type variable.
    pub file: bool,
    /// Masked in the job log.
    pub masked: bool,
    /// Not `$VAR`-expanded by the runner.
    pub raw: bool,
}

impl Variable {
    /// A plain, public variable.
    pub fn public(key: &str, value: &str) -> Variable {
        Variable {
            key: key.into(),
            value: value.into(),
            public: true,
            file: false,
            masked: false,
            raw: false,
        }
    }

    /// A private (project/group CI/CD) variable.
    pub fn private(key: &str, value: &str) -> Variable {
        Variable {
            public: false,
            ..Variable::public(key, value)
        }
    }

    /// The payload form.
    pub fn to_json(&self) -> Value {
        json!({"key": self.key, "value": self.value, "public": self.public, "file": self.file,
               "masked": self.masked, "raw": self.raw})
    }
}

/// Builds a job payload; see the module docs. Every setter consumes and returns the builder.
#[derive(Clone, Debug)]
pub struct JobBuilder {
    /// `id` (`CI_JOB_ID`).
    pub id: i64,
    /// The job token (`token`, `CI_JOB_TOKEN`).
    pub token: String,
    /// `job_info.name` (`CI_JOB_NAME`).
    pub name: String,
    /// `job_info.stage` (`CI_JOB_STAGE`).
    pub stage: String,
    /// `job_info.project_id` (`CI_PROJECT_ID`).
    pub project_id: i64,
    /// `job_info.project_full_path` (`CI_PROJECT_PATH`).
    pub project_path: String,
    /// `job_info.pipeline_id`.
    pub pipeline_id: i64,
    /// `git_info.ref` (`CI_COMMIT_REF_NAME`).
    pub git_ref: String,
    /// `git_info.ref_type` (`branch` or `tag`).
    pub ref_type: String,
    /// `git_info.sha`.
    pub sha: String,
    /// `git_info.protected`.
    pub protected: bool,
    /// `runner_info.timeout` in seconds (`CI_JOB_TIMEOUT`).
    pub timeout: u64,
    /// Variables after the predefined ones (later entries win).
    pub variables: Vec<Variable>,
    /// `script` lines.
    pub script: Vec<String>,
    /// `after_script` lines (none: no after_script step).
    pub after_script: Vec<String>,
    /// Extra steps after `script` (run as `step_<name>`).
    pub extra_steps: Vec<(String, Vec<String>)>,
    /// Cache `when` (`None`: no cache, so no cache stages).
    pub cache: Option<String>,
    /// Artifacts `when` (`None`: no artifacts, so no upload stages).
    pub artifacts: Option<String>,
    /// Whether a dependency has artifacts (so `download_artifacts` runs).
    pub dependency_artifacts: bool,
    /// GitLab's native `secrets:` block, as the API sends it (`$VAR` references and `token`
    /// keys included; the emulator expands and drops them as the runner does).
    pub native_secrets: Option<Value>,
    /// `image:` (its name; `CI_JOB_IMAGE`).
    pub image: Option<String>,
    /// `services:` as the runner passes them in `CUSTOM_ENV_CI_JOB_SERVICES`
    /// (`{name, alias, entrypoint, command, variables}`).
    pub services: Vec<Value>,
    /// `git_info.repo_url` when set (else a URL on gitlab.example.com): get_sources then
    /// really clones it with git (a local path, for the docker tests' helper container).
    pub repo_url: Option<String>,
    /// Test-only: lines the emulator appends to every non-user stage's script (get_sources,
    /// caches, artifacts, cleanup_file_variables), to observe what those stages receive.
    pub probe: Vec<String>,
}

impl Default for JobBuilder {
    fn default() -> Self {
        JobBuilder::new()
    }
}

impl JobBuilder {
    /// A job `test` of pipeline 900 on `grp/app` (id 42), ref `main` (protected), timeout 1 h,
    /// `script: [echo hello]`, no after_script, cache or artifacts.
    pub fn new() -> JobBuilder {
        JobBuilder {
            id: DEFAULT_JOB_ID.parse().expect("job id"),
            token: format!("glcbt-64_{}", super::random_hex(10)),
            name: "test".into(),
            stage: "test".into(),
            project_id: DEFAULT_PROJECT_ID.parse().expect("project id"),
            project_path: DEFAULT_PROJECT_PATH.into(),
            pipeline_id: 900,
            git_ref: DEFAULT_REF.into(),
            ref_type: "branch".into(),
            sha: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into(),
            protected: true,
            timeout: 3600,
            variables: Vec::new(),
            script: vec!["echo hello".into()],
            after_script: Vec::new(),
            extra_steps: Vec::new(),
            cache: None,
            artifacts: None,
            dependency_artifacts: false,
            native_secrets: None,
            image: None,
            services: Vec::new(),
            repo_url: None,
            probe: Vec::new(),
        }
    }

    /// Sets [`JobBuilder::probe`].
    pub fn probe<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.probe = lines.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `image:`.
    pub fn image(mut self, name: &str) -> Self {
        self.image = Some(name.into());
        self
    }

    /// Adds a service (`{name, alias, entrypoint, command, variables}`).
    pub fn service(mut self, service: Value) -> Self {
        self.services.push(service);
        self
    }

    /// Makes get_sources clone `url` with git.
    pub fn repo_url(mut self, url: &str) -> Self {
        self.repo_url = Some(url.into());
        self
    }

    /// Sets the job id.
    pub fn id(mut self, id: i64) -> Self {
        self.id = id;
        self
    }

    /// Sets the job name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the project id and `namespace/project` path.
    pub fn project(mut self, id: i64, path: &str) -> Self {
        self.project_id = id;
        self.project_path = path.into();
        self
    }

    /// Sets the ref (branch name) and whether it is protected.
    pub fn git_ref(mut self, name: &str, protected: bool) -> Self {
        self.git_ref = name.into();
        self.protected = protected;
        self
    }

    /// Makes the ref a tag.
    pub fn tag(mut self, name: &str, protected: bool) -> Self {
        self = self.git_ref(name, protected);
        self.ref_type = "tag".into();
        self
    }

    /// Sets the job timeout (seconds).
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = secs;
        self
    }

    /// Appends a variable as given.
    pub fn push_variable(mut self, variable: Variable) -> Self {
        self.variables.push(variable);
        self
    }

    /// Appends a private (CI/CD settings) variable.
    pub fn variable(self, key: &str, value: &str) -> Self {
        self.push_variable(Variable::private(key, value))
    }

    /// Appends a `raw` variable (never `$`-expanded).
    pub fn raw_variable(self, key: &str, value: &str) -> Self {
        self.push_variable(Variable {
            raw: true,
            ..Variable::private(key, value)
        })
    }

    /// Appends a masked variable.
    pub fn masked_variable(self, key: &str, value: &str) -> Self {
        self.push_variable(Variable {
            masked: true,
            ..Variable::private(key, value)
        })
    }

    /// Appends a file-type variable (`value` is the file's content).
    pub fn file_variable(self, key: &str, value: &str) -> Self {
        self.push_variable(Variable {
            file: true,
            ..Variable::private(key, value)
        })
    }

    /// Adds an `id_tokens:` entry: GitLab sends it as a masked, non-public variable.
    pub fn id_token(self, name: &str, jwt: &str) -> Self {
        self.masked_variable(name, jwt)
    }

    /// Sets `LEASEHOLD_SECRETS` (leasehold's secret declarations, YAML).
    pub fn secrets_yaml(self, yaml: &str) -> Self {
        self.variable(SECRETS_VARIABLE, yaml)
    }

    /// Sets GitLab's native `secrets:` block (what the API sends; see [`JobBuilder::native_secrets`]).
    pub fn native_secrets(mut self, secrets: Value) -> Self {
        self.native_secrets = Some(secrets);
        self
    }

    /// Sets the `script` lines.
    pub fn script<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.script = lines.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the `after_script` lines (empty: no after_script stage).
    pub fn after_script<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.after_script = lines.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a step after `script` (run as `step_<lowercased name>`).
    pub fn step<S: Into<String>>(mut self, name: &str, lines: impl IntoIterator<Item = S>) -> Self {
        self.extra_steps
            .push((name.into(), lines.into_iter().map(Into::into).collect()));
        self
    }

    /// Gives the job a cache with `when: always`, so `restore_cache` and `archive_cache` /
    /// `archive_cache_on_failure` run. `false` removes it.
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled.then(|| "always".into());
        self
    }

    /// Gives the job a cache with this `when` (`on_success`, `on_failure`, `always`).
    pub fn cache_when(mut self, when: &str) -> Self {
        self.cache = Some(when.into());
        self
    }

    /// Gives the job artifacts with `when: always` and a dependency with artifacts, so
    /// `download_artifacts` and `upload_artifacts_on_success` / `_on_failure` run.
    pub fn artifacts(mut self, enabled: bool) -> Self {
        self.artifacts = enabled.then(|| "always".into());
        self.dependency_artifacts = enabled;
        self
    }

    /// Gives the job artifacts with this `when` (no dependency artifacts).
    pub fn artifacts_when(mut self, when: &str) -> Self {
        self.artifacts = Some(when.into());
        self
    }

    /// Whether a dependency has artifacts (`download_artifacts`).
    pub fn dependency_artifacts(mut self, enabled: bool) -> Self {
        self.dependency_artifacts = enabled;
        self
    }

    fn project_name(&self) -> &str {
        self.project_path
            .rsplit('/')
            .next()
            .unwrap_or(&self.project_path)
    }

    fn namespace(&self) -> &str {
        self.project_path.rsplit_once('/').map_or("", |(ns, _)| ns)
    }

    /// The predefined variables GitLab puts in the payload.
    pub fn predefined_variables(&self) -> Vec<Variable> {
        let server = "https://gitlab.example.com";
        let project_url = format!("{server}/{}", self.project_path);
        let slug: String = self
            .git_ref
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(63)
            .collect();
        let mut vars = vec![
            Variable::public("CI_PIPELINE_ID", &self.pipeline_id.to_string()),
            Variable::public(
                "CI_PIPELINE_URL",
                &format!("{project_url}/-/pipelines/{}", self.pipeline_id),
            ),
            Variable::public("CI_PIPELINE_SOURCE", "push"),
            Variable::public("CI_JOB_ID", &self.id.to_string()),
            Variable::public("CI_JOB_URL", &format!("{project_url}/-/jobs/{}", self.id)),
            Variable {
                masked: true,
                ..Variable::public("CI_JOB_TOKEN", &self.token)
            },
            Variable::public("CI_JOB_NAME", &self.name),
            Variable::public("CI_JOB_STAGE", &self.stage),
            Variable::public("CI_JOB_TIMEOUT", &self.timeout.to_string()),
            Variable::public("CI_COMMIT_SHA", &self.sha),
            Variable::public("CI_COMMIT_SHORT_SHA", &self.sha[..8.min(self.sha.len())]),
            Variable::public("CI_COMMIT_REF_NAME", &self.git_ref),
            Variable::public("CI_COMMIT_REF_SLUG", &slug),
            Variable::public(
                "CI_COMMIT_REF_PROTECTED",
                if self.protected { "true" } else { "false" },
            ),
            Variable::public("CI_PROJECT_ID", &self.project_id.to_string()),
            Variable::public("CI_PROJECT_NAME", self.project_name()),
            Variable::public("CI_PROJECT_NAMESPACE", self.namespace()),
            Variable::public("CI_PROJECT_PATH", &self.project_path),
            Variable::public("CI_PROJECT_URL", &project_url),
            Variable::public("CI_SERVER_URL", server),
            Variable::public("CI_SERVER_HOST", "gitlab.example.com"),
            Variable::public("CI_API_V4_URL", &format!("{server}/api/v4")),
            Variable::public(
                "CI_REPOSITORY_URL",
                &format!(
                    "https://gitlab-ci-token:[MASKED]@gitlab.example.com/{}.git",
                    self.project_path
                ),
            ),
            Variable::public("GITLAB_USER_ID", "5"),
            Variable::public("GITLAB_USER_LOGIN", "alice"),
            Variable::public("GITLAB_USER_EMAIL", "alice@example.test"),
            Variable::public("CI", "true"),
            Variable::public("GITLAB_CI", "true"),
        ];
        if let Some(image) = &self.image {
            vars.push(Variable::public("CI_JOB_IMAGE", image));
        }
        if let Some(url) = &self.repo_url {
            vars.push(Variable::public("CI_REPOSITORY_URL", url));
        }
        if self.ref_type == "tag" {
            vars.push(Variable::public("CI_COMMIT_TAG", &self.git_ref));
        } else {
            vars.push(Variable::public("CI_COMMIT_BRANCH", &self.git_ref));
        }
        vars
    }

    /// Every payload variable: the predefined ones, then the builder's.
    pub fn all_variables(&self) -> Vec<Variable> {
        let mut vars = self.predefined_variables();
        vars.extend(self.variables.iter().cloned());
        vars
    }

    /// The payload as the GitLab API sends it (native `secrets` unexpanded, with `token` keys).
    pub fn api_payload(&self) -> Value {
        self.payload(self.native_secrets.clone())
    }

    /// `response.json` as gitlab-runner writes it, given the already-expanded `secrets` block
    /// (the runner emulator computes it; see [`super::runner`]).
    pub fn payload(&self, secrets: Option<Value>) -> Value {
        let step = |name: &str, lines: &[String], when: &str| {
            json!({"name": name, "script": lines, "timeout": self.timeout, "when": when,
                   "allow_failure": false})
        };
        let mut steps = vec![step("script", &self.script, "on_success")];
        for (name, lines) in &self.extra_steps {
            steps.push(step(name, lines, "on_success"));
        }
        if !self.after_script.is_empty() {
            steps.push(step("after_script", &self.after_script, "always"));
        }
        let cache: Vec<Value> = self
            .cache
            .iter()
            .map(|when| {
                json!({"key": "default", "untracked": false, "policy": "pull-push",
                       "paths": ["vendor/"], "when": when, "fallback_keys": []})
            })
            .collect();
        let artifacts: Value = match &self.artifacts {
            Some(when) => json!([{"name": "", "untracked": false, "paths": ["out/"], "when": when,
                                   "artifact_type": "archive", "artifact_format": "zip", "expire_in": ""}]),
            None => Value::Null,
        };
        let dependencies: Vec<Value> = if self.dependency_artifacts {
            vec![
                json!({"id": self.id - 1, "token": "glcbt-dependency", "name": "build",
                        "artifacts_file": {"filename": "artifacts.zip", "size": 1024}}),
            ]
        } else {
            Vec::new()
        };
        let mut payload = json!({
            "id": self.id,
            "token": self.token,
            "allow_git_fetch": true,
            "job_info": {
                "name": self.name, "stage": self.stage, "pipeline_id": self.pipeline_id,
                "project_id": self.project_id, "project_name": self.project_name(),
                "project_full_path": self.project_path, "namespace_id": 7, "root_namespace_id": 7,
                "organization_id": 1, "instance_id": 1, "user_id": 5, "time_in_queue_seconds": 0,
            },
            "git_info": {
                "repo_url": self.repo_url.clone().unwrap_or_else(|| format!("https://gitlab-ci-token:{}@gitlab.example.com/{}.git", self.token, self.project_path)),
                "repo_object_format": "sha1", "ref": self.git_ref, "sha": self.sha,
                "before_sha": "0000000000000000000000000000000000000000", "ref_type": self.ref_type,
                "refspecs": [format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.git_ref)],
                "depth": 20, "protected": self.protected,
            },
            "runner_info": {"uuid": "0123abcd", "timeout": self.timeout},
            "variables": self.all_variables().iter().map(Variable::to_json).collect::<Vec<_>>(),
            "steps": steps,
            "image": {"name": self.image.clone().unwrap_or_default(), "entrypoint": null},
            "services": self.services,
            "artifacts": artifacts,
            "cache": cache,
            "credentials": [],
            "dependencies": dependencies,
            "features": {"trace_sections": true, "failure_reasons": ["script_failure", "runner_system_failure"]},
            "policy_options": {"execution_policy_job": false},
        });
        if let Some(secrets) = secrets {
            payload["secrets"] = secrets;
        }
        payload
    }
}
