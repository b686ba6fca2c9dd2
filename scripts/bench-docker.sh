#!/usr/bin/env bash
# What the docker executor costs against the docker CLI doing the same by hand, in one run:
#
#   (1) one stage: `leasehold run <script> build_script` (one exec in the job container, the
#       script over stdin) against `docker exec -i <job container> bash -s < <script>`;
#   (2) prepare + cleanup: `leasehold prepare` (check, create and start the job and helper
#       containers) and `leasehold cleanup` against `docker create` + `docker start` of the
#       same two containers and `docker rm -f -v` of both;
#   (3) a whole 5-stage job (config, prepare, prepare_script, get_sources, build_script,
#       after_script, cleanup_file_variables, cleanup) against the same by hand (create and
#       start both containers, five `docker exec`s in the helper or job container, remove).
#
#   scripts/bench-docker.sh [RUNS]        (default 15; medians are reported)
#
# The job has no secrets (no Vault is started; `[vault]` points nowhere and is never called),
# so this measures the container path: the per-secret cost of a stage (decrypting the state,
# masking) is the shell executor's, in docs/performance.md. Uses $LEASEHOLD_TEST_DOCKER_HOST
# when set, else starts a private dockerd (scripts/lib/docker.sh) and stops it at the end;
# the local test images are built when missing. LEASEHOLD_BIN overrides the binary (default:
# `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=scripts/lib/docker.sh
source scripts/lib/docker.sh

runs="${1:-15}"
if [[ -z "${LEASEHOLD_BIN:-}" ]]; then
    cargo build --release --quiet --bin leasehold
    LEASEHOLD_BIN="$PWD/target/release/leasehold"
fi

tmp="$(mktemp -d /tmp/lh-bench.XXXXXX)"
own_daemon=""
finish() {
    DOCKER_HOST="${DOCKER_HOST:-}" docker rm -f -v bench-job bench-helper >/dev/null 2>&1 || true
    [[ -n "$own_daemon" ]] && leasehold_docker_stop "$own_daemon"
    rm -rf "$tmp"
}
trap finish EXIT
if [[ -n "${LEASEHOLD_TEST_DOCKER_HOST:-}" ]]; then
    DOCKER_HOST="$LEASEHOLD_TEST_DOCKER_HOST"
else
    leasehold_docker_ensure
    own_daemon="$(mktemp -d /tmp/lh-bench-docker.XXXXXX)"
    DOCKER_HOST="$(leasehold_docker_start "$own_daemon")"
fi
export DOCKER_HOST
leasehold_docker_images

job_image=leasehold-test/job:1
helper_image=leasehold-test/helper:1
mkdir -p "$tmp/state" "$tmp/builds" "$tmp/cache"
chmod 700 "$tmp/state"
cat >"$tmp/config.toml" <<TOML
state_dir = "$tmp/state"
builds_dir = "$tmp/builds"
cache_dir = "$tmp/cache"
[vault]
address = "http://127.0.0.1:9"
[executor]
kind = "docker"
[executor.docker]
host = "$DOCKER_HOST"
helper_image = "$helper_image"
pull_policy = "never"
network_mode = "none"
TOML
echo '{"id": 1, "job_info": {"project_full_path": "grp/app"}, "runner_info": {"timeout": 3600}, "variables": []}' \
    >"$tmp/response.json"
# A stage script shaped like the runner's (bash, exports, a subshell, a user command).
cat >"$tmp/script" <<'SH'
#!/usr/bin/env bash
trap 'exit 1' TERM
set -o pipefail
set -o errexit
export CI_JOB_ID=1
export CI_PROJECT_DIR=/tmp
(trap 'exit 1' TERM; eval $'echo "hello from $(hostname)"') < /dev/null
exit 0
SH

export JOB_RESPONSE_FILE="$tmp/response.json" BUILD_EXIT_CODE_FILE="$tmp/build_exit_code"
export BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 TMPDIR="$tmp"
export CUSTOM_ENV_CI_JOB_ID=1 CUSTOM_ENV_CI_JOB_IMAGE="$job_image"
lh() { "$LEASEHOLD_BIN" --config "$tmp/config.toml" "$@"; }

