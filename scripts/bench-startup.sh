#!/usr/bin/env bash
# Start-up cost of one stage process: `leasehold config` (load and check the config, make the
# state id and key, print the JSON) against `bash -c true`, interleaved runs, medians. With two
# binaries it compares them side by side in the same run (e.g. a build from before a change).
#
#   scripts/bench-startup.sh [RUNS] BIN [OTHER_BIN]
set -euo pipefail
runs="${1:-50}"
bins=("${@:2}")
[ "${#bins[@]}" -ge 1 ] || { echo "usage: $0 [RUNS] BIN [OTHER_BIN]" >&2; exit 2; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -m 0700 "$dir/state"
# The smallest config every version accepts.
printf 'state_dir = "%s"\n\n[vault]\naddress = "http://127.0.0.1:8200"\n' "$dir/state" >"$dir/config.toml"
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) / 1000 }'; }
declare -A samples
for ((i = 0; i < runs; i++)); do
    samples[bash]+="$(ms bash -c true) "
    for b in "${!bins[@]}"; do
        samples[$b]+="$(ms "${bins[$b]}" --config "$dir/config.toml" config) "
    done
done
bash_ms="$(tr ' ' '\n' <<<"${samples[bash]}" | grep . | median)"
echo "| binary | \`leasehold config\` | \`bash -c true\` | ratio |"
echo "|---|---|---|---|"
for b in "${!bins[@]}"; do
    m="$(tr ' ' '\n' <<<"${samples[$b]}" | grep . | median)"
    echo "| ${bins[$b]} | ${m} ms | ${bash_ms} ms | $(awk -v a="$m" -v b="$bash_ms" 'BEGIN { printf "%.2f×", a / b }') |"
done
