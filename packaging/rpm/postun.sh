# leasehold %postun ($1: 0 = erase, 1 = upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart leasehold-reaper.timer >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    # Job state (encrypted secrets, lease journals). rpm has no purge: a changed config stays
    # behind as /etc/leasehold/config.toml.rpmsave, as usual.
    rm -rf /run/leasehold /run/leasehold-files
    # cargo-generate-rpm cannot mark directories as owned, so rpm leaves them behind: remove
    # them when empty (never a .rpmsave or an admin's file).
    for dir in /usr/share/doc/leasehold/docs /usr/share/doc/leasehold/executor-config \
        /usr/share/doc/leasehold /etc/leasehold; do
        rmdir "$dir" 2>/dev/null || :
    done
fi
exit 0
