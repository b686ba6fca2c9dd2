#!/usr/bin/env bash
# What `leasehold run` costs a job that prints a lot: a stage script printing SIZE bytes of
# log-like text, timed through `leasehold run <script> build_script > /dev/null` (output piped
# through the masker, with one KV secret in the job) against `bash <script> | cat > /dev/null`.
# Best of 3 each; prints both times, rates and the time ratio.
#
#   scripts/bench-run-output.sh [SIZE_BYTES]        (default 100000000)
#
# Sets up and removes a throwaway environment: an OpenBao dev server (bao from
# scripts/lib/tools.sh) on a free loopback port with JWT auth trusting a fresh RSA key
# (jwt_validation_pubkeys), one role, policy and KV v2 secret; a GitLab-like ID token signed with
# `openssl dgst -sha256 -sign`; a job payload. leasehold's config and prepare run with the
# environment gitlab-runner gives them, then the timed runs, then cleanup (which revokes the
# token). LEASEHOLD_BIN overrides the binary (default: `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

size="${1:-100000000}"
runs=3

for tool in openssl python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench-run-output: needs $tool" >&2; exit 1; }
done
if [[ -z "${LEASEHOLD_BIN:-}" ]]; then
    cargo build --release --quiet --bin leasehold
    LEASEHOLD_BIN="$PWD/target/release/leasehold"
fi
bao="$(leasehold_find_bao)"

tmp="$(mktemp -d)"
bao_pid=""
finish() {
    if [[ -n "$bao_pid" ]]; then
        kill "$bao_pid" 2>/dev/null || true
        wait "$bao_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap finish EXIT

# --- OpenBao -------------------------------------------------------------------------------------
port="$(leasehold_free_port)"
addr="http://127.0.0.1:$port"
root_token="root-$(openssl rand -hex 12)"
bao_cmd() { BAO_ADDR="$addr" VAULT_ADDR="$addr" BAO_TOKEN="$root_token" VAULT_TOKEN="$root_token" "$bao" "$@"; }
"$bao" server -dev -dev-root-token-id="$root_token" -dev-listen-address="127.0.0.1:$port" \
    -dev-no-store-token >"$tmp/bao.log" 2>&1 &
bao_pid=$!
for _ in $(seq 1 200); do
    bao_cmd status >/dev/null 2>&1 && break
    kill -0 "$bao_pid" 2>/dev/null || { cat "$tmp/bao.log" >&2; exit 1; }
    sleep 0.05
done
bao_cmd status >/dev/null

issuer="https://gitlab.bench.invalid"
audience="https://bao.bench.invalid"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/jwt.key" 2>/dev/null
openssl pkey -in "$tmp/jwt.key" -pubout -out "$tmp/jwt.pub"
bao_cmd auth enable jwt >/dev/null
python3 - "$tmp/jwt.pub" "$issuer" >"$tmp/jwt-config.json" <<'PY'
import json, sys
print(json.dumps({"jwt_validation_pubkeys": [open(sys.argv[1]).read()], "bound_issuer": sys.argv[2]}))
PY
bao_cmd write auth/jwt/config - <"$tmp/jwt-config.json" >/dev/null
bao_cmd policy write ci - >/dev/null <<'HCL'
path "secret/data/ci/*" { capabilities = ["read"] }
HCL
bao_cmd write auth/jwt/role/ci - >/dev/null <<JSON
{"role_type": "jwt", "user_claim": "user_login", "bound_audiences": ["$audience"],
 "bound_claims": {"project_path": "grp/app"}, "token_policies": ["ci"], "token_ttl": "10m"}
JSON
# The dev server mounts a KV v2 engine at secret/.
bao_cmd kv put -mount=secret ci/app "password=bench/$(openssl rand -hex 12)+=" >/dev/null

# --- the job -------------------------------------------------------------------------------------
export BENCH_ISSUER="$issuer" BENCH_AUDIENCE="$audience"
jwt="$(python3 - "$tmp/jwt.key" <<'PY'
import base64, json, os, subprocess, sys, time
def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": os.environ["BENCH_ISSUER"], "aud": os.environ["BENCH_AUDIENCE"],
          "sub": "project_path:grp/app:ref_type:branch:ref:main", "iat": now, "nbf": now - 5,
          "exp": now + 3600, "project_id": "42", "project_path": "grp/app", "namespace_path": "grp",
          "ref": "main", "ref_type": "branch", "ref_protected": "true", "user_login": "bench",
          "job_id": "1", "pipeline_source": "push"}
signing_input = (b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "."
                 + b64url(json.dumps(claims).encode()))
signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]],
                           input=signing_input.encode(), capture_output=True, check=True).stdout
