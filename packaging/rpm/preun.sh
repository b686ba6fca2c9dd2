# leasehold %preun ($1: 0 = erase, 1 = upgrade): stop and disable the reaper timer on erase.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now leasehold-reaper.timer >/dev/null 2>&1 || :
    elif command -v systemctl >/dev/null 2>&1; then
        systemctl disable leasehold-reaper.timer >/dev/null 2>&1 || :
    fi
fi
exit 0
