#!/usr/bin/env bash
# Builds both packages and checks them on this machine; CI runs it from .ci/run.
#
#   scripts/package-test.sh
#
# Needs root: it installs the .deb with dpkg, runs a sample job through the installed
# /usr/bin/leasehold (scripts/demo.sh's job, on a throwaway OpenBao), reinstalls it over
# itself once gitlab-runner's account exists, runs the sample job again the way a fleet host
# runs it (the installed binary, /etc/leasehold/config.toml and /run/leasehold, the job as
# gitlab-runner), upgrades it to a higher revision with a locally edited conffile, removes and
# purges it, checking after each step. Then it inspects the .rpm with Debian's `rpm` (files, modes,
# config flags, scriptlets, requirements). The package is purged on exit whatever happens, so
# a failure does not leave it installed on a developer's machine.
#
# systemd need not be PID 1 (it is not in CI): the maintainer scripts only start units when it
# is, and the timer is enabled by symlink either way.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

started=$SECONDS
pkg=leasehold
unit_dir=/usr/lib/systemd/system
wants_link=/etc/systemd/system/timers.target.wants/leasehold-reaper.timer

log() { printf 'package-test.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    die "run as root: it installs, upgrades and purges the $pkg .deb"
fi

# dpkg's status of the package ("install ok installed", "deinstall ok config-files", …), or
# "unknown" when dpkg has no record of it (or only a "not-installed" one).
dpkg_status() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" || status=""
    case "$status" in
        "" | *" not-installed") echo unknown ;;
        *) echo "$status" ;;
    esac
}
known_to_dpkg() { [ "$(dpkg_status)" != unknown ]; }

if known_to_dpkg; then
    if [ "${CI:-}" = true ]; then
        log "a $pkg package is present (an earlier run was killed?); purging it first"
        dpkg --purge "$pkg" >/dev/null
    else
        die "a $pkg package is already installed here and this test would purge it; run \`dpkg --purge $pkg\` first"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Checks: each prints one line; failures are counted and make the script fail at the end.
passed=0
failed=0
ok() {
    passed=$((passed + 1))
    printf '  ok    %s\n' "$1"
}
not_ok() {
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$1"
}
# check WHAT CMD...: runs CMD (output hidden unless it fails).
check() {
    local what="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        ok "$what"
    else
        not_ok "$what"
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/        /' | head -n 20
    fi
}
# check_stat PATH MODE OWNER GROUP
check_stat() {
    local path="$1" want="$2 $3 $4" have
    have="$(stat -c '%a %U %G' "$path" 2>/dev/null)" || have="missing"
    if [ "$have" = "$want" ]; then
        ok "$path is $want"
    else
        not_ok "$path is $want (it is: $have)"
    fi
}
# check_absent PATH
check_absent() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        not_ok "$1 is gone (it is still there)"
    else
        ok "$1 is gone"
    fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
section() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
section "Build"
leasehold_ensure_apt rpm
leasehold_ensure_packaging_tools
LEASEHOLD_TEST_BAO="$(leasehold_find_bao)"
export LEASEHOLD_TEST_BAO

scripts/package.sh
deb="$(ls target/packages/"${pkg}"_*-1_amd64.deb)"
rpm_file="$(ls target/packages/"${pkg}"-*.x86_64.rpm)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"

# The upgrade target: the same binary with Debian revision 2, whose packaged config differs
# too, so that the upgrade meets a config changed on both sides (dpkg's conffile prompt, which
# --force-confold answers by keeping the admin's file and leaving the new one beside it).
rm -rf target/packages/upgrade
mkdir -p target/packages/upgrade
packaged_config_backup="$(mktemp)"
cp executor-config/config.toml "$packaged_config_backup"
printf '\n# leasehold %s-2: the packaged config changed in this revision\n' "$version" \
    >>executor-config/config.toml
