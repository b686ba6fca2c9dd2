#!/usr/bin/env bash
# What `[executor] user_pool` costs per stage against one static `[executor] user`: the same job
# (no secrets, so no Vault request: only the job-user handling differs) through config, prepare,
# one run sub-stage and cleanup, each stage a fresh process with the environment gitlab-runner
# gives it, timed with the wall clock. The two setups alternate run by run (static, pool,
# static, …), so both see the same machine load; prints the median of each stage per setup and
# the difference.
#
#   scripts/bench-pool.sh [RUNS]          (default 30 runs of each setup)
#
# Needs root (it drops privileges) and /dev/shm. Creates the system account lh-bench when
# missing (the static user) and uses the pool uids 62000-62009, which nothing else may use: the
# pool kills every process of a uid it hands out. LEASEHOLD_BIN overrides the binary (default:
# `cargo build --release`). Everything else lives in a temp dir that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-30}"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "bench-pool: run as root: both setups drop privileges" >&2
    exit 1
fi
if [[ -z "${LEASEHOLD_BIN:-}" ]]; then
    cargo build --release --quiet --bin leasehold
    LEASEHOLD_BIN="$PWD/target/release/leasehold"
fi
user=lh-bench
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

# builds_dir on disk (its default is /var/lib/leasehold/builds); state_dir and files_dir on
# tmpfs, as /run/leasehold and /run/leasehold-files are on a systemd host.
tmp="$(mktemp -d)"
run="$(mktemp -d -p /dev/shm)"
trap 'rm -rf "$tmp" "$run"' EXIT
chmod 0755 "$tmp" "$run"
printf 'true\n' >"$tmp/script.sh"
python3 >"$tmp/response.json" <<'PY'
import json
def var(key, value):
    return {"key": key, "value": value, "public": True, "file": False, "masked": False, "raw": False}
print(json.dumps({
    "id": 1, "token": "bench-job-token",
    "job_info": {"name": "bench", "stage": "test", "project_id": 42, "project_full_path": "grp/app"},
    "git_info": {"ref": "main", "protected": True}, "runner_info": {"timeout": 3600},
    "variables": [var("CI_JOB_ID", "1"), var("CI_PROJECT_PATH", "grp/app")],
    "steps": [{"name": "script", "script": ["true"], "timeout": 3600, "when": "on_success"}],
}))
PY
chmod 600 "$tmp/response.json"

# One config per setup, each with its own state, builds, cache and files dirs.
for setup in static pool; do
    dir="$tmp/$setup"
    mkdir -p "$dir/builds" "$dir/cache"
    install -d -m 0755 "$run/$setup"
    case "$setup" in
        static)
            chown "$user:" "$dir/builds" "$dir/cache"
            executor="user = \"$user\""
            ;;
        pool)
            chmod 1777 "$dir/cache"
            executor='user_pool = "62000-62009"'
            ;;
    esac
    cat >"$dir/config.toml" <<TOML
state_dir = "$run/$setup/state"
builds_dir = "$dir/builds"
cache_dir = "$dir/cache"
builds_dir_is_shared = true

[vault]
address = "http://127.0.0.1:1"

[executor]
$executor
files_dir = "$run/$setup/files"
TOML
done

now_ns() { date +%s%N; }
# job SETUP: the four stages once; appends "<stage> <ns>" lines to $tmp/SETUP.times.
job() {
    local setup="$1" dir="$tmp/$1" t0 t1
    local -a env=(env -i "PATH=$PATH" "HOME=/root" "TMPDIR=$tmp" "LEASEHOLD_CONFIG=$dir/config.toml"
        BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 "BUILD_EXIT_CODE_FILE=$tmp/exit-code"
        "JOB_RESPONSE_FILE=$tmp/response.json" CUSTOM_ENV_CI_JOB_ID=1 CUSTOM_ENV_CI_PROJECT_PATH=grp/app
        "CUSTOM_ENV_CI_BUILDS_DIR=$dir/builds" "CUSTOM_ENV_CI_PROJECT_DIR=$dir/builds/t0ken/0/grp/app")
    t0="$(now_ns)"
    "${env[@]}" "$LEASEHOLD_BIN" config >"$tmp/config.json"
    t1="$(now_ns)"
    echo "config $((t1 - t0))" >>"$tmp/$setup.times"
    mapfile -t job_env < <(python3 -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["job_env"].items():
    print(f"{k}={v}")' "$tmp/config.json")
    env+=("${job_env[@]}")
    local stage
    for stage in prepare run cleanup; do
        local -a argv=("$LEASEHOLD_BIN" "$stage")
        [[ "$stage" != run ]] || argv+=("$tmp/script.sh" build_script)
        t0="$(now_ns)"
        if ! "${env[@]}" "${argv[@]}" >"$tmp/$stage.log" 2>&1; then
            echo "bench-pool: $setup $stage failed:" >&2
            cat "$tmp/$stage.log" >&2
            exit 1
        fi
        t1="$(now_ns)"
        echo "$stage $((t1 - t0))" >>"$tmp/$setup.times"
    done
}

job static
job pool
rm -f "$tmp"/*.times # one warm-up each
for _ in $(seq 1 "$runs"); do
    job static
    job pool
done

median_ms() { # SETUP STAGE
    awk -v s="$2" '$1 == s { print $2 }' "$tmp/$1.times" | sort -n |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m / 1e6 }'
}
echo "== per-stage wall time, median of $runs interleaved runs each ($(nproc) cores, $("$LEASEHOLD_BIN" --version))"
printf '| %-8s | %14s | %14s | %10s |\n' stage "static user ms" "user pool ms" "pool - static"
printf '|%s|%s|%s|%s|\n' "----------" "----------------" "----------------" "------------"
for stage in config prepare run cleanup; do
    a="$(median_ms static "$stage")"
    b="$(median_ms pool "$stage")"
    printf '| %-8s | %14s | %14s | %+10.2f |\n' "$stage" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')"
done