# Prints the median wall time in ns of RUNS runs of the command.
median_of() {
    local n="$1" start end i
    shift
    for i in $(seq "$n"); do
        start="$(date +%s%N)"
        "$@" >/dev/null 2>&1
        end="$(date +%s%N)"
        echo $((end - start))
    done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f ms", ns / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

new_attempt() {
    local json
    json="$(lh config)"
    LEASEHOLD_STATE_ID="$(printf '%s' "$json" | sed -n 's/.*"LEASEHOLD_STATE_ID":"\([^"]*\)".*/\1/p')"
    LEASEHOLD_STATE_KEY="$(printf '%s' "$json" | sed -n 's/.*"LEASEHOLD_STATE_KEY":"\([^"]*\)".*/\1/p')"
    export LEASEHOLD_STATE_ID LEASEHOLD_STATE_KEY
}

# --- (1) one stage -------------------------------------------------------------------------------
new_attempt
lh prepare >/dev/null
container="leasehold-$LEASEHOLD_STATE_ID-job"
lh run "$tmp/script" build_script >/dev/null
t_run="$(median_of "$runs" lh run "$tmp/script" build_script)"
t_exec="$(median_of "$runs" sh -c "docker exec -i $container bash -s < '$tmp/script'")"
lh cleanup >/dev/null

# --- (2) prepare + cleanup -----------------------------------------------------------------------
prep_times=()
clean_times=()
for _ in $(seq "$runs"); do
    new_attempt
    s="$(date +%s%N)"; lh prepare >/dev/null; e="$(date +%s%N)"; prep_times+=($((e - s)))
    s="$(date +%s%N)"; lh cleanup >/dev/null; e="$(date +%s%N)"; clean_times+=($((e - s)))
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t_prep="$(med "${prep_times[@]}")"
t_clean="$(med "${clean_times[@]}")"
by_hand_up() {
    docker create --name bench-job --init --network none -v "$tmp/builds:$tmp/builds" \
        -v "$tmp/cache:$tmp/cache" --tmpfs /run/leasehold:rw,nosuid,nodev,noexec,mode=1777,size=64m \
        --entrypoint sh "$job_image" -c 'while :; do sleep 3600; done' >/dev/null
    docker start bench-job >/dev/null
    docker create --name bench-helper --init --network container:bench-job \
        -v "$tmp/builds:$tmp/builds" -v "$tmp/cache:$tmp/cache" \
        --tmpfs /run/leasehold:rw,nosuid,nodev,noexec,mode=1777,size=64m \
        --entrypoint sh "$helper_image" -c 'while :; do sleep 3600; done' >/dev/null
    docker start bench-helper >/dev/null
}
by_hand_down() { docker rm -f -v bench-helper bench-job >/dev/null; }
up_times=()
down_times=()
for _ in $(seq "$runs"); do
    s="$(date +%s%N)"; by_hand_up; e="$(date +%s%N)"; up_times+=($((e - s)))
    s="$(date +%s%N)"; by_hand_down; e="$(date +%s%N)"; down_times+=($((e - s)))
done
t_up="$(med "${up_times[@]}")"
t_down="$(med "${down_times[@]}")"

# --- (3) a whole job -----------------------------------------------------------------------------
whole_leasehold() {
    new_attempt
    lh prepare
    for stage in prepare_script get_sources build_script after_script cleanup_file_variables; do
        lh run "$tmp/script" "$stage"
    done
    lh cleanup
}
whole_by_hand() {
    by_hand_up
    for c in bench-helper bench-helper bench-job bench-job bench-helper; do
        docker exec -i "$c" bash -s <"$tmp/script"
    done
    by_hand_down
}
t_job="$(median_of "$runs" whole_leasehold)"
t_hand="$(median_of "$runs" whole_by_hand)"

echo "docker executor, medians of $runs runs, engine $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST:"
echo "  (1) one stage:        leasehold run $(ms "$t_run")   docker exec -i … bash -s $(ms "$t_exec")   ratio $(ratio "$t_run" "$t_exec")"
echo "  (2) prepare:          leasehold prepare $(ms "$t_prep")   docker create+start x2 $(ms "$t_up")   added $(ms $((t_prep - t_up)))"
echo "      cleanup:          leasehold cleanup $(ms "$t_clean")   docker rm -f -v x2 $(ms "$t_down")   added $(ms $((t_clean - t_down)))"
echo "  (3) 5-stage job:      leasehold $(ms "$t_job")   by hand with the docker CLI $(ms "$t_hand")   ratio $(ratio "$t_job" "$t_hand")"