if ! cargo deb --quiet --locked --no-build --no-strip --deb-revision 2 --output target/packages/upgrade/; then
    cp "$packaged_config_backup" executor-config/config.toml
    die "building the revision-2 .deb failed"
fi
cp "$packaged_config_backup" executor-config/config.toml
rm -f "$packaged_config_backup"
deb2="$(ls target/packages/upgrade/"${pkg}"_*-2_amd64.deb)"

# The sample job's driver (the integration tests' gitlab-runner emulator), built once.
cargo build --quiet --locked --example demo
log "built $deb, $deb2, $rpm_file"

work="$(mktemp -d)"
added_user=""
cleanup() {
    local rc=$?
    if known_to_dpkg; then
        log "purging $pkg"
        dpkg --purge "$pkg" >/dev/null 2>&1 || log "warning: dpkg --purge $pkg failed"
    fi
    if [ -n "$added_user" ]; then
        userdel --remove "$added_user" >/dev/null 2>&1 || log "warning: userdel $added_user failed"
        ! getent group "$added_user" >/dev/null 2>&1 || groupdel "$added_user" ||
            log "warning: groupdel $added_user failed"
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The config's group: gitlab-runner when that group exists, else root.
config_group=root
if getent group gitlab-runner >/dev/null 2>&1; then
    config_group=gitlab-runner
fi

# Files of both packages, with their modes (all owned by root).
shipped_files=(
    "/usr/bin/leasehold 755"
    "/etc/leasehold/config.toml 640"
    "$unit_dir/leasehold-reap.service 644"
    "$unit_dir/leasehold-reaper.timer 644"
    "/usr/lib/tmpfiles.d/leasehold.conf 644"
    "/usr/share/man/man1/leasehold.1.gz 644"
    "/usr/share/man/man1/leasehold-run.1.gz 644"
    "/usr/share/man/man1/leasehold-reap.1.gz 644"
    "/usr/share/bash-completion/completions/leasehold 644"
    "/usr/share/fish/vendor_completions.d/leasehold.fish 644"
    "/usr/share/doc/leasehold/README.md 644"
    "/usr/share/doc/leasehold/LICENSE 644"
    "/usr/share/doc/leasehold/docs/leases.md 644"
    "/usr/share/doc/leasehold/executor-config/config.toml 644"
    "/usr/share/doc/leasehold/executor-config/gitlab-runner-config.toml 644"
)
deb_only_files=(
    "/usr/share/zsh/vendor-completions/_leasehold 644"
    "/usr/share/doc/leasehold/copyright 644"
)

# The checks that hold whenever the package is installed (after install, reinstall, upgrade).
check_installed() {
    local want_version="$1" entry path mode group listing
    check "dpkg: $pkg $want_version is installed" \
        test "$(dpkg-query -W -f='${Status} ${Version}' "$pkg")" = "install ok installed $want_version"
    listing="$(dpkg -L "$pkg")"
    for entry in "${shipped_files[@]}" "${deb_only_files[@]}"; do
        path="${entry% *}"
        mode="${entry##* }"
        group=root
        [ "$path" != /etc/leasehold/config.toml ] || group="$config_group"
        if contains "$listing" "$path"; then
            check_stat "$path" "$mode" root "$group"
        else
            not_ok "dpkg -L lists $path"
        fi
    done
    check "dpkg: /etc/leasehold/config.toml is a conffile" \
        grep -q '^ /etc/leasehold/config.toml ' <<<"$(dpkg-query -W -f='${Conffiles}\n' "$pkg")"
    check_stat /run/leasehold 700 root root
    check_stat /run/leasehold-files 711 root root
    check "the timer is enabled: $wants_link -> leasehold-reaper.timer" \
        test "$(readlink -f "$wants_link")" = "$(readlink -f "$unit_dir/leasehold-reaper.timer")"
    check "nothing enables the oneshot leasehold-reap.service" \
        test -z "$(find /etc/systemd/system -name leasehold-reap.service 2>/dev/null)"
    check "/usr/bin/leasehold is target/release/leasehold" cmp -s /usr/bin/leasehold target/release/leasehold
    check "leasehold --version prints $version" \
        test "$(/usr/bin/leasehold --version)" = "leasehold $version"
    check "no leftover .dpkg-new/.dpkg-dist/.dpkg-old under /etc/leasehold" \
        test -z "$(find /etc/leasehold -name '*.dpkg-*')"
}

# ---------------------------------------------------------------------------------------------
section "Install $(basename "$deb")"
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    die "dpkg -i $deb failed"
}
check_installed "$version-1"
check "Depends: libc6 (>= 2.34) (the glibc floor in docs/install.md)" \
    test "$(dpkg-query -W -f='${Depends}' "$pkg")" = "libc6 (>= 2.34)"
