//! leasehold's integration-test kit: real servers and a gitlab-runner emulator, shared by the
//! integration tests (`tests/it`) and the examples (`examples/demo.rs`, `examples/bench*.rs`).
//!
//! The kit drives the leasehold *binary*, never the library: it does not depend on `leasehold`.
//! Which binary is the caller's choice ([`World::builder`], [`Runner::new`]): the integration
//! tests pass `env!("CARGO_BIN_EXE_leasehold")` through [`leasehold_bin_or`], the examples use
//! [`leasehold_bin`] (the one beside them in `target/<profile>/`); `LEASEHOLD_BIN` overrides
//! both.
//!
//! Every fixture is owned by one test: it starts in the test, on a free loopback port, and its
//! `Drop` stops exactly the processes it started (by PID, never by name) and removes its temp dir.
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`world`] | [`World`], the one fixture of an end-to-end test: OpenBao with JWT auth trusting an [`Issuer`], the role and policy, leasehold's config and dirs in a temp dir, the binary; [`WorldBuilder`] adds policy rules, role fields, https listeners, a PostgreSQL, a cluster node, config tables |
//! | [`bao`] | [`Bao`]: a real OpenBao dev server with a file audit device, plus API helpers (KV, PKI, policies, JWT auth, database engine, leases, tokens, the reaper's token, audit counts) |
//! | [`issuer`] | [`Issuer`]: a GitLab-like OIDC issuer on loopback (JWKS at `/oauth/discovery/keys` and `/-/jwks`) that mints RS256 ID tokens with GitLab's claims |
//! | [`postgres`] | [`Postgres`]: a throw-away PostgreSQL cluster run as the `postgres` OS user, with `psql` helpers |
//! | [`job`] | [`JobBuilder`]: a job payload (`response.json`) exactly as gitlab-runner writes it |
//! | [`front`] | [`front::Front`]: one loopback address serving OpenBao under `/v1/` and [`front::OtherApp`] (a recording listener standing in for another application) elsewhere, counting connections |
//! | [`fake_driver`] | [`fake_driver::DriverLog`]: the invocation records of `tests/fixtures/fake-driver.sh`, a custom-executor driver |
//! | [`runner`] | [`Runner`]: a gitlab-runner emulator that drives any custom-executor driver through the real stage protocol and returns a [`JobOutcome`] |
//! | [`scan`] | leak scanners over files, `/proc/*/cmdline` and `/proc/*/environ` |
//! | [`sshd`] | [`sshd::Sshd`]: a real OpenSSH server on loopback letting one local user in with a test key; [`sshd::ensure_user`] creates local accounts |
//! | [`pki`] | [`pki::Pki`]: a test CA with server and client certificates (and an unrelated CA), made with the `openssl` CLI; [`Bao::start_tls`] serves https with them |
//! | [`cluster`] | [`cluster::Cluster`]: a real 3-node OpenBao raft cluster on loopback, for the failover tests |
//! | [`docker`] | the private dockerd `scripts/test.sh` starts, its images, and the `docker` CLI against it |
//! | [`attempt`] | [`attempt::Attempt`]: one job's stages started directly, the way gitlab-runner starts them, for the benchmarks; their policy and secrets ([`attempt::plant_bench_secrets`]) |
//!
//! A typical leasehold end-to-end test (`world()` is `tests/it/main.rs`'s
//! `World::builder(leasehold_bin())`):
//!
//! ```ignore
//! let world = world().policy(&[r#"path "kv/data/app/*" { capabilities = ["read"] }"#]).start();
//! world.bao.enable_kv("kv", 2);
//! world.bao.kv_put("kv", 2, "app/db", json!({"password": planted}));
//! let job = world.job().secrets_yaml("DB_PASS:\n  vault: app/db/password@kv\n").script(["env"]);
//! let outcome = world.run(&job);
//! assert!(outcome.is_success(), "{}", outcome.log);
//! world.assert_revoked_and_clean(&outcome);
//! ```
//!
//! The parts work alone too: `Runner::new(bin, config).run_job(&job, RunOptions::new())` drives
//! any custom-executor driver (the harness tests drive `tests/fixtures/fake-driver.sh`).
//!
//! Running: `scripts/test.sh` installs PostgreSQL and OpenBao when missing and runs everything
//! (`cargo nextest run --workspace`: the integration tests and this crate's own unit tests);
//! afterwards `cargo test --test it [filter]` or `cargo nextest run -E 'binary(it)'` work too.
//! Binaries come from the environment `scripts/test.sh` sets: `LEASEHOLD_TEST_BAO` (the `bao`
//! binary; else `bao`/`vault` on PATH, else the tools venv of `scripts/lib/tools.sh`) and
//! `LEASEHOLD_TEST_PG_BIN` (PostgreSQL's `bin` dir; else the newest `/usr/lib/postgresql/*/bin`).
//! Tests need root (PostgreSQL runs as the `postgres` OS user).
//!
//! Servers are tied to the thread that starts them (they get `PR_SET_PDEATHSIG`, so a test
//! process killed by nextest's timeout leaves no server behind): start them on the test's own
//! thread, never in a short-lived helper thread or a shared static.

pub mod attempt;
pub mod bao;
pub mod cluster;
pub mod docker;
pub mod fake_driver;
pub mod front;
pub mod issuer;
pub mod job;
pub mod pki;
pub mod postgres;
mod proc;
pub mod runner;
pub mod scan;
mod shell;
pub mod sshd;
pub mod world;

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use bao::Bao;
pub use issuer::Issuer;
pub use job::JobBuilder;
pub use postgres::Postgres;
pub use runner::{Cancel, CancelMode, JobOutcome, JobResult, RunOptions, Runner, StageRecord};
pub use world::{World, WorldBuilder};

/// The leasehold binary to drive: `LEASEHOLD_BIN` when set (a packaged `/usr/bin/leasehold`,
/// say), else `built`. Integration tests pass `env!("CARGO_BIN_EXE_leasehold")`, the binary
/// cargo built for them, which the kit itself cannot name.
pub fn leasehold_bin_or(built: impl Into<PathBuf>) -> PathBuf {
    override_or(std::env::var_os("LEASEHOLD_BIN"), built.into())
}

/// The leasehold binary for a program cargo built beside it (the examples, in
/// `target/<profile>/examples/`): `LEASEHOLD_BIN` when set, else `target/<profile>/leasehold`,
/// else `leasehold` on PATH.
pub fn leasehold_bin() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("leasehold")))
        .unwrap_or_else(|| PathBuf::from("leasehold"));
    override_or(std::env::var_os("LEASEHOLD_BIN"), beside)
}

fn override_or(value: Option<OsString>, default: PathBuf) -> PathBuf {
    value
        .filter(|v| !v.is_empty())
        .map_or(default, PathBuf::from)
}

/// `tables` (the TOML tables of an executor config, after its top-level keys) with
/// `[executor] allow_root = true` added: the tests run as root, and most of them run their
/// jobs as root, which leasehold refuses unless the config opts in (docs/security.md). Into an
/// `[executor]` table `tables` already has, else as a table of its own at the end. Every test
/// config writer passes its tables through here; a test of the refusal writes its own.
pub fn allowing_root(tables: &str) -> String {
    let mut out = String::with_capacity(tables.len() + 40);
    let mut added = false;
    for line in tables.split_inclusive('\n') {
        out.push_str(line);
        if !added && line.trim() == "[executor]" {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("allow_root = true\n");
            added = true;
        }
    }
    if !added {
        out.push_str("\n[executor]\nallow_root = true\n");
    }
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process can take it before the
/// caller binds it, so server fixtures retry with a new port when the bind fails.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// `n` random bytes as lowercase hex (2n characters), from the system CSPRNG.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `max` bytes of a (log) file, for panic messages.
pub fn tail_of_file(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// The SHA-256 digest as lowercase hex: what job scripts compare secret values with
/// (`sha256sum`), so that neither side prints them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first 16 hex digits of a SHA-256 digest: compares secret values without showing them.
pub fn sha16(bytes: &[u8]) -> String {
    let mut hex = sha256_hex(bytes);
    hex.truncate(16);
    hex
}
