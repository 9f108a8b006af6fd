#!/usr/bin/env bash
# Set up and run the whole test suite: dependencies, a release build, and a sanitizer build.
#   scripts/test.sh            everything (what CI runs)
#   M86_DIFF_CASES=N M86_SEED=S scripts/test.sh   longer differential runs with another seed
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
[[ -d build ]] || meson setup build
meson compile -C build
meson test -C build --print-errorlogs
# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
[[ -d build-asan ]] || meson setup build-asan -Dsanitize_tests=true -Dbuildtype=debugoptimized
meson compile -C build-asan
meson test -C build-asan --print-errorlogs
