# shellcheck shell=bash
# A private, hermetic Docker engine for leasehold's docker-executor tests and benchmarks.
# Source this file (after scripts/lib/tools.sh); it defines functions only.
#
#   leasehold_docker_ensure          install docker.io, busybox-static and git when missing
#   leasehold_docker_start DIR       start a private dockerd under DIR; prints its DOCKER_HOST
#   leasehold_docker_stop DIR        stop that dockerd (by the PID in its pidfile) and remove DIR
#   leasehold_docker_images          build the local test images into the daemon at $DOCKER_HOST
#
# Why private: dockerd's defaults create a docker0 bridge on a private address range, add
# iptables rules and turn on IP forwarding. This one has no bridge, no iptables, no forwarding;
# containers get `--network none` (loopback only), `host`, or `container:<id>`.
# No registry is reachable, so the images are made from this machine's own binaries:
#   leasehold-test/busybox:1   busybox (static) with one symlink per applet
#   leasehold-test/job:1       busybox + bash (the runner's scripts are bash)
#   leasehold-test/helper:1    busybox + bash + git (get_sources clones in the helper container)

_leasehold_docker_log() { printf 'leasehold-docker: %s\n' "$*" >&2; }

leasehold_docker_ensure() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    [ -x /usr/bin/git ] || missing+=(git)
    command -v bash >/dev/null 2>&1 || missing+=(bash)
    [ "${#missing[@]}" -eq 0 ] && return 0
    leasehold_ensure_apt "${missing[@]}"
}

# leasehold_docker_start DIR: dockerd with its data, exec root, socket and pidfile under DIR
# (which must be short: the socket path is limited to 108 bytes). Waits until it answers.
leasehold_docker_start() {
    local dir="$1" i
    mkdir -p "$dir"
    _leasehold_docker_log "starting a private dockerd in $dir"
    # setsid: the daemon must not get the test runner's terminal signals.
    setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
        --ip-masq=false --userland-proxy=false \
        --data-root "$dir/root" --exec-root "$dir/exec" \
        -H "unix://$dir/docker.sock" --pidfile "$dir/docker.pid" \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    for i in $(seq 1 150); do
        if DOCKER_HOST="unix://$dir/docker.sock" docker version >/dev/null 2>&1; then
            printf 'unix://%s/docker.sock\n' "$dir"
            return 0
        fi
        sleep 0.2
    done
    _leasehold_docker_log "dockerd did not answer within 30 s; its log:"
    tail -n 30 "$dir/dockerd.log" >&2
    return 1
}

# leasehold_docker_stop DIR: stops the daemon leasehold_docker_start started there, by PID.
leasehold_docker_stop() {
    local dir="$1" pid i
    [ -f "$dir/docker.pid" ] || { rm -rf "$dir" 2>/dev/null; return 0; }
    pid="$(cat "$dir/docker.pid")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        # Containers first, so that dockerd stops quickly and leaves no mount behind.
        DOCKER_HOST="unix://$dir/docker.sock" docker ps -aq 2>/dev/null |
            xargs -r env DOCKER_HOST="unix://$dir/docker.sock" docker rm -f >/dev/null 2>&1 || true
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # A daemon that was killed leaves its overlay and netns mounts behind.
    awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
        xargs -r -n 1 umount -l 2>/dev/null || true
    rm -rf "$dir" 2>/dev/null || true
}

# Copies each program and the shared libraries it loads into the rootfs $1, at the same paths.
_leasehold_copy_closure() {
    local root="$1" bin lib
    shift
    for bin in "$@"; do
        cp -L --parents "$bin" "$root"
        for lib in $(ldd "$bin" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'); do
            [ -e "$root$lib" ] || cp -L --parents "$lib" "$root"
        done
    done
}

# A busybox rootfs in $1: the static binary and a symlink per applet, /tmp, /etc/passwd.
_leasehold_busybox_rootfs() {
    local root="$1" applet
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/usr/bin" "$root/www"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    ln -sf /bin/env "$root/usr/bin/env"
    printf 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nbuilder:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
    mkdir -p "$root/home/builder" && chown 1000:1000 "$root/home/builder"
    printf 'leasehold test service\n' >"$root/www/index.html"
}

_leasehold_import() {
    local root="$1" tag="$2"
    tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$tag" >/dev/null
}

# leasehold_docker_images: builds the three test images (about 2 s) unless they exist already.
leasehold_docker_images() {
    local work
    if docker image inspect leasehold-test/busybox:1 leasehold-test/job:1 leasehold-test/helper:1 >/dev/null 2>&1; then
        return 0
    fi
    work="$(mktemp -d)"
    _leasehold_docker_log "building leasehold-test/{busybox,job,helper}:1"
    _leasehold_busybox_rootfs "$work/busybox"
    _leasehold_import "$work/busybox" leasehold-test/busybox:1

    _leasehold_busybox_rootfs "$work/job"
    # busybox's bash-less rootfs gets the host's bash at /bin/bash (and /usr/bin/bash).
    _leasehold_copy_closure "$work/job" "$(readlink -f /bin/bash)"
    [ -e "$work/job/bin/bash" ] || ln -sf /usr/bin/bash "$work/job/bin/bash"
    [ -e "$work/job/usr/bin/bash" ] || ln -sf /bin/bash "$work/job/usr/bin/bash"
    [ -f /etc/ld.so.cache ] && cp /etc/ld.so.cache "$work/job/etc/"
    _leasehold_import "$work/job" leasehold-test/job:1

    cp -a "$work/job" "$work/helper"
    # Debian's git (not a /usr/local one with another exec path), with the links a local clone
    # runs (git-upload-pack and friends are links to git) and its templates.
    _leasehold_copy_closure "$work/helper" /usr/bin/git
    mkdir -p "$work/helper/usr/lib/git-core"
    cp /usr/bin/git "$work/helper/usr/lib/git-core/git"
    for link in git-upload-pack git-receive-pack git-upload-archive; do
        ln -sf git "$work/helper/usr/bin/$link"
        ln -sf git "$work/helper/usr/lib/git-core/$link"
    done
    [ -d /usr/share/git-core/templates ] && mkdir -p "$work/helper/usr/share/git-core" &&
        cp -a /usr/share/git-core/templates "$work/helper/usr/share/git-core/"
    _leasehold_import "$work/helper" leasehold-test/helper:1
    rm -rf "$work"
}