check "leasehold.1 is a man page" zgrep -q '^\.TH leasehold 1' /usr/share/man/man1/leasehold.1.gz
check "bash completion completes subcommands" bash -c \
    'source /usr/share/bash-completion/completions/leasehold && COMP_WORDS=(leasehold re) COMP_CWORD=1 &&
     _leasehold leasehold re leasehold && [[ " ${COMPREPLY[*]} " == *" reap "* ]]'
check "leasehold reap runs with the shipped config and the tmpfiles state dir" \
    bash -c '/usr/bin/leasehold reap | grep -q "0 job states examined"'
check "the shipped config runs jobs as gitlab-runner, never as root (docs/security.md)" \
    grep -qx 'user = "gitlab-runner"' /etc/leasehold/config.toml
if getent passwd gitlab-runner >/dev/null 2>&1; then
    for dir in /var/lib/leasehold/builds /var/lib/leasehold/cache; do
        check "$dir belongs to gitlab-runner, the job user" \
            test "$(stat -c %U "$dir" 2>/dev/null)" = gitlab-runner
    done
else
    log "no gitlab-runner account here: the builds and cache dirs are left to the first job"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    man_opt=--man=yes
    command -v man >/dev/null 2>&1 || man_opt=--man=no
    check "systemd-analyze verify $man_opt leasehold-reap.service leasehold-reaper.timer" \
        systemd-analyze verify "$man_opt" "$unit_dir/leasehold-reap.service" "$unit_dir/leasehold-reaper.timer"
    exposure="$(systemd-analyze security --offline=true "$unit_dir/leasehold-reap.service" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: //p')" || true
    log "systemd-analyze security: leasehold-reap.service exposure ${exposure:-unknown}"
else
    log "systemd-analyze not installed: unit files not verified"
fi
if [ -d /run/systemd/system ]; then
    check "systemctl: leasehold-reaper.timer is active" systemctl is-active --quiet leasehold-reaper.timer
else
    log "systemd is not PID 1 here: the timer is enabled but cannot be started"
fi

# ---------------------------------------------------------------------------------------------
section "A sample job through the installed /usr/bin/leasehold"
if LEASEHOLD_BIN=/usr/bin/leasehold target/debug/examples/demo >"$work/demo.log" 2>&1; then
    ok "the demo job ran end to end (config, prepare, run, cleanup)"
else
    not_ok "the demo job ran end to end (config, prepare, run, cleanup)"
    sed 's/^/        /' "$work/demo.log"
fi
demo_log="$(cat "$work/demo.log")"
check "the demo used /usr/bin/leasehold" contains "$demo_log" "leasehold binary: /usr/bin/leasehold "
for line in "job succeeded" "the password never reached the job log" "the job's Vault token is revoked" \
    "no PKI lease is left" "no job state is left"; do
    check "demo: $line" contains "$demo_log" "[ok] $line"
done

