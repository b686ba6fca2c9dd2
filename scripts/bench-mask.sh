#!/usr/bin/env bash
# Masker throughput, in memory and against `cat` over the same bytes.
#
# Builds benches/mask.rs in release, prints its in-memory table (masker vs a plain copy of the
# same 64 KiB chunks), then writes the synthetic corpus to a temporary directory and times, from
# a warm page cache, `cat corpus > /dev/null` against `mask --pipe N < corpus > /dev/null` for
# 1, 10 and 100 secrets (best of 3 each). Usage: scripts/bench-mask.sh [SIZE_MIB]  (default 256)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

size_mib="${1:-256}"
runs=3

# The bench binary's path, from cargo's JSON messages (no jq needed).
bin="$(cargo bench --bench mask --no-run --message-format=json \
    | grep '"reason":"compiler-artifact"' \
    | grep '"kind":\["bench"\]' | grep '"name":"mask"' \
    | grep -o '"executable":"[^"]*"' \
    | tail -n 1 | cut -d'"' -f4)"
[[ -x "$bin" ]] || { echo "bench-mask: could not locate the bench binary" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
corpus="$tmp/corpus.log"

echo "== in memory (cargo bench --bench mask -- --size-mib $size_mib)"
"$bin" --size-mib "$size_mib"

"$bin" --size-mib "$size_mib" --write-corpus "$corpus"
bytes="$(stat -c %s "$corpus")"
cat "$corpus" > /dev/null # warm the page cache

cat_file() { cat "$corpus" > /dev/null; }
mask_file() { "$bin" --pipe "$1" < "$corpus" > /dev/null; }
rate() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.2f", b / ns }'; } # bytes/ns = GB/s

echo
echo "== file to /dev/null, $bytes bytes, warm page cache, best of $runs, GB = 1e9 bytes"
cat_ns="$(leasehold_best_of "$runs" cat_file)"
printf '%7s %12s %10s %10s\n' secrets "masker GB/s" "cat GB/s" "masker/cat"
for n in 1 10 100; do
    mask_ns="$(leasehold_best_of "$runs" mask_file "$n")"
    printf '%7s %12s %10s %9.1f%%\n' "$n" "$(rate "$mask_ns")" "$(rate "$cat_ns")" \
        "$(awk -v c="$cat_ns" -v m="$mask_ns" 'BEGIN { print 100 * c / m }')"
done
