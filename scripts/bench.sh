#!/usr/bin/env bash
# Benchmarks leasehold side by side with the patterns it replaces and regenerates
# docs/performance.md (prepare vs gitlab-runner's per-secret resolver and the bao CLI pattern,
# stage start-up vs bash, 50 concurrent jobs, output masking vs cat, peak RSS per stage).
#
#   scripts/bench.sh            # writes docs/performance.md
#   scripts/bench.sh --stdout   # prints the report instead
#
# Release build; about 5 minutes on a 2-core machine including the build.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
leasehold_ensure_apt curl

LEASEHOLD_TEST_BAO="$(leasehold_find_bao)"
export LEASEHOLD_TEST_BAO

echo "bench.sh: building (release)" >&2
cargo build --quiet --release --bin leasehold --example bench
report="$(target/release/examples/bench)"
if [ "${1:-}" = "--stdout" ]; then
    printf '%s\n' "$report"
else
    printf '%s\n' "$report" > docs/performance.md
    echo "bench.sh: wrote docs/performance.md" >&2
fi
