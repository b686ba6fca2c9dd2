# leasehold %post ($1: 1 = install, 2 = upgrade). There are no %systemd_* macros without
# rpmbuild, so this does by hand what they do.

# The executor config may name credential files; only root and gitlab-runner's group read it.
# Leave a group the admin chose alone: only the package default (root) is changed.
if getent group gitlab-runner >/dev/null 2>&1 \
    && [ "$(stat -c %G /etc/leasehold/config.toml 2>/dev/null)" = root ]; then
    chgrp gitlab-runner /etc/leasehold/config.toml || :
fi

# Private state dirs (/usr/lib/tmpfiles.d/leasehold.conf).
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create leasehold.conf >/dev/null 2>&1 || :
fi
[ -d /run/leasehold ] || install -d -m 0700 -o root -g root /run/leasehold || :
[ -d /run/leasehold-files ] || install -d -m 0711 -o root -g root /run/leasehold-files || :

# The packaged config runs jobs as gitlab-runner, which must write the default builds_dir and
# cache_dir. Only directories this creates are handed over; existing ones are left alone.
if getent passwd gitlab-runner >/dev/null 2>&1; then
    for dir in /var/lib/leasehold/builds /var/lib/leasehold/cache; do
        [ -d "$dir" ] || install -d -m 0750 -o gitlab-runner -g "$(id -gn gitlab-runner)" "$dir" || :
    done
fi

# The reaper timer: enabled (and started where systemd runs) on first install only, so that
# an admin who disabled it keeps it disabled across upgrades.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now leasehold-reaper.timer >/dev/null 2>&1 || :
    fi
elif [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl enable leasehold-reaper.timer >/dev/null 2>&1 || :
fi
exit 0
