//! The Docker engine the docker-executor tests run against: the private, hermetic dockerd that
//! `scripts/test.sh` starts (scripts/lib/docker.sh: no bridge, no iptables) with the local
//! images it builds, found through `LEASEHOLD_TEST_DOCKER_HOST` (its `unix://` socket) and
//! `LEASEHOLD_TEST_DOCKER_DIR` (its data and exec roots, for leak scans). A test that needs it
//! fails, never skips, when it is missing.
//!
//! The `docker` CLI is the tests' own view of the engine (what an admin or an attacker with
//! socket access sees): `docker inspect`, `docker ps`, `docker exec`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// busybox, with httpd for a service.
pub const BUSYBOX_IMAGE: &str = "leasehold-test/busybox:1";
/// busybox + bash: a job image.
pub const JOB_IMAGE: &str = "leasehold-test/job:1";
/// busybox + bash + git: the helper image.
pub const HELPER_IMAGE: &str = "leasehold-test/helper:1";

/// The engine's `unix://` address.
pub fn host() -> String {
    std::env::var("LEASEHOLD_TEST_DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "LEASEHOLD_TEST_DOCKER_HOST is not set: run scripts/test.sh, which installs docker.io and starts a private dockerd (scripts/lib/docker.sh)"
            )
        })
}

/// The daemon's directory (data root, exec root, socket), when test.sh says where it is.
pub fn daemon_dir() -> Option<PathBuf> {
    std::env::var_os("LEASEHOLD_TEST_DOCKER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Runs the docker CLI against the test engine.
pub fn docker<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host())
        .output()
        .expect("run the docker CLI")
}

/// Like [`docker`], failing the test on a non-zero exit; returns stdout.
pub fn docker_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names of the containers the leasehold installation with `state_dir` made (any state).
pub fn containers_of(state_dir: &Path) -> Vec<String> {
    let filter = format!("label=io.leasehold.state-dir={}", state_dir.display());
    docker_ok(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `docker inspect` of a container, as JSON.
pub fn inspect(name: &str) -> Value {
    let text = docker_ok(&["inspect", name]);
    let value: Value = serde_json::from_str(&text).expect("inspect JSON");
    value[0].clone()
}

/// The `[executor]` tables for the docker executor on the test engine, with `extra` lines
/// added to `[executor.docker]`.
pub fn executor_config(extra: &str) -> String {
    format!(
        "[executor]\nkind = \"docker\"\n\n[executor.docker]\nhost = \"{}\"\nhelper_image = \"{HELPER_IMAGE}\"\npull_policy = \"never\"\nnetwork_mode = \"none\"\n{extra}\n",
        host()
    )
}

/// A git repository with one commit (`README` holding `content`) at `dir`.
pub fn git_repo(dir: &Path, content: &str) {
    std::fs::create_dir_all(dir).expect("mkdir repo");
    std::fs::write(dir.join("README"), content).expect("write README");
    for args in [
        &["init", "-q", "-b", "main", "."][..],
        &["add", "README"][..],
        &[
            "-c",
            "user.email=ci@example.test",
            "-c",
            "user.name=ci",
            "commit",
            "-q",
            "-m",
            "first",
        ][..],
    ] {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
