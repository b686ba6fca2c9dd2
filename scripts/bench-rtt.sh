#!/usr/bin/env bash
# A runner far from its Vault: leasehold's prepare and cleanup over TLS through a loopback proxy
# adding 20 ms of round-trip time, against gitlab-runner's per-secret pattern over the same link
# (examples/bench_rtt.rs). Prints a Markdown table. Release build; about a minute.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
leasehold_ensure_apt curl

LEASEHOLD_TEST_BAO="$(leasehold_find_bao)"
export LEASEHOLD_TEST_BAO

echo "bench-rtt.sh: building (release)" >&2
cargo build --quiet --release --bin leasehold --example bench_rtt
target/release/examples/bench_rtt
