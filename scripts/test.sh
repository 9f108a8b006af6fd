#!/usr/bin/env bash
# Set up and run the whole test suite (what CI runs):
#   1. dependencies (Debian packages) and guest assets (distro kernel + busybox initramfs, cached)
#   2. a release build: unit, differential, bare-metal (sys) and end-to-end Linux boot tests
#   3. a build with AddressSanitizer + UndefinedBehaviorSanitizer: unit, differential and sys tests
#   4. the libFuzzer harnesses (clang, build-fuzz/), 30 s each: scripts/fuzz.sh
# Longer differential runs: M86_SEED=N M86_DIFF_CASES=N build/tests/diff_tests (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
eval "$(./scripts/guest-assets.sh | grep '^M86_')"
export M86_KERNEL M86_INITRD
# micro86's own guest kernel with virtio-mmio command-line devices (built once from Debian's
# linux-source, cached in ~/.cache/micro86; a few minutes the first time).
eval "$(./scripts/guest-kernel.sh | grep '^M86_')"
export M86_VIRTIO_KERNEL M86_VIRTIO_VMLINUX

[[ -d build ]] || meson setup build
meson compile -C build
meson test -C build --print-errorlogs

[[ -d build-asan ]] || meson setup build-asan -Dsanitize_tests=true -Dbuildtype=plain -Doptimization=1
meson compile -C build-asan
# Sanitizers slow the differential runner several-fold: fewer cases per form there (every form still
# runs; the release build above ran the full count).
M86_DIFF_CASES=${M86_ASAN_DIFF_CASES:-400} meson test -C build-asan --print-errorlogs --no-suite e2e

./scripts/fuzz.sh
