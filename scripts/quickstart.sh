#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to micro86 running its main job.
# Today that job is the snippet runner on the bundled example (examples/fib.s); once the microvm
# board lands, this script boots Linux to a shell.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
[[ -d build ]] || meson setup build
meson compile -C build
echo "== micro86 snippet build/examples/fib.bin --trace"
./build/micro86 snippet build/examples/fib.bin --trace --max-insns 40
echo "== final state"
./build/micro86 snippet build/examples/fib.bin