# ---------------------------------------------------------------------------------------------
section "Reinstall over itself, once gitlab-runner is installed, with a locally edited config"
if ! getent passwd gitlab-runner >/dev/null 2>&1; then
    # As when gitlab-runner is installed after leasehold: its package creates this account
    # (a home, bash), and the next configure hands it the config's group and the builds dirs.
    log "adding a temporary gitlab-runner account, as gitlab-runner's package does (removed at exit)"
    group_opt=(--user-group)
    ! getent group gitlab-runner >/dev/null 2>&1 || group_opt=(--gid gitlab-runner)
    useradd --comment "GitLab Runner" --create-home --shell /bin/bash "${group_opt[@]}" gitlab-runner
    added_user=gitlab-runner
fi
config_group=gitlab-runner
edit="# package-test.sh local edit $$"
sed -i 's/^retries = 3$/retries = 5/' /etc/leasehold/config.toml
printf '%s\n' "$edit" >>/etc/leasehold/config.toml
edited_sum="$(sha256sum /etc/leasehold/config.toml)"
marker=/run/leasehold/package-test-marker
: >"$marker"
dpkg -i --force-confold "$deb" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    die "reinstalling $deb failed"
}
check_installed "$version-1"
check "the edited config survived the reinstall" test "$(sha256sum /etc/leasehold/config.toml)" = "$edited_sum"
check "job state in /run/leasehold survived the reinstall" test -e "$marker"
for dir in /var/lib/leasehold/builds /var/lib/leasehold/cache; do
    check "$dir belongs to gitlab-runner, the job user" \
        test "$(stat -c %U "$dir" 2>/dev/null)" = gitlab-runner
done

# ---------------------------------------------------------------------------------------------
section "A sample job as a fleet host runs it: the installed binary, config and state dir"
# demo --installed invokes `leasehold <stage>` without --config (gitlab-runner-config.toml's
# way), creates the JWT role the installed config names, and makes the admin's one edit itself:
# [vault] address, pointed at its throwaway OpenBao.
config_before="$work/config-before-demo.toml"
cp /etc/leasehold/config.toml "$config_before"
if LEASEHOLD_BIN=/usr/bin/leasehold target/debug/examples/demo --installed >"$work/demo-installed.log" 2>&1; then
    ok "the demo job ran end to end on the installed config (config, prepare, run, cleanup)"
else
    not_ok "the demo job ran end to end on the installed config (config, prepare, run, cleanup)"
    sed 's/^/        /' "$work/demo-installed.log"
fi
demo_log="$(cat "$work/demo-installed.log")"
check "the demo used /usr/bin/leasehold" contains "$demo_log" "leasehold binary: /usr/bin/leasehold "
check "the demo used /etc/leasehold/config.toml and /run/leasehold" \
    contains "$demo_log" "leasehold config: /etc/leasehold/config.toml (installed; "
check "the demo's edit changed only the [vault] address line" \
    test "$(diff "$config_before" /etc/leasehold/config.toml | grep -c '^[<>]')" = 2
check "the demo's edit left the config's mode and group alone" \
    test "$(stat -c '%a %U %G' /etc/leasehold/config.toml)" = "640 root $config_group"
for line in "job succeeded" "the password never reached the job log" "the job's Vault token is revoked" \
    "no PKI lease is left" "no job state is left" "one login, one read per path" "the job ran as gitlab-runner"; do
    check "demo --installed: $line" contains "$demo_log" "[ok] $line"
done
check "/run/leasehold holds only the marker again" test "$(ls -A /run/leasehold)" = "$(basename "$marker")"
check "/run/leasehold-files is empty again" test -z "$(ls -A /run/leasehold-files)"
# The demo's KV values (examples/demo.rs) may be in no file leasehold or the job user can leave
# behind: the config and state dirs, the builds and cache dirs, the job user's home.
leak_dirs=(/etc/leasehold /run/leasehold /run/leasehold-files /var/lib/leasehold "$(getent passwd gitlab-runner | cut -d: -f6)")
for value in s3cr3t-demo-password deploy-bot; do
    check "no file under ${leak_dirs[*]} holds the demo's value $value" bash -c \
        'for d in "${@:2}"; do [ -d "$d" ] || { echo "missing: $d"; exit 1; }; done
         found="$(grep -rlF -- "$1" "${@:2}")"; [ -z "$found" ] || { echo "$found"; exit 1; }' \
        _ "$value" "${leak_dirs[@]}"
