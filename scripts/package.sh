#!/usr/bin/env bash
# Builds leasehold's .deb and .rpm into target/packages/ (see docs/install.md):
#
#   scripts/package.sh
#
# 1. `cargo build --release --locked --bin leasehold` (both packages ship this one binary);
# 2. the man pages and shell completions, generated from the CLI definition by
#    `cargo run --example gen_assets` into target/assets/ (man pages gzipped);
# 3. `cargo deb --no-build` and `cargo generate-rpm`, with the pinned versions
#    (scripts/lib/tools.sh installs them into ${LEASEHOLD_TOOLS_DIR:-~/.cache/leasehold}/cargo
#    when they are missing).
#
# Package contents, maintainer scripts and units: [package.metadata.deb] and
# [package.metadata.generate-rpm] in Cargo.toml, and packaging/.
# LEASEHOLD_DEB_REVISION sets the Debian revision (default 1).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

out=target/packages
assets=target/assets

leasehold_ensure_packaging_tools

echo "package.sh: building target/release/leasehold" >&2
cargo build --quiet --release --locked --bin leasehold

echo "package.sh: generating man pages and completions into $assets" >&2
cargo run --quiet --locked --example gen_assets -- "$assets" >/dev/null
gzip -9nf "$assets"/man/*.1

rm -rf "$out"
mkdir -p "$out"
echo "package.sh: building the .deb" >&2
cargo deb --quiet --locked --no-build --no-strip \
    --deb-revision "${LEASEHOLD_DEB_REVISION:-1}" --output "$out/"
echo "package.sh: building the .rpm" >&2
cargo generate-rpm --output "$out/"

ls -l "$out"/*.deb "$out"/*.rpm
