#!/usr/bin/env bash
# Install micro86's build and test dependencies from Debian 12's packages (needs root or sudo).
set -euo pipefail
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
PKGS=(g++ meson ninja-build pkg-config cmake libasmjit-dev libzydis-dev libfmt-dev doctest-dev libxbyak-dev libslirp-dev libglib2.0-dev
      qemu-system-data   # qemu-system-data: qboot.rom (the firmware QEMU runs on microvm) and its option ROMs
      e2fsprogs cpio binutils   # virtio e2e tests: mke2fs -d / debugfs / e2fsck, the root fs tree, as + ld
      gcc libc6-dev             # virtio e2e: a static test program for the guest (gcc -static)
      clang libclang-rt-dev)    # scripts/fuzz.sh: clang's libFuzzer and sanitizer runtimes
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi
