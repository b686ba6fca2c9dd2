//! One job attempt driven stage by stage the way gitlab-runner starts each stage (a fresh
//! process with the runner's environment), without the emulator in between: what the
//! benchmarks time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::world::World;
use super::{Bao, JobBuilder};

/// The policy rules of the benchmarks' worlds: read KV v2 `kv`, issue `pki/issue/ci`
/// certificates and revoke their leases.
pub const BENCH_POLICY: [&str; 3] = [
    r#"path "kv/data/*" { capabilities = ["read"] }"#,
    r#"path "pki/issue/ci" { capabilities = ["update"] }"#,
    r#"path "sys/leases/revoke/pki/issue/ci/*" { capabilities = ["update"] }"#,
];

/// The benchmarks' secrets: KV v2 at `kv` with `paths` paths `bench/p<p>`, each with `fields`
/// fields `f<f>` whose values are `value(p, f)`; and PKI at `pki` with the role `ci` (EC P-256
/// certificates for `*.ci.example.com`, with leases, up to 1 h).
pub fn plant_bench_secrets(
    bao: &Bao,
    paths: usize,
    fields: usize,
    value: impl Fn(usize, usize) -> String,
) {
    bao.enable_kv("kv", 2);
    for p in 0..paths {
        let data: serde_json::Map<String, Value> = (0..fields)
            .map(|f| (format!("f{f}"), json!(value(p, f))))
            .collect();
        bao.kv_put("kv", 2, &format!("bench/p{p}"), Value::Object(data));
    }
    bao.enable_pki_ca("bench CA", "24h");
    bao.ok(
        "POST",
        "pki/roles/ci",
        Some(json!({"allowed_domains": ["ci.example.com"], "allow_subdomains": true, "generate_lease": true, "max_ttl": "1h", "key_type": "ec", "key_bits": 256})),
    );
}

/// The stage environment gitlab-runner would give leasehold for one job attempt.
pub struct Attempt {
    _dir: tempfile::TempDir,
    /// `JOB_RESPONSE_FILE` and the other variables gitlab-runner sets, plus the `job_env` that
    /// leasehold's `config` stage returned.
    pub env: Vec<(String, String)>,
}

impl Attempt {
    /// Writes `job`'s payload and runs the `config` stage for it.
    pub fn new(world: &World, job: &JobBuilder) -> Attempt {
        let dir = tempfile::tempdir().expect("tmp");
        let response = dir.path().join("response.json");
        std::fs::write(&response, job.payload(None).to_string()).expect("response.json");
        let mut env = vec![
            ("TMPDIR".to_owned(), dir.path().display().to_string()),
            (
                "JOB_RESPONSE_FILE".to_owned(),
                response.display().to_string(),
            ),
            ("BUILD_FAILURE_EXIT_CODE".to_owned(), "1".to_owned()),
            ("SYSTEM_FAILURE_EXIT_CODE".to_owned(), "2".to_owned()),
            (
                "BUILD_EXIT_CODE_FILE".to_owned(),
                dir.path().join("build_exit_code").display().to_string(),
            ),
            ("CUSTOM_ENV_CI_JOB_ID".to_owned(), "1001".to_owned()),
        ];
        let out = stage_command(world, &env, &["config"])
            .output()
            .expect("config");
        assert!(
            out.status.success(),
            "config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value = serde_json::from_slice(&out.stdout).expect("config JSON");
        for (k, v) in config["job_env"].as_object().expect("job_env") {
            env.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
        }
        Attempt { _dir: dir, env }
    }

    /// Runs one stage; returns its wall time, panicking when it fails.
    pub fn stage(&self, world: &World, args: &[&str]) -> Duration {
        let start = Instant::now();
        let out = stage_command(world, &self.env, args)
            .stdout(Stdio::null())
            .output()
            .expect("stage");
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    }
}

/// `leasehold --config <world's config> <args>` with exactly the environment `env`, the way
/// gitlab-runner starts a stage.
pub fn stage_command(world: &World, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(world.leasehold());
    cmd.arg("--config")
        .arg(world.config_path())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The median of the samples.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