done
check "the job's project dir is in /var/lib/leasehold/builds and belongs to gitlab-runner" bash -c \
    'test -n "$(find /var/lib/leasehold/builds -mindepth 1 -print -quit)" &&
     test -z "$(find /var/lib/leasehold/builds -mindepth 1 ! -user gitlab-runner -print -quit)"'
# The address edit is part of the admin's local changes from here on.
edited_sum="$(sha256sum /etc/leasehold/config.toml)"

# ---------------------------------------------------------------------------------------------
section "Upgrade to $(basename "$deb2")"
dpkg -i --force-confold "$deb2" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    die "upgrading to $deb2 failed"
}
check "the new packaged config is beside the kept one: config.toml.dpkg-dist" \
    grep -q "the packaged config changed in this revision" /etc/leasehold/config.toml.dpkg-dist
check "the kept config does not have the new packaged line" \
    bash -c '! grep -q "the packaged config changed in this revision" /etc/leasehold/config.toml'
# What an admin does after merging the changes they want.
rm -f /etc/leasehold/config.toml.dpkg-dist
check_installed "$version-2"
check "the edited config survived the upgrade" test "$(sha256sum /etc/leasehold/config.toml)" = "$edited_sum"
check "the edited config still has retries = 5" grep -qx 'retries = 5' /etc/leasehold/config.toml
check "job state in /run/leasehold survived the upgrade" test -e "$marker"

# ---------------------------------------------------------------------------------------------
section "Remove (config and job state stay)"
dpkg --remove "$pkg" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    die "dpkg --remove failed"
}
check "dpkg: $pkg is removed, its config kept" \
    test "$(dpkg_status)" = "deinstall ok config-files"
check_absent /usr/bin/leasehold
check_absent "$unit_dir/leasehold-reaper.timer"
check "the timer is masked: /etc/systemd/system/leasehold-reaper.timer -> /dev/null" \
    test "$(readlink /etc/systemd/system/leasehold-reaper.timer)" = /dev/null
check "the edited config is still there" test "$(sha256sum /etc/leasehold/config.toml)" = "$edited_sum"
check "job state in /run/leasehold is still there" test -e "$marker"

# ---------------------------------------------------------------------------------------------
section "Purge"
mkdir -p /var/lib/leasehold/builds
dpkg --purge "$pkg" >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    die "dpkg --purge failed"
}
check "dpkg: $pkg is purged" test "$(dpkg_status)" = unknown
for path in /usr/bin/leasehold /etc/leasehold /run/leasehold /run/leasehold-files /var/lib/leasehold \
    "$wants_link" /etc/systemd/system/leasehold-reaper.timer /usr/share/doc/leasehold \
    "$unit_dir/leasehold-reap.service" /usr/lib/tmpfiles.d/leasehold.conf; do
    check_absent "$path"
done
check "deb-systemd-helper has forgotten the timer" \
    test -z "$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
        -name 'leasehold-reap*' 2>/dev/null)"

# ---------------------------------------------------------------------------------------------
section "Inspect $(basename "$rpm_file")"
check "rpm -K: digests OK" rpm -K --nosignature "$rpm_file"
info="$(rpm -qpi "$rpm_file" 2>/dev/null)"
for field in "Name        : $pkg" "Version     : $version" "Release     : 1" "Architecture: x86_64" \
    "License     : Apache-2.0"; do
    check "rpm -qpi: $field" contains "$info" "$field"
done
listing="$(rpm -qplv "$rpm_file" 2>/dev/null)"
for entry in "${shipped_files[@]}" "/usr/share/zsh/site-functions/_leasehold 644"; do
    path="${entry% *}"
    case "${entry##* }" in
        755) want=-rwxr-xr-x ;;
        640) want=-rw-r----- ;;
        644) want=-rw-r--r-- ;;
    esac
    check "rpm -qplv: $want root root $path" \
        awk -v p="$path" -v m="$want" '$NF == p && $1 == m && $3 == "root" && $4 == "root" { f = 1 } END { exit !f }' \
        <<<"$listing"
