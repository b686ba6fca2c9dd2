//! leasehold's integration tests: one test binary (`cargo test --test it`, or
//! `cargo nextest run`), with the shared fixtures in [`support`] and one module per area.
//!
//! The tests start real servers (OpenBao, PostgreSQL); `scripts/test.sh` installs them and sets
//! `LEASEHOLD_TEST_BAO` / `LEASEHOLD_TEST_PG_BIN`.

mod support;

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
