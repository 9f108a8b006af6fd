#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to Linux running on micro86: installs the build
# dependencies, builds micro86, fetches the distro's kernel and busybox (cached in
# ~/.cache/micro86), and boots them to an interactive shell on this terminal.
#   In the guest: `reboot -f` powers off (micro86 exits); Ctrl-A x quits micro86 at any time.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
[[ -d build ]] || meson setup build
meson compile -C build
eval "$(./scripts/guest-assets.sh | grep '^M86_')"
echo "== booting $M86_KERNEL on micro86 (Ctrl-A x quits)"
exec ./build/micro86 -M microvm -m 512M -kernel "$M86_KERNEL" -initrd "$M86_INITRD" \
    -append "console=ttyS0 reboot=t quiet" -no-reboot -nographic "$@"