done
check "rpm -qp --configfiles: only /etc/leasehold/config.toml" \
    test "$(rpm -qp --configfiles "$rpm_file" 2>/dev/null)" = /etc/leasehold/config.toml
check "rpm: /etc/leasehold/config.toml is %config(noreplace)" \
    grep -qx '/etc/leasehold/config.toml cn' \
    <<<"$(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm_file" 2>/dev/null)"
check "rpm: /usr/bin/leasehold is target/release/leasehold" \
    test "$(rpm -qp --dump "$rpm_file" 2>/dev/null | awk '$1 == "/usr/bin/leasehold" { print $4 }')" \
    = "$(sha256sum target/release/leasehold | cut -d' ' -f1)"
scripts="$(rpm -qp --scripts "$rpm_file" 2>/dev/null)"
for want in "postinstall scriptlet" "chgrp gitlab-runner /etc/leasehold/config.toml" \
    "systemd-tmpfiles --create leasehold.conf" "systemctl enable --now leasehold-reaper.timer" \
    "preuninstall scriptlet" "systemctl disable --now leasehold-reaper.timer" \
    "postuninstall scriptlet" "rm -rf /run/leasehold /run/leasehold-files"; do
    check "rpm -qp --scripts: $want" contains "$scripts" "$want"
done
check "rpm scriptlets are valid sh" bash -c 'for f in packaging/rpm/*.sh; do sh -n "$f" || exit 1; done'
requires="$(rpm -qpR "$rpm_file" 2>/dev/null)"
check "rpm -qpR: needs glibc 2.34 at most (docs/install.md)" \
    test "$(grep -o 'GLIBC_[0-9.]*' <<<"$requires" | sort -uV | tail -n 1)" = GLIBC_2.34

# ---------------------------------------------------------------------------------------------
section "Install $(basename "$rpm_file") for real, into a scratch root"
# rpm --root runs scriptlets chrooted into the root, which has no shell; they are checked above
# (content and sh -n) and the files, modes and database entry here.
rpm_root="$work/rpm-root"
mkdir -p "$rpm_root"
rpm --root "$rpm_root" --initdb
if rpm --root "$rpm_root" -i --nodeps --noscripts --nosignature "$rpm_file" >"$work/rpm.log" 2>&1; then
    ok "rpm --root -i: installed"
else
    not_ok "rpm --root -i: installed"
    sed 's/^/        /' "$work/rpm.log"
fi
check "rpm --root -q: $pkg-$version-1 is in the database" \
    test "$(rpm --root "$rpm_root" -q "$pkg" 2>/dev/null)" = "$pkg-$version-1.x86_64"
for entry in "${shipped_files[@]}"; do
    path="${entry% *}"
    check "rpm --root: $path installed, mode ${entry##* }" \
        test "$(stat -c %a "$rpm_root$path" 2>/dev/null)" = "${entry##* }"
done
check "rpm --root -V: the installed files match the package" \
    rpm --root "$rpm_root" -V --nodeps --noscripts "$pkg"
check "the binary the .rpm installed runs" "$rpm_root/usr/bin/leasehold" --version
if rpm --root "$rpm_root" -e --nodeps --noscripts "$pkg" >"$work/rpm.log" 2>&1; then
    ok "rpm --root -e: erased"
else
    not_ok "rpm --root -e: erased"
    sed 's/^/        /' "$work/rpm.log"
fi
check_absent "$rpm_root/usr/bin/leasehold"

# ---------------------------------------------------------------------------------------------
elapsed=$((SECONDS - started))
printf '\npackage-test.sh: %d passed, %d failed (%ds)\n' "$passed" "$failed" "$elapsed"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
