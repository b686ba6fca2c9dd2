//! leasehold's integration tests: one test binary (`cargo test --test it`, or
//! `cargo nextest run`), one module per area, with the fixtures of the `leasehold-test-kit`
//! crate (`test-kit/`): [`World`] and the gitlab-runner emulator.
//!
//! The tests start real servers (OpenBao, PostgreSQL); `scripts/test.sh` installs them and sets
//! `LEASEHOLD_TEST_BAO` / `LEASEHOLD_TEST_PG_BIN`.

use std::path::{Path, PathBuf};

use leasehold_test_kit::{World, WorldBuilder, scan};

mod architecture;
mod core;
mod docker;
mod executors;
mod fleet;
mod ha;
mod harness;
mod hostile;
mod identity;
mod isolation;
mod leases;
mod masking;
mod paths;
mod tls;
mod tokens;

/// The leasehold binary under test: the one cargo built for this test binary, unless
/// `LEASEHOLD_BIN` names another (a packaged `/usr/bin/leasehold`, say).
pub(crate) fn leasehold_bin() -> PathBuf {
    leasehold_test_kit::leasehold_bin_or(env!("CARGO_BIN_EXE_leasehold"))
}

/// A [`World`] (the kit's one fixture) driving [`leasehold_bin`].
pub(crate) fn world() -> WorldBuilder {
    World::builder(leasehold_bin())
}

/// `tests/fixtures/<name>` in the source tree.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The sealed state of the job one of whose stages is process `pid`, decrypted the way only root
/// could: the stage process's environment holds the state id and key. For tests that look for
/// the job's token where it must not be.
pub(crate) fn job_state_of(pid: u32, state_dir: &Path) -> leasehold::state::Sealed {
    let var = |name: &str| {
        scan::environ_var(pid, name)
            .unwrap_or_else(|| panic!("{name} is not in the environment of process {pid}"))
    };
    let id = leasehold::state::StateId::parse(&var("LEASEHOLD_STATE_ID")).expect("id");
    let key = leasehold::state::StateKey::from_hex(&secrecy::SecretString::from(var(
        "LEASEHOLD_STATE_KEY",
    )))
    .expect("key");
    let root = leasehold::state::StateDir::open(state_dir).expect("state root");
    root.job(&id).unseal(&key).expect("decrypt").expect("state")
}