print(signing_input + "." + b64url(signature))
PY
)"
BENCH_JWT="$jwt" python3 >"$tmp/response.json" <<'PY'
import json, os
def var(key, value, masked=False):
    return {"key": key, "value": value, "public": not masked, "file": False, "masked": masked, "raw": False}
secrets = "BENCH_SECRET:\n  vault: ci/app/password@secret\n  file: false\n"
print(json.dumps({
    "id": 1, "token": "bench-job-token",
    "job_info": {"name": "bench", "stage": "test", "project_id": 42, "project_full_path": "grp/app"},
    "git_info": {"ref": "main", "protected": True}, "runner_info": {"timeout": 3600},
    "variables": [var("CI_JOB_ID", "1"), var("CI_PROJECT_PATH", "grp/app"),
                  var("VAULT_ID_TOKEN", os.environ["BENCH_JWT"], masked=True),
                  var("LEASEHOLD_SECRETS", secrets)],
    "steps": [{"name": "script", "script": ["true"], "timeout": 3600, "when": "on_success"}],
}))
PY
chmod 600 "$tmp/response.json"
unset jwt

cat >"$tmp/config.toml" <<TOML
state_dir = "$tmp/state"
builds_dir = "$tmp/builds"
cache_dir = "$tmp/cache"

[vault]
address = "$addr"
role = "ci"

# The bench runs as root and its job as leasehold's own user.
[executor]
allow_root = true
TOML

# The environment gitlab-runner gives every stage (config gets no job_env).
stage_env=(env -i "PATH=$PATH" "HOME=${HOME:-/}" "TMPDIR=$tmp" "LEASEHOLD_CONFIG=$tmp/config.toml"
    BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 "BUILD_EXIT_CODE_FILE=$tmp/build_exit_code"
    "JOB_RESPONSE_FILE=$tmp/response.json" CUSTOM_ENV_CI_JOB_ID=1 CUSTOM_ENV_CI_PROJECT_PATH=grp/app)
"${stage_env[@]}" "$LEASEHOLD_BIN" config >"$tmp/config.json"
mapfile -t job_env < <(python3 -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["job_env"].items():
    print(f"{k}={v}")' "$tmp/config.json")
stage_env+=("${job_env[@]}")
if ! "${stage_env[@]}" "$LEASEHOLD_BIN" prepare >"$tmp/prepare.log" 2>&1; then
    cat "$tmp/prepare.log" >&2
    exit 1
fi

# --- sanity: masking is on, and nothing is lost -------------------------------------------------
# shellcheck disable=SC2016 # the variable is for the job's shell
printf 'echo "secret=$BENCH_SECRET"\n' >"$tmp/check.sh"
check="$("${stage_env[@]}" "$LEASEHOLD_BIN" run "$tmp/check.sh" build_script)"
[[ "$check" == "secret=[MASKED]" ]] || { echo "bench-run-output: masking is not active" >&2; exit 1; }

line='2026-01-01T12:00:00.000Z INFO builder: compiling crate 42 of 300 (src/lib.rs), 0 warnings'
printf "yes '%s' | head -c %s\n" "$line" "$size" >"$tmp/script.sh"
got="$("${stage_env[@]}" "$LEASEHOLD_BIN" run "$tmp/script.sh" build_script | wc -c)"
[[ "$got" -eq "$size" ]] || { echo "bench-run-output: leasehold passed $got of $size bytes" >&2; exit 1; }

# --- timing --------------------------------------------------------------------------------------
baseline() { bash "$tmp/script.sh" | cat >/dev/null; }
through_leasehold() { "${stage_env[@]}" "$LEASEHOLD_BIN" run "$tmp/script.sh" build_script >/dev/null; }

base_ns="$(leasehold_best_of "$runs" baseline)"
lh_ns="$(leasehold_best_of "$runs" through_leasehold)"
"${stage_env[@]}" "$LEASEHOLD_BIN" cleanup >"$tmp/cleanup.log" 2>&1 || cat "$tmp/cleanup.log" >&2

rate() { awk -v b="$size" -v ns="$1" 'BEGIN { printf "%.0f", b / ns * 1000 }'; } # MB/s, MB = 1e6
echo "== $size bytes of log lines to /dev/null, one masked secret, best of $runs ($(nproc) cores)"
printf '%-36s %8.1f ms %7s MB/s\n' "bash script | cat" "$(awk -v n="$base_ns" 'BEGIN { print n / 1e6 }')" "$(rate "$base_ns")"
printf '%-36s %8.1f ms %7s MB/s\n' "leasehold run script build_script" "$(awk -v n="$lh_ns" 'BEGIN { print n / 1e6 }')" "$(rate "$lh_ns")"
printf 'time ratio leasehold/baseline: %.2f\n' "$(awk -v a="$lh_ns" -v b="$base_ns" 'BEGIN { print a / b }')"
